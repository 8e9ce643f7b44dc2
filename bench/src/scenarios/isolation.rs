//! Control-plane isolation (Herald cluster only): chat load on the data plane while the admin
//! plane is exercised and the Raft/membership counters are watched.
//!
//! Before and after one chat step at a fixed rate, every node's `/metrics` is scraped; during
//! the run a status command (`herald --admin IP:PORT cluster status`) runs once per second and
//! each call's wall time is recorded. The row carries the chat step, the status call
//! percentiles and, per watched counter, each node's increase — `None` where a node does not
//! export the counter ("not exported", never a silent 0).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::chat::{self, ChatPlan};
use super::Common;
use crate::report::{percentiles, Row};

/// Largest /metrics response read.
const MAX_METRICS_BYTES: usize = 8 << 20;
/// Longest a status call or a scrape may take.
const CALL_LIMIT: Duration = Duration::from_secs(10);

/// Knobs of the isolation scenario.
pub struct IsolationPlan {
    /// The chat load (one rate, scenario "isolation").
    pub chat: ChatPlan,
    /// Program and arguments of the status call.
    pub status_cmd: Vec<String>,
    /// Time between the starts of two status calls.
    pub status_interval: Duration,
    /// Each node's HTTP address (its /metrics).
    pub metrics: Vec<SocketAddr>,
    /// Counters to report.
    pub counters: Vec<String>,
}

/// One counter's increase on every node over the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CounterDelta {
    /// Metric name.
    pub name: String,
    /// Increase per node, in `IsolationPlan::metrics` order; None: not exported by that node
    /// (or its /metrics was unreadable).
    pub per_node: Vec<Option<f64>>,
    /// Sum over the nodes that export it; None when none does.
    pub total: Option<f64>,
}

/// What the isolation row adds to the chat step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Isolation {
    /// Status calls made.
    pub status_calls: usize,
    /// Status calls that failed or timed out.
    pub status_failed: usize,
    /// Median wall time of a status call, ms.
    pub status_p50_ms: f64,
    /// 99th percentile wall time of a status call, ms.
    pub status_p99_ms: f64,
    /// Longest status call, ms.
    pub status_max_ms: f64,
    /// Nodes' HTTP addresses, in `counters[].per_node` order.
    pub nodes: Vec<String>,
    /// Counter increases.
    pub counters: Vec<CounterDelta>,
}

/// Runs the scenario: returns the chat step row(s) with [`Isolation`] on the last one.
pub async fn run(common: &Common, plan: &IsolationPlan) -> Vec<Row> {
    let before = scrape_all(&plan.metrics).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    // Bounded by count as well as by the stop signal.
    let max_calls = ((plan.chat.duration + plan.chat.drain).as_secs() + 300) as usize;
    let poller = tokio::spawn(poll_status(
        plan.status_cmd.clone(),
        plan.status_interval,
        max_calls,
        stop_rx,
    ));
    let mut rows = chat::run(common, &plan.chat).await;
    let _ = stop_tx.send(true);
    let calls = poller.await.unwrap_or_default();
    let after = scrape_all(&plan.metrics).await;
    // The chat summary row ("peak") repeats a step row: keep the steps only.
    rows.retain(|r| !r.note.as_deref().unwrap_or("").starts_with("peak"));
    let failed = calls.iter().filter(|c| !c.ok).count();
    // Failed calls count in the time percentiles too: a timed-out call is a slow one.
    let mut all_us: Vec<u64> = calls.iter().map(|c| c.micros).collect();
    let p = percentiles(&mut all_us);
    let iso = Isolation {
        status_calls: calls.len(),
        status_failed: failed,
        status_p50_ms: p.p50_ms,
        status_p99_ms: p.p99_ms,
        status_max_ms: p.max_ms,
        nodes: plan.metrics.iter().map(ToString::to_string).collect(),
        counters: plan
            .counters
            .iter()
            .map(|name| counter_delta(name, &before, &after))
            .collect(),
    };
    eprintln!(
        "isolation: {} status calls ({} failed), p50 {:.1} ms p99 {:.1} ms max {:.1} ms; {:?}",
        iso.status_calls,
        iso.status_failed,
        iso.status_p50_ms,
        iso.status_p99_ms,
        iso.status_max_ms,
        iso.counters
            .iter()
            .map(|c| (c.name.as_str(), c.total))
            .collect::<Vec<_>>()
    );
    if rows.is_empty() {
        rows.push(common.row(&plan.chat.scenario, 0));
    }
    if let Some(last) = rows.last_mut() {
        last.isolation = Some(iso);
    }
    rows
}

/// One status call: wall time and whether it exited 0.
#[derive(Debug, Clone, Copy)]
struct Call {
    micros: u64,
    ok: bool,
}

async fn poll_status(
    cmd: Vec<String>,
    interval: Duration,
    max_calls: usize,
    mut stop: watch::Receiver<bool>,
) -> Vec<Call> {
    let mut calls = Vec::new();
    let Some((prog, args)) = cmd.split_first() else {
        return calls;
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while calls.len() < max_calls && !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let t0 = Instant::now();
        let run = tokio::process::Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        let ok = matches!(tokio::time::timeout(CALL_LIMIT, run).await, Ok(Ok(st)) if st.success());
        calls.push(Call {
            micros: u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX),
            ok,
        });
    }
    calls
}

/// Every node's /metrics text (None where it could not be read).
async fn scrape_all(nodes: &[SocketAddr]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for &addr in nodes {
        match tokio::time::timeout(CALL_LIMIT, scrape(addr)).await {
            Ok(Ok(text)) => out.push(Some(text)),
            Ok(Err(e)) => {
                eprintln!("isolation: /metrics of {addr}: {e}");
                out.push(None);
            }
            Err(_) => {
                eprintln!("isolation: /metrics of {addr}: timed out");
                out.push(None);
            }
        }
    }
    out
}

/// `GET /metrics` over HTTP/1.0 (no chunked encoding), body as text.
async fn scrape(addr: SocketAddr) -> Result<String, String> {
    let mut tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let req = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    (&mut tcp)
        .take(MAX_METRICS_BYTES as u64)
        .read_to_end(&mut resp)
        .await
        .map_err(|e| e.to_string())?;
    http_body(&resp).map(str::to_string)
}

/// The body of an HTTP response whose status is 200.
pub fn http_body(resp: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(resp).map_err(|_| "response is not UTF-8".to_string())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no end of headers".to_string())?;
    let status = head.lines().next().unwrap_or("");
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(body),
        _ => Err(format!("status line {status:?}")),
    }
}

/// The sum of every sample of `name` (all label sets) in a Prometheus text exposition; None
/// when there is none.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(labels) = rest.strip_prefix('{') {
            // Label values are quoted and may hold '}': the value follows the last '}'.
            labels.rfind('}').map(|k| &labels[k + 1..])
        } else if rest.starts_with(' ') || rest.starts_with('\t') {
            Some(rest)
        } else {
            None // another metric whose name starts with `name`
        };
        if let Some(v) = value
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
        {
            total = Some(total.unwrap_or(0.0) + v);
        }
    }
    total
}

/// `name`'s increase on every node between two scrapes.
fn counter_delta(name: &str, before: &[Option<String>], after: &[Option<String>]) -> CounterDelta {
    let per_node: Vec<Option<f64>> = before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let b = metric_sum(b.as_deref()?, name)?;
            let a = metric_sum(a.as_deref()?, name)?;
            Some(a - b)
        })
        .collect();
    let total = per_node.iter().flatten().copied().reduce(|x, y| x + y);
    CounterDelta {
        name: name.into(),
        per_node,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP herald_raft_leader_changes_total Leader changes seen.
# TYPE herald_raft_leader_changes_total counter
herald_raft_leader_changes_total 3
herald_raft_leader_changes_total_extra 100
herald_users_rehomed_total{reason=\"dead\"} 2
herald_users_rehomed_total{reason=\"a}b\"} 5 1700000000000
herald_c2s_sessions 12.5
";

    #[test]
    fn metric_sums() {
        let cases = [
            ("herald_raft_leader_changes_total", Some(3.0)),
            ("herald_users_rehomed_total", Some(7.0)),
            ("herald_c2s_sessions", Some(12.5)),
            ("herald_cluster_nodes_declared_dead_total", None),
            ("herald_raft", None),
        ];
        for (name, want) in cases {
            assert_eq!(metric_sum(TEXT, name), want, "{name}");
        }
        assert_eq!(metric_sum("", "x"), None);
        assert_eq!(metric_sum("x NaNx\n", "x"), None);
    }

    #[test]
    fn http_bodies() {
        assert_eq!(
            http_body(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\na 1\n"),
            Ok("a 1\n")
        );
        assert!(http_body(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(http_body(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(http_body(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn counter_deltas() {
        let b = vec![
            Some("herald_raft_leader_changes_total 1\n".to_string()),
            Some("herald_raft_leader_changes_total 4\n".to_string()),
            Some("other 1\n".to_string()),
            None,
        ];
        let a = vec![
            Some("herald_raft_leader_changes_total 1\n".to_string()),
            Some("herald_raft_leader_changes_total 6\n".to_string()),
            Some("other 2\n".to_string()),
            Some("herald_raft_leader_changes_total 9\n".to_string()),
        ];
        let d = counter_delta("herald_raft_leader_changes_total", &b, &a);
        assert_eq!(d.per_node, vec![Some(0.0), Some(2.0), None, None]);
        assert_eq!(d.total, Some(2.0));
        let missing = counter_delta("herald_users_rehomed_total", &b, &a);
        assert_eq!(missing.per_node, vec![None; 4]);
        assert_eq!(missing.total, None);
    }
}
