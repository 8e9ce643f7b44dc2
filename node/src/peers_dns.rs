//! StatefulSet mode (`--peers-from-dns SERVICE`): a pod named `SET-N` (Kubernetes sets
//! `HOSTNAME`) is node `N + 1`, advertises `SET-N.SERVICE` (the name the headless Service gives
//! it, stable across restarts while its IP is not), bootstraps the cluster when it is ordinal 0
//! and joins through `SET-0.SERVICE` (or the lowest ordinal whose name resolves) otherwise.
//! The cluster layer resumes from the data dir whenever it holds state, so a restarted pod
//! neither bootstraps again nor rejoins.
//!
//! Names are looked up through `dns_resolver` (`IP[:PORT]`) when it is set, else through the
//! system resolver (a pod's resolv.conf points at the cluster DNS).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::{is_dns_name, ConfigError, NodeConfig};

/// How long a joining pod waits for a peer's name to resolve before it tries `SET-0` anyway
/// (the join itself then keeps retrying).
pub const RESOLVE_WAIT: Duration = Duration::from_secs(30);

/// The pod's place in its StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// The StatefulSet's name (`SET` in `SET-N`).
    pub set: String,
    /// The ordinal `N`.
    pub ordinal: u64,
}

impl Pod {
    /// Parses a StatefulSet pod's host name `SET-N`.
    pub fn from_hostname(hostname: &str) -> Option<Pod> {
        let host = hostname.split('.').next().unwrap_or_default();
        let (set, n) = host.rsplit_once('-')?;
        if set.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Pod {
            set: set.to_string(),
            ordinal: n.parse().ok()?,
        })
    }

    /// The Raft node id: ordinal + 1.
    pub fn node_id(&self) -> u64 {
        self.ordinal + 1
    }

    /// The DNS name of pod `ordinal` of this set under the headless `service`.
    pub fn peer_name(&self, ordinal: u64, service: &str) -> String {
        format!("{}-{ordinal}.{service}", self.set)
    }
}

/// This host's name: `HOSTNAME` when set (tests set it), else the kernel's.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Applies StatefulSet mode to `cfg` when `peers_from_dns` is set: node id, advertised host,
/// bootstrap (ordinal 0) or join (the others). `bootstrap` and `join` must not be set too.
pub fn apply(cfg: &mut NodeConfig, hostname: &str) -> Result<Option<Pod>, ConfigError> {
    let Some(service) = cfg.peers_from_dns.clone() else {
        return Ok(None);
    };
    let service = service.trim_end_matches('.').to_ascii_lowercase();
    if !is_dns_name(&service) {
        return Err(invalid(
            "peers_from_dns",
            format!("`{service}` is not a DNS name (the headless Service, e.g. herald-peers.herald.svc.cluster.local)"),
        ));
    }
    if cfg.bootstrap || cfg.join.is_some() {
        return Err(invalid(
            "peers_from_dns",
            "decides bootstrap and join from the pod's ordinal: do not set `bootstrap` or `join` with it",
        ));
    }
    let pod = Pod::from_hostname(hostname).ok_or_else(|| {
        invalid(
            "peers_from_dns",
            format!("needs a StatefulSet pod host name `NAME-N` (HOSTNAME), got `{hostname}`"),
        )
    })?;
    cfg.peers_from_dns = Some(service.clone());
    cfg.node_id = pod.node_id();
    if cfg.advertise_host.is_none() {
        cfg.advertise_host = Some(pod.peer_name(pod.ordinal, &service));
    }
    if pod.ordinal == 0 {
        cfg.bootstrap = true;
    } else {
        cfg.join = Some(format!(
            "{}:{}",
            pod.peer_name(0, &service),
            cfg.cluster_port
        ));
    }
    Ok(Some(pod))
}

/// Looks names up through one DNS server, or the system resolver.
pub enum Lookup {
    /// The system resolver (getaddrinfo).
    System,
    /// One DNS server (`dns_resolver`).
    Server(Box<hickory_resolver::TokioResolver>, SocketAddr),
}

impl Lookup {
    /// The lookup `cfg` asks for.
    pub fn for_config(cfg: &NodeConfig) -> anyhow::Result<Lookup> {
        let Some(value) = &cfg.dns_resolver else {
            return Ok(Lookup::System);
        };
        let addr = crate::config::parse_dns_resolver(value)
            .map_err(|e| anyhow::anyhow!("dns_resolver: {e}"))?;
        use hickory_resolver::config::{
            ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
        };
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        let mut conn = ConnectionConfig::udp();
        conn.port = addr.port();
        let ns = NameServerConfig::new(addr.ip(), true, vec![conn]);
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_millis(500);
        opts.attempts = 2;
        // Pods come and go: never answer from a stale cache entry.
        opts.cache_size = 0;
        let r = hickory_resolver::Resolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![ns]),
            TokioRuntimeProvider::default(),
        )
        .with_options(opts)
        .build()?;
        Ok(Lookup::Server(Box::new(r), addr))
    }

    /// The first address `name` resolves to, or why not.
    pub async fn first_ip(&self, name: &str) -> Result<IpAddr, String> {
        match self {
            Lookup::System => tokio::net::lookup_host((name, 0))
                .await
                .map_err(|e| e.to_string())?
                .next()
                .map(|sa| sa.ip())
                .ok_or_else(|| "no address".to_string()),
            Lookup::Server(r, _) => {
                let fqdn = format!("{}.", name.trim_end_matches('.'));
                r.lookup_ip(fqdn.as_str())
                    .await
                    .map_err(|e| e.to_string())?
                    .iter()
                    .next()
                    .ok_or_else(|| "no address".to_string())
            }
        }
    }
}

/// The address a joining pod asks to join through: the lowest other ordinal whose name
/// resolves (waiting up to [`RESOLVE_WAIT`] for one), as `NAME:PORT` with the system resolver
/// (so that every retry resolves it again) or `IP:PORT` with `dns_resolver`. Falls back to
/// `SET-0`'s name when nothing resolves in time.
pub async fn join_target(cfg: &NodeConfig, pod: &Pod, lookup: &Lookup) -> String {
    let service = cfg.peers_from_dns.as_deref().unwrap_or_default();
    let port = cfg.cluster_port;
    let fallback = format!("{}:{port}", pod.peer_name(0, service));
    let deadline = Instant::now() + RESOLVE_WAIT;
    let mut last = String::new();
    loop {
        for k in (0..pod.ordinal.max(1)).filter(|k| *k != pod.ordinal) {
            let name = pod.peer_name(k, service);
            match lookup.first_ip(&name).await {
                Ok(ip) => {
                    let target = match lookup {
                        Lookup::System => format!("{name}:{port}"),
                        Lookup::Server(..) => SocketAddr::new(ip, port).to_string(),
                    };
                    tracing::info!(peer = %name, %ip, %target, "joining through a peer found in DNS");
                    return target;
                }
                Err(e) => last = format!("{name}: {e}"),
            }
        }
        if Instant::now() >= deadline {
            tracing::warn!(error = %last, target = %fallback,
                "no peer name resolved in time; joining through ordinal 0 anyway (retried)");
            return fallback;
        }
        tracing::info!(error = %last, "waiting for a peer's name in DNS");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinal_from_hostname() {
        assert_eq!(
            Pod::from_hostname("herald-0"),
            Some(Pod {
                set: "herald".into(),
                ordinal: 0
            })
        );
        let p = Pod::from_hostname("my-herald-12.herald-peers.ns.svc.cluster.local").unwrap();
        assert_eq!(
            (p.set.as_str(), p.ordinal, p.node_id()),
            ("my-herald", 12, 13)
        );
        assert_eq!(p.peer_name(0, "svc.test"), "my-herald-0.svc.test");
        for bad in ["herald", "herald-", "-3", "herald-x1", "", "herald-1a"] {
            assert_eq!(Pod::from_hostname(bad), None, "{bad}");
        }
    }

    fn sts_config() -> NodeConfig {
        NodeConfig {
            peers_from_dns: Some("herald-peers.ns.svc.cluster.local.".into()),
            ..NodeConfig::default()
        }
    }

    #[test]
    fn ordinal_zero_bootstraps_the_others_join_it() {
        let mut c = sts_config();
        apply(&mut c, "herald-0").unwrap();
        assert_eq!(c.node_id, 1);
        assert!(c.bootstrap);
        assert_eq!(c.join, None);
        assert_eq!(
            c.advertise_host.as_deref(),
            Some("herald-0.herald-peers.ns.svc.cluster.local")
        );

        let mut c = sts_config();
        apply(&mut c, "herald-2").unwrap();
        assert_eq!(c.node_id, 3);
        assert!(!c.bootstrap);
        assert_eq!(
            c.join.as_deref(),
            Some("herald-0.herald-peers.ns.svc.cluster.local:7470")
        );
        assert_eq!(
            c.advertise_host.as_deref(),
            Some("herald-2.herald-peers.ns.svc.cluster.local")
        );
    }

    #[test]
    fn refuses_what_it_cannot_decide() {
        let mut c = sts_config();
        let e = apply(&mut c, "localhost").unwrap_err().to_string();
        assert!(e.contains("NAME-N"), "{e}");
        let mut c = NodeConfig {
            bootstrap: true,
            ..sts_config()
        };
        assert!(apply(&mut c, "herald-1").is_err());
        let mut c = NodeConfig {
            peers_from_dns: Some("not a name".into()),
            ..NodeConfig::default()
        };
        assert!(apply(&mut c, "herald-1").is_err());
        let mut c = NodeConfig::default();
        assert_eq!(apply(&mut c, "herald-1").unwrap(), None);
        assert_eq!(c, NodeConfig::default());
    }

    #[test]
    fn resolver_addresses() {
        assert_eq!(
            crate::config::parse_dns_resolver("127.0.0.53").unwrap(),
            "127.0.0.53:53".parse().unwrap()
        );
        assert_eq!(
            crate::config::parse_dns_resolver("127.1.2.3:5353").unwrap(),
            "127.1.2.3:5353".parse().unwrap()
        );
        assert_eq!(
            crate::config::parse_dns_resolver("::1").unwrap(),
            "[::1]:53".parse().unwrap()
        );
        assert!(crate::config::parse_dns_resolver("dns.example").is_err());
    }
}
