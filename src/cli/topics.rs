//! `runnel topics ...`, `runnel configs ...` and `runnel offsets`.

use std::collections::BTreeMap;

use serde_json::json;

use super::table;
use runnel::client::admin::{self, ConfigValue};

pub async fn list(bootstrap: &str, as_json: bool) -> anyhow::Result<()> {
    let topics = admin::list_topics(bootstrap).await?;
    if as_json {
        let v: Vec<_> = topics
            .iter()
            .map(|(n, p, i)| json!({"topic": n, "partitions": p, "internal": i}))
            .collect();
        table::print_json(&json!(v));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = topics
        .into_iter()
        .map(|(n, p, i)| vec![n, p.to_string(), if i { "yes" } else { "" }.to_string()])
        .collect();
    table::print(&["TOPIC", "PARTITIONS", "INTERNAL"], &rows);
    Ok(())
}

fn configs_json(configs: &[ConfigValue]) -> serde_json::Value {
    json!(configs
        .iter()
        .map(|c| json!({"name": c.name, "value": c.value, "source": c.source, "read_only": c.read_only}))
        .collect::<Vec<_>>())
}

fn print_configs(configs: &[ConfigValue]) {
    let rows: Vec<Vec<String>> = configs
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.value.clone().unwrap_or_default(),
                c.source.to_string(),
            ]
        })
        .collect();
    table::print(&["CONFIG", "VALUE", "SOURCE"], &rows);
}

/// Which partitions `topics describe` lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionFilter {
    /// Only those whose ISR is smaller than their replica set.
    pub under_replicated: bool,
    /// Only those without a leader.
    pub unavailable: bool,
}

/// "offline", "under-replicated" or "" for a partition (leader, replicas, isr).
fn partition_status(leader: i32, replicas: &[i32], isr: &[i32]) -> &'static str {
    if leader < 0 {
        "offline"
    } else if isr.len() < replicas.len() {
        "under-replicated"
    } else {
        ""
    }
}

pub async fn describe(
    bootstrap: &str,
    topic: &str,
    as_json: bool,
    filter: PartitionFilter,
) -> anyhow::Result<()> {
    let t = admin::describe_topic(bootstrap, topic).await?;
    let keys: Vec<(String, i32)> = t
        .partitions
        .iter()
        .map(|(p, ..)| (t.name.clone(), *p))
        .collect();
    let hws = admin::list_offsets(bootstrap, &keys, -1).await?;
    let hw = |p: i32| {
        hws.get(&(t.name.clone(), p))
            .and_then(|r| r.as_ref().ok())
            .map(|(o, _)| *o)
    };
    let ends = admin::replica_log_ends(bootstrap, &keys).await?;
    // Each follower's lag: how many offsets its log ends behind the leader's.
    let lags = |p: i32, leader: i32| -> BTreeMap<i32, Option<i64>> {
        let Some(by_replica) = ends.get(&(t.name.clone(), p)) else {
            return BTreeMap::new();
        };
        let leader_end = by_replica.get(&leader).and_then(|r| r.as_ref().ok());
        by_replica
            .iter()
            .filter(|(r, _)| **r != leader)
            .map(|(r, end)| {
                let lag = match (leader_end, end) {
                    (Some(l), Ok(e)) => Some((l - e).max(0)),
                    _ => None,
                };
                (*r, lag)
            })
            .collect()
    };
    // The largest follower lag, or "-" when some follower could not be asked.
    let max_lag = |p: i32, leader: i32| -> Option<i64> {
        let l = lags(p, leader);
        l.values().try_fold(0i64, |m, lag| lag.map(|x| m.max(x)))
    };
    let shown: Vec<_> = t
        .partitions
        .iter()
        .filter(|(_, l, r, i)| {
            let status = partition_status(*l, r, i);
            (!filter.under_replicated || status == "under-replicated")
                && (!filter.unavailable || status == "offline")
        })
        .collect();
    if as_json {
        let partitions: Vec<_> = shown
            .iter()
            .map(|(p, l, r, i)| {
                let lag: BTreeMap<String, Option<i64>> = lags(*p, *l)
                    .into_iter()
                    .map(|(r, lag)| (r.to_string(), lag))
                    .collect();
                json!({"partition": p, "leader": l, "replicas": r, "isr": i,
                       "high_watermark": hw(*p), "follower_lag": lag,
                       "status": partition_status(*l, r, i)})
            })
            .collect();
        table::print_json(&json!({
            "topic": t.name, "topic_id": t.id, "internal": t.internal,
            "partitions": partitions, "configs": configs_json(&t.configs),
        }));
        return Ok(());
    }
    out!(
        "Topic {} (id {}{}) has {} partition{}",
        t.name,
        t.id,
        if t.internal { ", internal" } else { "" },
        t.partitions.len(),
        if t.partitions.len() == 1 { "" } else { "s" }
    );
    let ids = |v: &[i32]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|(p, l, r, i)| {
            vec![
                p.to_string(),
                l.to_string(),
                ids(r),
                ids(i),
                table::dash(hw(*p)),
                table::dash(max_lag(*p, *l)),
                partition_status(*l, r, i).to_string(),
            ]
        })
        .collect();
    table::print(
        &[
            "PARTITION",
            "LEADER",
            "REPLICAS",
            "ISR",
            "HIGH-WATERMARK",
            "MAX-LAG",
            "STATUS",
        ],
        &rows,
    );
    out!("");
    print_configs(&t.configs);
    Ok(())
}

pub async fn describe_configs(
    bootstrap: &str,
    resource_type: i8,
    name: &str,
    as_json: bool,
) -> anyhow::Result<()> {
    let configs = admin::describe_configs(bootstrap, resource_type, name).await?;
    if as_json {
        table::print_json(&configs_json(&configs));
    } else {
        print_configs(&configs);
    }
    Ok(())
}

/// `earliest`, `latest`, `max-timestamp` or milliseconds since the epoch.
pub fn parse_time(v: &str) -> anyhow::Result<i64> {
    Ok(match v {
        "earliest" => -2,
        "latest" => -1,
        "max-timestamp" => -3,
        ms => ms
            .parse()
            .map_err(|_| anyhow::anyhow!("--time takes earliest, latest, max-timestamp or ms"))?,
    })
}

pub async fn offsets(bootstrap: &str, topic: &str, time: i64, as_json: bool) -> anyhow::Result<()> {
    let found = admin::offsets(bootstrap, topic, time).await?;
    if as_json {
        let v: Vec<_> = found
            .iter()
            .map(|(p, o, ts)| json!({"partition": p, "offset": o, "timestamp": ts}))
            .collect();
        table::print_json(&json!(v));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = found
        .into_iter()
        .map(|(p, o, ts)| vec![p.to_string(), o.to_string(), ts.to_string()])
        .collect();
    table::print(&["PARTITION", "OFFSET", "TIMESTAMP"], &rows);
    Ok(())
}

/// `key=value` arguments.
pub fn parse_pairs(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("expected key=value, got {kv:?}"))
        })
        .collect()
}
