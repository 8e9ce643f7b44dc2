//! `run()` against an in-process Admin server stub with canned replies (test only).

use super::{execute, run, AdminCommand, CliError, GlobalOpts};
use clap::Parser;
use herald_grpc::admin::admin_server::{Admin, AdminServer};
use herald_grpc::admin::{
    AddNodeRequest, AddUserRequest, ClusterStatusReply, ClusterStatusRequest, DeleteRequest,
    GetReply, GetRequest, ListReply, ListRequest, MembershipReply, PutRequest, RemoveNodeRequest,
    SetPasswordRequest, WriteReply,
};
use herald_grpc::config::{
    config_object::Body, AddPolicyException, ConfigObject, LocalDomain, RemovePolicyException,
};
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

/// What the stub saw.
#[derive(Default)]
struct Seen {
    puts: Vec<PutRequest>,
    gets: Vec<GetRequest>,
    authorization: Vec<Option<String>>,
}

#[derive(Clone, Default)]
struct Stub {
    seen: Arc<Mutex<Seen>>,
}

impl Stub {
    fn note<T>(&self, req: &Request<T>) {
        let auth = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Ok(mut s) = self.seen.lock() {
            s.authorization.push(auth);
        }
    }
}

fn domain(name: &str, revision: u64) -> ConfigObject {
    ConfigObject {
        revision,
        body: Some(Body::Domain(LocalDomain {
            name: name.into(),
            description: format!("{name} description"),
            user_count: 2,
        })),
    }
}

fn written(revision: u64) -> Result<Response<WriteReply>, Status> {
    Ok(Response::new(WriteReply {
        revision,
        warnings: vec!["remote users must re-add contacts".into()],
    }))
}

#[tonic::async_trait]
impl Admin for Stub {
    async fn cluster_status(
        &self,
        req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusReply>, Status> {
        self.note(&req);
        Ok(Response::new(ClusterStatusReply {
            leader_id: 1,
            nodes: Vec::new(),
            digests_agree: true,
            ..Default::default()
        }))
    }

    async fn add_node(
        &self,
        req: Request<AddNodeRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.note(&req);
        Ok(Response::new(MembershipReply {
            voters: vec![1, req.get_ref().node_id],
        }))
    }

    async fn remove_node(
        &self,
        req: Request<RemoveNodeRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        self.note(&req);
        Ok(Response::new(MembershipReply { voters: vec![1] }))
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetReply>, Status> {
        self.note(&req);
        let r = req.into_inner();
        if let Ok(mut s) = self.seen.lock() {
            s.gets.push(r.clone());
        }
        // `a.example` is a domain whatever kind was asked for, to exercise the kind check.
        if r.key != "a.example" {
            return Err(Status::not_found(format!("no such object: {}", r.key)));
        }
        Ok(Response::new(GetReply {
            object: Some(domain("a.example", 5)),
            home_node: 0,
            sessions: vec![],
        }))
    }

    async fn list(&self, req: Request<ListRequest>) -> Result<Response<ListReply>, Status> {
        self.note(&req);
        Ok(Response::new(ListReply {
            objects: vec![domain("a.example", 5), domain("b.example", 6)],
            revision: 6,
        }))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<WriteReply>, Status> {
        self.note(&req);
        let r = req.into_inner();
        let bad = r.object.as_ref().map(ConfigObject::key).as_deref() == Some("bad..name");
        if let Ok(mut s) = self.seen.lock() {
            s.puts.push(r);
        }
        if bad {
            return Err(
                herald_grpc::config::ErrorDetail::invalid("name", "not a valid DNS name")
                    .to_status(),
            );
        }
        written(7)
    }

    async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<WriteReply>, Status> {
        self.note(&req);
        written(8)
    }

    async fn add_user(&self, req: Request<AddUserRequest>) -> Result<Response<WriteReply>, Status> {
        self.note(&req);
        written(9)
    }

    async fn set_password(
        &self,
        req: Request<SetPasswordRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.note(&req);
        written(10)
    }

    async fn add_policy_exception(
        &self,
        req: Request<AddPolicyException>,
    ) -> Result<Response<WriteReply>, Status> {
        self.note(&req);
        written(11)
    }

    async fn remove_policy_exception(
        &self,
        req: Request<RemovePolicyException>,
    ) -> Result<Response<WriteReply>, Status> {
        self.note(&req);
        written(12)
    }

    async fn calendar_gateway_status(
        &self,
        req: Request<herald_grpc::admin::CalendarGatewayStatusRequest>,
    ) -> Result<Response<herald_grpc::admin::CalendarGatewayStatusReply>, Status> {
        self.note(&req);
        Ok(Response::new(
            herald_grpc::admin::CalendarGatewayStatusReply::default(),
        ))
    }

    async fn diagnose(
        &self,
        req: Request<herald_grpc::admin::DiagnoseRequest>,
    ) -> Result<Response<herald_grpc::admin::DiagnoseReply>, Status> {
        self.note(&req);
        Err(Status::unimplemented("not in the stub"))
    }

    async fn get_log_filter(
        &self,
        req: Request<herald_grpc::admin::GetLogFilterRequest>,
    ) -> Result<Response<herald_grpc::admin::LogFilterReply>, Status> {
        self.note(&req);
        Ok(Response::new(herald_grpc::admin::LogFilterReply {
            nodes: vec![herald_grpc::admin::NodeLogFilter {
                node_id: 1,
                filter: "info,raft=warn".into(),
                error: String::new(),
            }],
        }))
    }

    async fn set_log_filter(
        &self,
        req: Request<herald_grpc::admin::SetLogFilterRequest>,
    ) -> Result<Response<herald_grpc::admin::LogFilterReply>, Status> {
        self.note(&req);
        let r = req.into_inner();
        if r.directives.contains("loud") {
            return Err(Status::invalid_argument(format!(
                "invalid log directive `{}`",
                r.directives
            )));
        }
        Ok(Response::new(herald_grpc::admin::LogFilterReply {
            nodes: vec![herald_grpc::admin::NodeLogFilter {
                node_id: 1,
                filter: format!("info,{}", r.directives),
                error: String::new(),
            }],
        }))
    }

    async fn reload_certs(
        &self,
        req: Request<herald_grpc::admin::ReloadCertsRequest>,
    ) -> Result<Response<herald_grpc::admin::ReloadCertsReply>, Status> {
        self.note(&req);
        let ok = herald_grpc::admin::NodeCerts {
            node_id: 1,
            error: String::new(),
            state: Some(herald_grpc::cluster::CertsState {
                reloaded: 2,
                failures: vec![],
                certificates: vec![herald_grpc::cluster::CertInForce {
                    name: "a.example".into(),
                    path: "/certs/a.example.pem".into(),
                    dns_names: vec!["a.example".into()],
                    not_after_unix: 1_830_297_600,
                }],
            }),
        };
        let mut nodes = vec![ok];
        if !req.into_inner().this_node_only {
            nodes.push(herald_grpc::admin::NodeCerts {
                node_id: 2,
                error: "node 2 did not answer".into(),
                state: None,
            });
        }
        Ok(Response::new(herald_grpc::admin::ReloadCertsReply {
            nodes,
        }))
    }

    async fn audit_list(
        &self,
        req: Request<herald_grpc::admin::AuditListRequest>,
    ) -> Result<Response<herald_grpc::admin::AuditListReply>, Status> {
        self.note(&req);
        let r = req.into_inner();
        let record = herald_grpc::config::AuditRecord {
            index: 9,
            at_ms: 86_400_000,
            actor: "cert:CN=ops".into(),
            node_id: 1,
            kind: r.kind.max(1),
            key: "a.example".into(),
            operation: "update".into(),
            summary: format!("limit={} since_ms={}", r.limit, r.since_ms),
        };
        Ok(Response::new(herald_grpc::admin::AuditListReply {
            records: vec![record],
            total: 1,
        }))
    }
}

/// Starts the stub on 127.0.0.1:0 and returns its address and what it records.
async fn start_stub() -> (String, Arc<Mutex<Seen>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr").to_string();
    let stub = Stub::default();
    let seen = stub.seen.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AdminServer::new(stub))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, seen)
}

#[derive(Parser, Debug)]
#[command(name = "herald")]
struct TestCli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    cmd: AdminCommand,
}

fn cli(addr: &str, line: &str) -> (GlobalOpts, AdminCommand) {
    let args = ["herald", "--admin", addr, "--admin-token", "tok3n"]
        .into_iter()
        .chain(line.split_whitespace());
    let c = TestCli::try_parse_from(args).unwrap_or_else(|e| panic!("{line}: {e}"));
    (c.global, c.cmd)
}

fn seen<R>(seen: &Arc<Mutex<Seen>>, f: impl FnOnce(&Seen) -> R) -> R {
    let guard = seen.lock().unwrap_or_else(|p| p.into_inner());
    f(&guard)
}

#[tokio::test]
async fn write_list_and_error_through_run() {
    let (addr, log) = start_stub().await;

    // A write.
    let (g, c) = cli(&addr, "domain add new.example --description New");
    run(&g, c).await.expect("domain add succeeds");
    let put = seen(&log, |s| s.puts.last().cloned()).expect("a put arrived");
    assert_eq!(put.mode, herald_grpc::config::WriteMode::Create as i32);
    assert_eq!(
        put.object.and_then(|o| o.body),
        Some(Body::Domain(LocalDomain {
            name: "new.example".into(),
            description: "New".into(),
            user_count: 0,
        }))
    );
    let (g, c) = cli(&addr, "domain add new.example");
    let out = execute(&g, c).await.expect("domain add succeeds");
    assert_eq!(out.stdout, "revision 7\n");
    assert_eq!(
        out.stderr,
        vec!["warning: remote users must re-add contacts"]
    );

    // A list.
    let (g, c) = cli(&addr, "domain list -o json");
    run(&g, c).await.expect("domain list succeeds");
    let (g, c) = cli(&addr, "domain list -o json");
    let out = execute(&g, c).await.expect("domain list succeeds");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert_eq!(v[1]["name"], "b.example");
    assert_eq!(v[1]["revision"], 6);

    // An error status carries the server's message.
    let (g, c) = cli(&addr, "domain add bad..name");
    let err = run(&g, c).await.expect_err("the stub rejects the name");
    assert_eq!(
        format!("{err:#}"),
        "INVALID_ARGUMENT: name: not a valid DNS name"
    );

    // Every call carried the bearer token.
    let auth = seen(&log, |s| s.authorization.clone());
    assert!(!auth.is_empty());
    assert!(
        auth.iter().all(|a| a.as_deref() == Some("Bearer tok3n")),
        "{auth:?}"
    );
}

#[tokio::test]
async fn update_reads_then_writes_with_the_revision_read() {
    let (addr, log) = start_stub().await;
    let (g, c) = cli(&addr, "domain update a.example --description Changed");
    let out = execute(&g, c).await.expect("update succeeds");
    assert_eq!(out.stdout, "revision 7\n");
    let put = seen(&log, |s| s.puts.last().cloned()).expect("a put arrived");
    assert_eq!(put.mode, herald_grpc::config::WriteMode::Update as i32);
    assert_eq!(put.expected_revision, 5);
    assert_eq!(
        put.object.and_then(|o| o.body),
        Some(Body::Domain(LocalDomain {
            name: "a.example".into(),
            description: "Changed".into(),
            user_count: 2,
        }))
    );

    // An explicit --revision wins.
    let (g, c) = cli(
        &addr,
        "domain update a.example --description X --revision 4",
    );
    execute(&g, c).await.expect("update succeeds");
    let put = seen(&log, |s| s.puts.last().cloned()).expect("a put arrived");
    assert_eq!(put.expected_revision, 4);

    // Updating a missing keyed object fails with the server's NOT_FOUND.
    let (g, c) = cli(&addr, "domain update missing.example --description X");
    let err = execute(&g, c).await.expect_err("not found");
    assert_eq!(
        err.to_string(),
        "NOT_FOUND: no such object: missing.example"
    );

    // A singleton never written starts from its empty object and is upserted.
    let (g, c) = cli(&addr, "routing-node set 2 1");
    execute(&g, c).await.expect("set succeeds");
    let put = seen(&log, |s| s.puts.last().cloned()).expect("a put arrived");
    assert_eq!(put.mode, herald_grpc::config::WriteMode::Upsert as i32);
    assert_eq!(put.expected_revision, 0);
    assert_eq!(
        put.object.and_then(|o| o.body),
        Some(Body::RoutingNode(
            herald_grpc::config::RoutingNodeSettings {
                node_order: vec![2, 1]
            }
        ))
    );

    // A reply of the wrong kind is reported, not rendered.
    let (g, c) = cli(&addr, "tls-peer show a.example");
    let err = execute(&g, c)
        .await
        .expect_err("the stub answers with a domain");
    assert!(
        matches!(
            err,
            CliError::WrongKind {
                want: "tls-peer",
                got: "domain"
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn unreachable_admin_api_is_a_connect_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let (g, c) = cli(&addr, "cluster status");
    let err = execute(&g, c).await.expect_err("nothing listens");
    assert!(matches!(err, CliError::Connect { .. }), "{err:?}");
    let text = format!("{:#}", anyhow::Error::from(err));
    assert!(
        text.starts_with(&format!("cannot connect to the admin API at {addr}")),
        "{text}"
    );
}

#[tokio::test]
async fn reload_certs_lists_certificates_and_fails_when_a_node_did_not_answer() {
    let (addr, _log) = start_stub().await;
    let (g, c) = cli(&addr, "cluster reload-certs --this-node-only");
    let out = execute(&g, c).await.expect("reload-certs runs");
    assert_eq!(out.failures, 0, "{out:?}");
    assert!(out.stdout.contains("a.example"), "{}", out.stdout);
    assert!(
        out.stdout.contains("2028-01-01T00:00:00Z"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("/certs/a.example.pem"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("node 1: 2 certificate(s) re-read"),
        "{}",
        out.stdout
    );

    let (g, c) = cli(&addr, "cluster reload-certs -o json");
    let out = execute(&g, c).await.expect("reload-certs runs");
    assert_eq!(out.failures, 1, "the unanswered node counts as a failure");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v[1]["error"], "node 2 did not answer");
    assert_eq!(v[0]["certificates"][0]["not_after"], "2028-01-01T00:00:00Z");
}

#[tokio::test]
async fn audit_list_sends_its_filters_and_renders_newest_first() {
    let (addr, _log) = start_stub().await;
    let (g, c) = cli(
        &addr,
        "audit list --limit 7 --kind calendar-credentials --since 1970-01-02",
    );
    let out = execute(&g, c).await.expect("audit list runs");
    assert!(out.stdout.contains("cert:CN=ops"), "{}", out.stdout);
    assert!(
        out.stdout.contains("calendar-credentials"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("limit=7 since_ms=86400000"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("1970-01-02T00:00:00.000Z"),
        "{}",
        out.stdout
    );
}
