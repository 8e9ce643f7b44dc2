//! The calendar overlay on what watchers see (REQUIREMENTS §17, MAP-9).
//!
//! The user's own presence stays what their clients sent: it is what their other resources
//! see and what is kept per session. Every presence that leaves for someone else (broadcast to
//! subscribers, probe answers, directed presence, presence sent again after an unblock) goes
//! through [`UserCore::for_watchers`], which applies the calendar state the node's
//! CalendarActor last reported ([`herald_federation::calendar::overlay_presence`]: Busy → away
//! "In a meeting", out of office → away, DND and offline win). When that state changes,
//! [`UserCore::calendar_changed`] sends each available resource's presence again, so watchers
//! on this node, other nodes and other domains see the change.

use herald_federation::availability::CalendarState;
use herald_federation::calendar::overlay::{is_overlay, overlay_presence};
use herald_xmpp::Element;

use super::{readdress, Effect, Out, UserCore};

impl UserCore {
    /// `presence` (one of the user's available presences) as a watcher sees it now.
    pub(crate) fn for_watchers(&self, presence: &Element) -> Element {
        if is_overlay(self.calendar) {
            overlay_presence(presence, self.calendar)
        } else {
            presence.clone()
        }
    }

    /// The calendar state changed (or is first known): watchers get each available
    /// resource's presence again when what they see changes.
    pub fn calendar_changed(&mut self, state: CalendarState) -> Vec<Effect> {
        let mut out = Out::default();
        let before = self.calendar;
        self.calendar = state;
        if before.overlay() == state.overlay() {
            return out.finish();
        }
        let subscribers = self.subscribers();
        for (res, s) in self.available() {
            let Some(p) = &s.presence else {
                continue;
            };
            let shown = self.for_watchers(p);
            if let Some(full) = self.full_jid(res) {
                out.broadcast(shown.clone(), &full, subscribers.clone());
            }
            if let Some(set) = self.directed.get(res) {
                for to in set {
                    if !subscribers.contains(&to.bare()) && !self.is_blocked(to) {
                        out.route(readdress(&shown, to));
                    }
                }
            }
        }
        out.finish()
    }
}
