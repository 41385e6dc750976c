//! A broker-only node's metadata (KRaft's observer): it is no voter, so it pulls the committed
//! metadata log from the active controller, a snapshot of the image when it is too far behind,
//! and replays it into its own image exactly as voters apply it.
//!
//! Owns the pull loop. Never writes metadata: changes go to the controller like any broker's.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::rpc::{ControllerReply, ControllerRequest};
use super::Cluster;
use crate::log::LogConfig;
use crate::metadata::MetadataImage;

/// How often an observer asks for new entries (KRaft brokers long-poll every 500 ms).
const POLL: Duration = Duration::from_millis(200);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn follow(
    cluster: Arc<Cluster>,
    publish: watch::Sender<Arc<MetadataImage>>,
    defaults: LogConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut image = MetadataImage::default();
    loop {
        let request = ControllerRequest::FetchMetadata {
            after: image.offset,
        };
        if let Ok(ControllerReply::Metadata { snapshot, entries }) =
            cluster.call(request, CALL_TIMEOUT).await
        {
            let before = image.offset;
            if let Some((offset, records)) = snapshot {
                image = MetadataImage::from_records(records, offset, &defaults);
            }
            for (index, record) in entries {
                if let Some(r) = record {
                    image.apply(r, &defaults);
                }
                image.offset = index;
            }
            if image.offset != before {
                publish.send_replace(Arc::new(image.clone()));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
    }
}
