//! Cluster metadata: the records of the metadata log, the image every node replays from them,
//! the cache handlers read it through, and Kafka's rules for topic names and configs.
//!
//! Never touches partition data (the broker reconciles logs with the image) and never decides
//! placement or leadership (the controller in `cluster` does).

pub mod image;
pub mod records;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use image::MetadataImage;
pub use records::{BrokerRegistration, Endpoint, MetadataRecord, PartitionRegistration};

use uuid::Uuid;

use crate::log::{LogConfig, LogError};

/// The topic registry of Runnel before the metadata quorum, imported once at start-up.
pub const LEGACY_FILE_NAME: &str = "runnel-topics.meta";
const FORMAT_HEADER: &str = "runnel-topics v1";
pub const MAX_TOPIC_NAME_LEN: usize = 249;

#[derive(Debug, Clone)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionRegistration>,
    /// Topic-level overrides, exactly as set (DYNAMIC_TOPIC_CONFIG).
    pub overrides: BTreeMap<String, String>,
    /// Broker defaults with the overrides applied.
    pub config: LogConfig,
    pub internal: bool,
}

impl Topic {
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }
}

/// Why a topic change failed; it crosses the controller listener, so storage failures travel
/// as text.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum TopicError {
    #[error("{0}")]
    InvalidName(String),
    #[error("Topic '{0}' already exists.")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("Number of partitions must be larger than 0.")]
    InvalidPartitions,
    #[error("{0}")]
    InvalidPartitionCount(String),
    #[error("Topic '{0}' does not exist.")]
    Unknown(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// Another live broker registered this node.id.
    #[error("{0}")]
    DuplicateBroker(String),
    /// The controller quorum has no leader or did not answer in time.
    #[error("{0}")]
    NotController(String),
    #[error("{0}")]
    Storage(String),
    /// A partition change asked at a leader or partition epoch that is no longer current.
    #[error("{0}")]
    StaleEpoch(String),
    #[error("Leader election not needed for topic partition.")]
    ElectionNotNeeded,
    #[error("{0}")]
    PreferredLeaderNotAvailable(String),
    #[error("{0}")]
    EligibleLeadersNotAvailable(String),
    /// A broker-side limit (`max.broker.partitions`) refused the request.
    #[error("{0}")]
    PolicyViolation(String),
}

impl From<LogError> for TopicError {
    fn from(e: LogError) -> Self {
        TopicError::Storage(e.to_string())
    }
}

/// Kafka's rules: 1–249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::InvalidName(
            "Topic name is illegal, it can't be empty".into(),
        ));
    }
    if name == "." || name == ".." {
        return Err(TopicError::InvalidName(
            "Topic name cannot be \".\" or \"..\"".into(),
        ));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(TopicError::InvalidName(format!("Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {name}")));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(TopicError::InvalidName(format!("Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'")));
    }
    Ok(())
}

/// Keys and values must fit the legacy registry's line format and a config line.
pub fn check_override_text(overrides: &BTreeMap<String, String>) -> Result<(), TopicError> {
    match overrides
        .iter()
        .find(|(k, v)| k.contains(['\t', '\n', '=']) || v.contains(['\t', '\n']))
    {
        Some((k, v)) => Err(TopicError::InvalidConfig(format!(
            "Invalid config {k}={v:?}"
        ))),
        None => Ok(()),
    }
}

/// Checks a new topic's name, partition count and configs against `defaults`.
pub fn validate_new_topic(
    name: &str,
    partitions: i32,
    overrides: &BTreeMap<String, String>,
    defaults: &LogConfig,
) -> Result<(), TopicError> {
    validate_name(name)?;
    if partitions < 1 {
        return Err(TopicError::InvalidPartitions);
    }
    check_override_text(overrides)?;
    defaults
        .with_overrides(overrides)
        .map_err(TopicError::InvalidConfig)?;
    Ok(())
}

/// A topic of the legacy registry: name, id, partition count, overrides.
pub type LegacyTopic = (String, Uuid, i32, BTreeMap<String, String>);

/// Reads the single-broker registry file Runnel kept before the metadata quorum, if any.
pub fn read_legacy_registry(dir: &Path) -> Result<Vec<LegacyTopic>, TopicError> {
    let path: PathBuf = dir.join(LEGACY_FILE_NAME);
    let mut topics = Vec::new();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let corrupt = |why: String| LogError::CorruptFile {
                path: path.display().to_string(),
                reason: why,
            };
            let mut lines = text.lines();
            if lines.next() != Some(FORMAT_HEADER) {
                return Err(corrupt("unknown format".into()).into());
            }
            for line in lines.filter(|l| !l.is_empty()) {
                let mut fields = line.split('\t');
                let (Some(name), Some(id), Some(parts), Some(internal)) =
                    (fields.next(), fields.next(), fields.next(), fields.next())
                else {
                    return Err(corrupt(format!("bad line {line:?}")).into());
                };
                let id = Uuid::parse_str(id)
                    .map_err(|_| corrupt(format!("bad topic id in {line:?}")))?;
                let partitions: i32 = parts
                    .parse()
                    .map_err(|_| corrupt(format!("bad partition count in {line:?}")))?;
                let overrides: BTreeMap<String, String> = fields
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let _ = internal;
                topics.push((name.to_string(), id, partitions, overrides));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LogError::io(&path, e).into()),
    }
    Ok(topics)
}

/// The latest image as this node has applied it and reconciled its logs with (Kafka's
/// KRaftMetadataCache): what every handler reads.
pub struct MetadataCache {
    image: RwLock<Arc<MetadataImage>>,
}

impl Default for MetadataCache {
    fn default() -> Self {
        Self {
            image: RwLock::new(Arc::new(MetadataImage::default())),
        }
    }
}

impl MetadataCache {
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn publish(&self, image: Arc<MetadataImage>) {
        *self.image.write().unwrap_or_else(|p| p.into_inner()) = image;
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.image().topic(name).cloned()
    }

    pub fn by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.image().topic_by_id(id).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Topic>> {
        self.image().topics.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        for ok in ["a", "orders.v1", "with_under-dash", &"x".repeat(249)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "sp ace", "slash/y", &"x".repeat(250), "ü"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn legacy_registry_is_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let id = Uuid::new_v4();
        std::fs::write(
            dir.path().join(LEGACY_FILE_NAME),
            format!("runnel-topics v1\nt\t{id}\t3\t-\tretention.ms=1000\n"),
        )
        .expect("write");
        let topics = read_legacy_registry(dir.path()).expect("read");
        assert_eq!(topics.len(), 1);
        assert_eq!((topics[0].1, topics[0].2), (id, 3));
        assert_eq!(
            topics[0].3.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert!(read_legacy_registry(&dir.path().join("none"))
            .expect("none")
            .is_empty());
    }
}
