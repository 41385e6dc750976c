//! The listeners a node serves: `listeners`, `advertised.listeners`,
//! `listener.security.protocol.map`, `controller.listener.names` and
//! `inter.broker.listener.name` resolved together, as Kafka resolves its EndPoints. Each client
//! listener binds its own address and advertises its own endpoint, so one broker can be
//! `broker:19092` to containers on a compose network and `localhost:9092` to the host.
//!
//! Owns parsing and checking of those keys (each failure one line naming the key). Never
//! binds a socket: the server does, from what this returns.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{anyhow, bail};

/// A client listener: where it binds and what Metadata tells clients that arrive on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Upper case, as Kafka compares listener names.
    pub name: String,
    pub bind: SocketAddr,
    pub advertised_host: String,
    /// 0 until bound when the listener asks for any free port and no advertised port is set.
    pub advertised_port: i32,
}

/// The raw values of the listener keys, as the configuration sources gave them.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub listeners: String,
    pub advertised: Option<String>,
    pub protocol_map: Option<String>,
    pub controller_names: Vec<String>,
    pub inter_broker: Option<String>,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            listeners: "PLAINTEXT://127.0.0.1:9092".to_string(),
            advertised: None,
            protocol_map: None,
            controller_names: vec!["CONTROLLER".to_string()],
            inter_broker: None,
        }
    }
}

/// What a node serves, resolved.
#[derive(Debug, Clone)]
pub struct Listeners {
    /// Every client listener, in the order `listeners` names them.
    pub client: Vec<Listener>,
    /// The controller listener's bind address, if `listeners` has one.
    pub controller: Option<SocketAddr>,
    /// The client listener other brokers reach this one on (replica fetches).
    pub inter_broker: String,
}

/// `NAME://host:port` → (NAME, host, port); a missing `NAME://` means PLAINTEXT.
fn parse_entry(key: &str, entry: &str) -> anyhow::Result<(String, String, u16)> {
    let (name, addr) = entry.split_once("://").unwrap_or(("PLAINTEXT", entry));
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("{key}: {entry:?} has no port"))?;
    let port = port
        .parse()
        .map_err(|_| anyhow!("{key}: bad port in {entry:?}"))?;
    if name.is_empty() {
        bail!("{key}: {entry:?} has no listener name");
    }
    let host = host.trim_matches(|c| c == '[' || c == ']').to_string();
    Ok((name.to_ascii_uppercase(), host, port))
}

fn entries(key: &str, value: &str) -> anyhow::Result<Vec<(String, String, u16)>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| parse_entry(key, e))
        .collect()
}

/// An empty host binds every interface, as Kafka's does.
fn bind_addr(name: &str, host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let text = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| anyhow!("listeners: cannot resolve {host:?} of listener {name}"))
}

/// A listener bound to every interface advertises the machine's name, as Kafka advertises its
/// canonical host name: in a container that is the name other containers reach it by.
fn unspecified_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The security protocol of each listener name: `listener.security.protocol.map` when set,
/// else Kafka's default map (each protocol name maps to itself) plus the controller listeners
/// as PLAINTEXT, as KRaft does.
fn protocols(s: &ListenerSettings) -> anyhow::Result<BTreeMap<String, String>> {
    const KEY: &str = "listener.security.protocol.map";
    let mut map = BTreeMap::new();
    match &s.protocol_map {
        Some(v) => {
            for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (name, proto) = pair
                    .split_once(':')
                    .ok_or_else(|| anyhow!("{KEY}: {pair:?} is not NAME:PROTOCOL"))?;
                map.insert(
                    name.trim().to_ascii_uppercase(),
                    proto.trim().to_ascii_uppercase(),
                );
            }
        }
        None => {
            for p in ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] {
                map.insert(p.to_string(), p.to_string());
            }
        }
    }
    for c in &s.controller_names {
        map.entry(c.clone())
            .or_insert_with(|| "PLAINTEXT".to_string());
    }
    Ok(map)
}

pub fn resolve(s: &ListenerSettings) -> anyhow::Result<Listeners> {
    let protocols = protocols(s)?;
    let listed = entries("listeners", &s.listeners)?;
    let mut seen_ports = BTreeMap::new();
    for (i, (name, _, port)) in listed.iter().enumerate() {
        if listed[..i].iter().any(|(n, ..)| n == name) {
            bail!("listeners: the listener name {name} appears twice");
        }
        if *port != 0 {
            if let Some(other) = seen_ports.insert(*port, name) {
                bail!("listeners: {other} and {name} both use port {port}");
            }
        }
        match protocols.get(name).map(String::as_str) {
            Some("PLAINTEXT") => {}
            Some(p) => bail!(
                "listeners: {name} uses the security protocol {p}, which Runnel does not support yet (only PLAINTEXT)"
            ),
            None => bail!(
                "listener.security.protocol.map has no security protocol for listener {name}"
            ),
        }
    }
    let advertised = match &s.advertised {
        Some(v) => entries("advertised.listeners", v)?,
        None => Vec::new(),
    };
    if let Some((name, ..)) = advertised
        .iter()
        .find(|(n, ..)| !listed.iter().any(|(l, ..)| l == n))
    {
        bail!("advertised.listeners: {name} is not a listener of listeners");
    }
    let is_controller = |name: &str| s.controller_names.iter().any(|c| c == name);
    let mut client = Vec::new();
    let mut controller = None;
    for (name, host, port) in &listed {
        let bind = bind_addr(name, host, *port)?;
        if is_controller(name) {
            controller.get_or_insert(bind);
            continue;
        }
        let (adv_host, adv_port) = match advertised.iter().find(|(n, ..)| n == name) {
            Some((_, h, p)) => (h.clone(), *p),
            None => (host.clone(), *port),
        };
        let advertised_host = if adv_host.is_empty() || adv_host == "0.0.0.0" || adv_host == "::" {
            unspecified_host_name()
        } else {
            adv_host
        };
        client.push(Listener {
            name: name.clone(),
            bind,
            advertised_host,
            advertised_port: i32::from(adv_port),
        });
    }
    let inter_broker = match &s.inter_broker {
        Some(name) => {
            let name = name.trim().to_ascii_uppercase();
            if !client.iter().any(|l| l.name == name) {
                bail!("inter.broker.listener.name: {name} is not a client listener of listeners");
            }
            name
        }
        // Kafka's default, security.inter.broker.protocol=PLAINTEXT, names the PLAINTEXT
        // listener; without one, the first client listener serves.
        None => client
            .iter()
            .find(|l| l.name == "PLAINTEXT")
            .or(client.first())
            .map(|l| l.name.clone())
            .unwrap_or_default(),
    };
    Ok(Listeners {
        client,
        controller,
        inter_broker,
    })
}

impl Listeners {
    pub fn find(&self, name: &str) -> Option<&Listener> {
        self.client.iter().find(|l| l.name == name)
    }

    /// The `listeners` value as resolved, for DescribeConfigs.
    pub fn describe(&self) -> (String, String) {
        let join = |f: &dyn Fn(&Listener) -> String| {
            self.client.iter().map(f).collect::<Vec<_>>().join(",")
        };
        (
            join(&|l| format!("{}://{}", l.name, l.bind)),
            join(&|l| format!("{}://{}:{}", l.name, l.advertised_host, l.advertised_port)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(listeners: &str, advertised: Option<&str>, map: Option<&str>) -> ListenerSettings {
        ListenerSettings {
            listeners: listeners.to_string(),
            advertised: advertised.map(str::to_string),
            protocol_map: map.map(str::to_string),
            ..ListenerSettings::default()
        }
    }

    #[test]
    fn dual_listener_pattern_of_compose_files() {
        let s = settings(
            "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:9093,PLAINTEXT_HOST://0.0.0.0:9092",
            Some("PLAINTEXT://broker:19092,PLAINTEXT_HOST://localhost:9092"),
            Some("CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT"),
        );
        let l = resolve(&s).expect("resolve");
        assert_eq!(l.client.len(), 2);
        assert_eq!(l.controller, Some("127.0.0.1:9093".parse().expect("addr")));
        let host = l.find("PLAINTEXT_HOST").expect("host listener");
        assert_eq!(host.bind, "0.0.0.0:9092".parse().expect("addr"));
        assert_eq!(
            (host.advertised_host.as_str(), host.advertised_port),
            ("localhost", 9092)
        );
        let internal = l.find("PLAINTEXT").expect("internal");
        assert_eq!(internal.advertised_host, "broker");
        assert_eq!(l.inter_broker, "PLAINTEXT");
    }

    #[test]
    fn each_bad_setting_is_one_error_naming_its_key() {
        let cases = [
            (settings("SSL://:9094", None, None), "only PLAINTEXT"),
            (
                settings("INTERNAL://:9094", None, None),
                "no security protocol for listener INTERNAL",
            ),
            (
                settings("A://:1,A://:2", None, Some("A:PLAINTEXT")),
                "appears twice",
            ),
            (
                settings("A://:1,B://:1", None, Some("A:PLAINTEXT,B:PLAINTEXT")),
                "both use port 1",
            ),
            (
                settings("PLAINTEXT://:1", Some("OTHER://x:1"), None),
                "advertised.listeners",
            ),
            (settings("PLAINTEXT://x", None, None), "has no port"),
        ];
        for (s, want) in cases {
            let err = resolve(&s).expect_err(want).to_string();
            assert!(err.contains(want), "{err} (wanted {want})");
        }
        let mut s = settings("PLAINTEXT://:1", None, None);
        s.inter_broker = Some("INTERNAL".into());
        assert!(resolve(&s)
            .expect_err("unknown inter-broker listener")
            .to_string()
            .starts_with("inter.broker.listener.name"));
    }

    #[test]
    fn unspecified_hosts_advertise_the_host_name() {
        let l = resolve(&settings("PLAINTEXT://:9092", None, None)).expect("resolve");
        assert_eq!(l.client[0].bind, "0.0.0.0:9092".parse().expect("addr"));
        assert_eq!(l.client[0].advertised_host, unspecified_host_name());
    }
}
