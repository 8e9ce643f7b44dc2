//! Metric names of the XMPP layer (no JIDs in labels).

/// Gauge, label `state`: negotiating, established.
pub const SESSIONS: &str = "herald_c2s_sessions";
/// Counter, labels `kind` (message, presence, iq, other) and `direction` (in, out).
pub const STANZAS: &str = "herald_stanzas_total";
/// Counter, label `result`: success, failure.
pub const AUTH: &str = "herald_c2s_auth_total";
/// Counter, label `condition`: the stream error sent.
pub const STREAM_ERRORS: &str = "herald_c2s_stream_errors_total";
/// Histogram: time to route a stanza to its user's actor (local or remote node).
pub const ROUTE_DURATION: &str = "herald_route_duration_seconds";
/// Counter, label `mailbox`: stanzas dropped because an actor's mailbox was full.
pub const MAILBOX_DROPS: &str = "herald_mailbox_drops_total";
pub const HANDED_BACK: &str = "herald_im_handed_back_total";
pub const BATCH_INPUTS: &str = "herald_user_write_batch_inputs";
/// Gauge: user actors on this node.
pub const USER_ACTORS: &str = "herald_user_actors";
/// Counter, label `limit`: connections, connections_per_source, stanza_rate, byte_rate,
/// login_failures_source, login_failures_account.
pub const LIMIT_HITS: &str = "herald_c2s_limit_hits_total";
/// Counter: user actors stopped here because placement moved their user to another node.
pub const USERS_REHOMED: &str = "herald_users_rehomed_total";
/// Counter, label `result`: ok, conflict, error.
pub const PERSISTS: &str = "herald_user_state_writes_total";
/// Counter: inputs a user actor held until its node could serve the user (lease, hand-over).
pub const HELD_INPUTS: &str = "herald_user_inputs_held_total";
/// Counter: held inputs refused after waiting too long for the right to serve.
pub const HELD_GIVEN_UP: &str = "herald_user_inputs_refused_total";
/// Counter: inputs handed to the user's home on another node by a node that is not it.
pub const HANDED_OVER: &str = "herald_user_inputs_handed_over_total";
/// Counter: messages a user handled once though they arrived twice (same XEP-0359 stanza id:
/// an item handed on again after a node-to-node stream broke).
pub const DUPLICATES: &str = "herald_im_duplicates_dropped_total";

/// Histogram: recipients of one presence broadcast (a user's watchers).
pub const BROADCAST_RECIPIENTS: &str = "herald_presence_broadcast_recipients";

/// Histogram: recipients of one batch of a broadcast handed on at once, by `path`: `node`
/// (users homed on another node), `s2s` (one XMPP federated domain), `sip` (one SIP domain).
pub const BATCH_RECIPIENTS: &str = "herald_presence_batch_recipients";

pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(SESSIONS, "Client sessions on this node, by state");
    describe_histogram!(
        BATCH_RECIPIENTS,
        "Recipients of one presence batch handed on at once (path: node, s2s, sip): the stanza \
         is sent, encoded and mapped once per batch"
    );
    describe_counter!(STANZAS, "Client stanzas, by kind and direction");
    describe_counter!(
        DUPLICATES,
        "Messages that arrived twice between nodes (same stanza id) and were handled once"
    );
    describe_counter!(AUTH, "SASL authentication attempts, by result");
    describe_counter!(STREAM_ERRORS, "Stream errors sent to clients, by condition");
    describe_histogram!(
        ROUTE_DURATION,
        Unit::Seconds,
        "Time from a session receiving a stanza to handing it to the user's actor"
    );
    describe_counter!(MAILBOX_DROPS, "Stanzas dropped on a full actor mailbox");
    describe_histogram!(
        BATCH_INPUTS,
        "Inputs a user actor handled per group commit (one durable write, effects after it)"
    );
    describe_counter!(
        HANDED_BACK,
        "Messages for a client session that stopped before writing them, handed back to the account (another resource or offline storage)"
    );
    describe_gauge!(USER_ACTORS, "User actors living on this node");
    describe_histogram!(
        BROADCAST_RECIPIENTS,
        "Contacts one presence broadcast went to (routed once, encoded once for all of them)"
    );
    describe_counter!(
        LIMIT_HITS,
        "Client limits enforced (connection refused, session slowed or cut, login delayed), by limit"
    );
    // Exported from the start (at 0), so that a scrape can tell "none" from "not exported"
    // (and alerts on increase() see the first drop or failure).
    metrics::counter!(USERS_REHOMED).absolute(0);
    metrics::counter!(HANDED_BACK).absolute(0);
    for mailbox in ["registry", "user", "socket"] {
        metrics::counter!(MAILBOX_DROPS, "mailbox" => mailbox).absolute(0);
    }
    // A full client-session mailbox closes the session; it drops nothing (`deliver.rs`).
    metrics::counter!(LIMIT_HITS, "limit" => "session_queue").absolute(0);
    for result in ["success", "failure"] {
        metrics::counter!(AUTH, "result" => result).absolute(0);
    }
    describe_counter!(
        USERS_REHOMED,
        "User actors stopped on this node because their user's home moved to another node"
    );
    describe_counter!(PERSISTS, "Writes of per-user durable state, by result");
    describe_counter!(
        HELD_INPUTS,
        "Inputs a user actor held until this node could serve the user (no placement lease yet, or a hand-over from the previous home)"
    );
    describe_counter!(
        HELD_GIVEN_UP,
        "Held inputs refused because this node could not serve the user for 30 s"
    );
    describe_counter!(
        HANDED_OVER,
        "Inputs for a user homed elsewhere in the placement view, handed to that node"
    );
    for c in [HELD_INPUTS, HELD_GIVEN_UP, HANDED_OVER] {
        metrics::counter!(c).absolute(0);
    }
}

/// Counts a stanza written to a client ([`STANZAS`], direction out). The presence counter is
/// looked up once (it is counted per watcher of every status change); the recorder is
/// installed before any session exists.
pub fn stanza_out(name: &str) {
    static PRESENCE: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    match kind(name) {
        "presence" => PRESENCE
            .get_or_init(|| metrics::counter!(STANZAS, "kind" => "presence", "direction" => "out"))
            .increment(1),
        k => metrics::counter!(STANZAS, "kind" => k, "direction" => "out").increment(1),
    }
}

/// The `kind` label of a stanza.
pub fn kind(name: &str) -> &'static str {
    match name {
        "message" => "message",
        "presence" => "presence",
        "iq" => "iq",
        _ => "other",
    }
}
