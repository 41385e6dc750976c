//! `runnel health`: asks a broker for ApiVersions and says whether it answered, by exit code
//! (Docker's HEALTHCHECK runs it in Runnel's image); a controller-only node, which serves no
//! Kafka client, is healthy when its controller listener accepts. Never changes anything.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context};

use runnel::client::Connection;
use runnel::config::Config;

/// What to ask: a broker speaks Kafka; a controller-only node's listener speaks the quorum's
/// own framing, so accepting is all it can show.
pub enum Target {
    Broker(String),
    Controller(String),
}

/// Ok once the target answers (a broker: ApiVersions without error) within `timeout`.
pub async fn check(target: &Target, timeout: Duration) -> anyhow::Result<()> {
    let ask = async {
        match target {
            Target::Broker(addr) => Connection::connect(addr).await.map(drop),
            Target::Controller(addr) => tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map(drop)
                .with_context(|| format!("connecting to {addr}")),
        }
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| anyhow!("no answer within {timeout:?}"))?
}

/// This machine's node, as its configuration says: its first client listener, else its
/// controller listener, reached over loopback when the listener binds every interface.
pub fn local_target(config: &Config) -> anyhow::Result<Target> {
    match (config.listeners.client.first(), config.listeners.controller) {
        (Some(l), _) => Ok(Target::Broker(reachable(l.bind))),
        (None, Some(c)) => Ok(Target::Controller(reachable(c))),
        (None, None) => Err(anyhow!("the configuration has no listener")),
    }
}

fn reachable(mut addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr.to_string()
}
