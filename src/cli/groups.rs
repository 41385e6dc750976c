//! `runnel groups list | describe | delete`.

use serde_json::json;

use super::table;
use runnel::client::admin;

pub async fn list(bootstrap: &str, as_json: bool) -> anyhow::Result<()> {
    let groups = admin::list_groups(bootstrap).await?;
    if as_json {
        let v: Vec<_> = groups
            .iter()
            .map(|g| json!({"group": g.id, "state": g.state, "protocol_type": g.protocol_type}))
            .collect();
        table::print_json(&json!(v));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = groups
        .into_iter()
        .map(|g| vec![g.id, g.state, g.protocol_type])
        .collect();
    table::print(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows);
    Ok(())
}

pub async fn describe(bootstrap: &str, group: &str, as_json: bool) -> anyhow::Result<()> {
    let d = admin::describe_group(bootstrap, group).await?;
    if as_json {
        let partitions: Vec<_> = d
            .partitions
            .iter()
            .map(|p| {
                let owner = p.owner.as_ref();
                json!({
                    "topic": p.topic, "partition": p.partition,
                    "committed_offset": p.committed, "log_end_offset": p.end, "lag": p.lag(),
                    "consumer_id": owner.map(|o| &o.0), "client_id": owner.map(|o| &o.1),
                    "host": owner.map(|o| &o.2),
                })
            })
            .collect();
        table::print_json(&json!({
            "group": d.id, "state": d.state, "protocol_type": d.protocol_type,
            "protocol": d.protocol, "members": d.members, "partitions": partitions,
        }));
        return Ok(());
    }
    out!(
        "Group {} is {} ({} member{}, protocol {}{})",
        d.id,
        d.state,
        d.members,
        if d.members == 1 { "" } else { "s" },
        if d.protocol_type.is_empty() {
            "-"
        } else {
            &d.protocol_type
        },
        if d.protocol.is_empty() {
            String::new()
        } else {
            format!("/{}", d.protocol)
        },
    );
    let rows: Vec<Vec<String>> = d
        .partitions
        .iter()
        .map(|p| {
            let (member, client, host) = p
                .owner
                .clone()
                .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                table::dash(p.committed),
                table::dash(p.end),
                table::dash(p.lag()),
                member,
                host,
                client,
            ]
        })
        .collect();
    table::print(
        &[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ],
        &rows,
    );
    Ok(())
}

pub async fn delete(bootstrap: &str, group: &str) -> anyhow::Result<()> {
    admin::delete_group(bootstrap, group).await?;
    out!("Deleted group {group}");
    Ok(())
}
