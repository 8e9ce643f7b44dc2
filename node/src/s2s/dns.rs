//! DNS for federation: SRV lookups and host addresses, through the configured server
//! (`dns_resolver`) or the system's resolver. The ordering of what comes back is the pure
//! `herald_federation::edge::resolve`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use herald_federation::edge::resolve::{Lookup, Srv};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

/// A resolver.
pub struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    /// Queries `server` when given, else the system's resolver configuration.
    pub fn new(server: Option<SocketAddr>) -> anyhow::Result<Dns> {
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        let resolver = match server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
                .with_options(opts)
                .build()?
            }
            None => TokioResolver::builder_tokio()?.with_options(opts).build()?,
        };
        Ok(Dns { resolver })
    }

    /// The SRV records of `name` (`_service._tcp.domain`); `Err` on a DNS failure other than
    /// "no such records".
    pub async fn srv(&self, name: &str) -> Result<Lookup, String> {
        let fq = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.srv_lookup(fq.as_str()).await {
            Ok(l) => {
                let recs: Vec<Srv> = l
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(s) => Some(Srv {
                            priority: s.priority,
                            weight: s.weight,
                            target: s.target.to_utf8().trim_end_matches('.').to_string(),
                            port: s.port,
                        }),
                        _ => None,
                    })
                    .collect();
                if recs.len() == 1 && recs[0].target.is_empty() {
                    return Ok(Lookup::Refused);
                }
                Ok(Lookup::Records(recs))
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Lookup::Records(vec![])),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The addresses of `host` (an IP literal is returned as is).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let fq = format!("{}.", host.trim_end_matches('.'));
        match self.resolver.lookup_ip(fq.as_str()).await {
            Ok(l) => Ok(l.iter().collect()),
            Err(e) => Err(e.to_string()),
        }
    }
}
