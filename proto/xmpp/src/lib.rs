//! Sans-io XMPP for Herald: no sockets, no runtime, no clock. Bytes and events in, decisions and
//! bytes out, so that STARTTLS, stream restarts and limits are all testable without I/O.
//!
//! - [`jid`]: JIDs and their normalisation.
//! - [`element`]: the element tree stanzas are made of, and its serializer.
//! - [`codec`]: the bounded incremental stream decoder (stream header, stanzas, close,
//!   whitespace keepalives) and stream header encoding.
//! - [`error`]: stream errors and stanza errors, as the RFC lists them.
//! - [`stanza`]: typed views of message, presence and iq.
//! - [`sasl`]: SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN, server side.
//! - [`c2s`]: the client-to-server stream negotiation state machine (STARTTLS, SASL, bind).
//! - [`s2s`]: server-to-server pieces: dialback keys and elements, features, headers.
//! - [`ns`]: namespace names.

pub mod c2s;
pub mod codec;
pub mod element;
pub mod error;
pub mod jid;
pub mod ns;
pub mod s2s;
pub mod sasl;
pub mod stanza;

pub use codec::{Decoder, Limits, StreamEvent, StreamHeader};
pub use element::{Element, Node};
pub use error::{StanzaError, StreamError};
pub use jid::Jid;
