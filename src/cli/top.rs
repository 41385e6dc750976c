//! `runnel top`: the hottest partitions and their heaviest keys, read from each broker's
//! metrics listener (`/top`) and merged; a live view redrawn in place on a terminal, one
//! report otherwise, JSON with `--json`.

use std::io::{IsTerminal, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, Context};
use runnel::metrics::top::Report;

const TIMEOUT: Duration = Duration::from_secs(5);

/// One broker's report, by a plain HTTP GET.
fn fetch(addr: &str) -> anyhow::Result<Report> {
    let addr = addr.strip_prefix("http://").unwrap_or(addr);
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    write!(
        s,
        "GET /top HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.take(64 << 20).read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{addr}: not an HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(anyhow!(
            "{addr}: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    serde_json::from_str(body).with_context(|| format!("{addr}: reading /top"))
}

fn gather(addrs: &[String], limit: usize) -> anyhow::Result<Report> {
    let reports = addrs
        .iter()
        .map(|a| fetch(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Report::merge(reports, limit))
}

fn rate(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e4 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.1}"),
    }
}

fn render(r: &Report) {
    let rows: Vec<Vec<String>> = r
        .partitions
        .iter()
        .map(|p| {
            let key = p.top_keys.first().map_or_else(String::new, |k| {
                format!("{} ({:.0}%)", k.key.escape_debug(), k.share * 100.0)
            });
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                p.leader.to_string(),
                rate(p.records_per_s[0]),
                rate(p.records_per_s[1]),
                rate(p.records_per_s[2]),
                format!("{:.2}", p.bytes_per_s[0] / 1e6),
                format!("{:.2}", p.skew),
                key,
            ]
        })
        .collect();
    super::table::print(
        &[
            "TOPIC",
            "PARTITION",
            "LEADER",
            "REC/S 1M",
            "5M",
            "15M",
            "MB/S 1M",
            "SKEW",
            "TOP KEY",
        ],
        &rows,
    );
}

/// `interval`: how often the live view redraws.
pub fn run(addrs: &[String], json: bool, limit: usize, interval: Duration) -> anyhow::Result<()> {
    if json {
        let report = gather(addrs, limit)?;
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if !std::io::stdout().is_terminal() {
        render(&gather(addrs, limit)?);
        return Ok(());
    }
    loop {
        let report = gather(addrs, limit)?;
        // Home and clear, then the table: a refreshing view like top(1); Ctrl-C ends it.
        out!(
            "\x1b[H\x1b[2Jrunnel top: {} broker(s), every {:?}, Ctrl-C to quit\n",
            addrs.len(),
            interval
        );
        render(&report);
        std::thread::sleep(interval);
    }
}
