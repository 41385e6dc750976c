//! The topic registry: which topics exist, their ids, partition counts and config overrides.
//! Kafka keeps this in its KRaft metadata log; a single Runnel broker keeps it in one file in
//! the log directory (`runnel-topics.meta`), replaced atomically on every change.
//!
//! Owns topic-level facts and Kafka's topic-name rules. Never touches partition data: the
//! broker asks the log manager for that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use crate::log::checkpoint::write_atomically;
use crate::log::{LogConfig, LogError};

pub const FILE_NAME: &str = "runnel-topics.meta";
const FORMAT_HEADER: &str = "runnel-topics v1";
pub const MAX_TOPIC_NAME_LEN: usize = 249;

#[derive(Debug, Clone)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Topic-level overrides, exactly as set (DYNAMIC_TOPIC_CONFIG).
    pub overrides: BTreeMap<String, String>,
    /// Broker defaults with the overrides applied.
    pub config: LogConfig,
    pub internal: bool,
}

#[derive(Debug, thiserror::Error)]
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
    #[error(transparent)]
    Storage(#[from] LogError),
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

/// Keys and values must fit the registry's line format.
fn check_override_text(overrides: &BTreeMap<String, String>) -> Result<(), TopicError> {
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

pub struct TopicRegistry {
    path: PathBuf,
    defaults: LogConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
}

impl TopicRegistry {
    pub fn load(dir: &Path, defaults: LogConfig) -> Result<Self, TopicError> {
        let path = dir.join(FILE_NAME);
        let mut topics = BTreeMap::new();
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
                    let config = defaults.with_overrides(&overrides).map_err(&corrupt)?;
                    let topic = Topic {
                        name: name.to_string(),
                        id,
                        partitions,
                        overrides,
                        config,
                        internal: internal == "internal",
                    };
                    topics.insert(name.to_string(), Arc::new(topic));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io(&path, e).into()),
        }
        Ok(Self {
            path,
            defaults,
            topics: RwLock::new(topics),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, topics: &BTreeMap<String, Arc<Topic>>) -> Result<(), TopicError> {
        let mut text = format!("{FORMAT_HEADER}\n");
        for t in topics.values() {
            text.push_str(&format!(
                "{}\t{}\t{}\t{}",
                t.name,
                t.id,
                t.partitions,
                if t.internal { "internal" } else { "-" }
            ));
            for (k, v) in &t.overrides {
                text.push_str(&format!("\t{k}={v}"));
            }
            text.push('\n');
        }
        write_atomically(&self.path, text.as_bytes())?;
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.read().get(name).cloned()
    }

    pub fn by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.read().values().find(|t| t.id == id).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Topic>> {
        self.read().values().cloned().collect()
    }

    /// The topic as CreateTopics would make it, checked but not stored (validate_only).
    pub fn prepare(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
    ) -> Result<Topic, TopicError> {
        validate_name(name)?;
        if partitions < 1 {
            return Err(TopicError::InvalidPartitions);
        }
        if self.read().contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        check_override_text(&overrides)?;
        let config = self
            .defaults
            .with_overrides(&overrides)
            .map_err(TopicError::InvalidConfig)?;
        Ok(Topic {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            overrides,
            config,
            internal: name.starts_with("__"),
        })
    }

    /// Stores a prepared topic durably.
    pub fn insert(&self, topic: Topic) -> Result<Arc<Topic>, TopicError> {
        let mut guard = self.topics.write().unwrap_or_else(|p| p.into_inner());
        if guard.contains_key(&topic.name) {
            return Err(TopicError::AlreadyExists(topic.name));
        }
        let topic = Arc::new(topic);
        let mut next = guard.clone();
        next.insert(topic.name.clone(), topic.clone());
        self.persist(&next)?;
        *guard = next;
        Ok(topic)
    }

    /// Replaces a topic's overrides (checked like CreateTopics' configs), durably. With
    /// `validate_only` nothing is stored.
    pub fn set_overrides(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        check_override_text(&overrides)?;
        let config = self
            .defaults
            .with_overrides(&overrides)
            .map_err(TopicError::InvalidConfig)?;
        self.update(name, validate_only, |t| {
            t.overrides = overrides;
            t.config = config;
            Ok(())
        })
    }

    /// Raises a topic's partition count (CreatePartitions), durably.
    pub fn set_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        self.update(name, validate_only, |t| {
            if count < t.partitions {
                return Err(TopicError::InvalidPartitionCount(format!(
                    "Topic currently has {} partitions, which is higher than the requested {count}.",
                    t.partitions
                )));
            }
            if count == t.partitions {
                return Err(TopicError::InvalidPartitionCount(format!(
                    "Topic already has {} partitions.",
                    t.partitions
                )));
            }
            t.partitions = count;
            Ok(())
        })
    }

    fn update(
        &self,
        name: &str,
        validate_only: bool,
        change: impl FnOnce(&mut Topic) -> Result<(), TopicError>,
    ) -> Result<Arc<Topic>, TopicError> {
        let mut guard = self.topics.write().unwrap_or_else(|p| p.into_inner());
        let mut topic = guard
            .get(name)
            .map(|t| Topic::clone(t))
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        change(&mut topic)?;
        let topic = Arc::new(topic);
        if validate_only {
            return Ok(topic);
        }
        let mut next = guard.clone();
        next.insert(name.to_string(), topic.clone());
        self.persist(&next)?;
        *guard = next;
        Ok(topic)
    }

    pub fn remove(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        let mut guard = self.topics.write().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.clone();
        let removed = next
            .remove(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        self.persist(&next)?;
        *guard = next;
        Ok(removed)
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
    fn topics_survive_reload_and_ids_are_new_on_recreate() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = TopicRegistry::load(dir.path(), LogConfig::default()).expect("load");
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        let t = reg
            .insert(reg.prepare("t", 3, o).expect("prepare"))
            .expect("insert");
        assert!(matches!(
            reg.prepare("t", 1, BTreeMap::new()),
            Err(TopicError::AlreadyExists(_))
        ));
        let reloaded = TopicRegistry::load(dir.path(), LogConfig::default()).expect("reload");
        let again = reloaded.get("t").expect("t");
        assert_eq!(
            (again.id, again.partitions, again.config.retention_ms),
            (t.id, 3, 1000)
        );
        reloaded.remove("t").expect("remove");
        let t2 = reloaded
            .insert(reloaded.prepare("t", 1, BTreeMap::new()).expect("p"))
            .expect("i");
        assert_ne!(t2.id, t.id);
    }
}
