//! XEP-0198 stream management, without resumption: the client can enable it, ask for and give
//! acknowledgements; every stanza the server sends stays queued until the client acknowledges
//! it, and when the session ends the unacknowledged messages go back to the user's account
//! (delivered to another resource or stored offline), so a message the client never confirmed
//! is not lost. Pure state; the SessionActor drives it.

use std::collections::VecDeque;

use herald_xmpp::{ns, Element};

/// Ask the client for an acknowledgement after this many unacknowledged stanzas.
pub const REQUEST_EVERY: usize = 5;
/// Most stanzas kept unacknowledged; past this the session is closed (resource-constraint).
pub const MAX_UNACKED: usize = 10_000;
/// Most bytes (as sent) kept unacknowledged; past this the session is closed too, so a client
/// that never acknowledges large messages cannot pin more than this in the server's memory.
pub const MAX_UNACKED_BYTES: usize = 4 * 1024 * 1024;

/// Stream management of one session: nothing until the client enables it (or a closing
/// session keeps a stanza), then its state, boxed: many sessions never use it, and an idle
/// session's actor should stay small (see `SessionActor`).
#[derive(Debug, Default)]
pub struct StreamMgmt(Option<Box<SmState>>);

#[derive(Debug, Default)]
struct SmState {
    /// The client enabled stream management.
    enabled: bool,
    /// Stanzas received from the client since enabling.
    inbound: u32,
    /// The client's last acknowledged count (`h`) of what we sent.
    acked: u32,
    /// Sent and not yet acknowledged, oldest first, with their size as sent.
    unacked: VecDeque<(Element, u32)>,
    /// Sum of the sizes in `unacked`.
    unacked_bytes: usize,
    since_request: usize,
}

/// What was left unacknowledged when the limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unacked {
    pub stanzas: usize,
    pub bytes: usize,
}

/// What the session must do about a stream management element.
#[derive(Debug, PartialEq)]
pub enum SmReply {
    Send(Element),
    /// The client broke the protocol (acknowledged more than was sent).
    Violation(String),
    Nothing,
}

impl StreamMgmt {
    pub fn enabled(&self) -> bool {
        self.0.as_ref().is_some_and(|sm| sm.enabled)
    }

    /// The state, when the client enabled stream management.
    fn on(&mut self) -> Option<&mut SmState> {
        self.0.as_deref_mut().filter(|sm| sm.enabled)
    }

    /// Whether `el` is a stream management element.
    pub fn is_sm(el: &Element) -> bool {
        el.ns() == ns::SM
    }

    /// Handles `<enable/>`, `<r/>` and `<a/>` from the client.
    pub fn handle(&mut self, el: &Element, stream_id: &str) -> SmReply {
        match (el.name(), self.on()) {
            ("enable", None) => {
                self.0.get_or_insert_with(Box::default).enabled = true;
                // No resumption: `resume` is not offered back.
                SmReply::Send(Element::new("enabled", ns::SM).attr("id", stream_id))
            }
            ("enable", Some(_)) => SmReply::Send(
                Element::new("failed", ns::SM)
                    .child(Element::new("unexpected-request", ns::STANZAS_ERR)),
            ),
            ("r", Some(sm)) => {
                SmReply::Send(Element::new("a", ns::SM).attr("h", sm.inbound.to_string()))
            }
            ("a", Some(sm)) => {
                let Some(h) = el.get_attr("h").and_then(|h| h.parse::<u32>().ok()) else {
                    return SmReply::Violation("<a/> without a valid h".into());
                };
                let newly = h.wrapping_sub(sm.acked) as usize;
                if newly > sm.unacked.len() {
                    return SmReply::Violation(format!(
                        "acknowledged {h} stanzas but only {} were sent",
                        sm.acked as usize + sm.unacked.len()
                    ));
                }
                let freed: usize = sm.unacked.drain(..newly).map(|(_, n)| n as usize).sum();
                sm.unacked_bytes -= freed;
                sm.acked = h;
                SmReply::Nothing
            }
            ("resume", _) => SmReply::Send(
                Element::new("failed", ns::SM)
                    .child(Element::new("item-not-found", ns::STANZAS_ERR)),
            ),
            _ => SmReply::Nothing,
        }
    }

    /// Counts a stanza received from the client.
    pub fn received(&mut self) {
        if let Some(sm) = self.on() {
            sm.inbound = sm.inbound.wrapping_add(1);
        }
    }

    /// Records a stanza of `bytes` bytes sent to the client. Returns `Some(<r/>)` when an
    /// acknowledgement should be requested now, and `Err` (what is unacknowledged) when too much
    /// is, in stanzas or in bytes.
    pub fn sent(&mut self, el: &Element, bytes: usize) -> Result<Option<Element>, Unacked> {
        let Some(sm) = self.on() else {
            return Ok(None);
        };
        if sm.unacked.len() >= MAX_UNACKED || sm.unacked_bytes + bytes > MAX_UNACKED_BYTES {
            return Err(Unacked {
                stanzas: sm.unacked.len(),
                bytes: sm.unacked_bytes,
            });
        }
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        sm.unacked_bytes += bytes as usize;
        sm.unacked.push_back((el.clone(), bytes));
        sm.since_request += 1;
        if sm.since_request >= REQUEST_EVERY {
            sm.since_request = 0;
            return Ok(Some(Element::new("r", ns::SM)));
        }
        Ok(None)
    }

    /// Keeps `el` with the unacknowledged stanzas without sending it (the session is closing
    /// over the limit): it goes back to the account with them.
    pub fn keep_unsent(&mut self, el: Element) {
        self.0
            .get_or_insert_with(Box::default)
            .unacked
            .push_back((el, 0));
    }

    /// The unacknowledged messages worth redelivering (with a body), in order; clears the queue.
    pub fn take_unacked_messages(&mut self) -> Vec<Element> {
        let Some(sm) = self.0.as_deref_mut() else {
            return Vec::new();
        };
        sm.unacked_bytes = 0;
        sm.unacked
            .drain(..)
            .map(|(e, _)| e)
            .filter(worth_redelivering)
            .collect()
    }

    pub fn unacked(&self) -> usize {
        self.0.as_ref().map_or(0, |sm| sm.unacked.len())
    }
}

/// A stanza worth handing back to the account when its session could not take it: a message
/// with a body that is not an error.
pub fn worth_redelivering(e: &Element) -> bool {
    e.name() == "message"
        && e.get_attr("type") != Some("error")
        && e.get_child("body", e.ns()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: u32) -> Element {
        Element::new("message", ns::CLIENT)
            .attr("to", "a@b/r")
            .child(Element::new("body", ns::CLIENT).text_node(format!("m{i}")))
    }

    #[test]
    fn enable_ack_and_redeliver() {
        let mut sm = StreamMgmt::default();
        // Before enabling nothing is tracked.
        assert_eq!(sm.sent(&msg(0), 100), Ok(None));
        assert_eq!(sm.unacked(), 0);
        let SmReply::Send(e) = sm.handle(&Element::new("enable", ns::SM), "s1") else {
            panic!()
        };
        assert!(e.is("enabled", ns::SM));
        assert!(e.get_attr("resume").is_none());
        // Four sent quietly, the fifth asks for an ack.
        for i in 0..4 {
            assert_eq!(sm.sent(&msg(i), 100), Ok(None));
        }
        let r = sm.sent(&Element::new("presence", ns::CLIENT), 100).unwrap();
        assert!(r.is_some_and(|r| r.is("r", ns::SM)));
        // The client acknowledges 2.
        assert_eq!(
            sm.handle(&Element::new("a", ns::SM).attr("h", "2"), "s1"),
            SmReply::Nothing
        );
        assert_eq!(sm.unacked(), 3);
        // Inbound counting answers <r/>.
        sm.received();
        sm.received();
        assert_eq!(
            sm.handle(&Element::new("r", ns::SM), "s1"),
            SmReply::Send(Element::new("a", ns::SM).attr("h", "2"))
        );
        // Only the unacknowledged messages with a body come back.
        let back = sm.take_unacked_messages();
        let bodies: Vec<String> = back
            .iter()
            .map(|m| m.get_child("body", ns::CLIENT).unwrap().text())
            .collect();
        assert_eq!(bodies, vec!["m2", "m3"]);
        assert_eq!(sm.unacked(), 0);
    }

    #[test]
    fn protocol_violations() {
        let mut sm = StreamMgmt::default();
        sm.handle(&Element::new("enable", ns::SM), "s");
        sm.sent(&msg(1), 100).unwrap();
        assert!(matches!(
            sm.handle(&Element::new("a", ns::SM).attr("h", "5"), "s"),
            SmReply::Violation(_)
        ));
        assert!(matches!(
            sm.handle(&Element::new("a", ns::SM), "s"),
            SmReply::Violation(_)
        ));
        // A second enable and a resume attempt fail politely.
        assert!(
            matches!(sm.handle(&Element::new("enable", ns::SM), "s"), SmReply::Send(e) if e.is("failed", ns::SM))
        );
        assert!(
            matches!(sm.handle(&Element::new("resume", ns::SM), "s"), SmReply::Send(e) if e.is("failed", ns::SM))
        );
    }

    #[test]
    fn unacknowledged_bytes_are_bounded() {
        let mut sm = StreamMgmt::default();
        sm.handle(&Element::new("enable", ns::SM), "s");
        let big = MAX_UNACKED_BYTES / 4;
        for i in 0..4 {
            assert!(sm.sent(&msg(i), big).is_ok());
        }
        let over = sm.sent(&msg(4), 1).unwrap_err();
        assert_eq!(
            over,
            Unacked {
                stanzas: 4,
                bytes: 4 * big
            }
        );
        // Acknowledging frees the bytes.
        let a = Element::new("a", ns::SM).attr("h", "2");
        assert_eq!(sm.handle(&a, "s"), SmReply::Nothing);
        assert!(sm.sent(&msg(5), big).is_ok());
        // What could not be sent goes back to the account with the rest.
        sm.keep_unsent(msg(6));
        assert_eq!(sm.take_unacked_messages().len(), 4);
    }
}
