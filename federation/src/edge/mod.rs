//! The machinery every federation edge shares (XMPP s2s today, SIP next), as pure functions and
//! sans-io state: which domains the policy lets through ([`policy`]), where a domain's servers
//! are ([`resolve`]: DNS SRV ordering, DNS itself stays behind the caller), and one outbound
//! queue per destination with its connection state and backoff ([`link`]); presence rewritten
//! for generic XMPP peers through the availability model ([`xmpp_presence`]).

pub mod link;
#[cfg(feature = "grpc")]
pub mod policy;
pub mod resolve;
pub mod xmpp_presence;
