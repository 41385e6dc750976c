//! One client connection: frames typed requests, matches responses by correlation id, and
//! uses for each API the highest version both sides speak.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::net::framing::{self, FrameError};

const CLIENT_ID: &str = "runnel-cli";
/// Responses larger than this are refused rather than allocated.
const MAX_RESPONSE: usize = 256 * 1024 * 1024;

pub struct Connection {
    stream: TcpStream,
    /// Responses are read into it (see `net::framing`).
    buf: BytesMut,
    correlation: i32,
    /// API key → highest version the broker serves.
    versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let _ = stream.set_nodelay(true);
        let mut c = Self {
            stream,
            buf: framing::buffer(),
            correlation: 0,
            versions: HashMap::new(),
        };
        let resp = c
            .send_version(
                ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    ))),
                3,
            )
            .await?;
        if resp.error_code != 0 {
            bail!("ApiVersions failed with error {}", resp.error_code);
        }
        c.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(c)
    }

    /// The version to use for `R`: the highest both this client and the broker know.
    pub fn version<R: Request>(&self) -> anyhow::Result<i16> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown API key {}", R::KEY))?;
        let (lo, hi) = self
            .versions
            .get(&R::KEY)
            .copied()
            .ok_or_else(|| anyhow!("the broker does not serve {key:?}"))?;
        let ours = R::VERSIONS;
        let v = hi.min(ours.max);
        if v < lo.max(ours.min) {
            bail!("no common version of {key:?}");
        }
        Ok(v)
    }

    pub async fn send<R: Request>(&mut self, req: R) -> anyhow::Result<R::Response> {
        let v = self.version::<R>()?;
        self.send_version(req, v).await
    }

    /// Sends a request the broker does not answer (Produce with acks=0).
    pub async fn send_no_response<R: Request>(&mut self, req: R) -> anyhow::Result<()> {
        let v = self.version::<R>()?;
        self.write_request(req, v).await
    }

    async fn write_request<R: Request>(&mut self, req: R, version: i16) -> anyhow::Result<()> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, R::header_version(version))?;
        req.encode(&mut buf, version)?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await?;
        Ok(())
    }

    pub async fn send_version<R: Request>(
        &mut self,
        req: R,
        version: i16,
    ) -> anyhow::Result<R::Response> {
        self.write_request(req, version).await?;
        framing::release(&mut self.buf);
        let mut body =
            match framing::read_frame(&mut self.stream, &mut self.buf, MAX_RESPONSE).await {
                Ok(body) => body,
                Err(FrameError::Oversized(size)) => bail!("response of {size} bytes refused"),
                Err(FrameError::Closed) => bail!("the broker closed the connection"),
                Err(FrameError::Io(e)) => return Err(e).context("reading a response"),
            };
        let rh = ResponseHeader::decode(&mut body, R::Response::header_version(version))?;
        if rh.correlation_id != self.correlation {
            bail!("response out of order");
        }
        let resp = R::Response::decode(&mut body, version)?;
        if body.has_remaining() {
            tracing::debug!(left = body.remaining(), "response had trailing bytes");
        }
        Ok(resp)
    }
}
