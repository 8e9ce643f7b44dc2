//! Scenario 3 (and 5 with a second server), chat: sessions in pairs (slot 2k ↔ 2k+1) send each
//! other `type='chat'` messages whose body carries the step number and the send time. Each
//! step offers a total rate for `duration`, then drains for up to two seconds; latency is send
//! to receipt on the partner. Steps go up until p99 exceeds the limit, messages are lost, or
//! the achieved rate falls under 90 % of the offered one; the highest step that passed is the
//! sustained rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::{close_all, iq_reply, login_all, Common};
use crate::client::Session;
use crate::report::{now_us, percentiles, CpuMeter, Row};

/// Knobs of the chat scenario.
#[derive(Clone)]
pub struct ChatPlan {
    /// Sessions (rounded down to an even number).
    pub sessions: usize,
    /// Offered total rates (messages per second), in order.
    pub rates: Vec<f64>,
    /// Sending time of each step.
    pub duration: Duration,
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
    eprintln!("chat: {live} sessions in pairs");
    let mut rows = Vec::new();
    let mut best: Option<Row> = None;
    for (step, &rate) in plan.rates.iter().enumerate() {
        if live == 0 || rate <= 0.0 {
            break;
        }
        let (row, back) = step_run(common, plan, sessions, step as u64, rate).await;
        sessions = back;
        let passed = row.lost == Some(0)
            && row.p99_ms.is_some_and(|p| p <= plan.p99_limit_ms)
            && row.msgs_per_sec.is_some_and(|r| r >= 0.9 * rate);
        eprintln!(
            "chat step {step}: offered {rate}/s achieved {:?}/s p50 {:?} p99 {:?} lost {:?} gen {:?}% srv {:?}% -> {}",
            row.msgs_per_sec, row.p50_ms, row.p99_ms, row.lost, row.generator_cpu_pct,
            row.server_cpu_pct, if passed { "ok" } else { "over limit" }
        );
        let mut r = row;
        r.note = Some(
            if passed {
                "step: sustained"
            } else {
                "step: over limit"
            }
            .into(),
        );
        rows.push(r.clone());
        if !passed {
            break;
        }
        best = Some(r);
        if sessions.len() < live {
            break;
        }
    }
    let mut summary = best.unwrap_or_else(|| common.row(&plan.scenario, live));
    summary.note = Some(format!(
        "peak: highest offered rate sustained with p99 <= {} ms, nothing lost, >= 90% achieved",
        plan.p99_limit_ms
    ));
    rows.push(summary);
    close_all(sessions, Duration::from_secs(10)).await;
    rows
}

async fn step_run(
    common: &Common,
    plan: &ChatPlan,
    sessions: Vec<(usize, Session)>,
    step: u64,
    rate: f64,
) -> (Row, Vec<(usize, Session)>) {
    let n = sessions.len();
    let per_session = rate / n as f64;
    let period = Duration::from_secs_f64(1.0 / per_session.max(0.001));
    let per_session_cap = plan.max_messages / n as u64 + 1;
    let counters = Arc::new(Counters {
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Send);
    let mut set = JoinSet::new();
    for (idx, (i, s)) in sessions.into_iter().enumerate() {
        let partner = common.bare_jid(i ^ 1);
        // Spread the first sends over one period.
        let offset = period.mul_f64(idx as f64 / n as f64);
        set.spawn(session_loop(
            i,
            s,
            partner,
            step,
            period,
            offset,
            per_session_cap,
            counters.clone(),
            phase_rx.clone(),
        ));
    }
    let gen = CpuMeter::start(std::process::id());
    let server = common.server_pid.map(CpuMeter::start);
    let t0 = Instant::now();
    tokio::time::sleep(plan.duration).await;
    let send_secs = t0.elapsed().as_secs_f64();
    let _ = phase_tx.send(Phase::Drain);
    // Let every task see the phase change (a send in progress when it was published
    // is counted after it completes), then wait for the last receipts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let drain_deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < drain_deadline
        && counters.received.load(Ordering::Relaxed) < counters.sent.load(Ordering::Relaxed)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gen_cpu = gen.percent();
    let server_cpu = server.and_then(|m| m.percent());
    let _ = phase_tx.send(Phase::Stop);
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
    let mut row = common.row(&plan.scenario, n);
    row.offered_rate = Some(rate);
    row.msgs_per_sec = Some(sent as f64 / send_secs);
    row.lost = Some(sent.saturating_sub(latencies.len() as u64));
    row.set_latency(&percentiles(&mut latencies));
    row.generator_cpu_pct = gen_cpu;
    row.server_cpu_pct = server_cpu;
    (row, back)
}

/// One session during one step: sends on its ticker while the phase is Send, records the
/// latency of every message of this step it receives, answers iqs. Returns the session (None
/// if it broke) and its latency samples.
#[allow(clippy::too_many_arguments)]
async fn session_loop(
    i: usize,
    mut s: Session,
    partner: String,
    step: u64,
    period: Duration,
    offset: Duration,
    cap: u64,
    counters: Arc<Counters>,
    mut phase: watch::Receiver<Phase>,
) -> (Option<(usize, Session)>, Vec<u64>) {
    let mut lat = Vec::new();
    let mut ticker = tokio::time::interval_at(Instant::now() + offset, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut sending = true;
    let mut sent = 0u64;
    let prefix = format!("<message to='{partner}' type='chat'><body>{step}:");
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
            _ = ticker.tick(), if sending && sent < cap => {
                let msg = format!("{prefix}{}</body></message>", now_us());
                if s.send_raw(msg.as_bytes()).await.is_err() {
                    return (None, lat);
                }
                sent += 1;
                counters.sent.fetch_add(1, Ordering::Relaxed);
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
