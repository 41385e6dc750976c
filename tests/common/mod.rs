//! Starts the real `runnel` binary on 127.0.0.1:0 in a temp directory, as a user would, so tests
//! can kill -9 it, restart it on the same data, and drive it with real clients.
#![allow(dead_code)]

pub mod batches;
pub mod cluster;
pub mod proxy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct BrokerProcess {
    child: Option<Child>,
    pub addr: String,
    /// `host:port` of /metrics, when the broker serves it.
    pub metrics: Option<String>,
    pub data: PathBuf,
    extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl BrokerProcess {
    pub fn start(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let mut b = Self::start_in(&data, extra);
        b._tmp = Some(tmp);
        b
    }

    /// Configured by `KAFKA_*` variables alone, as a docker image is: `addr` is the first
    /// listener's.
    pub fn start_env(env: &[(&str, String)]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let mut vars: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        vars.push(("KAFKA_LOG_DIRS".into(), data.display().to_string()));
        let (child, addr, metrics) = spawn_with(&[], &vars);
        Self {
            child: Some(child),
            addr,
            metrics,
            data,
            extra: Vec::new(),
            _tmp: Some(tmp),
        }
    }

    pub fn start_in(data: &Path, extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr, metrics) = spawn(data, &extra, "127.0.0.1:0");
        Self {
            child: Some(child),
            addr,
            metrics,
            data: data.to_path_buf(),
            extra,
            _tmp: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGKILL: no flush, no checkpoint, no clean-shutdown marker.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the orderly shutdown.
    pub fn terminate(&mut self) {
        if let Some(c) = self.child.take() {
            terminate(c);
        }
    }

    /// Starts again on the same data directory and the same port.
    pub fn restart(&mut self) {
        self.kill9();
        let (child, addr, metrics) = spawn(&self.data, &self.extra, &self.addr);
        self.child = Some(child);
        self.addr = addr;
        self.metrics = metrics;
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The child, its client address and its metrics address (from its "listening" line).
type Started = (Child, String, Option<String>);

fn spawn(data: &Path, extra: &[String], listen: &str) -> Started {
    let mut args = vec![
        "--listen".to_string(),
        listen.to_string(),
        "--data".to_string(),
        data.display().to_string(),
    ];
    args.extend_from_slice(extra);
    spawn_with(&args, &[])
}

fn spawn_with(args: &[String], env: &[(String, String)]) -> Started {
    // The same port may still be in TIME_WAIT-free transition right after a kill: retry briefly.
    for attempt in 0..50 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runnel"))
            .arg("serve")
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUNNEL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn runnel");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        if let Some(rest) = line.strip_prefix("runnel listening on ") {
            let addr = rest.split_whitespace().next().expect("address").to_string();
            let metrics = rest
                .split_once("metrics on http://")
                .map(|(_, m)| m.trim_end().trim_end_matches(')').to_string());
            return (child, addr, metrics);
        }
        let _ = child.wait();
        assert!(attempt < 49, "runnel did not start: {line:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    unreachable!()
}

/// SIGTERM a broker process and wait (20 s at most) for its orderly shutdown.
pub fn terminate(mut c: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(c.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
    panic!("broker did not shut down within 20 s of SIGTERM");
}
