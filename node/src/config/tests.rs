use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use clap::Parser;

use super::*;

/// Wraps [`AgentArgs`] the way the real CLI flattens it into `herald agent`.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    agent: AgentArgs,
}

/// Serialises every test that reads or writes `HERALD_*` variables (clap reads them while
/// parsing), and hides variables from the outer environment while held.
static ENV_LOCK: Mutex<()> = Mutex::new(());

struct EnvGuard {
    saved: Vec<(String, String)>,
    set: Vec<String>,
    _lock: MutexGuard<'static, ()>,
}

impl EnvGuard {
    fn new(vars: &[(&str, &str)]) -> Self {
        let lock = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let saved: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("HERALD_"))
            .collect();
        for (k, _) in &saved {
            std::env::remove_var(k);
        }
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        EnvGuard {
            saved,
            set: vars.iter().map(|(k, _)| k.to_string()).collect(),
            _lock: lock,
        }
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for k in &self.set {
            std::env::remove_var(k);
        }
        for (k, v) in &self.saved {
            std::env::set_var(k, v);
        }
    }
}

fn parse(env: &[(&str, &str)], argv: &[&str]) -> AgentArgs {
    let _guard = EnvGuard::new(env);
    let mut full = vec!["herald"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(full) {
        Ok(cli) => cli.agent,
        Err(e) => panic!("parse {argv:?}: {e}"),
    }
}

fn write_toml(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, text).expect("write toml");
    path
}

#[test]
fn default_is_valid_single_node() {
    let cfg = NodeConfig::default();
    cfg.validate().expect("default validates");
    assert_eq!(cfg.cluster_advertise(), "127.0.0.1:7470");
    assert_eq!(cfg.admin_advertise(), "127.0.0.1:7471");
    assert_eq!(cfg.domains, vec!["localhost"]);
    let loaded = NodeConfig::load(&parse(&[], &[])).expect("load with nothing");
    assert_eq!(loaded, cfg);
}

#[test]
fn precedence_default_toml_env_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_toml(
        &dir,
        "node_id = 2\nc2s_port = 6000\ns2s_port = 6001\nsip_port = 6002\nlog_level = \"debug\"\n\
         [raft]\ntick_ms = 50\n",
    );
    let path_str = path.to_str().expect("utf-8 temp path");
    let env = [
        ("HERALD_CONFIG", path_str),
        ("HERALD_C2S_PORT", "7000"),
        ("HERALD_S2S_PORT", "7001"),
        ("HERALD_RAFT_TICK_MS", "60"),
        ("HERALD_DOMAINS", "a.example, b.example"),
        ("HERALD_BOOTSTRAP", "true"),
    ];
    let args = parse(&env, &["--s2s-port", "8001", "--domain", "c.example"]);
    let cfg = NodeConfig::load(&args).expect("load");
    // default only
    assert_eq!(cfg.http_port, 9470);
    // toml over default
    assert_eq!(cfg.node_id, 2);
    assert_eq!(cfg.sip_port, 6002);
    assert_eq!(cfg.log_level, "debug");
    // env over toml
    assert_eq!(cfg.c2s_port, 7000);
    assert_eq!(cfg.raft.tick_ms, 60);
    assert!(cfg.bootstrap);
    // flag over env
    assert_eq!(cfg.s2s_port, 8001);
    assert_eq!(cfg.domains, vec!["c.example"]);

    // env list splitting, no flag
    let args = parse(&env, &[]);
    let cfg = NodeConfig::load(&args).expect("load");
    assert_eq!(cfg.domains, vec!["a.example", "b.example"]);
    // a flag can turn a boolean from env back off
    let args = parse(&env, &["--bootstrap=false"]);
    assert!(!NodeConfig::load(&args).expect("load").bootstrap);
    // a bare flag means true
    assert_eq!(parse(&[], &["--bootstrap"]).bootstrap, Some(true));
    assert_eq!(parse(&[], &[]).bootstrap, None);
}

#[test]
fn every_flag_has_its_env_var() {
    type Getter = fn(&NodeConfig) -> String;
    let cases: &[(&str, &str, Getter)] = &[
        ("HERALD_NODE_ID", "7", |c| c.node_id.to_string()),
        ("HERALD_BIND", "127.0.0.5", |c| c.bind.to_string()),
        ("HERALD_ADVERTISE_HOST", "n1.example", |c| {
            c.advertise_host.clone().unwrap_or_default()
        }),
        ("HERALD_DATA_DIR", "/tmp/h", |c| {
            c.data_dir.display().to_string()
        }),
        ("HERALD_JOIN", "n2.example", |c| {
            c.join_target().unwrap_or_default()
        }),
        ("HERALD_C2S_TLS_PORT", "1001", |c| {
            c.c2s_tls_port.to_string()
        }),
        ("HERALD_SIP_TLS_PORT", "1002", |c| {
            c.sip_tls_port.to_string()
        }),
        ("HERALD_SIP_RELAY", "false", |c| c.sip_relay.to_string()),
        ("HERALD_CLUSTER_PORT", "1003", |c| {
            c.cluster_port.to_string()
        }),
        ("HERALD_ADMIN_PORT", "1004", |c| c.admin_port.to_string()),
        ("HERALD_HTTP_PORT", "1005", |c| c.http_port.to_string()),
        ("HERALD_ADMIN_TOKEN", "s3cret", |c| {
            c.admin_token
                .as_ref()
                .map(|s| s.expose().to_string())
                .unwrap_or_default()
        }),
        ("HERALD_CLUSTER_TOKEN", "t0ken", |c| {
            c.cluster_token
                .as_ref()
                .map(|s| s.expose().to_string())
                .unwrap_or_default()
        }),
        ("HERALD_ADMIN_CLIENT_CA", "/ca.pem", |c| {
            c.admin_client_ca
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        }),
        ("HERALD_LOG_FORMAT", "json", |c| {
            format!("{:?}", c.log_format)
        }),
        ("HERALD_LOG_LEVEL", "warn", |c| c.log_level.clone()),
        ("HERALD_RAFT_ELECTION_TICKS", "20", |c| {
            c.raft.election_ticks.to_string()
        }),
        ("HERALD_RAFT_HEARTBEAT_TICKS", "3", |c| {
            c.raft.heartbeat_ticks.to_string()
        }),
        ("HERALD_SNAPSHOT_ENTRIES", "50", |c| {
            c.raft.snapshot_entries.to_string()
        }),
        ("HERALD_COMPACTION_LAG", "300", |c| {
            c.raft.compaction_lag.to_string()
        }),
        ("HERALD_MAX_GRPC_MESSAGE_BYTES", "100000", |c| {
            c.max_grpc_message_bytes.to_string()
        }),
        ("HERALD_SHUTDOWN_GRACE_MS", "5", |c| {
            c.shutdown_grace_ms.to_string()
        }),
        ("HERALD_WORKERS", "3", |c| c.workers.to_string()),
        ("HERALD_DNS_RESOLVER", "127.0.0.53:5353", |c| {
            c.dns_resolver.clone().unwrap_or_default()
        }),
        ("HERALD_PEERS_FROM_DNS", "peers.example", |c| {
            c.peers_from_dns.clone().unwrap_or_default()
        }),
        ("HERALD_SCALE_DOWN_AFTER", "30", |c| {
            c.scale_down_after.to_string()
        }),
        ("HERALD_MAX_CONNECTIONS", "7", |c| {
            c.xmpp.max_connections.to_string()
        }),
        ("HERALD_MAX_CONNECTIONS_PER_SOURCE", "3", |c| {
            c.xmpp.max_connections_per_source.to_string()
        }),
        ("HERALD_MAX_STANZAS_PER_SECOND", "9", |c| {
            c.xmpp.max_stanzas_per_second.to_string()
        }),
        ("HERALD_MAX_BYTES_PER_SECOND", "4096", |c| {
            c.xmpp.max_bytes_per_second.to_string()
        }),
    ];
    for (var, value, get) in cases {
        let mut cfg = NodeConfig::default();
        parse(&[(var, value)], &[]).apply_to(&mut cfg);
        let got = get(&cfg);
        let want = match *var {
            "HERALD_JOIN" => "n2.example:7470".to_string(),
            "HERALD_LOG_FORMAT" => "Json".to_string(),
            _ => value.to_string(),
        };
        assert_eq!(got, want, "{var}");
    }
    let mut cfg = NodeConfig::default();
    parse(
        &[("HERALD_TLS_CERT", "/c.pem"), ("HERALD_TLS_KEY", "/k.pem")],
        &[],
    )
    .apply_to(&mut cfg);
    assert_eq!(cfg.tls_cert, Some(PathBuf::from("/c.pem")));
    assert_eq!(cfg.tls_key, Some(PathBuf::from("/k.pem")));
}

#[test]
fn every_toml_key_round_trips() {
    let cfg = NodeConfig {
        advertise_host: Some("h.example".into()),
        join: Some("n1".into()),
        tls_cert: Some("/c".into()),
        tls_key: Some("/k".into()),
        admin_token: Some(Secret::new("a")),
        admin_client_ca: Some("/ca".into()),
        secrets_key_file: Some("/sk".into()),
        cluster_token: Some(Secret::new("c")),
        cluster_ca: Some("/cca".into()),
        cluster_ca_key: Some("/ccak".into()),
        cluster_cert: Some("/cc".into()),
        cluster_key: Some("/ck".into()),
        log_format: LogFormat::Json,
        ..NodeConfig::default()
    };
    let text = toml::to_string(&cfg).expect("serialize");
    assert_eq!(NodeConfig::from_toml_str(&text).expect("parse back"), cfg);
    // the example file documents every key and parses
    let example = include_str!("../../../herald.example.toml");
    let parsed = NodeConfig::from_toml_str(example).expect("example parses");
    parsed.validate().expect("example validates");
    for key in text
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
    {
        assert!(
            example.contains(&format!("{key} = ")),
            "example lacks `{key}`"
        );
    }
}

#[test]
fn unknown_toml_keys_are_rejected() {
    for text in ["nodeid = 3\n", "[raft]\ntick = 5\n", "[extra]\n"] {
        let err = NodeConfig::from_toml_str(text).expect_err(text);
        assert!(err.to_string().contains("unknown"), "{text}: {err}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_toml(&dir, "c2s_prot = 1\n");
    let err = NodeConfig::from_toml_file(&path).expect_err("unknown key");
    assert!(matches!(err, ConfigError::Parse { .. }));
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert!(
        text.contains("herald.toml") && text.contains("c2s_prot"),
        "{text}"
    );
    let err = NodeConfig::from_toml_file(&dir.path().join("missing.toml")).expect_err("missing");
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}

#[test]
fn validation_rules() {
    const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    fn secured(c: &mut NodeConfig) {
        c.bind = PUBLIC;
        c.admin_token = Some(Secret::new("adm-token-1"));
        c.cluster_ca = Some("/cluster-ca.pem".into());
        c.cluster_ca_key = Some("/cluster-ca-key.pem".into());
    }
    type Case = (&'static str, fn(&mut NodeConfig), Option<&'static str>);
    let cases: Vec<Case> = vec![
        ("default", |_| {}, None),
        ("node id 0", |c| c.node_id = 0, Some("node_id")),
        (
            "join + bootstrap",
            |c| {
                c.join = Some("n1".into());
                c.bootstrap = true;
            },
            Some("join"),
        ),
        ("bad join", |c| c.join = Some("n1:x".into()), Some("join")),
        (
            "same ports",
            |c| c.http_port = c.admin_port,
            Some("admin_port"),
        ),
        (
            "zero ports may repeat",
            |c| {
                c.c2s_port = 0;
                c.s2s_port = 0;
            },
            None,
        ),
        (
            "heartbeat = election",
            |c| c.raft.heartbeat_ticks = 10,
            Some("raft.heartbeat_ticks"),
        ),
        (
            "heartbeat 0",
            |c| c.raft.heartbeat_ticks = 0,
            Some("raft.heartbeat_ticks"),
        ),
        (
            "tick too small",
            |c| c.raft.tick_ms = 9,
            Some("raft.tick_ms"),
        ),
        (
            "tick too large",
            |c| c.raft.tick_ms = 10_001,
            Some("raft.tick_ms"),
        ),
        ("tick bounds ok", |c| c.raft.tick_ms = 10_000, None),
        (
            "snapshot 0",
            |c| c.raft.snapshot_entries = 0,
            Some("raft.snapshot_entries"),
        ),
        (
            "cert without key",
            |c| c.tls_cert = Some("/c".into()),
            Some("tls_key"),
        ),
        (
            "key without cert",
            |c| c.tls_key = Some("/k".into()),
            Some("tls_cert"),
        ),
        ("no domains", |c| c.domains.clear(), Some("domains")),
        (
            "bad domain",
            |c| c.domains = vec!["a_b.example".into()],
            Some("domains"),
        ),
        (
            "dup domain",
            |c| c.domains = vec!["a.ex".into(), "A.ex".into()],
            Some("domains"),
        ),
        (
            "public bind, no tokens",
            |c| c.bind = PUBLIC,
            Some("admin_token"),
        ),
        (
            "public bind, admin token only",
            |c| {
                c.bind = PUBLIC;
                c.admin_token = Some(Secret::new("token-123"));
            },
            Some("cluster_ca"),
        ),
        (
            // The shared token alone is never the only guard off loopback.
            "public bind, client ca + cluster token only",
            |c| {
                c.bind = PUBLIC;
                c.admin_client_ca = Some("/ca".into());
                c.cluster_token = Some(Secret::new("token-123"));
            },
            Some("cluster_ca"),
        ),
        (
            "public bind, client ca + cluster mTLS",
            |c| {
                c.bind = PUBLIC;
                c.admin_client_ca = Some("/ca".into());
                c.cluster_ca = Some("/cca".into());
                c.cluster_cert = Some("/cc".into());
                c.cluster_key = Some("/ck".into());
            },
            None,
        ),
        (
            "cluster ca without a node certificate",
            |c| c.cluster_ca = Some("/cca".into()),
            Some("cluster_cert"),
        ),
        (
            "cluster cert without its key",
            |c| {
                c.cluster_ca = Some("/cca".into());
                c.cluster_cert = Some("/cc".into());
            },
            Some("cluster_key"),
        ),
        (
            "cluster ca key without the ca",
            |c| c.cluster_ca_key = Some("/ccak".into()),
            Some("cluster_ca"),
        ),
        ("public bind, both tokens", secured, None),
        (
            "empty token",
            |c| c.admin_token = Some(Secret::new(" ")),
            Some("admin_token"),
        ),
        (
            // Not a valid header value: the check would have been skipped (fail-open) before.
            "admin token with a newline",
            |c| c.admin_token = Some(Secret::new("token-123\n")),
            Some("admin_token"),
        ),
        (
            "admin token with a space",
            |c| c.admin_token = Some(Secret::new("token 123")),
            Some("admin_token"),
        ),
        (
            "admin token not ASCII",
            |c| c.admin_token = Some(Secret::new("jeton-sécurité")),
            Some("admin_token"),
        ),
        (
            "cluster token with a control character",
            |c| c.cluster_token = Some(Secret::new("token\u{7}1234")),
            Some("cluster_token"),
        ),
        (
            "admin token too short",
            |c| c.admin_token = Some(Secret::new("short")),
            Some("admin_token"),
        ),
        (
            "unspecified bind needs advertise",
            |c| {
                secured(c);
                c.bind = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
            },
            Some("advertise_host"),
        ),
        (
            "unspecified bind with advertise",
            |c| {
                secured(c);
                c.bind = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
                c.advertise_host = Some("node1.example".into());
            },
            None,
        ),
        (
            "advertise with port",
            |c| c.advertise_host = Some("h:1".into()),
            Some("advertise_host"),
        ),
        (
            "other loopback ip",
            |c| c.bind = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
            None,
        ),
        (
            "bad log filter",
            |c| c.log_level = "info,[".into(),
            Some("log_level"),
        ),
        (
            "tiny grpc limit",
            |c| c.max_grpc_message_bytes = 10,
            Some("max_grpc_message_bytes"),
        ),
    ];
    for (name, mutate, want_key) in cases {
        let mut cfg = NodeConfig::default();
        mutate(&mut cfg);
        match (cfg.validate(), want_key) {
            (Ok(()), None) => {}
            (Err(e), Some(key)) => {
                let msg = e.to_string();
                assert!(msg.contains(key), "{name}: `{msg}` should name `{key}`");
            }
            (got, want) => panic!("{name}: got {got:?}, wanted error on {want:?}"),
        }
    }
    let cfg = NodeConfig {
        bind: PUBLIC,
        ..NodeConfig::default()
    };
    let msg = cfg.validate().expect_err("open admin").to_string();
    assert!(
        msg.contains("the admin API is open on loopback only: set admin_token or admin_client_ca")
    );
}

#[test]
fn join_target_parsing() {
    let cases = [
        ("10.0.0.2", Ok("10.0.0.2:7470")),
        ("10.0.0.2:9000", Ok("10.0.0.2:9000")),
        ("node2.example", Ok("node2.example:7470")),
        ("node2.example:7000", Ok("node2.example:7000")),
        ("localhost", Ok("localhost:7470")),
        ("::1", Ok("[::1]:7470")),
        ("[::1]", Ok("[::1]:7470")),
        ("[::1]:7001", Ok("[::1]:7001")),
        (" n1 ", Ok("n1:7470")),
        ("", Err(())),
        ("n1:", Err(())),
        ("n1:0", Err(())),
        ("n1:70000", Err(())),
        ("http://n1", Err(())),
        ("[n1]", Err(())),
        ("a b", Err(())),
    ];
    for (input, want) in cases {
        let got = parse_join(input);
        match want {
            Ok(w) => assert_eq!(got.as_deref(), Ok(w), "{input}"),
            Err(()) => assert!(got.is_err(), "{input}: {got:?}"),
        }
    }
    let mut cfg = NodeConfig::default();
    assert_eq!(cfg.join_target(), None);
    cfg.join = Some("n3".into());
    assert_eq!(cfg.join_target().as_deref(), Some("n3:7470"));
}

#[test]
fn advertise_addresses() {
    let mut cfg = NodeConfig::for_test(2, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), "d".into());
    cfg.validate().expect("for_test validates");
    assert_eq!(cfg.cluster_port, 0);
    assert_eq!(cfg.addr(5).to_string(), "127.0.0.2:5");
    assert_eq!(cfg.advertise(7470), "127.0.0.2:7470");
    cfg.bind = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    assert_eq!(cfg.advertise(1), "[::1]:1");
    cfg.advertise_host = Some("n2.example".into());
    cfg.cluster_port = 7470;
    cfg.admin_port = 7471;
    assert_eq!(cfg.cluster_advertise(), "n2.example:7470");
    assert_eq!(cfg.admin_advertise(), "n2.example:7471");
    cfg.advertise_host = Some("fd00::2".into());
    assert_eq!(cfg.cluster_advertise(), "[fd00::2]:7470");
}

#[test]
fn secrets_are_not_debug_printed() {
    let cfg = NodeConfig {
        admin_token: Some(Secret::new("hunter2")),
        ..NodeConfig::default()
    };
    assert!(!format!("{cfg:?}").contains("hunter2"));
}

#[test]
fn bad_flag_values_are_clap_errors() {
    let _guard = EnvGuard::new(&[]);
    for argv in [
        ["herald", "--node-id", "x"],
        ["herald", "--bind", "not-an-ip"],
        ["herald", "--log-format", "xml"],
        ["herald", "--c2s-port", "70000"],
    ] {
        assert!(Cli::try_parse_from(argv).is_err(), "{argv:?}");
    }
}
