//! Gathering the facts: the admin API (Diagnose, config objects), certificate parsing, DNS
//! through the chosen resolver, and `--probe` TLS connections. All I/O of the troubleshooter
//! is here; the checks only read what this returns.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use herald_grpc::admin::{DiagnoseReply, DiagnoseRequest, GetRequest, ListRequest};
use herald_grpc::config::{config_object::Body, ConfigObject, ObjectKind};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::Resolver;
use tonic::Code;

use super::certs;
use super::checks::{default_routing_domain, sip_srv_name, srv_names, static_route_for};
use super::facts::{ConfigFacts, DnsAnswer, Facts, NodeFact, Probe, SrvRecord};
use crate::cli::{CliError, Client};

/// Timeout of one DNS query (one attempt).
const DNS_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of one `--probe` connection, TCP and TLS handshake together.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// System CA bundles tried, in order, as trust anchors for the chain check.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// What to gather beyond the admin API.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub probe: bool,
    /// `IP[:PORT]` of the DNS server; `None`: the nameservers of /etc/resolv.conf.
    pub dns_resolver: Option<String>,
    /// Extra trusted CA files (PEM).
    pub ca_files: Vec<std::path::PathBuf>,
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT` of a DNS server (port 53 by default).
pub fn parse_resolver(s: &str) -> Result<SocketAddr, CliError> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip = s.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| CliError::Usage(format!("--dns-resolver {s:?}: expected IP or IP:PORT")))
}

/// The nameservers of a resolv.conf text.
pub fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        // A scoped IPv6 address (`fe80::1%eth0`) keeps its address part.
        .filter_map(|a| a.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

pub(super) type Dns = Resolver<TokioRuntimeProvider>;

pub(super) fn resolver(opts: &Options) -> Result<Dns, String> {
    let servers = match &opts.dns_resolver {
        Some(s) => vec![parse_resolver(s).map_err(|e| e.to_string())?],
        None => {
            let text = std::fs::read_to_string("/etc/resolv.conf")
                .map_err(|e| format!("reading /etc/resolv.conf: {e}; use --dns-resolver"))?;
            let s = resolv_conf_servers(&text);
            if s.is_empty() {
                return Err("no nameserver in /etc/resolv.conf; use --dns-resolver".into());
            }
            s
        }
    };
    let ns = servers
        .iter()
        .map(|a| {
            let mut conn = ConnectionConfig::udp();
            conn.port = a.port();
            NameServerConfig::new(a.ip(), true, vec![conn])
        })
        .collect();
    let mut o = ResolverOpts::default();
    o.timeout = DNS_TIMEOUT;
    o.attempts = 1;
    Resolver::builder_with_config(
        ResolverConfig::from_name_servers(ns),
        TokioRuntimeProvider::default(),
    )
    .with_options(o)
    .build()
    .map_err(|e| format!("cannot set up the DNS resolver: {e}"))
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

async fn addrs_of(dns: &Dns, host: &str) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    match dns.lookup_ip(fqdn(host)).await {
        Ok(l) => l.iter().collect(),
        Err(_) => Vec::new(),
    }
}

pub(super) async fn srv(dns: &Dns, name: &str) -> DnsAnswer {
    match dns.srv_lookup(fqdn(name)).await {
        Ok(l) => {
            let mut recs = Vec::new();
            for r in l.answers() {
                if let RData::SRV(s) = &r.data {
                    let target = s
                        .target
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_ascii_lowercase();
                    let target = if target.is_empty() {
                        ".".to_string()
                    } else {
                        target
                    };
                    let addrs = if target == "." {
                        Vec::new()
                    } else {
                        addrs_of(dns, &target).await
                    };
                    recs.push(SrvRecord {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target,
                        addrs,
                    });
                }
            }
            if recs.is_empty() {
                DnsAnswer::NoRecords
            } else {
                DnsAnswer::Records(recs)
            }
        }
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => DnsAnswer::NoRecords,
        Err(e) => DnsAnswer::Failed(e.to_string()),
    }
}

/// Diagnose, again (up to three times) while digests differ with writes in flight.
async fn diagnose(client: &mut Client) -> Result<DiagnoseReply, CliError> {
    let mut reply = client.diagnose(DiagnoseRequest {}).await?.into_inner();
    for _ in 0..2 {
        let digests: std::collections::BTreeSet<String> = reply
            .members
            .iter()
            .filter_map(|m| m.facts.as_ref())
            .filter_map(|f| f.status.as_ref())
            .map(|s| s.config_digest.clone())
            .collect();
        if digests.len() <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        reply = client.diagnose(DiagnoseRequest {}).await?.into_inner();
    }
    Ok(reply)
}

async fn list(client: &mut Client, kind: ObjectKind) -> Result<Vec<ConfigObject>, CliError> {
    let req = ListRequest {
        kind: kind as i32,
        linearizable: false,
    };
    Ok(client.list(req).await?.into_inner().objects)
}

async fn singleton(client: &mut Client, kind: ObjectKind) -> Result<Option<Body>, CliError> {
    let req = GetRequest {
        kind: kind as i32,
        key: String::new(),
        linearizable: false,
    };
    match client.get(req).await {
        Ok(r) => Ok(r.into_inner().object.and_then(|o| o.body)),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(s.into()),
    }
}

async fn config(client: &mut Client) -> Result<ConfigFacts, CliError> {
    let mut c = ConfigFacts::default();
    for o in list(client, ObjectKind::Domain).await? {
        if let Some(Body::Domain(d)) = o.body {
            c.domains.push(d.name);
        }
    }
    for o in list(client, ObjectKind::EmailDomain).await? {
        if let Some(Body::EmailDomain(d)) = o.body {
            c.email_domains.push(d.name);
        }
    }
    for o in list(client, ObjectKind::SipDomain).await? {
        if let Some(Body::SipDomain(d)) = o.body {
            if d.integration_type == herald_grpc::config::SipIntegrationType::Aol as i32 {
                c.aol_domains.push(d.domain.clone());
            }
            c.sip_domains.push(d.domain);
        }
    }
    for o in list(client, ObjectKind::StaticRoute).await? {
        if let Some(Body::StaticRoute(r)) = o.body {
            c.static_routes.push(r);
        }
    }
    for o in list(client, ObjectKind::TlsPeer).await? {
        if let Some(Body::TlsPeer(p)) = o.body {
            c.tls_peers.push(p.name);
        }
    }
    if let Some(Body::RoutingNode(r)) = singleton(client, ObjectKind::RoutingNode).await? {
        c.routing_order = r.node_order;
    }
    if let Some(Body::XmppFederation(x)) = singleton(client, ObjectKind::XmppFederation).await? {
        c.xmpp_federation_nodes = x.enabled_nodes;
    }
    if let Some(Body::FederationRouting(r)) =
        singleton(client, ObjectKind::FederationRouting).await?
    {
        c.default_routing_domain = r.default_federation_routing_domain;
    }
    Ok(c)
}

fn extra_anchors(opts: &Options) -> Result<Vec<Vec<u8>>, CliError> {
    let mut out = Vec::new();
    for f in &opts.ca_files {
        let certs = crate::tls::read_certs(f)
            .map_err(|e| CliError::Usage(format!("--ca-file {}: {e}", f.display())))?;
        out.extend(certs.into_iter().map(|c| c.as_ref().to_vec()));
    }
    if let Some(bundle) = SYSTEM_BUNDLES
        .iter()
        .map(std::path::Path::new)
        .find(|p| p.is_file())
    {
        if let Ok(certs) = crate::tls::read_certs(bundle) {
            out.extend(certs.into_iter().map(|c| c.as_ref().to_vec()));
        }
    }
    Ok(out)
}

fn node_facts(reply: DiagnoseReply, anchors: &[Vec<u8>]) -> Vec<NodeFact> {
    let mut nodes: Vec<NodeFact> = reply
        .members
        .into_iter()
        .map(|m| {
            let host_of_address = m
                .address
                .rsplit_once(':')
                .map_or(m.address.as_str(), |(h, _)| h)
                .trim_matches(['[', ']'])
                .to_string();
            let mut n = NodeFact {
                id: m.id,
                address: m.address.clone(),
                advertise_host: host_of_address,
                rtt_us: m.rtt_us,
                clock_offset_ms: m.clock_offset_ms,
                ..Default::default()
            };
            match m.facts {
                Some(f) if m.error.is_empty() => {
                    let st = f.status.unwrap_or_default();
                    n.role = st.role;
                    n.leader_id = st.leader_id;
                    n.applied_index = st.applied_index;
                    n.config_digest = st.config_digest;
                    n.live_nodes = f.live_nodes;
                    if !f.advertise_host.is_empty() {
                        n.advertise_host = f.advertise_host;
                    }
                    n.s2s_port = f.s2s_port.try_into().unwrap_or(0);
                    n.sip_tls_port = f.sip_tls_port.try_into().unwrap_or(0);
                    let mut all_anchors = f.tls_anchors;
                    all_anchors.extend_from_slice(anchors);
                    n.cert = certs::parse_chain(&f.tls_chain, &all_anchors);
                }
                _ => {
                    n.error = Some(if m.error.is_empty() {
                        "no facts in the reply".into()
                    } else {
                        m.error
                    });
                }
            }
            n
        })
        .collect();
    nodes.sort_by_key(|n| n.id);
    nodes
}

/// Gathers every fact the checks need through `client` (and DNS, and probes when asked).
pub async fn gather(client: &mut Client, opts: &Options) -> Result<Facts, CliError> {
    let anchors = extra_anchors(opts)?;
    if let Some(r) = &opts.dns_resolver {
        parse_resolver(r)?;
    }
    let reply = diagnose(client).await?;
    let answered_by = reply.answered_by;
    let nodes = node_facts(reply, &anchors);
    let config = config(client).await?;
    let now_unix = crate::cli::troubleshoot::now_unix();

    let mut names: Vec<String> = config.domains.iter().flat_map(|d| srv_names(d)).collect();
    names.extend(config.sip_domains.iter().map(|d| sip_srv_name(d)));
    if !config.aol_domains.is_empty() {
        names.push(sip_srv_name(&default_routing_domain(&config)));
    }
    names.sort();
    names.dedup();
    let mut srv_answers = BTreeMap::new();
    let mut host_addrs = BTreeMap::new();
    match resolver(opts) {
        Ok(dns) => {
            let answers = futures::future::join_all(names.iter().map(|n| srv(&dns, n))).await;
            srv_answers.extend(names.iter().cloned().zip(answers));
            let hosts: Vec<String> = nodes
                .iter()
                .map(|n| n.advertise_host.to_ascii_lowercase())
                .filter(|h| !h.is_empty() && h.parse::<IpAddr>().is_err())
                .collect();
            let addrs = futures::future::join_all(hosts.iter().map(|h| addrs_of(&dns, h))).await;
            host_addrs.extend(hosts.into_iter().zip(addrs));
        }
        Err(e) => {
            for n in &names {
                srv_answers.insert(n.clone(), DnsAnswer::Failed(e.clone()));
            }
        }
    }
    let mut facts = Facts {
        answered_by,
        now_unix,
        nodes,
        config,
        srv: srv_answers,
        host_addrs,
        probes: None,
    };
    if opts.probe {
        facts.probes = Some(probe_all(&facts).await);
    }
    Ok(facts)
}

/// Where a federated SIP domain's traffic goes: its static route, else its best SRV target;
/// for an AOL-type domain without either, the default federation routing domain's.
fn next_hop(f: &Facts, domain: &str) -> Option<(String, u16)> {
    own_next_hop(f, domain).or_else(|| {
        f.config
            .aol_domains
            .iter()
            .any(|d| d == domain)
            .then(|| own_next_hop(f, &default_routing_domain(&f.config)))
            .flatten()
    })
}

fn own_next_hop(f: &Facts, domain: &str) -> Option<(String, u16)> {
    if let Some(r) = static_route_for(&f.config.static_routes, domain) {
        return Some((
            r.next_hop.clone(),
            r.next_hop_port.try_into().unwrap_or(5061),
        ));
    }
    match f.srv.get(&sip_srv_name(domain)) {
        Some(DnsAnswer::Records(recs)) => recs
            .iter()
            .filter(|r| r.target != ".")
            .min_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)))
            .map(|r| (r.target.clone(), r.port)),
        _ => None,
    }
}

async fn probe_all(f: &Facts) -> BTreeMap<String, Probe> {
    let calls = f.config.sip_domains.iter().map(|d| async move {
        let p = match next_hop(f, d) {
            Some((host, port)) => probe(host, port).await,
            None => Probe::Failed {
                host: String::new(),
                port: 0,
                error: "no route to probe (see sip-route)".into(),
            },
        };
        (d.clone(), p)
    });
    futures::future::join_all(calls).await.into_iter().collect()
}

/// Accepts any server certificate: the probe only reads it, the checks judge it.
#[derive(Debug)]
struct RecordOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for RecordOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub(super) async fn probe(host: String, port: u16) -> Probe {
    let failed = |error: String| Probe::Failed {
        host: host.clone(),
        port,
        error,
    };
    let provider = crate::tls::provider();
    let cfg = match rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(RecordOnly(provider)))
            .with_no_client_auth(),
        Err(e) => return failed(format!("TLS set-up: {e}")),
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.clone()) else {
        return failed("not a valid host name".into());
    };
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .ok_or_else(|| "the peer sent no certificate".to_string())?;
        certs::parse_one(&leaf)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
        Ok(Ok(peer)) => Probe::Connected {
            host: host.clone(),
            port,
            peer,
        },
        Ok(Err(e)) => failed(e),
        Err(_) => failed(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}
