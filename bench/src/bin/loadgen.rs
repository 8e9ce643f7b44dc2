//! `loadgen`: drives N real XMPP clients against one server and writes result rows.
//!
//! ```text
//! loadgen login  --server 127.0.0.21:5222 --ca ca.pem --domain example.test --users 200 --json out.json
//! loadgen idle   ... --users 2000 --server-pid PID --duration 10 [--processes 2]
//! loadgen chat   ... --users 200 --rates 2000,5000,10000 --duration 10 --drain 5 --shape oneway
//! loadgen fanout ... --users 1001 --rounds 20 --rate 5
//! loadgen storm  ... --users 2000 --watch 100 --interval 10 --duration 60
//! loadgen calendar ... --users 10100 --calendar-users 10000 --watch 8 --chat-rate 1000 \
//!     --start-file start.txt   # with `loadgen caldav-serve` as the calendar gateway
//! loadgen caldav-serve --listen 127.0.0.61:8443 --cert c.pem --key k.pem \
//!     --credentials svc:pw --start-file start.txt
//! loadgen sip-users --server 127.0.0.52:15222 --ca ca.pem --domain example.test \
//!     --accounts accounts.txt      # XMPP side of bench/sip.sh, driven on stdin
//! loadgen isolation ... --server2 IP:PORT --rates 48000 --duration 60 \
//!     --status-cmd "herald --admin 127.0.0.11:7471 cluster status" \
//!     --metrics 127.0.0.11:9470,127.0.0.12:9470,127.0.0.13:9470
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use herald_bench::caldav;
use herald_bench::client::{tls_config, ConnectConfig};
use herald_bench::report::{append_rows, machine, today, Row};
use herald_bench::scenarios::worker::WorkerSlice;
use herald_bench::scenarios::{
    calendar, chat, fanout, idle, isolation, login, sip_users, storm, Common,
};
use herald_bench::scram::Hash;

#[derive(Parser)]
#[command(about = "XMPP load generator for Herald / Prosody / ejabberd comparisons")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Login storm: N users sign in, fetch the roster and send initial presence (over
    /// --processes generator processes).
    Login(CommonArgs),
    /// One slice of `login --processes K` (started by `login`: prints READY, logs in on GO,
    /// prints DONE, holds until stdin closes).
    #[command(hide = true)]
    LoginWorker(CommonArgs),
    /// Idle hold: N sessions held for --duration; server RSS growth per session.
    Idle(CommonArgs),
    /// One slice of `idle --processes K` (started by `idle`; prints READY, holds until stdin
    /// closes).
    #[command(hide = true)]
    IdleWorker(CommonArgs),
    /// Chat: pairs exchange messages at stepped total rates (--rates) until --stop-after
    /// consecutive steps fail (p99 >= --p99-limit, a message lost, < 90 % of the rate sent).
    Chat {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        chat: ChatArgs,
    },
    /// Control-plane isolation: one chat step on a cluster while a status command runs once
    /// per second; /metrics counters of every node before and after.
    Isolation {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        chat: ChatArgs,
        /// Status command, split at whitespace (e.g. "herald --admin IP:7471 cluster status").
        #[arg(long)]
        status_cmd: String,
        /// Seconds between the starts of two status calls.
        #[arg(long, default_value_t = 1.0)]
        status_interval: f64,
        /// Every node's HTTP address IP:PORT, comma-separated (its /metrics is scraped).
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<SocketAddr>,
        /// Counters whose increase is reported, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "herald_raft_leader_changes_total,herald_cluster_nodes_declared_dead_total,herald_users_rehomed_total"
        )]
        counters: Vec<String>,
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
    /// Presence storm: --users users each watched by the next --watch (a ring), every one
    /// changing status every --interval seconds for --duration seconds.
    Storm {
        #[command(flatten)]
        common: CommonArgs,
        /// Contacts each user watches (and watchers each user has).
        #[arg(long, default_value_t = 100)]
        watch: usize,
        /// Seconds between two status changes of one user.
        #[arg(long, default_value_t = 10.0)]
        interval: f64,
        /// Seconds of subscription setup allowed (not measured).
        #[arg(long, default_value_t = 300)]
        setup_timeout: u64,
    },
    /// Calendar burst: --calendar-users users watch each other in a ring (--watch contacts
    /// each) and the rest chat in pairs at --chat-rate; the meeting start is written to
    /// --start-file (served by `caldav-serve`), and each change is timed from it.
    Calendar {
        #[command(flatten)]
        common: CommonArgs,
        /// Calendar-enabled users (the first slots); --users - this many chat.
        #[arg(long)]
        calendar_users: usize,
        /// Contacts each calendar user watches.
        #[arg(long, default_value_t = 8)]
        watch: usize,
        /// Total chat rate during the burst window, messages per second.
        #[arg(long, default_value_t = 1000.0)]
        chat_rate: f64,
        /// The responder's start file.
        #[arg(long)]
        start_file: PathBuf,
        /// Seconds from the end of the setup to the meeting start (more than Herald's
        /// calendar poll interval).
        #[arg(long, default_value_t = 45)]
        lead: u64,
        /// Seconds of chat measured before the start, and from it.
        #[arg(long, default_value_t = 5)]
        before: u64,
        #[arg(long, default_value_t = 10)]
        after: u64,
        /// Seconds allowed for subscription setup (not measured).
        #[arg(long, default_value_t = 600)]
        setup_timeout: u64,
    },
    /// The calendar burst's CalDAV responder (HTTPS, Basic): every user's home has one
    /// calendar, empty until --start-file holds a Unix time, then one 30-minute meeting from it.
    CaldavServe {
        /// Listen address IP:PORT.
        #[arg(long)]
        listen: SocketAddr,
        /// Certificate chain (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// `account:password` expected in Basic authentication.
        #[arg(long)]
        credentials: String,
        /// File holding the meeting start (Unix seconds).
        #[arg(long)]
        start_file: PathBuf,
        /// Longest run, seconds.
        #[arg(long, default_value_t = 3600)]
        limit: u64,
    },
    /// The XMPP side of the SIP benchmark (bench/sip.sh): logs in the accounts of --accounts,
    /// stamps tagged messages, approves subscription requests, changes presence on command
    /// (stdin: `report TAG`, `presence ROUND`, `approved`, `quit`; JSON lines on stdout).
    SipUsers {
        #[command(flatten)]
        common: CommonArgs,
        /// File of `LOCALPART PASSWORD IP:PORT` lines (each account logs in to its own node).
        #[arg(long)]
        accounts: PathBuf,
        /// Longest run, seconds.
        #[arg(long, default_value_t = 1800)]
        limit: u64,
    },
}

#[derive(Args, Clone)]
struct ChatArgs {
    /// Second server (IP:PORT) for odd slots: cross-node chat on a cluster.
    #[arg(long)]
    server2: Option<SocketAddr>,
    /// p99 limit in milliseconds: a step fails at p99 >= this.
    #[arg(long, default_value_t = 100.0)]
    p99_limit: f64,
    /// Most messages per step.
    #[arg(long, default_value_t = 2_000_000)]
    max_messages: u64,
    /// Traffic shape: pairs (both ways, one write per message) or oneway (sender to the
    /// receiver's full JID, shared 1 ms tick, due messages coalesced into one write).
    #[arg(long, default_value = "pairs")]
    shape: chat::Shape,
    /// Longest wait for the last messages after each step, seconds.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Stop after this many consecutive failing steps.
    #[arg(long, default_value_t = 2)]
    stop_after: usize,
    /// Seconds of quiet between the logins and the first step (server start-up and login work
    /// is not charged to the first step).
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
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
    /// Idle and login: spread the sessions over this many generator processes (one process
    /// may hold at most ~20,000 sockets; one single-threaded process may bound a login storm).
    /// Login divides --concurrency between them.
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Placement written into rows: pinned or unpinned.
    #[arg(long)]
    placement: Option<String>,
    /// How the server was started (flags that matter), written into rows. May start with a
    /// hyphen (`--workers 1`).
    #[arg(long, allow_hyphen_values = true)]
    server_flags: Option<String>,
    /// Login: a reconnect storm. A warm-up pass signs every user in and out first (not
    /// measured), then the measured storm signs them in again with the SCRAM keys it derived
    /// (cached per salt, as a reconnecting client may: RFC 5802 §5.1). Rows: `reconnect`.
    #[arg(long)]
    reconnect: bool,
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
        placement: a.placement.clone(),
        server_flags: a.server_flags.clone(),
        reconnect: a.reconnect,
    })
}

/// Splits `--users` over `--processes`: this process's count and one slice per worker
/// (`loadgen SUBCOMMAND`, own source addresses each, so that no process runs out of ephemeral
/// ports; logins in flight `concurrency` each).
fn worker_slices(
    a: &CommonArgs,
    subcommand: &str,
    concurrency: usize,
) -> Result<(usize, Vec<WorkerSlice>), String> {
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
        let mut argv = vec![exe.display().to_string(), subcommand.to_string()];
        let flags: [(&str, String); 12] = [
            ("--server", a.server.to_string()),
            ("--ca", a.ca.display().to_string()),
            ("--domain", a.domain.clone()),
            ("--users", users.to_string()),
            ("--user-prefix", a.user_prefix.clone()),
            ("--password-prefix", a.password_prefix.clone()),
            ("--first-user", (a.first_user + start).to_string()),
            ("--duration", a.duration.to_string()),
            ("--concurrency", concurrency.to_string()),
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
        if a.reconnect {
            argv.push("--reconnect".into());
        }
        workers.push(WorkerSlice { argv, users });
    }
    Ok((per.min(a.users), workers))
}

async fn run(cli: Cli) -> Result<(Vec<Row>, Option<PathBuf>), String> {
    match cli.cmd {
        Cmd::Login(a) => {
            let mut c = common(&a)?;
            // The storm keeps --concurrency logins in flight in total.
            c.concurrency = a.concurrency.div_ceil(a.processes.clamp(1, 16)).max(1);
            let (own, workers) = worker_slices(&a, "login-worker", c.concurrency)?;
            Ok((vec![login::run(&c, own, &workers).await], a.json))
        }
        Cmd::LoginWorker(a) => {
            let c = common(&a)?;
            login::worker(&c, a.users, Duration::from_secs(1800)).await;
            Ok((vec![], None))
        }
        Cmd::Idle(a) => {
            let c = common(&a)?;
            let (own, workers) = worker_slices(&a, "idle-worker", a.concurrency)?;
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
            chat: ch,
        } => {
            let c = common(&a)?;
            let scenario = if ch.server2.is_some() {
                "chat-cross-node"
            } else {
                "chat"
            };
            let plan = chat_plan(&c, &a, &ch, scenario);
            Ok((chat::run(&c, &plan).await, a.json))
        }
        Cmd::Isolation {
            common: a,
            chat: ch,
            status_cmd,
            status_interval,
            metrics,
            counters,
        } => {
            let c = common(&a)?;
            let plan = isolation::IsolationPlan {
                chat: chat_plan(&c, &a, &ch, "isolation"),
                status_cmd: status_cmd.split_whitespace().map(String::from).collect(),
                status_interval: Duration::from_secs_f64(status_interval.max(0.1)),
                metrics,
                counters,
            };
            Ok((isolation::run(&c, &plan).await, a.json))
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
        Cmd::Storm {
            common: a,
            watch,
            interval,
            setup_timeout,
        } => {
            let c = common(&a)?;
            let plan = storm::StormPlan {
                users: a.users,
                watch,
                interval: Duration::from_secs_f64(interval.max(0.1)),
                duration: Duration::from_secs(a.duration.max(1)),
                setup_timeout: Duration::from_secs(setup_timeout),
            };
            Ok((vec![storm::run(&c, &plan).await], a.json))
        }
        Cmd::Calendar {
            common: a,
            calendar_users,
            watch,
            chat_rate,
            start_file,
            lead,
            before,
            after,
            setup_timeout,
        } => {
            let c = common(&a)?;
            if calendar_users == 0 || calendar_users > a.users || watch >= calendar_users {
                return Err(format!(
                    "--calendar-users {calendar_users} must be within 1..=--users ({}) and more than --watch ({watch})",
                    a.users
                ));
            }
            let plan = calendar::CalendarPlan {
                users: calendar_users,
                watch,
                chat_sessions: a.users - calendar_users,
                chat_rate,
                start_file,
                lead: Duration::from_secs(lead),
                before: Duration::from_secs(before),
                after: Duration::from_secs(after),
                setup_timeout: Duration::from_secs(setup_timeout),
            };
            Ok((vec![calendar::run(&c, &plan).await], a.json))
        }
        Cmd::CaldavServe {
            listen,
            cert,
            key,
            credentials,
            start_file,
            limit,
        } => {
            caldav::serve(caldav::ServeConfig {
                listen,
                cert,
                key,
                credentials,
                start_file,
                limit: Duration::from_secs(limit),
            })
            .await?;
            Ok((vec![], None))
        }
        Cmd::SipUsers {
            common: a,
            accounts,
            limit,
        } => {
            let c = common(&a)?;
            let text = std::fs::read_to_string(&accounts)
                .map_err(|e| format!("{}: {e}", accounts.display()))?;
            let accounts = sip_users::parse_accounts(&text)?;
            sip_users::run(&c, accounts, Duration::from_secs(limit)).await;
            Ok((vec![], None))
        }
    }
}

/// The chat plan from the command line; odd slots on `--server2` when given.
fn chat_plan(c: &Common, a: &CommonArgs, ch: &ChatArgs, scenario: &str) -> chat::ChatPlan {
    let second = ch.server2.map(|addr| {
        let mut s = c.clone();
        s.connect.server = addr;
        s.server_pid = None;
        s
    });
    chat::ChatPlan {
        sessions: a.users,
        rates: a.rates.clone(),
        duration: Duration::from_secs(a.duration),
        drain: Duration::from_secs_f64(ch.drain.clamp(0.0, 600.0)),
        settle: Duration::from_secs_f64(ch.settle.clamp(0.0, 600.0)),
        shape: ch.shape,
        stop_after: ch.stop_after,
        p99_limit_ms: ch.p99_limit,
        max_messages: ch.max_messages,
        scenario: scenario.into(),
        second,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.cmd {
        Cmd::Login(a) | Cmd::LoginWorker(a) | Cmd::Idle(a) | Cmd::IdleWorker(a) => a.threads,
        Cmd::Chat { common, .. }
        | Cmd::Fanout { common, .. }
        | Cmd::Storm { common, .. }
        | Cmd::Isolation { common, .. }
        | Cmd::Calendar { common, .. }
        | Cmd::SipUsers { common, .. } => common.threads,
        Cmd::CaldavServe { .. } => 1,
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
