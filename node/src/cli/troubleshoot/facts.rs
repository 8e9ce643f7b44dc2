//! The facts the checks judge: plain data, gathered by `gather` and built by hand in tests.

use std::collections::BTreeMap;
use std::net::IpAddr;

use herald_grpc::config::StaticRoute;

/// Everything the checks look at.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The node the CLI talked to (it gathered the member facts).
    pub answered_by: u64,
    /// Wall clock of the CLI when the facts were gathered, seconds since the Unix epoch.
    pub now_unix: i64,
    /// Every member, sorted by id.
    pub nodes: Vec<NodeFact>,
    /// The replicated config the checks need.
    pub config: ConfigFacts,
    /// SRV answers by query name (`_xmpp-server._tcp.example.com`); absent: not asked.
    pub srv: BTreeMap<String, DnsAnswer>,
    /// Addresses of the nodes' advertised host names (IP literals need no entry).
    pub host_addrs: BTreeMap<String, Vec<IpAddr>>,
    /// `--probe` results by federated SIP domain; `None`: no probing asked.
    pub probes: Option<BTreeMap<String, Probe>>,
}

/// One member as the answering node saw it.
#[derive(Debug, Clone, Default)]
pub struct NodeFact {
    pub id: u64,
    /// Node-to-node address (`host:port`).
    pub address: String,
    /// Why it did not answer; `None` when it did (the fields below are then filled in).
    pub error: Option<String>,
    /// leader, follower, candidate, pre-candidate.
    pub role: String,
    /// The leader it knows (0: none).
    pub leader_id: u64,
    pub applied_index: u64,
    pub config_digest: String,
    /// Round trip of the facts call, µs (0 for the answering node).
    pub rtt_us: u64,
    /// Its clock minus the answering node's, ms.
    pub clock_offset_ms: i64,
    /// Members it sees as live.
    pub live_nodes: Vec<u64>,
    /// Host DNS records should name for it.
    pub advertise_host: String,
    pub s2s_port: u16,
    pub sip_tls_port: u16,
    /// Its TLS certificate chain.
    pub cert: CertFacts,
}

impl NodeFact {
    /// The node answered.
    pub fn reachable(&self) -> bool {
        self.error.is_none()
    }
}

/// The config objects the checks need.
#[derive(Debug, Clone, Default)]
pub struct ConfigFacts {
    pub domains: Vec<String>,
    pub email_domains: Vec<String>,
    pub sip_domains: Vec<String>,
    /// The SIP domains of type AOL: reached through the default federation routing domain
    /// when they have no route of their own (RTE-7).
    pub aol_domains: Vec<String>,
    /// `federation-routing --default-routing-domain` (empty: `aol.com`).
    pub default_routing_domain: String,
    pub static_routes: Vec<StaticRoute>,
    pub tls_peers: Vec<String>,
    /// `routing-node`: designated node first, then fallbacks (empty: not set).
    pub routing_order: Vec<u64>,
    /// Nodes with XMPP federation (s2s) enabled.
    pub xmpp_federation_nodes: Vec<u64>,
}

/// One certificate, reduced to what the checks use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Subject alternative DNS names, lower case.
    pub dns_names: Vec<String>,
    /// Subject common name, when present.
    pub common_name: Option<String>,
    /// Validity, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

/// Where a chain ends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ChainTop {
    /// The last certificate is self-signed (a root, or a self-signed leaf).
    #[default]
    SelfSigned,
    /// The last certificate is signed by a known trust anchor (named).
    Anchored(String),
    /// The last certificate's issuer (named) is neither in the chain nor a known anchor.
    UnknownIssuer(String),
}

/// A node's certificate chain, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertFacts {
    /// End-entity first.
    pub chain: Vec<CertInfo>,
    /// `links[i]`: `chain[i]` is issued and signed by `chain[i + 1]`.
    pub links: Vec<bool>,
    pub top: ChainTop,
    /// The chain could not be parsed.
    pub error: Option<String>,
}

/// One SRV target with the addresses its name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Lower case, without the trailing dot; `.` alone means "service not offered".
    pub target: String,
    pub addrs: Vec<IpAddr>,
}

/// The answer to one SRV query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsAnswer {
    Records(Vec<SrvRecord>),
    /// NXDOMAIN or no SRV record at that name.
    NoRecords,
    /// The lookup itself failed (timeout, server failure).
    Failed(String),
}

/// A `--probe` TLS connection to a federated domain's next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The handshake completed; the peer's end-entity certificate.
    Connected {
        host: String,
        port: u16,
        peer: CertInfo,
    },
    /// No route to probe, or the connection or handshake failed.
    Failed {
        host: String,
        port: u16,
        error: String,
    },
}
