//! What a command does on the wire ([`Plan`]) and its execution against the admin API.

use super::{render, CliError, Client, Output, OutputFormat};
use herald_grpc::admin::{
    AddNodeRequest, AddUserRequest, ClusterStatusRequest, DeleteRequest, GetRequest, ListRequest,
    PutRequest, RemoveNodeRequest, SetPasswordRequest,
};
use herald_grpc::config::{
    config_object::Body, AddPolicyException, ConfigObject, EmailFederationSettings,
    FederationRoutingSettings, ObjectKind, RemovePolicyException, RoutingNodeSettings, WriteMode,
    XmppFederationPolicy, XmppFederationSettings,
};
use herald_grpc::objects::kind_name;
use tonic::Code;

/// A change applied to an object read from the store before it is written back.
pub(crate) type Edit = Box<dyn FnOnce(&mut Body) -> Result<(), CliError> + Send>;

/// How a fetched object is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// The object's fields.
    Object,
    /// A user with its home node from the reply.
    User,
    /// Only the exceptions of the XMPP policy.
    Exceptions,
}

/// Read, edit, write back: `update` of keyed objects and `set` of singletons.
pub(crate) struct Modify {
    /// Kind of the object.
    pub kind: ObjectKind,
    /// Its key (empty for singletons).
    pub key: String,
    /// UPDATE for keyed objects, UPSERT for singletons.
    pub mode: WriteMode,
    /// `--revision`; the revision read when absent.
    pub revision: Option<u64>,
    /// The change.
    pub edit: Edit,
}

/// The RPCs one command performs.
// One per CLI invocation: the size of the Put variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Plan {
    /// ClusterStatus.
    Status,
    /// AddNode.
    AddNode(AddNodeRequest),
    /// RemoveNode.
    RemoveNode(RemoveNodeRequest),
    /// Get, shown as `view`.
    Get(GetRequest, View),
    /// List.
    List(ListRequest),
    /// Put.
    Put(PutRequest),
    /// Delete.
    Delete(DeleteRequest),
    /// AddUser.
    AddUser(AddUserRequest),
    /// SetPassword.
    SetPassword(SetPasswordRequest),
    /// AddPolicyException.
    AddException(AddPolicyException),
    /// RemovePolicyException.
    RemoveException(RemovePolicyException),
    /// Get, edit, Put.
    Modify(Modify),
    /// CalendarGatewayStatus.
    CalendarStatus,
    /// GetLogFilter.
    GetLogFilter(herald_grpc::admin::GetLogFilterRequest),
    /// SetLogFilter.
    SetLogFilter(herald_grpc::admin::SetLogFilterRequest),
    /// ReloadCerts.
    ReloadCerts(herald_grpc::admin::ReloadCertsRequest),
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Plan::Status => write!(f, "Status"),
            Plan::AddNode(r) => write!(f, "AddNode({r:?})"),
            Plan::RemoveNode(r) => write!(f, "RemoveNode({r:?})"),
            Plan::Get(r, v) => write!(f, "Get({r:?}, {v:?})"),
            Plan::List(r) => write!(f, "List({r:?})"),
            Plan::Put(r) => write!(f, "Put({r:?})"),
            Plan::Delete(r) => write!(f, "Delete({r:?})"),
            // Never print passwords.
            Plan::AddUser(r) => write!(f, "AddUser({})", r.jid),
            Plan::SetPassword(r) => write!(f, "SetPassword({})", r.jid),
            Plan::AddException(r) => write!(f, "AddException({r:?})"),
            Plan::RemoveException(r) => write!(f, "RemoveException({r:?})"),
            Plan::Modify(m) => write!(f, "Modify({:?}, {:?}, {:?})", m.kind, m.key, m.mode),
            Plan::CalendarStatus => write!(f, "CalendarStatus"),
            Plan::GetLogFilter(r) => write!(f, "GetLogFilter({r:?})"),
            Plan::SetLogFilter(r) => write!(f, "SetLogFilter({r:?})"),
            Plan::ReloadCerts(r) => write!(f, "ReloadCerts({r:?})"),
        }
    }
}

/// The empty object of a singleton kind (what `set` starts from before the first write).
pub(crate) fn empty_singleton(kind: ObjectKind) -> Option<Body> {
    Some(match kind {
        ObjectKind::XmppFederation => Body::XmppFederation(XmppFederationSettings::default()),
        ObjectKind::XmppPolicy => Body::XmppPolicy(XmppFederationPolicy::default()),
        ObjectKind::EmailFederation => Body::EmailFederation(EmailFederationSettings::default()),
        ObjectKind::RoutingNode => Body::RoutingNode(RoutingNodeSettings::default()),
        ObjectKind::FederationRouting => {
            Body::FederationRouting(FederationRoutingSettings::default())
        }
        _ => return None,
    })
}

/// The object of a Get reply, checked to be of `kind`.
fn expect_object(object: Option<ConfigObject>, kind: ObjectKind) -> Result<ConfigObject, CliError> {
    let object = object.ok_or(CliError::MissingObject)?;
    if object.kind() != kind {
        return Err(CliError::WrongKind {
            want: kind_name(kind),
            got: kind_name(object.kind()),
        });
    }
    Ok(object)
}

/// Runs `plan` against the admin API and renders the result in `format`.
pub(crate) async fn execute(
    client: &mut Client,
    plan: Plan,
    format: OutputFormat,
) -> Result<Output, CliError> {
    let stdout = match plan {
        Plan::Status => {
            let reply = client.cluster_status(ClusterStatusRequest {}).await?;
            render::cluster_status(&reply.into_inner(), format)
        }
        Plan::CalendarStatus => {
            let reply = client
                .calendar_gateway_status(herald_grpc::admin::CalendarGatewayStatusRequest {})
                .await?;
            render::calendar_status(&reply.into_inner(), format)
        }
        Plan::AddNode(req) => render::voters(&client.add_node(req).await?.into_inner(), format),
        Plan::RemoveNode(req) => {
            render::voters(&client.remove_node(req).await?.into_inner(), format)
        }
        Plan::Get(req, view) => {
            let kind = req.kind();
            let reply = client.get(req).await?.into_inner();
            let object = expect_object(reply.object, kind)?;
            match view {
                View::Object => render::object(&object, None, format),
                View::User => render::user(
                    &object,
                    reply.home_node,
                    &reply.sessions,
                    &reply.owners,
                    format,
                ),
                View::Exceptions => render::exceptions(&object, format),
            }
        }
        Plan::List(req) => render::list(&client.list(req).await?.into_inner().objects, format),
        Plan::Put(req) => return Ok(render::write(&client.put(req).await?.into_inner(), format)),
        Plan::Delete(req) => {
            return Ok(render::write(
                &client.delete(req).await?.into_inner(),
                format,
            ))
        }
        Plan::AddUser(req) => {
            return Ok(render::write(
                &client.add_user(req).await?.into_inner(),
                format,
            ))
        }
        Plan::SetPassword(req) => {
            return Ok(render::write(
                &client.set_password(req).await?.into_inner(),
                format,
            ))
        }
        Plan::AddException(req) => {
            let reply = client.add_policy_exception(req).await?.into_inner();
            return Ok(render::write(&reply, format));
        }
        Plan::RemoveException(req) => {
            let reply = client.remove_policy_exception(req).await?.into_inner();
            return Ok(render::write(&reply, format));
        }
        Plan::Modify(m) => {
            let put = modified(client, m).await?;
            return Ok(render::write(&client.put(put).await?.into_inner(), format));
        }
        Plan::GetLogFilter(req) => {
            let reply = client.get_log_filter(req).await?.into_inner();
            return Ok(render::log_filters(&reply, format));
        }
        Plan::SetLogFilter(req) => {
            let reply = client.set_log_filter(req).await?.into_inner();
            return Ok(render::log_filters(&reply, format));
        }
        Plan::ReloadCerts(req) => {
            let reply = client.reload_certs(req).await?.into_inner();
            return Ok(render::reloaded_certs(&reply, format));
        }
    };
    Ok(Output {
        stdout,
        stderr: Vec::new(),
        failures: 0,
    })
}

/// Reads the object of `m`, applies its edit and returns the Put that writes it back.
async fn modified(client: &mut Client, m: Modify) -> Result<PutRequest, CliError> {
    let req = GetRequest {
        kind: m.kind as i32,
        key: m.key,
        linearizable: true,
    };
    let mut object = match client.get(req).await {
        Ok(reply) => expect_object(reply.into_inner().object, m.kind)?,
        Err(s) if s.code() == Code::NotFound => match empty_singleton(m.kind) {
            Some(body) => ConfigObject::new(body),
            None => return Err(s.into()),
        },
        Err(s) => return Err(s.into()),
    };
    modify_object(&mut object, m.edit)?;
    Ok(PutRequest {
        expected_revision: m.revision.unwrap_or(object.revision),
        object: Some(object),
        mode: m.mode as i32,
        confirm: false,
    })
}

/// Applies `edit` to the body of `object`.
pub(crate) fn modify_object(object: &mut ConfigObject, edit: Edit) -> Result<(), CliError> {
    let body = object.body.as_mut().ok_or(CliError::MissingObject)?;
    edit(body)
}
