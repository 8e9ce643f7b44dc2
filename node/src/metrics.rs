//! The Prometheus recorder, its upkeep task, and the text served on `/metrics`: everything
//! recorded through the `metrics` macros, then `herald_build_info` and the standard `process_*`
//! metrics read from `/proc/self` on each scrape.
//!
//! Naming: `herald_*`, units in names (`_seconds`, `_bytes`), `_total` for counters, bounded
//! labels. Histograms get [`LATENCY_BUCKETS`], or [`SIZE_BUCKETS`] when the name ends in
//! `_bytes`, or [`COUNT_BUCKETS`] when it ends in `_inputs`. Call `metrics::describe_*!` for each metric so that it has a `# HELP` line.

use std::fmt::Write as _;
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets for latencies in seconds (0.5 ms to 10 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histogram buckets for counts per event (e.g. inputs per group commit, at most 64), for
/// metrics named `*_inputs`.
pub const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Histogram buckets for sizes in bytes (64 B to 16 MiB), for metrics named `*_bytes`.
pub const SIZE_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// How often [`spawn_upkeep`] drains histogram buffers.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Linux's USER_HZ: the unit of CPU times in `/proc/<pid>/stat` (fixed at 100 by the ABI).
const USER_HZ: f64 = 100.0;

/// Gauge, label `certificate` (c2s, cluster): when the certificate this node serves expires,
/// in seconds since the Unix epoch (read at start, and again on each certificate reload).
pub const CERT_EXPIRY: &str = "herald_tls_certificate_expiry_timestamp_seconds";
/// Gauge: the first 48 bits of this node's applied config digest (the SHA-256 that `cluster
/// status` shows), as an integer, refreshed on each scrape. Nodes at the same applied index
/// must show the same value.
pub const CONFIG_DIGEST: &str = "herald_config_digest";
/// Counter: members this node (as leader) removed because their StatefulSet pod was gone
/// (scale-down, `scale_down_after`).
pub const SCALED_DOWN: &str = "herald_cluster_members_scaled_down_total";

/// Registers the descriptions of the node-level metrics above.
pub fn describe_node() {
    metrics::describe_gauge!(
        CERT_EXPIRY,
        metrics::Unit::Seconds,
        "Expiry of the TLS certificate this node serves (Unix time), by certificate"
    );
    metrics::describe_counter!(
        SCALED_DOWN,
        "Members removed by the leader after their StatefulSet pod left DNS (scale-down)"
    );
    metrics::describe_gauge!(
        CONFIG_DIGEST,
        "First 48 bits of the applied config digest as an integer (compare across nodes)"
    );
}

/// The [`CONFIG_DIGEST`] value of a hex digest: its first 12 hex digits (48 bits, exact in an
/// f64).
pub fn digest_value(hex: &str) -> Option<f64> {
    let head = hex.get(..12)?;
    u64::from_str_radix(head, 16).ok().map(|v| v as f64)
}

/// Why the recorder could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The builder rejected a setting, or a global recorder is already installed.
    #[error("cannot set up the Prometheus recorder")]
    Build(#[from] BuildError),
}

/// The recorder builder with Herald's buckets; [`install`] uses it, tests may build a local
/// recorder from it (`build_recorder()` and `metrics::with_local_recorder`).
pub fn builder() -> Result<PrometheusBuilder, MetricsError> {
    Ok(PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_bytes".to_string()), SIZE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_inputs".to_string()), COUNT_BUCKETS)?)
}

/// Installs the global metrics recorder and returns the handle that renders it. Fails when a
/// recorder is already installed. Call [`spawn_upkeep`] once inside the runtime.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    Ok(builder()?.install_recorder()?)
}

/// Spawns (on the current tokio runtime) the task that runs the recorder's upkeep every
/// [`UPKEEP_INTERVAL`]. Abort the returned handle to stop it.
pub fn spawn_upkeep(handle: PrometheusHandle) -> tokio::task::JoinHandle<()> {
    spawn_upkeep_every(handle, UPKEEP_INTERVAL)
}

fn spawn_upkeep_every(handle: PrometheusHandle, period: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            handle.run_upkeep();
        }
    })
}

/// The full `/metrics` text: the recorder's metrics, `herald_build_info` and the process
/// metrics.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut out = handle.render();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    write_family(
        &mut out,
        "herald_build_info",
        "gauge",
        "Herald build information; the value is always 1.",
        &format!("{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
    );
    process_stats().write_to(&mut out);
    out
}

/// Process figures read from `/proc/self`; a field is `None` where it could not be read (for
/// example on a system without procfs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory size in bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// User plus system CPU time in seconds.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors (`None` when unlimited).
    pub max_fds: Option<u64>,
    /// Process start time in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// OS threads.
    pub threads: Option<u64>,
}

/// Reads [`ProcessStats`] for this process.
pub fn process_stats() -> ProcessStats {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let mut s = ProcessStats::default();
    if let Some(status) = read("/proc/self/status") {
        s.resident_memory_bytes = status_kb(&status, "VmRSS:").map(|kb| kb * 1024);
        s.virtual_memory_bytes = status_kb(&status, "VmSize:").map(|kb| kb * 1024);
        s.threads = status_kb(&status, "Threads:");
    }
    if let Some(stat) = read("/proc/self/stat") {
        if let Some((cpu_ticks, start_ticks)) = parse_stat(&stat) {
            s.cpu_seconds = Some(cpu_ticks as f64 / USER_HZ);
            s.start_time_seconds = read("/proc/stat")
                .and_then(|t| boot_time(&t))
                .map(|btime| btime as f64 + start_ticks as f64 / USER_HZ);
        }
    }
    s.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| dir.count() as u64);
    s.max_fds = read("/proc/self/limits").and_then(|t| max_open_files(&t));
    s
}

impl ProcessStats {
    /// Appends the available figures in Prometheus text format.
    pub fn write_to(&self, out: &mut String) {
        let gauges: [(&str, &str, Option<f64>); 6] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                self.resident_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                self.virtual_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                self.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                self.max_fds.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                self.threads.map(|v| v as f64),
            ),
        ];
        if let Some(cpu) = self.cpu_seconds {
            write_family(
                out,
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                &format!(" {cpu}"),
            );
        }
        for (name, help, value) in gauges {
            if let Some(v) = value {
                write_family(out, name, "gauge", help, &format!(" {v}"));
            }
        }
    }
}

/// Writes one metric family with a single sample; `sample` follows the name (labels and/or
/// ` value`).
fn write_family(out: &mut String, name: &str, kind: &str, help: &str, sample: &str) {
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{sample}\n"
    );
}

/// A `Key:   123 kB` (or `Threads:   4`) line of `/proc/self/status`.
fn status_kb(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `(utime + stime, starttime)` in clock ticks from `/proc/self/stat`. The command name (field
/// 2) may contain spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // after_comm starts at field 3 (state): field n is index n - 3.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some((field(14)? + field(15)?, field(22)?))
}

/// `btime` (boot time, seconds since the epoch) from `/proc/stat`.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft "Max open files" limit from `/proc/self/limits` (`None` when unlimited).
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    /// Checks the text exposition format the way a scraper needs it: every sample belongs to a
    /// family with exactly one TYPE line, names are valid, values parse; returns the samples.
    fn lint(text: &str) -> HashMap<String, f64> {
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helps = HashSet::new();
        let mut samples = HashMap::new();
        let valid_name = |n: &str| {
            !n.is_empty()
                && !n.starts_with(|c: char| c.is_ascii_digit())
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line has a kind");
                assert!(
                    types.insert(name.into(), kind.into()).is_none(),
                    "two TYPE for {name}"
                );
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(helps.insert(name.to_string()), "two HELP for {name}");
            } else {
                let (series, value) = line.rsplit_once(' ').expect("sample has a value");
                let name = series.split('{').next().unwrap_or_default();
                assert!(valid_name(name), "bad name in `{line}`");
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
                    .unwrap_or(name);
                assert!(types.contains_key(family), "no TYPE before `{line}`");
                let v: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in `{line}`"));
                samples.insert(series.to_string(), v);
            }
        }
        samples
    }

    #[test]
    fn render_includes_recorded_build_and_process_metrics() {
        let recorder = builder().expect("builder").build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!("herald_test_events_total", "Test events.");
            metrics::counter!("herald_test_events_total", "kind" => "a").increment(3);
            metrics::histogram!("herald_test_latency_seconds").record(0.003);
            metrics::histogram!("herald_test_payload_bytes").record(2000.0);
        });
        let text = render(&handle);
        let samples = lint(&text);
        assert_eq!(
            samples.get(r#"herald_test_events_total{kind="a"}"#),
            Some(&3.0)
        );
        assert!(text.contains("# HELP herald_test_events_total Test events."));
        // latency buckets from 0.5 ms to 10 s; size buckets for *_bytes
        assert_eq!(
            samples.get(r#"herald_test_latency_seconds_bucket{le="0.0025"}"#),
            Some(&0.0)
        );
        assert_eq!(
            samples.get(r#"herald_test_latency_seconds_bucket{le="0.005"}"#),
            Some(&1.0)
        );
        assert!(samples.contains_key(r#"herald_test_latency_seconds_bucket{le="10"}"#));
        assert_eq!(
            samples.get(r#"herald_test_payload_bytes_bucket{le="4096"}"#),
            Some(&1.0)
        );
        let version = format!(
            r#"herald_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(samples.get(&version), Some(&1.0));
        for name in [
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            let v = samples
                .get(name)
                .copied()
                .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
            assert!(v >= 0.0, "{name} = {v}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name} HELP");
        }
        assert!(samples["process_resident_memory_bytes"] > 1.0e6);
        assert!(samples["process_open_fds"] >= 3.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let start = samples["process_start_time_seconds"];
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "start {start} vs now {now}"
        );
    }

    #[test]
    fn digest_gauge_is_the_first_48_bits() {
        assert_eq!(digest_value("000000000001ffff"), Some(1.0));
        assert_eq!(
            digest_value(&"f".repeat(64)),
            Some(((1u64 << 48) - 1) as f64)
        );
        assert_eq!(digest_value("abc"), None);
        assert_eq!(digest_value("zzzzzzzzzzzzzz"), None);
    }

    #[test]
    fn proc_parsers() {
        let stat = "42 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 7 0 12345 999 88 0";
        assert_eq!(parse_stat(stat), Some((200, 12345)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
        let status = "Name:\therald\nVmSize:\t  3060 kB\nVmRSS:\t    1780 kB\nThreads:\t3\n";
        assert_eq!(status_kb(status, "VmRSS:"), Some(1780));
        assert_eq!(status_kb(status, "VmSize:"), Some(3060));
        assert_eq!(status_kb(status, "Threads:"), Some(3));
        assert_eq!(status_kb(status, "VmSwap:"), None);
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        let limits = "Limit  Soft Limit  Hard Limit  Units\nMax open files            1024                 4096                 files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            max_open_files("Max open files  unlimited  unlimited  files\n"),
            None
        );
    }

    #[test]
    fn missing_figures_are_omitted() {
        let mut out = String::new();
        ProcessStats {
            threads: Some(4),
            ..ProcessStats::default()
        }
        .write_to(&mut out);
        assert_eq!(
            out,
            "# HELP process_threads Number of OS threads in the process.\n\
             # TYPE process_threads gauge\nprocess_threads 4\n"
        );
    }

    #[tokio::test]
    async fn upkeep_task_runs_and_can_be_stopped() {
        let recorder = builder().expect("builder").build_recorder();
        let task = spawn_upkeep_every(recorder.handle(), Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!task.is_finished());
        task.abort();
        assert!(task.await.expect_err("aborted").is_cancelled());
    }
}
