//! Config rules and their errors. Every message names the offending key.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::{NodeConfig, Secret, DEFAULT_CLUSTER_PORT};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file named by `--config` / `HERALD_CONFIG`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid toml or has an unknown key or a wrong type.
    #[error("invalid config file {}", path.display())]
    Parse {
        /// The file named by `--config` / `HERALD_CONFIG`.
        path: PathBuf,
        /// The toml error (names the key and line).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value breaks a rule.
    #[error("invalid `{key}`: {reason}")]
    Invalid {
        /// The toml key (flags and env vars are named after it).
        key: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Two listeners would bind the same port.
    #[error("`{first}` and `{second}` are both {port}; listener ports must be distinct (0 = any free port)")]
    PortClash {
        /// The first key.
        first: &'static str,
        /// The second key.
        second: &'static str,
        /// The shared port.
        port: u16,
    },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Whether `name` is a valid DNS host name: dot-separated labels of 1..=63 ASCII letters,
/// digits and hyphens, not starting or ending with a hyphen, 253 characters at most. A single
/// trailing dot is not allowed (names are compared without it).
pub fn is_dns_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// Parses a `join` value (`IP`, `[IPv6]`, `HOST`, `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`) into
/// `host:port`, with port 7470 when none is given.
pub fn parse_join(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("is empty".to_string());
    }
    if let Ok(addr) = value.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("`{value}` has port 0"));
        }
        return Ok(addr.to_string());
    }
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_CLUSTER_PORT).to_string());
    }
    if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        return match inner.parse::<IpAddr>() {
            Ok(ip @ IpAddr::V6(_)) => Ok(SocketAddr::new(ip, DEFAULT_CLUSTER_PORT).to_string()),
            _ => Err(format!("`{value}` is not an IPv6 address in brackets")),
        };
    }
    let (host, port) = match value.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{value}` has an invalid port `{port}`"))?;
            (host, port)
        }
        None => (value, DEFAULT_CLUSTER_PORT),
    };
    if !is_dns_name(host) {
        return Err(format!(
            "`{value}`: `{host}` is neither an IP address nor a valid host name"
        ));
    }
    Ok(format!("{host}:{port}"))
}

/// A token travels in a gRPC header (`authorization: Bearer …`, `x-herald-cluster-token`), so it
/// must be non-empty visible ASCII with no spaces; anything else is refused at start rather than
/// leaving a check that no client can pass (or, worse, one that is silently skipped).
pub(crate) fn check_secret(key: &'static str, secret: &Option<Secret>) -> Result<(), ConfigError> {
    let Some(s) = secret else { return Ok(()) };
    let v = s.expose();
    if v.trim().is_empty() {
        return Err(invalid(key, "is empty"));
    }
    if let Some(pos) = v.bytes().position(|b| !b.is_ascii_graphic()) {
        return Err(invalid(
            key,
            format!(
                "contains a character that cannot be sent in a header (byte {pos}: only visible ASCII, no spaces or control characters)"
            ),
        ));
    }
    if v.len() < 8 {
        return Err(invalid(key, "is shorter than 8 characters"));
    }
    Ok(())
}

impl NodeConfig {
    /// Checks every rule; the first broken one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "must be at least 1"));
        }
        if let Some(join) = &self.join {
            if self.bootstrap {
                return Err(invalid(
                    "join",
                    "cannot be combined with `bootstrap`: bootstrap starts a new cluster, join enters an existing one",
                ));
            }
            parse_join(join).map_err(|reason| invalid("join", reason))?;
        }
        self.validate_ports()?;
        self.validate_raft()?;
        self.validate_xmpp()?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid(
                if self.tls_cert.is_some() {
                    "tls_key"
                } else {
                    "tls_cert"
                },
                "tls_cert and tls_key must be set together (or neither, for development certificates)",
            ));
        }
        self.validate_domains()?;
        if !(1..=1_000_000).contains(&self.audit_keep) {
            return Err(invalid("audit_keep", "must be 1..=1000000"));
        }
        if !(1..=86_400).contains(&self.calendar_poll_seconds) {
            return Err(invalid("calendar_poll_seconds", "must be 1..=86400"));
        }
        if !(1..=300).contains(&self.calendar_timeout_seconds) {
            return Err(invalid("calendar_timeout_seconds", "must be 1..=300"));
        }
        if let Some(r) = &self.dns_resolver {
            parse_dns_resolver(r).map_err(|reason| invalid("dns_resolver", reason))?;
        }
        check_secret("admin_token", &self.admin_token)?;
        check_secret("cluster_token", &self.cluster_token)?;
        self.validate_cluster_tls()?;
        self.validate_exposure()?;
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log_level) {
            return Err(invalid(
                "log_level",
                format!("`{}` is not a log filter: {e}", self.log_level),
            ));
        }
        if self.max_grpc_message_bytes < 64 * 1024 {
            return Err(invalid(
                "max_grpc_message_bytes",
                "must be at least 65536 (64 KiB)",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "is empty"));
        }
        Ok(())
    }

    fn validate_ports(&self) -> Result<(), ConfigError> {
        let ports = [
            ("c2s_port", self.c2s_port),
            ("c2s_tls_port", self.c2s_tls_port),
            ("s2s_port", self.s2s_port),
            ("s2s_tls_port", self.s2s_tls_port),
            ("sip_port", self.sip_port),
            ("sip_tls_port", self.sip_tls_port),
            ("cluster_port", self.cluster_port),
            ("admin_port", self.admin_port),
            ("http_port", self.http_port),
        ];
        for (i, (first, a)) in ports.iter().enumerate() {
            for (second, b) in &ports[i + 1..] {
                if *a != 0 && a == b {
                    return Err(ConfigError::PortClash {
                        first,
                        second,
                        port: *a,
                    });
                }
            }
        }
        Ok(())
    }

    fn validate_xmpp(&self) -> Result<(), ConfigError> {
        let x = &self.xmpp;
        let checks: [(&str, usize, std::ops::RangeInclusive<usize>); 10] = [
            ("xmpp.max_stanza_bytes", x.max_stanza_bytes, 4096..=16 << 20),
            ("xmpp.max_depth", x.max_depth, 4..=256),
            ("xmpp.offline_max", x.offline_max, 0..=10_000),
            ("xmpp.roster_max", x.roster_max, 1..=10_000),
            ("xmpp.blocked_max", x.blocked_max, 1..=10_000),
            ("xmpp.max_user_bytes", x.max_user_bytes, 65_536..=64 << 20),
            ("xmpp.max_connections", x.max_connections, 1..=1_000_000),
            (
                "xmpp.max_connections_per_source",
                x.max_connections_per_source,
                1..=1_000_000,
            ),
            (
                "xmpp.max_stanzas_per_second",
                x.max_stanzas_per_second,
                1..=1_000_000,
            ),
            (
                "xmpp.max_bytes_per_second",
                x.max_bytes_per_second,
                1024..=1 << 30,
            ),
        ];
        for (key, value, range) in checks {
            if !range.contains(&value) {
                return Err(invalid(
                    key,
                    format!("{value} is not within {}..={}", range.start(), range.end()),
                ));
            }
        }
        Ok(())
    }

    fn validate_raft(&self) -> Result<(), ConfigError> {
        let raft = &self.raft;
        if !(10..=10_000).contains(&raft.tick_ms) {
            return Err(invalid("raft.tick_ms", "must be within 10..=10000"));
        }
        if raft.heartbeat_ticks == 0 {
            return Err(invalid("raft.heartbeat_ticks", "must be at least 1"));
        }
        if raft.heartbeat_ticks >= raft.election_ticks {
            return Err(invalid(
                "raft.heartbeat_ticks",
                format!(
                    "must be less than raft.election_ticks ({} >= {})",
                    raft.heartbeat_ticks, raft.election_ticks
                ),
            ));
        }
        if raft.snapshot_entries == 0 {
            return Err(invalid("raft.snapshot_entries", "must be at least 1"));
        }
        Ok(())
    }

    fn validate_domains(&self) -> Result<(), ConfigError> {
        if self.domains.is_empty() {
            return Err(invalid("domains", "needs at least one local domain"));
        }
        for (i, d) in self.domains.iter().enumerate() {
            if !is_dns_name(d) {
                return Err(invalid("domains", format!("`{d}` is not a valid DNS name")));
            }
            if self.domains[..i].iter().any(|o| o.eq_ignore_ascii_case(d)) {
                return Err(invalid("domains", format!("`{d}` is listed twice")));
            }
        }
        Ok(())
    }

    /// Rules for listening beyond loopback.
    fn validate_exposure(&self) -> Result<(), ConfigError> {
        if let Some(host) = &self.advertise_host {
            if host.parse::<IpAddr>().is_err() && !is_dns_name(host) {
                return Err(invalid(
                    "advertise_host",
                    format!("`{host}` is neither an IP address nor a valid host name (no port)"),
                ));
            }
        }
        if self.bind.is_loopback() {
            return Ok(());
        }
        if self.bind.is_unspecified() && self.advertise_host.is_none() {
            return Err(invalid(
                "advertise_host",
                format!(
                    "is required when bind is {}: other nodes need a reachable address",
                    self.bind
                ),
            ));
        }
        if self.admin_token.is_none() && self.admin_client_ca.is_none() {
            return Err(invalid(
                "admin_token",
                format!(
                    "bind {} is not loopback and the admin API is open on loopback only: set admin_token or admin_client_ca",
                    self.bind
                ),
            ));
        }
        if self.cluster_ca.is_none() {
            return Err(invalid(
                "cluster_ca",
                format!(
                    "bind {} is not loopback: node-to-node calls need mutual TLS; set cluster_ca with cluster_cert and cluster_key (or cluster_ca_key); cluster_token is an extra, not enough alone",
                    self.bind
                ),
            ));
        }
        Ok(())
    }

    fn validate_cluster_tls(&self) -> Result<(), ConfigError> {
        let has_pair = self.cluster_cert.is_some() && self.cluster_key.is_some();
        if self.cluster_cert.is_some() != self.cluster_key.is_some() {
            return Err(invalid(
                if self.cluster_cert.is_some() {
                    "cluster_key"
                } else {
                    "cluster_cert"
                },
                "cluster_cert and cluster_key must be set together",
            ));
        }
        match &self.cluster_ca {
            None if has_pair || self.cluster_ca_key.is_some() => Err(invalid(
                "cluster_ca",
                "cluster_cert, cluster_key and cluster_ca_key need cluster_ca (the CA that issued them)",
            )),
            Some(_) if !has_pair && self.cluster_ca_key.is_none() => Err(invalid(
                "cluster_cert",
                "cluster_ca needs this node's certificate: cluster_cert and cluster_key, or cluster_ca_key to issue one",
            )),
            _ => Ok(()),
        }
    }
}

/// Parses `IP` or `IP:PORT` (IPv6 as `[::1]:53` or bare `::1`); port 53 by default.
pub fn parse_dns_resolver(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<std::net::SocketAddr>() {
        return Ok(addr);
    }
    s.parse::<std::net::IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| format!("`{s}` is not IP or IP:PORT (a DNS server address)"))
}
