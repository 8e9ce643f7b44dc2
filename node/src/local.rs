//! This node's side of the troubleshooter and of `herald log`: the facts the cluster layer
//! hands to whoever asks (certificate chain, trust anchors, advertised host and ports, log
//! filter) and the run-time log filter change.

use herald_cluster::local::LocalNode;
use std::sync::{Arc, OnceLock};

use herald_grpc::cluster::{CertInForce, CertsState, LogFilterChange, NodeFacts};
use herald_grpc::config::{ErrorCode, ErrorDetail};

use crate::config::NodeConfig;
use crate::log_filter::{self, LogFilterError};
use crate::tls::certs::CertStore;
use crate::tls::TlsMaterial;

/// What this node reports about itself; built once at start.
pub struct LocalFacts {
    tls_chain: Vec<Vec<u8>>,
    tls_anchors: Vec<Vec<u8>>,
    advertise_host: String,
    s2s_port: u32,
    sip_tls_port: u32,
    /// The certificates presented to clients and peers; set once they are loaded.
    certs: OnceLock<Arc<CertStore>>,
}

impl LocalFacts {
    /// The facts of a node with `cfg` presenting `tls`. The development CA (when the node
    /// uses one) is a trust anchor it knows; a missing or unreadable one is simply left out.
    pub fn new(cfg: &NodeConfig, tls: &TlsMaterial) -> Self {
        let tls_anchors = tls
            .ca_pem_path
            .as_deref()
            .and_then(|p| crate::tls::read_certs(p).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.as_ref().to_vec())
            .collect();
        LocalFacts {
            tls_chain: tls.cert_chain.iter().map(|c| c.as_ref().to_vec()).collect(),
            tls_anchors,
            advertise_host: cfg.advertise_host_or_ip(),
            s2s_port: cfg.s2s_port.into(),
            sip_tls_port: cfg.sip_tls_port.into(),
            certs: OnceLock::new(),
        }
    }

    /// Hands over the certificate store (`herald cluster reload-certs` re-reads it).
    pub fn set_certs(&self, certs: Arc<CertStore>) {
        let _ = self.certs.set(certs);
    }
}

/// The error class of a refused log filter change.
pub fn log_filter_error(e: &LogFilterError) -> ErrorDetail {
    let code = match e {
        LogFilterError::Invalid { .. } | LogFilterError::Empty => ErrorCode::InvalidArgument,
        LogFilterError::NotReloadable => ErrorCode::FailedPrecondition,
        LogFilterError::Reload(_) => ErrorCode::Internal,
    };
    ErrorDetail::new(code, e.to_string())
}

impl LocalNode for LocalFacts {
    fn facts(&self) -> NodeFacts {
        NodeFacts {
            tls_chain: self.tls_chain.clone(),
            tls_anchors: self.tls_anchors.clone(),
            advertise_host: self.advertise_host.clone(),
            s2s_port: self.s2s_port,
            sip_tls_port: self.sip_tls_port,
            log_filter: log_filter::current().unwrap_or_default(),
            ..Default::default()
        }
    }

    fn log_filter(&self, change: &LogFilterChange) -> Result<String, ErrorDetail> {
        if change.directives.trim().is_empty() && !change.reset {
            return log_filter::current()
                .ok_or_else(|| log_filter_error(&LogFilterError::NotReloadable));
        }
        log_filter::change(&change.directives, change.reset).map_err(|e| log_filter_error(&e))
    }

    fn reload_certs(&self) -> Result<CertsState, ErrorDetail> {
        let certs = self.certs.get().ok_or_else(|| {
            ErrorDetail::new(
                ErrorCode::Unavailable,
                "this node is still starting (certificates not loaded yet)",
            )
        })?;
        let report = certs.reload(true);
        Ok(CertsState {
            reloaded: report.reloaded,
            failures: report.failures,
            certificates: certs
                .in_force()
                .into_iter()
                .map(|c| CertInForce {
                    name: c.name,
                    path: c.path.map(|p| p.display().to_string()).unwrap_or_default(),
                    dns_names: c.dns_names,
                    not_after_unix: c.not_after,
                })
                .collect(),
        })
    }
}

/// The admin `ReloadCerts` reply: certificate files re-read on every member, or on this node
/// only. A member that cannot be asked is reported with its error, not hidden.
pub async fn reload_certs_reply(
    cluster: &herald_cluster::ClusterHandle,
    this_node_only: bool,
) -> Result<herald_grpc::admin::ReloadCertsReply, tonic::Status> {
    let results = if this_node_only {
        let r = cluster.local_reload_certs();
        if let Err(e) = &r {
            return Err(e.to_status());
        }
        vec![(cluster.node_id(), r)]
    } else {
        cluster.reload_certs_everywhere().await
    };
    tracing::info!(this_node_only, "certificate reload requested");
    let nodes = results
        .into_iter()
        .map(|(node_id, r)| match r {
            Ok(state) => herald_grpc::admin::NodeCerts {
                node_id,
                error: String::new(),
                state: Some(state),
            },
            Err(e) => herald_grpc::admin::NodeCerts {
                node_id,
                error: e.to_status().message().to_string(),
                state: None,
            },
        })
        .collect();
    Ok(herald_grpc::admin::ReloadCertsReply { nodes })
}

/// The admin `Diagnose` reply: every member's facts as this node gathered them.
pub async fn diagnose(
    cluster: &herald_cluster::ClusterHandle,
) -> herald_grpc::admin::DiagnoseReply {
    let members = cluster
        .member_facts()
        .await
        .into_iter()
        .map(|m| {
            let (facts, error) = match m.facts {
                Ok(f) => (Some(f), String::new()),
                Err(e) => (None, e.message),
            };
            herald_grpc::admin::MemberFacts {
                id: m.node.node_id,
                address: m.node.cluster_address,
                admin_address: m.node.admin_address,
                error,
                facts,
                rtt_us: m.rtt.as_micros().try_into().unwrap_or(u64::MAX),
                clock_offset_ms: m.clock_offset_ms,
            }
        })
        .collect();
    herald_grpc::admin::DiagnoseReply {
        answered_by: cluster.node_id(),
        members,
    }
}

/// The admin `GetLogFilter` / `SetLogFilter` reply: `change` applied on this node, or on every
/// member with `all_nodes`. The directives are checked here first, so a bad one is refused
/// with INVALID_ARGUMENT before any node changes.
pub async fn log_filter_reply(
    cluster: &herald_cluster::ClusterHandle,
    change: LogFilterChange,
    all_nodes: bool,
) -> Result<herald_grpc::admin::LogFilterReply, tonic::Status> {
    if !change.directives.trim().is_empty() {
        log_filter::parse_change(&change.directives)
            .map_err(|e| log_filter_error(&e).to_status())?;
    }
    let results = if all_nodes {
        cluster.log_filter_everywhere(&change).await
    } else {
        vec![(cluster.node_id(), cluster.local_log_filter(&change))]
    };
    if !all_nodes {
        if let Some((_, Err(e))) = results.first() {
            return Err(e.to_status());
        }
    }
    if !change.directives.is_empty() || change.reset {
        tracing::info!(directives = %change.directives, reset = change.reset, all_nodes, "log filter change requested");
    }
    let nodes = results
        .into_iter()
        .map(|(node_id, r)| match r {
            Ok(filter) => herald_grpc::admin::NodeLogFilter {
                node_id,
                filter,
                error: String::new(),
            },
            Err(e) => herald_grpc::admin::NodeLogFilter {
                node_id,
                filter: String::new(),
                error: e.to_status().message().to_string(),
            },
        })
        .collect();
    Ok(herald_grpc::admin::LogFilterReply { nodes })
}
