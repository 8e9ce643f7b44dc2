//! Scenario 3 (and 5 with a second server), chat, in two traffic shapes:
//!
//! - **pairs**: sessions in pairs (slot 2k ↔ 2k+1) send each other `type='chat'` messages to the
//!   partner's bare JID, each session on its own ticker, every message written and flushed on
//!   its own (one TLS record, one syscall);
//! - **oneway**: slot 2k only sends, to the full JID of slot 2k+1, which only receives; all
//!   senders share one 1 ms tick ([`super::pace::Pacer`]) and each writes the messages due to
//!   it at a tick as one buffer (one TLS record, one syscall carrying several stanzas).
//!
//! Bodies carry the step number and the send time. Each step offers a total rate for
//! `duration`, then drains for up to `drain`; latency is send to receipt. A step fails when
//! p99 reaches the limit, a message is lost, or under 90 % of the offered rate went out; steps
//! go up until `stop_after` consecutive steps failed, and the highest step that passed is the
//! peak. The server's CPU time (utime + stime of the whole process, from /proc) over each step,
//! send and drain, is divided by the messages delivered in that step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::pace::{batch, Pacer};
use super::{close_all, iq_reply, login_all, Common};
use crate::client::Session;
use crate::report::{now_us, percentiles, CpuMeter, Row};

/// The traffic shape of a chat run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Both directions, bare JIDs, one write per message, a ticker per session.
    Pairs,
    /// Sender to receiver's full JID, shared 1 ms tick, due messages coalesced per write.
    Oneway,
}

impl Shape {
    /// The name in rows and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Pairs => "pairs",
            Shape::Oneway => "oneway",
        }
    }
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Shape, String> {
        match s {
            "pairs" => Ok(Shape::Pairs),
            "oneway" => Ok(Shape::Oneway),
            other => Err(format!("shape {other}: expected pairs or oneway")),
        }
    }
}

/// Knobs of the chat scenario.
#[derive(Clone)]
pub struct ChatPlan {
    /// Sessions (rounded down to an even number).
    pub sessions: usize,
    /// Offered total rates (messages per second), in order.
    pub rates: Vec<f64>,
    /// Sending time of each step.
    pub duration: Duration,
    /// Longest wait for the last messages after sending stops.
    pub drain: Duration,
    /// Quiet time between the logins and the first step (sessions read, nothing is sent), so
    /// that work a server does after its start and the logins is not charged to the first
    /// step's CPU.
    pub settle: Duration,
    /// Traffic shape.
    pub shape: Shape,
    /// Stop after this many consecutive failing steps.
    pub stop_after: usize,
    /// p99 above which a step fails, in milliseconds.
    pub p99_limit_ms: f64,
    /// Most messages one step may send (bounds memory of latency samples).
    pub max_messages: u64,
    /// Scenario name written into rows ("chat" or "chat-cross-node").
    pub scenario: String,
    /// Second server for odd slots (cross-node chat), with its own connection settings.
    pub second: Option<Common>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Send,
    Drain,
    Stop,
}

struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
}

/// Runs all steps; returns one row per step plus a summary row (note "peak").
pub async fn run(common: &Common, plan: &ChatPlan) -> Vec<Row> {
    let n = plan.sessions / 2 * 2;
    let mut sessions = match &plan.second {
        None => login_all(common, 0..n).await.sessions,
        Some(second) => {
            // Even slots on the first server, odd slots on the second.
            let a = login_all(common, (0..n).step_by(2)).await;
            let b = login_all(second, (1..n).step_by(2)).await;
            let mut all = a.sessions;
            all.extend(b.sessions);
            all.sort_by_key(|(i, _)| *i);
            all
        }
    };
    // Keep only complete pairs.
    let present: std::collections::HashSet<usize> = sessions.iter().map(|(i, _)| *i).collect();
    sessions.retain(|(i, _)| present.contains(&(i ^ 1)));
    let live = sessions.len();
    let jids: std::collections::HashMap<usize, String> =
        sessions.iter().map(|(i, s)| (*i, s.jid.clone())).collect();
    let tls = sessions.first().map(|(_, s)| s.tls.clone());
    eprintln!(
        "chat ({}): {live} sessions in pairs, TLS {:?}",
        plan.shape.name(),
        tls
    );
    if !plan.settle.is_zero() && live > 0 {
        sessions = settle(sessions, plan.settle).await;
    }
    let mut rows = Vec::new();
    let mut best: Option<Row> = None;
    let mut failing = 0;
    for (step, &rate) in plan.rates.iter().enumerate() {
        if live == 0 || rate <= 0.0 {
            break;
        }
        let (mut row, back) = step_run(common, plan, sessions, step as u64, rate, &jids).await;
        sessions = back;
        row.set_tls(tls.as_ref());
        let passed = step_passed(&row, rate, plan.p99_limit_ms);
        eprintln!(
            "chat step {step}: offered {rate}/s achieved {:?}/s p50 {:?} p99 {:?} lost {:?} gen {:?}% srv {:?}% srv {:?} µs/msg -> {}",
            row.msgs_per_sec, row.p50_ms, row.p99_ms, row.lost, row.generator_cpu_pct,
            row.server_cpu_pct, row.server_cpu_us_per_msg, if passed { "ok" } else { "over limit" }
        );
        row.note = Some(
            if passed {
                "step: sustained"
            } else {
                "step: over limit"
            }
            .into(),
        );
        rows.push(row.clone());
        if passed {
            failing = 0;
            if best
                .as_ref()
                .is_none_or(|b| b.offered_rate.is_some_and(|r| r < rate))
            {
                best = Some(row);
            }
        } else {
            failing += 1;
            if failing >= plan.stop_after.max(1) {
                break;
            }
        }
        if sessions.len() < live {
            eprintln!("chat: {} sessions broke, stopping", live - sessions.len());
            break;
        }
    }
    let mut summary = best.unwrap_or_else(|| {
        let mut r = common.row(&plan.scenario, live);
        r.shape = Some(plan.shape.name().into());
        r
    });
    summary.note = Some(format!(
        "peak: highest offered rate sustained with p99 < {} ms, nothing lost, >= 90% achieved \
         (steps stop after {} consecutive failures)",
        plan.p99_limit_ms, plan.stop_after
    ));
    rows.push(summary);
    close_all(sessions, Duration::from_secs(10)).await;
    rows
}

/// Holds the sessions for `quiet` (reading, answering iqs, sending nothing); returns those
/// still healthy.
async fn settle(sessions: Vec<(usize, Session)>, quiet: Duration) -> Vec<(usize, Session)> {
    let counters = Arc::new(Counters {
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Drain);
    let mut set = JoinSet::new();
    for (i, s) in sessions {
        let (c, p) = (counters.clone(), phase_rx.clone());
        // No step has this number: nothing received is counted.
        set.spawn(session_loop(i, s, Role::Receive, u64::MAX, c, p));
    }
    tokio::time::sleep(quiet).await;
    let _ = phase_tx.send(Phase::Stop);
    let mut back = Vec::new();
    while let Some(j) = set.join_next().await {
        if let Ok((Some(s), _)) = j {
            back.push(s);
        }
    }
    back.sort_by_key(|(i, _)| *i);
    back
}

/// Whether a step passed: p99 under the limit, nothing lost, at least 90 % of the offered
/// rate sent.
fn step_passed(row: &Row, rate: f64, p99_limit_ms: f64) -> bool {
    row.lost == Some(0)
        && row.p99_ms.is_some_and(|p| p < p99_limit_ms)
        && row.msgs_per_sec.is_some_and(|r| r >= 0.9 * rate)
}

/// What one session does during a step besides receiving.
enum Role {
    /// Pairs: its own ticker, one message per tick to `partner`.
    Ticker {
        partner: String,
        period: Duration,
        offset: Duration,
        cap: u64,
    },
    /// One-way sender: writes what the shared tick made due, to `to`.
    Paced { to: String, due: Arc<Due> },
    /// One-way receiver: only receives.
    Receive,
}

/// Messages due to one paced sender, set by the tick task.
#[derive(Default)]
struct Due {
    count: AtomicU64,
    wake: Notify,
}

async fn step_run(
    common: &Common,
    plan: &ChatPlan,
    sessions: Vec<(usize, Session)>,
    step: u64,
    rate: f64,
    jids: &std::collections::HashMap<usize, String>,
) -> (Row, Vec<(usize, Session)>) {
    let n = sessions.len();
    let counters = Arc::new(Counters {
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Send);
    let mut set = JoinSet::new();
    let mut dues = Vec::new();
    match plan.shape {
        Shape::Pairs => {
            let per_session = rate / n as f64;
            let period = Duration::from_secs_f64(1.0 / per_session.max(0.001));
            let cap = plan.max_messages / n as u64 + 1;
            for (idx, (i, s)) in sessions.into_iter().enumerate() {
                let role = Role::Ticker {
                    partner: common.bare_jid(i ^ 1),
                    // Spread the first sends over one period.
                    offset: period.mul_f64(idx as f64 / n as f64),
                    period,
                    cap,
                };
                let (c, p) = (counters.clone(), phase_rx.clone());
                set.spawn(session_loop(i, s, role, step, c, p));
            }
        }
        Shape::Oneway => {
            for (i, s) in sessions {
                let role = if i % 2 == 0 {
                    let due = Arc::new(Due::default());
                    dues.push(due.clone());
                    let to = jids.get(&(i ^ 1)).cloned().unwrap_or_default();
                    Role::Paced { to, due }
                } else {
                    Role::Receive
                };
                let (c, p) = (counters.clone(), phase_rx.clone());
                set.spawn(session_loop(i, s, role, step, c, p));
            }
        }
    }
    let gen = CpuMeter::start(std::process::id());
    let server = common.server_pid.map(CpuMeter::start);
    let t0 = Instant::now();
    let ticks = (!dues.is_empty()).then(|| {
        let senders = dues.len();
        let pacer = Pacer::new(
            senders,
            rate / senders as f64,
            plan.max_messages / senders as u64 + 1,
        );
        tokio::spawn(tick_loop(pacer, dues, t0, phase_rx.clone()))
    });
    tokio::time::sleep(plan.duration).await;
    let send_secs = t0.elapsed().as_secs_f64();
    let _ = phase_tx.send(Phase::Drain);
    // Let every task see the phase change (a send in progress when it was published
    // is counted after it completes), then wait for the last receipts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let drain_deadline = Instant::now() + plan.drain;
    while Instant::now() < drain_deadline
        && counters.received.load(Ordering::Relaxed) < counters.sent.load(Ordering::Relaxed)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gen_cpu = gen.percent();
    let server_use = server.and_then(|m| m.read());
    let _ = phase_tx.send(Phase::Stop);
    if let Some(t) = ticks {
        let _ = t.await;
    }
    let mut latencies = Vec::new();
    let mut back = Vec::with_capacity(n);
    while let Some(j) = set.join_next().await {
        if let Ok((s, mut l)) = j {
            latencies.append(&mut l);
            if let Some(s) = s {
                back.push(s);
            }
        }
    }
    back.sort_by_key(|(i, _)| *i);
    let sent = counters.sent.load(Ordering::Relaxed);
    let delivered = latencies.len() as u64;
    let mut row = common.row(&plan.scenario, n);
    row.shape = Some(plan.shape.name().into());
    row.offered_rate = Some(rate);
    row.msgs_per_sec = Some(sent as f64 / send_secs);
    row.lost = Some(sent.saturating_sub(delivered));
    row.delivered = Some(delivered);
    row.set_latency(&percentiles(&mut latencies));
    row.generator_cpu_pct = gen_cpu;
    row.server_cpu_pct = server_use.and_then(|u| u.percent());
    row.server_cpu_us_per_msg = server_use.and_then(|u| u.us_per(delivered));
    (row, back)
}

/// The shared 1 ms tick of the one-way shape: hands every sender the messages due to it until
/// the sending phase ends (bounded by the step's duration).
async fn tick_loop(
    mut pacer: Pacer,
    dues: Vec<Arc<Due>>,
    t0: Instant,
    phase: watch::Receiver<Phase>,
) {
    let mut tick = tokio::time::interval_at(t0, Duration::from_millis(1));
    // A late tick is not repeated: the next one hands out everything due by then.
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    while *phase.borrow() == Phase::Send {
        tick.tick().await;
        let elapsed_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        pacer.tick(elapsed_ms, |j, count| {
            dues[j].count.fetch_add(count, Ordering::Relaxed);
            dues[j].wake.notify_one();
        });
    }
}

/// One session during one step: sends as its role says while the phase is Send, records the
/// latency of every message of this step it receives, answers iqs. Returns the session (None
/// if it broke) and its latency samples.
async fn session_loop(
    i: usize,
    mut s: Session,
    role: Role,
    step: u64,
    counters: Arc<Counters>,
    mut phase: watch::Receiver<Phase>,
) -> (Option<(usize, Session)>, Vec<u64>) {
    let mut lat = Vec::new();
    let (mut ticker, prefix, cap) = match &role {
        Role::Ticker {
            partner,
            period,
            offset,
            cap,
        } => {
            let mut t = tokio::time::interval_at(Instant::now() + *offset, *period);
            t.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let prefix = format!("<message to='{partner}' type='chat'><body>{step}:");
            (Some(t), prefix, *cap)
        }
        _ => (None, String::new(), 0),
    };
    let (paced_to, due) = match &role {
        Role::Paced { to, due } => (to.as_str(), Some(due.clone())),
        _ => ("", None),
    };
    let mut sending = true;
    let mut sent = 0u64;
    let mut out = Vec::new();
    loop {
        loop {
            match s.buffered_stanza() {
                Ok(Some(e)) => {
                    if e.name() == "message" {
                        if let Some(ts) = stamp(
                            &e.get_child("body", herald_xmpp::ns::CLIENT)
                                .map(|b| b.text())
                                .unwrap_or_default(),
                            step,
                        ) {
                            lat.push(now_us().saturating_sub(ts));
                            counters.received.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if e.name() == "iq" {
                        if let Some(r) = iq_reply(&e) {
                            if s.send(&r).await.is_err() {
                                return (None, lat);
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => return (None, lat),
            }
        }
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() { return (Some((i, s)), lat); }
                match *phase.borrow() {
                    Phase::Send => {}
                    Phase::Drain => sending = false,
                    Phase::Stop => return (Some((i, s)), lat),
                }
            }
            _ = async { ticker.as_mut()?.tick().await; Some(()) },
                if sending && ticker.is_some() && sent < cap => {
                let msg = format!("{prefix}{}</body></message>", now_us());
                if s.send_raw(msg.as_bytes()).await.is_err() {
                    return (None, lat);
                }
                sent += 1;
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            _ = async { due.as_ref()?.wake.notified().await; Some(()) },
                if sending && due.is_some() => {
                let count = due.as_ref().map_or(0, |d| d.count.swap(0, Ordering::Relaxed));
                if count > 0 {
                    out.clear();
                    batch(&mut out, paced_to, step, now_us(), count);
                    if s.send_raw(&out).await.is_err() {
                        return (None, lat);
                    }
                    counters.sent.fetch_add(count, Ordering::Relaxed);
                }
            }
            r = s.fill() => if !matches!(r, Ok(true)) { return (None, lat) },
        }
    }
}

/// The send time in a body `step:micros` when it belongs to `step`.
fn stamp(body: &str, step: u64) -> Option<u64> {
    let (st, ts) = body.split_once(':')?;
    if st.parse::<u64>().ok()? != step {
        return None;
    }
    ts.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::stamp;

    #[test]
    fn stamps() {
        let cases = [
            ("3:12345", 3, Some(12345)),
            ("2:12345", 3, None),
            ("3:x", 3, None),
            ("hello", 3, None),
            ("", 0, None),
        ];
        for (body, step, want) in cases {
            assert_eq!(stamp(body, step), want, "{body}");
        }
    }
}
