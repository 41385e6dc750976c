//! Reading the consumer protocol's subscription metadata (the bytes a consumer puts in its
//! JoinGroup protocols), for OffsetDelete's "still subscribed" check.

use bytes::Buf;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

/// The topics of one member's subscription, or None when the bytes are not a subscription.
pub fn subscribed_topics(metadata: &bytes::Bytes) -> Option<Vec<String>> {
    let mut b = metadata.clone();
    if b.remaining() < 2 {
        return None;
    }
    // Newer clients may write a version above what we decode; the fields we read are in all.
    let version = b.get_i16().clamp(0, 3);
    let s = ConsumerProtocolSubscription::decode(&mut b, version).ok()?;
    Some(s.topics.iter().map(|t| t.to_string()).collect())
}
