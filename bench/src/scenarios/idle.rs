//! Scenario 2, idle hold: N authenticated, available sessions held open; the server's RSS
//! growth (VmRSS after minus before) divided by the sessions is the cost of one idle session.
//!
//! One process may hold at most ~20,000 sockets here (a hard open-files limit), so large
//! counts are spread over worker processes (`loadgen idle-worker`, started by this one): each
//! logs in its slice, reports `READY` on stdout, and holds its sessions until its stdin closes.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::worker::{stdin_closed, Worker, WorkerSlice};
use super::{close_all, iq_reply, login_all, Common};
use crate::client::Session;
use crate::report::{percentiles, rss_bytes, CpuMeter, Row};

/// How long workers may take to report `READY` (their logins run in parallel with ours).
const WORKER_READY_TIMEOUT: Duration = Duration::from_secs(900);

/// Holds `users` sessions (this process) plus the workers' for `hold` and returns the row.
pub async fn run(common: &Common, users: usize, hold: Duration, workers: &[WorkerSlice]) -> Row {
    let before = common.server_pid.and_then(rss_bytes);
    let mut children = Vec::new();
    for w in workers {
        match Worker::spawn(w) {
            Ok(c) => children.push(c),
            Err(e) => eprintln!("loadgen: starting worker {:?}: {e}", w.argv),
        }
    }
    let mut logins = login_all(common, 0..users).await;
    let mut n = logins.sessions.len();
    let mut failed = logins.failed + (workers.len() - children.len());
    for c in &mut children {
        let ready = c.expect("READY", WORKER_READY_TIMEOUT).await;
        match ready.as_deref() {
            Some([ok, bad, ..]) => {
                n += ok.parse::<usize>().unwrap_or(0);
                failed += bad.parse::<usize>().unwrap_or(0);
            }
            _ => {
                eprintln!("loadgen: a worker did not report READY");
                failed += 1;
            }
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut set = JoinSet::new();
    let tls = logins.sessions.first().map(|(_, s)| s.tls.clone());
    for (i, s) in logins.sessions.drain(..) {
        set.spawn(hold_one(i, s, stop_rx.clone()));
    }
    let gen = CpuMeter::start(std::process::id());
    let server = common.server_pid.map(CpuMeter::start);
    tokio::time::sleep(hold).await;
    let after = common.server_pid.and_then(rss_bytes);
    let mut row = common.row("idle", n);
    row.generator_cpu_pct = gen.percent();
    row.server_cpu_pct = server.and_then(|m| m.percent());
    row.set_latency(&percentiles(&mut logins.latencies_us));
    row.set_tls(tls.as_ref());
    row.lost = Some(failed as u64);
    if let (Some(b), Some(a)) = (before, after) {
        if n > 0 {
            row.rss_bytes_per_session = Some((a as f64 - b as f64) / n as f64);
        }
        row.note = Some(format!(
            "server VmRSS {b} -> {a} bytes after {}s hold; {} generator process(es); \
             latency = login time (first process's sessions)",
            hold.as_secs(),
            1 + children.len()
        ));
    }
    for c in children {
        // Closing stdin tells the worker to close its sessions and exit.
        c.finish(Duration::from_secs(60)).await;
    }
    release(stop_tx, set, Duration::from_secs(10)).await;
    row
}

/// `loadgen idle-worker`: logs in `users` sessions, prints `READY ok failed`, holds them
/// until stdin closes (or `limit` passes), then closes them.
pub async fn worker(common: &Common, users: usize, limit: Duration) {
    let logins = login_all(common, 0..users).await;
    println!("READY {} {}", logins.sessions.len(), logins.failed);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut set = JoinSet::new();
    for (i, s) in logins.sessions {
        set.spawn(hold_one(i, s, stop_rx.clone()));
    }
    stdin_closed(limit).await;
    release(stop_tx, set, Duration::from_secs(30)).await;
}

type Held = JoinSet<Option<(usize, Session)>>;

/// Stops the holders, then closes every session still healthy (within `limit`).
async fn release(stop: watch::Sender<bool>, mut set: Held, limit: Duration) {
    let _ = stop.send(true);
    let mut sessions = Vec::new();
    while let Some(j) = set.join_next().await {
        if let Ok(Some(s)) = j {
            sessions.push(s);
        }
    }
    close_all(sessions, limit).await;
}

/// Keeps one session read (answering iqs) until told to stop; returns it if still healthy.
async fn hold_one(
    i: usize,
    mut s: Session,
    mut stop: watch::Receiver<bool>,
) -> Option<(usize, Session)> {
    loop {
        while let Ok(Some(e)) = s.buffered_stanza() {
            if e.name() == "iq" {
                if let Some(r) = iq_reply(&e) {
                    s.send(&r).await.ok()?;
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return Some((i, s)),
            r = s.fill() => if !matches!(r, Ok(true)) { return None },
        }
    }
}
