//! Scenario 1, login storm: N users connect, STARTTLS, SCRAM, bind, fetch the roster and send
//! initial presence, `concurrency` at a time. Throughput is logins per second; latency is the
//! time of one login.

use std::time::Duration;

use super::{close_all, login_all, Common};
use crate::report::{percentiles, CpuMeter, Row};

/// Runs the storm over `users` slots and returns its row.
pub async fn run(common: &Common, users: usize) -> Row {
    let gen = CpuMeter::start(std::process::id());
    let server = common.server_pid.map(CpuMeter::start);
    let mut logins = login_all(common, 0..users).await;
    let mut row = common.row("login", logins.sessions.len());
    row.generator_cpu_pct = gen.percent();
    row.server_cpu_pct = server.and_then(|m| m.percent());
    let secs = logins.elapsed.as_secs_f64();
    if secs > 0.0 {
        row.msgs_per_sec = Some(logins.sessions.len() as f64 / secs);
    }
    row.set_latency(&percentiles(&mut logins.latencies_us));
    row.lost = Some(logins.failed as u64);
    row.note = Some(format!(
        "logins/s; latency = connect to initial presence (STARTTLS, {}, bind, roster get); {} in flight",
        common.connect.hash.mechanism(),
        common.concurrency
    ));
    close_all(logins.sessions, Duration::from_secs(10)).await;
    row
}
