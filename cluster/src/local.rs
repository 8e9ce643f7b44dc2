//! What the node layer tells the cluster layer about itself: facts for the troubleshooter and
//! its log filter. `node` implements [`LocalNode`] and registers it on the handle at start
//! ([`crate::ClusterHandle::set_local_node`]); the node-to-node service answers `Facts` and
//! `LogFilter` calls from other members through it, and the admin service uses the same
//! handle methods to fan a question out to every member.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald_grpc::cluster::{
    CertsState, FactsRequest, LogFilterChange, LogFilterState, NodeFacts, ReloadCertsRequest,
};
use herald_grpc::config::{ErrorCode, ErrorDetail, NodeInfo};

use crate::handle::ClusterHandle;

/// Deadline of each facts or log-filter call to another member.
const LOCAL_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The node layer's side: its static facts and its log filter.
pub trait LocalNode: Send + Sync + 'static {
    /// Certificate chain, trust anchors, advertised host and ports, log filter. Status, wall
    /// clock and liveness are filled in by [`ClusterHandle::local_facts`].
    fn facts(&self) -> NodeFacts;
    /// Applies `change` (empty directives and no reset: read only) and returns the filter now
    /// in force; an invalid directive is an INVALID_ARGUMENT that changes nothing.
    fn log_filter(&self, change: &LogFilterChange) -> Result<String, ErrorDetail>;
    /// Re-reads every certificate file now and returns what is in force afterwards.
    fn reload_certs(&self) -> Result<CertsState, ErrorDetail>;
}

/// One member's facts as gathered by [`ClusterHandle::member_facts`].
#[derive(Debug, Clone)]
pub struct MemberFacts {
    pub node: NodeInfo,
    pub facts: Result<NodeFacts, ErrorDetail>,
    /// Round trip of the call (zero for this node).
    pub rtt: Duration,
    /// The member's wall clock minus this node's at the middle of the round trip, ms.
    pub clock_offset_ms: i64,
}

/// Milliseconds since the Unix epoch now (0 for a clock before 1970).
pub fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The offset of a remote clock that read `remote_ms` while a call ran from `before_ms` to
/// `after_ms` on the local clock: remote minus the round trip's midpoint.
pub fn clock_offset_ms(before_ms: i64, after_ms: i64, remote_ms: i64) -> i64 {
    remote_ms - (before_ms + (after_ms - before_ms) / 2)
}

fn not_registered() -> ErrorDetail {
    ErrorDetail::new(
        ErrorCode::Unavailable,
        "this node is still starting (no local facts registered yet)",
    )
}

impl ClusterHandle {
    /// This node's facts: what the node layer registered plus status, clock and liveness.
    pub fn local_facts(&self) -> Result<NodeFacts, ErrorDetail> {
        let local = self.local_node().ok_or_else(not_registered)?;
        let mut f = local.facts();
        f.status = Some(self.local_status());
        f.live_nodes = self.live_nodes();
        f.wall_clock_unix_ms = unix_ms_now();
        Ok(f)
    }

    /// Applies a log filter change on this node.
    pub fn local_log_filter(&self, change: &LogFilterChange) -> Result<String, ErrorDetail> {
        self.local_node()
            .ok_or_else(not_registered)?
            .log_filter(change)
    }

    /// Every member's facts, asked in parallel, with round trips and clock offsets.
    pub async fn member_facts(&self) -> Vec<MemberFacts> {
        let nodes = self.applied().state.nodes();
        let calls = nodes.into_iter().map(|n| async move {
            if n.node_id == self.node_id() {
                return MemberFacts {
                    facts: self.local_facts(),
                    node: n,
                    rtt: Duration::ZERO,
                    clock_offset_ms: 0,
                };
            }
            let before = unix_ms_now();
            let started = Instant::now();
            let facts = match self.peer_at(&n.cluster_address) {
                Ok(mut c) => {
                    let mut req = tonic::Request::new(FactsRequest {});
                    req.set_timeout(LOCAL_CALL_TIMEOUT);
                    c.facts(req)
                        .await
                        .map(|r| r.into_inner())
                        .map_err(|s| ErrorDetail::from_status(&s))
                }
                Err(e) => Err(e),
            };
            let rtt = started.elapsed();
            let after = unix_ms_now();
            let clock_offset_ms = facts
                .as_ref()
                .map(|f| clock_offset_ms(before, after, f.wall_clock_unix_ms))
                .unwrap_or(0);
            MemberFacts {
                node: n,
                facts,
                rtt,
                clock_offset_ms,
            }
        });
        let mut all = futures::future::join_all(calls).await;
        all.sort_by_key(|m| m.node.node_id);
        all
    }

    /// Applies `change` on every member in parallel: (node id, filter or error), sorted.
    pub async fn log_filter_everywhere(
        &self,
        change: &LogFilterChange,
    ) -> Vec<(u64, Result<String, ErrorDetail>)> {
        self.everywhere(
            || self.local_log_filter(change),
            |mut c| async move {
                let mut req = tonic::Request::new(change.clone());
                req.set_timeout(LOCAL_CALL_TIMEOUT);
                c.log_filter(req)
                    .await
                    .map(|r: tonic::Response<LogFilterState>| r.into_inner().filter)
            },
        )
        .await
    }

    /// Re-reads certificate files on this node.
    pub fn local_reload_certs(&self) -> Result<CertsState, ErrorDetail> {
        self.local_node().ok_or_else(not_registered)?.reload_certs()
    }

    /// Re-reads certificate files on every member in parallel: (node id, state or error).
    pub async fn reload_certs_everywhere(&self) -> Vec<(u64, Result<CertsState, ErrorDetail>)> {
        self.everywhere(
            || self.local_reload_certs(),
            |mut c| async move {
                let mut req = tonic::Request::new(ReloadCertsRequest {});
                req.set_timeout(LOCAL_CALL_TIMEOUT);
                c.reload_certs(req).await.map(|r| r.into_inner())
            },
        )
        .await
    }

    /// Runs `local` for this node and `remote` against every other member, in parallel;
    /// results sorted by node id.
    async fn everywhere<'a, T, L, R, F>(
        &'a self,
        local: L,
        remote: R,
    ) -> Vec<(u64, Result<T, ErrorDetail>)>
    where
        L: Fn() -> Result<T, ErrorDetail>,
        R: Fn(crate::client::PeerClient) -> F,
        F: std::future::Future<Output = Result<T, tonic::Status>> + 'a,
    {
        let nodes = self.applied().state.nodes();
        let calls = nodes.into_iter().map(|n| {
            let local = &local;
            let remote = &remote;
            async move {
                if n.node_id == self.node_id() {
                    return (n.node_id, local());
                }
                let res = match self.peer_at(&n.cluster_address) {
                    Ok(c) => remote(c).await.map_err(|s| ErrorDetail::from_status(&s)),
                    Err(e) => Err(e),
                };
                (n.node_id, res)
            }
        });
        let mut all = futures::future::join_all(calls).await;
        all.sort_by_key(|(id, _)| *id);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_offset_is_taken_at_the_midpoint() {
        assert_eq!(clock_offset_ms(1_000, 1_010, 1_005), 0);
        assert_eq!(clock_offset_ms(1_000, 1_010, 2_005), 1_000);
        assert_eq!(clock_offset_ms(1_000, 1_000, 500), -500);
    }
}
