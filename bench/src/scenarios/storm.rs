//! Presence storm (issue 15): many users, each watched by many of the others, all changing
//! status all the time — the load a presence router carries all day at a large company.
//!
//! Slots `0..users` each watch the next `watch` of them (a ring: user i subscribes to users
//! i+1 … i+watch), so every user has `watch` watchers online. Setup: the users log in,
//! subscribe and approve every request they see, and the scenario waits until every user has
//! seen each of its contacts online, then until the server is quiet. Then every user changes
//! its status once per `interval` for `duration`, the users' changes spread evenly over the
//! interval (user i at offset i/users of it), each change carrying its number and send time
//! in `<status/>`. Every watcher stamps each change with the kernel's receive time of the
//! socket data ([`crate::stamped`]) and the generator's own lag beside it. With the defaults
//! (2,000 users, 100 watchers, 10 s) that is 20,000 deliveries/s offered.
//!
//! The row: latency per delivery (p50 … max), deliveries/s, lost (changes sent × watchers −
//! received), and the server's CPU per delivery over the whole window.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_xmpp::ns;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::fanout::settle;
use super::{close_all, login_all, ring_reply, Common, Ring};
use crate::client::Session;
use crate::report::{percentiles, CpuMeter, Row};
use crate::stamped::wall_us;

/// Knobs of the presence-storm scenario.
#[derive(Debug, Clone, Copy)]
pub struct StormPlan {
    /// Users (slots 0..users), every one both publisher and watcher.
    pub users: usize,
    /// Contacts each user watches (and watchers each user has).
    pub watch: usize,
    /// Time between two status changes of one user.
    pub interval: Duration,
    /// Length of the measured window.
    pub duration: Duration,
    /// Longest wait for the subscription setup.
    pub setup_timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Setup,
    Measure,
    Stop,
}

/// Time allowed for the last changes to arrive after the window.
const GRACE: Duration = Duration::from_secs(2);

/// Runs the scenario; returns one row.
pub async fn run(common: &Common, plan: &StormPlan) -> Row {
    let watch = plan.watch.min(plan.users.saturating_sub(1));
    let logins = login_all(common, 0..plan.users).await;
    let mut row = common.row("storm", plan.users);
    row.set_tls(logins.sessions.first().map(|(_, s)| &s.tls));
    if logins.failed > 0 {
        row.note = Some(format!("{} of {} logins failed", logins.failed, plan.users));
        close_all(logins.sessions, Duration::from_secs(20)).await;
        return row;
    }
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let ready = Arc::new(AtomicUsize::new(0));
    // Wall time (µs) of the window's start, set when the setup is done.
    let t0 = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for (i, s) in logins.sessions {
        let contacts: Vec<String> = (1..=watch)
            .map(|k| common.bare_jid((i + k) % plan.users))
            .collect();
        let offset = plan.interval.mul_f64(i as f64 / plan.users as f64);
        set.spawn(member(
            i,
            s,
            contacts,
            Timing {
                offset,
                interval: plan.interval,
                duration: plan.duration,
            },
            ready.clone(),
            t0.clone(),
            phase_rx.clone(),
        ));
    }
    let t_setup = Instant::now();
    let deadline = t_setup + plan.setup_timeout;
    while Instant::now() < deadline && ready.load(Ordering::Relaxed) < plan.users {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready_n = ready.load(Ordering::Relaxed);
    eprintln!(
        "storm: {ready_n}/{} users see all {watch} contacts online after {:.1} s",
        plan.users,
        t_setup.elapsed().as_secs_f64()
    );
    let quiet = settle(common.server_pid).await;
    eprintln!("storm: server quiet after {:.1} s", quiet.as_secs_f64());
    // The window starts half a second from now, so every member has its start time first.
    let start_us = wall_us() + 500_000;
    t0.store(start_us, Ordering::Relaxed);
    let _ = phase_tx.send(Phase::Measure);
    let until = |at_us: u64| Duration::from_micros(at_us.saturating_sub(wall_us()));
    tokio::time::sleep(until(start_us)).await;
    let gen = CpuMeter::start(std::process::id());
    let server = common.server_pid.map(CpuMeter::start);
    tokio::time::sleep(plan.duration + GRACE).await;
    row.generator_cpu_pct = gen.percent();
    let server_use = server.and_then(|m| m.read());
    row.server_cpu_pct = server_use.and_then(|u| u.percent());
    let _ = phase_tx.send(Phase::Stop);
    let mut lat = Vec::new();
    let mut lags = Vec::new();
    let mut changes = 0u64;
    let mut back = Vec::new();
    while let Some(j) = set.join_next().await {
        if let Ok((s, sent, samples)) = j {
            changes += sent;
            for (us, lag) in samples {
                lat.push(us);
                lags.push(lag);
            }
            back.extend(s);
        }
    }
    let expected = changes * watch as u64;
    let received = lat.len() as u64;
    let secs = (plan.duration + GRACE).as_secs_f64();
    row.delivered = Some(received);
    row.lost = Some(expected.saturating_sub(received));
    row.offered_rate = Some(plan.users as f64 * watch as f64 / plan.interval.as_secs_f64());
    row.msgs_per_sec = Some(received as f64 / plan.duration.as_secs_f64());
    row.server_cpu_us_per_msg = server_use.and_then(|u| u.us_per(received));
    let p = percentiles(&mut lat);
    row.set_latency(&p);
    row.set_generator_lag(&percentiles(&mut lags));
    row.note = Some(format!(
        "{} users ({ready_n} ready), each watched by {watch}, each changing status every {:.0} s \
         for {:.0} s: {changes} changes, {received} of {expected} deliveries; latency per \
         delivery to its kernel receive time (generator lag beside it); msgs_per_sec = \
         deliveries/s over the window; server CPU over {secs:.0} s (window + grace)",
        plan.users,
        plan.interval.as_secs_f64(),
        plan.duration.as_secs_f64()
    ));
    eprintln!(
        "storm: {received}/{expected} deliveries, p50 {:.2} ms p99 {:.2} ms max {:.2} ms, \
         server CPU {:?} % ({:?} µs/delivery)",
        p.p50_ms, p.p99_ms, p.max_ms, row.server_cpu_pct, row.server_cpu_us_per_msg
    );
    close_all(back, Duration::from_secs(30)).await;
    row
}

/// When one member changes its status.
#[derive(Debug, Clone, Copy)]
struct Timing {
    offset: Duration,
    interval: Duration,
    duration: Duration,
}

impl Timing {
    /// Wall times (µs) of the member's changes in a window starting at `t0_us`.
    fn changes(&self, t0_us: u64) -> impl Iterator<Item = u64> {
        let (offset, interval, end) = (
            self.offset.as_micros() as u64,
            self.interval.as_micros().max(1) as u64,
            self.duration.as_micros() as u64,
        );
        (0..)
            .map(move |k| offset + k * interval)
            .take_while(move |at| *at < end)
            .map(move |at| t0_us + at)
    }
}

/// (latency µs to the kernel receive time, generator lag µs) per delivery received.
type Samples = Vec<(u64, u64)>;

async fn member(
    i: usize,
    mut s: Session,
    contacts: Vec<String>,
    timing: Timing,
    ready: Arc<AtomicUsize>,
    t0: Arc<AtomicU64>,
    mut phase: watch::Receiver<Phase>,
) -> (Option<(usize, Session)>, u64, Samples) {
    let mut samples = Vec::new();
    let mut sent = 0u64;
    let mut ring = Ring::new(contacts, ready);
    if ring.subscribe(&mut s).await.is_err() {
        return (None, sent, samples);
    }
    // The member's change times, once the window is known.
    let mut schedule: Option<Vec<u64>> = None;
    let mut next = 0usize;
    loop {
        loop {
            let e = match s.buffered_stanza() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(_) => return (None, sent, samples),
            };
            if let Some(from) = ring.contact_available(&e) {
                let status = e
                    .get_child("status", ns::CLIENT)
                    .map(|st| st.text())
                    .unwrap_or_default();
                if let Some(ts) = parse_status(&status) {
                    let rx = s.received_at_us();
                    samples.push((rx.saturating_sub(ts), wall_us().saturating_sub(rx)));
                } else {
                    ring.seen_online(from);
                }
            } else if let Some(r) = ring_reply(&e) {
                if s.send(&r).await.is_err() {
                    return (None, sent, samples);
                }
            }
        }
        let due = schedule.as_ref().and_then(|v| v.get(next)).copied();
        let tick = async {
            match due {
                Some(at) => {
                    tokio::time::sleep(Duration::from_micros(at.saturating_sub(wall_us()))).await
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            c = phase.changed() => {
                if c.is_err() {
                    return (Some((i, s)), sent, samples);
                }
                let p = *phase.borrow();
                match p {
                    Phase::Setup => {}
                    Phase::Measure => {
                        schedule = Some(timing.changes(t0.load(Ordering::Relaxed)).collect());
                    }
                    Phase::Stop => return (Some((i, s)), sent, samples),
                }
            }
            _ = tick => {
                next += 1;
                sent += 1;
                let p = format!("<presence><status>{sent}:{}</status></presence>", wall_us());
                if s.send_raw(p.as_bytes()).await.is_err() {
                    return (None, sent, samples);
                }
            }
            r = s.fill() => if !matches!(r, Ok(true)) { return (None, sent, samples) },
        }
    }
}

/// The send time (µs) from a `change:micros` status text.
fn parse_status(status: &str) -> Option<u64> {
    super::fanout::parse_status(status).map(|(_, ts)| ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cases = [
            ("1:99", Some(99)),
            ("x:99", None),
            ("3:", None),
            ("online", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_status(s), want, "{s}");
        }
    }

    #[test]
    fn changes_are_spread_and_bounded_by_the_window() {
        let t = Timing {
            offset: Duration::from_millis(2_500),
            interval: Duration::from_secs(10),
            duration: Duration::from_secs(60),
        };
        let at: Vec<u64> = t.changes(1_000_000).collect();
        assert_eq!(
            at,
            [3_500_000, 13_500_000, 23_500_000, 33_500_000, 43_500_000, 53_500_000]
        );
        // An offset past the window: no change at all.
        let late = Timing {
            offset: Duration::from_secs(61),
            ..t
        };
        assert_eq!(late.changes(0).count(), 0);
    }
}
