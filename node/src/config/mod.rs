//! The node's one typed configuration.
//!
//! Precedence, lowest first: the built-in default ([`NodeConfig::default`], a single-node
//! cluster on 127.0.0.1), then `herald.toml` (`--config FILE` / `HERALD_CONFIG`), then the
//! `HERALD_*` environment variables, then command-line flags. clap resolves "flag over env"
//! inside [`AgentArgs`]; [`NodeConfig::load`] lays the toml file underneath and validates.
//!
//! Layout: this file holds the structs and accessors, `args.rs` the clap flags and how they
//! override the file, `validate.rs` the rules and [`ConfigError`].

mod args;
mod validate;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use args::AgentArgs;
pub use validate::{is_dns_name, parse_dns_resolver, parse_join, ConfigError};

/// Port of the node-to-node API when `join` names no port.
pub const DEFAULT_CLUSTER_PORT: u16 = 7470;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// A secret string (token): its `Debug` never shows the value, so configs can be logged.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself; use only where it is compared or sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Raft timing and log compaction (`[raft]` table of `herald.toml`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Length of one Raft tick in milliseconds (10..=10000).
    pub tick_ms: u64,
    /// Ticks without a heartbeat before a follower starts an election.
    pub election_ticks: usize,
    /// Ticks between leader heartbeats; must be less than `election_ticks`.
    pub heartbeat_ticks: usize,
    /// Compact the Raft log (snapshot) after this many applied entries.
    pub snapshot_entries: u64,
    /// Entries kept in the log behind each snapshot, so that a briefly lagging follower
    /// catches up from the log rather than by a snapshot.
    pub compaction_lag: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_entries: 1000,
            compaction_lag: 5000,
        }
    }
}

impl RaftConfig {
    /// The tick interval as a [`Duration`].
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }
}

/// Client (c2s) limits (`[xmpp]` table of `herald.toml`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct XmppConfig {
    /// Largest stanza a client may send, in bytes (4096..=16777216).
    pub max_stanza_bytes: usize,
    /// Deepest element nesting a client may send (4..=256).
    pub max_depth: usize,
    /// Offline messages kept per user (0..=10000); past it senders get service-unavailable.
    pub offline_max: usize,
    /// Roster items per user (1..=10000).
    pub roster_max: usize,
    /// Block-list entries per user (1..=10000).
    pub blocked_max: usize,
    /// Bytes of stored state per user: roster, block list and offline queue together, as
    /// encoded (65536..=67108864); a change past it is refused with resource-constraint.
    pub max_user_bytes: usize,
    /// Open client connections per listener (1..=1000000); past it new ones are closed at once.
    pub max_connections: usize,
    /// Open client connections per source address prefix (/32 IPv4, /64 IPv6) per listener
    /// (1..=1000000).
    pub max_connections_per_source: usize,
    /// Stanzas per second a session may send on average (1..=1000000), with bursts of twice
    /// that; faster senders are slowed down, and closed with policy-violation after 10 s over.
    pub max_stanzas_per_second: usize,
    /// Bytes per second a session may send on average (1024..=1073741824), shaped the same way.
    pub max_bytes_per_second: usize,
}

impl Default for XmppConfig {
    fn default() -> Self {
        XmppConfig {
            max_stanza_bytes: 262_144,
            max_depth: 32,
            offline_max: 100,
            roster_max: 1000,
            blocked_max: 1000,
            max_user_bytes: 1 << 20,
            max_connections: 100_000,
            max_connections_per_source: 5_000,
            max_stanzas_per_second: 2_000,
            max_bytes_per_second: 4 << 20,
        }
    }
}

/// Everything a `herald agent` process needs to start. `Default` is the embedded single-node
/// default: node 1 on 127.0.0.1 with the standard ports, domain `localhost`, data in
/// `./herald-data`, development TLS certificates.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Raft id of this node, unique in the cluster, at least 1.
    pub node_id: u64,
    /// IP address every listener binds to.
    pub bind: IpAddr,
    /// Host name or IP other nodes and peers use to reach this node; required when `bind` is
    /// an unspecified address (0.0.0.0 or ::).
    pub advertise_host: Option<String>,
    /// Directory for the Raft log, snapshots and generated certificates (relative paths are
    /// relative to the working directory).
    pub data_dir: PathBuf,
    /// Start a new cluster with this node as its only voter (first start only).
    pub bootstrap: bool,
    /// Join the cluster that a node at this address belongs to (`IP`, `HOST` or `HOST:PORT`,
    /// port 7470 by default).
    pub join: Option<String>,
    /// Local domains created at bootstrap.
    pub domains: Vec<String>,
    /// XMPP client-to-server port (STARTTLS).
    pub c2s_port: u16,
    /// XMPP client-to-server port with direct TLS (XEP-0368).
    pub c2s_tls_port: u16,
    /// XMPP server-to-server port.
    pub s2s_port: u16,
    /// XMPP server-to-server port with direct TLS (XEP-0368, ALPN `xmpp-server`).
    pub s2s_tls_port: u16,
    /// SIP over TCP port.
    pub sip_port: u16,
    /// SIP over TLS port.
    pub sip_tls_port: u16,
    /// A node that is not the SIP routing node relays each accepted SIP connection (TCP or
    /// TLS, before any handshake) to the routing node's listener of the same port, behind a
    /// PROXY protocol v2 header with the peer's address; off: it answers 503. Relaying needs
    /// every node to use the same `sip_port` and `sip_tls_port`.
    pub sip_relay: bool,
    /// Node-to-node gRPC port (Raft, forwarding).
    pub cluster_port: u16,
    /// Admin gRPC port (the `herald` CLI talks to it).
    pub admin_port: u16,
    /// HTTP port for /metrics, /healthz and /readyz.
    pub http_port: u16,
    /// PEM certificate chain for this node; without it a development CA and certificate are
    /// generated under `<data_dir>/tls`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Directory of per-domain certificates for federation: `<domain>.pem` (chain) and
    /// `<domain>.key`; picked by SNI inbound and by the local domain outbound, re-read when the
    /// files change.
    pub tls_cert_dir: Option<PathBuf>,
    /// PEM CA bundle trusted, besides the system roots, for the certificates of federation
    /// peers (XMPP s2s).
    pub tls_ca: Option<PathBuf>,
    /// DNS server for federation lookups (`IP` or `IP:PORT`, port 53 by default); the system's
    /// resolver when unset.
    pub dns_resolver: Option<String>,
    /// Seconds between two polls of a calendar-enabled user's calendar, and between two checks
    /// of each calendar gateway (1..=86400).
    pub calendar_poll_seconds: u64,
    /// Seconds a calendar gateway has for connect + TLS, and for each full answer (1..=300);
    /// a slower gateway is reported as timed out and its users move.
    pub calendar_timeout_seconds: u64,
    /// Bearer token the admin API requires.
    pub admin_token: Option<Secret>,
    /// PEM CA bundle; admin clients presenting a certificate from it are accepted.
    pub admin_client_ca: Option<PathBuf>,
    /// File holding the key that seals secrets at rest (calendar passwords, the dialback
    /// secret): 32 bytes as hex or base64, mode 0600. Every node needs the same key.
    /// `HERALD_SECRETS_KEY` (the key itself) wins over it; with neither, the embedded default
    /// generates `<data_dir>/secrets.key` on the bootstrap node and joining nodes adopt it.
    pub secrets_key_file: Option<PathBuf>,
    /// Audit records kept in the replicated store; older ones are trimmed (1..=1000000).
    pub audit_keep: u32,
    /// Shared secret for node-to-node calls (an extra check; off loopback, mutual TLS through
    /// `cluster_ca` is required).
    pub cluster_token: Option<Secret>,
    /// PEM certificate of the cluster CA: setting it turns on mutual TLS between nodes; every
    /// node's certificate must be issued by it and name the node (URI SAN urn:herald:node:N).
    pub cluster_ca: Option<PathBuf>,
    /// PEM private key of the cluster CA: this node issues its own cluster certificate with it
    /// at start (instead of `cluster_cert`/`cluster_key`).
    pub cluster_ca_key: Option<PathBuf>,
    /// PEM certificate chain of this node for node-to-node TLS (issued by `cluster_ca`).
    pub cluster_cert: Option<PathBuf>,
    /// PEM private key matching `cluster_cert`.
    pub cluster_key: Option<PathBuf>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log filter (an `EnvFilter` directive such as `info,herald_cluster=debug`); `RUST_LOG`
    /// wins when set.
    pub log_level: String,
    /// Raft timing and compaction.
    pub raft: RaftConfig,
    /// Client limits.
    pub xmpp: XmppConfig,
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_grpc_message_bytes: usize,
    /// How long a shutdown waits for connections and in-flight work, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Data-plane worker threads (actix arbiters); 0: one per available core.
    pub workers: usize,
    /// StatefulSet mode: the headless Service's DNS name. The node id comes from the host
    /// name's ordinal (`herald-N` is node N+1), the node advertises `herald-N.<this>`, ordinal
    /// 0 bootstraps and the others join through their peers' names (`bootstrap` and `join`
    /// must be unset); a restart resumes from the data dir.
    pub peers_from_dns: Option<String>,
    /// StatefulSet mode: seconds a member's pod name must be gone from DNS (NXDOMAIN), with the
    /// member unreachable, before the leader removes it from the cluster; 0 never does.
    pub scale_down_after: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: 1,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertise_host: None,
            data_dir: PathBuf::from("./herald-data"),
            bootstrap: false,
            join: None,
            domains: vec!["localhost".to_string()],
            c2s_port: 5222,
            c2s_tls_port: 5223,
            s2s_port: 5269,
            s2s_tls_port: 5270,
            sip_port: 5060,
            sip_tls_port: 5061,
            sip_relay: true,
            cluster_port: DEFAULT_CLUSTER_PORT,
            admin_port: 7471,
            http_port: 9470,
            tls_cert: None,
            tls_key: None,
            tls_cert_dir: None,
            tls_ca: None,
            dns_resolver: None,
            calendar_poll_seconds: 60,
            calendar_timeout_seconds: 10,
            admin_token: None,
            admin_client_ca: None,
            secrets_key_file: None,
            audit_keep: 10_000,
            cluster_token: None,
            cluster_ca: None,
            cluster_ca_key: None,
            cluster_cert: None,
            cluster_key: None,
            log_format: LogFormat::Human,
            log_level: "info".to_string(),
            raft: RaftConfig::default(),
            xmpp: XmppConfig::default(),
            max_grpc_message_bytes: 64 * 1024 * 1024,
            shutdown_grace_ms: 10_000,
            workers: 0,
            peers_from_dns: None,
            scale_down_after: 120,
        }
    }
}

impl NodeConfig {
    /// Builds the effective configuration for `herald agent`: the default, then the toml file
    /// named by `args.config` (if any), then the env/flag values in `args`; then validates.
    pub fn load(args: &AgentArgs) -> Result<NodeConfig, ConfigError> {
        let mut cfg = match &args.config {
            Some(path) => Self::from_toml_file(path)?,
            None => NodeConfig::default(),
        };
        args.apply_to(&mut cfg);
        crate::peers_dns::apply(&mut cfg, &crate::peers_dns::hostname())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a `herald.toml` file (missing keys take their defaults; unknown keys are an
    /// error). Does not validate.
    pub fn from_toml_file(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Parses `herald.toml` text. Does not validate.
    pub fn from_toml_str(text: &str) -> Result<NodeConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// A valid config for tests: every port 0 (the OS picks), fast Raft ticks, the given id,
    /// bind address and data directory.
    pub fn for_test(node_id: u64, bind: IpAddr, data_dir: PathBuf) -> Self {
        NodeConfig {
            node_id,
            bind,
            data_dir,
            c2s_port: 0,
            c2s_tls_port: 0,
            s2s_port: 0,
            s2s_tls_port: 0,
            sip_port: 0,
            sip_tls_port: 0,
            cluster_port: 0,
            admin_port: 0,
            http_port: 0,
            xmpp: XmppConfig::default(),
            raft: RaftConfig {
                tick_ms: 20,
                ..RaftConfig::default()
            },
            shutdown_grace_ms: 2_000,
            ..NodeConfig::default()
        }
    }

    /// The socket address for a listener: the bind IP with `port`.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.bind, port)
    }

    /// The host other nodes use to reach this one: `advertise_host`, else the bind IP when it
    /// is a specific address, else loopback of the same family.
    pub fn advertise_host_or_ip(&self) -> String {
        if let Some(host) = &self.advertise_host {
            return host.clone();
        }
        match self.bind {
            IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
            IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.to_string(),
            ip => ip.to_string(),
        }
    }

    /// `host:port` of the advertised host with `port` (IPv6 literals in brackets). Useful
    /// when the real port is known only after binding port 0.
    pub fn advertise(&self, port: u16) -> String {
        let host = self.advertise_host_or_ip();
        match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port).to_string(),
            Err(_) => format!("{host}:{port}"),
        }
    }

    /// host:port other nodes use to reach this node's node-to-node API:
    /// advertise_host (or bind ip when not unspecified) + cluster_port.
    pub fn cluster_advertise(&self) -> String {
        self.advertise(self.cluster_port)
    }

    /// host:port of this node's admin API as others should dial it.
    pub fn admin_advertise(&self) -> String {
        self.advertise(self.admin_port)
    }

    /// The `join` address as `host:port` (port 7470 when none was given), or `None` when not
    /// joining. Returns `None` for an unparsable value too; [`NodeConfig::validate`] rejects
    /// those.
    pub fn join_target(&self) -> Option<String> {
        self.join.as_deref().and_then(|j| parse_join(j).ok())
    }

    /// The number of data-plane workers: `workers`, or one per available core when 0.
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// `shutdown_grace_ms` as a [`Duration`].
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// Where generated TLS material lives: `<data_dir>/tls`.
    pub fn tls_dir(&self) -> PathBuf {
        self.data_dir.join("tls")
    }
}

#[cfg(test)]
mod tests;
