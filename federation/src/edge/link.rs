//! One outbound link per destination domain: a bounded queue, the connection state and the
//! backoff between attempts. Sans-io: the edge's actor feeds events with the current time and
//! carries out what comes back (connect, write, bounce).
//!
//! Nothing queued is dropped without an answer: an item is either handed out for writing, or
//! handed back to be bounced (queue full, attempt failed, waited too long).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bounds of one link.
#[derive(Debug, Clone, Copy)]
pub struct LinkLimits {
    /// Items queued while not connected.
    pub max_items: usize,
    /// Bytes queued while not connected.
    pub max_bytes: usize,
    /// First retry delay after a failure; doubled per consecutive failure.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Longest time an item waits for a connection before it is bounced.
    pub max_wait: Duration,
}

impl Default for LinkLimits {
    fn default() -> Self {
        LinkLimits {
            max_items: 10_000,
            max_bytes: 8 << 20,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_wait: Duration::from_secs(30),
        }
    }
}

/// The connection state of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// No connection, nothing pending.
    Idle,
    /// An attempt is under way since the given time.
    Connecting(Instant),
    /// Connected and authenticated: items are written straight away.
    Up,
    /// The last attempt failed; the next one not before `until`.
    Backoff {
        /// Earliest next attempt.
        until: Instant,
        /// Why the last attempt failed.
        reason: String,
    },
}

impl LinkState {
    /// `idle`, `connecting`, `up`, `backoff` (metric label).
    pub fn label(&self) -> &'static str {
        match self {
            LinkState::Idle => "idle",
            LinkState::Connecting(_) => "connecting",
            LinkState::Up => "up",
            LinkState::Backoff { .. } => "backoff",
        }
    }
}

/// What to do with an item just pushed.
#[derive(Debug, PartialEq, Eq)]
pub enum Push<T> {
    /// The link is up: write it now.
    Write(T),
    /// Queued; `connect` says an attempt must start now.
    Queued {
        /// Start a connection attempt.
        connect: bool,
    },
    /// The queue is full: bounce it.
    Full(T),
}

/// One destination's queue and connection state.
#[derive(Debug)]
pub struct Link<T> {
    limits: LinkLimits,
    state: LinkState,
    queue: VecDeque<(T, usize, Instant)>,
    bytes: usize,
    failures: u32,
}

impl<T> Link<T> {
    /// An idle link.
    pub fn new(limits: LinkLimits) -> Self {
        Link {
            limits,
            state: LinkState::Idle,
            queue: VecDeque::new(),
            bytes: 0,
            failures: 0,
        }
    }

    /// The connection state.
    pub fn state(&self) -> &LinkState {
        &self.state
    }

    /// Items waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Consecutive failed attempts.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// An item of `size` bytes to send.
    pub fn push(&mut self, item: T, size: usize, now: Instant) -> Push<T> {
        if self.state == LinkState::Up {
            return Push::Write(item);
        }
        if self.queue.len() >= self.limits.max_items || self.bytes + size > self.limits.max_bytes {
            return Push::Full(item);
        }
        self.queue.push_back((item, size, now));
        self.bytes += size;
        let connect = match &self.state {
            LinkState::Idle => true,
            LinkState::Backoff { until, .. } => now >= *until,
            LinkState::Connecting(_) | LinkState::Up => false,
        };
        if connect {
            self.state = LinkState::Connecting(now);
        }
        Push::Queued { connect }
    }

    /// The attempt succeeded: everything queued is handed out for writing, in order.
    pub fn up(&mut self) -> Vec<T> {
        self.state = LinkState::Up;
        self.failures = 0;
        self.bytes = 0;
        self.queue.drain(..).map(|(t, _, _)| t).collect()
    }

    /// The attempt failed (or an established link broke with items queued): items that waited
    /// longer than `max_wait`, or all of them when `bounce_all`, are handed back to be bounced;
    /// returns them and the delay before the next attempt (None when nothing is left to send).
    pub fn failed(
        &mut self,
        now: Instant,
        reason: impl Into<String>,
        bounce_all: bool,
    ) -> (Vec<T>, Option<Duration>) {
        self.failures = self.failures.saturating_add(1);
        let delay = self
            .limits
            .backoff_min
            .saturating_mul(1u32 << (self.failures - 1).min(16))
            .min(self.limits.backoff_max);
        self.state = LinkState::Backoff {
            until: now + delay,
            reason: reason.into(),
        };
        let bounced = if bounce_all {
            self.bytes = 0;
            self.queue.drain(..).map(|(t, _, _)| t).collect()
        } else {
            self.expire(now)
        };
        let retry = (!self.queue.is_empty()).then_some(delay);
        (bounced, retry)
    }

    /// A link that was up closed (idle timeout, peer closed): back to idle; true when items
    /// queued since need a new attempt (the caller starts it and calls [`Link::connecting`]).
    pub fn down(&mut self) -> bool {
        self.state = LinkState::Idle;
        !self.queue.is_empty()
    }

    /// The caller starts an attempt now (after a backoff, or after [`Link::down`]).
    pub fn connecting(&mut self, now: Instant) {
        self.state = LinkState::Connecting(now);
    }

    /// Hands back items that waited longer than `max_wait`.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        while let Some((_, size, at)) = self.queue.front() {
            if now.duration_since(*at) < self.limits.max_wait {
                break;
            }
            self.bytes -= *size;
            if let Some((t, _, _)) = self.queue.pop_front() {
                out.push(t);
            }
        }
        out
    }

    /// Everything queued (shutdown): to be bounced.
    pub fn drain(&mut self) -> Vec<T> {
        self.bytes = 0;
        self.queue.drain(..).map(|(t, _, _)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LinkLimits {
        LinkLimits {
            max_items: 3,
            max_bytes: 100,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
            max_wait: Duration::from_secs(30),
        }
    }

    #[test]
    fn first_item_connects_then_queues_then_flushes_in_order() {
        let t0 = Instant::now();
        let mut l = Link::new(limits());
        assert_eq!(l.push(1, 10, t0), Push::Queued { connect: true });
        assert_eq!(l.push(2, 10, t0), Push::Queued { connect: false });
        assert_eq!(l.state().label(), "connecting");
        assert_eq!(l.up(), vec![1, 2]);
        assert_eq!(l.push(3, 10, t0), Push::Write(3));
    }

    #[test]
    fn full_queue_bounces_by_count_and_bytes() {
        let t0 = Instant::now();
        let mut l = Link::new(limits());
        for i in 0..3 {
            assert!(matches!(l.push(i, 1, t0), Push::Queued { .. }));
        }
        assert_eq!(l.push(9, 1, t0), Push::Full(9));
        let mut l = Link::new(limits());
        assert!(matches!(l.push(1, 90, t0), Push::Queued { .. }));
        assert_eq!(l.push(2, 20, t0), Push::Full(2));
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let mut l = Link::new(limits());
        l.push(1, 1, t0);
        let mut delays = vec![];
        for _ in 0..6 {
            let (bounced, retry) = l.failed(t0, "dns", false);
            assert!(bounced.is_empty());
            delays.push(retry.unwrap().as_secs());
        }
        assert_eq!(delays, [1, 2, 4, 8, 8, 8]);
        assert_eq!(l.up(), vec![1]);
        assert_eq!(l.failures(), 0);
    }

    #[test]
    fn bounce_all_and_expiry_return_every_item() {
        let t0 = Instant::now();
        let mut l = Link::new(limits());
        l.push(1, 1, t0);
        l.push(2, 1, t0 + Duration::from_secs(20));
        let (b, retry) = l.failed(t0 + Duration::from_secs(31), "tls", false);
        assert_eq!((b, retry.is_some()), (vec![1], true));
        let (b, retry) = l.failed(t0 + Duration::from_secs(32), "tls", true);
        assert_eq!((b, retry), (vec![2], None));
        assert_eq!(l.queued(), 0);
    }

    #[test]
    fn during_backoff_items_wait_until_it_ends() {
        let t0 = Instant::now();
        let mut l = Link::new(limits());
        l.push(1, 1, t0);
        l.failed(t0, "timeout", true);
        assert_eq!(l.push(2, 1, t0), Push::Queued { connect: false });
        assert_eq!(
            l.push(3, 1, t0 + Duration::from_secs(2)),
            Push::Queued { connect: true }
        );
    }

    #[test]
    fn down_asks_for_a_new_attempt_only_with_items_queued() {
        let t0 = Instant::now();
        let mut l: Link<u8> = Link::new(limits());
        l.push(1, 1, t0);
        l.up();
        assert!(!l.down());
        assert_eq!(l.push(2, 1, t0), Push::Queued { connect: true });
    }
}
