//! Criterion micro-benchmarks of Raft proposal-to-apply latency on a 3-node loopback cluster.
//!
//! Three `herald_cluster` nodes run inside this process, each with its own redb data dir
//! (durable: one fsync per Ready), its own Raft owner thread and its own node-to-node gRPC
//! server on 127.0.0.91..93 (OS-chosen ports). Node 1 bootstraps, nodes 2 and 3 join through
//! it, exactly as `herald agent --bootstrap` / `--join` do. Every iteration is one
//! `ClusterHandle::write` of a config `Put`, timed from the call until it returns, which is when
//! the entry is committed on a majority and applied on the node that proposed it.
//!
//! - `raft/propose_apply_leader`: one write through the leader's handle.
//! - `raft/propose_apply_follower`: one write through a follower's handle (forwarded to the
//!   leader over the node-to-node `Propose` call).
//! - `raft/propose_apply_leader_x16`: 16 concurrent writes through the leader; time until all
//!   16 are applied (several proposals share one Ready, hence one fsync per node).
//!
//! `cargo bench -p herald-bench --bench raft`; CI runs them once from its debug build:
//! `cargo test --workspace --benches -- --test`.
//! The cluster starts only when one of these benchmarks is selected, and is stopped (Raft
//! threads joined, runtime shut down, data dir removed) when the group is done.
//!
//! `RAFT_MIXED=1 cargo bench -p herald-bench --bench raft` runs instead the mixed-load scenario
//! of [`mixed`] (config-write latency while user state is written); `-- --test` runs its short
//! version after the criterion benchmarks' single passes.

use std::cell::{Cell, OnceCell};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, Criterion, Throughput};
use herald_cluster::client::PeerOptions;
use herald_cluster::raft_loop::LoopError;
use herald_cluster::service::NodeApiService;
use herald_cluster::{ClusterConfig, ClusterHandle, RaftConfig, Role};
use herald_grpc::config::{config_object::Body, Command, ErrorDetail, LocalDomain, NodeInfo};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt as _;

mod mixed;

/// The allocator a node runs with (node/src/main.rs), so the nodes in this process allocate as
/// they do in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Nodes in the benchmark cluster.
const NODES: u64 = 3;
/// How long the cluster may take to form (all voters, one leader, membership applied).
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// Distinct domain keys written round robin: every write changes the state, and the state (which
/// the loop clones and digests once per Ready) stays the same size however long the run is.
const KEYS: u64 = 64;
/// Concurrent writes in the batched benchmark.
const BATCH: usize = 16;
/// gRPC message cap on the node-to-node API (the node's default).
const MAX_GRPC_BYTES: usize = 64 << 20;

/// Why the benchmark cluster could not be started.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("starting node {node}: {source}")]
    Start {
        node: u64,
        source: Box<herald_cluster::StartError>,
    },
    #[error("the cluster did not form within {0:?}: {1}")]
    NotFormed(Duration, String),
}

/// One running member: its handle, Raft thread and node-to-node server.
struct Node {
    handle: ClusterHandle,
    thread: Option<JoinHandle<Result<(), LoopError>>>,
    users_thread: Option<JoinHandle<Result<(), LoopError>>>,
    stop_server: watch::Sender<bool>,
}

/// Three members on loopback, their runtime and data dir; stopped and removed on drop.
struct LoopbackCluster {
    rt: Option<Runtime>,
    nodes: Vec<Node>,
    dir: PathBuf,
    leader: usize,
    follower: usize,
    next_write: Cell<u64>,
}

/// The Raft timing a node gets by default (`[raft]` in herald.toml); `RAFT_SNAPSHOT_ENTRIES`
/// overrides the snapshot interval (to show what snapshots cost in the mixed-load run).
fn raft_config(node_id: u64) -> RaftConfig {
    let snapshot_entries = std::env::var("RAFT_SNAPSHOT_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    RaftConfig {
        node_id,
        tick: Duration::from_millis(100),
        election_ticks: 10,
        heartbeat_ticks: 2,
        snapshot_entries,
        compaction_lag: 5000,
        promote_lag: 100,
        max_size_per_msg: 1 << 20,
        proposal_timeout: Duration::from_secs(10),
    }
}

/// A unique, fresh directory under the system temp dir.
fn unique_dir() -> Result<PathBuf, std::io::Error> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("herald-raftbench-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

async fn wait_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Starts node `id` on 127.0.0.(90+id): the Raft group member and its node-to-node server.
fn start_node(rt: &Runtime, id: u64, dir: &Path, join: Option<String>) -> Result<Node, BenchError> {
    let listener = std::net::TcpListener::bind((format!("127.0.0.{}", 90 + id).as_str(), 0))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let me = NodeInfo {
        node_id: id,
        cluster_address: addr.to_string(),
        admin_address: String::new(),
    };
    let _entered = rt.enter();
    let cluster = herald_cluster::start(
        ClusterConfig {
            raft: raft_config(id),
            data_dir: dir.join(format!("n{id}")),
            me,
            bootstrap_domains: vec!["bench.test".to_string()],
            join,
            peer: PeerOptions::default(),
            secrets: Default::default(),
        },
        &slog::Logger::root(slog::Discard, slog::o!()),
    )
    .map_err(|e| BenchError::Start {
        node: id,
        source: Box::new(e),
    })?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (stop_server, stop_rx) = watch::channel(false);
    let svc = NodeApiService::grpc(cluster.handle.clone(), None, MAX_GRPC_BYTES, false);
    rt.spawn(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(svc)
            .serve_with_incoming_shutdown(
                // As the agent does: tonic's tcp_nodelay does not reach a handed-in stream.
                TcpListenerStream::new(listener).map(|conn| {
                    conn.inspect(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    })
                }),
                wait_true(stop_rx),
            ),
    );
    Ok(Node {
        handle: cluster.handle,
        thread: Some(cluster.thread),
        users_thread: Some(cluster.users_thread),
        stop_server,
    })
}

/// Why the cluster is not formed yet (None: formed): every node a voter of {1, 2, 3}, one
/// leader all agree on, and the three members' addresses applied everywhere (for forwarding).
fn not_formed(handles: &[ClusterHandle]) -> Option<String> {
    let all: Vec<u64> = (1..=NODES).collect();
    let mut leaders = Vec::new();
    for h in handles {
        let st = h.status();
        let mut voters = st.voters.clone();
        voters.sort_unstable();
        if voters != all {
            return Some(format!("node {} sees voters {voters:?}", h.node_id()));
        }
        if st.leader_id == 0 {
            return Some(format!("node {} knows no leader", h.node_id()));
        }
        let known = h.applied().state.nodes().len();
        if known != handles.len() {
            return Some(format!("node {} has applied {known} members", h.node_id()));
        }
        leaders.push(st.leader_id);
    }
    leaders.dedup();
    (leaders.len() != 1).then(|| format!("leaders disagree: {leaders:?}"))
}

impl LoopbackCluster {
    /// Bootstraps node 1, joins 2 and 3 through it, and waits (bounded) until the cluster formed.
    fn start() -> Result<Self, BenchError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let mut cluster = LoopbackCluster {
            rt: None,
            nodes: Vec::new(),
            dir: unique_dir()?,
            leader: 0,
            follower: 0,
            next_write: Cell::new(0),
        };
        // From here on, a failure drops `cluster`, which stops what was started.
        let first = start_node(&rt, 1, &cluster.dir, None)?;
        let target = first.handle.me().cluster_address.clone();
        cluster.nodes.push(first);
        for id in 2..=NODES {
            let node = start_node(&rt, id, &cluster.dir, Some(target.clone()))?;
            cluster.nodes.push(node);
        }
        let handles: Vec<ClusterHandle> = cluster.nodes.iter().map(|n| n.handle.clone()).collect();
        let formed = rt.block_on(async {
            let deadline = Instant::now() + FORM_TIMEOUT;
            loop {
                match not_formed(&handles) {
                    None => return Ok(()),
                    Some(why) if Instant::now() >= deadline => return Err(why),
                    Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        cluster.rt = Some(rt);
        formed.map_err(|why| BenchError::NotFormed(FORM_TIMEOUT, why))?;
        let role_of = |i: usize| cluster.nodes[i].handle.status().role;
        cluster.leader = (0..cluster.nodes.len())
            .find(|&i| role_of(i) == Role::Leader)
            .ok_or_else(|| BenchError::NotFormed(FORM_TIMEOUT, "no local leader".into()))?;
        cluster.follower = (0..cluster.nodes.len())
            .find(|&i| i != cluster.leader)
            .ok_or_else(|| BenchError::NotFormed(FORM_TIMEOUT, "no follower".into()))?;
        Ok(cluster)
    }

    /// The next write: an upsert of one of [`KEYS`] domains with a new description.
    fn next_command(&self) -> Command {
        let i = self.next_write.get();
        self.next_write.set(i + 1);
        mixed::put(
            Body::Domain(LocalDomain {
                name: format!("d{}.bench.test", i % KEYS),
                description: format!("write {i}"),
                ..Default::default()
            }),
            0,
            None,
        )
    }

    /// Runs `iters` rounds of `batch` concurrent writes through node index `node`; returns the
    /// time spent waiting for them. A failed write ends the run: its latency would be meaningless.
    fn timed_writes(&self, node: usize, iters: u64, batch: usize) -> Duration {
        let (Some(rt), Some(n)) = (self.rt.as_ref(), self.nodes.get(node)) else {
            panic!("benchmark cluster has no runtime or no node {node}");
        };
        rt.block_on(async {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let cmds: Vec<Command> = (0..batch).map(|_| self.next_command()).collect();
                let start = Instant::now();
                let results = futures::future::join_all(cmds.iter().map(|c| n.handle.write(c)));
                let results: Vec<Result<_, ErrorDetail>> = results.await;
                total += start.elapsed();
                if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                    panic!("write through node {} failed: {e:?}", n.handle.node_id());
                }
            }
            total
        })
    }
}

impl Drop for LoopbackCluster {
    /// Stops every Raft loop and joins its thread, shuts the servers and runtime down, and
    /// removes the data dir. Problems are reported on stderr, never as panics.
    fn drop(&mut self) {
        for n in &self.nodes {
            n.handle.shutdown();
        }
        for n in &mut self.nodes {
            let id = n.handle.node_id();
            for thread in [n.thread.take(), n.users_thread.take()] {
                match thread.map(JoinHandle::join) {
                    Some(Ok(Err(e))) => eprintln!("raft loop of node {id} failed: {e}"),
                    Some(Err(_)) => eprintln!("raft thread of node {id} panicked"),
                    Some(Ok(Ok(()))) | None => {}
                }
            }
            let _ = n.stop_server.send(true);
        }
        self.nodes.clear();
        // Raft streams between the nodes are long-lived calls that graceful server shutdown
        // would wait for; dropping the runtime cancels them and joins its worker threads.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

fn bench_raft(c: &mut Criterion) {
    let cluster: OnceCell<LoopbackCluster> = OnceCell::new();
    let get = || {
        cluster.get_or_init(|| {
            LoopbackCluster::start()
                .unwrap_or_else(|e| panic!("cannot start the 3-node loopback cluster: {e}"))
        })
    };
    let mut g = c.benchmark_group("raft");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    g.bench_function("propose_apply_leader", |b| {
        let cl = get();
        b.iter_custom(|iters| cl.timed_writes(cl.leader, iters, 1));
    });
    g.bench_function("propose_apply_follower", |b| {
        let cl = get();
        b.iter_custom(|iters| cl.timed_writes(cl.follower, iters, 1));
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(format!("propose_apply_leader_x{BATCH}"), |b| {
        let cl = get();
        b.iter_custom(|iters| cl.timed_writes(cl.leader, iters, BATCH));
    });
    g.finish();
    // Dropping the cell stops the cluster (if a benchmark started it).
    drop(cluster);
}

/// The mixed-load scenario on a cluster of its own; a failed write or a cluster that does not
/// form fails the run.
fn run_mixed(options: mixed::Options) {
    let cluster = LoopbackCluster::start()
        .unwrap_or_else(|e| panic!("cannot start the 3-node loopback cluster: {e}"));
    let report = mixed::run(&cluster, options).unwrap_or_else(|e| panic!("raft/mixed: {e}"));
    drop(cluster);
    report.print();
    if let Ok(path) = std::env::var("RAFT_MIXED_JSON") {
        let row = report.json().to_string() + "\n";
        if let Err(e) = std::fs::write(&path, row) {
            panic!("cannot write {path}: {e}");
        }
    }
    assert_eq!(report.failures(), 0, "raft/mixed: writes failed");
}

criterion_group!(benches, bench_raft);

fn main() {
    if std::env::var_os("RAFT_MIXED").is_some() {
        run_mixed(mixed::Options::from_env());
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--test") {
        run_mixed(mixed::Options::smoke());
    }
}
