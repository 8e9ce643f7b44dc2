//! What each calendar shows, evaluated just after every whole second, and the paced hand-out
//! of the changes to the user actors (the 10:00 burst spread so that chat keeps flowing).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use herald_federation::calendar::state_at;

use super::{state_label, unix_now, CalendarActor};
use crate::calendar::metrics as m;
use crate::xmpp::users::CalendarFor;

/// The smallest batch of calendar states handed to user actors at once.
pub(super) const MIN_OVERLAY_BATCH: usize = 10;

/// The next batch size from how late the batch timer ran: late by more than a quarter of a
/// step (a chat message crossing three or four actors would wait that at each), the batch
/// halves; nearly on time (under a sixteenth of a step), it grows by an eighth, up to `max`.
fn next_batch(batch: usize, late: Duration, step: Duration, max: usize) -> usize {
    if late > step / 4 {
        (batch / 2).max(MIN_OVERLAY_BATCH)
    } else if late < step / 16 {
        (batch + batch / 8 + 1).min(max)
    } else {
        batch
    }
    .min(max.max(MIN_OVERLAY_BATCH))
}

impl CalendarActor {
    /// Step 5: what each calendar shows this second; a user whose state changed goes into
    /// the outbox, which is handed to the user actors in batches ([`Self::drain_outbox`]).
    fn evaluate(&mut self, ctx: &mut Context<Self>) {
        let now = unix_now();
        for (jid, uc) in self.users.iter_mut() {
            if uc.gateway.is_none() {
                continue;
            }
            let state = state_at(&uc.intervals, now);
            if uc.sent == Some(state) {
                continue;
            }
            // The first report of Free is sent too: it is cheap and makes the actor's view exact.
            uc.sent = Some(state);
            metrics::counter!(m::OVERLAY_CHANGES, "state" => state_label(state)).increment(1);
            tracing::debug!(user = %jid, state = state_label(state), "calendar state changed");
            if !uc.queued {
                uc.queued = true;
                self.outbox.push_back(jid.clone());
            }
        }
        if !self.draining {
            self.drain_outbox(ctx);
        }
    }

    /// Hands one batch of the outbox to the user actors (each user's latest state), and
    /// schedules the next batch while users remain.
    ///
    /// The batch adapts to what the node can take: the next batch is due `overlay_step` after
    /// this one, and how late that timer runs is how long work already queued on this thread
    /// (the presence the last batch sent out, chat, logins) kept it waiting, which is what a
    /// chat message arriving now waits too, at each of its hops (session, user actor,
    /// recipient's session): see [`next_batch`].
    fn drain_outbox(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if let Some(due) = self.drain_due.take() {
            let late = now.saturating_duration_since(due);
            self.batch = next_batch(
                self.batch,
                late,
                self.settings.overlay_step,
                self.settings.overlay_batch,
            );
        }
        let mut n = 0;
        while n < self.batch {
            let Some(jid) = self.outbox.pop_front() else {
                break;
            };
            let Some(uc) = self.users.get_mut(&jid) else {
                continue;
            };
            uc.queued = false;
            let Some(state) = uc.sent else {
                continue;
            };
            n += 1;
            self.shared.shard(&jid).do_send(CalendarFor { jid, state });
        }
        metrics::gauge!(m::OVERLAY_QUEUE).set(self.outbox.len() as f64);
        metrics::gauge!(m::OVERLAY_BATCH).set(self.batch as f64);
        self.draining = !self.outbox.is_empty();
        if self.draining {
            let step = self.settings.overlay_step;
            self.drain_due = Some(now + step);
            ctx.run_later(step, |act, ctx| act.drain_outbox(ctx));
        }
    }
}

impl CalendarActor {
    /// Evaluates now and again just after the next whole second of wall time: calendar states
    /// change on whole seconds (iCalendar and EWS times have no finer unit), so a meeting that
    /// starts at 10:00:00 reaches the user's actor at 10:00:00 plus the evaluation, not up to a
    /// second later as with a timer at an arbitrary phase.
    pub(super) fn evaluate_then_next(&mut self, ctx: &mut Context<Self>) {
        self.evaluate(ctx);
        ctx.run_later(until_next_second(SystemTime::now()), |act, ctx| {
            act.evaluate_then_next(ctx)
        });
    }
}

/// How long from `now` until [`TICK_AFTER_SECOND`] past the next whole second.
fn until_next_second(now: SystemTime) -> Duration {
    let into = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_nanos(u64::from(1_000_000_000 - into)) + TICK_AFTER_SECOND
}

/// Ticks run this long after the second turns (timer slack, clock steps).
const TICK_AFTER_SECOND: Duration = Duration::from_millis(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_batches_halve_when_the_node_is_late_and_grow_when_on_time() {
        let step = Duration::from_millis(20);
        let ms = Duration::from_millis;
        let cases = [
            (200, ms(50), 100),
            (200, ms(6), 100),
            (15, ms(500), MIN_OVERLAY_BATCH),
            (150, ms(3), 150),
            (100, ms(1), 113),
            (200, ms(0), 200),
            (10, ms(0), 12),
        ];
        for (batch, late, want) in cases {
            assert_eq!(
                next_batch(batch, late, step, 200),
                want,
                "{batch} late {late:?}"
            );
        }
        // Ten on-time steps from the smallest batch: a burst ramps up within 0.2 s.
        let mut b = MIN_OVERLAY_BATCH;
        for _ in 0..10 {
            b = next_batch(b, Duration::ZERO, step, 200);
        }
        assert!(b > 3 * MIN_OVERLAY_BATCH && b <= 200, "{b}");
    }

    #[test]
    fn ticks_land_just_after_the_next_whole_second() {
        let at = |secs: u64, nanos: u32| UNIX_EPOCH + Duration::new(secs, nanos);
        let cases = [
            (at(100, 0), Duration::from_secs(1)),
            (at(100, 250_000_000), Duration::from_millis(750)),
            (at(100, 999_999_999), Duration::from_nanos(1)),
        ];
        for (now, gap) in cases {
            assert_eq!(until_next_second(now), gap + TICK_AFTER_SECOND);
        }
    }
}
