//! The admin gRPC service (`herald.admin.v1.Admin`), served by every node.
//!
//! Reads come from this node's applied state (or after a ReadIndex barrier when the caller asks
//! for a linearizable read); writes become [`Command`]s committed through Raft, each carrying
//! the caller's identity so that the state machine appends an audit record with the change.
//! Secrets never leave: SCRAM secrets are stripped from users, calendar passwords and the
//! dialback secret are masked, and new values of the latter two are sealed with the secrets key
//! before they are proposed (`herald_cluster::secrets`).

use std::time::{Duration, Instant};

use herald_cluster::secrets::{Keyring, FIELD_CALENDAR_PASSWORD, FIELD_DIALBACK_SECRET};
use herald_cluster::state::validate::MIN_DIALBACK_SECRET_CHARS;
use herald_cluster::ClusterHandle;
use herald_grpc::admin::admin_server::{Admin, AdminServer};
use herald_grpc::admin::{
    AddNodeRequest, AddUserRequest, AuditListReply, AuditListRequest, ClusterStatusReply,
    ClusterStatusRequest, DeleteRequest, DiagnoseReply, DiagnoseRequest, GetLogFilterRequest,
    GetReply, GetRequest, ListReply, ListRequest, LogFilterReply, MembershipReply, NodeStatus,
    PutRequest, RemoveNodeRequest, SetLogFilterRequest, SetPasswordRequest, UserSession,
    WriteReply,
};
use herald_grpc::cluster::LogFilterChange;
use herald_grpc::config::{
    command::Op, config_object::Body, AddPolicyException, AuditContext, Command, ConfigObject,
    DeleteObject, ErrorCode, ErrorDetail, NodeInfo, ObjectKind, PutObject, RemovePolicyException,
    SetUserSecrets, User, WriteMode,
};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::scram;

mod auth;
pub use auth::{cert_actor, token_actor, AuthCheck};

#[cfg(test)]
mod tests;

/// What a masked secret looks like on the way out (and means "unchanged" on the way in).
pub const MASK: &str = "********";

pub const ADMIN_REQUESTS: &str = "herald_admin_requests_total";
pub const ADMIN_DURATION: &str = "herald_admin_request_duration_seconds";

pub fn describe_metrics() {
    metrics::describe_counter!(
        ADMIN_REQUESTS,
        "Admin API requests, by method and status code"
    );
    metrics::describe_histogram!(
        ADMIN_DURATION,
        metrics::Unit::Seconds,
        "Admin API request latency, by method"
    );
}

pub struct AdminService {
    cluster: ClusterHandle,
    /// Calendar gateways as this node's CalendarActor sees them.
    calendar: crate::calendar::StatusBoard,
    /// Seals secrets before they are proposed.
    secrets: Keyring,
    /// Audit records kept in the store (travels in each audited entry).
    audit_keep: u32,
    /// `token:<fingerprint>` when a bearer token is configured.
    token_actor: Option<String>,
}

/// What the admin service needs for the audit log and secrets at rest.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub secrets: Keyring,
    /// Audit records kept in the store.
    pub keep: u32,
}

pub type AdminGrpc = InterceptedService<AdminServer<AdminService>, AuthCheck>;

/// Bound on waiting for every member to apply a federation settings/policy write.
const FEDERATION_APPLY_WAIT: Duration = Duration::from_secs(2);

impl AdminService {
    /// The service with its bearer-token check (none when `token` is None).
    pub fn grpc(
        cluster: ClusterHandle,
        token: Option<String>,
        max_bytes: usize,
        calendar: crate::calendar::StatusBoard,
        audit: AuditOptions,
    ) -> AdminGrpc {
        let check = AuthCheck::new(token.as_deref());
        let server = AdminServer::new(AdminService {
            cluster,
            calendar,
            secrets: audit.secrets,
            audit_keep: audit.keep,
            token_actor: token.as_deref().map(token_actor),
        })
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(max_bytes);
        InterceptedService::new(server, check)
    }

    /// Who made the call: the mTLS client certificate when there is one, else the bearer
    /// token (by fingerprint), else `anonymous` (admin API open on loopback).
    fn actor<T>(&self, req: &Request<T>) -> String {
        let cert = req
            .peer_certs()
            .and_then(|c| c.first().map(|leaf| cert_actor(leaf.as_ref())));
        match (cert, &self.token_actor) {
            (Some(c), Some(t)) => format!("{c} ({t})"),
            (Some(c), None) => c,
            (None, Some(t)) => t.clone(),
            (None, None) => "anonymous".to_string(),
        }
    }

    /// The audit context of a write asked for by `actor`, stamped now.
    fn audit(&self, actor: String) -> AuditContext {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        AuditContext {
            actor,
            node_id: self.cluster.node_id(),
            at_ms,
            keep: self.audit_keep,
        }
    }

    async fn write(&self, op: Op, actor: String) -> Result<WriteReply, Status> {
        let w = self
            .cluster
            .write(&Command {
                audit: Some(self.audit(actor)),
                op: Some(op),
            })
            .await
            .map_err(|e| e.to_status())?;
        for warning in &w.warnings {
            tracing::info!(%warning, revision = w.revision, "config write warning");
        }
        Ok(WriteReply {
            revision: w.revision,
            warnings: w.warnings,
        })
    }

    /// A write of the federation settings or policy: once the leader applied it, waits
    /// (bounded by `FEDERATION_APPLY_WAIT`) until every member that answers applied it too, so
    /// that the next stanza after the answer is decided under it on whichever node it enters
    /// (followers otherwise apply it up to a heartbeat later). A member still behind at the
    /// deadline is logged; the write itself has succeeded either way.
    async fn write_applied_everywhere(&self, op: Op, actor: String) -> Result<WriteReply, Status> {
        let reply = self.write(op, actor).await?;
        let deadline = Instant::now() + FEDERATION_APPLY_WAIT;
        loop {
            let behind: Vec<u64> = self
                .cluster
                .member_statuses()
                .await
                .into_iter()
                .filter_map(|(n, st)| match st {
                    Ok(st) if st.applied_index < reply.revision => Some(n.node_id),
                    _ => None,
                })
                .collect();
            if behind.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(revision = reply.revision, nodes = ?behind, "federation config write not yet applied on every node");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(reply)
    }

    async fn barrier(&self, linearizable: bool) -> Result<(), Status> {
        if linearizable {
            self.cluster
                .read_barrier()
                .await
                .map_err(|e| e.to_status())?;
        }
        Ok(())
    }
}

/// SCRAM secrets for a new password: PBKDF2 takes milliseconds by design, so it runs on the
/// blocking pool, never on a thread that serves requests.
async fn secrets_off_thread(
    password: String,
) -> Result<
    (
        herald_grpc::config::ScramSecret,
        herald_grpc::config::ScramSecret,
    ),
    Status,
> {
    tokio::task::spawn_blocking(move || scram::new_secrets(&password))
        .await
        .map_err(|e| Status::internal(format!("password hashing failed: {e}")))?
        .map_err(|e| Status::invalid_argument(format!("password: {e}")))
}

/// Records the request metric and passes the result through.
fn observe<T>(method: &'static str, started: Instant, r: Result<T, Status>) -> Result<T, Status> {
    let code = match &r {
        Ok(_) => "Ok".to_string(),
        Err(s) => format!("{:?}", s.code()),
    };
    metrics::counter!(ADMIN_REQUESTS, "method" => method, "code" => code).increment(1);
    metrics::histogram!(ADMIN_DURATION, "method" => method).record(started.elapsed().as_secs_f64());
    if let Err(s) = &r {
        if matches!(s.code(), tonic::Code::Internal | tonic::Code::Unavailable) {
            tracing::warn!(method, status = %s, "admin request failed");
        }
    }
    r
}

fn kind_of(k: i32) -> Result<ObjectKind, Status> {
    match ObjectKind::try_from(k) {
        Ok(ObjectKind::Unspecified) | Err(_) => Err(Status::invalid_argument(
            "kind: unknown or unspecified object kind",
        )),
        Ok(k) => Ok(k),
    }
}

/// Removes secrets from an object on its way out.
/// Users' data is written by each user's home node only (fenced, in the user-state group).
fn user_data_is_not_admin() -> Status {
    Status::failed_precondition(
        "user data is written by the user's home node only (its roster, block list and offline \
         messages change through the user's sessions); read it with `get user-data`, remove it \
         by deleting the user",
    )
}

pub fn scrub(mut o: ConfigObject) -> ConfigObject {
    match &mut o.body {
        Some(Body::User(u)) => {
            u.scram_sha256 = None;
            u.scram_sha1 = None;
        }
        Some(Body::CalendarCredentials(c)) if !c.password.is_empty() => {
            c.password = MASK.to_string();
        }
        Some(Body::XmppFederation(x)) if !x.dialback_secret.is_empty() => {
            x.dialback_secret = MASK.to_string();
        }
        _ => {}
    }
    o
}

fn not_found(kind: ObjectKind, key: &str) -> Status {
    ErrorDetail::new(
        ErrorCode::NotFound,
        format!("no {} named {key:?}", herald_grpc::objects::kind_name(kind)),
    )
    .to_status()
}

fn check_address(address: &str) -> Result<(), Status> {
    let ok = address
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "address: {address:?} is not host:port"
        )))
    }
}

impl AdminService {
    /// The node the user is homed on now: placement over the live voters (as the XMPP layer
    /// computes it).
    fn home_of(&self, jid: &str, pinned: u64) -> u64 {
        self.cluster.home_node(jid, pinned).unwrap_or(0)
    }

    /// Put with secrets kept and sealed: users never carry SCRAM secrets through Put, masked
    /// values mean "unchanged", and a new calendar password or dialback secret is sealed with
    /// the secrets key before it is proposed (so it never reaches the Raft log in the clear).
    fn prepare_put(&self, mut object: ConfigObject) -> Result<ConfigObject, Status> {
        let applied = self.cluster.applied();
        let stored = applied.state.get(object.kind(), &object.key());
        match (&mut object.body, stored.and_then(|s| s.body)) {
            (Some(Body::UserData(_)), _) => return Err(user_data_is_not_admin()),
            (Some(Body::User(u)), _) => {
                u.scram_sha256 = None;
                u.scram_sha1 = None;
            }
            (Some(Body::CalendarCredentials(c)), old) => {
                c.password = match (c.password == MASK, old) {
                    (true, Some(Body::CalendarCredentials(old))) => {
                        self.keep_sealed(FIELD_CALENDAR_PASSWORD, old.password)?
                    }
                    (true, _) => {
                        return Err(Status::invalid_argument(
                            "password: no stored password to keep",
                        ))
                    }
                    (false, _) => self.seal(FIELD_CALENDAR_PASSWORD, &c.password)?,
                };
            }
            (Some(Body::XmppFederation(x)), old) => {
                x.dialback_secret = match (x.dialback_secret == MASK, old) {
                    (true, Some(Body::XmppFederation(old))) => {
                        self.keep_sealed(FIELD_DIALBACK_SECRET, old.dialback_secret)?
                    }
                    (true, _) => String::new(),
                    (false, _) => {
                        let n = x.dialback_secret.chars().count();
                        if n != 0 && n < MIN_DIALBACK_SECRET_CHARS {
                            return Err(ErrorDetail::invalid(
                                "dialback_secret",
                                format!(
                                    "must be empty or at least {MIN_DIALBACK_SECRET_CHARS} characters"
                                ),
                            )
                            .to_status());
                        }
                        self.seal(FIELD_DIALBACK_SECRET, &x.dialback_secret)?
                    }
                };
            }
            _ => {}
        }
        Ok(object)
    }

    fn seal(&self, field: &str, plaintext: &str) -> Result<String, Status> {
        self.secrets
            .seal(field, plaintext)
            .map_err(|e| Status::unavailable(format!("cannot seal the secret: {e}")))
    }

    /// The stored value of an unchanged secret; one stored before encryption is sealed now.
    fn keep_sealed(&self, field: &str, stored: String) -> Result<String, Status> {
        if stored.is_empty() || herald_cluster::secrets::is_sealed(&stored) {
            Ok(stored)
        } else {
            self.seal(field, &stored)
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn cluster_status(
        &self,
        _req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusReply>, Status> {
        let t = Instant::now();
        let view = self.cluster.placement();
        let placement_reason = match self
            .cluster
            .applied()
            .state
            .peek(ObjectKind::Placement, "")
            .and_then(|o| o.body.as_ref())
        {
            Some(Body::Placement(p)) => p.reason.clone(),
            _ => String::new(),
        };
        let statuses = self.cluster.member_statuses().await;
        let mut nodes = Vec::with_capacity(statuses.len());
        let raft = self.cluster.status();
        let mut leader_id = raft.leader_id;
        for (info, res) in statuses {
            let n = match res {
                Ok(s) => {
                    if s.role == "leader" {
                        leader_id = s.node_id;
                    }
                    NodeStatus {
                        id: info.node_id,
                        address: info.cluster_address,
                        role: s.role,
                        applied_index: s.applied_index,
                        config_digest: s.config_digest,
                        term: s.term,
                        commit_index: s.commit_index,
                        admin_address: info.admin_address,
                        placement_epoch: s.placement_epoch,
                        membership: raft.membership_of(info.node_id).into(),
                        users_role: s
                            .users_group
                            .as_ref()
                            .map(|g| g.role.clone())
                            .unwrap_or_default(),
                        users_applied_index: s.users_group.as_ref().map_or(0, |g| g.applied_index),
                        users_digest: s.users_group.map(|g| g.digest).unwrap_or_default(),
                    }
                }
                Err(e) => {
                    tracing::debug!(node = info.node_id, error = %e, "member did not answer status");
                    NodeStatus {
                        id: info.node_id,
                        address: info.cluster_address,
                        role: "unreachable".into(),
                        admin_address: info.admin_address,
                        membership: raft.membership_of(info.node_id).into(),
                        ..Default::default()
                    }
                }
            };
            nodes.push(n);
        }
        nodes.sort_by_key(|n| n.id);
        let reachable: Vec<&NodeStatus> =
            nodes.iter().filter(|n| n.role != "unreachable").collect();
        let digests_agree = reachable
            .windows(2)
            .all(|w| w[0].config_digest == w[1].config_digest);
        let users_digests_agree = reachable
            .windows(2)
            .all(|w| w[0].users_digest == w[1].users_digest);
        let users_leader_id = reachable
            .iter()
            .find(|n| n.users_role == "leader")
            .map_or(0, |n| n.id);
        observe(
            "ClusterStatus",
            t,
            Ok(Response::new(ClusterStatusReply {
                leader_id,
                nodes,
                digests_agree,
                placement_epoch: view.epoch,
                placement_nodes: view.nodes,
                placement_reason,
                users_leader_id,
                users_digests_agree,
            })),
        )
    }

    async fn add_node(
        &self,
        req: Request<AddNodeRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let t = Instant::now();
        let r = async {
            let actor = self.actor(&req);
            let req = req.into_inner();
            if req.node_id == 0 {
                return Err(Status::invalid_argument("node_id: must be >= 1"));
            }
            check_address(&req.address)?;
            let voters = self
                .cluster
                .change_membership_audited(
                    true,
                    NodeInfo {
                        node_id: req.node_id,
                        cluster_address: req.address,
                        admin_address: String::new(),
                    },
                    Some(self.audit(actor)),
                )
                .await
                .map_err(|e| e.to_status())?;
            Ok(Response::new(MembershipReply { voters }))
        }
        .await;
        observe("AddNode", t, r)
    }

    async fn remove_node(
        &self,
        req: Request<RemoveNodeRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let t = Instant::now();
        let r = async {
            let actor = self.actor(&req);
            let id = req.into_inner().node_id;
            if id == 0 {
                return Err(Status::invalid_argument("node_id: must be >= 1"));
            }
            let voters = self
                .cluster
                .change_membership_audited(
                    false,
                    NodeInfo {
                        node_id: id,
                        ..Default::default()
                    },
                    Some(self.audit(actor)),
                )
                .await
                .map_err(|e| e.to_status())?;
            Ok(Response::new(MembershipReply { voters }))
        }
        .await;
        observe("RemoveNode", t, r)
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetReply>, Status> {
        let t = Instant::now();
        let r = async {
            let req = req.into_inner();
            let kind = kind_of(req.kind)?;
            self.barrier(req.linearizable).await?;
            let key = if kind == ObjectKind::User {
                req.key.to_lowercase()
            } else {
                req.key.clone()
            };
            if kind == ObjectKind::UserData && req.linearizable {
                self.cluster
                    .user_read_barrier()
                    .await
                    .map_err(|e| e.to_status())?;
            }
            let applied = self.cluster.applied();
            let stored_data = matches!(kind, ObjectKind::User | ObjectKind::UserData)
                .then(|| self.cluster.user_data(&key))
                .flatten();
            let obj = if kind == ObjectKind::UserData {
                // Users' data lives in the user-state group.
                stored_data.clone().map(|(d, revision)| ConfigObject {
                    revision,
                    body: Some(Body::UserData(d)),
                })
            } else {
                applied.state.get(kind, &key)
            }
            .ok_or_else(|| not_found(kind, &req.key))?;
            let (home, sessions) = match &obj.body {
                Some(Body::User(User {
                    jid,
                    pinned_home_node,
                    ..
                })) => (
                    self.home_of(jid, *pinned_home_node),
                    self.cluster
                        .user_sessions(jid)
                        .await
                        .into_iter()
                        .map(|(full_jid, node)| UserSession { full_jid, node })
                        .collect(),
                ),
                _ => (0, vec![]),
            };
            let owners = match stored_data {
                Some((d, _)) if kind == ObjectKind::User => d.owners,
                _ => vec![],
            };
            Ok(Response::new(GetReply {
                object: Some(scrub(obj)),
                home_node: home,
                sessions,
                owners,
            }))
        }
        .await;
        observe("Get", t, r)
    }

    async fn list(&self, req: Request<ListRequest>) -> Result<Response<ListReply>, Status> {
        let t = Instant::now();
        let r = async {
            let req = req.into_inner();
            let kind = kind_of(req.kind)?;
            self.barrier(req.linearizable).await?;
            if kind == ObjectKind::UserData && req.linearizable {
                self.cluster
                    .user_read_barrier()
                    .await
                    .map_err(|e| e.to_status())?;
            }
            let applied = if kind == ObjectKind::UserData {
                self.cluster.user_applied()
            } else {
                self.cluster.applied()
            };
            Ok(Response::new(ListReply {
                objects: applied.state.list(kind).into_iter().map(scrub).collect(),
                revision: applied.state.applied_index(),
            }))
        }
        .await;
        observe("List", t, r)
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<WriteReply>, Status> {
        let t = Instant::now();
        let r = async {
            let actor = self.actor(&req);
            let req = req.into_inner();
            let object = req
                .object
                .filter(|o| o.body.is_some())
                .ok_or_else(|| Status::invalid_argument("object: missing"))?;
            let object = self.prepare_put(object)?;
            let federation = matches!(
                object.body,
                Some(Body::XmppPolicy(_) | Body::XmppFederation(_))
            );
            let op = Op::Put(PutObject {
                object: Some(object),
                mode: req.mode,
                expected_revision: req.expected_revision,
                confirm: req.confirm,
                fence: None,
            });
            if federation {
                self.write_applied_everywhere(op, actor).await
            } else {
                self.write(op, actor).await
            }
            .map(Response::new)
        }
        .await;
        observe("Put", t, r)
    }

    async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<WriteReply>, Status> {
        let t = Instant::now();
        let r = async {
            let actor = self.actor(&req);
            let req = req.into_inner();
            if kind_of(req.kind)? == ObjectKind::UserData {
                return Err(user_data_is_not_admin());
            }
            self.write(
                Op::Delete(DeleteObject {
                    kind: req.kind,
                    key: req.key,
                    expected_revision: req.expected_revision,
                }),
                actor,
            )
            .await
            .map(Response::new)
        }
        .await;
        observe("Delete", t, r)
    }

    async fn add_user(&self, req: Request<AddUserRequest>) -> Result<Response<WriteReply>, Status> {
        let t = Instant::now();
        let r = async {
            let actor = self.actor(&req);
            let req = req.into_inner();
            let (s256, s1) = secrets_off_thread(req.password.clone()).await?;
            let user = User {
                jid: req.jid,
                mail_id: req.mail_id,
                pinned_home_node: req.pinned_home_node,
                scram_sha256: Some(s256),
                scram_sha1: Some(s1),
                ..Default::default()
            };
            self.write(
                Op::Put(PutObject {
                    object: Some(ConfigObject::new(Body::User(user))),
                    mode: WriteMode::Create as i32,
                    expected_revision: 0,
                    confirm: false,
                    fence: None,
                }),
                actor,
            )
            .await
            .map(Response::new)
        }
        .await;
        observe("AddUser", t, r)
    }

    async fn set_password(
        &self,
        req: Request<SetPasswordRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let t = Instant::now();
        let r = async {
            let actor = self.actor(&req);
            let req = req.into_inner();
            let (s256, s1) = secrets_off_thread(req.password.clone()).await?;
            self.write(
                Op::SetUserSecrets(SetUserSecrets {
                    jid: req.jid,
                    scram_sha256: Some(s256),
                    scram_sha1: Some(s1),
                    expected_revision: req.expected_revision,
                }),
                actor,
            )
            .await
            .map(Response::new)
        }
        .await;
        observe("SetPassword", t, r)
    }

    async fn add_policy_exception(
        &self,
        req: Request<AddPolicyException>,
    ) -> Result<Response<WriteReply>, Status> {
        let t = Instant::now();
        let actor = self.actor(&req);
        let r = self
            .write_applied_everywhere(Op::AddPolicyException(req.into_inner()), actor)
            .await
            .map(Response::new);
        observe("AddPolicyException", t, r)
    }

    async fn remove_policy_exception(
        &self,
        req: Request<RemovePolicyException>,
    ) -> Result<Response<WriteReply>, Status> {
        let t = Instant::now();
        let actor = self.actor(&req);
        let r = self
            .write_applied_everywhere(Op::RemovePolicyException(req.into_inner()), actor)
            .await
            .map(Response::new);
        observe("RemovePolicyException", t, r)
    }

    async fn calendar_gateway_status(
        &self,
        _req: Request<herald_grpc::admin::CalendarGatewayStatusRequest>,
    ) -> Result<Response<herald_grpc::admin::CalendarGatewayStatusReply>, Status> {
        let t = Instant::now();
        let r = Ok(Response::new(
            herald_grpc::admin::CalendarGatewayStatusReply {
                node_id: self.cluster.node_id(),
                gateways: self.calendar.borrow().clone(),
            },
        ));
        observe("CalendarGatewayStatus", t, r)
    }

    async fn diagnose(
        &self,
        _req: Request<DiagnoseRequest>,
    ) -> Result<Response<DiagnoseReply>, Status> {
        let t = Instant::now();
        let reply = crate::local::diagnose(&self.cluster).await;
        observe("Diagnose", t, Ok(Response::new(reply)))
    }

    async fn get_log_filter(
        &self,
        req: Request<GetLogFilterRequest>,
    ) -> Result<Response<LogFilterReply>, Status> {
        let t = Instant::now();
        let all = req.into_inner().all_nodes;
        let r = crate::local::log_filter_reply(&self.cluster, LogFilterChange::default(), all)
            .await
            .map(Response::new);
        observe("GetLogFilter", t, r)
    }

    async fn set_log_filter(
        &self,
        req: Request<SetLogFilterRequest>,
    ) -> Result<Response<LogFilterReply>, Status> {
        let t = Instant::now();
        let req = req.into_inner();
        let r = if req.directives.trim().is_empty() && !req.reset {
            Err(Status::invalid_argument(
                crate::log_filter::LogFilterError::Empty.to_string(),
            ))
        } else {
            let change = LogFilterChange {
                directives: req.directives,
                reset: req.reset,
            };
            crate::local::log_filter_reply(&self.cluster, change, req.all_nodes)
                .await
                .map(Response::new)
        };
        observe("SetLogFilter", t, r)
    }

    async fn reload_certs(
        &self,
        req: Request<herald_grpc::admin::ReloadCertsRequest>,
    ) -> Result<Response<herald_grpc::admin::ReloadCertsReply>, Status> {
        let t = Instant::now();
        let only = req.into_inner().this_node_only;
        let r = crate::local::reload_certs_reply(&self.cluster, only)
            .await
            .map(Response::new);
        observe("ReloadCerts", t, r)
    }

    async fn audit_list(
        &self,
        req: Request<AuditListRequest>,
    ) -> Result<Response<AuditListReply>, Status> {
        let t = Instant::now();
        let r = async {
            let req = req.into_inner();
            self.barrier(req.linearizable).await?;
            let limit = if req.limit == 0 {
                100
            } else {
                req.limit as usize
            };
            let applied = self.cluster.applied();
            let log = applied.state.audit_log();
            let records = log
                .iter()
                .rev()
                .filter(|r| req.kind == 0 || r.kind == req.kind)
                .filter(|r| r.at_ms >= req.since_ms)
                .take(limit)
                .cloned()
                .collect();
            Ok(Response::new(AuditListReply {
                records,
                total: log.len() as u64,
            }))
        }
        .await;
        observe("AuditList", t, r)
    }
}
