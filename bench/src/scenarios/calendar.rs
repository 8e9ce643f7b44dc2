//! Calendar burst (Herald only, issue 12): everyone's meeting starts in the same second.
//!
//! Slots `0..users` are calendar-enabled users whose calendars a CalDAV gateway serves
//! (`loadgen caldav-serve`, [`crate::caldav`]); each watches the next `watch` of them (a ring:
//! user i subscribes to users i+1 … i+watch), so every user has `watch` watchers and one burst
//! is `users × watch` presence updates. Slots `users..users + chat_sessions` chat in pairs at
//! a steady total rate.
//!
//! Setup: the users log in, subscribe and approve, and the scenario waits until every user has
//! seen each of its contacts online, then until the server is quiet. It then writes the
//! meeting start T (a whole second, `lead` ahead: Herald polls each calendar once per poll
//! interval and reads ahead, so every calendar is read before T) into the responder's start
//! file. Chat runs from T − `before` to T + `after`. Each watcher records, per contact, when
//! the contact's presence with the meeting overlay (a `<show/>`) reached it, to the kernel's
//! receive time, from T. The row gives those latencies (time until every watcher had the
//! change = max), chat latency before T and from T on, and the server's CPU in both windows.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_xmpp::ns;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::fanout::settle;
use super::{close_all, iq_reply, login_all, ring_reply, Common, Ring};
use crate::client::Session;
use crate::report::{percentiles, CpuMeter, Percentiles, Row};
use crate::stamped::wall_us;

/// Knobs of the calendar-burst scenario.
#[derive(Debug, Clone)]
pub struct CalendarPlan {
    /// Calendar-enabled users (slots 0..users).
    pub users: usize,
    /// Contacts each user watches (and watchers each user has).
    pub watch: usize,
    /// Chat sessions (in pairs) after the calendar users.
    pub chat_sessions: usize,
    /// Total chat rate, messages per second.
    pub chat_rate: f64,
    /// The responder's start file.
    pub start_file: PathBuf,
    /// Time from writing the start to the meeting start.
    pub lead: Duration,
    /// Chat measured this long before the start…
    pub before: Duration,
    /// …and this long from it.
    pub after: Duration,
    /// Longest wait for the subscription setup.
    pub setup_timeout: Duration,
}

/// What the calendar-burst row adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalendarBurst {
    /// Calendar users, and contacts each watches.
    pub users: usize,
    pub watch: usize,
    /// Updates expected (users × watch) and received.
    pub expected: u64,
    pub received: u64,
    /// Time from the meeting start until every watcher had the change, ms (None: some never
    /// arrived within the window).
    pub all_have_ms: Option<f64>,
    /// Chat latency of messages sent before the start, and from the start on.
    pub chat_before: Percentiles,
    pub chat_during: Percentiles,
    /// Chat messages sent and lost (sent, never received within the drain).
    pub chat_sent: u64,
    pub chat_lost: u64,
    /// Server CPU, % of one core, before the start and from it on.
    pub server_cpu_before_pct: Option<f64>,
    pub server_cpu_during_pct: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Setup,
    Armed,
    Stop,
}

/// Runs the scenario; returns one row.
pub async fn run(common: &Common, plan: &CalendarPlan) -> Row {
    let chat_n = plan.chat_sessions / 2 * 2;
    let total = plan.users + chat_n;
    let logins = login_all(common, 0..total).await;
    let mut row = common.row("calendar-burst", plan.users);
    row.set_tls(logins.sessions.first().map(|(_, s)| &s.tls));
    if logins.failed > 0 {
        row.note = Some(format!("{} of {total} logins failed", logins.failed));
        close_all(logins.sessions, Duration::from_secs(10)).await;
        return row;
    }
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let t_start = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ready = Arc::new(AtomicUsize::new(0));
    let mut members = JoinSet::new();
    let mut chatters = JoinSet::new();
    let rate_each = plan.chat_rate / chat_n.max(1) as f64;
    for (i, s) in logins.sessions {
        if i < plan.users {
            let contacts: Vec<String> = (1..=plan.watch)
                .map(|k| common.bare_jid((i + k) % plan.users))
                .collect();
            members.spawn(member(
                i,
                s,
                contacts,
                ready.clone(),
                phase_rx.clone(),
                t_start.clone(),
            ));
        } else {
            let partner = common.bare_jid(((i - plan.users) ^ 1) + plan.users);
            chatters.spawn(chatter(i, s, partner, rate_each, phase_rx.clone()));
        }
    }
    let deadline = Instant::now() + plan.setup_timeout;
    let t_setup = Instant::now();
    while Instant::now() < deadline && ready.load(Ordering::Relaxed) < plan.users {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready_n = ready.load(Ordering::Relaxed);
    eprintln!(
        "calendar: {ready_n}/{} users see all {} contacts online after {:.1} s",
        plan.users,
        plan.watch,
        t_setup.elapsed().as_secs_f64()
    );
    let quiet = settle(common.server_pid).await;
    eprintln!("calendar: server quiet after {:.1} s", quiet.as_secs_f64());
    // The meeting start: a whole second, `lead` ahead.
    let t_secs = (wall_us() + plan.lead.as_micros() as u64).div_ceil(1_000_000);
    let t_us = t_secs * 1_000_000;
    t_start.store(t_us, Ordering::Relaxed);
    let tmp = plan.start_file.with_extension("tmp");
    if let Err(e) = std::fs::write(&tmp, format!("{t_secs}\n"))
        .and_then(|()| std::fs::rename(&tmp, &plan.start_file))
    {
        row.note = Some(format!("{}: {e}", plan.start_file.display()));
        let _ = phase_tx.send(Phase::Stop);
        return row;
    }
    eprintln!(
        "calendar: meetings start at {t_secs} (in {:.1} s)",
        plan.lead.as_secs_f64()
    );
    let _ = phase_tx.send(Phase::Armed);
    let until = |at_us: u64| Duration::from_micros(at_us.saturating_sub(wall_us()));
    // Chat from T - before; the server's CPU in both windows.
    tokio::time::sleep(until(t_us.saturating_sub(plan.before.as_micros() as u64))).await;
    let chat_from_us = wall_us();
    CHAT_ON.store(true, Ordering::Relaxed);
    let before_cpu = common.server_pid.map(CpuMeter::start);
    tokio::time::sleep(until(t_us)).await;
    let server_cpu_before_pct = before_cpu.and_then(|m| m.percent());
    let during_cpu = common.server_pid.map(CpuMeter::start);
    tokio::time::sleep(until(t_us + plan.after.as_micros() as u64)).await;
    let server_cpu_during_pct = during_cpu.and_then(|m| m.percent());
    CHAT_ON.store(false, Ordering::Relaxed);
    // Drain.
    tokio::time::sleep(DRAIN).await;
    let _ = phase_tx.send(Phase::Stop);
    let mut lat = Vec::new();
    let mut lags = Vec::new();
    let mut back = Vec::new();
    while let Some(j) = members.join_next().await {
        if let Ok((s, samples)) = j {
            for (us, lag) in samples {
                lat.push(us);
                lags.push(lag);
            }
            back.extend(s);
        }
    }
    let (mut before, mut during) = (Vec::new(), Vec::new());
    let (mut chat_sent, mut chat_got) = (0u64, 0u64);
    while let Some(j) = chatters.join_next().await {
        if let Ok((s, sent, samples)) = j {
            chat_sent += sent;
            chat_got += samples.len() as u64;
            for (sent_us, us) in samples {
                if sent_us < chat_from_us {
                    continue;
                }
                if sent_us < t_us {
                    before.push(us);
                } else {
                    during.push(us);
                }
            }
            back.extend(s);
        }
    }
    let expected = (plan.users * plan.watch) as u64;
    let received = lat.len() as u64;
    let p = percentiles(&mut lat);
    let all_have_ms = (received == expected).then_some(p.max_ms);
    let burst = CalendarBurst {
        users: plan.users,
        watch: plan.watch,
        expected,
        received,
        all_have_ms,
        chat_before: percentiles(&mut before),
        chat_during: percentiles(&mut during),
        chat_sent,
        chat_lost: chat_sent.saturating_sub(chat_got),
        server_cpu_before_pct,
        server_cpu_during_pct,
    };
    eprintln!("calendar: {burst:?}");
    row.set_latency(&p);
    row.set_generator_lag(&percentiles(&mut lags));
    row.delivered = Some(received);
    row.lost = Some(expected.saturating_sub(received));
    row.offered_rate = Some(plan.chat_rate);
    row.msgs_per_sec = all_have_ms
        .filter(|ms| *ms > 0.0)
        .map(|ms| received as f64 / (ms / 1000.0));
    row.server_cpu_pct = server_cpu_during_pct;
    row.note = Some(format!(
        "{} calendar users ({ready_n} ready), each watched by {}; latency = meeting start to the \
         watcher's kernel receive time of the overlaid presence; msgs_per_sec = updates / time \
         until the last watcher had it; chat {chat_n} sessions at {} msgs/s: p99 {:.1} ms before \
         the start, {:.1} ms from it ({} lost)",
        plan.users,
        plan.watch,
        plan.chat_rate,
        burst.chat_before.p99_ms,
        burst.chat_during.p99_ms,
        burst.chat_lost
    ));
    row.calendar = Some(burst);
    close_all(back, Duration::from_secs(20)).await;
    row
}

/// Time allowed for the last chat messages and updates after the window.
const DRAIN: Duration = Duration::from_secs(3);

/// Chat senders send while this is set.
static CHAT_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// (latency µs from the meeting start, generator lag µs) per contact whose change arrived.
type Samples = Vec<(u64, u64)>;

async fn member(
    i: usize,
    mut s: Session,
    contacts: Vec<String>,
    ready: Arc<AtomicUsize>,
    mut phase: watch::Receiver<Phase>,
    t_start: Arc<std::sync::atomic::AtomicU64>,
) -> (Option<(usize, Session)>, Samples) {
    let mut samples = Vec::new();
    let mut changed: HashSet<String> = HashSet::new();
    let mut ring = Ring::new(contacts, ready);
    if ring.subscribe(&mut s).await.is_err() {
        return (None, samples);
    }
    loop {
        loop {
            let e = match s.buffered_stanza() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(_) => return (None, samples),
            };
            if let Some(from) = ring.contact_available(&e) {
                if e.get_child("show", ns::CLIENT).is_some() {
                    let t = t_start.load(Ordering::Relaxed);
                    if t > 0 && changed.insert(from.to_owned()) {
                        let rx = s.received_at_us();
                        samples.push((rx.saturating_sub(t), wall_us().saturating_sub(rx)));
                    }
                } else {
                    ring.seen_online(from);
                }
            } else if let Some(r) = ring_reply(&e) {
                if s.send(&r).await.is_err() {
                    return (None, samples);
                }
            }
        }
        tokio::select! {
            c = phase.changed() => {
                if c.is_err() || *phase.borrow() == Phase::Stop {
                    return (Some((i, s)), samples);
                }
            }
            r = s.fill() => if !matches!(r, Ok(true)) { return (None, samples) },
        }
    }
}

/// (send time µs, latency µs) per chat message received.
type ChatSamples = Vec<(u64, u64)>;

async fn chatter(
    i: usize,
    mut s: Session,
    partner: String,
    rate: f64,
    mut phase: watch::Receiver<Phase>,
) -> (Option<(usize, Session)>, u64, ChatSamples) {
    let mut samples = Vec::new();
    let mut sent = 0u64;
    let period = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Bounded: at most this many messages whatever the windows.
    let max_sent = (rate * 600.0) as u64 + 1;
    loop {
        loop {
            let e = match s.buffered_stanza() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(_) => return (None, sent, samples),
            };
            if e.name() == "message" {
                let body = e
                    .get_child("body", ns::CLIENT)
                    .map(|b| b.text())
                    .unwrap_or_default();
                if let Some(ts) = body.strip_prefix("cb:").and_then(|t| t.parse::<u64>().ok()) {
                    samples.push((ts, s.received_at_us().saturating_sub(ts)));
                }
            } else if e.name() == "iq" {
                if let Some(r) = iq_reply(&e) {
                    if s.send(&r).await.is_err() {
                        return (None, sent, samples);
                    }
                }
            }
        }
        tokio::select! {
            c = phase.changed() => {
                if c.is_err() || *phase.borrow() == Phase::Stop {
                    return (Some((i, s)), sent, samples);
                }
            }
            _ = ticker.tick() => {
                if CHAT_ON.load(Ordering::Relaxed) && sent < max_sent {
                    sent += 1;
                    let m = format!(
                        "<message to='{partner}' type='chat'><body>cb:{}</body></message>",
                        wall_us()
                    );
                    if s.send_raw(m.as_bytes()).await.is_err() {
                        return (None, sent, samples);
                    }
                }
            }
            r = s.fill() => if !matches!(r, Ok(true)) { return (None, sent, samples) },
        }
    }
}
