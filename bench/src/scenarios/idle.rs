//! Scenario 2, idle hold: N authenticated, available sessions held open; the server's RSS
//! growth (VmRSS after minus before) divided by the sessions is the cost of one idle session.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{close_all, iq_reply, login_all, Common};
use crate::client::Session;
use crate::report::{percentiles, rss_bytes, CpuMeter, Row};

/// Holds `users` sessions for `hold` and returns the row.
pub async fn run(common: &Common, users: usize, hold: Duration) -> Row {
    let before = common.server_pid.and_then(rss_bytes);
    let mut logins = login_all(common, 0..users).await;
    let n = logins.sessions.len();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut set = JoinSet::new();
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
    row.lost = Some(logins.failed as u64);
    if let (Some(b), Some(a)) = (before, after) {
        if n > 0 {
            row.rss_bytes_per_session = Some((a as f64 - b as f64) / n as f64);
        }
        row.note = Some(format!(
            "server VmRSS {b} -> {a} bytes after {}s hold; latency = login time",
            hold.as_secs()
        ));
    }
    let _ = stop_tx.send(true);
    let mut sessions = Vec::with_capacity(n);
    while let Some(j) = set.join_next().await {
        if let Ok(Some(s)) = j {
            sessions.push(s);
        }
    }
    close_all(sessions, Duration::from_secs(10)).await;
    row
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
