//! Scenario 1, login storm: N users connect, STARTTLS, SCRAM, bind, fetch the roster and send
//! initial presence, `concurrency` at a time. Throughput is logins per second; latency is the
//! time of one login.
//!
//! The client side of a login costs about as much CPU as the server side (PBKDF2 ×4096 for
//! SCRAM, the TLS handshake), so the storm can be spread over worker processes
//! (`loadgen login --processes K`): every worker logs in its slice of the users, all start on
//! the parent's `GO`, and the row reports every process's CPU.
//!
//! `--reconnect` measures a reconnect storm instead (rows `reconnect`): everyone signs in and
//! out once first, unmeasured, and the storm then re-authenticates with the SCRAM keys the
//! generator cached from that pass, as a client reconnecting after a server restart may.
//! The first-login storm's generator spends most of its CPU on PBKDF2; this one's does not.

use std::time::{Duration, Instant};

use super::worker::{stdin_closed, stdin_line, Worker, WorkerSlice};
use super::{close_all, login_all, Common};
use crate::report::{percentiles, CpuMeter, CpuUse, Row};

/// How long a worker may take to start and to finish its slice.
const WORKER_LIMIT: Duration = Duration::from_secs(900);

/// What a worker reports when its slice is done: `DONE ok failed cpu_us latencies`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SliceResult {
    /// Logins that succeeded.
    pub ok: usize,
    /// Logins that failed.
    pub failed: usize,
    /// The worker's CPU time over its slice, microseconds.
    pub cpu_us: u64,
    /// Login latencies, microseconds.
    pub latencies_us: Vec<u64>,
}

impl SliceResult {
    /// The fields of the `DONE` line.
    pub fn to_fields(&self) -> String {
        let lat: Vec<String> = self.latencies_us.iter().map(u64::to_string).collect();
        let lat = if lat.is_empty() {
            "-".to_string()
        } else {
            lat.join(",")
        };
        format!("{} {} {} {lat}", self.ok, self.failed, self.cpu_us)
    }

    /// Parses the fields of a `DONE` line.
    pub fn parse(fields: &[String]) -> Option<SliceResult> {
        let [ok, failed, cpu_us, lat] = fields else {
            return None;
        };
        let latencies_us = if lat == "-" {
            Vec::new()
        } else {
            lat.split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?
        };
        Some(SliceResult {
            ok: ok.parse().ok()?,
            failed: failed.parse().ok()?,
            cpu_us: cpu_us.parse().ok()?,
            latencies_us,
        })
    }
}

/// Runs the storm over `users` slots in this process plus the `workers`' slices, and returns
/// its row.
pub async fn run(common: &Common, users: usize, workers: &[WorkerSlice]) -> Row {
    let mut children = Vec::new();
    let mut failed_workers = 0;
    for w in workers {
        match Worker::spawn(w) {
            Ok(mut c) => {
                if c.expect("READY", Duration::from_secs(60)).await.is_some() {
                    children.push((c, w.users));
                } else {
                    eprintln!("loadgen: a login worker did not report READY");
                    failed_workers += w.users;
                    c.finish(Duration::from_secs(5)).await;
                }
            }
            Err(e) => {
                eprintln!("loadgen: starting worker {:?}: {e}", w.argv);
                failed_workers += w.users;
            }
        }
    }
    // Reconnect storm: this process's users sign in and out once first (the workers did
    // theirs before READY), so that the measured storm finds their SCRAM keys cached.
    let warm_failed = warm_up(common, users).await;
    let gen = CpuMeter::start(std::process::id());
    let server = common.server_pid.map(CpuMeter::start);
    let started = Instant::now();
    for (c, users) in &mut children {
        if c.say("GO").await.is_err() {
            eprintln!("loadgen: a login worker did not take GO");
            failed_workers += *users;
        }
    }
    let mut logins = login_all(common, 0..users).await;
    let mut ok = logins.sessions.len();
    let mut failed = logins.failed + failed_workers;
    let mut cpu_each_us = Vec::new();
    for (c, users) in &mut children {
        match c
            .expect("DONE", WORKER_LIMIT)
            .await
            .as_deref()
            .map(SliceResult::parse)
        {
            Some(Some(r)) => {
                ok += r.ok;
                failed += r.failed;
                cpu_each_us.push(r.cpu_us);
                logins.latencies_us.extend(r.latencies_us);
            }
            _ => {
                eprintln!("loadgen: a login worker did not report DONE");
                failed += *users;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let own = gen.read();
    let scenario = if common.reconnect {
        "reconnect"
    } else {
        "login"
    };
    let mut row = common.row(scenario, ok);
    let pct = |us: u64| {
        CpuUse {
            cpu_us: us,
            wall_secs: secs,
        }
        .percent()
    };
    let mut each: Vec<f64> = own.and_then(|u| pct(u.cpu_us)).into_iter().collect();
    each.extend(cpu_each_us.iter().filter_map(|&us| pct(us)));
    row.generator_cpu_pct = own.and_then(|u| pct(u.cpu_us + cpu_each_us.iter().sum::<u64>()));
    if !children.is_empty() {
        row.generator_cpu_pct_each = Some(each);
    }
    row.server_cpu_pct = server.and_then(|m| m.percent());
    if secs > 0.0 {
        row.msgs_per_sec = Some(ok as f64 / secs);
    }
    row.set_latency(&percentiles(&mut logins.latencies_us));
    row.set_tls(logins.sessions.first().map(|(_, s)| &s.tls));
    row.lost = Some(failed as u64);
    row.note = Some(format!(
        "logins/s; latency = connect to initial presence (STARTTLS, {}, bind, roster get); \
         {} in flight per process; {} generator process(es), generator CPU % = their sum{}",
        common.connect.hash.mechanism(),
        common.concurrency,
        1 + children.len(),
        if common.reconnect {
            format!(
                "; reconnect storm: every user signed in and out once before (not measured; \
                 {warm_failed} of this process's warm-up logins failed), SCRAM keys cached \
                 per salt by the generator (RFC 5802 §5.1)"
            )
        } else {
            String::new()
        }
    ));
    close_all(logins.sessions, Duration::from_secs(10)).await;
    for (c, _) in children {
        c.finish(Duration::from_secs(30)).await;
    }
    row
}

/// For a reconnect storm (`common.reconnect`): turns the SCRAM key cache on, signs `users`
/// slots in and out once, and returns how many of those logins failed; otherwise does nothing.
async fn warm_up(common: &Common, users: usize) -> usize {
    if !common.reconnect {
        return 0;
    }
    crate::scram::cache_keys();
    let warm = login_all(common, 0..users).await;
    close_all(warm.sessions, Duration::from_secs(30)).await;
    warm.failed
}

/// `loadgen login-worker`: prints `READY`, waits for the parent's `GO`, logs in `users`
/// sessions, prints `DONE …` ([`SliceResult`]), holds the sessions until stdin closes (or
/// `limit` passes), then closes them.
pub async fn worker(common: &Common, users: usize, limit: Duration) {
    let warm_failed = warm_up(common, users).await;
    if warm_failed > 0 {
        eprintln!("loadgen: {warm_failed} warm-up logins failed");
    }
    println!("READY");
    if stdin_line(limit).await.as_deref().map(str::trim) != Some("GO") {
        return;
    }
    let gen = CpuMeter::start(std::process::id());
    let logins = login_all(common, 0..users).await;
    let result = SliceResult {
        ok: logins.sessions.len(),
        failed: logins.failed,
        cpu_us: gen.read().map_or(0, |u| u.cpu_us),
        latencies_us: logins.latencies_us,
    };
    println!("DONE {}", result.to_fields());
    stdin_closed(limit).await;
    close_all(logins.sessions, Duration::from_secs(30)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_line_round_trip() {
        let cases = [
            SliceResult {
                ok: 3,
                failed: 1,
                cpu_us: 250_000,
                latencies_us: vec![1200, 900, 15_000],
            },
            SliceResult::default(),
        ];
        for r in cases {
            let fields: Vec<String> = r.to_fields().split(' ').map(String::from).collect();
            assert_eq!(SliceResult::parse(&fields), Some(r));
        }
        for bad in ["1 0 5", "1 0 5 1,x", "a 0 5 -", "1 0 5 - extra"] {
            let fields: Vec<String> = bad.split(' ').map(String::from).collect();
            assert_eq!(SliceResult::parse(&fields), None, "{bad}");
        }
    }
}
