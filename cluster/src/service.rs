//! The node-to-node gRPC service: Raft stream in, forwarded writes, joins, status, removal.

use std::pin::Pin;

use futures::StreamExt;
use herald_grpc::cluster::node_api_server::{NodeApi, NodeApiServer};
use herald_grpc::cluster::{
    CertsState, FactsRequest, JoinReply, JoinRequest, LocalSessionsReply, LocalSessionsRequest,
    LogFilterChange, LogFilterState, MembershipChange, MembershipChangeReply, NodeFacts,
    ProposeRequest, RaftAck, RaftEnvelope, ReloadCertsRequest, RemovedNotice, RouteMessage,
    SnapshotChunk, StatusReply, StatusRequest,
};
use herald_grpc::config::{NodeInfo, WriteOutcome};
use protobuf::Message as _;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

use crate::client::check_token;
use crate::handle::{ClusterHandle, NOT_LEADER};
use crate::metrics as m;
use crate::raft_loop::{Group, Input, Role};

/// Largest snapshot a node accepts over InstallSnapshot (it is assembled in memory).
const MAX_SNAPSHOT_BYTES: u64 = 8 << 30;

/// Implements `herald.cluster.v1.NodeApi` over a [`ClusterHandle`].
pub struct NodeApiService {
    handle: ClusterHandle,
    /// Mutual TLS is on: every call must carry a cluster certificate naming its node, and
    /// what the caller claims is checked against it.
    verify_callers: bool,
}

/// Counter, label `rpc`: node-to-node calls refused because the caller's certificate does not
/// back what it claims (another node's id, or not a member).
pub const IDENTITY_REFUSALS: &str = "herald_cluster_identity_refusals_total";

/// Refuses a call whose claimed node id (`what`: which field claims it) is not the one the
/// caller's certificate names. Nothing to check without mutual TLS (`caller` is `None`).
fn check_claim(
    rpc: &'static str,
    caller: Option<u64>,
    claimed: u64,
    what: &str,
) -> Result<(), Status> {
    match caller {
        Some(id) if id != claimed => Err(refuse(
            rpc,
            format!("{what} node {claimed} but the caller's certificate names node {id}"),
        )),
        _ => Ok(()),
    }
}

fn refuse(rpc: &'static str, why: String) -> Status {
    metrics::counter!(IDENTITY_REFUSALS, "rpc" => rpc).increment(1);
    tracing::warn!(rpc, reason = %why, "node-to-node call refused");
    Status::permission_denied(why)
}

/// Rejects node-to-node calls without the shared cluster token (when one is configured).
#[derive(Clone)]
pub struct TokenCheck(Option<std::sync::Arc<str>>);

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        check_token(self.0.as_deref(), &req)?;
        Ok(req)
    }
}

/// The service, wrapped with the cluster-token check, ready for a tonic `Server`.
pub type NodeApiGrpc = InterceptedService<NodeApiServer<NodeApiService>, TokenCheck>;

impl NodeApiService {
    /// `verify_callers`: the server runs with mutual TLS (see [`crate::identity`]).
    pub fn grpc(
        handle: ClusterHandle,
        token: Option<String>,
        max_bytes: usize,
        verify_callers: bool,
    ) -> NodeApiGrpc {
        let check = TokenCheck(token.map(std::sync::Arc::from));
        let server = NodeApiServer::new(NodeApiService {
            handle,
            verify_callers,
        })
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(max_bytes);
        InterceptedService::new(server, check)
    }

    /// The caller's node id from its certificate (`None` without mutual TLS).
    fn caller<T>(&self, req: &Request<T>, rpc: &'static str) -> Result<Option<u64>, Status> {
        crate::identity::caller(req, self.verify_callers).inspect_err(|_| {
            metrics::counter!(IDENTITY_REFUSALS, "rpc" => rpc).increment(1);
        })
    }

    /// The inbox of one of this node's Raft groups.
    fn group_inbox(&self, group: Group) -> Result<crossbeam_channel::Sender<Input>, Status> {
        match group {
            Group::Config => Ok(self.handle.inbox().clone()),
            Group::Users => self
                .handle
                .users_group()
                .map(|u| u.inbox.clone())
                .ok_or_else(|| Status::unavailable("this node does not run the user-state group")),
        }
    }

    async fn raft_stream(
        &self,
        request: Request<Streaming<RaftEnvelope>>,
        group: Group,
    ) -> Result<Response<RaftAck>, Status> {
        let me = self.handle.node_id();
        let caller = self.caller(&request, "raft")?;
        let inbox = self.group_inbox(group)?;
        let mut stream: Pin<Box<Streaming<RaftEnvelope>>> = Box::pin(request.into_inner());
        while let Some(env) = stream.next().await {
            let env = env?;
            check_claim("raft", caller, env.from, "raft message claims to be from")?;
            if env.group != group.wire() {
                return Err(Status::invalid_argument(format!(
                    "raft message of group {} on the stream of group {}",
                    env.group,
                    group.wire()
                )));
            }
            if env.to != me {
                return Err(Status::failed_precondition(format!(
                    "raft message for node {} reached node {me}",
                    env.to
                )));
            }
            let msg = raft::eraftpb::Message::parse_from_bytes(&env.message)
                .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
            if msg.from != env.from {
                return Err(Status::invalid_argument("raft message sender mismatch"));
            }
            metrics::counter!(m::MESSAGES_RECEIVED).increment(1);
            let input = Input::Raft {
                message: Box::new(msg),
                from_address: env.from_address,
            };
            if inbox.try_send(input).is_err() {
                metrics::counter!(m::MESSAGES_DROPPED, "direction" => "in").increment(1);
            }
        }
        Ok(Response::new(RaftAck {}))
    }

    async fn snapshot_stream(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
        group: Group,
    ) -> Result<Response<RaftAck>, Status> {
        let me = self.handle.node_id();
        let caller = self.caller(&request, "install_snapshot")?;
        let inbox = self.group_inbox(group)?;
        let mut stream = request.into_inner();
        let head = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        if head.group != group.wire() {
            return Err(Status::invalid_argument(format!(
                "snapshot of group {} on the stream of group {}",
                head.group,
                group.wire()
            )));
        }
        check_claim(
            "install_snapshot",
            caller,
            head.from,
            "snapshot claims to be from",
        )?;
        if head.to != me {
            return Err(Status::failed_precondition(format!(
                "snapshot for node {} reached node {me}",
                head.to
            )));
        }
        if head.total_bytes > MAX_SNAPSHOT_BYTES {
            return Err(Status::resource_exhausted(format!(
                "snapshot of {} bytes is over this node's limit of {MAX_SNAPSHOT_BYTES}",
                head.total_bytes
            )));
        }
        let mut msg = raft::eraftpb::Message::parse_from_bytes(&head.message)
            .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
        if msg.from != head.from || msg.get_msg_type() != raft::eraftpb::MessageType::MsgSnapshot {
            return Err(Status::invalid_argument(
                "InstallSnapshot carries something else than a snapshot from its sender",
            ));
        }
        let total = head.total_bytes as usize;
        let mut data = Vec::with_capacity(total);
        data.extend_from_slice(&head.data);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if data.len() + chunk.data.len() > total {
                return Err(Status::invalid_argument("snapshot longer than announced"));
            }
            data.extend_from_slice(&chunk.data);
        }
        if data.len() != total {
            return Err(Status::invalid_argument(format!(
                "snapshot cut short: {} of {total} bytes",
                data.len()
            )));
        }
        msg.mut_snapshot().data = data.into();
        metrics::counter!(m::MESSAGES_RECEIVED).increment(1);
        let input = Input::Raft {
            message: Box::new(msg),
            from_address: head.from_address,
        };
        if inbox.try_send(input).is_err() {
            metrics::counter!(m::MESSAGES_DROPPED, "direction" => "in").increment(1);
            return Err(Status::unavailable("raft inbox is full; retry"));
        }
        tracing::info!(
            from = head.from,
            bytes = total,
            group = group.label(),
            "snapshot received"
        );
        Ok(Response::new(RaftAck {}))
    }

    /// Refuses a caller that is not a member of the cluster (with mutual TLS on).
    fn member_only<T>(&self, req: &Request<T>, rpc: &'static str) -> Result<(), Status> {
        if let Some(id) = self.caller(req, rpc)? {
            let members = self.handle.applied().state.nodes();
            if !members.iter().any(|n| n.node_id == id) {
                return Err(refuse(
                    rpc,
                    format!("node {id} is not a member of this cluster"),
                ));
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl NodeApi for NodeApiService {
    async fn raft(
        &self,
        request: Request<Streaming<RaftEnvelope>>,
    ) -> Result<Response<RaftAck>, Status> {
        self.raft_stream(request, Group::Config).await
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftAck>, Status> {
        self.snapshot_stream(request, Group::Config).await
    }

    async fn group_raft(
        &self,
        request: Request<Streaming<RaftEnvelope>>,
    ) -> Result<Response<RaftAck>, Status> {
        self.raft_stream(request, Group::Users).await
    }

    async fn group_install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftAck>, Status> {
        self.snapshot_stream(request, Group::Users).await
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<WriteOutcome>, Status> {
        self.member_only(&request, "propose")?;
        let group = Group::from_wire(request.get_ref().group).ok_or_else(|| {
            Status::invalid_argument(format!("no Raft group {}", request.get_ref().group))
        })?;
        if group == Group::Users && self.handle.users_group().is_none() {
            return Err(Status::unavailable(
                "this node does not run the user-state group",
            ));
        }
        if self.handle.status_of(group).role != Role::Leader {
            return Err(Status::unavailable(NOT_LEADER));
        }
        let req = request.into_inner();
        self.handle
            .propose_local_in(group, req.command)
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        let caller = self.caller(&request, "join")?;
        let req = request.into_inner();
        check_claim(
            "join",
            caller,
            req.node_id,
            "join refused: it asks to join as",
        )?;
        if req.node_id == 0 || req.cluster_address.is_empty() {
            return Err(Status::invalid_argument(
                "join needs a node id >= 1 and the node's cluster address",
            ));
        }
        let node = NodeInfo {
            node_id: req.node_id,
            cluster_address: req.cluster_address,
            admin_address: req.admin_address,
        };
        tracing::info!(node = node.node_id, address = %node.cluster_address, "join request");
        self.handle
            .change_membership(true, node)
            .await
            .map_err(|e| e.to_status())?;
        let applied = self.handle.applied();
        let ring = self.handle.secrets();
        Ok(Response::new(JoinReply {
            leader_id: self.handle.status().leader_id,
            members: applied.state.nodes(),
            secrets_key: ring
                .and_then(|r| r.shareable_key())
                .map(|k| k.bytes().to_vec())
                .unwrap_or_default(),
            secrets_key_id: ring.and_then(|r| r.key_id()).unwrap_or_default(),
        }))
    }

    async fn change_membership(
        &self,
        request: Request<MembershipChange>,
    ) -> Result<Response<MembershipChangeReply>, Status> {
        self.member_only(&request, "change_membership")?;
        if self.handle.status().role != Role::Leader {
            return Err(Status::unavailable(NOT_LEADER));
        }
        let req = request.into_inner();
        let node = req
            .node
            .ok_or_else(|| Status::invalid_argument("membership change without a node"))?;
        let reply = match self
            .handle
            .change_membership_local_audited(req.add, node, req.audit)
            .await
        {
            Ok(voters) => MembershipChangeReply {
                error: None,
                voters,
            },
            Err(e) => MembershipChangeReply {
                error: Some(e),
                voters: vec![],
            },
        };
        Ok(Response::new(reply))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let caller = self.caller(&request, "status")?;
        let from = request.get_ref().from_node;
        if from != 0 && caller.is_none_or(|c| c == from) {
            self.handle.heard_from(from);
        }
        Ok(Response::new(self.handle.local_status()))
    }

    type RouteStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<herald_grpc::cluster::RouteAck, Status>> + Send>,
    >;

    async fn route(
        &self,
        request: Request<Streaming<RouteMessage>>,
    ) -> Result<Response<Self::RouteStream>, Status> {
        let Some(sink) = self.handle.routes().sink().cloned() else {
            return Err(Status::unavailable(
                "this node is not ready to route stanzas",
            ));
        };
        let caller = self.caller(&request, "route")?;
        let mut stream = request.into_inner();
        // The count of items handed on, acknowledged to the sender as it grows (a watch: the
        // sender always sees the latest count; the first value, 0, accepts the stream).
        let (acks_tx, acks_rx) = tokio::sync::watch::channel(0u64);
        // Why the stream was refused part-way (an item with a forged sender), told to the
        // sender as the stream's final status after the last acknowledgement.
        let (refused_tx, refused_rx) = tokio::sync::oneshot::channel::<Status>();
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let mut handled = 0u64;
            while let Some(msg) = stream.next().await {
                let Ok(msg) = msg else {
                    return;
                };
                if let Err(status) = check_claim(
                    "route",
                    caller,
                    msg.from_node,
                    "routed item claims to be from",
                ) {
                    tracing::warn!(%status, "routed stream refused");
                    let _ = refused_tx.send(status);
                    return;
                }
                handle.routes().saw(msg.from_node);
                metrics::counter!(crate::routing::ROUTED, "direction" => "in").increment(1);
                if let Some(kind) = msg.kind {
                    if !sink.deliver(msg.from_node, kind) {
                        metrics::counter!(crate::routing::ROUTE_DROPPED, "reason" => "receiver_full")
                            .increment(1);
                    }
                }
                handled += 1;
                if acks_tx.send(handled).is_err() {
                    return;
                }
            }
        });
        let acks = tokio_stream::wrappers::WatchStream::new(acks_rx)
            .map(|handled| Ok(herald_grpc::cluster::RouteAck { handled }));
        let refused =
            futures::stream::once(refused_rx).filter_map(|r| std::future::ready(r.ok().map(Err)));
        Ok(Response::new(Box::pin(acks.chain(refused))))
    }

    async fn local_sessions(
        &self,
        request: Request<LocalSessionsRequest>,
    ) -> Result<Response<LocalSessionsReply>, Status> {
        self.member_only(&request, "local_sessions")?;
        let Some(sink) = self.handle.routes().sink().cloned() else {
            return Err(Status::unavailable("this node is not serving clients yet"));
        };
        let full_jids = sink.local_sessions(request.into_inner().jid).await;
        Ok(Response::new(LocalSessionsReply { full_jids }))
    }

    async fn facts(&self, request: Request<FactsRequest>) -> Result<Response<NodeFacts>, Status> {
        self.member_only(&request, "facts")?;
        self.handle
            .local_facts()
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    async fn log_filter(
        &self,
        request: Request<LogFilterChange>,
    ) -> Result<Response<LogFilterState>, Status> {
        self.member_only(&request, "log_filter")?;
        let change = request.into_inner();
        let filter = self
            .handle
            .local_log_filter(&change)
            .map_err(|e| e.to_status())?;
        if !change.directives.is_empty() || change.reset {
            tracing::info!(%filter, "log filter changed at a member's request");
        }
        Ok(Response::new(LogFilterState { filter }))
    }

    async fn reload_certs(
        &self,
        request: Request<ReloadCertsRequest>,
    ) -> Result<Response<CertsState>, Status> {
        self.member_only(&request, "reload_certs")?;
        let state = self
            .handle
            .local_reload_certs()
            .map_err(|e| e.to_status())?;
        tracing::info!(
            reloaded = state.reloaded,
            failures = state.failures.len(),
            "certificates re-read at a member's request"
        );
        Ok(Response::new(state))
    }

    async fn removed(&self, request: Request<RemovedNotice>) -> Result<Response<RaftAck>, Status> {
        // Only a member (the leader that removed this node) may say so. The removal is
        // already applied there, so the caller is still in this node's (older) member list.
        self.member_only(&request, "removed")?;
        let n = request.into_inner();
        if n.node_id != self.handle.node_id() {
            return Err(Status::invalid_argument(format!(
                "removal notice for node {} reached node {}",
                n.node_id,
                self.handle.node_id()
            )));
        }
        // The notice concerns a node that is a member (voter or learner) in its own view and has not applied past
        // the removal. A node that is not a voter yet (a fresh pod under the same id, joining)
        // or has applied a later index as a voter (added again) heard about its predecessor.
        let st = self.handle.status();
        let predecessor =
            !st.is_member(n.node_id) || (n.removed_at > 0 && st.applied >= n.removed_at);
        if predecessor {
            tracing::info!(
                removed_at = n.removed_at,
                applied = st.applied,
                "ignoring a removal notice about an earlier node with this id"
            );
            return Ok(Response::new(RaftAck {}));
        }
        // The leader sends this only after applying the removal; the removed node may never learn
        // that the entry committed, since the leader stops replicating to it.
        tracing::warn!("the leader removed this node from the cluster; stopping");
        // The user-state group's loop stays: its leader removes this node from that group too
        // (it must acknowledge that), and the agent stops it afterwards.
        let _ = self.handle.inbox().send(Input::Removed);
        Ok(Response::new(RaftAck {}))
    }
}
