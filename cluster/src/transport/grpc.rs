//! Raft messages over the node-to-node gRPC `Raft` client stream: one ordered queue and one
//! [`crate::stream::pump`] per peer. A full queue drops (counted); a broken stream reports the
//! peer unreachable to Raft, and a snapshot that could not be sent is reported as failed.

use std::collections::HashMap;
use std::sync::Mutex;

use crossbeam_channel::Sender;
use herald_grpc::cluster::RaftEnvelope;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::{mpsc, watch};

use super::Transport;
use crate::client::PeerOptions;
use crate::metrics as m;
use crate::raft_loop::Input;
use crate::stream::{pump, Hooks, Open};

const QUEUE: usize = 1024;

struct Peer {
    address: watch::Sender<String>,
    queue: mpsc::Sender<RaftEnvelope>,
}

/// The real transport.
pub struct GrpcTransport {
    me: u64,
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
            my_address,
            rt,
            inbox,
            opts,
            peers: Mutex::new(HashMap::new()),
        }
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

impl Transport for GrpcTransport {
    fn send(&self, msg: Message) {
        let to = msg.to;
        let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        let env = match msg.write_to_bytes() {
            Ok(bytes) => RaftEnvelope {
                from: self.me,
                to,
                from_address: self.my_address.clone(),
                message: bytes,
                snapshot,
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
        let open: Open<RaftEnvelope> = Box::new(|mut client, stream| {
            Box::pin(async move { client.raft(stream).await.map(|_| ()) })
        });
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
        self.peers().remove(&node_id);
    }
}
