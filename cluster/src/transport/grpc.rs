//! Raft messages over the node-to-node gRPC `Raft` client stream: one ordered queue and one
//! sender task per peer. A full queue drops (counted); a broken stream reports the peer
//! unreachable to Raft, backs off, and reconnects when there is traffic again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::Sender;
use herald_grpc::cluster::RaftEnvelope;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::Transport;
use crate::client::{peer_client, PeerOptions};
use crate::metrics as m;
use crate::raft_loop::Input;

const QUEUE: usize = 1024;

struct Peer {
    address: watch::Sender<String>,
    queue: mpsc::Sender<Message>,
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
}

impl Transport for GrpcTransport {
    fn send(&self, msg: Message) {
        let peers = self.peers();
        let Some(peer) = peers.get(&msg.to) else {
            metrics::counter!(m::MESSAGES_DROPPED, "direction" => "out").increment(1);
            tracing::debug!(
                to = msg.to,
                "no address known for raft peer; message dropped"
            );
            return;
        };
        if peer.queue.try_send(msg).is_err() {
            metrics::counter!(m::MESSAGES_DROPPED, "direction" => "out").increment(1);
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
        let task = PeerTask {
            to: node_id,
            me: self.me,
            my_address: self.my_address.clone(),
            address: addr_rx,
            queue: queue_rx,
            inbox: self.inbox.clone(),
            opts: self.opts.clone(),
        };
        self.rt.spawn(task.run());
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

struct PeerTask {
    to: u64,
    me: u64,
    my_address: String,
    address: watch::Receiver<String>,
    queue: mpsc::Receiver<Message>,
    inbox: Sender<Input>,
    opts: PeerOptions,
}

impl PeerTask {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        loop {
            // Connect only when there is something to say.
            let Some(first) = self.queue.recv().await else {
                return;
            };
            let address = self.address.borrow().clone();
            let mut client = match peer_client(&address, &self.opts) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(peer = self.to, %address, error = %e, "cannot reach raft peer");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let (tx, rx) = mpsc::channel::<RaftEnvelope>(256);
            let mut call = tokio::spawn(async move { client.raft(ReceiverStream::new(rx)).await });
            let mut next = Some(first);
            let mut delivered = false;
            let outcome = loop {
                if let Some(msg) = next.take() {
                    let is_snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
                    let env = match msg.write_to_bytes() {
                        Ok(bytes) => RaftEnvelope {
                            from: self.me,
                            to: self.to,
                            from_address: self.my_address.clone(),
                            message: bytes,
                        },
                        Err(e) => {
                            tracing::error!(error = %e, "cannot encode raft message");
                            continue;
                        }
                    };
                    if tx.send(env).await.is_err() {
                        if is_snapshot {
                            let _ = self.inbox.try_send(Input::SnapshotSent {
                                to: self.to,
                                ok: false,
                            });
                        }
                        break None;
                    }
                    delivered = true;
                    metrics::counter!(m::MESSAGES_SENT).increment(1);
                    if is_snapshot {
                        let _ = self.inbox.try_send(Input::SnapshotSent {
                            to: self.to,
                            ok: true,
                        });
                    }
                    continue;
                }
                tokio::select! {
                    m = self.queue.recv() => match m {
                        Some(m) => next = Some(m),
                        None => { drop(tx); return; }
                    },
                    res = &mut call => break Some(res),
                }
            };
            call.abort();
            if let Some(Ok(Err(status))) = &outcome {
                tracing::debug!(peer = self.to, %address, %status, "raft stream to peer ended");
            }
            metrics::counter!(m::PEER_CONNECT_FAILURES).increment(1);
            let _ = self.inbox.try_send(Input::Unreachable(self.to));
            if delivered {
                backoff = Duration::from_millis(50);
            }
            // Stale heartbeats and appends are worthless after a break: Raft will resend.
            while self.queue.try_recv().is_ok() {
                metrics::counter!(m::MESSAGES_DROPPED, "direction" => "out").increment(1);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}
