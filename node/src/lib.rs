//! The `herald` node: composition root, admin API, admin CLI, metrics and health.
//!
//! - [`config`]: `herald agent` flags, `herald.toml`, `HERALD_*` variables, validated.
//! - [`agent`]: [`agent::run`] starts a node on bound listeners: cluster layer, node-to-node,
//!   admin and HTTP servers, readiness, graceful shutdown.
//! - [`admin`]: the admin gRPC service over the replicated store.
//! - [`cli`]: the admin client (`herald <object> <verb>`).
//! - [`tls`], [`telemetry`], [`metrics`], [`http`]: certificates, logs, Prometheus, health.
//! - [`log_filter`]: log levels per component, changed at run time (`herald log set`).
//! - [`local`]: this node's facts for the troubleshooter (`herald troubleshoot`).
//! - [`scram`]: salted SCRAM secrets, so that no password is ever stored.
//! - [`secrets`]: the key that seals secrets at rest, and the refusal of readable key files.
//! - [`xmpp`]: client sessions (c2s), user actors, routing within and between nodes.
//! - [`peers_dns`]: StatefulSet mode (node id from the pod's ordinal, join through the
//!   headless Service's names).
//! - [`s2s`], [`sip`]: the XMPP and SIP federation edges.
//! - [`im`]: RFC 6121 / XEP-0191 / XEP-0160 behaviour of one user, as pure logic.

pub mod admin;
pub mod agent;
pub mod calendar;
pub mod cli;
pub mod config;
pub mod http;
pub mod idle;
pub mod im;
pub mod local;
pub mod log_filter;
pub mod metrics;
pub mod peers_dns;
pub mod s2s;
pub mod scram;
pub mod secrets;
pub mod sip;
pub mod telemetry;
pub mod tls;
pub mod xmpp;
