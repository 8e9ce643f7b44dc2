//! Herald's cluster layer: the Raft-replicated config store, the user-state store, and the
//! node-to-node API.
//!
//! Every node runs two Raft groups with the same code (a [`raft_loop::RaftLoop`] each, on its own
//! thread, with its own redb file, snapshots and leader): the **config group** (`raft.redb`) and
//! the **user-state group** (`users/raft.redb`: users' rosters, block lists and offline
//! messages, fenced by the placement view; see [`users_group`]). Their messages share the
//! node-to-node port (`Raft`/`InstallSnapshot` for the config group, `GroupRaft`/
//! `GroupInstallSnapshot` for the other).
//!
//! Layout and message flow:
//! - [`storage`]: durable Raft log, hard state, conf state and snapshots on redb (fsync per write).
//! - [`state`]: the replicated state machine: config objects, validation, derived objects, digest.
//! - [`raft_loop`]: the one owner loop per node (a dedicated thread) holding the raft-rs
//!   `RawNode`; inputs arrive on one channel, outputs leave through a [`transport::Transport`] and
//!   two `watch` channels (status, applied state).
//! - [`transport`]: Raft messages over gRPC streams (real) or an in-memory hub (simulation).
//! - [`handle`]: [`handle::ClusterHandle`], what the node uses: writes (forwarded to the leader),
//!   linearizable read barriers, membership changes, status of every member.
//! - [`service`]: the node-to-node gRPC service (Raft stream, Propose, Join, Status, Removed,
//!   Facts, LogFilter).
//! - [`local`]: [`local::LocalNode`], the node layer's facts and log filter, and their fan-out
//!   to every member (troubleshooter, `herald log`).
//! - [`users_group`]: the user-state group's upkeep by its leader (membership and placement
//!   follow the config group; data of deleted users is deleted).
//! - [`start`] wires them together for one node: bootstrap or join on an empty data dir, resume
//!   otherwise.

pub mod client;
pub mod handle;
pub mod identity;
pub mod local;
pub mod metrics;
pub mod ownership;
pub mod placement;
pub mod raft_loop;
pub mod routing;
pub mod secrets;
pub mod service;
pub mod snapfile;
pub mod state;
pub mod storage;
pub(crate) mod stream;
pub mod transport;
pub mod users_group;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herald_grpc::cluster::{JoinRequest, RemovedNotice};
use herald_grpc::config::NodeInfo;

pub use handle::{ClusterHandle, Written};
pub use raft_loop::{Applied, RaftConfig, RaftStatus, Role};

use crate::client::PeerOptions;
use crate::raft_loop::{bootstrap_snapshot, Event, Group, LoopError, RaftLoop};
use crate::state::StateMachine;
use crate::storage::DiskStorage;
use crate::transport::grpc::GrpcTransport;
use crate::transport::Transport as _;

/// How one node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub raft: RaftConfig,
    /// Where `raft.redb` lives.
    pub data_dir: PathBuf,
    /// This node's identity and addresses, as other nodes should use them.
    pub me: NodeInfo,
    /// Local domains of a brand-new cluster (bootstrap only).
    pub bootstrap_domains: Vec<String>,
    /// host:port of any member's node-to-node API to join through; None: bootstrap when empty.
    pub join: Option<String>,
    pub peer: PeerOptions,
    /// This node's secrets key (see [`secrets`]); handed to joining nodes on the embedded
    /// default, or received at join when it is still empty.
    pub secrets: secrets::Keyring,
}

/// Why the cluster layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Loop(#[from] LoopError),
    #[error("invalid bootstrap config: {0}")]
    Bootstrap(herald_grpc::config::ErrorDetail),
    #[error("cannot start the raft thread: {0}")]
    Thread(std::io::Error),
}

/// A running cluster member.
pub struct Cluster {
    pub handle: ClusterHandle,
    /// The config group's owner loop thread; joins when the loop stops.
    pub thread: std::thread::JoinHandle<Result<(), LoopError>>,
    /// The user-state group's owner loop thread.
    pub users_thread: std::thread::JoinHandle<Result<(), LoopError>>,
}

/// Starts this node's Raft group. Call inside a tokio runtime (the transport spawns its tasks
/// there). The node-to-node service must then be served with
/// [`service::NodeApiService::grpc`] over the returned handle.
pub fn start(cfg: ClusterConfig, logger: &slog::Logger) -> Result<Cluster, StartError> {
    metrics::describe();
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| StartError::DataDir {
        path: cfg.data_dir.display().to_string(),
        source,
    })?;
    let mut storage = DiskStorage::open(&cfg.data_dir.join("raft.redb"))?;
    let fresh = storage.is_empty();
    if fresh && cfg.join.is_none() {
        let state = StateMachine::bootstrap(&cfg.bootstrap_domains, cfg.me.clone())
            .map_err(StartError::Bootstrap)?;
        storage.apply_snapshot(bootstrap_snapshot(cfg.me.node_id, &state))?;
        tracing::info!(node = cfg.me.node_id, "bootstrapped a new cluster");
    } else if !fresh {
        tracing::info!(
            node = cfg.me.node_id,
            commit = storage.hard_state().commit,
            voters = ?storage.conf_state().voters,
            "resuming from the data dir"
        );
    }
    let cs = storage.conf_state();
    let is_member = cs.voters.contains(&cfg.me.node_id) || cs.learners.contains(&cfg.me.node_id);
    let awaiting_key = cfg.secrets.awaiting();
    let (inbox_tx, inbox_rx) = crossbeam_channel::bounded(65_536);
    let rt = tokio::runtime::Handle::current();
    let transport = Arc::new(GrpcTransport::new(
        cfg.me.node_id,
        cfg.me.cluster_address.clone(),
        rt.clone(),
        inbox_tx.clone(),
        cfg.peer.clone(),
    ));
    let config_voters = storage.conf_state().voters.clone();
    let (raft_loop, outputs) = RaftLoop::new(
        cfg.raft.clone(),
        storage,
        inbox_rx,
        transport.clone(),
        logger,
    )?;
    let thread = std::thread::Builder::new()
        .name(format!("raft-{}", cfg.me.node_id))
        .spawn(move || raft_loop.run())
        .map_err(StartError::Thread)?;
    let handle = ClusterHandle::new(
        cfg.me.clone(),
        inbox_tx,
        outputs.status,
        outputs.applied,
        cfg.peer.clone(),
    );
    handle.set_secrets(cfg.secrets.clone());
    let users_thread = start_users_group(&cfg, fresh, &config_voters, &transport, &handle, logger)?;
    rt.spawn(notify_removed(handle.clone(), outputs.events));
    rt.spawn(routing::liveness_loop(handle.clone()));
    // A member that still lacks the cluster's secrets key (it stopped between joining and
    // writing the key) asks again: a join of a member is idempotent.
    if let (Some(target), true) = (cfg.join.clone(), !is_member || awaiting_key) {
        rt.spawn(join_loop(handle.clone(), target));
    }
    Ok(Cluster {
        handle,
        thread,
        users_thread,
    })
}

/// Opens (and when it is this node's to start, bootstraps) the user-state Raft group in
/// `<data dir>/users/`, starts its owner loop and connects it to the handle and the transport
/// (see [`users_group`]).
fn start_users_group(
    cfg: &ClusterConfig,
    config_fresh: bool,
    config_voters: &[u64],
    config_transport: &Arc<GrpcTransport>,
    handle: &ClusterHandle,
    logger: &slog::Logger,
) -> Result<std::thread::JoinHandle<Result<(), LoopError>>, StartError> {
    let dir = cfg.data_dir.join("users");
    std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    let mut storage = DiskStorage::open(&dir.join("raft.redb"))?;
    let me = cfg.me.node_id;
    if storage.is_empty() {
        let starts = if config_fresh {
            cfg.join.is_none()
        } else {
            users_group::starts_the_group(me, config_voters)
        };
        if starts {
            let mut state = StateMachine::for_users_group();
            state.add_node(1, cfg.me.clone());
            storage.apply_snapshot(bootstrap_snapshot(me, &state))?;
            tracing::info!(node = me, "started the user-state group");
        } else {
            tracing::info!(node = me, "waiting to be added to the user-state group");
        }
    }
    let (inbox_tx, inbox_rx) = crossbeam_channel::bounded(65_536);
    let rt = tokio::runtime::Handle::current();
    let transport = Arc::new(
        GrpcTransport::new(
            me,
            cfg.me.cluster_address.clone(),
            rt.clone(),
            inbox_tx.clone(),
            cfg.peer.clone(),
        )
        .in_group(Group::Users),
    );
    // Only the config group's state names the members: this group's transport learns their
    // addresses from it.
    for n in handle.applied().state.nodes() {
        transport.learn_address(n.node_id, &n.cluster_address);
    }
    config_transport.set_followers(vec![transport.clone()]);
    let (raft_loop, outputs) = RaftLoop::new_group(
        cfg.raft.clone(),
        Group::Users,
        storage,
        inbox_rx,
        transport,
        logger,
    )?;
    let thread = std::thread::Builder::new()
        .name(format!("raft-users-{me}"))
        .spawn(move || {
            lower_priority(USERS_GROUP_NICE);
            raft_loop.run()
        })
        .map_err(StartError::Thread)?;
    handle.set_users_group(handle::GroupLink {
        inbox: inbox_tx,
        status: outputs.status,
        applied: outputs.applied,
    });
    rt.spawn(users_group::follow(handle.clone()));
    Ok(thread)
}

/// How much nicer than the config group's the user-state group's Raft thread runs: users'
/// data is data-plane work (like the node's data-plane threads, which run 5 nicer), while the
/// config group carries the cluster's control plane (placement, membership, operators' writes).
/// When both want a core, config writes go first; with a core to spare it changes nothing.
pub const USERS_GROUP_NICE: i32 = 5;

/// Raises the calling thread's nice value by `by` (Linux: nice is per thread), up to 19; a
/// failure is logged and the thread keeps the process's priority.
pub fn lower_priority(by: i32) {
    use rustix::process::{getpriority_process, setpriority_process};
    let me = Some(rustix::thread::gettid());
    let result =
        getpriority_process(me).and_then(|now| setpriority_process(me, (now + by).min(19)));
    if let Err(e) = result {
        let thread = std::thread::current();
        tracing::warn!(error = %e, thread = thread.name().unwrap_or("?"),
            "cannot lower a thread's priority");
    }
}

/// Tells removed peers that they were removed, so that they stop (a few tries each).
async fn notify_removed(
    handle: ClusterHandle,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
) {
    while let Some(Event::PeerRemoved(node, removed_at)) = events.recv().await {
        let h = handle.clone();
        tokio::spawn(async move {
            for attempt in 0..5u32 {
                if h.status().is_member(node.node_id) {
                    // Added again since (a fresh pod under the same id): nothing to tell.
                    return;
                }
                let res = match h.peer_at(&node.cluster_address) {
                    Ok(mut c) => c
                        .removed(RemovedNotice {
                            node_id: node.node_id,
                            removed_at,
                        })
                        .await
                        .map(|_| ())
                        .map_err(|s| s.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match res {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::debug!(node = node.node_id, attempt, error = %e,
                            "could not tell a removed node; retrying");
                        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    }
                }
            }
            tracing::warn!(
                node = node.node_id,
                "removed node did not acknowledge its removal"
            );
        });
    }
}

/// Adopts the cluster's secrets key from a join reply when this node waits for one; says
/// loudly when this node's key differs from the cluster's.
fn take_secrets_key(handle: &ClusterHandle, r: &herald_grpc::cluster::JoinReply) {
    let Some(ring) = handle.secrets() else {
        return;
    };
    if ring.awaiting() {
        if r.secrets_key.is_empty() {
            tracing::error!(
                "this node has no secrets key and the cluster does not hand out its own (operators \
                 provide it): start every node with the same --secrets-key-file or \
                 HERALD_SECRETS_KEY; sealed secrets (calendar passwords, dialback secret) cannot \
                 be read here"
            );
            return;
        }
        match ring.adopt(&r.secrets_key) {
            Ok(Some(id)) => tracing::info!(
                key_id = %id,
                "adopted the cluster's secrets key (embedded default) and stored it in the data dir"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot store the cluster's secrets key"),
        }
    } else if let Some(mine) = ring.key_id() {
        if !r.secrets_key_id.is_empty() && r.secrets_key_id != mine {
            tracing::error!(
                mine = %mine,
                cluster = %r.secrets_key_id,
                "this node's secrets key differs from the cluster's: every node must use the same \
                 key, or sealed secrets cannot be read"
            );
        }
    }
}

/// Asks `target` to add this node, until it is a member (with backoff, logging each failure).
/// It joins as a learner; the leader promotes it to voter once it has caught up.
async fn join_loop(handle: ClusterHandle, target: String) {
    let mut backoff = Duration::from_millis(200);
    let mut attempt = 0u64;
    loop {
        let st = handle.status();
        let awaiting_key = handle.secrets().is_some_and(|k| k.awaiting());
        if st.stopped || (st.is_member(handle.node_id()) && !awaiting_key) {
            return;
        }
        attempt += 1;
        let me = handle.me().clone();
        let res = match handle.peer_at(&target) {
            Ok(mut c) => {
                let mut req = tonic::Request::new(JoinRequest {
                    node_id: me.node_id,
                    cluster_address: me.cluster_address.clone(),
                    admin_address: me.admin_address.clone(),
                });
                req.set_timeout(Duration::from_secs(15));
                c.join(req).await.map_err(|s| s.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match res {
            Ok(r) => {
                let r = r.into_inner();
                tracing::info!(%target, leader = r.leader_id, "joined the cluster");
                take_secrets_key(&handle, &r);
                return;
            }
            Err(e) => {
                if attempt % 5 == 1 {
                    tracing::warn!(%target, attempt, error = %e, "join failed; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(3));
            }
        }
    }
}
