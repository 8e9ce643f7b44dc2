//! `herald agent`: one node. [`run`] is the library entry point that the binary and the tests
//! call with already-bound listeners (STYLE.md habit 1).
//!
//! Two planes (DESIGN §3). The **control plane** — the Raft transport, node-to-node gRPC,
//! liveness pings, the admin API and HTTP — runs on its own multi-threaded tokio runtime
//! (the Raft loop keeps its own thread), so client traffic never delays a heartbeat or an
//! admin call. The **data plane** — c2s sessions and user actors — runs on N actix arbiters
//! (`--workers`, one per core by default); the c2s accept loops hand each connection to the
//! least-loaded arbiter, and a user's actor starts on the arbiter of its first session (found
//! by every thread in the node's directory, `crate::xmpp::directory`).
//!
//! Start-up: metrics recorder → TLS material (dev CA on first start) → cluster layer (bootstrap,
//! join or resume) → node-to-node, admin and HTTP servers → readiness. Shutdown (SIGTERM, or this
//! node being removed): stop accepting admin calls and let in-flight ones finish, stop the Raft
//! loop (everything acknowledged is already fsynced), then the node-to-node and HTTP servers.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use herald_cluster::client::PeerOptions;
use herald_cluster::service::NodeApiService;
use herald_cluster::{ClusterConfig, ClusterHandle, RaftConfig, RaftStatus};
use herald_grpc::config::NodeInfo;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::admin::AdminService;
use crate::config::NodeConfig;
use crate::http::{HttpState, Readiness};

/// The node's sockets, bound before [`run`] so that tests can use port 0.
pub struct Listeners {
    pub c2s: std::net::TcpListener,
    pub c2s_tls: std::net::TcpListener,
    pub s2s: std::net::TcpListener,
    pub s2s_tls: std::net::TcpListener,
    /// SIP over TCP (served by the routing node; the others answer 503).
    pub sip: std::net::TcpListener,
    /// SIP over mutual TLS (same service as `sip`, peers checked against `tls-peer`).
    pub sip_tls: std::net::TcpListener,
    pub cluster: std::net::TcpListener,
    pub admin: std::net::TcpListener,
    pub http: std::net::TcpListener,
}

impl Listeners {
    /// Binds every listener on the configured address and ports.
    pub fn bind(cfg: &NodeConfig) -> anyhow::Result<Self> {
        let bind = |port: u16, what: &str| -> anyhow::Result<std::net::TcpListener> {
            let addr = cfg.addr(port);
            let l = std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen for {what} on {addr}"))?;
            l.set_nonblocking(true)?;
            Ok(l)
        };
        Ok(Listeners {
            c2s: bind(cfg.c2s_port, "XMPP c2s (STARTTLS)")?,
            c2s_tls: bind(cfg.c2s_tls_port, "XMPP c2s (direct TLS)")?,
            s2s: bind(cfg.s2s_port, "XMPP s2s (federation)")?,
            s2s_tls: bind(cfg.s2s_tls_port, "XMPP s2s (federation, direct TLS)")?,
            sip: bind(cfg.sip_port, "SIP over TCP (federation)")?,
            sip_tls: bind(cfg.sip_tls_port, "SIP over TLS (federation)")?,
            cluster: bind(cfg.cluster_port, "node-to-node gRPC")?,
            admin: bind(cfg.admin_port, "admin gRPC")?,
            http: bind(cfg.http_port, "HTTP (metrics, health)")?,
        })
    }
}

/// How the node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop (signal).
    Shutdown,
    /// Removed from the cluster by an admin.
    Removed,
}

fn local(l: &std::net::TcpListener) -> anyhow::Result<SocketAddr> {
    Ok(l.local_addr()?)
}

/// Threads of the control-plane runtime: enough that a slow admin call or a TLS handshake with
/// a peer never holds up a liveness ping, few enough to leave the cores to the data plane.
pub const CONTROL_THREADS: usize = 2;

/// How much nicer than the rest of the process the data-plane threads run. Within the node's
/// own CPU share (a container's cgroup, or the machine), a busy data plane then yields to the
/// control plane — heartbeats, Raft, the admin API — whenever both want a core, instead of
/// competing as equals; with a core to spare it changes nothing.
pub const DATA_PLANE_NICE: i32 = 5;

/// Runs a node until `shutdown` resolves or the node is removed from its cluster. Call it inside
/// an actix `System` (the data-plane arbiters are started from it).
pub async fn run(
    cfg: NodeConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Exit> {
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(CONTROL_THREADS)
        .thread_name("herald-control")
        .enable_all()
        .build()
        .context("starting the control-plane runtime")?;
    let workers = cfg.effective_workers();
    let arbiters: Vec<actix_rt::Arbiter> = (0..workers)
        .map(|i| {
            actix_rt::Arbiter::with_tokio_rt(move || {
                herald_cluster::lower_priority(DATA_PLANE_NICE);
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name(format!("herald-data-{i}"))
                    .build()
                    .expect("a current-thread runtime for a data-plane arbiter")
            })
        })
        .collect();
    tracing::info!(
        workers,
        control_threads = CONTROL_THREADS,
        "data-plane arbiters and control-plane runtime started"
    );
    let handles: Vec<actix_rt::ArbiterHandle> = arbiters.iter().map(|a| a.handle()).collect();
    let result = run_planes(cfg, listeners, shutdown, control.handle().clone(), handles).await;
    for a in &arbiters {
        a.stop();
    }
    // Whatever the control plane still runs (idle streams, lingering connections) ends here.
    control.shutdown_background();
    result
}

async fn run_planes(
    mut cfg: NodeConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    control: tokio::runtime::Handle,
    arbiters: Vec<actix_rt::ArbiterHandle>,
) -> anyhow::Result<Exit> {
    // StatefulSet mode, first start: find a peer to join through (bounded wait for DNS).
    if let (Some(_), Some(pod)) = (&cfg.join, statefulset_pod(&cfg)) {
        if !cfg.data_dir.join("raft.redb").exists() {
            let c = cfg.clone();
            let target = control
                .spawn(async move {
                    let lookup = crate::peers_dns::Lookup::for_config(&c)?;
                    anyhow::Ok(crate::peers_dns::join_target(&c, &pod, &lookup).await)
                })
                .await
                .context("finding a peer to join")??;
            cfg.join = Some(target);
        }
    }
    // The synchronous set-up below binds its sockets and spawns its tasks on the control plane.
    // The guard is dropped before the first `.await` (it must never be held across one).
    let control_guard = control.enter();
    // Ports may have been 0: advertise what was really bound.
    cfg.cluster_port = local(&listeners.cluster)?.port();
    cfg.admin_port = local(&listeners.admin)?.port();
    cfg.http_port = local(&listeners.http)?.port();

    let prometheus = crate::metrics::install().context("installing the metrics recorder")?;
    crate::metrics::spawn_upkeep(prometheus.clone());
    crate::admin::describe_metrics();

    // Private keys others can read are refused before anything uses them.
    crate::secrets::check_key_files(&cfg)?;
    let secrets = crate::secrets::load(&cfg, cfg.join_target().is_some())
        .context("loading the secrets key")?;
    let tls = crate::tls::load_or_generate(&cfg).context("loading TLS material")?;
    tracing::info!(cert = %tls.cert_path.display(), ca = ?tls.ca_pem_path, "TLS certificate ready");
    crate::metrics::describe_node();
    record_cert_expiry("c2s", &tls.cert_path);

    let me = NodeInfo {
        node_id: cfg.node_id,
        cluster_address: cfg.cluster_advertise(),
        admin_address: cfg.admin_advertise(),
    };
    // Mutual TLS between nodes when a cluster CA is configured.
    let cluster_tls = crate::tls::cluster_tls(&cfg).context("node-to-node TLS material")?;
    // (Off loopback, NodeConfig::validate has already required cluster_ca.)
    if let Some(t) = &cluster_tls {
        tracing::info!(cert = %t.cert_path.display(), "node-to-node calls use mutual TLS");
        record_cert_expiry("cluster", &t.cert_path);
    }
    let peer = PeerOptions {
        local_address: (!cfg.bind.is_unspecified()).then_some(cfg.bind),
        token: cfg.cluster_token.as_ref().map(|s| s.expose().to_string()),
        max_message_bytes: cfg.max_grpc_message_bytes,
        tls: cluster_tls.as_ref().map(|t| {
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&t.ca_pem))
                .identity(tonic::transport::Identity::from_pem(
                    &t.cert_pem,
                    &t.key_pem,
                ))
        }),
    };
    let cluster = herald_cluster::start(
        ClusterConfig {
            raft: RaftConfig {
                node_id: cfg.node_id,
                tick: cfg.raft.tick(),
                election_ticks: cfg.raft.election_ticks,
                heartbeat_ticks: cfg.raft.heartbeat_ticks,
                snapshot_entries: cfg.raft.snapshot_entries,
                compaction_lag: cfg.raft.compaction_lag,
                promote_lag: 100,
                max_size_per_msg: (cfg.max_grpc_message_bytes as u64 / 4).min(1 << 20),
                proposal_timeout: Duration::from_secs(10),
            },
            data_dir: cfg.data_dir.clone(),
            me: me.clone(),
            bootstrap_domains: cfg.domains.clone(),
            join: cfg.join_target(),
            peer: peer.clone(),
            secrets: secrets.clone(),
        },
        &crate::telemetry::raft_logger(),
    )
    .context("starting the replicated config store")?;
    let handle = cluster.handle.clone();
    let local_facts = std::sync::Arc::new(crate::local::LocalFacts::new(&cfg, &tls));
    handle.set_local_node(local_facts.clone());
    if let (Some(pod), Some(service)) = (statefulset_pod(&cfg), cfg.peers_from_dns.clone()) {
        if cfg.scale_down_after > 0 {
            let server = cfg
                .dns_resolver
                .as_deref()
                .map(crate::config::parse_dns_resolver)
                .transpose()
                .map_err(|e| anyhow::anyhow!("dns_resolver: {e}"))?;
            control.spawn(crate::peers_dns::watch_scale_down(
                handle.clone(),
                pod,
                service,
                server,
                Duration::from_secs(cfg.scale_down_after),
            ));
        }
    }

    // Node-to-node API.
    let (cluster_stop_tx, cluster_stop) = watch::channel(false);
    let cluster_svc = NodeApiService::grpc(
        handle.clone(),
        peer.token.clone(),
        cfg.max_grpc_message_bytes,
        cluster_tls.is_some(),
    );
    let cluster_listener = tokio::net::TcpListener::from_std(listeners.cluster)?;
    let cluster_addr = cluster_listener.local_addr()?;
    let mut cluster_builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(crate::idle::KEEPALIVE))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)));
    if let Some(t) = &cluster_tls {
        // Client certificates are required and must chain to the cluster CA; who they name
        // is checked per call by the service.
        cluster_builder = cluster_builder
            .tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(
                        &t.cert_pem,
                        &t.key_pem,
                    ))
                    .client_ca_root(tonic::transport::Certificate::from_pem(&t.ca_pem)),
            )
            .context("node-to-node TLS configuration")?;
    }
    let cluster_server = tokio::spawn(
        cluster_builder
            .add_service(cluster_svc)
            .serve_with_incoming_shutdown(
                nodelay_incoming(cluster_listener),
                wait_true(cluster_stop),
            ),
    );

    // Admin API.
    let (admin_stop_tx, admin_stop) = watch::channel(false);
    let (calendar_board_tx, calendar_board) = crate::calendar::board();
    let admin_svc = AdminService::grpc(
        handle.clone(),
        cfg.admin_token.as_ref().map(|s| s.expose().to_string()),
        cfg.max_grpc_message_bytes,
        calendar_board,
        crate::admin::AuditOptions {
            secrets,
            keep: cfg.audit_keep,
        },
    );
    let admin_listener = tokio::net::TcpListener::from_std(listeners.admin)?;
    let admin_addr = admin_listener.local_addr()?;
    let mut admin_builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(crate::idle::KEEPALIVE))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)));
    if let Some(ca) = &cfg.admin_client_ca {
        // Mutual TLS: only clients with a certificate from this CA get in.
        let read = |p: &std::path::Path| {
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))
        };
        let tls_cfg = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                read(&tls.cert_path)?,
                read(&tls.key_path)?,
            ))
            .client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
        admin_builder = admin_builder
            .tls_config(tls_cfg)
            .context("admin API TLS configuration")?;
        tracing::info!(client_ca = %ca.display(), "admin API requires client certificates");
    }
    let admin_server = tokio::spawn(
        admin_builder
            .add_service(admin_svc)
            .serve_with_incoming_shutdown(nodelay_incoming(admin_listener), wait_true(admin_stop)),
    );

    // HTTP: metrics and health.
    let (ready_tx, ready_rx) = watch::channel(Readiness {
        ready: false,
        reasons: vec!["starting".into()],
    });
    let ready_tx = std::sync::Arc::new(ready_tx);
    let (stopping_tx, stopping) = watch::channel(false);
    tokio::spawn(track_readiness(handle.clone(), ready_tx.clone(), stopping));
    let (http_stop_tx, http_stop) = watch::channel(false);
    let http_listener = tokio::net::TcpListener::from_std(listeners.http)?;
    let http_addr = http_listener.local_addr()?;
    let http_server = tokio::spawn(crate::http::serve(
        http_listener,
        HttpState {
            metrics: prometheus,
            ready: ready_rx,
            on_scrape: Some(std::sync::Arc::new({
                let handle = handle.clone();
                move || {
                    // Hashed once per applied version (cached), not per write.
                    if let Some(v) = crate::metrics::digest_value(handle.applied().digest()) {
                        metrics::gauge!(crate::metrics::CONFIG_DIGEST).set(v);
                    }
                }
            })),
        },
        wait_true(http_stop),
    ));

    drop(control_guard);

    // XMPP clients: data plane.
    let c2s_addr = local(&listeners.c2s)?;
    let c2s_tls_addr = local(&listeners.c2s_tls)?;
    let s2s_addr = local(&listeners.s2s)?;
    let sip_addr = local(&listeners.sip)?;
    let sip_tls_addr = local(&listeners.sip_tls)?;
    let s2s_arbiter = arbiters[0].clone();
    let calendar_arbiter = arbiters[0].clone();
    let certs = std::sync::Arc::new(
        crate::tls::certs::CertStore::new(
            &tls,
            cfg.tls_cert.is_some(),
            cfg.tls_cert_dir.clone(),
            cfg.tls_cert.is_none().then(|| cfg.tls_dir()),
        )
        .context("TLS certificates")?,
    );
    local_facts.set_certs(certs.clone());
    {
        let h = handle.clone();
        certs.set_serves(Box::new(move |d| {
            let a = h.applied();
            a.state
                .peek(herald_grpc::config::ObjectKind::Domain, d)
                .is_some()
                || a.state.is_email_domain(d)
        }));
        let c = certs.clone();
        control.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let c = c.clone();
                let _ = tokio::task::spawn_blocking(move || c.reload_changed()).await;
            }
        });
    }
    let tls_server =
        crate::tls::server_config_resolving(certs.clone()).context("c2s TLS configuration")?;
    let xmpp = crate::xmpp::start(
        handle.clone(),
        crate::xmpp::Planes {
            control: control.clone(),
            arbiters,
        },
        tls_server,
        crate::xmpp::XmppListeners {
            c2s: listeners.c2s,
            c2s_tls: listeners.c2s_tls,
        },
        herald_xmpp::codec::Limits {
            max_stanza_bytes: cfg.xmpp.max_stanza_bytes,
            max_depth: cfg.xmpp.max_depth,
        },
        crate::im::ImLimits {
            offline_max: cfg.xmpp.offline_max,
            roster_max: cfg.xmpp.roster_max,
            blocked_max: cfg.xmpp.blocked_max,
            max_user_bytes: cfg.xmpp.max_user_bytes,
            ..crate::im::ImLimits::default()
        },
        crate::xmpp::SessionLimits {
            max_connections: cfg.xmpp.max_connections,
            max_connections_per_source: cfg.xmpp.max_connections_per_source,
            max_stanzas_per_second: cfg.xmpp.max_stanzas_per_second,
            max_bytes_per_second: cfg.xmpp.max_bytes_per_second,
        },
    )
    .context("starting the XMPP service")?;
    crate::calendar::start(
        xmpp.clone(),
        &calendar_arbiter,
        cfg.tls_ca.as_deref(),
        Duration::from_secs(cfg.calendar_poll_seconds),
        Duration::from_secs(cfg.calendar_timeout_seconds),
        calendar_board_tx,
    )
    .context("starting the calendar service")?;
    let limits = herald_xmpp::codec::Limits {
        max_stanza_bytes: cfg.xmpp.max_stanza_bytes,
        max_depth: cfg.xmpp.max_depth,
    };
    let s2s = {
        let _on_control_plane = control.enter();

        let dns = match &cfg.dns_resolver {
            Some(r) => Some(crate::config::parse_dns_resolver(r).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let s2s = crate::s2s::S2s::new(
            handle.clone(),
            &xmpp,
            certs.clone(),
            cfg.tls_ca.as_deref(),
            dns,
            herald_xmpp::s2s::DEFAULT_PORT,
            limits,
            s2s_arbiter,
        )
        .context("starting XMPP federation")?;
        let _ = xmpp.s2s.set(s2s.clone());
        control.spawn(s2s.clone().follow_enabled());
        let listener = tokio::net::TcpListener::from_std(listeners.s2s)?;
        control.spawn(crate::s2s::accept_loop(listener, s2s.clone(), false));
        let listener = tokio::net::TcpListener::from_std(listeners.s2s_tls)?;
        control.spawn(crate::s2s::accept_loop(listener, s2s.clone(), true));
        s2s
    };
    let sip = {
        let _on_control_plane = control.enter();
        let host = match &cfg.advertise_host {
            Some(h) => h.clone(),
            None if !sip_addr.ip().is_unspecified() => sip_addr.ip().to_string(),
            None => me_host(&me.cluster_address),
        };
        let sip = crate::sip::Sip::new(
            handle.clone(),
            &xmpp,
            crate::sip::edge::Local {
                host,
                port: sip_addr.port(),
            },
            herald_sip::Limits::default(),
            control.clone(),
            s2s.dns.clone(),
        );
        let h = handle.clone();
        let first_domain: crate::sip::tls::DefaultDomain = Box::new(move || {
            h.applied()
                .state
                .list(herald_grpc::config::ObjectKind::Domain)
                .into_iter()
                .filter_map(|o| o.body.map(|b| b.key()))
                .min()
                .unwrap_or_default()
        });
        match crate::sip::tls::SipTls::new(
            sip_tls_addr.port(),
            certs.clone(),
            cfg.tls_ca.as_deref(),
            tls.ca_pem_path.as_deref(),
            first_domain,
        ) {
            Ok(t) => {
                let _ = sip.tls.set(std::sync::Arc::new(t));
            }
            // The TLS listener then closes every connection (counted, logged).
            Err(e) => tracing::error!(error = %e, "SIP over TLS is unavailable: no trust anchors"),
        }
        let _ = xmpp.sip.set(sip.clone());
        let listener = tokio::net::TcpListener::from_std(listeners.sip)?;
        control.spawn(crate::sip::accept_loop(
            listener,
            sip.clone(),
            false,
            cfg.sip_relay,
        ));
        let listener = tokio::net::TcpListener::from_std(listeners.sip_tls)?;
        control.spawn(crate::sip::accept_loop(
            listener,
            sip.clone(),
            true,
            cfg.sip_relay,
        ));
        control.spawn(sip.clone().tick_loop());
        sip
    };

    tracing::info!(
        node = cfg.node_id,
        data_dir = %cfg.data_dir.display(),
        c2s = %c2s_addr,
        c2s_tls = %c2s_tls_addr,
        s2s = %s2s_addr,
        sip = %sip_addr,
        sip_tls = %sip_tls_addr,
        cluster = %cluster_addr,
        admin = %admin_addr,
        http = %http_addr,
        advertise = %me.cluster_address,
        join = ?cfg.join_target(),
        "herald node running"
    );

    let mut status = handle.watch_status();
    // The user-state group's loop stopping on its own (a storage failure) stops the node too:
    // a node that cannot store users' data must not keep serving them.
    let mut users_status = handle.users_group().map(|u| u.status.clone());
    let users_stopped = async {
        match users_status.as_mut() {
            Some(rx) => wait_stopped(rx).await,
            None => std::future::pending().await,
        }
    };
    let exit = tokio::select! {
        _ = shutdown => Exit::Shutdown,
        st = wait_stopped(&mut status) => {
            if st.removed { Exit::Removed } else { Exit::Shutdown }
        }
        st = users_stopped => {
            if st.removed {
                // Its leader removes a node from that group once the config group did.
                Exit::Removed
            } else {
                tracing::error!("the user-state Raft loop stopped; stopping the node");
                Exit::Shutdown
            }
        }
    };
    match exit {
        Exit::Removed => tracing::warn!("this node was removed from the cluster; shutting down"),
        Exit::Shutdown => tracing::info!("shutting down"),
    }

    // 0. Not ready from here on: load balancers stop sending new clients before any listener
    //    or session closes.
    let _ = stopping_tx.send(true);
    ready_tx.send_replace(Readiness::not_ready(["shutting down"]));
    s2s.stop();
    // SIP watchers are told their subscriptions end (`deactivated`: they subscribe again, and
    // reach the next routing node); the NOTIFYs get a moment on their links.
    if sip.deactivate() > 0 {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    sip.stop();
    // 1. Tell clients (system-shutdown) so they reconnect elsewhere; give the sessions a moment
    //    to hand unacknowledged messages back to their accounts.
    {
        let n = xmpp.shutdown_sessions().await;
        if n > 0 {
            tracing::info!(sessions = n, "closing client sessions");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    // 1b. Tell peers this node is leaving (its status replies say so): within a liveness tick
    //     they stop treating it as a home and route its users' stanzas to their next home,
    //     while what already reached it is still stored through Raft.
    //     This node stops serving as a home at once (its user actors hold what they get); the
    //     leader commits a placement view without it; then what they held goes to the new
    //     homes.
    handle.routes().set_stopping();
    let deadline = tokio::time::Instant::now() + LEAVE_NOTICE;
    while handle.status().voters.len() > 1
        && handle.placement().nodes.contains(&handle.node_id())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 2. Stop accepting admin calls; in-flight ones finish (bounded by the grace period).
    let grace = cfg.shutdown_grace();
    let _ = admin_stop_tx.send(true);
    if tokio::time::timeout(grace, admin_server).await.is_err() {
        tracing::warn!("admin calls still running after the grace period; stopping anyway");
    }
    // 3. Stop the Raft loops and wait for their threads. A removed node first waits to be out
    //    of the user-state group as well (that removal needs its acknowledgement).
    if matches!(exit, Exit::Removed) && !handle.leave_users_group(Duration::from_secs(5)).await {
        tracing::warn!("still a member of the user-state group after 5 s; stopping anyway");
    }
    handle.shutdown();
    let (config_thread, users_thread) = (cluster.thread, cluster.users_thread);
    let joined =
        tokio::task::spawn_blocking(move || (config_thread.join(), users_thread.join())).await;
    let loop_result = match joined {
        Ok((Ok(c), Ok(u))) => c
            .map_err(anyhow::Error::from)
            .and(u.map_err(|e| anyhow::anyhow!("user-state group: {e}"))),
        Ok(_) => Err(anyhow::anyhow!("a raft thread panicked")),
        Err(e) => Err(anyhow::anyhow!("joining the raft threads: {e}")),
    };
    // 4. Node-to-node and HTTP last.
    let _ = cluster_stop_tx.send(true);
    let _ = http_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), cluster_server).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), http_server).await;
    loop_result.context("the raft loop failed")?;
    tracing::info!("stopped cleanly");
    Ok(exit)
}

/// How long a stopping node waits for the leader to take it out of the placement view (two
/// liveness ticks and a commit normally take well under a second).
const LEAVE_NOTICE: Duration = Duration::from_millis(5000);

/// Exports when the certificate at `path` expires (a warning if it cannot be read).
fn record_cert_expiry(which: &'static str, path: &std::path::Path) {
    match crate::tls::not_after(path) {
        Ok(t) => crate::tls::record_expiry(which, t),
        Err(e) => {
            tracing::warn!(certificate = which, error = %e, "cannot read the certificate's expiry")
        }
    }
}

/// The pod, in StatefulSet mode (`peers_from_dns`).
fn statefulset_pod(cfg: &NodeConfig) -> Option<crate::peers_dns::Pod> {
    cfg.peers_from_dns.as_ref()?;
    crate::peers_dns::Pod::from_hostname(&crate::peers_dns::hostname())
}

/// Accepted connections with Nagle's algorithm off. tonic applies its own `tcp_nodelay` only to
/// the listeners it binds itself, not to an incoming stream it is handed: without this, a
/// response written in several pieces waited for the client's delayed ACK (`cluster status`
/// on a 3-node cluster took 40 ms, for 1 ms of work).
/// Connections that send nothing for [`crate::idle::GRPC_IDLE`] are closed (HTTP/2 keepalive
/// pings keep live ones busy).
fn nodelay_incoming(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<crate::idle::Idle<tokio::net::TcpStream>>> {
    use tokio_stream::StreamExt as _;
    TcpListenerStream::new(listener).map(|conn| {
        conn.map(|tcp| {
            let _ = tcp.set_nodelay(true);
            crate::idle::Idle::new(tcp, crate::idle::GRPC_IDLE)
        })
    })
}

async fn wait_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn wait_stopped(rx: &mut watch::Receiver<RaftStatus>) -> RaftStatus {
    match rx.wait_for(|s| s.stopped).await {
        Ok(s) => s.clone(),
        // The loop is gone without saying so: treat it as stopped.
        Err(_) => RaftStatus {
            stopped: true,
            ..Default::default()
        },
    }
}

/// Ready when this node is a voter, knows a leader, and has applied what it knows committed,
/// and is a member of the user-state group that knows its leader.
async fn track_readiness(
    handle: ClusterHandle,
    tx: std::sync::Arc<watch::Sender<Readiness>>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut rx = handle.watch_status();
    let mut urx = handle.users_group().map(|u| u.status.clone());
    loop {
        if *stopping.borrow_and_update() {
            // The shutdown path has said "shutting down"; nothing overrides it.
            return;
        }
        let st = rx.borrow_and_update().clone();
        let mut reasons = Vec::new();
        if st.stopped {
            reasons.push("raft loop stopped".to_string());
        }
        if st.learners.contains(&handle.node_id()) {
            reasons.push("a learner catching up; not yet a voter".to_string());
        } else if !st.voters.contains(&handle.node_id()) {
            reasons.push("not (yet) a member of the cluster".to_string());
        }
        if st.leader_id == 0 {
            reasons.push("no raft leader known".to_string());
        }
        if st.applied < st.commit {
            reasons.push(format!(
                "catching up: applied {} of {} committed",
                st.applied, st.commit
            ));
        }
        if let Some(u) = urx.as_mut().map(|rx| rx.borrow_and_update().clone()) {
            if u.stopped {
                reasons.push("user-state raft loop stopped".to_string());
            } else if !u.voters.contains(&handle.node_id())
                && !u.learners.contains(&handle.node_id())
            {
                reasons.push("not (yet) a member of the user-state group".to_string());
            } else if u.leader_id == 0 {
                reasons.push("no user-state group leader known".to_string());
            }
        }
        let r = Readiness {
            ready: reasons.is_empty(),
            reasons,
        };
        tx.send_if_modified(|cur| {
            // Checked under the channel's lock: once shutdown has begun, never "ready" again.
            if *stopping.borrow() {
                return false;
            }
            if *cur != r {
                *cur = r;
                true
            } else {
                false
            }
        });
        if st.stopped {
            return;
        }
        let users_changed = async {
            match urx.as_mut() {
                Some(u) => u.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            ok = users_changed => if !ok { urx = None },
            _ = stopping.changed() => {}
        }
    }
}

/// The host part of an advertised `HOST:PORT` (brackets of an IPv6 literal removed).
fn me_host(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}
