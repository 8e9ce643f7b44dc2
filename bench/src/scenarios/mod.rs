//! The load scenarios: login storm, idle hold, chat at stepped rates, presence fan-out, the
//! calendar burst, the presence storm, and the XMPP side of the SIP benchmark (`sip_users`).
//!
//! Every scenario is bounded by a session count and by time: logins by a per-login timeout,
//! measurement phases by `--duration`, drains by a fixed grace period.

pub mod calendar;
pub mod chat;
pub mod fanout;
pub mod idle;
pub mod isolation;
pub mod login;
pub mod pace;
pub mod sip_users;
pub mod storm;
pub mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_xmpp::Element;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{ClientError, ConnectConfig, Session};
use crate::report::Row;

/// What every scenario needs besides its own knobs.
#[derive(Clone)]
pub struct Common {
    /// Connection settings.
    pub connect: ConnectConfig,
    /// Localpart prefix: users are `{prefix}{first_user}` … `{prefix}{first_user + n - 1}`.
    pub user_prefix: String,
    /// Password prefix: the password of user number i is `{password_prefix}{i}`.
    pub password_prefix: String,
    /// Number of the first user.
    pub first_user: usize,
    /// Logins in flight at once.
    pub concurrency: usize,
    /// "herald", "prosody" or "ejabberd": written into rows.
    pub system: String,
    /// Server process to read RSS and CPU from.
    pub server_pid: Option<u32>,
    /// Machine description for rows.
    pub machine: String,
    /// Date for rows.
    pub date: String,
    /// Placement written into rows ("pinned", "unpinned"), if given.
    pub placement: Option<String>,
    /// How the server was started, written into rows, if given.
    pub server_flags: Option<String>,
    /// Login: a reconnect storm (see `loadgen login --reconnect`).
    pub reconnect: bool,
}

impl Common {
    /// The localpart of user slot `i` (0-based).
    pub fn user(&self, i: usize) -> String {
        format!("{}{}", self.user_prefix, self.first_user + i)
    }

    /// The bare JID of user slot `i`.
    pub fn bare_jid(&self, i: usize) -> String {
        format!("{}@{}", self.user(i), self.connect.domain)
    }

    /// A row with the identifying fields filled in.
    pub fn row(&self, scenario: &str, sessions: usize) -> Row {
        Row {
            system: self.system.clone(),
            scenario: scenario.into(),
            sessions,
            machine: self.machine.clone(),
            date: self.date.clone(),
            placement: self.placement.clone(),
            server_flags: self.server_flags.clone(),
            ..Row::default()
        }
    }
}

/// Outcome of logging in a set of users.
pub struct Logins {
    /// Sessions that logged in, by slot.
    pub sessions: Vec<(usize, Session)>,
    /// Login durations (connect to initial presence sent), microseconds.
    pub latencies_us: Vec<u64>,
    /// Failures, with the first few errors.
    pub failed: usize,
    /// Up to five error messages.
    pub errors: Vec<String>,
    /// Wall time of the whole storm.
    pub elapsed: Duration,
}

/// Logs in user slots `slots` with at most `common.concurrency` logins in flight.
pub async fn login_all(common: &Common, slots: impl IntoIterator<Item = usize>) -> Logins {
    let sem = Arc::new(Semaphore::new(common.concurrency.max(1)));
    let mut set: JoinSet<(usize, u64, Result<Session, ClientError>)> = JoinSet::new();
    let started = Instant::now();
    for i in slots {
        let sem = sem.clone();
        let cfg = common.connect.clone();
        let user = common.user(i);
        let password = format!("{}{}", common.password_prefix, common.first_user + i);
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let t0 = Instant::now();
            let r = Session::login(&cfg, i, &user, &password).await;
            (i, t0.elapsed().as_micros() as u64, r)
        });
    }
    let mut out = Logins {
        sessions: Vec::new(),
        latencies_us: Vec::new(),
        failed: 0,
        errors: Vec::new(),
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, us, Ok(s))) => {
                out.latencies_us.push(us);
                out.sessions.push((i, s));
            }
            Ok((i, _, Err(e))) => {
                out.failed += 1;
                if out.errors.len() < 5 {
                    out.errors.push(format!("{}: {e}", common.user(i)));
                }
            }
            Err(e) => {
                out.failed += 1;
                if out.errors.len() < 5 {
                    out.errors.push(format!("task: {e}"));
                }
            }
        }
    }
    out.elapsed = started.elapsed();
    out.sessions.sort_by_key(|(i, _)| *i);
    for e in &out.errors {
        eprintln!("login error: {e}");
    }
    out
}

/// The reply a client owes the server for an iq it received (result for set/get, e.g. roster
/// pushes and pings), or None for results and errors.
pub fn iq_reply(iq: &Element) -> Option<Element> {
    match iq.get_attr("type") {
        Some("set") | Some("get") => {
            let mut r = Element::new("iq", herald_xmpp::ns::CLIENT).attr("type", "result");
            if let Some(id) = iq.get_attr("id") {
                r = r.attr("id", id);
            }
            if let Some(from) = iq.get_attr("from") {
                r = r.attr("to", from);
            }
            Some(r)
        }
        _ => None,
    }
}

/// A member of a ring scenario (calendar, storm): the contacts it subscribes to, and whether it
/// has seen every one of them online yet (`ready` counts it once when it has).
pub(crate) struct Ring {
    contacts: Vec<String>,
    set: std::collections::HashSet<String>,
    online: std::collections::HashSet<String>,
    counted: bool,
    ready: Arc<std::sync::atomic::AtomicUsize>,
}

impl Ring {
    pub(crate) fn new(contacts: Vec<String>, ready: Arc<std::sync::atomic::AtomicUsize>) -> Self {
        let mut r = Ring {
            set: contacts.iter().cloned().collect(),
            contacts,
            online: Default::default(),
            counted: false,
            ready,
        };
        r.check();
        r
    }

    /// Sends a subscription request to every contact the user is not subscribed to yet (its
    /// roster at login), in order: a server whose subscriptions were written into its storage
    /// beforehand (bench/rosters.py) is not kept busy with requests that change nothing.
    pub(crate) async fn subscribe(&self, s: &mut Session) -> Result<(), ClientError> {
        let missing: Vec<&String> = self
            .contacts
            .iter()
            .filter(|c| !s.subscribed_to.contains(c.as_str()))
            .collect();
        for c in missing {
            let sub = Element::new("presence", herald_xmpp::ns::CLIENT)
                .attr("to", c.as_str())
                .attr("type", "subscribe");
            s.send(&sub).await?;
        }
        Ok(())
    }

    /// The bare JID of the contact that sent `e`, when `e` is an available presence from one
    /// of the member's contacts.
    pub(crate) fn contact_available<'a>(&self, e: &'a Element) -> Option<&'a str> {
        if e.name() != "presence" || e.get_attr("type").is_some() {
            return None;
        }
        let from = e
            .get_attr("from")
            .and_then(|f| f.split('/').next())
            .unwrap_or_default();
        self.set.contains(from).then_some(from)
    }

    /// Records that `bare` (a contact) was seen online.
    pub(crate) fn seen_online(&mut self, bare: &str) {
        if !self.counted && self.set.contains(bare) {
            self.online.insert(bare.to_owned());
            self.check();
        }
    }

    fn check(&mut self) {
        if !self.counted && self.online.len() == self.set.len() {
            self.counted = true;
            self.ready
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The approval a ring member sends for a subscription request (members approve every one),
/// the reply owed for an iq, or None.
pub(crate) fn ring_reply(e: &Element) -> Option<Element> {
    match (e.name(), e.get_attr("type")) {
        ("presence", Some("subscribe")) => e.get_attr("from").map(|from| {
            Element::new("presence", herald_xmpp::ns::CLIENT)
                .attr("to", from)
                .attr("type", "subscribed")
        }),
        ("iq", _) => iq_reply(e),
        _ => None,
    }
}

/// Closes all sessions, a few at a time, within `limit`.
pub async fn close_all(sessions: Vec<(usize, Session)>, limit: Duration) {
    let mut set = JoinSet::new();
    for (_, s) in sessions {
        set.spawn(s.close());
    }
    let _ = tokio::time::timeout(limit, async { while set.join_next().await.is_some() {} }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_member_is_ready_once_every_contact_was_seen() {
        let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut r = Ring::new(vec!["a@d".into(), "b@d".into()], ready.clone());
        r.seen_online("a@d");
        r.seen_online("x@d"); // not a contact
        r.seen_online("a@d");
        assert_eq!(ready.load(std::sync::atomic::Ordering::Relaxed), 0);
        r.seen_online("b@d");
        r.seen_online("b@d");
        assert_eq!(ready.load(std::sync::atomic::Ordering::Relaxed), 1);
        // No contacts: ready at once.
        let _ = Ring::new(Vec::new(), ready.clone());
        assert_eq!(ready.load(std::sync::atomic::Ordering::Relaxed), 2);
        let sub = Element::new("presence", herald_xmpp::ns::CLIENT)
            .attr("from", "a@d/r")
            .attr("type", "subscribe");
        let ok = ring_reply(&sub).unwrap();
        assert_eq!(
            (ok.get_attr("to"), ok.get_attr("type")),
            (Some("a@d/r"), Some("subscribed"))
        );
        let avail = Element::new("presence", herald_xmpp::ns::CLIENT).attr("from", "a@d/r");
        assert!(ring_reply(&avail).is_none());
    }

    #[test]
    fn iq_replies() {
        let cases = [
            ("set", Some("result")),
            ("get", Some("result")),
            ("result", None),
            ("error", None),
        ];
        for (ty, want) in cases {
            let iq = Element::new("iq", herald_xmpp::ns::CLIENT)
                .attr("type", ty)
                .attr("id", "x1")
                .attr("from", "a@b");
            let got = iq_reply(&iq);
            assert_eq!(got.as_ref().and_then(|r| r.get_attr("type")), want);
            if let Some(r) = got {
                assert_eq!(r.get_attr("id"), Some("x1"));
                assert_eq!(r.get_attr("to"), Some("a@b"));
            }
        }
    }
}
