//! The CalendarActor: one per node, for the calendar-enabled users homed there.
//!
//! Every tick (once a second) it:
//! 1. re-reads users and gateways from the applied store when the store or the live members
//!    changed (users that left are forgotten; a user whose calendar was switched off while
//!    homed here gets Free, which clears the overlay);
//! 2. assigns gateways ([`choose`]: keep a healthy one, else the eligible healthy one with the
//!    fewest users) and stores a changed assignment in the user (`calendar_gateway`);
//! 3. checks each gateway once per poll interval (connect, certificate, authenticated
//!    PROPFIND) and publishes the result on the status board;
//! 4. starts due polls, at most `max_in_flight` at once (the rest start as those finish, not
//!    at the next tick); each user's first poll is placed at a hash of the JID within the
//!    interval, so 10,000 users are spread over it;
//! 5. publishes the gateways' states on the status board.
//!
//! On its own timer, just after every whole second of wall time, it evaluates every user's
//! cached busy intervals at that second and tells the user's actor when the state changed: a
//! meeting that starts between two polls shows at its start, not at the next poll. The changes
//! go out in batches that adapt to how busy the node is ([`CalendarActor::drain_outbox`]), so
//! that the 10:00 burst does not stall chat.
//!
//! A poll failing for a gateway reason (connect, certificate, TLS, authentication, timeout)
//! marks the gateway down; its users are reassigned at the next tick and it is used for new
//! assignments again once a check succeeds.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use herald_federation::availability::CalendarState;
use herald_federation::calendar::ews_events::Subscription;
use herald_federation::calendar::pool::{choose, PoolGateway};
use herald_federation::calendar::{dav, BusyInterval, IcalLimits};
use herald_grpc::admin::CalendarGatewayState;
use herald_grpc::config::{
    command::Op, config_object::Body, CalendarAuthMethod, CalendarGateway, CalendarKind, Command,
    ConfigObject, ObjectKind, PutObject, User, WriteMode,
};
use herald_xmpp::Jid;
use tokio::sync::watch;

use super::caldav::{self, PollError};
use super::ews;
use super::http::{Conn, HttpError, HttpLimits, Target};
use super::kinds::{self, supported_kind, Creds, Polled};
use super::metrics as m;
use crate::xmpp::users::CalendarFor;
use crate::xmpp::Shared;

mod overlay;
use overlay::MIN_OVERLAY_BATCH;

/// How the actor works.
#[derive(Debug, Clone)]
pub struct CalendarSettings {
    /// Time between two polls of one user's calendar, and between two gateway checks.
    pub poll_interval: Duration,
    /// HTTP deadline and body limit.
    pub http: HttpLimits,
    /// iCalendar bounds.
    pub ical: IcalLimits,
    /// Polls in flight at once.
    pub max_in_flight: usize,
    /// Assignments written to the store per tick.
    pub max_writes_per_tick: usize,
    /// The most calendar states handed to user actors at once; more wait
    /// [`Self::overlay_step`] per batch. The 10:00 burst, when every meeting starts in the
    /// same second, is spread so that the presence it sends out never queues much more than
    /// one step's work ahead of chat; the batch adapts below this to the node's speed.
    pub overlay_batch: usize,
    /// Time between two batches.
    pub overlay_step: Duration,
}

impl CalendarSettings {
    /// Defaults with `poll_interval` and the HTTP deadline `timeout`.
    pub fn new(poll_interval: Duration, timeout: Duration) -> Self {
        CalendarSettings {
            poll_interval,
            http: HttpLimits {
                timeout,
                max_body: 4 << 20,
            },
            ical: IcalLimits::default(),
            max_in_flight: 64,
            max_writes_per_tick: 200,
            // At most 5,000 users a second (with 8 watchers each, 40,000 presence updates):
            // one batch's work stays well under a step on one core.
            overlay_batch: 100,
            overlay_step: Duration::from_millis(20),
        }
    }
}

struct Gw {
    cfg: CalendarGateway,
    /// Last check (or poll) succeeded, or never checked.
    healthy: bool,
    checking: bool,
    next_check: Instant,
    status: CalendarGatewayState,
    /// EWS: the server refused `Subscribe`; its users are polled without notifications.
    pull_refused: bool,
}

struct UserCal {
    mailbox: String,
    gateway: Option<String>,
    next_poll: Instant,
    polling: bool,
    calendars: Option<Vec<String>>,
    /// CalDAV: the home's sync tokens, when the server keeps them.
    caldav_sync: Option<caldav::SyncState>,
    intervals: Vec<BusyInterval>,
    /// The state last sent to the user's actor.
    sent: Option<CalendarState>,
    /// EWS: the pull subscription (with the gateway it lives on).
    ews_sub: Option<(String, Subscription)>,
    /// EWS: when the availability was last read in full.
    ews_read_at: Option<Instant>,
    /// In the outbox.
    queued: bool,
}

pub struct CalendarActor {
    shared: Arc<Shared>,
    tls: Arc<rustls::ClientConfig>,
    settings: CalendarSettings,
    users: HashMap<Jid, UserCal>,
    gateways: BTreeMap<String, Gw>,
    /// Cluster-wide assignment counts from the store, by gateway id.
    stored_counts: HashMap<String, usize>,
    /// Stored `calendar_gateway` per local user.
    stored_assignment: HashMap<Jid, String>,
    /// The service account of each gateway kind (CAL-7), password opened.
    credentials: HashMap<i32, Creds>,
    seen: Option<RescanInputs>,
    cursor: usize,
    in_flight: usize,
    /// The users or the store changed, or assignments remain to be stored: assign again.
    assign_due: bool,
    /// Gateway health at the last assignment pass.
    assigned_health: Vec<bool>,
    /// Due polls not started yet (oldest first), refilled every tick.
    backlog: VecDeque<Jid>,
    /// Users whose changed calendar state is still to be handed to their actor (the state
    /// is `UserCal::sent`), oldest first, each once.
    outbox: VecDeque<Jid>,
    /// A batch of the outbox is scheduled…
    draining: bool,
    /// …for then.
    drain_due: Option<Instant>,
    /// Users per batch now (adapted, see [`Self::drain_outbox`]).
    batch: usize,
    board: watch::Sender<Vec<CalendarGatewayState>>,
    /// EWS: idle connections by gateway id, reused by the next polls (NTLM done on them).
    idle: HashMap<String, Vec<Conn>>,
}

/// What the store re-read depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RescanInputs {
    live: Vec<u64>,
    homes: u64,
    users: (usize, u64),
    gateways: (usize, u64),
    credentials: (usize, u64),
}

/// Changes whenever an object of `kind` is written, added or removed: (how many there are,
/// the highest revision among them). A write raises the highest revision to its index, a
/// removal lowers the count; a removal and an addition in one command raise the revision.
fn kind_version(state: &herald_cluster::state::StateMachine, kind: ObjectKind) -> (usize, u64) {
    state
        .peek_all(kind)
        .fold((0, 0), |(n, rev), o| (n + 1, rev.max(o.revision)))
}

/// Records how long a tick took (it runs on a thread that also routes messages).
struct TickTimer(Instant);

impl Drop for TickTimer {
    fn drop(&mut self) {
        metrics::histogram!(m::TICK).record(self.0.elapsed().as_secs_f64());
    }
}

/// Idle connections kept per gateway.
const MAX_IDLE_PER_GATEWAY: usize = 16;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn kind_name(kind: i32) -> &'static str {
    match CalendarKind::try_from(kind).unwrap_or(CalendarKind::Unspecified) {
        CalendarKind::Caldav => "caldav",
        CalendarKind::ExchangeEws => "ews",
        CalendarKind::ExchangeWebdav => "webdav",
        CalendarKind::Unspecified => "unspecified",
    }
}

fn state_label(s: CalendarState) -> &'static str {
    match s {
        CalendarState::Free => "free",
        CalendarState::Tentative => "tentative",
        CalendarState::Busy => "busy",
        CalendarState::OutOfOffice => "out_of_office",
    }
}

/// Where in the interval a user's polls fall: a hash of the JID.
fn spread(jid: &Jid, interval: Duration) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    jid.to_string().hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

/// The calendar mailbox of a user: `calendar_mailbox`, else `mail_id`, else the JID's
/// localpart (CAL-16).
fn mailbox_of(u: &User, jid: &Jid) -> String {
    if !u.calendar_mailbox.is_empty() {
        u.calendar_mailbox.clone()
    } else if !u.mail_id.is_empty() {
        u.mail_id.clone()
    } else {
        jid.local().unwrap_or_default().to_owned()
    }
}

impl CalendarActor {
    pub fn new(
        shared: Arc<Shared>,
        tls: Arc<rustls::ClientConfig>,
        settings: CalendarSettings,
        board: watch::Sender<Vec<CalendarGatewayState>>,
    ) -> Self {
        m::describe();
        CalendarActor {
            shared,
            tls,
            settings,
            users: HashMap::new(),
            gateways: BTreeMap::new(),
            stored_counts: HashMap::new(),
            stored_assignment: HashMap::new(),
            credentials: HashMap::new(),
            seen: None,
            cursor: 0,
            in_flight: 0,
            assign_due: true,
            assigned_health: Vec::new(),
            backlog: VecDeque::new(),
            outbox: VecDeque::new(),
            draining: false,
            drain_due: None,
            batch: MIN_OVERLAY_BATCH,
            board,
            idle: HashMap::new(),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let _timer = TickTimer(now);
        self.rescan(now);
        self.assign(ctx);
        self.check_gateways(now, ctx);
        self.start_polls(now, ctx);
        self.publish();
    }

    /// Step 1: users and gateways from the store, when users, gateways, credentials, homes
    /// or the live members changed — not on every store write: user data (rosters, offline
    /// messages) is written all the time, and re-reading 10,000 users costs tens of
    /// milliseconds on a thread that also routes chat.
    fn rescan(&mut self, now: Instant) {
        let shared = self.shared.clone();
        let applied = shared.cluster.applied();
        let inputs = RescanInputs {
            live: shared.cluster.live_nodes(),
            homes: shared.cluster.homes_guard(),
            users: kind_version(&applied.state, ObjectKind::User),
            gateways: kind_version(&applied.state, ObjectKind::CalendarGateway),
            credentials: kind_version(&applied.state, ObjectKind::CalendarCredentials),
        };
        if self.seen.as_ref() == Some(&inputs) {
            return;
        }
        self.seen = Some(inputs);
        self.assign_due = true;
        // Gateways.
        let mut fresh: BTreeMap<String, Gw> = BTreeMap::new();
        for o in applied.state.list(ObjectKind::CalendarGateway) {
            let Some(Body::CalendarGateway(g)) = o.body else {
                continue;
            };
            let mut gw = self.gateways.remove(&g.id).unwrap_or_else(|| Gw {
                cfg: g.clone(),
                healthy: true,
                checking: false,
                next_check: now,
                status: CalendarGatewayState::default(),
                pull_refused: false,
            });
            if gw.cfg != g {
                // Host, port or path changed: check again now.
                gw.healthy = true;
                gw.pull_refused = false;
                gw.next_check = now;
                gw.cfg = g.clone();
            }
            let supported = supported_kind(g.kind);
            gw.status.id = g.id.clone();
            gw.status.kind = kind_name(g.kind).into();
            gw.status.host = g.host.clone();
            gw.status.port = g.port;
            gw.status.supported = supported;
            if !supported {
                gw.healthy = false;
                gw.status.last_error = match CalendarKind::try_from(g.kind) {
                    Ok(CalendarKind::ExchangeWebdav) => "Exchange WebDAV is not supported: Exchange 2010 and later removed it; use an ews or caldav gateway".into(),
                    _ => "unknown calendar gateway kind".into(),
                };
            }
            fresh.insert(g.id.clone(), gw);
        }
        for (id, _) in std::mem::take(&mut self.gateways) {
            metrics::gauge!(m::GATEWAY_USERS, "gateway" => id.clone()).set(0.0);
            tracing::info!(gateway = %id, "calendar gateway removed; its users are reassigned");
        }
        self.gateways = fresh;
        let gateways = &self.gateways;
        self.idle.retain(|id, _| gateways.contains_key(id));
        self.credentials.clear();
        for kind in [CalendarKind::Caldav, CalendarKind::ExchangeEws] {
            let key = herald_grpc::objects::calendar_credentials_key(kind);
            let Some(ConfigObject {
                body: Some(Body::CalendarCredentials(c)),
                ..
            }) = applied.state.peek(ObjectKind::CalendarCredentials, &key)
            else {
                continue;
            };
            // Sealed at rest: opened here, where it is used, and kept only in memory.
            let opened = match shared.cluster.secrets() {
                Some(ring) => ring.open(
                    herald_cluster::secrets::FIELD_CALENDAR_PASSWORD,
                    &c.password,
                ),
                None => Ok(c.password.clone()),
            };
            match opened {
                Ok(password) => {
                    self.credentials.insert(
                        kind as i32,
                        Creds {
                            account: c.account_name.clone(),
                            password,
                            method: CalendarAuthMethod::try_from(c.auth_method)
                                .unwrap_or(CalendarAuthMethod::Unspecified),
                            impersonate: c.use_impersonation,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, kind = kind_name(kind as i32),
                        "cannot open the calendar service-account password");
                }
            }
        }
        // Users.
        self.stored_counts.clear();
        self.stored_assignment.clear();
        let mut keep: HashMap<Jid, UserCal> = HashMap::new();
        for o in applied.state.peek_all(ObjectKind::User) {
            let Some(Body::User(u)) = &o.body else {
                continue;
            };
            if !u.calendar_enabled {
                continue;
            }
            if !u.calendar_gateway.is_empty() {
                *self
                    .stored_counts
                    .entry(u.calendar_gateway.clone())
                    .or_default() += 1;
            }
            let Ok(jid) = Jid::parse(&u.jid) else {
                continue;
            };
            if shared.home_of(&jid) != shared.node_id {
                continue;
            }
            self.stored_assignment
                .insert(jid.clone(), u.calendar_gateway.clone());
            let mailbox = mailbox_of(u, &jid);
            let mut uc = self.users.remove(&jid).unwrap_or_else(|| UserCal {
                mailbox: mailbox.clone(),
                gateway: (!u.calendar_gateway.is_empty()).then(|| u.calendar_gateway.clone()),
                next_poll: now + spread(&jid, self.settings.poll_interval),
                polling: false,
                calendars: None,
                caldav_sync: None,
                intervals: Vec::new(),
                sent: None,
                ews_sub: None,
                ews_read_at: None,
                queued: false,
            });
            if uc.mailbox != mailbox {
                uc.mailbox = mailbox;
                uc.calendars = None;
                uc.caldav_sync = None;
                uc.next_poll = now;
            }
            keep.insert(jid, uc);
        }
        // Users no longer here: if still homed here (calendar switched off), clear the overlay.
        for (jid, uc) in std::mem::take(&mut self.users) {
            if uc.sent.is_some_and(|s| s != CalendarState::Free)
                && shared.home_of(&jid) == shared.node_id
            {
                shared.shard(&jid).do_send(CalendarFor {
                    jid: jid.clone(),
                    state: CalendarState::Free,
                });
            }
        }
        self.users = keep;
    }

    /// Step 2: gateway assignment, stored when it changed.
    fn assign(&mut self, ctx: &mut Context<Self>) {
        // Nothing to do unless the store, a gateway's health or a capped write left work: with
        // 10,000 users this pass costs milliseconds, every one of them taken from chat.
        let health: Vec<bool> = self.gateways.values().map(|g| g.healthy).collect();
        if !self.assign_due && health == self.assigned_health {
            return;
        }
        self.assign_due = false;
        self.assigned_health = health;
        let mut pool: Vec<PoolGateway> = self
            .gateways
            .values()
            .filter(|g| supported_kind(g.cfg.kind))
            .map(|g| PoolGateway {
                id: g.cfg.id.clone(),
                eligible: g.cfg.eligible,
                healthy: g.healthy,
                users: self.stored_counts.get(&g.cfg.id).copied().unwrap_or(0),
            })
            .collect();
        let mut writes = 0;
        let mut jids: Vec<Jid> = self.users.keys().cloned().collect();
        jids.sort_by_cached_key(|j| j.to_string());
        for jid in jids {
            let Some(uc) = self.users.get_mut(&jid) else {
                continue;
            };
            let chosen = choose(uc.gateway.as_deref(), &pool, &mut self.cursor);
            if chosen != uc.gateway {
                let reason = if uc.gateway.is_none() {
                    "new"
                } else {
                    "failover"
                };
                metrics::counter!(m::REASSIGNMENTS, "reason" => reason).increment(1);
                tracing::info!(user = %jid, from = ?uc.gateway, to = ?chosen, reason,
                    "calendar gateway assigned");
                for p in pool.iter_mut() {
                    if Some(&p.id) == chosen.as_ref() {
                        p.users += 1;
                    }
                    if Some(&p.id) == uc.gateway.as_ref() {
                        p.users = p.users.saturating_sub(1);
                    }
                }
                uc.gateway = chosen.clone();
                uc.calendars = None;
                uc.caldav_sync = None;
                uc.next_poll = Instant::now();
            }
            let stored = self
                .stored_assignment
                .get(&jid)
                .cloned()
                .unwrap_or_default();
            let want = uc.gateway.clone().unwrap_or_default();
            if stored != want && writes >= self.settings.max_writes_per_tick {
                // The rest next tick.
                self.assign_due = true;
            } else if stored != want {
                writes += 1;
                // Written once per store change: the rescan after the write refreshes `stored`.
                self.stored_assignment.insert(jid.clone(), want.clone());
                self.store_assignment(jid, want, ctx);
            }
        }
        let mut per_gw: HashMap<&str, usize> = HashMap::new();
        for uc in self.users.values() {
            if let Some(g) = &uc.gateway {
                *per_gw.entry(g.as_str()).or_default() += 1;
            }
        }
        for (id, g) in self.gateways.iter_mut() {
            let n = per_gw.get(id.as_str()).copied().unwrap_or(0);
            g.status.users_polled_here = n as u64;
            metrics::gauge!(m::GATEWAY_USERS, "gateway" => id.clone()).set(n as f64);
        }
    }

    fn store_assignment(&self, jid: Jid, gateway: String, ctx: &mut Context<Self>) {
        let cluster = self.shared.cluster.clone();
        let fut = async move {
            let applied = cluster.applied();
            let Some(ConfigObject {
                revision,
                body: Some(Body::User(mut u)),
            }) = applied.state.get(ObjectKind::User, &jid.to_string())
            else {
                return;
            };
            drop(applied);
            if u.calendar_gateway == gateway {
                return;
            }
            u.calendar_gateway = gateway.clone();
            let res = cluster
                .write(&Command {
                    audit: None,
                    op: Some(Op::Put(PutObject {
                        object: Some(ConfigObject::new(Body::User(u))),
                        mode: WriteMode::Update as i32,
                        expected_revision: revision,
                        confirm: false,
                        fence: None,
                    })),
                })
                .await;
            if let Err(e) = res {
                // A concurrent admin edit: the next rescan sees the new user and tries again.
                tracing::info!(user = %jid, gateway, error = %e, "calendar assignment not stored yet");
            }
        };
        ctx.spawn(actix::fut::wrap_future(fut));
    }

    fn target(&self, g: &CalendarGateway) -> Target {
        kinds::target_for(g, self.credentials.get(&g.kind))
    }

    /// Step 3: gateway checks.
    fn check_gateways(&mut self, now: Instant, ctx: &mut Context<Self>) {
        let due: Vec<String> = self
            .gateways
            .values()
            .filter(|g| g.status.supported && !g.checking && g.next_check <= now)
            .map(|g| g.cfg.id.clone())
            .collect();
        for id in due {
            let Some(g) = self.gateways.get_mut(&id) else {
                continue;
            };
            g.checking = true;
            g.next_check = now + self.settings.poll_interval;
            let cfg = g.cfg.clone();
            let target = self.target(&cfg);
            let fut = kinds::check(
                self.tls.clone(),
                self.settings.http,
                &cfg,
                target,
                self.credentials.get(&cfg.kind),
                unix_now(),
            );
            ctx.spawn(actix::fut::wrap_future(fut).map(
                move |res: Result<(), PollError>, act: &mut CalendarActor, _| {
                    let result = match &res {
                        Ok(()) => "ok",
                        Err(e) => e.label(),
                    };
                    metrics::counter!(m::CHECKS, "gateway" => id.clone(), "result" => result)
                        .increment(1);
                    if let Some(g) = act.gateways.get_mut(&id) {
                        g.checking = false;
                        act_on_result(g, &id, res.as_ref().err(), true);
                    }
                    if res.is_err() {
                        // A failing gateway: its idle connections are not worth keeping.
                        act.idle.remove(&id);
                    }
                },
            ));
        }
    }

    /// Step 4: due polls, oldest first; those beyond `max_in_flight` wait in the backlog and
    /// start as earlier polls finish ([`Self::more_polls`]), not at the next tick: a node
    /// keeps `max_in_flight` polls going whatever its users' count.
    fn start_polls(&mut self, now: Instant, ctx: &mut Context<Self>) {
        let mut due: Vec<(Instant, Jid)> = self
            .users
            .iter()
            .filter(|(_, u)| !u.polling && u.next_poll <= now && u.gateway.is_some())
            .map(|(j, u)| (u.next_poll, j.clone()))
            .collect();
        due.sort_unstable();
        self.backlog = due.into_iter().map(|(_, j)| j).collect();
        self.more_polls(now, ctx);
    }

    /// Starts polls from the backlog while fewer than `max_in_flight` run.
    fn more_polls(&mut self, now: Instant, ctx: &mut Context<Self>) {
        while self.in_flight < self.settings.max_in_flight {
            let Some(jid) = self.backlog.pop_front() else {
                break;
            };
            self.start_poll(jid, now, ctx);
        }
    }

    /// Starts one user's poll if it is still due.
    fn start_poll(&mut self, jid: Jid, now: Instant, ctx: &mut Context<Self>) {
        let interval = self.settings.poll_interval;
        {
            let Some(uc) = self.users.get(&jid) else {
                return;
            };
            if uc.polling || uc.next_poll > now {
                return;
            }
            let Some(gw) = uc.gateway.as_ref().and_then(|g| self.gateways.get(g)) else {
                return;
            };
            if !gw.status.supported {
                return;
            }
            let cfg = gw.cfg.clone();
            let pull_refused = gw.pull_refused;
            let (mailbox, calendars) = (uc.mailbox.clone(), uc.calendars.clone());
            let caldav_sync = uc.caldav_sync.clone();
            let subscription = uc
                .ews_sub
                .as_ref()
                .filter(|(g, _)| *g == cfg.id)
                .map(|(_, s)| s.clone());
            let full = uc
                .ews_read_at
                .is_none_or(|t| now.duration_since(t) >= ews::FULL_READ_EVERY);
            let target = self.target(&cfg);
            if let Some(uc) = self.users.get_mut(&jid) {
                uc.polling = true;
                uc.next_poll = now + interval;
            }
            self.in_flight += 1;
            let gw_id = cfg.id.clone();
            let from = unix_now();
            let to = from + 2 * interval.as_secs() as i64 + 60;
            let fut: kinds::BoxFut<Result<Polled, PollError>> =
                if cfg.kind == CalendarKind::ExchangeEws as i32 {
                    let impersonate = self
                        .credentials
                        .get(&cfg.kind)
                        .is_none_or(|c| c.impersonate);
                    let ask = ews::EwsAsk {
                        path: cfg.path.clone(),
                        mailbox: ews::smtp_address(&mailbox, jid.domain()),
                        impersonate,
                        // A day around now (EWS wants whole quarters at least).
                        from: from - 12 * 3600,
                        to: to.max(from + 12 * 3600),
                        subscription,
                        subscribe: !pull_refused,
                        full,
                        // Three missed polls and the server may drop it.
                        subscription_minutes: (interval.as_secs() * 3 / 60 + 1) as u32,
                    };
                    // An idle connection to the same gateway as the same account, if any.
                    let idle = self.idle.entry(cfg.id.clone()).or_default();
                    idle.retain(|c| *c.target() == target);
                    let conn = idle.pop();
                    let poll = ews::poll(self.tls.clone(), target, self.settings.http, ask, conn);
                    Box::pin(async move {
                        let (res, conn) = poll.await;
                        res.map(|p| Polled::Ews(p, conn.map(Box::new)))
                    })
                } else {
                    let poll = caldav::poll(
                        self.tls.clone(),
                        target,
                        self.settings.http,
                        self.settings.ical,
                        dav::home_path(&cfg.path, &mailbox),
                        calendars,
                        caldav_sync,
                        from,
                        to,
                    );
                    Box::pin(async move { poll.await.map(Polled::Caldav) })
                };
            ctx.spawn(actix::fut::wrap_future(fut).map(
                move |res: Result<Polled, PollError>, act: &mut CalendarActor, ctx| {
                    act.in_flight -= 1;
                    act.polled(jid, gw_id, res);
                    act.more_polls(Instant::now(), ctx);
                },
            ));
        }
    }

    fn polled(&mut self, jid: Jid, gw_id: String, res: Result<Polled, PollError>) {
        let result = match &res {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        metrics::counter!(m::POLLS, "result" => result).increment(1);
        let per_user = res.as_ref().err().is_some_and(PollError::per_user);
        if let (false, Some(g)) = (per_user, self.gateways.get_mut(&gw_id)) {
            act_on_result(g, &gw_id, res.as_ref().err(), false);
        }
        let Some(uc) = self.users.get_mut(&jid) else {
            return;
        };
        uc.polling = false;
        match res {
            Ok(Polled::Caldav(ok)) => {
                uc.calendars = (!ok.no_home && !ok.calendars.is_empty()).then_some(ok.calendars);
                uc.caldav_sync = ok.sync;
                if !ok.unchanged {
                    uc.intervals = ok.intervals;
                }
            }
            Ok(Polled::Ews(p, conn)) => {
                if let Some(c) = conn {
                    let idle = self.idle.entry(gw_id.clone()).or_default();
                    if idle.len() < MAX_IDLE_PER_GATEWAY {
                        idle.push(*c);
                    }
                }
                if let Some(n) = p.notification {
                    metrics::counter!(m::NOTIFICATIONS, "result" => n).increment(1);
                }
                uc.ews_sub = p.subscription.map(|s| (gw_id.clone(), s));
                if let Some(intervals) = p.intervals {
                    uc.intervals = intervals;
                    uc.ews_read_at = Some(Instant::now());
                }
                if p.pull_refused {
                    if let Some(g) = self.gateways.get_mut(&gw_id) {
                        g.pull_refused = true;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(user = %jid, gateway = %gw_id, error = %e, "calendar poll failed");
                uc.calendars = None;
                uc.caldav_sync = None;
                uc.ews_sub = None;
            }
        }
    }

    fn publish(&mut self) {
        let mut v: Vec<CalendarGatewayState> = self
            .gateways
            .values()
            .map(|g| {
                let mut s = g.status.clone();
                s.users_assigned = self.stored_counts.get(&g.cfg.id).copied().unwrap_or(0) as u64;
                s
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        self.board.send_if_modified(|old| {
            if *old == v {
                false
            } else {
                *old = v;
                true
            }
        });
    }
}

/// Records a check's or a poll's outcome on a gateway's status and health.
fn act_on_result(g: &mut Gw, id: &str, err: Option<&PollError>, is_check: bool) {
    let now = unix_now();
    if is_check {
        g.status.last_check_at = now;
    }
    match err {
        None => {
            if !g.healthy {
                tracing::info!(gateway = %id, "calendar gateway is healthy again");
            }
            g.healthy = true;
            g.status.reachable = true;
            g.status.certificate_ok = true;
            g.status.authenticated = true;
            if is_check {
                g.status.last_error.clear();
            }
        }
        Some(e) => {
            let http = match e {
                PollError::Http(h) => Some(h),
                _ => None,
            };
            g.status.reachable =
                !matches!(http, Some(HttpError::Connect(..) | HttpError::Timeout(_)));
            g.status.certificate_ok = g.status.reachable
                && !matches!(http, Some(HttpError::Certificate(_) | HttpError::Tls(_)));
            g.status.authenticated = g.status.certificate_ok
                && !matches!(http, Some(HttpError::Auth(_) | HttpError::AuthExchange(_)));
            g.status.last_error = e.to_string();
            g.status.last_error_at = now;
            // A check failing for any reason (garbage, a fault it cannot read, a wrong status)
            // says the gateway cannot serve; a poll only for the gateway's own reasons.
            if e.gateway_down() || is_check {
                if g.healthy {
                    tracing::warn!(gateway = %id, error = %e, "calendar gateway failed; reassigning its users");
                }
                g.healthy = false;
            } else {
                tracing::warn!(gateway = %id, error = %e, "calendar gateway answered badly");
            }
        }
    }
    metrics::gauge!(m::GATEWAY_UP, "gateway" => id.to_owned()).set(if g.healthy {
        1.0
    } else {
        0.0
    });
}

impl Actor for CalendarActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        // The store, the pool and the polls at whatever phase this node started with (nodes
        // that assigned gateways in the same instant would all pick the same least-loaded one);
        // the calendar states on the second.
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.tick(ctx));
        self.evaluate_then_next(ctx);
    }
}
