//! Metric names of the SIP edge. Labels name directions, methods, statuses and reasons, never a
//! SIP address; the peer and its domain are in the logs.

/// Gauge, labels `direction` (inbound, outbound) and `transport` (tcp, tls): open SIP
/// connections (TLS ones once the handshake and the peer check passed).
pub const CONNECTIONS: &str = "herald_sip_connections";
/// Counter, labels `direction` and `transport`: SIP connections opened (accepted, or connected
/// to a next hop), TLS ones once admitted.
pub const CONNECTIONS_OPENED: &str = "herald_sip_connections_opened_total";
/// Counter, labels `direction` and `reason`: SIP TLS connections that failed before any SIP
/// (bad_certificate: untrusted or invalid chain; no_certificate: tls-peer entries exist and the
/// peer showed none; tls_peer: its names match no tls-peer entry; not_tls: plain text on the
/// TLS port; tls_alert_received, tls_handshake, tls_timeout, tls_unavailable). Each is also
/// counted in [`FAILURES`] with the same reason.
pub const TLS_FAILURES: &str = "herald_sip_tls_failures_total";
/// Counter, labels `direction`, `method` and `status` (the final status code sent or received).
pub const REQUESTS: &str = "herald_sip_requests_total";
/// Counter, labels `direction` and `reason`: inbound requests refused (domain_not_federated,
/// acl, not_local_domain, no_user, media_type, method, malformed, decode, not_routing_node,
/// too_many_connections, relay_connect (the routing node's listener could not be reached: the
/// connection is served here, i.e. answered 503), proxy_not_member (a PROXY protocol header from
/// a source that is not a cluster member), proxy_header (a malformed or late PROXY header),
/// stray_response, shutting_down, and the TLS reasons of [`TLS_FAILURES`]) and outbound messages that failed
/// (not_local_sender, no_route (no static route and no SRV record), dns (the SRV lookup failed),
/// transport, queue_full, link_closed, connect, write, closed, timeout, response,
/// shutdown, decode, and the TLS reasons of [`TLS_FAILURES`] for handshakes with a next hop).
pub const FAILURES: &str = "herald_sip_failures_total";
/// Counter, label `transport` (tcp, tls): SIP connections this node (not the routing node)
/// relayed to the routing node.
pub const RELAYED: &str = "herald_sip_relayed_connections_total";
/// Gauge, label `transport`: relays to the routing node open now.
pub const RELAYS: &str = "herald_sip_relays";
/// Counter, label `direction`: instant messages that crossed the edge.
pub const MESSAGES: &str = "herald_sip_messages_total";
/// Counter, label `condition`: XMPP stanzas for SIP domains answered with an error.
pub const BOUNCED: &str = "herald_sip_bounced_total";
/// Counter, label `reason`: XMPP stanzas for SIP domains this edge does not carry (presence,
/// bodiless messages such as chat states, errors).
pub const NOT_CARRIED: &str = "herald_sip_not_carried_total";

/// Gauge, labels `direction` (inbound: SIP watchers of local users; outbound: local users
/// watching SIP users) and `state`: presence subscriptions held by the routing node.
pub const SUBSCRIPTIONS: &str = "herald_sip_subscriptions";
/// Gauge: IM sessions (session mode, INVITE dialogs) open on this node (the routing node).
pub const SESSIONS: &str = "herald_sip_im_sessions";
/// Counter, label `method`: SUBSCRIBE and NOTIFY requests this node sent.
pub const PRESENCE_REQUESTS: &str = "herald_sip_presence_requests_total";
/// Counter, label `kind`: items forwarded to the routing node over the node-to-node stream.
pub const FORWARDED: &str = "herald_sip_forwarded_total";

/// Counter, label `result` (found, none, error): DNS SRV lookups for SIP domains
/// (`_sipfederationtls._tcp`, then `_sip._tls`).
pub const DNS_LOOKUPS: &str = "herald_sip_dns_lookups_total";

/// Counter: chat messages sent in page mode because their pair's IM session (INVITE) was
/// refused, timed out or could not wait.
pub const PAGE_MODE_FALLBACKS: &str = "herald_sip_page_mode_fallbacks_total";

/// Histogram, label `leg`: how long SIP traffic spent between cluster nodes. `to_routing_node`:
/// a local user's stanza for a SIP domain, from its hand-off on the sender's home node to its
/// arrival at the routing node (node-to-node stream; wall clocks of both nodes, clamped at 0);
/// `to_sip_answer`: from that hand-off until the SIP peer's final answer to the MESSAGE reached
/// the routing node (home node → routing node → peer → back). Not observed when the home node
/// is the routing node.
pub const FORWARD_SECONDS: &str = "herald_sip_forward_seconds";
/// Counter, label `reason` (unknown_node, queue_full: the node-to-node queue refused it;
/// not_routing_node: presence that arrived at a node that no longer holds the role, dropped):
/// SIP traffic that could not be forwarded between nodes.
pub const FORWARD_FAILURES: &str = "herald_sip_forward_failures_total";

/// The attribute a forwarded stanza carries between nodes: when the sender's home node handed
/// it to the routing node (Unix time in microseconds). Internal: removed from every stanza a
/// user sends, never read from anything else.
pub const STAMP_ATTR: &str = "herald-sip-forwarded-at";

/// Unix time now, in microseconds.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Observes `leg` of [`FORWARD_SECONDS`] for a stanza stamped by its home node, if it was.
pub fn forward_leg(stanza: &herald_xmpp::Element, leg: &'static str) {
    if let Some(at) = stanza
        .get_attr(STAMP_ATTR)
        .and_then(|v| v.parse::<u64>().ok())
    {
        let secs = now_micros().saturating_sub(at) as f64 / 1e6;
        metrics::histogram!(FORWARD_SECONDS, "leg" => leg).record(secs);
    }
}

/// Counter: chat messages sent again by the domain's next route (backup static route, next SRV
/// target) after their next hop could not be reached.
pub const REROUTED: &str = "herald_sip_rerouted_total";

pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    metrics::describe_histogram!(
        FORWARD_SECONDS,
        metrics::Unit::Seconds,
        "Time SIP traffic spent between the sender's home node and the routing node, by leg"
    );
    describe_counter!(
        FORWARD_FAILURES,
        "SIP traffic that could not be forwarded between nodes, by reason"
    );
    describe_counter!(
        REROUTED,
        "Chat messages sent again by the next route after their next hop was unreachable"
    );
    describe_counter!(
        PAGE_MODE_FALLBACKS,
        "Chat messages sent in page mode after their IM session was refused"
    );
    describe_counter!(
        DNS_LOOKUPS,
        "DNS SRV lookups for SIP federated domains, by result"
    );
    describe_gauge!(
        CONNECTIONS,
        "Open SIP connections on this node, by direction and transport"
    );
    describe_counter!(
        CONNECTIONS_OPENED,
        "SIP connections opened, by direction and transport"
    );
    describe_counter!(
        TLS_FAILURES,
        "SIP TLS connections refused or failed before any SIP, by direction and reason"
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
        RELAYED,
        "SIP connections relayed to the routing node, by transport"
    );
    describe_gauge!(
        RELAYS,
        "Open relays of SIP connections to the routing node, by transport"
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
    describe_gauge!(
        SUBSCRIPTIONS,
        "SIP presence subscriptions held by this node (the routing node), by direction and state"
    );
    describe_gauge!(
        SESSIONS,
        "SIP IM sessions (INVITE dialogs, session mode) open on this node"
    );
    describe_counter!(
        PRESENCE_REQUESTS,
        "SIP SUBSCRIBE and NOTIFY requests sent, by method"
    );
    describe_counter!(
        FORWARDED,
        "Items forwarded to the SIP routing node over the node-to-node stream, by kind"
    );
    for d in ["inbound", "outbound"] {
        for t in ["tcp", "tls"] {
            metrics::gauge!(CONNECTIONS, "direction" => d, "transport" => t).set(0.0);
            metrics::counter!(CONNECTIONS_OPENED, "direction" => d, "transport" => t).absolute(0);
        }
        metrics::counter!(MESSAGES, "direction" => d).absolute(0);
    }
    for t in ["tcp", "tls"] {
        metrics::counter!(RELAYED, "transport" => t).absolute(0);
        metrics::gauge!(RELAYS, "transport" => t).set(0.0);
    }
}

pub fn connection_opened(direction: &'static str, transport: &'static str) {
    metrics::gauge!(CONNECTIONS, "direction" => direction, "transport" => transport).increment(1.0);
    metrics::counter!(CONNECTIONS_OPENED, "direction" => direction, "transport" => transport)
        .increment(1);
}

pub fn connection_closed(direction: &'static str, transport: &'static str) {
    metrics::gauge!(CONNECTIONS, "direction" => direction, "transport" => transport).decrement(1.0);
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
