//! `herald agent` flags. Each has a `HERALD_*` env var (clap: flag over env) and a toml key
//! (applied underneath by [`AgentArgs::apply_to`]).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;

use super::{LogFormat, NodeConfig, Secret};

// Every field is an Option (or an empty Vec) so that "not given" is visible: precedence is
// built-in default < herald.toml (--config FILE, env HERALD_CONFIG) < HERALD_* env var <
// command-line flag. clap's `env` gives flag-over-env; `NodeConfig::load` lays the toml file
// underneath. The doc comment below is the `--help` text.
/// Run a Herald node. Settings come from built-in defaults, then the herald.toml file given by
/// --config, then HERALD_* environment variables, then these flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AgentArgs {
    /// Config file (herald.toml); flags and HERALD_* variables override its keys.
    #[arg(long, env = "HERALD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Raft id of this node (at least 1, unique in the cluster).
    #[arg(long, env = "HERALD_NODE_ID", value_name = "N")]
    pub node_id: Option<u64>,
    /// IP address every listener binds to [default: 127.0.0.1].
    #[arg(long, env = "HERALD_BIND", value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// Host name or IP other nodes use to reach this one (required with bind 0.0.0.0 or ::).
    #[arg(long, env = "HERALD_ADVERTISE_HOST", value_name = "HOST")]
    pub advertise_host: Option<String>,
    /// Data directory (Raft log, snapshots, generated certificates) [default: ./herald-data].
    #[arg(long, env = "HERALD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Start a new cluster with this node as its first voter.
    #[arg(
        long,
        env = "HERALD_BOOTSTRAP",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub bootstrap: Option<bool>,
    /// Join the cluster of the node at ADDR (IP, HOST or HOST:PORT; port 7470 by default).
    #[arg(long, env = "HERALD_JOIN", value_name = "ADDR")]
    pub join: Option<String>,
    /// Local domain created at bootstrap (repeatable; env: comma-separated) [default: localhost].
    #[arg(
        long = "domain",
        env = "HERALD_DOMAINS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub domains: Vec<String>,
    /// XMPP client port, STARTTLS [default: 5222].
    #[arg(long, env = "HERALD_C2S_PORT", value_name = "PORT")]
    pub c2s_port: Option<u16>,
    /// XMPP client port, direct TLS [default: 5223].
    #[arg(long, env = "HERALD_C2S_TLS_PORT", value_name = "PORT")]
    pub c2s_tls_port: Option<u16>,
    /// XMPP server-to-server port [default: 5269].
    #[arg(long, env = "HERALD_S2S_PORT", value_name = "PORT")]
    pub s2s_port: Option<u16>,
    /// XMPP server-to-server port with direct TLS (XEP-0368) [default: 5270].
    #[arg(long, env = "HERALD_S2S_TLS_PORT", value_name = "PORT")]
    pub s2s_tls_port: Option<u16>,
    /// SIP over TCP port [default: 5060].
    #[arg(long, env = "HERALD_SIP_PORT", value_name = "PORT")]
    pub sip_port: Option<u16>,
    /// SIP over TLS port [default: 5061].
    #[arg(long, env = "HERALD_SIP_TLS_PORT", value_name = "PORT")]
    pub sip_tls_port: Option<u16>,
    /// Relay SIP connections accepted by a node that is not the routing node to the routing
    /// node (PROXY protocol v2); false: such a node answers 503 [default: true].
    #[arg(
        long,
        env = "HERALD_SIP_RELAY",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub sip_relay: Option<bool>,
    /// Node-to-node gRPC port [default: 7470].
    #[arg(long, env = "HERALD_CLUSTER_PORT", value_name = "PORT")]
    pub cluster_port: Option<u16>,
    /// Admin gRPC port [default: 7471].
    #[arg(long, env = "HERALD_ADMIN_PORT", value_name = "PORT")]
    pub admin_port: Option<u16>,
    /// HTTP port for /metrics, /healthz, /readyz [default: 9470].
    #[arg(long, env = "HERALD_HTTP_PORT", value_name = "PORT")]
    pub http_port: Option<u16>,
    /// PEM certificate chain (without it, development certificates are generated).
    #[arg(long, env = "HERALD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "HERALD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Directory of per-domain federation certificates (`<domain>.pem` + `<domain>.key`), re-read
    /// when they change.
    #[arg(long, env = "HERALD_TLS_CERT_DIR", value_name = "DIR")]
    pub tls_cert_dir: Option<PathBuf>,
    /// PEM CA bundle trusted (besides the system roots) for federation peers' certificates.
    #[arg(long, env = "HERALD_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// DNS server for federation lookups (SRV, A/AAAA), `IP` or `IP:PORT` [default: the
    /// system's resolver].
    #[arg(long, env = "HERALD_DNS_RESOLVER", value_name = "IP[:PORT]")]
    pub dns_resolver: Option<String>,
    /// Seconds between two polls of a user's calendar (and gateway checks) [default: 60].
    #[arg(long, env = "HERALD_CALENDAR_POLL_SECONDS", value_name = "SECONDS")]
    pub calendar_poll_seconds: Option<u64>,
    /// Seconds a calendar gateway has to connect and to answer each request [default: 10].
    #[arg(long, env = "HERALD_CALENDAR_TIMEOUT_SECONDS", value_name = "SECONDS")]
    pub calendar_timeout_seconds: Option<u64>,
    /// Token the admin API requires (prefer the env var: flags show in `ps`).
    #[arg(
        long,
        env = "HERALD_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// File holding the 32-byte key that seals secrets at rest (hex or base64; mode 0600).
    /// Every node of a cluster needs the same key. `HERALD_SECRETS_KEY` may hold the key itself.
    #[arg(long, env = "HERALD_SECRETS_KEY_FILE", value_name = "FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// Audit records kept in the replicated store (newest first) [default: 10000].
    #[arg(long, env = "HERALD_AUDIT_KEEP", value_name = "N")]
    pub audit_keep: Option<u32>,
    /// PEM CA bundle for admin client certificates.
    #[arg(long, env = "HERALD_ADMIN_CLIENT_CA", value_name = "FILE")]
    pub admin_client_ca: Option<PathBuf>,
    /// PEM cluster CA certificate: mutual TLS between nodes.
    #[arg(long, env = "HERALD_CLUSTER_CA", value_name = "FILE")]
    pub cluster_ca: Option<PathBuf>,
    /// PEM cluster CA key: the node issues its own cluster certificate at start.
    #[arg(long, env = "HERALD_CLUSTER_CA_KEY", value_name = "FILE")]
    pub cluster_ca_key: Option<PathBuf>,
    /// PEM certificate of this node for node-to-node TLS.
    #[arg(long, env = "HERALD_CLUSTER_CERT", value_name = "FILE")]
    pub cluster_cert: Option<PathBuf>,
    /// PEM key of `--cluster-cert`.
    #[arg(long, env = "HERALD_CLUSTER_KEY", value_name = "FILE")]
    pub cluster_key: Option<PathBuf>,
    /// Shared secret for node-to-node calls (prefer the env var: flags show in `ps`).
    #[arg(
        long,
        env = "HERALD_CLUSTER_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub cluster_token: Option<String>,
    /// Log format [default: human].
    #[arg(long, env = "HERALD_LOG_FORMAT", value_name = "FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info,herald_cluster=debug` (RUST_LOG wins when set) [default: info].
    #[arg(long, env = "HERALD_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Raft tick in milliseconds [default: 100].
    #[arg(long, env = "HERALD_RAFT_TICK_MS", value_name = "MS")]
    pub raft_tick_ms: Option<u64>,
    /// Ticks before a follower starts an election [default: 10].
    #[arg(long, env = "HERALD_RAFT_ELECTION_TICKS", value_name = "N")]
    pub raft_election_ticks: Option<usize>,
    /// Ticks between leader heartbeats [default: 2].
    #[arg(long, env = "HERALD_RAFT_HEARTBEAT_TICKS", value_name = "N")]
    pub raft_heartbeat_ticks: Option<usize>,
    /// Compact the Raft log after this many applied entries [default: 1000].
    #[arg(long, env = "HERALD_SNAPSHOT_ENTRIES", value_name = "N")]
    pub snapshot_entries: Option<u64>,
    /// Raft log entries kept behind each snapshot for lagging followers [default: 5000].
    #[arg(long, env = "HERALD_COMPACTION_LAG", value_name = "N")]
    pub compaction_lag: Option<u64>,
    /// Largest stanza a client may send, in bytes [default: 262144].
    #[arg(long, env = "HERALD_MAX_STANZA_BYTES", value_name = "BYTES")]
    pub max_stanza_bytes: Option<usize>,
    /// Offline messages kept per user [default: 100].
    #[arg(long, env = "HERALD_OFFLINE_MAX", value_name = "N")]
    pub offline_max: Option<usize>,
    /// Largest gRPC message in bytes [default: 67108864].
    #[arg(long, env = "HERALD_MAX_GRPC_MESSAGE_BYTES", value_name = "BYTES")]
    pub max_grpc_message_bytes: Option<usize>,
    /// Shutdown grace period in milliseconds [default: 10000].
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE_MS", value_name = "MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Open client connections per c2s listener [default: 100000].
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Open client connections per source prefix (/32 IPv4, /64 IPv6) per listener
    /// [default: 5000].
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_SOURCE", value_name = "N")]
    pub max_connections_per_source: Option<usize>,
    /// Average stanzas per second one client session may send [default: 2000].
    #[arg(long, env = "HERALD_MAX_STANZAS_PER_SECOND", value_name = "N")]
    pub max_stanzas_per_second: Option<usize>,
    /// Average bytes per second one client session may send [default: 4194304].
    #[arg(long, env = "HERALD_MAX_BYTES_PER_SECOND", value_name = "BYTES")]
    pub max_bytes_per_second: Option<usize>,
    /// Data-plane worker threads (actix arbiters) for client sessions and user actors; 0 means
    /// one per available core [default: 0].
    #[arg(long, env = "HERALD_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// StatefulSet mode: the headless Service's DNS name; node id from the host name's ordinal
    /// (HOSTNAME `herald-N` is node N+1), ordinal 0 bootstraps, the others join.
    #[arg(long, env = "HERALD_PEERS_FROM_DNS", value_name = "NAME")]
    pub peers_from_dns: Option<String>,
    /// StatefulSet mode: the leader removes a member whose pod name has been gone from DNS
    /// (and the member unreachable) this many seconds — the StatefulSet was scaled down;
    /// 0: never [default: 120].
    #[arg(long, env = "HERALD_SCALE_DOWN_AFTER", value_name = "SECONDS")]
    pub scale_down_after: Option<u64>,
}

/// Overwrites `$dst` with `$src` when the flag or env var was given.
macro_rules! overlay {
    ($($dst:expr => $src:expr),* $(,)?) => {
        $( if let Some(v) = $src { $dst = v; } )*
    };
}

impl AgentArgs {
    /// Applies every value given by flag or env var on top of `cfg` (the default or the toml
    /// file). Does not validate.
    pub fn apply_to(&self, cfg: &mut NodeConfig) {
        let a = self.clone();
        overlay! {
            cfg.node_id => a.node_id,
            cfg.bind => a.bind,
            cfg.data_dir => a.data_dir,
            cfg.bootstrap => a.bootstrap,
            cfg.c2s_port => a.c2s_port,
            cfg.c2s_tls_port => a.c2s_tls_port,
            cfg.s2s_port => a.s2s_port,
            cfg.s2s_tls_port => a.s2s_tls_port,
            cfg.sip_port => a.sip_port,
            cfg.sip_tls_port => a.sip_tls_port,
            cfg.sip_relay => a.sip_relay,
            cfg.cluster_port => a.cluster_port,
            cfg.admin_port => a.admin_port,
            cfg.http_port => a.http_port,
            cfg.log_format => a.log_format,
            cfg.log_level => a.log_level,
            cfg.raft.tick_ms => a.raft_tick_ms,
            cfg.raft.election_ticks => a.raft_election_ticks,
            cfg.raft.heartbeat_ticks => a.raft_heartbeat_ticks,
            cfg.raft.snapshot_entries => a.snapshot_entries,
            cfg.raft.compaction_lag => a.compaction_lag,
            cfg.xmpp.max_stanza_bytes => a.max_stanza_bytes,
            cfg.xmpp.offline_max => a.offline_max,
            cfg.xmpp.max_connections => a.max_connections,
            cfg.xmpp.max_connections_per_source => a.max_connections_per_source,
            cfg.xmpp.max_stanzas_per_second => a.max_stanzas_per_second,
            cfg.xmpp.max_bytes_per_second => a.max_bytes_per_second,
            cfg.max_grpc_message_bytes => a.max_grpc_message_bytes,
            cfg.shutdown_grace_ms => a.shutdown_grace_ms,
            cfg.workers => a.workers,
            cfg.calendar_poll_seconds => a.calendar_poll_seconds,
            cfg.calendar_timeout_seconds => a.calendar_timeout_seconds,
            cfg.scale_down_after => a.scale_down_after,
            cfg.audit_keep => a.audit_keep,
        }
        overlay! {
            cfg.advertise_host => a.advertise_host.map(Some),
            cfg.join => a.join.map(Some),
            cfg.tls_cert => a.tls_cert.map(Some),
            cfg.tls_key => a.tls_key.map(Some),
            cfg.tls_ca => a.tls_ca.map(Some),
            cfg.tls_cert_dir => a.tls_cert_dir.map(Some),
            cfg.dns_resolver => a.dns_resolver.map(Some),
            cfg.admin_token => a.admin_token.map(|t| Some(Secret::new(t))),
            cfg.admin_client_ca => a.admin_client_ca.map(Some),
            cfg.secrets_key_file => a.secrets_key_file.map(Some),
            cfg.cluster_ca => a.cluster_ca.map(Some),
            cfg.cluster_ca_key => a.cluster_ca_key.map(Some),
            cfg.cluster_cert => a.cluster_cert.map(Some),
            cfg.cluster_key => a.cluster_key.map(Some),
            cfg.cluster_token => a.cluster_token.map(|t| Some(Secret::new(t))),
            cfg.peers_from_dns => a.peers_from_dns.map(Some),
        }
        if !a.domains.is_empty() {
            cfg.domains = a
                .domains
                .iter()
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect();
        }
    }
}
