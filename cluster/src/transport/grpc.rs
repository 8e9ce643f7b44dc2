//! Raft messages over the node-to-node gRPC `Raft` client stream: one ordered queue and one
//! [`crate::stream::pump`] per peer. A full queue drops (counted); a broken stream reports the
//! peer unreachable to Raft.
//!
//! Snapshots (`MsgSnapshot`) never go on that stream: each is sent by a task of its own over the
//! `InstallSnapshot` client stream, in chunks below the message size cap, so heartbeats never
//! wait behind a large store and no store is too large to send. Its outcome is reported to Raft
//! (`report_snapshot`). A peer that does not know the RPC (an older node) gets it on the Raft
//! stream, as before.

use std::collections::HashMap;
use std::sync::Mutex;

use crossbeam_channel::Sender;
use herald_grpc::cluster::{RaftEnvelope, SnapshotChunk};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::{mpsc, watch};

use super::Transport;
use crate::client::PeerOptions;
use crate::metrics as m;
use crate::raft_loop::{Group, Input};
use crate::stream::{pump, Hooks, Open};

const QUEUE: usize = 1024;
/// Largest snapshot chunk; smaller when the message cap is (a quarter of it).
const SNAPSHOT_CHUNK: usize = 1 << 20;

struct Peer {
    address: watch::Sender<String>,
    queue: mpsc::Sender<RaftEnvelope>,
}

/// The real transport.
pub struct GrpcTransport {
    me: u64,
    /// The Raft group whose messages this transport carries (its own streams per peer).
    group: Group,
    /// Transports of this node's other groups: they learn and forget peer addresses with this
    /// one (only the config group's state names the members).
    followers: std::sync::OnceLock<Vec<std::sync::Arc<GrpcTransport>>>,
    my_address: String,
    rt: tokio::runtime::Handle,
    inbox: Sender<Input>,
    opts: PeerOptions,
    peers: Mutex<HashMap<u64, Peer>>,
}

impl GrpcTransport {
    /// `rt` runs the sender tasks; `inbox` receives unreachable/snapshot reports.
    pub fn new(
        me: u64,
        my_address: String,
        rt: tokio::runtime::Handle,
        inbox: Sender<Input>,
        opts: PeerOptions,
    ) -> Self {
        GrpcTransport {
            me,
            group: Group::Config,
            followers: std::sync::OnceLock::new(),
            my_address,
            rt,
            inbox,
            opts,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// This transport for another Raft group of this node (messages go on `GroupRaft`).
    pub fn in_group(mut self, group: Group) -> Self {
        self.group = group;
        self
    }

    /// Makes `others` learn and forget peer addresses whenever this transport does.
    pub fn set_followers(&self, others: Vec<std::sync::Arc<GrpcTransport>>) {
        let _ = self.followers.set(others);
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Peer>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hooks(&self, to: u64) -> Hooks<RaftEnvelope> {
        let (sent_inbox, lost_inbox, broken_inbox) =
            (self.inbox.clone(), self.inbox.clone(), self.inbox.clone());
        Hooks {
            sent: Box::new(move |env: &RaftEnvelope| {
                metrics::counter!(m::MESSAGES_SENT).increment(1);
                if env.snapshot {
                    let _ = sent_inbox.try_send(Input::SnapshotSent { to, ok: true });
                }
            }),
            lost: Box::new(move |env: &RaftEnvelope| {
                metrics::counter!(m::MESSAGES_DROPPED, "direction" => "out").increment(1);
                if env.snapshot {
                    let _ = lost_inbox.try_send(Input::SnapshotSent { to, ok: false });
                }
            }),
            broken: Box::new(move || {
                let _ = broken_inbox.try_send(Input::Unreachable(to));
            }),
        }
    }
}

impl GrpcTransport {
    /// Sends a MsgSnapshot on its own task and RPC, and reports the outcome to Raft.
    fn send_snapshot(&self, msg: Message) {
        let to = msg.to;
        let address = self.peers().get(&to).map(|p| p.address.borrow().clone());
        let Some(address) = address else {
            metrics::counter!(m::MESSAGES_DROPPED, "direction" => "out").increment(1);
            let _ = self.inbox.try_send(Input::SnapshotSent { to, ok: false });
            return;
        };
        let (me, my_address, opts, inbox, group) = (
            self.me,
            self.my_address.clone(),
            self.opts.clone(),
            self.inbox.clone(),
            self.group,
        );
        let fallback = self.peers().get(&to).map(|p| p.queue.clone());
        self.rt.spawn(async move {
            let bytes = msg.get_snapshot().get_data().len();
            let started = std::time::Instant::now();
            match send_snapshot_chunks(&address, &opts, me, &my_address, &msg, group).await {
                Ok(chunks) => {
                    metrics::counter!(m::SNAPSHOTS_SENT).increment(1);
                    tracing::info!(peer = to, bytes, chunks, elapsed = ?started.elapsed(),
                        group = group.label(), "snapshot sent");
                    let _ = inbox.try_send(Input::SnapshotSent { to, ok: true });
                }
                Err(status)
                    if status.code() == tonic::Code::Unimplemented && group == Group::Config =>
                {
                    // An older peer: the Raft stream, as it expects (bounded by the cap).
                    let env = msg.write_to_bytes().ok().map(|message| RaftEnvelope {
                        from: me,
                        to,
                        from_address: my_address,
                        message,
                        snapshot: true,
                        group: 0,
                    });
                    let queued = match (env, fallback) {
                        (Some(env), Some(q)) => q.try_send(env).is_ok(),
                        _ => false,
                    };
                    if !queued {
                        let _ = inbox.try_send(Input::SnapshotSent { to, ok: false });
                    }
                }
                Err(status) => {
                    tracing::warn!(peer = to, bytes, %status, group = group.label(),
                        "sending a snapshot failed");
                    let _ = inbox.try_send(Input::SnapshotSent { to, ok: false });
                }
            }
        });
    }
}

/// Streams `msg` (a MsgSnapshot) to `address` in chunks; returns how many.
async fn send_snapshot_chunks(
    address: &str,
    opts: &PeerOptions,
    me: u64,
    my_address: &str,
    msg: &Message,
    group: Group,
) -> Result<usize, tonic::Status> {
    let data = msg.get_snapshot().data.clone();
    let mut head = msg.clone();
    head.mut_snapshot().data = Default::default();
    let message = head
        .write_to_bytes()
        .map_err(|e| tonic::Status::internal(format!("cannot encode a snapshot: {e}")))?;
    let cap = if opts.max_message_bytes == 0 {
        64 << 20
    } else {
        opts.max_message_bytes
    };
    let chunk = SNAPSHOT_CHUNK.min(cap / 4).max(1);
    let total = data.len();
    let head = SnapshotChunk {
        from: me,
        to: msg.to,
        from_address: my_address.to_string(),
        message,
        total_bytes: total as u64,
        data: Vec::new(),
        group: group.wire(),
    };
    // Pieces are copied out of the snapshot lazily, as the stream is polled.
    let body = (0..total.div_ceil(chunk)).map(move |i| SnapshotChunk {
        data: data[i * chunk..((i + 1) * chunk).min(total)].to_vec(),
        ..Default::default()
    });
    let n = 1 + total.div_ceil(chunk);
    let mut client = crate::client::peer_client_connected(address, opts).await?;
    let mut req = tonic::Request::new(tokio_stream::iter(std::iter::once(head).chain(body)));
    req.set_timeout(std::time::Duration::from_secs(600));
    match group {
        Group::Config => client.install_snapshot(req).await?,
        Group::Users => client.group_install_snapshot(req).await?,
    };
    Ok(n)
}

impl Transport for GrpcTransport {
    fn send(&self, msg: Message) {
        let to = msg.to;
        let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        if snapshot {
            self.send_snapshot(msg);
            return;
        }
        let env = match msg.write_to_bytes() {
            Ok(bytes) => RaftEnvelope {
                from: self.me,
                to,
                from_address: self.my_address.clone(),
                message: bytes,
                snapshot,
                group: self.group.wire(),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a raft message");
                return;
            }
        };
        let peers = self.peers();
        let Some(peer) = peers.get(&to) else {
            metrics::counter!(m::MESSAGES_DROPPED, "direction" => "out").increment(1);
            tracing::debug!(to, "no address known for raft peer; message dropped");
            return;
        };
        if let Err(e) = peer.queue.try_send(env) {
            metrics::counter!(m::MESSAGES_DROPPED, "direction" => "out").increment(1);
            if snapshot {
                let env = match e {
                    mpsc::error::TrySendError::Full(v) | mpsc::error::TrySendError::Closed(v) => v,
                };
                let _ = self.inbox.try_send(Input::SnapshotSent {
                    to: env.to,
                    ok: false,
                });
            }
        }
    }

    fn learn_address(&self, node_id: u64, address: &str) {
        if node_id == self.me || address.is_empty() {
            return;
        }
        for f in self.followers.get().into_iter().flatten() {
            f.learn_address(node_id, address);
        }
        let mut peers = self.peers();
        if let Some(p) = peers.get(&node_id) {
            if *p.address.borrow() != address {
                tracing::info!(peer = node_id, %address, "peer address changed");
                let _ = p.address.send(address.to_string());
            }
            return;
        }
        let (addr_tx, addr_rx) = watch::channel(address.to_string());
        let (queue_tx, queue_rx) = mpsc::channel(QUEUE);
        let open: Open<RaftEnvelope> = match self.group {
            Group::Config => Box::new(|mut client, stream| {
                Box::pin(async move { client.raft(stream).await.map(|_| ()) })
            }),
            Group::Users => Box::new(|mut client, stream| {
                Box::pin(async move { client.group_raft(stream).await.map(|_| ()) })
            }),
        };
        self.rt.spawn(pump(
            node_id,
            addr_rx,
            queue_rx,
            self.opts.clone(),
            open,
            self.hooks(node_id),
        ));
        peers.insert(
            node_id,
            Peer {
                address: addr_tx,
                queue: queue_tx,
            },
        );
    }

    fn forget(&self, node_id: u64) {
        for f in self.followers.get().into_iter().flatten() {
            f.forget(node_id);
        }
        self.peers().remove(&node_id);
    }
}
