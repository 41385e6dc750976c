//! `runnel produce`: records from stdin or a file, one per line, as kafka-console-producer
//! reads them (`--key-separator` splits key from value); lines that arrive together go in one
//! request, a line typed alone is sent at once.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use runnel::client::producer::{OutRecord, ProduceOptions, Producer};

/// Lines sent in one request at most.
const MAX_BATCH: usize = 1000;

pub struct ProduceCommand {
    pub options: ProduceOptions,
    pub key_separator: Option<String>,
    pub headers: Vec<(String, Bytes)>,
    pub file: Option<PathBuf>,
    pub print_offsets: bool,
}

/// `acks` as the console producer takes it: 0, 1, all or -1.
pub fn parse_acks(v: &str) -> anyhow::Result<i16> {
    match v {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        _ => bail!("--acks must be 0, 1, all or -1, not {v:?}"),
    }
}

/// `key=value` of `--header`.
pub fn parse_header(v: &str) -> anyhow::Result<(String, Bytes)> {
    let (k, value) = v
        .split_once('=')
        .ok_or_else(|| anyhow!("--header expects key=value, got {v:?}"))?;
    Ok((k.to_string(), Bytes::copy_from_slice(value.as_bytes())))
}

/// Lines come from a thread, since reading stdin blocks.
fn read_lines(file: Option<PathBuf>) -> tokio::sync::mpsc::Receiver<anyhow::Result<String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(MAX_BATCH * 4);
    std::thread::spawn(move || {
        let reader: Box<dyn BufRead> = match &file {
            Some(path) => match std::fs::File::open(path) {
                Ok(f) => Box::new(std::io::BufReader::new(f)),
                Err(e) => {
                    let _ = tx.blocking_send(Err(anyhow!("opening {}: {e}", path.display())));
                    return;
                }
            },
            None => Box::new(std::io::stdin().lock()),
        };
        for line in reader.lines() {
            let line = line.context("reading the input");
            let failed = line.is_err();
            if tx.blocking_send(line).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// One line as a record: split at the key separator when there is one.
fn record(
    line: &str,
    number: u64,
    separator: Option<&str>,
    headers: &[(String, Bytes)],
) -> anyhow::Result<OutRecord> {
    let (key, value) = match separator {
        Some(sep) => {
            let (k, v) = line
                .split_once(sep)
                .ok_or_else(|| anyhow!("line {number} has no key separator {sep:?}: {line:?}"))?;
            (Some(Bytes::copy_from_slice(k.as_bytes())), v)
        }
        None => (None, line),
    };
    Ok(OutRecord {
        key,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: headers.to_vec(),
    })
}

impl ProduceCommand {
    /// Sends every line; the number of records written.
    pub async fn run(self) -> anyhow::Result<u64> {
        let Self {
            options,
            key_separator,
            headers,
            file,
            print_offsets,
        } = self;
        let topic = options.topic.clone();
        let mut producer = Producer::connect(options).await?;
        let mut lines = read_lines(file);
        let mut number = 0u64;
        while let Some(first) = lines.recv().await {
            let mut batch = vec![first?];
            while batch.len() < MAX_BATCH {
                match lines.try_recv() {
                    Ok(line) => batch.push(line?),
                    Err(_) => break,
                }
            }
            let mut records = Vec::with_capacity(batch.len());
            for line in &batch {
                number += 1;
                records.push(record(line, number, key_separator.as_deref(), &headers)?);
            }
            for w in producer.send(records).await? {
                if print_offsets {
                    out!("{topic}-{}@{}", w.partition, w.offset);
                }
            }
        }
        Ok(number)
    }
}
