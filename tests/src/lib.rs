//! A sandbox of real `herald` processes for integration tests (STYLE.md habit 13d).
//!
//! Each sandbox picks its own loopback subnet `127.X.Y.0/24` and gives node `i` the address
//! `127.X.Y.i` with Herald's default ports, exactly as the README's walkthrough does, so that
//! parallel tests never collide. Every wait is bounded (`wait_until`), every process is killed
//! when the sandbox is dropped, and each node's log is kept in the sandbox dir (printed when a
//! test fails through [`Sandbox::dump_logs`]).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

pub const CLUSTER_PORT: u16 = 7470;
pub const ADMIN_PORT: u16 = 7471;
pub const HTTP_PORT: u16 = 9470;

/// Path of the `herald` binary, built once per test process if needed.
pub fn herald_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("HERALD_BIN") {
            return PathBuf::from(p);
        }
        // A target dir of its own: building only the binary here resolves features differently
        // from the test build, and sharing a dir would make each rebuild the other's artifacts.
        // The test command (scripts/test) sets HERALD_BIN and skips this.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"))
            .join("sandbox-bin");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-q",
                "-p",
                "herald-node",
                "--bin",
                "herald",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(&root)
            .status()
            .expect("running cargo build for the herald binary");
        assert!(status.success(), "building the herald binary failed");
        target.join("debug").join("herald")
    })
    .clone()
}

/// Polls `f` every 50 ms until it returns `Ok(Some(v))`, or fails after `timeout` with the last
/// error seen.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("condition never held");
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pick_subnet() -> (u8, u8) {
    static USED: Mutex<Vec<(u8, u8)>> = Mutex::new(Vec::new());
    let mut used = USED.lock().unwrap_or_else(|p| p.into_inner());
    let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    let mut x = seed
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    loop {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let a = 100 + ((x >> 33) % 120) as u8;
        let b = ((x >> 17) % 250) as u8 + 1;
        if !used.contains(&(a, b)) {
            used.push((a, b));
            return (a, b);
        }
    }
}

/// How a node starts.
#[derive(Debug, Clone)]
pub enum Mode {
    /// First node of a new cluster.
    Bootstrap,
    /// Joins through node `n`.
    Join(u64),
}

struct Proc {
    child: Child,
    args: Vec<String>,
}

/// A set of `herald` processes on one loopback subnet.
pub struct Sandbox {
    dir: tempfile::TempDir,
    subnet: (u8, u8),
    procs: HashMap<u64, Proc>,
    /// Extra flags for every node (e.g. `--admin-token`).
    pub extra_args: Vec<String>,
    /// Token the CLI sends, if any.
    pub admin_token: Option<String>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("herald-sandbox-")
                .tempdir()
                .expect("temp dir"),
            subnet: pick_subnet(),
            procs: HashMap::new(),
            extra_args: Vec::new(),
            admin_token: None,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ip(&self, node: u64) -> String {
        format!("127.{}.{}.{}", self.subnet.0, self.subnet.1, node)
    }

    pub fn admin_addr(&self, node: u64) -> String {
        format!("{}:{ADMIN_PORT}", self.ip(node))
    }

    pub fn cluster_addr(&self, node: u64) -> String {
        format!("{}:{CLUSTER_PORT}", self.ip(node))
    }

    pub fn http_addr(&self, node: u64) -> String {
        format!("{}:{HTTP_PORT}", self.ip(node))
    }

    pub fn data_dir(&self, node: u64) -> PathBuf {
        self.dir.path().join(format!("d{node}"))
    }

    pub fn log_path(&self, node: u64) -> PathBuf {
        self.dir.path().join(format!("node{node}.log"))
    }

    /// The command line of node `node`, as the README's walkthrough writes it.
    pub fn args(&self, node: u64, mode: &Mode) -> Vec<String> {
        let mut a = vec![
            "agent".to_string(),
            "--node-id".into(),
            node.to_string(),
            "--bind".into(),
            self.ip(node),
            "--data-dir".into(),
            self.data_dir(node).display().to_string(),
        ];
        match mode {
            Mode::Bootstrap => a.push("--bootstrap".into()),
            Mode::Join(n) => {
                a.push("--join".into());
                a.push(self.ip(*n));
            }
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// Starts node `node`; returns once its process is spawned (not yet ready).
    pub fn start(&mut self, node: u64, mode: Mode) -> Result<()> {
        let args = self.args(node, &mode);
        self.spawn(node, args)
    }

    /// Starts node `node` with a command line of the caller's (see [`Sandbox::args`]).
    pub fn start_with_args(&mut self, node: u64, args: Vec<String>) -> Result<()> {
        self.spawn(node, args)
    }

    fn spawn(&mut self, node: u64, args: Vec<String>) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(node))?;
        let child = Command::new(herald_bin())
            .args(&args)
            .env("RUST_LOG", "info,raft=warn")
            .env_remove("HERALD_ADMIN")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning herald")?;
        self.procs.insert(node, Proc { child, args });
        Ok(())
    }

    /// Starts node `node` again with exactly the command line it had.
    pub fn restart(&mut self, node: u64) -> Result<()> {
        let p = self
            .procs
            .get(&node)
            .ok_or_else(|| anyhow!("node {node} never started"))?;
        let args = p.args.clone();
        self.spawn(node, args)
    }

    /// Bootstraps node 1, joins nodes 2 and 3 through it, and waits until all three are ready
    /// and agree (digest, applied index, leader).
    pub fn start_three(&mut self) -> Result<()> {
        self.start_ready(1, Mode::Bootstrap)?;
        self.start(2, Mode::Join(1))?;
        self.start(3, Mode::Join(1))?;
        self.wait_ready(2)?;
        self.wait_ready(3)?;
        self.wait_converged(1, &[1, 2, 3])?;
        Ok(())
    }

    /// Starts a node and waits until `/readyz` says ready.
    pub fn start_ready(&mut self, node: u64, mode: Mode) -> Result<()> {
        self.start(node, mode)?;
        self.wait_ready(node)
    }

    pub fn wait_ready(&self, node: u64) -> Result<()> {
        wait_until(
            &format!("node {node} ready"),
            Duration::from_secs(30),
            || {
                let (code, _) = self.http_get(node, "/readyz")?;
                Ok((code == 200).then_some(()))
            },
        )
        .map_err(|e| self.with_log(node, e))
    }

    fn with_log(&self, node: u64, e: anyhow::Error) -> anyhow::Error {
        let log = std::fs::read_to_string(self.log_path(node)).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow!("{e:#}\n--- node {node} log tail ---\n{}", tail.join("\n"))
    }

    /// kill -9.
    pub fn kill9(&mut self, node: u64) -> Result<()> {
        if let Some(p) = self.procs.get_mut(&node) {
            p.child.kill()?;
            p.child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits for the exit status (bounded).
    pub fn terminate(&mut self, node: u64) -> Result<std::process::ExitStatus> {
        let p = self
            .procs
            .get_mut(&node)
            .ok_or_else(|| anyhow!("node {node} never started"))?;
        let pid = nix::unistd::Pid::from_raw(p.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        self.wait_exit(node, Duration::from_secs(20))
    }

    /// Waits for node `node`'s process to exit on its own (bounded).
    pub fn wait_exit(&mut self, node: u64, timeout: Duration) -> Result<std::process::ExitStatus> {
        let p = self
            .procs
            .get_mut(&node)
            .ok_or_else(|| anyhow!("node {node} never started"))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = p.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                bail!("node {node} did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `sig` to node `node`'s process (SIGSTOP / SIGCONT to pause and resume it).
    pub fn signal(&mut self, node: u64, sig: nix::sys::signal::Signal) -> Result<()> {
        let p = self
            .procs
            .get(&node)
            .ok_or_else(|| anyhow!("node {node} never started"))?;
        let pid = nix::unistd::Pid::from_raw(p.child.id() as i32);
        nix::sys::signal::kill(pid, sig)?;
        Ok(())
    }

    /// The value of a metric without labels on node `node`'s `/metrics` (0 when not exported).
    pub fn metric(&self, node: u64, name: &str) -> Result<f64> {
        let (code, body) = self.http_get(node, "/metrics")?;
        if code != 200 {
            bail!("/metrics on node {node}: HTTP {code}");
        }
        Ok(body
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == name).then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0.0))
    }

    pub fn is_running(&mut self, node: u64) -> bool {
        self.procs
            .get_mut(&node)
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    /// Runs the admin CLI against node `node`.
    pub fn cli(&self, node: u64, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(herald_bin());
        cmd.arg("--admin").arg(self.admin_addr(node)).args(args);
        cmd.env_remove("HERALD_ADMIN")
            .env_remove("HERALD_ADMIN_TOKEN");
        if let Some(t) = &self.admin_token {
            cmd.env("HERALD_ADMIN_TOKEN", t);
        }
        Ok(cmd.stdin(Stdio::null()).output()?)
    }

    /// Runs the CLI and requires success.
    pub fn cli_ok(&self, node: u64, args: &[&str]) -> Result<String> {
        let out = self.cli(node, args)?;
        if !out.status.success() {
            return Err(self.with_log(
                node,
                anyhow!(
                    "herald {} failed ({}): {}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs the CLI with `-o json` and parses its output.
    pub fn cli_json(&self, node: u64, args: &[&str]) -> Result<Value> {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.cli_ok(node, &a)?;
        serde_json::from_str(&out)
            .with_context(|| format!("parsing JSON from `{}`: {out}", a.join(" ")))
    }

    /// `cluster status` through node `node`.
    pub fn status(&self, node: u64) -> Result<Value> {
        self.cli_json(node, &["cluster", "status"])
    }

    /// Waits until `cluster status` through `via` shows exactly `nodes`, all reachable, one
    /// leader, and the same digest and applied index everywhere, in the config group and the
    /// user-state group. Returns the config digest.
    pub fn wait_converged(&self, via: u64, nodes: &[u64]) -> Result<String> {
        wait_until("cluster convergence", Duration::from_secs(30), || {
            let st = self.status(via)?;
            let list = st["nodes"].as_array().cloned().unwrap_or_default();
            let mut ids: Vec<u64> = list.iter().filter_map(|n| n["id"].as_u64()).collect();
            ids.sort();
            let mut want = nodes.to_vec();
            want.sort();
            if ids != want {
                return Ok(None);
            }
            if st["leader_id"].as_u64().unwrap_or(0) == 0 {
                return Ok(None);
            }
            let digests: Vec<&str> = list
                .iter()
                .map(|n| n["config_digest"].as_str().unwrap_or(""))
                .collect();
            let applied: Vec<u64> = list
                .iter()
                .map(|n| n["applied_index"].as_u64().unwrap_or(0))
                .collect();
            let roles_ok = list.iter().all(|n| n["role"] != "unreachable");
            let same = digests.windows(2).all(|w| w[0] == w[1])
                && applied.windows(2).all(|w| w[0] == w[1]);
            // The user-state group too: a leader, every node in it, one digest at one index.
            let users: Vec<(String, u64)> = list
                .iter()
                .map(|n| {
                    let g = &n["users_group"];
                    (
                        g["digest"].as_str().unwrap_or("").to_string(),
                        g["applied_index"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            let users_ok = st["users_leader_id"].as_u64().unwrap_or(0) != 0
                && list.iter().all(|n| {
                    matches!(
                        n["users_group"]["role"].as_str(),
                        Some("leader" | "follower")
                    )
                })
                && users.windows(2).all(|w| w[0] == w[1]);
            Ok((roles_ok && same && users_ok && !digests[0].is_empty())
                .then(|| digests[0].to_string()))
        })
    }

    /// The leader's id as seen through `via`.
    pub fn leader(&self, via: u64) -> Result<u64> {
        wait_until("a leader", Duration::from_secs(30), || {
            let id = self.status(via)?["leader_id"].as_u64().unwrap_or(0);
            Ok((id != 0).then_some(id))
        })
    }

    /// A plain HTTP/1.0 GET against node `node`'s HTTP port: (status code, body).
    pub fn http_get(&self, node: u64, path: &str) -> Result<(u16, String)> {
        let mut s = TcpStream::connect(self.http_addr(node))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        let code = buf
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("bad HTTP response: {buf:?}"))?;
        let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        Ok((code, body.to_string()))
    }

    /// Names of the local domains node `node` holds.
    pub fn domains(&self, node: u64) -> Result<Vec<String>> {
        let v = self.cli_json(node, &["domain", "list"])?;
        Ok(v.as_array()
            .ok_or_else(|| anyhow!("domain list is not an array: {v}"))?
            .iter()
            .filter_map(|d| d["name"].as_str().map(str::to_string))
            .collect())
    }

    /// Prints every node's log (for failing tests).
    pub fn dump_logs(&self) {
        for node in self.procs.keys() {
            let log = std::fs::read_to_string(self.log_path(*node)).unwrap_or_default();
            eprintln!("===== node {node} log =====\n{log}");
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for p in self.procs.values_mut() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}
