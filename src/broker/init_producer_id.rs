//! InitProducerId: a fresh producer id for idempotent producers.
//!
//! Without a transactional id Kafka's coordinator hands out a new producer id every time, also
//! when the client names its current id and epoch (KIP-360 epoch bumps matter only for
//! transactional ids). Transactional ids wait for the transactions work: they are answered
//! with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a fatal error the client reports at once rather
//! than a retriable one it would retry forever.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Broker;
use crate::protocol::errors;

impl Broker {
    pub async fn init_producer_id(
        &self,
        req: InitProducerIdRequest,
        _version: i16,
    ) -> InitProducerIdResponse {
        let failed = |e: ResponseError| {
            InitProducerIdResponse::default()
                .with_error_code(e.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        };
        if req
            .transactional_id
            .as_ref()
            .is_some_and(|t| !t.0.is_empty())
        {
            return failed(ResponseError::TransactionalIdAuthorizationFailed);
        }
        match self.next_producer_id().await {
            Ok(id) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
            Err(e) => {
                tracing::error!(error = %e, "cannot allocate a producer id");
                failed(errors::topic_error(&e))
            }
        }
    }
}
