//! Limits on what one client, one source network or one account can make the node do:
//! - [`FailureTable`] (owned by the [`AuthLimiter`] actor): failed logins counted per source
//!   prefix and per account over a sliding window; a new connection from a prefix with many
//!   recent failures, and a login attempt for an account under attack, wait first (on top of
//!   the per-connection delay and the 3-failure close).
//! - [`ConnLimits`]: open connections per listener and per source prefix.
//! - [`Shaper`]: a token bucket for a session's stanzas or bytes per second.
//!
//! A source is its /32 (IPv4) or /64 (IPv6, where one customer usually holds a whole /64): an
//! IPv6 client cannot walk around a limit by changing the low bits of its address.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::metrics as xm;

/// Failures are forgotten after this long without a new one.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Failures allowed per source prefix before its connections are delayed.
pub const FREE_FAILURES: u32 = 5;
/// Failures allowed per account (from anywhere) before its login attempts are delayed.
pub const FREE_ACCOUNT_FAILURES: u32 = 10;
/// Longest delay imposed.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// Most keys tracked (the least recently failed are dropped first when full).
pub const MAX_TRACKED: usize = 100_000;

/// The network a client address belongs to, for limits: an IPv4 address, or an IPv6 /64
/// (IPv4-mapped IPv6 addresses count as their IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourcePrefix(IpAddr);

impl SourcePrefix {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => SourcePrefix(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourcePrefix(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    SourcePrefix(IpAddr::V6(Ipv6Addr::from(bits)))
                }
            },
        }
    }
}

impl std::fmt::Display for SourcePrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}/32"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// What failures are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FailureKey {
    Source(SourcePrefix),
    /// A bare JID (`local@domain`), as the client named it.
    Account(String),
}

#[derive(Debug, Default)]
pub struct FailureTable {
    counts: HashMap<FailureKey, (u32, Instant)>,
    /// Keys in the order of their last failure (a key may appear more than once; only the
    /// entry matching its current time counts). Eviction pops from the front: O(1) amortized.
    order: VecDeque<(FailureKey, Instant)>,
}

impl FailureTable {
    pub fn failed(&mut self, key: FailureKey, now: Instant) {
        if self.counts.len() >= MAX_TRACKED && !self.counts.contains_key(&key) {
            self.evict_one();
        }
        let e = self.counts.entry(key.clone()).or_insert((0, now));
        if now.duration_since(e.1) >= WINDOW {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = now;
        self.order.push_back((key, now));
        // Stale order entries are dropped as they reach the front; bound the queue anyway.
        while self.order.len() > 2 * MAX_TRACKED {
            self.pop_front_entry();
        }
    }

    /// Removes the key whose last failure is the oldest.
    fn evict_one(&mut self) {
        while let Some(removed) = self.pop_front_entry() {
            if removed {
                return;
            }
        }
    }

    /// Pops one order entry; true when it removed its key (it was that key's latest failure).
    fn pop_front_entry(&mut self) -> Option<bool> {
        let (key, at) = self.order.pop_front()?;
        if self.counts.get(&key).is_some_and(|(_, last)| *last == at) {
            self.counts.remove(&key);
            Some(true)
        } else {
            Some(false)
        }
    }

    fn delay_for(&self, key: &FailureKey, free: u32, now: Instant) -> Duration {
        match self.counts.get(key) {
            Some((n, last)) if *n > free && now.duration_since(*last) < WINDOW => {
                let exp = (*n - free).min(5);
                Duration::from_secs(1u64 << exp).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    /// How long a new connection from `ip` must wait.
    pub fn delay(&self, ip: IpAddr, now: Instant) -> Duration {
        self.delay_for(
            &FailureKey::Source(SourcePrefix::of(ip)),
            FREE_FAILURES,
            now,
        )
    }

    /// How long a login attempt for `account` must wait.
    pub fn account_delay(&self, account: &str, now: Instant) -> Duration {
        self.delay_for(
            &FailureKey::Account(account.to_string()),
            FREE_ACCOUNT_FAILURES,
            now,
        )
    }

    pub fn tracked(&self) -> usize {
        self.counts.len()
    }
}

/// The actor that owns the table.
#[derive(Default)]
pub struct AuthLimiter {
    table: FailureTable,
}

impl Actor for AuthLimiter {
    type Context = Context<Self>;
}

/// A failed login from `ip` for `account` (when the client named one).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Failed {
    pub ip: IpAddr,
    pub account: Option<String>,
}

#[derive(Message)]
#[rtype(result = "Duration")]
pub struct DelayFor(pub IpAddr);

#[derive(Message)]
#[rtype(result = "Duration")]
pub struct AccountDelay(pub String);

impl Handler<Failed> for AuthLimiter {
    type Result = ();
    fn handle(&mut self, msg: Failed, _: &mut Context<Self>) {
        let now = Instant::now();
        self.table
            .failed(FailureKey::Source(SourcePrefix::of(msg.ip)), now);
        if let Some(a) = msg.account {
            self.table.failed(FailureKey::Account(a), now);
        }
    }
}

impl Handler<DelayFor> for AuthLimiter {
    type Result = MessageResult<DelayFor>;
    fn handle(&mut self, msg: DelayFor, _: &mut Context<Self>) -> Self::Result {
        let d = self.table.delay(msg.0, Instant::now());
        if !d.is_zero() {
            metrics::counter!(xm::LIMIT_HITS, "limit" => "login_failures_source").increment(1);
        }
        MessageResult(d)
    }
}

impl Handler<AccountDelay> for AuthLimiter {
    type Result = MessageResult<AccountDelay>;
    fn handle(&mut self, msg: AccountDelay, _: &mut Context<Self>) -> Self::Result {
        let d = self.table.account_delay(&msg.0, Instant::now());
        if !d.is_zero() {
            metrics::counter!(xm::LIMIT_HITS, "limit" => "login_failures_account").increment(1);
        }
        MessageResult(d)
    }
}

/// Open connections of one listener, in total and per source prefix.
#[derive(Debug)]
pub struct ConnLimits {
    max_total: usize,
    max_per_source: usize,
    open: Mutex<(usize, HashMap<SourcePrefix, usize>)>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnRefused {
    ListenerFull,
    SourceFull,
}

impl ConnRefused {
    pub fn label(self) -> &'static str {
        match self {
            ConnRefused::ListenerFull => "connections",
            ConnRefused::SourceFull => "connections_per_source",
        }
    }
}

impl ConnLimits {
    pub fn new(max_total: usize, max_per_source: usize) -> Self {
        ConnLimits {
            max_total,
            max_per_source,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    /// Counts a new connection from `ip`, or refuses it. Every `Ok` must be matched by one
    /// [`ConnLimits::close`] with the prefix it returned.
    pub fn open(&self, ip: IpAddr) -> Result<SourcePrefix, ConnRefused> {
        let p = SourcePrefix::of(ip);
        let mut g = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 >= self.max_total {
            return Err(ConnRefused::ListenerFull);
        }
        let n = g.1.entry(p).or_insert(0);
        if *n >= self.max_per_source {
            return Err(ConnRefused::SourceFull);
        }
        *n += 1;
        g.0 += 1;
        Ok(p)
    }

    pub fn close(&self, p: SourcePrefix) {
        let mut g = self.open.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&p) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&p);
            }
        }
    }

    /// (open connections, distinct sources).
    pub fn counts(&self) -> (usize, usize) {
        let g = self.open.lock().unwrap_or_else(|e| e.into_inner());
        (g.0, g.1.len())
    }
}

/// What a [`Shaper`] says about one more unit of input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Within the rate.
    Pass,
    /// Over it: read nothing more for this long.
    Delay(Duration),
    /// Over it for longer than the grace period: close the session.
    Disconnect,
}

/// Token bucket: `rate` units per second on average, bursts up to `2 × rate`. A sender over
/// the rate is delayed; one that has been over it without a break for [`Shaper::GRACE`] is cut.
/// Compact (12 bytes, kept inline in every session): times are milliseconds since a
/// process-wide epoch, and the rate is passed in with each charge (it comes from the config).
#[derive(Debug, Clone, Copy)]
pub struct Shaper {
    /// Tokens left (negative: owed).
    tokens: f32,
    /// When `tokens` was last brought up to date.
    last_ms: u32,
    /// Since when the sender has been over the rate without a break, plus one (0: it is not).
    over_since_ms: u32,
}

/// Milliseconds since the first call (wraps after 49 days; a wrapped interval refills fully).
fn epoch_ms(now: Instant) -> u32 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    (now.saturating_duration_since(epoch).as_millis() & 0xffff_ffff) as u32
}

impl Shaper {
    pub const GRACE: Duration = Duration::from_secs(10);

    /// A full bucket (a burst of `2 × rate` may pass at once).
    pub fn new(rate: usize, now: Instant) -> Self {
        Shaper {
            tokens: 2.0 * rate.max(1) as f32,
            last_ms: epoch_ms(now),
            over_since_ms: 0,
        }
    }

    pub fn charge(&mut self, rate: usize, units: usize, now: Instant) -> Shape {
        let rate = rate.max(1) as f64;
        let now_ms = epoch_ms(now);
        let elapsed = f64::from(now_ms.wrapping_sub(self.last_ms)) / 1000.0;
        self.last_ms = now_ms;
        let tokens = (f64::from(self.tokens) + elapsed * rate).min(2.0 * rate) - units as f64;
        self.tokens = tokens as f32;
        if tokens >= 0.0 {
            self.over_since_ms = 0;
            return Shape::Pass;
        }
        if self.over_since_ms == 0 {
            self.over_since_ms = now_ms.wrapping_add(1);
        }
        let over_for = now_ms.wrapping_sub(self.over_since_ms.wrapping_sub(1));
        if u128::from(over_for) >= Self::GRACE.as_millis() {
            return Shape::Disconnect;
        }
        Shape::Delay(Duration::from_secs_f64(-tokens / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_expire() {
        let mut t = FailureTable::default();
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let other: IpAddr = "127.0.0.10".parse().unwrap();
        let key = FailureKey::Source(SourcePrefix::of(ip));
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            t.failed(key.clone(), t0);
        }
        assert_eq!(t.delay(ip, t0), Duration::ZERO);
        t.failed(key.clone(), t0);
        assert_eq!(t.delay(ip, t0), Duration::from_secs(2));
        for _ in 0..20 {
            t.failed(key.clone(), t0);
        }
        assert_eq!(t.delay(ip, t0), MAX_DELAY);
        assert_eq!(t.delay(other, t0), Duration::ZERO);
        // After the window, the slate is clean.
        let later = t0 + WINDOW + Duration::from_secs(1);
        assert_eq!(t.delay(ip, later), Duration::ZERO);
        t.failed(key, later);
        assert_eq!(t.delay(ip, later), Duration::ZERO);
    }

    #[test]
    fn ipv6_clients_in_one_64_share_a_count() {
        let mut t = FailureTable::default();
        let t0 = Instant::now();
        for i in 0..(FREE_FAILURES + 1) {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            t.failed(FailureKey::Source(SourcePrefix::of(ip)), t0);
        }
        let fresh: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(!t.delay(fresh, t0).is_zero(), "same /64: delayed");
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(t.delay(elsewhere, t0).is_zero(), "another /64: not delayed");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            SourcePrefix::of(mapped),
            SourcePrefix::of("192.0.2.7".parse().unwrap())
        );
        assert_eq!(SourcePrefix::of(fresh).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn accounts_are_counted_from_anywhere() {
        let mut t = FailureTable::default();
        let t0 = Instant::now();
        for _ in 0..=FREE_ACCOUNT_FAILURES {
            t.failed(FailureKey::Account("alice@example.test".into()), t0);
        }
        assert!(!t.account_delay("alice@example.test", t0).is_zero());
        assert!(t.account_delay("bob@example.test", t0).is_zero());
    }

    #[test]
    fn a_full_table_evicts_the_oldest_in_constant_time() {
        let mut t = FailureTable::default();
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.failed(
                FailureKey::Source(SourcePrefix::of(ip)),
                t0 + Duration::from_micros(u64::from(i)),
            );
        }
        assert_eq!(t.tracked(), MAX_TRACKED);
        let started = Instant::now();
        for i in 0..50_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            t.failed(
                FailureKey::Source(SourcePrefix::of(ip)),
                t0 + Duration::from_secs(1) + Duration::from_micros(u64::from(i)),
            );
        }
        assert_eq!(t.tracked(), MAX_TRACKED);
        // The oldest went first: the very first address is forgotten, the newest is there.
        let first = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000));
        let k = FailureKey::Source(SourcePrefix::of(first));
        assert!(!t.counts.contains_key(&k));
        // 50,000 insertions into a full table: far from the 50,000 × 100,000 of a linear scan
        // (bounded loosely so that a slow debug build on a busy machine still passes).
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn connections_are_capped_per_listener_and_per_source() {
        let l = ConnLimits::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let pa = l.open(a).unwrap();
        l.open(a).unwrap();
        assert_eq!(l.open(a), Err(ConnRefused::SourceFull));
        let pb = l.open(b).unwrap();
        assert_eq!(l.open(b), Err(ConnRefused::ListenerFull));
        l.close(pb);
        l.close(pa);
        assert_eq!(l.counts(), (1, 1));
        l.open(b).unwrap();
        assert_eq!(l.counts(), (2, 2));
    }

    #[test]
    fn shaper_passes_bursts_delays_then_disconnects() {
        let t0 = Instant::now();
        let mut s = Shaper::new(10, t0);
        assert!(std::mem::size_of::<Shaper>() <= 12);
        // A burst of twice the rate passes.
        for _ in 0..20 {
            assert_eq!(s.charge(10, 1, t0), Shape::Pass);
        }
        // The next one waits about 1/rate.
        match s.charge(10, 1, t0) {
            Shape::Delay(d) => assert!((d.as_secs_f64() - 0.1).abs() < 1e-3, "{d:?}"),
            other => panic!("{other:?}"),
        }
        // Back within the rate after a pause: passes again, the grace period restarts.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(s.charge(10, 1, t1), Shape::Pass);
        // A sender that stays over the rate for the grace period is cut.
        let mut t = t1;
        let mut verdict = Shape::Pass;
        for _ in 0..1000 {
            t += Duration::from_millis(50);
            verdict = s.charge(10, 10, t);
            if verdict == Shape::Disconnect {
                break;
            }
        }
        assert_eq!(verdict, Shape::Disconnect);
        assert!(t - t1 >= Shaper::GRACE);
    }
}
