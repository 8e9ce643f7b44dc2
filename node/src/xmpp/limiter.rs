//! Slows down password guessing across connections: failed logins are counted per client IP
//! over a sliding window, and a new connection from an IP with many recent failures waits before
//! anything it sends is read (on top of the per-connection delay and the 3-failure close).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;

/// Failures are forgotten after this long without a new one.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Failures allowed before connections are delayed.
pub const FREE_FAILURES: u32 = 5;
/// Longest delay imposed on a new connection.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// Most IPs tracked (oldest entries are dropped first when full).
pub const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Default)]
pub struct FailureTable {
    by_ip: HashMap<IpAddr, (u32, Instant)>,
}

impl FailureTable {
    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        if self.by_ip.len() >= MAX_TRACKED && !self.by_ip.contains_key(&ip) {
            self.by_ip
                .retain(|_, (_, last)| now.duration_since(*last) < WINDOW);
            if self.by_ip.len() >= MAX_TRACKED {
                if let Some(oldest) = self
                    .by_ip
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| *k)
                {
                    self.by_ip.remove(&oldest);
                }
            }
        }
        let e = self.by_ip.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= WINDOW {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = now;
    }

    /// How long a new connection from `ip` must wait.
    pub fn delay(&self, ip: IpAddr, now: Instant) -> Duration {
        match self.by_ip.get(&ip) {
            Some((n, last)) if *n > FREE_FAILURES && now.duration_since(*last) < WINDOW => {
                let exp = (*n - FREE_FAILURES).min(5);
                Duration::from_secs(1u64 << exp).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
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

#[derive(Message)]
#[rtype(result = "()")]
pub struct Failed(pub IpAddr);

#[derive(Message)]
#[rtype(result = "Duration")]
pub struct DelayFor(pub IpAddr);

impl Handler<Failed> for AuthLimiter {
    type Result = ();
    fn handle(&mut self, msg: Failed, _: &mut Context<Self>) {
        self.table.failed(msg.0, Instant::now());
    }
}

impl Handler<DelayFor> for AuthLimiter {
    type Result = MessageResult<DelayFor>;
    fn handle(&mut self, msg: DelayFor, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.table.delay(msg.0, Instant::now()))
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
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            t.failed(ip, t0);
        }
        assert_eq!(t.delay(ip, t0), Duration::ZERO);
        t.failed(ip, t0);
        assert_eq!(t.delay(ip, t0), Duration::from_secs(2));
        for _ in 0..20 {
            t.failed(ip, t0);
        }
        assert_eq!(t.delay(ip, t0), MAX_DELAY);
        assert_eq!(t.delay(other, t0), Duration::ZERO);
        // After the window, the slate is clean.
        let later = t0 + WINDOW + Duration::from_secs(1);
        assert_eq!(t.delay(ip, later), Duration::ZERO);
        t.failed(ip, later);
        assert_eq!(t.delay(ip, later), Duration::ZERO);
    }
}
