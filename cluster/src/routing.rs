//! Stanzas and session events between nodes ([`RouteMessage`]), and which nodes are alive.
//!
//! Each peer gets one ordered stream (order per sender–recipient pair is kept because every
//! item from this node to that node goes through one queue). Received items go to the node's
//! [`RouteSink`], registered once the node's actors exist. Liveness: every member is asked for
//! its status twice a second; a node that has not answered for [`DEAD_AFTER`] is not live, and
//! placement skips it, so its users are re-homed on the survivors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use herald_grpc::cluster::{route_message, RouteMessage, StatusRequest};
use tokio::sync::{mpsc, watch};

use crate::client::peer_client_connected;
use crate::client::PeerOptions;
use crate::handle::ClusterHandle;

/// A node not heard from for this long is treated as down.
pub const DEAD_AFTER: Duration = Duration::from_millis(2500);
const PING_EVERY: Duration = Duration::from_millis(500);
const QUEUE: usize = 8192;

pub const ROUTED: &str = "herald_cluster_routed_total";
pub const ROUTE_DROPPED: &str = "herald_cluster_route_dropped_total";
pub const LIVE_NODES: &str = "herald_cluster_live_nodes";
pub const NODES_DECLARED_DEAD: &str = "herald_cluster_nodes_declared_dead_total";

/// Where routed items received from other nodes go.
pub trait RouteSink: Send + Sync + 'static {
    /// Delivers one item; returns false when it had to be dropped (receiver overloaded).
    fn deliver(&self, from_node: u64, kind: route_message::Kind) -> bool;
    /// Full JIDs of the sessions of `bare` connected to this node.
    fn local_sessions(
        &self,
        bare: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send>>;
}

/// Why an item could not be queued for another node.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RouteError {
    #[error("no address known for node {0}")]
    UnknownNode(u64),
    #[error("the queue to node {0} is full")]
    Overloaded(u64),
}

struct Peer {
    address: watch::Sender<String>,
    queue: mpsc::Sender<RouteMessage>,
}

/// Outgoing routing queues, the registered sink, and liveness.
pub struct Routes {
    me: u64,
    opts: PeerOptions,
    peers: Mutex<HashMap<u64, Peer>>,
    sink: OnceLock<Arc<dyn RouteSink>>,
    last_seen: Arc<Mutex<HashMap<u64, Instant>>>,
    /// Members that said they are shutting down (not live, whatever else is heard from them).
    leaving: Mutex<std::collections::HashSet<u64>>,
    /// This node is shutting down (told to peers in its status replies).
    stopping: std::sync::atomic::AtomicBool,
    /// Items that could not be handed to their peer (it was unreachable), for re-routing.
    lost_tx: mpsc::UnboundedSender<(u64, route_message::Kind)>,
    lost_rx: Mutex<Option<mpsc::UnboundedReceiver<(u64, route_message::Kind)>>>,
    /// The control-plane runtime the per-peer pumps run on (the one current at creation), so
    /// that a data-plane thread that queues an item never hosts the stream itself.
    rt: Option<tokio::runtime::Handle>,
}

impl Routes {
    /// Outgoing queues of node `me`. Created inside the control-plane runtime, whose handle it
    /// keeps for the pumps it spawns later from any thread.
    pub fn new(me: u64, opts: PeerOptions) -> Self {
        let (lost_tx, lost_rx) = mpsc::unbounded_channel();
        Routes {
            rt: tokio::runtime::Handle::try_current().ok(),
            me,
            opts,
            peers: Mutex::new(HashMap::new()),
            sink: OnceLock::new(),
            last_seen: Arc::new(Mutex::new(HashMap::new())),
            leaving: Mutex::new(std::collections::HashSet::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            lost_tx,
            lost_rx: Mutex::new(Some(lost_rx)),
        }
    }

    /// Items that never reached their peer node (it was down), with the node they were for.
    /// The node is marked dead at once, so re-routing them picks a new home. Taken once.
    pub fn take_lost(&self) -> Option<mpsc::UnboundedReceiver<(u64, route_message::Kind)>> {
        self.lost_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Registers where received items go (once).
    pub fn set_sink(&self, sink: Arc<dyn RouteSink>) {
        let _ = self.sink.set(sink);
    }

    pub fn sink(&self) -> Option<&Arc<dyn RouteSink>> {
        self.sink.get()
    }

    /// Queues `kind` for `node` at `address`. Callable from any thread: the peer's stream runs
    /// on the control-plane runtime (or the caller's, when none was current at creation).
    pub fn send(
        &self,
        node: u64,
        address: &str,
        kind: route_message::Kind,
    ) -> Result<(), RouteError> {
        if address.is_empty() {
            return Err(RouteError::UnknownNode(node));
        }
        let msg = RouteMessage {
            from_node: self.me,
            kind: Some(kind),
        };
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let peer = peers.entry(node).or_insert_with(|| {
            let (addr_tx, addr_rx) = watch::channel(address.to_string());
            let (queue_tx, queue_rx) = mpsc::channel(QUEUE);
            let lost: Lost = {
                let (seen, lost_tx) = (self.last_seen.clone(), self.lost_tx.clone());
                Box::new(move |m: RouteMessage| {
                    mark_dead(&seen, node);
                    metrics::counter!(ROUTE_DROPPED, "reason" => "peer_unreachable").increment(1);
                    tracing::debug!(peer = node, "peer unreachable; routed item handed back");
                    if let Some(kind) = m.kind {
                        let _ = lost_tx.send((node, kind));
                    }
                })
            };
            let pumping = route_pump(node, addr_rx, queue_rx, self.opts.clone(), lost);
            match &self.rt {
                Some(rt) => drop(rt.spawn(pumping)),
                None => drop(tokio::spawn(pumping)),
            }
            Peer {
                address: addr_tx,
                queue: queue_tx,
            }
        });
        if *peer.address.borrow() != address {
            let _ = peer.address.send(address.to_string());
        }
        peer.queue.try_send(msg).map_err(|_| {
            metrics::counter!(ROUTE_DROPPED, "reason" => "queue_full").increment(1);
            RouteError::Overloaded(node)
        })
    }

    /// Records that `node` answered just now.
    pub fn saw(&self, node: u64) {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node, Instant::now());
    }

    /// Whether `node` is considered alive (this node always is; others until proven silent).
    pub fn is_live(&self, node: u64) -> bool {
        if node == self.me {
            return true;
        }
        if self
            .leaving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&node)
        {
            return false;
        }
        // A member not heard from yet is live until proven silent: the liveness loop starts its
        // clock when it first sees the member (`first_seen`). Counting from this node's own
        // start instead made every peer look dead to a node that joined long after starting
        // (a retried join): all users were homed on it for the first half second, then moved.
        let seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&node)
            .is_none_or(|last| last.elapsed() < DEAD_AFTER)
    }

    /// Records whether `node` said it is shutting down (its status reply).
    pub fn set_leaving(&self, node: u64, leaving: bool) {
        let mut l = self.leaving.lock().unwrap_or_else(|p| p.into_inner());
        let changed = if leaving {
            l.insert(node)
        } else {
            l.remove(&node)
        };
        if changed && leaving {
            tracing::info!(
                peer = node,
                "peer node is shutting down; its users move to their next home"
            );
        }
    }

    /// Members that said they are shutting down.
    pub fn leaving_nodes(&self) -> Vec<u64> {
        let l = self.leaving.lock().unwrap_or_else(|p| p.into_inner());
        l.iter().copied().collect()
    }

    /// Marks this node as shutting down (see [`Self::is_stopping`]).
    pub fn set_stopping(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether this node is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Starts the silence clock of a member the first time the liveness loop sees it.
    pub fn first_seen(&self, node: u64) {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node)
            .or_insert_with(Instant::now);
    }
}

/// Where a routed item goes when its peer did not acknowledge it.
type Lost = Box<dyn Fn(RouteMessage) + Send + Sync>;

/// The ordered, acknowledged stream of routed items to one peer. The peer acknowledges how many
/// items it has handed on; when the stream breaks (or never opens), every item it has not
/// acknowledged goes to `lost` in order, to be re-routed — so an item is never dropped
/// silently between nodes (at worst it is handled twice, if the stream broke between the
/// peer handing it on and its acknowledgement arriving).
async fn route_pump(
    peer: u64,
    address: watch::Receiver<String>,
    mut queue: mpsc::Receiver<RouteMessage>,
    opts: PeerOptions,
    lost: Lost,
) {
    use std::collections::VecDeque;
    use tokio_stream::StreamExt as _;
    let mut backoff = Duration::from_millis(50);
    loop {
        // Connect only when there is something to say.
        let Some(first) = queue.recv().await else {
            return;
        };
        let addr = address.borrow().clone();
        let mut unacked: VecDeque<RouteMessage> = VecDeque::from([first]);
        let outcome: Result<(), String> = async {
            let mut client = peer_client_connected(&addr, &opts)
                .await
                .map_err(|e| e.to_string())?;
            let (tx, rx) = mpsc::channel::<RouteMessage>(256);
            let mut acks = client
                .route(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            // The count acknowledged so far; `unacked` holds the items after it, in order.
            let mut acked = 0u64;
            let mut sent = 0u64;
            if tx.send(unacked[0].clone()).await.is_err() {
                return Err("stream closed".into());
            }
            sent += 1;
            metrics::counter!(ROUTED, "direction" => "out").increment(1);
            backoff = Duration::from_millis(50);
            loop {
                tokio::select! {
                    item = queue.recv() => {
                        let Some(item) = item else { return Ok(()) };
                        unacked.push_back(item.clone());
                        if tx.send(item).await.is_err() {
                            return Err("stream closed".into());
                        }
                        sent += 1;
                        metrics::counter!(ROUTED, "direction" => "out").increment(1);
                    }
                    ack = acks.next() => match ack {
                        Some(Ok(a)) => {
                            let handled = a.handled.min(sent);
                            while acked < handled {
                                unacked.pop_front();
                                acked += 1;
                            }
                        }
                        Some(Err(status)) => return Err(status.to_string()),
                        None => return Err("the peer ended the stream".into()),
                    },
                }
            }
        }
        .await;
        match outcome {
            Ok(()) => return,
            Err(e) => {
                tracing::debug!(peer, address = %addr, error = %e, unacked = unacked.len(),
                    "routing stream to peer broke; unacknowledged items handed back");
                metrics::counter!(crate::metrics::PEER_CONNECT_FAILURES).increment(1);
            }
        }
        for item in unacked.drain(..) {
            lost(item);
        }
        // Stale items are worthless after a break: handed back for re-routing too.
        while let Ok(item) = queue.try_recv() {
            lost(item);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

fn mark_dead(seen: &Mutex<HashMap<u64, Instant>>, node: u64) {
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(past) = Instant::now().checked_sub(DEAD_AFTER) {
        seen.insert(node, past);
    }
}

/// Pings every member twice a second to keep liveness current. Runs until the node stops.
pub(crate) async fn liveness_loop(handle: ClusterHandle) {
    let mut tick = tokio::time::interval(PING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // This node's view of who was live at the last tick, to count live → dead transitions.
    let mut was_live: HashMap<u64, bool> = HashMap::new();
    loop {
        tick.tick().await;
        if handle.status().stopped {
            return;
        }
        let nodes = handle.applied().state.nodes();
        let mut live = 0;
        for n in nodes {
            if n.node_id == handle.node_id() {
                live += 1;
                continue;
            }
            handle.routes().first_seen(n.node_id);
            let h = handle.clone();
            tokio::spawn(async move {
                if let Ok(mut c) = h.peer_at(&n.cluster_address) {
                    let mut req = tonic::Request::new(StatusRequest {
                        from_node: h.node_id(),
                    });
                    req.set_timeout(Duration::from_millis(800));
                    let sent_at = Instant::now();
                    if let Ok(reply) = c.status(req).await {
                        let reply = reply.into_inner();
                        h.status_answer(n.node_id, sent_at, &reply);
                        let stopping = reply.stopping;
                        h.routes().set_leaving(n.node_id, stopping);
                        if !stopping {
                            h.routes().saw(n.node_id);
                        }
                    }
                }
            });
            let now_live = handle.routes().is_live(n.node_id);
            if now_live {
                live += 1;
            }
            if was_live.insert(n.node_id, now_live) == Some(true) && !now_live {
                metrics::counter!(NODES_DECLARED_DEAD).increment(1);
                tracing::warn!(
                    peer = n.node_id,
                    "peer node declared dead (no answer to liveness pings)"
                );
            }
        }
        metrics::gauge!(LIVE_NODES).set(live as f64);
        handle.keep_placement();
        let _ = handle.serving();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_defaults_and_expiry() {
        let r = Routes::new(1, PeerOptions::default());
        assert!(r.is_live(1));
        assert!(r.is_live(2), "a member is live until proven silent");
        r.last_seen
            .lock()
            .unwrap()
            .insert(2, Instant::now() - DEAD_AFTER - Duration::from_millis(1));
        assert!(!r.is_live(2));
        r.saw(2);
        assert!(r.is_live(2));
    }

    #[test]
    fn a_member_first_seen_late_is_live_until_proven_silent() {
        let r = Routes::new(1, PeerOptions::default());
        // Never heard from (e.g. this node's join was retried long after it started).
        assert!(r.is_live(3));
        r.first_seen(3);
        assert!(r.is_live(3));
        // first_seen does not refresh: a silent member still expires.
        r.last_seen
            .lock()
            .unwrap()
            .insert(3, Instant::now() - DEAD_AFTER - Duration::from_millis(1));
        r.first_seen(3);
        assert!(!r.is_live(3));
    }

    #[test]
    fn unknown_address_is_an_error() {
        let r = Routes::new(1, PeerOptions::default());
        let err = r
            .send(2, "", route_message::Kind::ToUser("<message/>".into()))
            .unwrap_err();
        assert_eq!(err, RouteError::UnknownNode(2));
    }
}
