//! `runnel health`: asks a broker for ApiVersions and says whether it answered, by exit code
//! (Docker's HEALTHCHECK runs it in Runnel's image). Never changes anything.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::anyhow;

use runnel::client::Connection;
use runnel::config::Config;

/// Ok once `addr` answers ApiVersions without error within `timeout`.
pub async fn check(addr: &str, timeout: Duration) -> anyhow::Result<()> {
    tokio::time::timeout(timeout, Connection::connect(addr))
        .await
        .map_err(|_| anyhow!("{addr} did not answer ApiVersions within {timeout:?}"))??;
    Ok(())
}

/// Where this machine's broker answers, as its configuration says: its first client listener,
/// reached over loopback when that listener binds every interface.
pub fn local_address(config: &Config) -> anyhow::Result<String> {
    let listener = config
        .listeners
        .client
        .first()
        .ok_or_else(|| anyhow!("the configuration has no client listener"))?;
    let mut addr: SocketAddr = listener.bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr.to_string())
}
