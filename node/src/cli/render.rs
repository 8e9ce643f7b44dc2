//! Rendering of replies: JSON (proto field names, short lower-case enum names, `revision`)
//! and aligned tables. Secrets never leave here unmasked: SCRAM secrets are not rendered at
//! all, and passwords and the dialback secret are masked.

use super::{Output, OutputFormat};
use herald_grpc::admin::{
    ClusterStatusReply, LogFilterReply, MembershipReply, ReloadCertsReply, WriteReply,
};
use herald_grpc::config::{
    config_object::Body, AclPatternKind, CalendarAuthMethod, CalendarKind, ConfigObject,
    Management, PolicyAction, PolicyDirection, PolicyException, RouteType, SipIntegrationType,
    Transport, XmppSecurityMode,
};
use serde_json::{json, Map, Value};

/// What a set secret is shown as.
pub const MASK: &str = "********";

/// Characters of the config digest shown in table mode.
const DIGEST_CHARS: usize = 12;

/// A minimal aligned-column table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Column titles.
    pub headers: Vec<String>,
    /// Rows of cells (shorter rows are padded with empty cells).
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<S: AsRef<str>>(headers: &[S]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.as_ref().to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Columns separated by two spaces, padded to the widest cell, no trailing blanks.
    pub fn render(&self) -> String {
        let cols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain(std::iter::once(self.headers.len()))
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; cols];
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = width.saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Lower-case short name of a proto enum value: `SIP_INTEGRATION_TYPE_GENERIC_SIP` with prefix
/// `SIP_INTEGRATION_TYPE_` gives `generic_sip`; unknown numbers give `unknown(N)`.
fn short(name: Option<&str>, prefix: &str, raw: i32) -> Value {
    match name {
        Some(n) => Value::String(n.trim_start_matches(prefix).to_ascii_lowercase()),
        None => Value::String(format!("unknown({raw})")),
    }
}

macro_rules! enum_value {
    ($ty:ty, $raw:expr, $prefix:literal) => {{
        let raw: i32 = $raw;
        short(
            <$ty>::try_from(raw).ok().map(|v| v.as_str_name()),
            $prefix,
            raw,
        )
    }};
}

fn masked(secret: &str) -> Value {
    Value::String(if secret.is_empty() { "" } else { MASK }.to_string())
}

fn exception_json(e: &PolicyException) -> Value {
    json!({
        "domain_pattern": e.domain_pattern,
        "direction": enum_value!(PolicyDirection, e.direction, "POLICY_DIRECTION_"),
        "description": e.description,
    })
}

/// The fields of an object in display order, `revision` last. `home_node` is added for users
/// when the reply carried it.
pub fn fields(object: &ConfigObject, home_node: Option<u64>) -> Vec<(&'static str, Value)> {
    let mut f: Vec<(&'static str, Value)> = match &object.body {
        None => Vec::new(),
        Some(Body::Domain(d)) => vec![
            ("name", json!(d.name)),
            ("description", json!(d.description)),
            ("user_count", json!(d.user_count)),
        ],
        Some(Body::User(u)) => {
            let mut v = vec![
                ("jid", json!(u.jid)),
                ("mail_id", json!(u.mail_id)),
                ("calendar_enabled", json!(u.calendar_enabled)),
                ("calendar_mailbox", json!(u.calendar_mailbox)),
                ("calendar_gateway", json!(u.calendar_gateway)),
                ("pinned_home_node", json!(u.pinned_home_node)),
            ];
            if let Some(h) = home_node {
                v.push(("home_node", json!(h)));
            }
            v
        }
        Some(Body::SipDomain(d)) => vec![
            ("domain", json!(d.domain)),
            ("description", json!(d.description)),
            (
                "integration_type",
                enum_value!(
                    SipIntegrationType,
                    d.integration_type,
                    "SIP_INTEGRATION_TYPE_"
                ),
            ),
            ("direct_federation", json!(d.direct_federation)),
            ("incoming_acl_id", json!(d.incoming_acl_id)),
        ],
        Some(Body::Acl(a)) => vec![
            ("id", json!(a.id)),
            ("description", json!(a.description)),
            (
                "pattern_kind",
                enum_value!(AclPatternKind, a.pattern_kind, "ACL_PATTERN_KIND_"),
            ),
            ("pattern", json!(a.pattern)),
            ("owner_federated_domain", json!(a.owner_federated_domain)),
        ],
        Some(Body::StaticRoute(r)) => vec![
            ("id", json!(r.id)),
            ("description", json!(r.description)),
            ("destination_pattern", json!(r.destination_pattern)),
            ("next_hop", json!(r.next_hop)),
            ("next_hop_port", json!(r.next_hop_port)),
            (
                "route_type",
                enum_value!(RouteType, r.route_type, "ROUTE_TYPE_"),
            ),
            (
                "transport",
                enum_value!(Transport, r.transport, "TRANSPORT_"),
            ),
            ("priority", json!(r.priority)),
            ("weight", json!(r.weight)),
            ("in_service", json!(r.in_service)),
            ("blocked", json!(r.blocked)),
        ],
        Some(Body::TlsPeer(p)) => vec![
            ("name", json!(p.name)),
            ("description", json!(p.description)),
        ],
        Some(Body::XmppFederation(s)) => vec![
            (
                "security_mode",
                enum_value!(XmppSecurityMode, s.security_mode, "XMPP_SECURITY_MODE_"),
            ),
            (
                "require_client_certificates",
                json!(s.require_client_certificates),
            ),
            ("sasl_external_inbound", json!(s.sasl_external_inbound)),
            ("sasl_outbound", json!(s.sasl_outbound)),
            ("dialback_secret", masked(&s.dialback_secret)),
            ("enabled_nodes", json!(s.enabled_nodes)),
        ],
        Some(Body::XmppPolicy(p)) => vec![
            (
                "default_action",
                enum_value!(PolicyAction, p.default_action, "POLICY_ACTION_"),
            ),
            (
                "exceptions",
                Value::Array(p.exceptions.iter().map(exception_json).collect()),
            ),
        ],
        Some(Body::EmailFederation(e)) => vec![("enabled", json!(e.enabled))],
        Some(Body::EmailDomain(d)) => vec![
            ("name", json!(d.name)),
            ("description", json!(d.description)),
            (
                "management",
                enum_value!(Management, d.management, "MANAGEMENT_"),
            ),
        ],
        Some(Body::RoutingNode(r)) => vec![("node_order", json!(r.node_order))],
        Some(Body::FederationRouting(f)) => vec![
            ("federation_routing_fqdn", json!(f.federation_routing_fqdn)),
            (
                "default_federation_routing_domain",
                json!(f.default_federation_routing_domain),
            ),
            ("virtual_ip_address", json!(f.virtual_ip_address)),
            ("server_name", json!(f.server_name)),
        ],
        Some(Body::CalendarGateway(g)) => vec![
            ("id", json!(g.id)),
            ("description", json!(g.description)),
            ("kind", enum_value!(CalendarKind, g.kind, "CALENDAR_KIND_")),
            ("host", json!(g.host)),
            ("port", json!(g.port)),
            ("path", json!(g.path)),
            ("eligible", json!(g.eligible)),
        ],
        Some(Body::CalendarCredentials(c)) => vec![
            ("kind", enum_value!(CalendarKind, c.kind, "CALENDAR_KIND_")),
            ("account_name", json!(c.account_name)),
            ("password", masked(&c.password)),
            (
                "auth_method",
                enum_value!(CalendarAuthMethod, c.auth_method, "CALENDAR_AUTH_METHOD_"),
            ),
            ("use_impersonation", json!(c.use_impersonation)),
        ],
        Some(Body::Node(n)) => vec![
            ("node_id", json!(n.node_id)),
            ("cluster_address", json!(n.cluster_address)),
            ("admin_address", json!(n.admin_address)),
        ],
        Some(Body::UserData(d)) => vec![
            ("jid", json!(d.jid)),
            ("roster_version", json!(d.roster_version)),
            (
                "roster",
                Value::Array(
                    d.roster
                        .iter()
                        .map(|i| {
                            json!({
                                "jid": i.jid, "name": i.name, "groups": i.groups,
                                "sub_to": i.sub_to, "sub_from": i.sub_from,
                                "pending_out": i.pending_out, "pending_in": i.pending_in,
                                "approved": i.approved, "in_roster": i.in_roster,
                            })
                        })
                        .collect(),
                ),
            ),
            ("blocked", json!(d.blocked)),
            ("offline_messages", json!(d.offline.len())),
            ("owner_node", json!(d.owner_node)),
            ("owner_epoch", json!(d.owner_epoch)),
            (
                "owners",
                Value::Array(
                    d.owners
                        .iter()
                        .map(|o| {
                            json!({"epoch": o.epoch, "node": o.node, "first_revision": o.first_revision})
                        })
                        .collect(),
                ),
            ),
        ],
        Some(Body::Placement(p)) => vec![
            ("epoch", json!(p.epoch)),
            ("nodes", json!(p.nodes)),
            ("reason", json!(p.reason)),
        ],
    };
    f.push(("revision", json!(object.revision)));
    f
}

/// An object as one flat JSON object.
pub fn object_json(object: &ConfigObject, home_node: Option<u64>) -> Value {
    let map: Map<String, Value> = fields(object, home_node)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Value::Object(map)
}

/// One table cell for a JSON value.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) if s.is_empty() => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(m) => match (m.get("domain_pattern"), m.get("direction")) {
            (Some(p), Some(d)) => format!("{}({})", cell(p), cell(d)),
            _ => v.to_string(),
        },
        other => other.to_string(),
    }
}

fn to_json_text(v: &Value) -> String {
    // Serializing a `Value` cannot fail; fall back to the compact form regardless.
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// `show`: JSON object, or a FIELD/VALUE table.
pub fn object(object: &ConfigObject, home_node: Option<u64>, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => to_json_text(&object_json(object, home_node)),
        OutputFormat::Table => {
            let mut t = Table::new(&["FIELD", "VALUE"]);
            for (k, v) in fields(object, home_node) {
                t.push(vec![k.to_string(), cell(&v)]);
            }
            t.render()
        }
    }
}

/// `user show`: the user's fields, home node and live sessions (`full_jid` and `node` each).
pub fn user(
    object: &ConfigObject,
    home_node: u64,
    sessions: &[herald_grpc::admin::UserSession],
    owners: &[herald_grpc::config::OwnerRecord],
    format: OutputFormat,
) -> String {
    let list: Vec<Value> = sessions
        .iter()
        .map(|s| json!({"full_jid": s.full_jid, "node": s.node}))
        .collect();
    let owner_list: Vec<Value> = owners
        .iter()
        .map(|o| json!({"epoch": o.epoch, "node": o.node, "first_revision": o.first_revision}))
        .collect();
    match format {
        OutputFormat::Json => {
            let mut v = object_json(object, Some(home_node));
            if let Value::Object(m) = &mut v {
                m.insert("sessions".into(), Value::Array(list));
                m.insert("owners".into(), Value::Array(owner_list));
            }
            to_json_text(&v)
        }
        OutputFormat::Table => {
            let mut t = Table::new(&["FIELD", "VALUE"]);
            for (k, v) in fields(object, Some(home_node)) {
                t.push(vec![k.to_string(), cell(&v)]);
            }
            let joined: Vec<String> = sessions
                .iter()
                .map(|s| format!("{} (node {})", s.full_jid, s.node))
                .collect();
            t.push(vec![
                "sessions".into(),
                if joined.is_empty() {
                    "-".into()
                } else {
                    joined.join(", ")
                },
            ]);
            if !owners.is_empty() {
                let o: Vec<String> = owners
                    .iter()
                    .map(|o| format!("node {} (epoch {})", o.node, o.epoch))
                    .collect();
                t.push(vec!["owners".into(), o.join(", ")]);
            }
            t.render()
        }
    }
}

/// `list`: JSON array, or one row per object with the fields as columns.
pub fn list(objects: &[ConfigObject], format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => to_json_text(&Value::Array(
            objects.iter().map(|o| object_json(o, None)).collect(),
        )),
        OutputFormat::Table => {
            let Some(first) = objects.first() else {
                return String::new();
            };
            let headers: Vec<String> = fields(first, None)
                .iter()
                .map(|(k, _)| k.to_ascii_uppercase())
                .collect();
            let mut t = Table::new(&headers);
            for o in objects {
                t.push(fields(o, None).iter().map(|(_, v)| cell(v)).collect());
            }
            t.render()
        }
    }
}

/// `xmpp-policy exception list`: the policy's exceptions.
pub fn exceptions(object: &ConfigObject, format: OutputFormat) -> String {
    let list: &[PolicyException] = match &object.body {
        Some(Body::XmppPolicy(p)) => &p.exceptions,
        _ => &[],
    };
    match format {
        OutputFormat::Json => {
            to_json_text(&Value::Array(list.iter().map(exception_json).collect()))
        }
        OutputFormat::Table => {
            if list.is_empty() {
                return String::new();
            }
            let mut t = Table::new(&["DOMAIN_PATTERN", "DIRECTION", "DESCRIPTION"]);
            for e in list {
                let v = exception_json(e);
                t.push(
                    ["domain_pattern", "direction", "description"]
                        .iter()
                        .map(|k| cell(&v[*k]))
                        .collect(),
                );
            }
            t.render()
        }
    }
}

/// A write's result: `revision N` plus `warning: ...` lines on stderr, or
/// `{"revision": N, "warnings": [...]}`.
pub fn write(reply: &WriteReply, format: OutputFormat) -> Output {
    match format {
        OutputFormat::Json => Output {
            stdout: to_json_text(&json!({
                "revision": reply.revision,
                "warnings": reply.warnings,
            })),
            stderr: Vec::new(),
            failures: 0,
        },
        OutputFormat::Table => Output {
            stdout: format!("revision {}\n", reply.revision),
            stderr: reply
                .warnings
                .iter()
                .map(|w| format!("warning: {w}"))
                .collect(),
            failures: 0,
        },
    }
}

/// `log show` / `log set`: the filter of each node asked, or why a node could not be asked.
/// A node that refused or did not answer counts as a failure (non-zero exit status).
pub fn log_filters(reply: &LogFilterReply, format: OutputFormat) -> Output {
    let failures = reply.nodes.iter().filter(|n| !n.error.is_empty()).count();
    let stdout = match format {
        OutputFormat::Json => to_json_text(&Value::Array(
            reply
                .nodes
                .iter()
                .map(|n| json!({"node_id": n.node_id, "filter": n.filter, "error": n.error}))
                .collect(),
        )),
        OutputFormat::Table => {
            let mut t = Table::new(&["NODE", "FILTER", "ERROR"]);
            for n in &reply.nodes {
                t.push(vec![
                    n.node_id.to_string(),
                    n.filter.clone(),
                    n.error.clone(),
                ]);
            }
            t.render()
        }
    };
    Output {
        stdout,
        stderr: Vec::new(),
        failures,
    }
}

/// `cluster reload-certs`: per node, how many certificates were re-read, which files failed,
/// and every certificate in force. A node that could not be asked, or a file that failed to
/// load, counts as a failure (non-zero exit status).
pub fn reloaded_certs(reply: &ReloadCertsReply, format: OutputFormat) -> Output {
    let failures = reply
        .nodes
        .iter()
        .map(|n| {
            usize::from(!n.error.is_empty()) + n.state.as_ref().map_or(0, |s| s.failures.len())
        })
        .sum();
    let expires = utc_iso;
    let stdout = match format {
        OutputFormat::Json => to_json_text(&Value::Array(
            reply
                .nodes
                .iter()
                .map(|n| {
                    let s = n.state.clone().unwrap_or_default();
                    json!({
                        "node_id": n.node_id,
                        "error": n.error,
                        "reloaded": s.reloaded,
                        "failures": s.failures,
                        "certificates": s.certificates.iter().map(|c| json!({
                            "name": c.name,
                            "path": c.path,
                            "dns_names": c.dns_names,
                            "not_after": expires(c.not_after_unix),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )),
        OutputFormat::Table => {
            let mut t = Table::new(&["NODE", "CERTIFICATE", "NAMES", "EXPIRES", "FILE"]);
            let mut notes = String::new();
            for n in &reply.nodes {
                if !n.error.is_empty() {
                    notes.push_str(&format!("node {}: not reloaded: {}\n", n.node_id, n.error));
                    continue;
                }
                let s = n.state.clone().unwrap_or_default();
                notes.push_str(&format!(
                    "node {}: {} certificate(s) re-read\n",
                    n.node_id, s.reloaded
                ));
                for f in &s.failures {
                    notes.push_str(&format!("node {}: failed: {f}\n", n.node_id));
                }
                for c in &s.certificates {
                    t.push(vec![
                        n.node_id.to_string(),
                        c.name.clone(),
                        c.dns_names.join(","),
                        expires(c.not_after_unix),
                        if c.path.is_empty() {
                            "(development CA)".to_string()
                        } else {
                            c.path.clone()
                        },
                    ]);
                }
            }
            format!("{}{notes}", t.render())
        }
    };
    Output {
        stdout,
        stderr: Vec::new(),
        failures,
    }
}

/// `cluster add-node` / `remove-node`: the voters after the change.
pub fn voters(reply: &MembershipReply, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => to_json_text(&json!({ "voters": reply.voters })),
        OutputFormat::Table => {
            let ids: Vec<String> = reply.voters.iter().map(u64::to_string).collect();
            format!("voters: {}\n", ids.join(", "))
        }
    }
}

/// `cluster status`.
pub fn cluster_status(reply: &ClusterStatusReply, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => {
            let nodes: Vec<Value> = reply
                .nodes
                .iter()
                .map(|n| {
                    json!({
                        "id": n.id,
                        "address": n.address,
                        "role": n.role,
                        "membership": n.membership,
                        "applied_index": n.applied_index,
                        "commit_index": n.commit_index,
                        "term": n.term,
                        "config_digest": n.config_digest,
                        "admin_address": n.admin_address,
                        "placement_epoch": n.placement_epoch,
                        "users_group": {
                            "role": n.users_role,
                            "applied_index": n.users_applied_index,
                            "digest": n.users_digest,
                        },
                    })
                })
                .collect();
            to_json_text(&json!({
                "leader_id": reply.leader_id,
                "digests_agree": reply.digests_agree,
                "users_leader_id": reply.users_leader_id,
                "users_digests_agree": reply.users_digests_agree,
                "nodes": nodes,
                "placement": {
                    "epoch": reply.placement_epoch,
                    "nodes": reply.placement_nodes,
                    "reason": reply.placement_reason,
                },
            }))
        }
        OutputFormat::Table => {
            let mut t = Table::new(&[
                "ID",
                "ADDRESS",
                "ROLE",
                "MEMBER",
                "APPLIED_INDEX",
                "TERM",
                "CONFIG_DIGEST",
            ]);
            for n in &reply.nodes {
                t.push(vec![
                    n.id.to_string(),
                    n.address.clone(),
                    n.role.clone(),
                    n.membership.clone(),
                    n.applied_index.to_string(),
                    n.term.to_string(),
                    n.config_digest.chars().take(DIGEST_CHARS).collect(),
                ]);
            }
            let leader = match reply.leader_id {
                0 => "none".to_string(),
                id => id.to_string(),
            };
            let agree = if reply.digests_agree { "yes" } else { "no" };
            let nodes: Vec<String> = reply.placement_nodes.iter().map(u64::to_string).collect();
            let mut placement = format!(
                "placement: epoch {} on nodes [{}]",
                reply.placement_epoch,
                nodes.join(", ")
            );
            if !reply.placement_reason.is_empty() {
                placement.push_str(&format!(" ({})", reply.placement_reason));
            }
            let users_leader = match reply.users_leader_id {
                0 => "none".to_string(),
                id => id.to_string(),
            };
            let users_agree = if reply.users_digests_agree {
                "yes"
            } else {
                "no"
            };
            format!(
                "{}leader: {leader}\ndigests agree: {agree}\n{placement}\n\
                 user-state group: leader {users_leader}, digests agree: {users_agree}\n",
                t.render()
            )
        }
    }
}

/// `calendar-gateway status`.
pub fn calendar_status(
    reply: &herald_grpc::admin::CalendarGatewayStatusReply,
    format: OutputFormat,
) -> String {
    let when = |t: i64| if t == 0 { String::new() } else { utc_iso(t) };
    match format {
        OutputFormat::Json => {
            let gateways: Vec<Value> = reply
                .gateways
                .iter()
                .map(|g| {
                    json!({
                        "id": g.id,
                        "kind": g.kind,
                        "host": g.host,
                        "port": g.port,
                        "supported": g.supported,
                        "reachable": g.reachable,
                        "certificate_ok": g.certificate_ok,
                        "authenticated": g.authenticated,
                        "users_assigned": g.users_assigned,
                        "users_polled_here": g.users_polled_here,
                        "last_error": g.last_error,
                        "last_error_at": g.last_error_at,
                        "last_check_at": g.last_check_at,
                    })
                })
                .collect();
            to_json_text(&json!({ "node_id": reply.node_id, "gateways": gateways }))
        }
        OutputFormat::Table => {
            let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
            let mut t = Table::new(&[
                "ID",
                "KIND",
                "HOST",
                "REACHABLE",
                "CERTIFICATE",
                "AUTHENTICATED",
                "USERS",
                "LAST_ERROR",
                "LAST_ERROR_AT",
            ]);
            for g in &reply.gateways {
                t.push(vec![
                    g.id.clone(),
                    g.kind.clone(),
                    format!("{}:{}", g.host, g.port),
                    yes(g.reachable),
                    yes(g.certificate_ok),
                    yes(g.authenticated),
                    g.users_assigned.to_string(),
                    g.last_error.clone(),
                    when(g.last_error_at),
                ]);
            }
            format!("{}node: {}\n", t.render(), reply.node_id)
        }
    }
}

/// `t` (seconds since the Unix epoch) as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn utc_iso(t: i64) -> String {
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = herald_federation::calendar::time::civil_from_days(t.div_euclid(86_400));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}
