//! The controller listener's wire: `[length u32][JSON envelope]` frames over TCP, the server
//! loop that hands Raft RPCs to the Raft library and controller requests to the controller,
//! and the client side (the Raft library's network plug, and brokers calling the controller).
//!
//! Owns connections and framing. Never decides: the Raft library and the controller do.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::controller::Controller;
use super::raft_types::{NodeId, Raft, Snapshot, TypeConfig, Vote};
use super::rpc::{Envelope, Reply, Request};

/// Larger frames are refused unread. The largest message is a snapshot: a few MB for 50,000
/// partitions.
const MAX_FRAME: usize = 64 << 20;

async fn write_frame<T: serde::Serialize>(
    stream: &mut TcpStream,
    value: &T,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    stream.write_all(&buf).await
}

async fn read_frame<T: serde::de::DeserializeOwned>(stream: &mut TcpStream) -> std::io::Result<T> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    // The buffer grows with the bytes that arrive, not with what the length claims.
    let mut body = Vec::new();
    (&mut *stream)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    serde_json::from_slice(&body)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// One request and its reply on an open connection, within `timeout`.
pub async fn exchange(
    stream: &mut TcpStream,
    cluster_id: &str,
    request: Request,
    timeout: Duration,
) -> std::io::Result<Reply> {
    let envelope = Envelope {
        cluster_id: cluster_id.to_string(),
        body: request,
    };
    let io = async {
        write_frame(stream, &envelope).await?;
        let reply: Envelope<Reply> = read_frame(stream).await?;
        if reply.cluster_id != cluster_id {
            return Err(std::io::Error::other(format!(
                "peer belongs to cluster {:?}, not {cluster_id:?}",
                reply.cluster_id
            )));
        }
        Ok(reply.body)
    };
    tokio::time::timeout(timeout, io)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply in time"))?
}

pub async fn connect(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Serves the controller listener until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    raft: Raft,
    controller: Arc<Controller>,
    cluster_id: Arc<str>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "controller listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let raft = raft.clone();
        let controller = controller.clone();
        let cluster_id = cluster_id.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, raft, controller, &cluster_id, stop).await {
                tracing::debug!(%peer, error = %e, "controller connection closed");
            }
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    raft: Raft,
    controller: Arc<Controller>,
    cluster_id: &str,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let envelope: Envelope<Request> = tokio::select! {
            r = read_frame(&mut stream) => r?,
            _ = stop.changed() => return Ok(()),
        };
        let reply = if envelope.cluster_id != cluster_id {
            tracing::warn!(
                theirs = %envelope.cluster_id,
                ours = cluster_id,
                "refused a controller message from another cluster"
            );
            Reply::Refused(format!(
                "this node belongs to cluster {cluster_id:?}, not {:?}",
                envelope.cluster_id
            ))
        } else {
            match envelope.body {
                Request::AppendEntries(r) => Reply::AppendEntries(raft.append_entries(r).await),
                Request::Vote(r) => Reply::Vote(raft.vote(r).await),
                Request::Snapshot { vote, meta, data } => Reply::Snapshot(
                    raft.install_full_snapshot(
                        vote,
                        Snapshot {
                            meta,
                            snapshot: Box::new(data),
                        },
                    )
                    .await,
                ),
                Request::Controller(r) => Reply::Controller(controller.handle(r).await),
            }
        };
        let refused = matches!(reply, Reply::Refused(_));
        write_frame(
            &mut stream,
            &Envelope {
                cluster_id: cluster_id.to_string(),
                body: reply,
            },
        )
        .await?;
        if refused {
            return Ok(());
        }
    }
}

/// The Raft library's network plug: one lazily opened connection per peer voter.
pub struct Network {
    pub cluster_id: Arc<str>,
}

pub struct Peer {
    target: NodeId,
    addr: String,
    cluster_id: Arc<str>,
    conn: Option<TcpStream>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            cluster_id: self.cluster_id.clone(),
            conn: None,
        }
    }
}

/// A transport failure as the Raft library classifies it.
enum Failure {
    Unreachable(std::io::Error),
    Network(std::io::Error),
}

impl Peer {
    async fn call(&mut self, request: Request, timeout: Duration) -> Result<Reply, Failure> {
        let stream = match self.conn.take() {
            Some(s) => s,
            None => connect(&self.addr, timeout)
                .await
                .map_err(Failure::Unreachable)?,
        };
        let mut stream = stream;
        match exchange(&mut stream, &self.cluster_id, request, timeout).await {
            Ok(Reply::Refused(why)) => Err(Failure::Network(std::io::Error::other(why))),
            Ok(reply) => {
                self.conn = Some(stream);
                Ok(reply)
            }
            Err(e) => Err(Failure::Network(e)),
        }
    }

    fn unexpected(&self, reply: &Reply) -> std::io::Error {
        std::io::Error::other(format!("node {} answered {reply:?}", self.target))
    }
}

fn rpc_error<E: std::error::Error>(f: Failure) -> RPCError<NodeId, BasicNode, E> {
    match f {
        Failure::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
        Failure::Network(e) => RPCError::Network(NetworkError::new(&e)),
    }
}

type RpcResult<T> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId>>>;

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self
            .call(Request::AppendEntries(rpc), option.hard_ttl())
            .await
            .map_err(rpc_error)?
        {
            Reply::AppendEntries(Ok(r)) => Ok(r),
            Reply::AppendEntries(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(RPCError::Network(NetworkError::new(
                &self.unexpected(&other),
            ))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self
            .call(Request::Vote(rpc), option.hard_ttl())
            .await
            .map_err(rpc_error)?
        {
            Reply::Vote(Ok(r)) => Ok(r),
            Reply::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(RPCError::Network(NetworkError::new(
                &self.unexpected(&other),
            ))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let request = Request::Snapshot {
            vote,
            meta: snapshot.meta,
            data: *snapshot.snapshot,
        };
        let reply = self
            .call(request, option.hard_ttl())
            .await
            .map_err(|f| match f {
                Failure::Unreachable(e) => StreamingError::Unreachable(Unreachable::new(&e)),
                Failure::Network(e) => StreamingError::Network(NetworkError::new(&e)),
            })?;
        match reply {
            Reply::Snapshot(Ok(r)) => Ok(r),
            Reply::Snapshot(Err(e)) => Err(StreamingError::RemoteError(RemoteError::new(
                self.target,
                e,
            ))),
            other => Err(StreamingError::Network(NetworkError::new(
                &self.unexpected(&other),
            ))),
        }
    }
}
