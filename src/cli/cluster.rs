//! `runnel cluster status`: the metadata quorum as `kafka-metadata-quorum describe --status`
//! and `--replication` show it.

use serde_json::json;

use super::table;
use runnel::client::admin;

pub async fn status(bootstrap: &str, as_json: bool) -> anyhow::Result<()> {
    let q = admin::describe_quorum(bootstrap).await?;
    let max_lag = q
        .voters
        .iter()
        .map(|(_, end, _)| (q.high_watermark - end).max(0))
        .max()
        .unwrap_or(0);
    if as_json {
        let voters: Vec<_> = q
            .voters
            .iter()
            .map(|(id, end, caught_up)| {
                json!({"node_id": id, "log_end_offset": end, "lag": (q.high_watermark - end).max(0),
                       "last_caught_up_timestamp": caught_up, "leader": *id == q.leader})
            })
            .collect();
        table::print_json(&json!({
            "cluster_id": q.cluster_id, "leader_id": q.leader, "leader_epoch": q.epoch,
            "high_watermark": q.high_watermark, "max_follower_lag": max_lag, "voters": voters,
        }));
        return Ok(());
    }
    let ids: Vec<String> = q.voters.iter().map(|(id, _, _)| id.to_string()).collect();
    out!("ClusterId:       {}", q.cluster_id);
    out!("LeaderId:        {}", q.leader);
    out!("LeaderEpoch:     {}", q.epoch);
    out!("HighWatermark:   {}", q.high_watermark);
    out!("MaxFollowerLag:  {max_lag}");
    out!("CurrentVoters:   [{}]", ids.join(","));
    out!("");
    let rows: Vec<Vec<String>> = q
        .voters
        .iter()
        .map(|(id, end, caught_up)| {
            vec![
                id.to_string(),
                end.to_string(),
                (q.high_watermark - end).max(0).to_string(),
                caught_up.to_string(),
                if *id == q.leader {
                    "Leader"
                } else {
                    "Follower"
                }
                .to_string(),
            ]
        })
        .collect();
    table::print(
        &[
            "NODE",
            "LOG-END-OFFSET",
            "LAG",
            "LAST-CAUGHT-UP-MS",
            "STATUS",
        ],
        &rows,
    );
    Ok(())
}
