//! DescribeConfigs, IncrementalAlterConfigs and AlterConfigs for topics and this broker.
//!
//! Topic configs are stored overrides in the topic registry and take effect at once on every
//! partition log. Broker settings are static (server.properties, environment, flags): they
//! are described, and altering them is refused with a message saying so.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::Broker;
use crate::cluster::rpc::ControllerRequest;
use crate::log::config::{
    accepted_key, topic_key, ConfigKind, ACCEPTED_TOPIC_CONFIGS, TOPIC_CONFIGS,
};
use crate::log::LogConfig;
use crate::metadata::TopicError;
use crate::protocol::errors;

/// ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// DescribeConfigs' ConfigSource values.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

type Failure = (ResponseError, String);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// One config entry before it becomes a wire struct.
struct Entry {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
    kind: ConfigKind,
    doc: &'static str,
    synonyms: Vec<(String, String, i8)>,
}

impl Broker {
    fn topic_entries(&self, topic: &crate::metadata::Topic) -> Vec<Entry> {
        let defaults = LogConfig::default();
        let accepted = ACCEPTED_TOPIC_CONFIGS.iter().filter_map(|k| {
            let value = topic.config.get(k.name)?;
            let mut synonyms = Vec::new();
            if let Some(v) = topic.overrides.get(k.name) {
                synonyms.push((k.name.to_string(), v.clone(), SOURCE_DYNAMIC_TOPIC));
            }
            synonyms.push((k.name.to_string(), k.default.to_string(), SOURCE_DEFAULT));
            Some(Entry {
                name: k.name.to_string(),
                value,
                source: synonyms[0].2,
                read_only: false,
                kind: k.kind,
                doc: k.doc,
                synonyms,
            })
        });
        TOPIC_CONFIGS
            .iter()
            .filter_map(|k| {
                let value = topic.config.get(k.name)?;
                let mut synonyms = Vec::new();
                if let Some(v) = topic.overrides.get(k.name) {
                    synonyms.push((k.name.to_string(), v.clone(), SOURCE_DYNAMIC_TOPIC));
                }
                for b in k.broker_keys {
                    if let Some((v, _)) = self.config.explicit.get(*b) {
                        synonyms.push((b.to_string(), v.clone(), SOURCE_STATIC_BROKER));
                    }
                }
                if let Some(v) = defaults.get(k.name) {
                    synonyms.push((k.broker_keys[0].to_string(), v, SOURCE_DEFAULT));
                }
                let source = synonyms.first().map_or(SOURCE_DEFAULT, |(_, _, s)| *s);
                Some(Entry {
                    name: k.name.to_string(),
                    value,
                    source,
                    read_only: false,
                    kind: k.kind,
                    doc: k.doc,
                    synonyms,
                })
            })
            .chain(accepted)
            .collect()
    }

    fn broker_entries(&self) -> Vec<Entry> {
        self.config
            .settings()
            .into_iter()
            .map(|b| {
                let source = if b.explicit {
                    SOURCE_STATIC_BROKER
                } else {
                    SOURCE_DEFAULT
                };
                Entry {
                    name: b.name.to_string(),
                    synonyms: vec![(b.name.to_string(), b.value.clone(), source)],
                    value: b.value,
                    source,
                    // Nothing is dynamically alterable on this broker.
                    read_only: true,
                    kind: b.kind,
                    doc: b.doc,
                }
            })
            .collect()
    }

    fn is_this_broker(&self, name: &str) -> bool {
        name.is_empty() || name == self.config.node_id.to_string()
    }

    pub fn describe_configs(
        &self,
        req: DescribeConfigsRequest,
        version: i16,
    ) -> DescribeConfigsResponse {
        let results = req
            .resources
            .iter()
            .map(|r| {
                let base = DescribeConfigsResult::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone());
                let entries = match r.resource_type {
                    RESOURCE_TOPIC => match self.metadata.get(&r.resource_name) {
                        Some(t) => Ok(self.topic_entries(&t)),
                        None => Err((
                            ResponseError::UnknownTopicOrPartition,
                            format!("Topic '{}' does not exist.", r.resource_name.as_str()),
                        )),
                    },
                    RESOURCE_BROKER if self.is_this_broker(&r.resource_name) => {
                        Ok(self.broker_entries())
                    }
                    RESOURCE_BROKER => Err((
                        ResponseError::InvalidRequest,
                        format!("Broker {} does not exist.", r.resource_name.as_str()),
                    )),
                    other => Err((
                        ResponseError::InvalidRequest,
                        format!("Unsupported resource type {other}."),
                    )),
                };
                let entries = match entries {
                    Ok(e) => e,
                    Err((e, msg)) => {
                        return base
                            .with_error_code(e.code())
                            .with_error_message(Some(s(&msg)))
                    }
                };
                let wanted: Option<HashSet<&str>> = r
                    .configuration_keys
                    .as_ref()
                    .map(|ks| ks.iter().map(|k| k.as_str()).collect());
                let configs = entries
                    .into_iter()
                    .filter(|e| wanted.as_ref().is_none_or(|w| w.contains(e.name.as_str())))
                    .map(|e| {
                        let synonyms = if req.include_synonyms {
                            e.synonyms
                                .iter()
                                .map(|(n, v, src)| {
                                    DescribeConfigsSynonym::default()
                                        .with_name(s(n))
                                        .with_value(Some(s(v)))
                                        .with_source(*src)
                                })
                                .collect()
                        } else {
                            Vec::new()
                        };
                        let out = DescribeConfigsResourceResult::default()
                            .with_name(s(&e.name))
                            .with_value(Some(s(&e.value)))
                            .with_read_only(e.read_only)
                            .with_config_source(e.source)
                            .with_synonyms(synonyms);
                        if version >= 3 {
                            out.with_config_type(e.kind as i8)
                                .with_documentation(req.include_documentation.then(|| s(e.doc)))
                        } else {
                            out
                        }
                    })
                    .collect();
                base.with_configs(configs)
            })
            .collect();
        DescribeConfigsResponse::default().with_results(results)
    }

    /// Commits a topic's new overrides through the controller; every replica's logs take them
    /// when their broker applies the record.
    async fn alter_topic(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), Failure> {
        for k in overrides.keys() {
            if topic_key(k).is_none() && accepted_key(k).is_none() {
                return Err((
                    ResponseError::InvalidConfig,
                    format!("Unknown topic config name: {k}"),
                ));
            }
        }
        self.controller_change(ControllerRequest::AlterTopicConfig {
            name: name.to_string(),
            overrides,
            validate_only,
        })
        .await
        .map_err(|e| (errors::topic_error(&e), e.to_string()))
    }

    /// One resource of an alter request: a topic gets the overrides `overrides` computes, the
    /// broker is refused; the (error code, message) for the response.
    async fn alter_resource(
        &self,
        resource_type: i8,
        name: &str,
        overrides: impl FnOnce() -> Result<BTreeMap<String, String>, Failure>,
        validate_only: bool,
    ) -> (i16, Option<StrBytes>) {
        let outcome = match resource_type {
            RESOURCE_TOPIC => match overrides() {
                Ok(o) => self.alter_topic(name, o, validate_only).await,
                Err(f) => Err(f),
            },
            RESOURCE_BROKER => Err(self.refuse_broker_alter(name)),
            other => Err((
                ResponseError::InvalidRequest,
                format!("Unsupported resource type {other}."),
            )),
        };
        match outcome {
            Ok(()) => (0, None),
            Err((e, m)) => (e.code(), Some(s(&m))),
        }
    }

    fn refuse_broker_alter(&self, name: &str) -> Failure {
        if !self.is_this_broker(name) {
            return (
                ResponseError::InvalidRequest,
                format!("Broker {name} does not exist."),
            );
        }
        (
            ResponseError::InvalidConfig,
            "Runnel's broker settings are static: set them in server.properties, KAFKA_* \
             variables or --set, and restart."
                .to_string(),
        )
    }

    pub async fn incremental_alter_configs(
        &self,
        req: IncrementalAlterConfigsRequest,
        _version: i16,
    ) -> IncrementalAlterConfigsResponse {
        let mut responses = Vec::with_capacity(req.resources.len());
        for r in &req.resources {
            let (code, msg) = self
                .alter_resource(
                    r.resource_type,
                    &r.resource_name,
                    || self.incremental_topic(r),
                    req.validate_only,
                )
                .await;
            responses.push(
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
                    .with_error_code(code)
                    .with_error_message(msg),
            );
        }
        IncrementalAlterConfigsResponse::default().with_responses(responses)
    }

    fn incremental_topic(
        &self,
        r: &incremental_alter_configs_request::AlterConfigsResource,
    ) -> Result<BTreeMap<String, String>, Failure> {
        let topic = self.metadata.get(&r.resource_name).ok_or_else(|| {
            let e = TopicError::Unknown(r.resource_name.to_string());
            (errors::topic_error(&e), e.to_string())
        })?;
        let mut seen = HashSet::new();
        let mut overrides = topic.overrides.clone();
        for c in &r.configs {
            let name = c.name.to_string();
            if !seen.insert(name.clone()) {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("Error due to duplicate config keys: {name}"),
                ));
            }
            let kind = topic_key(&name)
                .map(|k| k.kind)
                .or_else(|| accepted_key(&name).map(|k| k.kind))
                .ok_or_else(|| {
                    (
                        ResponseError::InvalidConfig,
                        format!("Unknown topic config name: {name}"),
                    )
                })?;
            let value = c.value.as_deref().unwrap_or_default().to_string();
            match c.config_operation {
                OP_SET => {
                    overrides.insert(name, value);
                }
                OP_DELETE => {
                    overrides.remove(&name);
                }
                OP_APPEND | OP_SUBTRACT if kind == ConfigKind::List => {
                    let current = topic.config.get(&name).unwrap_or_default();
                    let mut items: Vec<String> = current
                        .split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                        .collect();
                    for v in value.split(',').map(str::trim).filter(|x| !x.is_empty()) {
                        if c.config_operation == OP_APPEND {
                            if !items.iter().any(|x| x == v) {
                                items.push(v.to_string());
                            }
                        } else {
                            items.retain(|x| x != v);
                        }
                    }
                    overrides.insert(name, items.join(","));
                }
                OP_APPEND | OP_SUBTRACT => {
                    return Err((
                        ResponseError::InvalidConfig,
                        format!("Config value append is not allowed for config key: {name}"),
                    ))
                }
                other => {
                    return Err((
                        ResponseError::InvalidRequest,
                        format!("Unknown config operation {other}"),
                    ))
                }
            }
        }
        Ok(overrides)
    }

    pub async fn alter_configs(
        &self,
        req: AlterConfigsRequest,
        _version: i16,
    ) -> AlterConfigsResponse {
        let mut responses = Vec::with_capacity(req.resources.len());
        for r in &req.resources {
            // The legacy API replaces the whole set of overrides.
            let overrides = || {
                let overrides = r
                    .configs
                    .iter()
                    .filter_map(|c| {
                        c.value
                            .as_ref()
                            .map(|v| (c.name.to_string(), v.to_string()))
                    })
                    .collect();
                if self.metadata.get(&r.resource_name).is_none() {
                    let e = TopicError::Unknown(r.resource_name.to_string());
                    return Err((errors::topic_error(&e), e.to_string()));
                }
                Ok(overrides)
            };
            let (code, msg) = self
                .alter_resource(
                    r.resource_type,
                    &r.resource_name,
                    overrides,
                    req.validate_only,
                )
                .await;
            responses.push(
                alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
                    .with_error_code(code)
                    .with_error_message(msg),
            );
        }
        AlterConfigsResponse::default().with_responses(responses)
    }
}
