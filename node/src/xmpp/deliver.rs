//! What a client session is handed to write, and what becomes of it when the session stops
//! before writing it.

use std::sync::Arc;

use actix::Message;
use herald_xmpp::Element;

use super::metrics as xm;
use super::Shared;
use crate::im::SharedStanza;

/// A stanza for the client. One that never reaches the handler (the session stopped with it
/// still queued in its mailbox, or the mailbox was already closed) goes back to the account
/// when it is dropped, if it is a message worth keeping (as if sent to the bare JID, RFC 6121
/// §8.5.3.2.1: another resource or offline storage): a session that ends never swallows what
/// was on its way to it. actix drops a stopped actor's queued messages unhandled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    stanza: Option<Element>,
    back: Option<Arc<dyn HandBack>>,
}

/// Where a message that a session never handled goes (the node's router, to the account).
pub trait HandBack: Send + Sync {
    fn hand_back(self: Arc<Self>, message: Element);
}

impl HandBack for Shared {
    fn hand_back(self: Arc<Self>, message: Element) {
        self.router().route(message);
    }
}

impl Deliver {
    /// A stanza handed back to its account through `back` if it is dropped unhandled (`None`:
    /// nothing to hand back, e.g. a reply the session writes itself).
    pub fn new(stanza: Element, back: Option<Arc<dyn HandBack>>) -> Self {
        Self {
            stanza: Some(stanza),
            back,
        }
    }

    /// The stanza, no longer handed back on drop (the caller takes charge of it).
    pub fn into_stanza(mut self) -> Element {
        self.back = None;
        self.stanza.take().unwrap_or_default()
    }
}

/// Stanzas that may wait in a client session's mailbox. A burst beyond the session's writing
/// speed (10,000 subscription requests and their roster pushes for one publisher) fits; a
/// session this far behind has a client that does not read, and is closed.
pub const SESSION_MAILBOX: usize = 8_192;

/// Tells a session that its mailbox overflowed: it closes with `resource-constraint`, and what
/// is still queued for it goes back to the account as it is dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Overloaded;

/// A shared stanza for the client, addressed to the session's bare JID (a contact's presence
/// broadcast, [`crate::im::Effect::ToSessionShared`]): written from the shared encoding with
/// the session's own `to`. Presence is not handed back when a session stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliverShared(pub Arc<SharedStanza>);

/// Queues `stanza` for the session at `addr`. A stopped session's message goes back to the
/// account through `back` (the `Deliver` is dropped unhandled). A full mailbox (a client that
/// does not read) loses nothing either: the stanza is queued past the bound behind an
/// [`Overloaded`], which closes the session; messages still queued then go back to the account
/// and pending subscription requests are sent again at the next sign-in (RFC 6121 §3.1.3).
pub fn to_session<A>(addr: &actix::Addr<A>, stanza: Element, back: Option<Arc<dyn HandBack>>)
where
    A: actix::Actor<Context = actix::Context<A>>
        + actix::Handler<Deliver>
        + actix::Handler<Overloaded>,
{
    queue(addr, Deliver::new(stanza, back));
}

/// [`to_session`] for a shared stanza.
pub fn to_session_shared<A>(addr: &actix::Addr<A>, stanza: Arc<SharedStanza>)
where
    A: actix::Actor<Context = actix::Context<A>>
        + actix::Handler<DeliverShared>
        + actix::Handler<Overloaded>,
{
    queue(addr, DeliverShared(stanza));
}

fn queue<A, M>(addr: &actix::Addr<A>, msg: M)
where
    A: actix::Actor<Context = actix::Context<A>> + actix::Handler<M> + actix::Handler<Overloaded>,
    M: Message<Result = ()> + Send + 'static,
{
    if let Err(actix::dev::SendError::Full(d)) = addr.try_send(msg) {
        metrics::counter!(xm::LIMIT_HITS, "limit" => "session_queue").increment(1);
        addr.do_send(Overloaded);
        // Queued whatever the bound (or handed back at once if the mailbox just closed).
        addr.do_send(d);
    }
}

impl Drop for Deliver {
    fn drop(&mut self) {
        let (Some(stanza), Some(back)) = (self.stanza.take(), self.back.take()) else {
            return;
        };
        if let Some(m) = super::users::for_the_account(stanza) {
            tracing::debug!(
                to = m.get_attr("to").unwrap_or(""),
                "message for a session that stopped handed back to the account"
            );
            metrics::counter!(xm::HANDED_BACK).increment(1);
            back.hand_back(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use actix::{Actor, ActorContext, Context, Handler};
    use herald_xmpp::ns;

    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Element>>);

    impl HandBack for Collect {
        fn hand_back(self: Arc<Self>, message: Element) {
            self.0.lock().unwrap().push(message);
        }
    }

    fn chat(i: u32) -> Element {
        Element::new("message", ns::CLIENT)
            .attr("to", "olga@h.test/phone")
            .attr("type", "chat")
            .child(Element::new("body", ns::CLIENT).text_node(format!("m{i}")))
    }

    /// Stops on its first message, like a session closing with a stream error; writes what it
    /// handles before that.
    struct Session {
        written: Arc<Mutex<Vec<Element>>>,
    }

    impl Actor for Session {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Kick;

    impl Handler<Kick> for Session {
        type Result = ();
        fn handle(&mut self, _: Kick, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }

    impl Handler<Deliver> for Session {
        type Result = ();
        fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
            self.written.lock().unwrap().push(msg.into_stanza());
        }
    }

    #[test]
    fn what_a_stopped_session_never_handled_goes_back_to_the_account() {
        let back = Arc::new(Collect::default());
        let written = Arc::new(Mutex::new(Vec::new()));
        let sys = actix::System::new();
        let (b, w) = (back.clone(), written.clone());
        sys.block_on(async move {
            let addr = Session { written: w }.start();
            let hb = || Some(b.clone() as Arc<dyn HandBack>);
            addr.do_send(Deliver::new(chat(0), hb()));
            addr.do_send(Kick);
            // Queued behind the stop: actix drops them unhandled.
            addr.do_send(Deliver::new(chat(1), hb()));
            addr.do_send(Deliver::new(chat(2), hb()));
            let presence = Element::new("presence", ns::CLIENT).attr("to", "olga@h.test/phone");
            addr.do_send(Deliver::new(presence, hb()));
            for _ in 0..100 {
                if !addr.connected() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            assert!(!addr.connected(), "the session did not stop");
            // Sent once the mailbox is closed: refused, handed back as the error is dropped.
            let refused = addr.try_send(Deliver::new(chat(3), hb()));
            assert!(refused.is_err());
        });
        let written: Vec<String> = written
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.get_child("body", ns::CLIENT).unwrap().text())
            .collect();
        assert_eq!(written, ["m0"]);
        let handed: Vec<(String, String)> = back
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e.get_attr("to").unwrap().to_string(),
                    e.get_child("body", ns::CLIENT).unwrap().text(),
                )
            })
            .collect();
        // Messages only (a presence is not kept), to the bare JID, in order, each once.
        let to = "olga@h.test".to_string();
        assert_eq!(
            handed,
            [
                (to.clone(), "m1".into()),
                (to.clone(), "m2".into()),
                (to, "m3".into())
            ]
        );
    }

    impl Handler<Overloaded> for Session {
        type Result = ();
        fn handle(&mut self, _: Overloaded, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }

    fn bodies(v: &[Element]) -> Vec<String> {
        v.iter()
            .map(|e| e.get_child("body", ns::CLIENT).unwrap().text())
            .collect()
    }

    #[test]
    fn a_full_session_mailbox_closes_the_session_and_loses_nothing() {
        let back = Arc::new(Collect::default());
        let written = Arc::new(Mutex::new(Vec::new()));
        let sys = actix::System::new();
        let (b, w) = (back.clone(), written.clone());
        sys.block_on(async move {
            let addr = Session::create(|ctx| {
                ctx.set_mailbox_capacity(2);
                Session { written: w }
            });
            // Ten at once, faster than the session handles them (it is not polled meanwhile).
            for i in 0..10 {
                to_session(&addr, chat(i), Some(b.clone() as Arc<dyn HandBack>));
            }
            for _ in 0..100 {
                if !addr.connected() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            assert!(!addr.connected(), "an overflowing session was not closed");
        });
        let written = bodies(&written.lock().unwrap());
        let handed = bodies(&back.0.lock().unwrap());
        assert!(!handed.is_empty(), "nothing overflowed: {written:?}");
        // Written first, the rest back to the account; each once, in order.
        let all: Vec<String> = written.iter().chain(handed.iter()).cloned().collect();
        let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn a_taken_or_unguarded_stanza_is_not_handed_back() {
        let back = Arc::new(Collect::default());
        let taken = Deliver::new(chat(0), Some(back.clone() as Arc<dyn HandBack>)).into_stanza();
        assert_eq!(taken.get_attr("to"), Some("olga@h.test/phone"));
        drop(Deliver::new(chat(1), None));
        assert!(back.0.lock().unwrap().is_empty());
    }
}
