//! StatefulSet mode (`--peers-from-dns SERVICE`): a pod named `SET-N` (Kubernetes sets
//! `HOSTNAME`) is node `N + 1`, advertises `SET-N.SERVICE` (the name the headless Service gives
//! it, stable across restarts while its IP is not), bootstraps the cluster when it is ordinal 0
//! and joins through `SET-0.SERVICE` (or the lowest ordinal whose name resolves) otherwise.
//! The cluster layer resumes from the data dir whenever it holds state, so a restarted pod
//! neither bootstraps again nor rejoins.
//!
//! Names are looked up through `dns_resolver` (`IP[:PORT]`) when it is set, else through the
//! system resolver (a pod's resolv.conf points at the cluster DNS).
//!
//! Scaling: a pod added by scaling up joins like any other. Scaling down deletes the highest
//! pods, and with them their names in the headless Service (which publishes not-ready pods, so
//! a pod that is only restarting keeps its name). The Raft leader watches its StatefulSet
//! members' names ([`ScaleDown`]): a member whose name has been gone (NXDOMAIN) while it was
//! unreachable for `scale_down_after` seconds is removed from the cluster, one per round.

use std::collections::HashMap;
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
        Ok(Lookup::Server(
            Box::new(uncached_resolver(Some(addr))?),
            addr,
        ))
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

/// A resolver that never answers from a cache (pods come and go): through `server` when
/// given, else through the system's configuration (resolv.conf).
fn uncached_resolver(
    server: Option<SocketAddr>,
) -> anyhow::Result<hickory_resolver::TokioResolver> {
    use hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
    };
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_millis(500);
    opts.attempts = 2;
    opts.cache_size = 0;
    let builder = match server {
        Some(addr) => {
            let mut conn = ConnectionConfig::udp();
            conn.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![conn]);
            hickory_resolver::Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => hickory_resolver::TokioResolver::builder_tokio()?,
    };
    Ok(builder.with_options(opts).build()?)
}

/// What DNS says about a pod's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// It resolves.
    Present,
    /// The name does not exist or has no address (NXDOMAIN, NODATA).
    Gone,
    /// No answer (timeout, SERVFAIL, ...): no evidence either way.
    Unknown,
}

/// Looks up `name` and says whether it exists.
pub async fn presence(resolver: &hickory_resolver::TokioResolver, name: &str) -> Presence {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match resolver.lookup_ip(fqdn.as_str()).await {
        Ok(ips) if ips.iter().next().is_some() => Presence::Present,
        Ok(_) => Presence::Gone,
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => Presence::Gone,
        Err(_) => Presence::Unknown,
    }
}

/// The pod name in a member's node-to-node `address` (`SET-N.SERVICE:PORT`) when the member
/// is a pod of `pod`'s StatefulSet under `service`; `None` for anything else (members added by
/// hand are never removed by the scale-down watch).
pub fn member_pod_name(address: &str, pod: &Pod, service: &str) -> Option<String> {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let first = host.strip_suffix(&format!(".{service}"))?;
    let other = Pod::from_hostname(first)?;
    (other.set == pod.set).then_some(host)
}

/// The leader's scale-down watch: since when each member's name has been gone while the member
/// was unreachable. See the module documentation.
#[derive(Debug, Default)]
pub struct ScaleDown {
    gone_since: HashMap<u64, Instant>,
}

impl ScaleDown {
    /// One round over the StatefulSet's members (node id, what DNS says about its name):
    /// the member to remove now, if any (at most one per round). A member that resolves, is
    /// live, or gets no DNS answer starts over; this node is never removed.
    pub fn round(
        &mut self,
        me: u64,
        members: &[(u64, Presence)],
        live: &[u64],
        now: Instant,
        after: Duration,
    ) -> Option<u64> {
        self.gone_since
            .retain(|id, _| members.iter().any(|(m, _)| m == id));
        let mut due = None;
        for &(id, p) in members {
            if id != me && p == Presence::Gone && !live.contains(&id) {
                let since = *self.gone_since.entry(id).or_insert(now);
                if due.is_none() && now.duration_since(since) >= after {
                    due = Some(id);
                }
            } else {
                self.gone_since.remove(&id);
            }
        }
        due
    }

    /// Forgets a member (removed, or a removal to retry from scratch).
    pub fn forget(&mut self, id: u64) {
        self.gone_since.remove(&id);
    }
}

/// Runs the scale-down watch until the process ends: every few seconds, on the leader only,
/// looks up every StatefulSet member's name and removes one that has been gone long enough.
pub async fn watch_scale_down(
    cluster: herald_cluster::ClusterHandle,
    pod: Pod,
    service: String,
    server: Option<SocketAddr>,
    after: Duration,
) {
    let resolver = match uncached_resolver(server) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "scale-down watch disabled: no DNS resolver");
            return;
        }
    };
    let mut state = ScaleDown::default();
    let mut tick = tokio::time::interval(SCALE_DOWN_ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cluster.status().role != herald_cluster::Role::Leader {
            state = ScaleDown::default();
            continue;
        }
        let mut members = Vec::new();
        let mut names = HashMap::new();
        for n in cluster.applied().state.nodes() {
            if let Some(name) = member_pod_name(&n.cluster_address, &pod, &service) {
                members.push((n.node_id, presence(&resolver, &name).await));
                names.insert(n.node_id, name);
            }
        }
        let live = cluster.live_nodes();
        let Some(id) = state.round(cluster.node_id(), &members, &live, Instant::now(), after)
        else {
            continue;
        };
        let name = names.get(&id).cloned().unwrap_or_default();
        tracing::warn!(node = id, pod = %name, after_s = after.as_secs(),
            "removing a member whose pod name left DNS while it was unreachable (StatefulSet scaled down)");
        let node = herald_grpc::config::NodeInfo {
            node_id: id,
            ..Default::default()
        };
        match cluster.change_membership(false, node).await {
            Ok(voters) => {
                metrics::counter!(crate::metrics::SCALED_DOWN).increment(1);
                tracing::info!(node = id, ?voters, "member removed after scale-down");
                state.forget(id);
            }
            Err(e) => {
                tracing::warn!(node = id, error = %e.message, "removing a scaled-down member failed; will retry");
                state.forget(id);
            }
        }
    }
}

/// How often the leader looks at its members' names.
const SCALE_DOWN_ROUND: Duration = Duration::from_secs(2);

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

    #[test]
    fn member_pod_names_only_for_this_set_under_this_service() {
        let pod = Pod::from_hostname("herald-1").expect("pod");
        let svc = "herald-peers.ns.svc.cluster.local";
        assert_eq!(
            member_pod_name("herald-3.herald-peers.ns.svc.cluster.local:7470", &pod, svc),
            Some("herald-3.herald-peers.ns.svc.cluster.local".to_string())
        );
        assert_eq!(
            member_pod_name(
                "HERALD-0.herald-peers.ns.svc.cluster.local.:7470",
                &pod,
                svc
            ),
            Some("herald-0.herald-peers.ns.svc.cluster.local".to_string())
        );
        for other in [
            "10.0.0.7:7470",
            "other-2.herald-peers.ns.svc.cluster.local:7470",
            "herald-2.elsewhere.svc.cluster.local:7470",
            "herald-x.herald-peers.ns.svc.cluster.local:7470",
        ] {
            assert_eq!(member_pod_name(other, &pod, svc), None, "{other}");
        }
    }

    #[test]
    fn scale_down_removes_a_member_gone_and_unreachable_long_enough_one_at_a_time() {
        use Presence::*;
        let after = Duration::from_secs(60);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut sd = ScaleDown::default();
        let live = [1, 2];
        // Node 3 and 4 gone from DNS and unreachable: not before `after` has passed.
        let m = [(1, Present), (2, Present), (3, Gone), (4, Gone)];
        assert_eq!(sd.round(1, &m, &live, at(0), after), None);
        assert_eq!(sd.round(1, &m, &live, at(59), after), None);
        // Then one per round.
        assert_eq!(sd.round(1, &m, &live, at(60), after), Some(3));
        sd.forget(3);
        let m = [(1, Present), (2, Present), (4, Gone)];
        assert_eq!(sd.round(1, &m, &live, at(61), after), Some(4));
    }

    #[test]
    fn scale_down_starts_over_on_any_sign_of_the_member() {
        use Presence::*;
        let after = Duration::from_secs(10);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut sd = ScaleDown::default();
        assert_eq!(sd.round(1, &[(3, Gone)], &[1], at(0), after), None);
        // The name came back (a restarting pod): the clock starts over.
        assert_eq!(sd.round(1, &[(3, Present)], &[1], at(5), after), None);
        assert_eq!(sd.round(1, &[(3, Gone)], &[1], at(6), after), None);
        assert_eq!(sd.round(1, &[(3, Gone)], &[1], at(15), after), None);
        // Live again (reachable though DNS lags): starts over.
        assert_eq!(sd.round(1, &[(3, Gone)], &[1, 3], at(16), after), None);
        assert_eq!(sd.round(1, &[(3, Gone)], &[1], at(17), after), None);
        // No DNS answer is no evidence: starts over.
        assert_eq!(sd.round(1, &[(3, Unknown)], &[1], at(30), after), None);
        assert_eq!(sd.round(1, &[(3, Gone)], &[1], at(31), after), None);
        assert_eq!(sd.round(1, &[(3, Gone)], &[1], at(41), after), Some(3));
        // Never this node itself, however gone its name looks.
        let mut sd = ScaleDown::default();
        assert_eq!(sd.round(1, &[(1, Gone)], &[], at(0), after), None);
        assert_eq!(sd.round(1, &[(1, Gone)], &[], at(100), after), None);
    }
}
