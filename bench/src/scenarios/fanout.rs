//! Scenario 4, presence fan-out: slot 0 is the publisher, slots 1..=R its watchers. Setup: each
//! watcher sends a subscription request, the publisher approves every request it sees (servers
//! that already hold the subscription approve on its behalf), and the scenario waits until
//! every watcher has seen the publisher online. Then the publisher changes its status `rounds`
//! times, `interval` apart, with the round number and send time in `<status/>`; each watcher
//! records the latency of every round it receives, stamped with the kernel's receive time of
//! the socket data ([`crate::stamped`]), and the generator's own lag (from that receive time to
//! when the watcher read the delivery), reported beside the latency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_xmpp::{ns, Element};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{close_all, iq_reply, login_all, Common};
use crate::client::Session;
use crate::report::{percentiles, CpuMeter, Row};
use crate::stamped::wall_us;

/// Knobs of the fan-out scenario.
#[derive(Debug, Clone, Copy)]
pub struct FanoutPlan {
    /// Watchers (R).
    pub watchers: usize,
    /// Status changes of the publisher.
    pub rounds: u64,
    /// Time between status changes.
    pub interval: Duration,
    /// Longest wait for the subscription setup.
    pub setup_timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Setup,
    Measure,
    Stop,
}

/// Runs the scenario; returns one row.
pub async fn run(common: &Common, plan: &FanoutPlan) -> Row {
    let logins = login_all(common, 0..plan.watchers + 1).await;
    let mut row = common.row("fanout", logins.sessions.len());
    row.set_tls(logins.sessions.first().map(|(_, s)| &s.tls));
    let publisher_jid = common.bare_jid(0);
    let Some(pos) = logins.sessions.iter().position(|(i, _)| *i == 0) else {
        row.note = Some("publisher failed to log in".into());
        return row;
    };
    let mut sessions = logins.sessions;
    let (_, publisher) = sessions.remove(pos);
    let watchers = sessions.len();
    let ready = Arc::new(AtomicUsize::new(0));
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let mut set = JoinSet::new();
    for (i, s) in sessions {
        set.spawn(watcher(
            i,
            s,
            publisher_jid.clone(),
            ready.clone(),
            phase_rx.clone(),
        ));
    }
    let pub_task = tokio::spawn(publisher_loop(publisher, *plan, phase_rx.clone()));
    let deadline = Instant::now() + plan.setup_timeout;
    while Instant::now() < deadline && ready.load(Ordering::Relaxed) < watchers {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready_n = ready.load(Ordering::Relaxed);
    eprintln!("fanout: {ready_n}/{watchers} watchers see the publisher");
    let quiet = settle(common.server_pid).await;
    eprintln!("fanout: server quiet after {:.1} s", quiet.as_secs_f64());
    let gen = CpuMeter::start(std::process::id());
    let server = common.server_pid.map(CpuMeter::start);
    let t0 = Instant::now();
    let _ = phase_tx.send(Phase::Measure);
    let rounds_sent = pub_task.await.ok();
    // Grace period for the last round.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let secs = t0.elapsed().as_secs_f64();
    row.generator_cpu_pct = gen.percent();
    let server_use = server.and_then(|m| m.read());
    row.server_cpu_pct = server_use.and_then(|u| u.percent());
    let _ = phase_tx.send(Phase::Stop);
    let mut all = Vec::new();
    let mut lags = Vec::new();
    let mut per_round_max: std::collections::HashMap<u64, u64> = Default::default();
    let mut per_round_count: std::collections::HashMap<u64, usize> = Default::default();
    let mut back = Vec::new();
    while let Some(j) = set.join_next().await {
        if let Ok((s, samples)) = j {
            for (round, us, lag) in samples {
                all.push(us);
                lags.push(lag);
                let m = per_round_max.entry(round).or_default();
                *m = (*m).max(us);
                *per_round_count.entry(round).or_default() += 1;
            }
            if let Some(s) = s {
                back.push(s);
            }
        }
    }
    let (publisher, sent) = rounds_sent.unwrap_or((None, 0));
    if let Some(p) = publisher {
        back.push(p);
    }
    let expected = sent * watchers as u64;
    row.lost = Some(expected.saturating_sub(all.len() as u64));
    row.delivered = Some(all.len() as u64);
    // Over the whole measurement (rounds and the grace second): idle time costs nothing, so
    // this is the server's CPU per presence delivered.
    row.server_cpu_us_per_msg = server_use.and_then(|u| u.us_per(all.len() as u64));
    row.msgs_per_sec = Some(all.len() as f64 / secs);
    row.set_latency(&percentiles(&mut all));
    row.set_generator_lag(&percentiles(&mut lags));
    // Rounds every watcher got: time until the last of them had it.
    let mut complete: Vec<u64> = per_round_max
        .iter()
        .filter(|(r, _)| per_round_count.get(r).copied() == Some(watchers))
        .map(|(_, m)| *m)
        .collect();
    let mut by_round: Vec<(u64, u64)> = per_round_max.iter().map(|(r, m)| (*r, *m)).collect();
    by_round.sort_unstable();
    eprintln!(
        "fanout: time until the last watcher had each round (ms): {}",
        by_round
            .iter()
            .map(|(r, m)| format!("{r}:{:.1}", *m as f64 / 1000.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let all_have = percentiles(&mut complete);
    row.note = Some(format!(
        "{watchers} watchers ({ready_n} saw the publisher before measuring), {sent} status changes; \
         latency per delivery to its kernel receive time (generator lag beside it); msgs_per_sec = deliveries/s; time until all watchers had a round: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} complete rounds",
        all_have.p50_ms, all_have.p99_ms, all_have.max_ms, all_have.count
    ));
    close_all(back, Duration::from_secs(10)).await;
    row
}

/// After the setup, waits until the server has finished what the subscriptions left it to do
/// (roster pushes, probes, stored writes: with 10,000 watchers, seconds of work after the last
/// watcher saw the publisher) — until it used under [`QUIET_CPU_PCT`] of a core over half a
/// second, at most [`SETTLE_MAX`] — so that the first round is not measured behind it. The
/// same rule for every system. Returns how long it waited.
pub(crate) async fn settle(server_pid: Option<u32>) -> Duration {
    let t0 = Instant::now();
    let Some(pid) = server_pid else {
        tokio::time::sleep(Duration::from_secs(2)).await;
        return t0.elapsed();
    };
    while t0.elapsed() < SETTLE_MAX {
        let m = CpuMeter::start(pid);
        tokio::time::sleep(Duration::from_millis(500)).await;
        if m.percent().is_none_or(|p| p < QUIET_CPU_PCT) {
            break;
        }
    }
    t0.elapsed()
}

/// The id of the publisher's ping before the first round.
const SETTLE_PING: &str = "fanout-settle";

/// A server below this share of one core is taken as done with the setup.
const QUIET_CPU_PCT: f64 = 10.0;
/// The longest wait for the server to become quiet after the setup.
const SETTLE_MAX: Duration = Duration::from_secs(30);

async fn publisher_loop(
    mut s: Session,
    plan: FanoutPlan,
    mut phase: watch::Receiver<Phase>,
) -> (Option<(usize, Session)>, u64) {
    let mut sent = 0u64;
    let mut ticker: Option<tokio::time::Interval> = None;
    loop {
        loop {
            match s.buffered_stanza() {
                Ok(Some(e)) => {
                    if e.name() == "iq" && e.get_attr("id") == Some(SETTLE_PING) {
                        // The server has read everything the publisher sent before the ping:
                        // the rounds start now.
                        ticker = Some(tokio::time::interval(plan.interval));
                        continue;
                    }
                    let reply = if e.name() == "presence" && e.get_attr("type") == Some("subscribe")
                    {
                        e.get_attr("from").map(|from| {
                            Element::new("presence", ns::CLIENT)
                                .attr("to", from)
                                .attr("type", "subscribed")
                        })
                    } else if e.name() == "iq" {
                        iq_reply(&e)
                    } else {
                        None
                    };
                    if let Some(r) = reply {
                        if s.send(&r).await.is_err() {
                            return (None, sent);
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => return (None, sent),
            }
        }
        let tick = async {
            match ticker.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() { return (Some((0, s)), sent); }
                let p = *phase.borrow();
                match p {
                    Phase::Setup => {}
                    Phase::Measure => {
                        // The publisher answered thousands of roster pushes during the setup; a
                        // server that reads a client at a bounded rate (Herald: 2,000 stanzas/s)
                        // may still have those answers queued. A ping answered means they are
                        // read, so the first round is not measured behind them.
                        let ping = Element::new("iq", ns::CLIENT)
                            .attr("type", "get")
                            .attr("id", SETTLE_PING)
                            .child(Element::new("ping", "urn:xmpp:ping"));
                        if s.send(&ping).await.is_err() {
                            return (None, sent);
                        }
                    }
                    Phase::Stop => return (Some((0, s)), sent),
                }
            }
            _ = tick => {
                if sent >= plan.rounds {
                    return (Some((0, s)), sent);
                }
                sent += 1;
                let p = format!("<presence><status>{sent}:{}</status></presence>", wall_us());
                if s.send_raw(p.as_bytes()).await.is_err() {
                    return (None, sent);
                }
            }
            r = s.fill() => if !matches!(r, Ok(true)) { return (None, sent) },
        }
    }
}

/// (round, latency µs to the kernel's receive time, generator lag µs) per delivery.
type Samples = Vec<(u64, u64, u64)>;

async fn watcher(
    i: usize,
    mut s: Session,
    publisher: String,
    ready: Arc<AtomicUsize>,
    mut phase: watch::Receiver<Phase>,
) -> (Option<(usize, Session)>, Samples) {
    let mut samples = Vec::new();
    let mut seen = false;
    let subscribe = Element::new("presence", ns::CLIENT)
        .attr("to", publisher.as_str())
        .attr("type", "subscribe");
    if s.send(&subscribe).await.is_err() {
        return (None, samples);
    }
    loop {
        loop {
            match s.buffered_stanza() {
                Ok(Some(e)) => {
                    if e.name() == "presence" && from_publisher(&e, &publisher) {
                        if e.get_attr("type").is_none() {
                            if !seen {
                                seen = true;
                                ready.fetch_add(1, Ordering::Relaxed);
                            }
                            let status = e
                                .get_child("status", ns::CLIENT)
                                .map(|st| st.text())
                                .unwrap_or_default();
                            if let Some((round, ts)) = parse_status(&status) {
                                let rx = s.received_at_us();
                                samples.push((
                                    round,
                                    rx.saturating_sub(ts),
                                    wall_us().saturating_sub(rx),
                                ));
                            }
                        }
                    } else if e.name() == "iq" {
                        if let Some(r) = iq_reply(&e) {
                            if s.send(&r).await.is_err() {
                                return (None, samples);
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => return (None, samples),
            }
        }
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Stop {
                    return (Some((i, s)), samples);
                }
            }
            r = s.fill() => if !matches!(r, Ok(true)) { return (None, samples) },
        }
    }
}

fn from_publisher(e: &Element, publisher: &str) -> bool {
    e.get_attr("from")
        .map(|f| f.split('/').next() == Some(publisher))
        .unwrap_or(false)
}

/// `round:micros` from a status text.
pub(crate) fn parse_status(status: &str) -> Option<(u64, u64)> {
    let (r, ts) = status.split_once(':')?;
    Some((r.parse().ok()?, ts.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cases = [
            ("1:99", Some((1, 99))),
            ("x:99", None),
            ("online", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_status(s), want, "{s}");
        }
    }

    #[test]
    fn publisher_match() {
        let cases = [
            (Some("u1@d/lg0"), true),
            (Some("u1@d"), true),
            (Some("u10@d/x"), false),
            (None, false),
        ];
        for (from, want) in cases {
            let e = Element::new("presence", ns::CLIENT).attr_opt("from", from);
            assert_eq!(from_publisher(&e, "u1@d"), want, "{from:?}");
        }
    }
}
