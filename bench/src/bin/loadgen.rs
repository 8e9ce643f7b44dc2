//! `loadgen`: drives N real XMPP clients against one server and writes result rows.
//!
//! ```text
//! loadgen login  --server 127.0.0.21:5222 --ca ca.pem --domain example.test --users 200 --json out.json
//! loadgen idle   ... --users 2000 --server-pid PID --duration 10 [--processes 2]
//! loadgen chat   ... --users 200 --rates 2000,5000,10000 --duration 5
//! loadgen fanout ... --users 1001 --rounds 20 --rate 5
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use herald_bench::client::{tls_config, ConnectConfig};
use herald_bench::report::{append_rows, machine, today, Row};
use herald_bench::scenarios::{chat, fanout, idle, login, Common};
use herald_bench::scram::Hash;

#[derive(Parser)]
#[command(about = "XMPP load generator for Herald / Prosody / ejabberd comparisons")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Login storm: N users sign in, fetch the roster and send initial presence.
    Login(CommonArgs),
    /// Idle hold: N sessions held for --duration; server RSS growth per session.
    Idle(CommonArgs),
    /// One slice of `idle --processes K` (started by `idle`; prints READY, holds until stdin
    /// closes).
    #[command(hide = true)]
    IdleWorker(CommonArgs),
    /// Chat: pairs exchange messages at stepped total rates (--rates) until p99 > --p99-limit.
    Chat {
        #[command(flatten)]
        common: CommonArgs,
        /// Second server (IP:PORT) for odd slots: cross-node chat on a cluster.
        #[arg(long)]
        server2: Option<SocketAddr>,
        /// p99 limit in milliseconds.
        #[arg(long, default_value_t = 100.0)]
        p99_limit: f64,
        /// Most messages per step.
        #[arg(long, default_value_t = 2_000_000)]
        max_messages: u64,
    },
    /// Presence fan-out: user 1 publishes, the other --users - 1 watch it.
    Fanout {
        #[command(flatten)]
        common: CommonArgs,
        /// Status changes of the publisher.
        #[arg(long, default_value_t = 20)]
        rounds: u64,
        /// Seconds allowed for subscription setup (not measured).
        #[arg(long, default_value_t = 180)]
        setup_timeout: u64,
    },
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Server address IP:PORT.
    #[arg(long)]
    server: SocketAddr,
    /// CA certificate (PEM) the server certificate must chain to.
    #[arg(long)]
    ca: PathBuf,
    /// XMPP domain (and TLS server name).
    #[arg(long)]
    domain: String,
    /// Sessions (users) to connect.
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Localpart prefix (users are PREFIX1..PREFIXn).
    #[arg(long, default_value = "u")]
    user_prefix: String,
    /// Password prefix (user PREFIXi has password PASSWORD_PREFIXi).
    #[arg(long, default_value = "pw")]
    password_prefix: String,
    /// Number of the first user.
    #[arg(long, default_value_t = 1)]
    first_user: usize,
    /// Measurement time in seconds (idle hold; each chat step).
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Rate: fan-out status changes per second.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Chat: comma-separated total offered rates (messages/s), tried in order.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,5000,10000")]
    rates: Vec<f64>,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Per-login timeout in seconds.
    #[arg(long, default_value_t = 30)]
    login_timeout: u64,
    /// First source address (clients bind 127.0.0.x round robin from here).
    #[arg(long, default_value = "127.0.1.1")]
    source_base: Ipv4Addr,
    /// Number of source addresses.
    #[arg(long, default_value_t = 16)]
    source_count: u8,
    /// Direct TLS (XEP-0368) instead of STARTTLS.
    #[arg(long)]
    direct_tls: bool,
    /// SCRAM hash: sha1 or sha256.
    #[arg(long, default_value = "sha1")]
    scram: String,
    /// System name written into rows (herald, prosody, ejabberd).
    #[arg(long, default_value = "herald")]
    system: String,
    /// PID of the server process (RSS and CPU readings).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the time of each login step (debugging a server's login path).
    #[arg(long)]
    trace_login: bool,
    /// Idle: spread the sessions over this many generator processes (one process may hold
    /// at most ~20,000 sockets).
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Runtime worker threads of the generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Append result rows to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn common(a: &CommonArgs) -> Result<Common, String> {
    let hash = match a.scram.as_str() {
        "sha1" => Hash::Sha1,
        "sha256" => Hash::Sha256,
        other => return Err(format!("--scram {other}: expected sha1 or sha256")),
    };
    let tls = tls_config(&a.ca).map_err(|e| e.to_string())?;
    let base = u32::from(a.source_base);
    let sources = (0..u32::from(a.source_count))
        .map(|k| IpAddr::V4(Ipv4Addr::from(base + k)))
        .collect();
    Ok(Common {
        connect: ConnectConfig {
            server: a.server,
            domain: a.domain.clone(),
            sources,
            tls,
            direct_tls: a.direct_tls,
            hash,
            timeout: Duration::from_secs(a.login_timeout),
            trace: a.trace_login,
        },
        user_prefix: a.user_prefix.clone(),
        password_prefix: a.password_prefix.clone(),
        first_user: a.first_user,
        concurrency: a.concurrency,
        system: a.system.clone(),
        server_pid: a.server_pid,
        machine: machine(),
        date: today(),
    })
}

/// Splits `--users` over `--processes`: this process's count and one slice per worker (own
/// source addresses each, so that no process runs out of ephemeral ports).
fn idle_slices(a: &CommonArgs) -> Result<(usize, Vec<idle::WorkerSlice>), String> {
    let k = a.processes.clamp(1, 16);
    let per = a.users.div_ceil(k);
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut workers = Vec::new();
    for j in 1..k {
        let start = (j * per).min(a.users);
        let users = per.min(a.users - start);
        if users == 0 {
            break;
        }
        let base = u32::from(a.source_base) + (j as u32) * u32::from(a.source_count);
        let mut argv = vec![exe.display().to_string(), "idle-worker".to_string()];
        let flags: [(&str, String); 12] = [
            ("--server", a.server.to_string()),
            ("--ca", a.ca.display().to_string()),
            ("--domain", a.domain.clone()),
            ("--users", users.to_string()),
            ("--user-prefix", a.user_prefix.clone()),
            ("--password-prefix", a.password_prefix.clone()),
            ("--first-user", (a.first_user + start).to_string()),
            ("--duration", a.duration.to_string()),
            ("--concurrency", a.concurrency.to_string()),
            ("--login-timeout", a.login_timeout.to_string()),
            ("--source-base", Ipv4Addr::from(base).to_string()),
            ("--scram", a.scram.clone()),
        ];
        for (flag, value) in flags {
            argv.push(flag.to_string());
            argv.push(value);
        }
        argv.push("--source-count".into());
        argv.push(a.source_count.to_string());
        if a.direct_tls {
            argv.push("--direct-tls".into());
        }
        workers.push(idle::WorkerSlice { argv, users });
    }
    Ok((per.min(a.users), workers))
}

async fn run(cli: Cli) -> Result<(Vec<Row>, Option<PathBuf>), String> {
    match cli.cmd {
        Cmd::Login(a) => {
            let c = common(&a)?;
            Ok((vec![login::run(&c, a.users).await], a.json))
        }
        Cmd::Idle(a) => {
            let c = common(&a)?;
            let (own, workers) = idle_slices(&a)?;
            let row = idle::run(&c, own, Duration::from_secs(a.duration), &workers).await;
            Ok((vec![row], a.json))
        }
        Cmd::IdleWorker(a) => {
            let c = common(&a)?;
            let limit = Duration::from_secs(a.duration + 1800);
            idle::worker(&c, a.users, limit).await;
            Ok((vec![], None))
        }
        Cmd::Chat {
            common: a,
            server2,
            p99_limit,
            max_messages,
        } => {
            let c = common(&a)?;
            let second = server2.map(|addr| {
                let mut s = c.clone();
                s.connect.server = addr;
                s.server_pid = None;
                s
            });
            let plan = chat::ChatPlan {
                sessions: a.users,
                rates: a.rates.clone(),
                duration: Duration::from_secs(a.duration),
                p99_limit_ms: p99_limit,
                max_messages,
                scenario: if second.is_some() {
                    "chat-cross-node"
                } else {
                    "chat"
                }
                .into(),
                second,
            };
            Ok((chat::run(&c, &plan).await, a.json))
        }
        Cmd::Fanout {
            common: a,
            rounds,
            setup_timeout,
        } => {
            let c = common(&a)?;
            let plan = fanout::FanoutPlan {
                watchers: a.users.saturating_sub(1),
                rounds,
                interval: Duration::from_secs_f64(1.0 / a.rate.max(0.01)),
                setup_timeout: Duration::from_secs(setup_timeout),
            };
            Ok((vec![fanout::run(&c, &plan).await], a.json))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.cmd {
        Cmd::Login(a) | Cmd::Idle(a) | Cmd::IdleWorker(a) => a.threads,
        Cmd::Chat { common, .. } | Cmd::Fanout { common, .. } => common.threads,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok((rows, json)) => {
            for r in &rows {
                println!("{}", serde_json::to_string(r).unwrap_or_default());
            }
            if let Some(path) = json {
                if let Err(e) = append_rows(&path, &rows) {
                    eprintln!("loadgen: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
