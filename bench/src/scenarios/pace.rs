//! The one-way chat shape's sending schedule, as pure logic: every sender is due a number of
//! messages on a shared 1 ms tick, and a sender's due messages go out as one write.
//!
//! Sender `j` of `n` at `per_sec` messages/s is due, by elapsed millisecond `t`,
//! `floor(t · per_sec / 1000 + j / n)` messages in total: the phase `j / n` spreads the senders
//! evenly over one sending period, and counting from the start (not tick by tick) means a late
//! tick neither loses nor invents messages, it only makes that sender's next write carry more.

use std::fmt::Write as _;

/// The tick schedule of all senders of one step.
#[derive(Debug, Clone)]
pub struct Pacer {
    per_sec: f64,
    /// Phase of each sender in milli-messages: `1000 · j / n`.
    phases: Vec<f64>,
    issued: Vec<u64>,
    cap: u64,
}

impl Pacer {
    /// `senders` senders at `per_sender_per_sec` messages/s each, each at most `cap` messages.
    pub fn new(senders: usize, per_sender_per_sec: f64, cap: u64) -> Pacer {
        let n = senders.max(1) as f64;
        Pacer {
            per_sec: per_sender_per_sec.max(0.0),
            phases: (0..senders).map(|j| 1000.0 * j as f64 / n).collect(),
            issued: vec![0; senders],
            cap,
        }
    }

    /// The tick at `elapsed_ms` since the step started: calls `due(sender, count)` for every
    /// sender with `count > 0` messages newly due, and counts them as issued.
    pub fn tick(&mut self, elapsed_ms: u64, mut due: impl FnMut(usize, u64)) {
        for (j, issued) in self.issued.iter_mut().enumerate() {
            // In milli-messages, so that whole rates give whole counts without rounding error.
            let milli = elapsed_ms as f64 * self.per_sec + self.phases[j];
            let target = ((milli / 1000.0).floor() as u64).min(self.cap);
            if target > *issued {
                due(j, target - *issued);
                *issued = target;
            }
        }
    }

    /// Messages issued so far, all senders.
    pub fn issued(&self) -> u64 {
        self.issued.iter().sum()
    }
}

/// Appends `count` chat messages to `to` in one buffer (one write, one TLS record while it
/// fits in 16 KiB), each with the body `step:stamp_us`.
pub fn batch(buf: &mut Vec<u8>, to: &str, step: u64, stamp_us: u64, count: u64) {
    let mut s = String::with_capacity(96 * count as usize);
    for _ in 0..count {
        let _ = write!(
            s,
            "<message to='{to}' type='chat'><body>{step}:{stamp_us}</body></message>"
        );
    }
    buf.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_xmpp::codec::{Decoder, Limits, StreamEvent};

    fn run(p: &mut Pacer, ticks: impl IntoIterator<Item = u64>) -> Vec<Vec<(u64, u64)>> {
        let mut per_sender = vec![Vec::new(); p.issued.len()];
        for t in ticks {
            p.tick(t, |j, c| per_sender[j].push((t, c)));
        }
        per_sender
    }

    #[test]
    fn one_second_of_ticks_issues_the_rate() {
        // (senders, per sender per second, cap, expected per sender after 1,000 ms)
        let cases = [
            (100, 10.0, u64::MAX, 10),
            (100, 640.0, u64::MAX, 640),
            (3, 1000.0, u64::MAX, 1000),
            (4, 2500.0, u64::MAX, 2500),
            (100, 10.0, 4, 4),
            (2, 0.0, u64::MAX, 0),
        ];
        for (n, rate, cap, want) in cases {
            let mut p = Pacer::new(n, rate, cap);
            let got = run(&mut p, 0..=1000);
            for (j, sends) in got.iter().enumerate() {
                let total: u64 = sends.iter().map(|(_, c)| c).sum();
                assert_eq!(total, want, "n {n} rate {rate} sender {j}");
                // Never more than one message per tick when ticks are on time and the
                // per-sender rate is at most 1,000/s.
                if rate <= 1000.0 {
                    assert!(sends.iter().all(|&(_, c)| c == 1), "n {n} rate {rate}");
                }
            }
            assert_eq!(p.issued(), want * n as u64, "n {n} rate {rate}");
        }
    }

    #[test]
    fn phases_spread_senders_over_the_period() {
        // 10 senders, 100 msgs/s each: a 10 ms period, one sender's first message per ms.
        let mut p = Pacer::new(10, 100.0, u64::MAX);
        let got = run(&mut p, 0..10);
        let first: Vec<u64> = got.iter().map(|s| s.first().map_or(99, |f| f.0)).collect();
        // Sender 0 has phase 0: its first message is due at 10 ms, outside; sender j at 10 - j.
        assert_eq!(first, vec![99, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
        for sends in &got {
            assert!(sends.iter().all(|&(_, c)| c == 1), "{sends:?}");
        }
    }

    #[test]
    fn late_ticks_coalesce_without_loss() {
        // 2 senders at 1,000 msgs/s each: one per ms. Ticks at 0, 1, then the scheduler is
        // late until 50 ms: the 50 ms tick carries the 49 missed messages in one batch.
        let mut p = Pacer::new(2, 1000.0, u64::MAX);
        let got = run(&mut p, [0, 1, 50, 51]);
        assert_eq!(got[0], vec![(1, 1), (50, 49), (51, 1)]);
        assert_eq!(got[1], vec![(1, 1), (50, 49), (51, 1)]);
        // A repeated or earlier elapsed value issues nothing new.
        let again = run(&mut p, [51, 40]);
        assert!(again.iter().all(Vec::is_empty));
    }

    #[test]
    fn batch_is_count_stanzas_with_stamps() {
        for count in [1u64, 3, 40] {
            let mut buf = Vec::new();
            batch(&mut buf, "u2@example.test/lg1", 7, 123_456, count);
            let mut dec = Decoder::new(Limits::default());
            dec.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
            dec.feed(&buf);
            let mut seen = 0;
            while let Some(ev) = dec.next().expect("well-formed") {
                if let StreamEvent::Stanza(e) = ev {
                    assert_eq!(e.get_attr("to"), Some("u2@example.test/lg1"));
                    let body = e
                        .get_child("body", herald_xmpp::ns::CLIENT)
                        .map(|b| b.text())
                        .unwrap_or_default();
                    assert_eq!(body, "7:123456");
                    seen += 1;
                }
            }
            assert_eq!(seen, count);
        }
    }
}
