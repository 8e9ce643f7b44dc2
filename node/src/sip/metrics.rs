//! Metric names of the SIP edge. Labels name directions, methods, statuses and reasons, never a
//! SIP address; the peer and its domain are in the logs.

/// Gauge, label `direction` (inbound, outbound): open SIP TCP connections.
pub const CONNECTIONS: &str = "herald_sip_connections";
/// Counter, labels `direction`, `method` and `status` (the final status code sent or received).
pub const REQUESTS: &str = "herald_sip_requests_total";
/// Counter, labels `direction` and `reason`: inbound requests refused (domain_not_federated,
/// acl, not_local_domain, no_user, media_type, method, malformed, decode, not_routing_node,
/// too_many_connections, stray_response, shutting_down) and outbound messages that failed
/// (not_local_sender, no_route, transport, queue_full, link_closed, connect, write, closed, timeout, response,
/// shutdown, decode).
pub const FAILURES: &str = "herald_sip_failures_total";
/// Counter, label `direction`: instant messages that crossed the edge.
pub const MESSAGES: &str = "herald_sip_messages_total";
/// Counter, label `condition`: XMPP stanzas for SIP domains answered with an error.
pub const BOUNCED: &str = "herald_sip_bounced_total";
/// Counter, label `reason`: XMPP stanzas for SIP domains this edge does not carry (presence,
/// bodiless messages such as chat states, errors).
pub const NOT_CARRIED: &str = "herald_sip_not_carried_total";

pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        CONNECTIONS,
        "SIP TCP connections on this node, by direction"
    );
    describe_counter!(
        REQUESTS,
        "SIP requests answered (inbound) or answered to us (outbound), by method and final status"
    );
    describe_counter!(
        FAILURES,
        "SIP requests refused or failed, by direction and reason"
    );
    describe_counter!(
        MESSAGES,
        "Instant messages that crossed the SIP edge, by direction"
    );
    describe_counter!(
        BOUNCED,
        "XMPP stanzas for SIP domains answered with an error, by condition"
    );
    describe_counter!(
        NOT_CARRIED,
        "XMPP stanzas for SIP domains not carried over SIP, by reason"
    );
    for d in ["inbound", "outbound"] {
        metrics::gauge!(CONNECTIONS, "direction" => d).set(0.0);
        metrics::counter!(MESSAGES, "direction" => d).absolute(0);
    }
}

pub fn failure(direction: &'static str, reason: &'static str) {
    metrics::counter!(FAILURES, "direction" => direction, "reason" => reason).increment(1);
}

pub fn request(direction: &'static str, method: &str, status: u16) {
    metrics::counter!(
        REQUESTS,
        "direction" => direction,
        "method" => method_label(method),
        "status" => status.to_string()
    )
    .increment(1);
}

/// Known methods as themselves, anything else as `other` (bounded label values).
fn method_label(m: &str) -> &'static str {
    const KNOWN: [&str; 14] = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "MESSAGE",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "UPDATE",
        "PRACK",
    ];
    KNOWN.iter().find(|k| **k == m).copied().unwrap_or("other")
}
