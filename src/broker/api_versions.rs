//! ApiVersions: the table from `protocol::versions`. Tagged fields stay at their defaults so
//! they are not encoded (librdkafka 2.0 fails on default-valued tagged fields it does not expect).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

use crate::protocol::versions;

pub fn response() -> ApiVersionsResponse {
    let keys = versions::all()
        .into_iter()
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(lo)
                .with_max_version(hi)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(keys)
}
