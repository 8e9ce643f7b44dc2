//! Sans-io SIP for Herald: no sockets, no runtime, no clock. Bytes and events in, messages,
//! decisions and bytes out; time is an argument (`now: Instant`), never read.
//!
//! Layout:
//! - [`uri`]: SIP URIs, other URIs, parameters, name-addr values.
//! - [`header`]: header names (compact forms) and the ordered header list.
//! - [`typed`]: typed views of the headers Herald uses (Via, From/To, CSeq, Event,
//!   Subscription-State, Content-Type, …).
//! - [`message`]: requests, responses, methods, status codes, serialization.
//! - [`codec`]: the bounded incremental stream decoder for TCP/TLS, with keep-alives.
//! - [`error`]: decoder errors with the SIP status each maps to.
//! - [`transaction`]: RFC 3261 §17 client and server transactions (INVITE and non-INVITE)
//!   for reliable transports, as pure state machines with timers as inputs and outputs.
//! - [`pidf`]: PIDF (RFC 3863) presence documents with RPID (RFC 4480) activities.
//!
//! Flow on a connection: the connection actor feeds read bytes to a [`Decoder`] and pulls
//! [`Frame`]s. A request is matched to a server transaction by
//! [`transaction::TransactionKey::for_request`] (or starts a new one,
//! [`transaction::ServerTransaction::new`]); a response is matched to a client transaction by
//! [`transaction::TransactionKey::for_response`]. Transactions return
//! [`transaction::Action`]s: messages to send (encode with [`Message::encode`]), messages for
//! the transaction user, timers to arm (the actor calls back `on_timer` when they fire), and
//! termination. A decoder error is answered with [`DecodeError::status`] /
//! [`DecodeError::reason`] (using [`Decoder::take_rejected`] and [`Response::for_request`])
//! and, when [`DecodeError::is_fatal`], the connection is closed.

pub mod codec;
pub mod error;
pub mod header;
pub mod message;
pub mod pidf;
pub mod transaction;
pub mod typed;
pub mod uri;

pub use codec::{validate, Decoder, Frame, Limits};
pub use error::DecodeError;
pub use header::{Header, HeaderName, Headers};
pub use message::{default_reason, Message, Method, Request, Response};
pub use typed::{
    CSeq, ContentType, Event, HeaderError, SubState, SubscriptionState, Via, MAGIC_COOKIE,
};
pub use uri::{NameAddr, Params, SipUri, Uri, UriError};

#[cfg(test)]
mod tests_typed;
