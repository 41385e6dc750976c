//! Several real `runnel serve` processes forming one cluster on 127.0.0.1: each node is a
//! broker and a voter of the controller quorum, with its own client port, controller port and
//! data directory. Nodes can be killed (-9) and restarted on the same data and ports.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct Node {
    pub id: i32,
    /// `process.roles`.
    pub roles: &'static str,
    pub client_port: u16,
    pub controller_port: u16,
    /// Where the node serves /metrics, read from its "listening" line: each node binds port 0
    /// (a port picked free beforehand could be taken by a parallel test before the node binds).
    metrics: Option<String>,
    pub data: PathBuf,
    /// Extra `key=value` settings given to every start (later ones win).
    pub settings: Vec<String>,
    child: Option<Child>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    voters: String,
    _tmp: tempfile::TempDir,
}

/// A free port below the kernel's ephemeral range (32768 and up): a port from that range can
/// be taken as some outgoing connection's source port between this check and the node
/// binding it (seen: "Address already in use"). Each call in a process moves on to the next.
fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() * 131;
    for _ in 0..PORTS {
        let port = 20_000 + ((start + NEXT.fetch_add(1, Ordering::Relaxed)) % PORTS) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32767");
}

const PORTS: u32 = 12_768;

impl Node {
    fn spawn(&mut self, voters: &str) {
        let child = Command::new(env!("CARGO_BIN_EXE_runnel"))
            .arg("serve")
            .arg("--data")
            .arg(&self.data)
            .args(["--set", &format!("node.id={}", self.id)])
            .args(["--set", &format!("process.roles={}", self.roles)])
            .args(["--set", &format!("listeners={}", self.listeners())])
            .args(["--set", &format!("controller.quorum.voters={voters}")])
            .args(["--set", "num.partitions=3"])
            .args(["--set", "metrics.listeners=http://127.0.0.1:0"])
            .args(self.settings.iter().flat_map(|s| ["--set", s.as_str()]))
            // openraft reports unreachable peers at ERROR while the others start or are killed.
            .env("RUNNEL_LOG", "warn,openraft=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn runnel");
        self.child = Some(child);
    }

    fn listeners(&self) -> String {
        let client = format!("PLAINTEXT://127.0.0.1:{}", self.client_port);
        let controller = format!("CONTROLLER://127.0.0.1:{}", self.controller_port);
        match self.roles {
            "controller" => controller,
            "broker" => client,
            _ => format!("{client},{controller}"),
        }
    }

    /// Waits for the "listening" line (registered with the quorum and caught up).
    fn wait_ready(&mut self) {
        let child = self.child.as_mut().expect("running");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        assert!(
            line.starts_with("runnel listening on ")
                || line.starts_with("runnel controller listening on "),
            "node {} did not start: {line:?}",
            self.id
        );
        self.metrics = line
            .split_once("metrics on http://")
            .map(|(_, m)| m.trim_end().trim_end_matches(')').to_string());
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn metrics_addr(&self) -> String {
        self.metrics.clone().expect("the node serves /metrics")
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM: a controlled shutdown (leaderships move before the process exits).
    pub fn terminate(&mut self) {
        if let Some(c) = self.child.take() {
            super::terminate(c);
        }
    }
}

impl Cluster {
    /// Starts `n` nodes at once, each a broker and a voter (a quorum needs a majority before
    /// any node is ready).
    pub fn start(n: i32) -> Self {
        Self::start_with((1..=n).map(|_| "broker,controller").collect())
    }

    /// Starts one node per entry of `roles` (node ids from 1); the voters are the nodes whose
    /// roles include `controller`.
    pub fn start_with(roles: Vec<&'static str>) -> Self {
        Self::start_configured(roles, &[])
    }

    /// As `start_with`, each node also given `settings` (`key=value`).
    pub fn start_configured(roles: Vec<&'static str>, settings: &[&str]) -> Self {
        let mut c = Self::prepare(roles, settings);
        c.launch();
        c
    }

    /// Starts every node of a prepared cluster and waits until each is ready.
    pub fn launch(&mut self) {
        let voters = self.voters.clone();
        for node in &mut self.nodes {
            node.spawn(&voters);
        }
        for node in &mut self.nodes {
            node.wait_ready();
        }
    }

    /// Ports, directories and settings of a cluster, nothing started: a test can change a
    /// node's settings (say, route it through a proxy) before `launch`.
    pub fn prepare(roles: Vec<&'static str>, settings: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let nodes: Vec<Node> = (1..)
            .zip(roles)
            .map(|(id, roles)| Node {
                id,
                roles,
                client_port: free_port(),
                controller_port: free_port(),
                metrics: None,
                data: tmp.path().join(format!("node{id}")),
                settings: settings.iter().map(|s| s.to_string()).collect(),
                child: None,
            })
            .collect();
        let voters = nodes
            .iter()
            .filter(|n| n.roles.contains("controller"))
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        Self {
            nodes,
            voters,
            _tmp: tmp,
        }
    }

    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.is_running() && n.roles.contains("broker"))
            .map(Node::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&mut self, id: i32) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    /// Starts a killed node again on its data directory and ports, and waits until it is ready.
    pub fn restart(&mut self, id: i32) {
        let voters = self.voters.clone();
        let node = self.node(id);
        node.kill9();
        node.spawn(&voters);
        node.wait_ready();
    }

    /// Starts several killed nodes together (they may need each other for a quorum).
    pub fn restart_all(&mut self) {
        let voters = self.voters.clone();
        for node in &mut self.nodes {
            node.kill9();
            node.spawn(&voters);
        }
        for node in &mut self.nodes {
            node.wait_ready();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill9();
        }
    }
}

/// Polls `check` every 100 ms until it holds or `timeout` passes; returns whether it held and
/// how long it took.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> (bool, Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return (true, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (false, start.elapsed())
}
