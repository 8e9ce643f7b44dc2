//! Metric names of XMPP federation (s2s). Labels name directions, methods and reasons, never a
//! JID; the remote domain is in the logs.

/// Gauge, labels `direction` (inbound, outbound) and `state` (negotiating, established).
pub const CONNECTIONS: &str = "herald_s2s_connections";
/// Counter, labels `direction` and `method` (sasl_external, dialback, dialback_cert) and
/// `result` (ok, failed).
pub const AUTH: &str = "herald_s2s_auth_total";
/// Counter, label `direction` (inbound, outbound): stanzas that crossed the edge.
pub const STANZAS: &str = "herald_s2s_stanzas_total";
/// Counter, labels `direction` and `reason` (dns, connect, tls, auth, dialback, policy, timeout,
/// stream, disabled).
pub const FAILURES: &str = "herald_s2s_failures_total";
/// Counter, label `condition`: stanzas answered with an error instead of being sent.
pub const BOUNCED: &str = "herald_s2s_bounced_total";
/// Counter: stanzas handed to another federation-enabled node to send.
pub const FORWARDED: &str = "herald_s2s_forwarded_total";
/// Counter, label `direction`: presences rewritten for (or from) a generic XMPP server by the
/// availability model (Herald's extension removed, an undefined `<show/>` dropped).
pub const PRESENCE_REWRITTEN: &str = "herald_s2s_presence_rewritten_total";
/// Counter: inbound federated stanzas dropped because they were addressed to a user's JID while
/// the user federates by email address (EMAIL-4).
pub const EMAIL_DROPS: &str = "herald_s2s_email_drops_total";
/// Gauge: outbound links (one per local/remote domain pair) by `state` (idle, connecting, up,
/// backoff).
pub const LINKS: &str = "herald_s2s_links";

pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        CONNECTIONS,
        "Server-to-server streams on this node, by direction and state"
    );
    describe_counter!(
        AUTH,
        "Server-to-server authentications, by direction, method and result"
    );
    describe_counter!(
        STANZAS,
        "Stanzas that crossed the federation edge, by direction"
    );
    describe_counter!(FAILURES, "Federation failures, by direction and reason");
    describe_counter!(
        BOUNCED,
        "Outbound federated stanzas answered with an error, by condition"
    );
    describe_counter!(
        FORWARDED,
        "Outbound federated stanzas handed to another federation node"
    );
    describe_gauge!(LINKS, "Outbound federation links, by state");
    describe_counter!(
        PRESENCE_REWRITTEN,
        "Federated presences rewritten by the availability model, by direction"
    );
    for d in ["inbound", "outbound"] {
        for s in ["negotiating", "established"] {
            metrics::gauge!(CONNECTIONS, "direction" => d, "state" => s).set(0.0);
        }
        metrics::counter!(STANZAS, "direction" => d).absolute(0);
    }
    metrics::counter!(FORWARDED).absolute(0);
    metrics::counter!(EMAIL_DROPS).absolute(0);
    describe_counter!(
        EMAIL_DROPS,
        "Inbound federated stanzas dropped: addressed to the JID of a user who federates by email"
    );
}

/// Counts a failure.
pub fn failure(direction: &'static str, reason: &'static str) {
    metrics::counter!(FAILURES, "direction" => direction, "reason" => reason).increment(1);
}

/// Holds one unit of the connections gauge for its lifetime, moving between states.
pub struct ConnGauge {
    direction: &'static str,
    state: &'static str,
}

impl ConnGauge {
    pub fn new(direction: &'static str) -> ConnGauge {
        metrics::gauge!(CONNECTIONS, "direction" => direction, "state" => "negotiating")
            .increment(1.0);
        ConnGauge {
            direction,
            state: "negotiating",
        }
    }

    pub fn established(&mut self) {
        if self.state == "established" {
            return;
        }
        metrics::gauge!(CONNECTIONS, "direction" => self.direction, "state" => self.state)
            .decrement(1.0);
        self.state = "established";
        metrics::gauge!(CONNECTIONS, "direction" => self.direction, "state" => self.state)
            .increment(1.0);
    }
}

impl Drop for ConnGauge {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS, "direction" => self.direction, "state" => self.state)
            .decrement(1.0);
    }
}
