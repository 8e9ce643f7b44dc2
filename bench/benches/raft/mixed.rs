//! Config writes while user state is written: the latency an operator's `domain set` or
//! `policy set` sees on a cluster whose users are busy (roster changes, offline messages).
//!
//! On the same 3-node loopback cluster as the criterion benchmarks: `users` accounts, each with a
//! roster of `roster` items, are created; then, for `baseline` seconds, config writes alone
//! (`config_rate` per second, through the three nodes in turn, as admin calls land on any node);
//! then for `secs` seconds the same config writes while user-state writes run at `user_rate` per
//! second. Each user-state write is what a user actor sends: the user's whole `UserData` (one
//! roster item changed), through the user's home node into the user-state Raft group, fenced
//! with that node and the placement view, with the revision the writer last saw (a user with a write in flight is skipped and
//! counted, as an actor's batching would merge it). Every latency is from the call until the
//! write is committed and applied on the node that was called.
//!
//! `RAFT_MIXED=1 cargo bench -p herald-bench --bench raft` (knobs: `RAFT_MIXED_USERS`,
//! `RAFT_MIXED_RATE`, `RAFT_MIXED_SECS`, `RAFT_MIXED_BASELINE`, `RAFT_MIXED_CONFIG_RATE`,
//! `RAFT_MIXED_ROSTER`, `RAFT_MIXED_JSON` for a JSON row). `cargo bench -p herald-bench --
//! --test` runs a short version (200 users, 200 writes/s, 2 s) that fails on any failed write.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_cluster::ClusterHandle;
use herald_grpc::config::{
    command::Op, config_object::Body, Command, ConfigObject, Fence, LocalDomain, PutObject,
    RosterItem, ScramSecret, User, UserData, WriteMode,
};

use super::LoopbackCluster;

/// How long the placement view may take to hold all three nodes.
const VIEW_TIMEOUT: Duration = Duration::from_secs(30);
/// How long writes still in flight at the end may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Users created per concurrent batch.
const CREATE_BATCH: usize = 64;

/// The run's shape.
#[derive(Debug, Clone)]
pub struct Options {
    pub users: usize,
    pub user_rate: f64,
    pub secs: f64,
    pub baseline: f64,
    pub config_rate: f64,
    pub roster: usize,
}

impl Options {
    /// The full run, with `RAFT_MIXED_*` overrides.
    pub fn from_env() -> Self {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        }
        Options {
            users: var("RAFT_MIXED_USERS", 2000),
            user_rate: var("RAFT_MIXED_RATE", 2000.0),
            secs: var("RAFT_MIXED_SECS", 30.0),
            baseline: var("RAFT_MIXED_BASELINE", 10.0),
            config_rate: var("RAFT_MIXED_CONFIG_RATE", 20.0),
            roster: var("RAFT_MIXED_ROSTER", 50),
        }
    }

    /// The short version CI runs.
    pub fn smoke() -> Self {
        Options {
            users: 200,
            user_rate: 200.0,
            secs: 2.0,
            baseline: 1.0,
            config_rate: 20.0,
            roster: 20,
        }
    }
}

/// Latencies of one kind of write, in milliseconds.
#[derive(Debug, Default)]
pub struct Samples {
    ms: Vec<f64>,
    failed: Vec<String>,
}

impl Samples {
    fn record(&mut self, r: Result<Duration, String>) {
        match r {
            Ok(d) => self.ms.push(d.as_secs_f64() * 1e3),
            Err(e) => self.failed.push(e),
        }
    }

    /// The `q` quantile (nearest rank), 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return 0.0;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    fn summary(&self) -> String {
        format!(
            "{} writes, p50 {:.2} ms, p90 {:.2}, p99 {:.2}, max {:.2}, {} failed",
            self.ms.len(),
            self.quantile(0.5),
            self.quantile(0.9),
            self.quantile(0.99),
            self.quantile(1.0),
            self.failed.len()
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "writes": self.ms.len(),
            "failed": self.failed.len(),
            "p50_ms": self.quantile(0.5),
            "p90_ms": self.quantile(0.9),
            "p99_ms": self.quantile(0.99),
            "max_ms": self.quantile(1.0),
        })
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    pub options: Options,
    pub config_alone: Samples,
    pub config_loaded: Samples,
    pub user: Samples,
    /// User writes due while that user's previous write was still in flight.
    pub user_skipped: u64,
    /// User writes completed per second over the loaded window.
    pub user_rate_done: f64,
}

impl Report {
    pub fn print(&self) {
        let o = &self.options;
        println!(
            "raft/mixed: {} users, roster {}, user-state writes offered {}/s for {} s, config writes {}/s",
            o.users, o.roster, o.user_rate, o.secs, o.config_rate
        );
        println!(
            "  config writes alone:            {}",
            self.config_alone.summary()
        );
        println!(
            "  config writes under user load:  {}",
            self.config_loaded.summary()
        );
        println!(
            "  user-state writes:              {} ({:.0}/s done, {} skipped: previous write in flight)",
            self.user.summary(),
            self.user_rate_done,
            self.user_skipped
        );
        for e in self
            .config_alone
            .failed
            .iter()
            .chain(&self.config_loaded.failed)
            .chain(&self.user.failed)
            .take(5)
        {
            println!("  failure: {e}");
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let o = &self.options;
        serde_json::json!({
            "scenario": "raft_mixed",
            "users": o.users,
            "roster_items": o.roster,
            "user_rate_offered": o.user_rate,
            "user_rate_done": self.user_rate_done,
            "user_skipped": self.user_skipped,
            "secs": o.secs,
            "config_rate": o.config_rate,
            "config_alone": self.config_alone.json(),
            "config_under_user_load": self.config_loaded.json(),
            "user_writes": self.user.json(),
        })
    }

    /// Every failure, for a run that must have none.
    pub fn failures(&self) -> usize {
        self.config_alone.failed.len() + self.config_loaded.failed.len() + self.user.failed.len()
    }
}

/// An upsert of `object`, as every write of these benchmarks is.
pub fn put(object: Body, expected_revision: u64, fence: Option<Fence>) -> Command {
    Command {
        audit: None,
        op: Some(Op::Put(PutObject {
            object: Some(ConfigObject::new(object)),
            mode: WriteMode::Upsert as i32,
            expected_revision,
            confirm: false,
            fence,
        })),
    }
}

/// A well-formed SCRAM secret (nobody signs in during this benchmark).
fn secret(key_len: usize) -> ScramSecret {
    ScramSecret {
        salt: vec![7; 16],
        iterations: 4096,
        stored_key: vec![1; key_len],
        server_key: vec![2; key_len],
    }
}

fn jid(i: usize) -> String {
    format!("m{i}@bench.test")
}

/// User `i`'s state after its `version`th change: `roster` contacts, one renamed per change.
fn user_data(i: usize, roster: usize, version: u64) -> UserData {
    let changed = (version as usize) % roster.max(1);
    UserData {
        jid: jid(i),
        roster_version: version,
        roster: (0..roster)
            .map(|k| RosterItem {
                jid: format!("contact{k}@bench.test"),
                name: if k == changed {
                    format!("Contact {k} (v{version})")
                } else {
                    format!("Contact {k}")
                },
                groups: vec!["Team".into()],
                sub_to: true,
                sub_from: true,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

async fn timed(h: &ClusterHandle, cmd: &Command) -> Result<(Duration, u64), String> {
    let start = Instant::now();
    match h.write(cmd).await {
        Ok(w) => Ok((start.elapsed(), w.revision)),
        Err(e) => Err(format!("node {}: {e:?}", h.node_id())),
    }
}

/// A user-state write, as a user actor makes it: through the user-state group.
async fn timed_user(h: &ClusterHandle, cmd: &Command) -> Result<(Duration, u64), String> {
    let start = Instant::now();
    match h.write_user(cmd).await {
        Ok(w) => Ok((start.elapsed(), w.revision)),
        Err(e) => Err(format!("node {}: {e:?}", h.node_id())),
    }
}

/// Config writes through the nodes in turn at `rate` per second until `stop`; each write is its
/// own task, so a slow one does not delay the next one's start.
async fn config_writes(
    handles: Arc<Vec<ClusterHandle>>,
    rate: f64,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Samples>>,
) {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut tick = tokio::time::interval(period);
    let mut tasks = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let h = handles[n % handles.len()].clone();
        let cmd = put(
            Body::Domain(LocalDomain {
                name: format!("cfg{}.bench.test", n % 16),
                description: format!("mixed write {n}"),
                ..Default::default()
            }),
            0,
            None,
        );
        n += 1;
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            let r = timed(&h, &cmd).await.map(|(d, _)| d);
            out.lock().expect("samples").record(r);
        }));
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, futures::future::join_all(tasks)).await;
}

/// A running [`config_writes`] task and what it measured.
struct ConfigWrites {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Samples>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConfigWrites {
    fn start(handles: &Arc<Vec<ClusterHandle>>, rate: f64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Samples::default()));
        let task = tokio::spawn(config_writes(
            handles.clone(),
            rate,
            stop.clone(),
            samples.clone(),
        ));
        ConfigWrites {
            stop,
            samples,
            task,
        }
    }

    /// Stops issuing, waits (bounded) for the writes in flight, and returns the latencies.
    async fn stop(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let mut samples = self.samples.lock().expect("samples");
        std::mem::take(&mut *samples)
    }
}

/// One user's writer state: the revision it last saw and whether a write is in flight.
struct Writer {
    revision: AtomicU64,
    version: AtomicU64,
    busy: AtomicBool,
}

/// Runs the whole scenario on a started cluster.
pub fn run(cluster: &LoopbackCluster, o: Options) -> Result<Report, String> {
    let rt = cluster.rt.as_ref().ok_or("no runtime")?;
    let handles: Arc<Vec<ClusterHandle>> =
        Arc::new(cluster.nodes.iter().map(|n| n.handle.clone()).collect());
    rt.block_on(async move {
        let leader = &handles[cluster.leader];
        // The accounts, then each one's first state (revision known from here on).
        for chunk in (0..o.users).collect::<Vec<_>>().chunks(CREATE_BATCH) {
            let cmds: Vec<Command> = chunk
                .iter()
                .map(|&i| {
                    put(
                        Body::User(User {
                            jid: jid(i),
                            scram_sha256: Some(secret(32)),
                            scram_sha1: Some(secret(20)),
                            ..Default::default()
                        }),
                        0,
                        None,
                    )
                })
                .collect();
            for r in futures::future::join_all(cmds.iter().map(|c| leader.write(c))).await {
                r.map_err(|e| format!("creating users: {e:?}"))?;
            }
        }
        let deadline = Instant::now() + VIEW_TIMEOUT;
        while handles
            .iter()
            .any(|h| h.placement().nodes.len() != handles.len())
        {
            if Instant::now() >= deadline {
                return Err(format!(
                    "the placement view did not hold all nodes within {VIEW_TIMEOUT:?}: {:?}",
                    handles[0].placement()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Every node a voter of the user-state group too (its leader adds them one by one).
        while handles.iter().any(|h| {
            h.status_of(herald_cluster::raft_loop::Group::Users)
                .voters
                .len()
                != handles.len()
        }) {
            if Instant::now() >= deadline {
                return Err(format!(
                    "the user-state group did not hold all nodes within {VIEW_TIMEOUT:?}: {:?}",
                    handles[0].status_of(herald_cluster::raft_loop::Group::Users)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let writers: Arc<Vec<Writer>> = Arc::new(
            (0..o.users)
                .map(|_| Writer {
                    revision: AtomicU64::new(0),
                    version: AtomicU64::new(0),
                    busy: AtomicBool::new(false),
                })
                .collect(),
        );

        // Config writes alone.
        let alone = ConfigWrites::start(&handles, o.config_rate);
        tokio::time::sleep(Duration::from_secs_f64(o.baseline)).await;
        let alone = alone.stop().await;

        // Config writes under user-state load.
        let loaded = ConfigWrites::start(&handles, o.config_rate);
        let user = Arc::new(Mutex::new(Samples::default()));
        let start = Instant::now();
        let mut skipped = 0u64;
        let mut issued = 0u64;
        let mut next_user = 0usize;
        let mut tasks = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        while start.elapsed().as_secs_f64() < o.secs {
            tick.tick().await;
            let due = (start.elapsed().as_secs_f64() * o.user_rate) as u64;
            while issued < due {
                issued += 1;
                let i = next_user;
                next_user = (next_user + 1) % o.users.max(1);
                let w = &writers[i];
                if w.busy.swap(true, Ordering::AcqRel) {
                    skipped += 1;
                    continue;
                }
                let name = jid(i);
                // The user's home in the current view writes, fenced as a user actor's write is.
                let view = handles[0].placement();
                let Some(home) = view.home(&name, 0) else {
                    return Err(format!("no home for {name} in {view:?}"));
                };
                let Some(h) = handles.iter().find(|h| h.node_id() == home).cloned() else {
                    return Err(format!("home {home} of {name} is not a bench node"));
                };
                let version = w.version.fetch_add(1, Ordering::Relaxed) + 1;
                let cmd = put(
                    Body::UserData(user_data(i, o.roster, version)),
                    w.revision.load(Ordering::Acquire),
                    Some(Fence {
                        owner_node: home,
                        epoch: view.epoch,
                        view: Some(herald_grpc::config::PlacementView {
                            epoch: view.epoch,
                            nodes: view.nodes.clone(),
                            reason: String::new(),
                        }),
                        pinned: 0,
                    }),
                );
                let (writers, user) = (writers.clone(), user.clone());
                tasks.push(tokio::spawn(async move {
                    let r = timed_user(&h, &cmd).await;
                    let w = &writers[i];
                    if let Ok((_, revision)) = &r {
                        w.revision.store(*revision, Ordering::Release);
                    }
                    w.busy.store(false, Ordering::Release);
                    user.lock().expect("samples").record(r.map(|(d, _)| d));
                }));
            }
        }
        let window = start.elapsed().as_secs_f64();
        let loaded = loaded.stop().await;
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, futures::future::join_all(tasks)).await;
        let user = std::mem::take(&mut *user.lock().expect("samples"));
        let user_rate_done = user.ms.len() as f64 / window;
        Ok(Report {
            options: o,
            config_alone: alone,
            config_loaded: loaded,
            user,
            user_skipped: skipped,
            user_rate_done,
        })
    })
}
