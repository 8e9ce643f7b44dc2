//! Latency statistics, process readings from /proc, and the result rows written to
//! `bench/results/<scenario>.json`.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use serde::Serialize;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the generator's first call: the clock stamped into message bodies (sender
/// and receiver are in the same process, so one monotonic clock serves both).
pub fn now_us() -> u64 {
    let start = *EPOCH.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Percentiles {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

/// Percentiles (nearest rank) of latencies in microseconds; all zero when empty.
pub fn percentiles(samples_us: &mut [u64]) -> Percentiles {
    if samples_us.is_empty() {
        return Percentiles::default();
    }
    samples_us.sort_unstable();
    let n = samples_us.len();
    let at = |q: f64| {
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        samples_us[rank - 1] as f64 / 1000.0
    };
    Percentiles {
        count: n,
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        max_ms: samples_us[n - 1] as f64 / 1000.0,
    }
}

/// Resident set size of `pid` in bytes (VmRSS), if readable.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Clock ticks per second of the utime/stime fields in `/proc/PID/stat` (Linux exports them
/// in USER_HZ, which is 100 on every architecture the kernel's ABI defines today).
pub const TICKS_PER_SEC: u64 = 100;

/// CPU time (user + system) of `pid` in clock ticks ([`TICKS_PER_SEC`]), if readable. The
/// process line counts every thread of the process (ejabberd's beam.smp, Herald's workers).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu_ticks(&stat)
}

/// utime + stime (fields 14 and 15) of one `/proc/PID/stat` line. The command name (field 2)
/// is in parentheses and may itself contain spaces and parentheses, so fields are counted from
/// the last `)`.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // After the name: state (3), ppid (4), … utime (14), stime (15).
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time a process used over a wall-clock interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    /// User + system CPU time, microseconds (resolution: one tick, 10 ms).
    pub cpu_us: u64,
    /// Wall time of the interval, seconds.
    pub wall_secs: f64,
}

impl CpuUse {
    /// From two tick readings `wall_secs` apart (None when the counter went backwards, i.e. the
    /// PID now names another process).
    pub fn from_ticks(before: u64, after: u64, wall_secs: f64) -> Option<CpuUse> {
        let ticks = after.checked_sub(before)?;
        Some(CpuUse {
            cpu_us: ticks * (1_000_000 / TICKS_PER_SEC),
            wall_secs,
        })
    }

    /// Percent of one core (200 % = two cores busy).
    pub fn percent(&self) -> Option<f64> {
        (self.wall_secs > 0.0).then(|| self.cpu_us as f64 / 1e6 / self.wall_secs * 100.0)
    }

    /// CPU microseconds per item (e.g. per delivered message); None for zero items.
    pub fn us_per(&self, items: u64) -> Option<f64> {
        (items > 0).then(|| self.cpu_us as f64 / items as f64)
    }
}

/// CPU use of a process over a measured interval.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: u32,
    ticks: Option<u64>,
    at: Instant,
}

impl CpuMeter {
    /// Starts measuring `pid`.
    pub fn start(pid: u32) -> Self {
        CpuMeter {
            pid,
            ticks: cpu_ticks(pid),
            at: Instant::now(),
        }
    }

    /// CPU time used since [`CpuMeter::start`] (None if /proc was unreadable).
    pub fn read(&self) -> Option<CpuUse> {
        let now = cpu_ticks(self.pid)?;
        CpuUse::from_ticks(self.ticks?, now, self.at.elapsed().as_secs_f64())
    }

    /// Percent of one core used since [`CpuMeter::start`] (None if /proc was unreadable).
    pub fn percent(&self) -> Option<f64> {
        self.read()?.percent()
    }
}

/// One result row (the schema of `bench/results/<scenario>.json`, plus detail fields).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Row {
    /// "herald", "prosody" or "ejabberd".
    pub system: String,
    /// Scenario name (login, idle, chat, fanout, chat-cross-node).
    pub scenario: String,
    /// Sessions connected.
    pub sessions: usize,
    /// Throughput: logins/s, messages/s or presence deliveries/s.
    pub msgs_per_sec: Option<f64>,
    /// Median latency.
    pub p50_ms: Option<f64>,
    /// 90th percentile latency.
    pub p90_ms: Option<f64>,
    /// 99th percentile latency.
    pub p99_ms: Option<f64>,
    /// Largest latency.
    pub max_ms: Option<f64>,
    /// Server RSS growth divided by sessions (idle hold).
    pub rss_bytes_per_session: Option<f64>,
    /// Messages sent and not received (or logins failed).
    pub lost: Option<u64>,
    /// Offered rate for chat steps (messages/s asked for).
    pub offered_rate: Option<f64>,
    /// Generator CPU (% of one core) during the measurement.
    pub generator_cpu_pct: Option<f64>,
    /// Server CPU (% of one core) during the measurement.
    pub server_cpu_pct: Option<f64>,
    /// Free text: what the number means for this row.
    pub note: Option<String>,
    /// Chat traffic shape: "pairs" (both directions, one write per message) or "oneway"
    /// (sender → receiver's full JID, due messages coalesced on a shared 1 ms tick).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
    /// Where server and generator ran: "pinned" (server CPU 1, generator CPU 0) or "unpinned".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// How the server was started for this row (flags that matter: workers, schedulers, GC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_flags: Option<String>,
    /// Messages delivered (received by the generator) in this step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u64>,
    /// Server CPU time (user + system, all threads) over the step divided by `delivered`, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_msg: Option<f64>,
    /// Negotiated TLS version as rustls names it (e.g. "TLSv1_3").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    /// Negotiated TLS cipher suite as rustls names it (e.g. "TLS13_AES_256_GCM_SHA384").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    /// CPU of each generator process when the scenario ran over several (first: the parent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_cpu_pct_each: Option<Vec<f64>>,
    /// The generator's own lag behind the kernel's receive time of what it measured (p50, p99),
    /// for rows whose latency is stamped with that receive time (fan-out): how much a
    /// read-time stamp would have charged to the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_lag_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_lag_p99_ms: Option<f64>,
    /// Control-plane isolation results (scenario "isolation").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<crate::scenarios::isolation::Isolation>,
    /// Calendar burst results (scenario "calendar-burst").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendar: Option<crate::scenarios::calendar::CalendarBurst>,
    /// nproc, RAM and CPU model.
    pub machine: String,
    /// UTC date of the run (YYYY-MM-DD).
    pub date: String,
}

impl Row {
    /// Copies latency percentiles into the row.
    pub fn set_latency(&mut self, p: &Percentiles) {
        if p.count > 0 {
            self.p50_ms = Some(p.p50_ms);
            self.p90_ms = Some(p.p90_ms);
            self.p99_ms = Some(p.p99_ms);
            self.max_ms = Some(p.max_ms);
        }
    }

    /// Records the generator's lag percentiles (see `generator_lag_p99_ms`).
    pub fn set_generator_lag(&mut self, p: &Percentiles) {
        if p.count > 0 {
            self.generator_lag_p50_ms = Some(p.p50_ms);
            self.generator_lag_p99_ms = Some(p.p99_ms);
        }
    }

    /// Copies the negotiated TLS version and cipher suite into the row.
    pub fn set_tls(&mut self, tls: Option<&crate::client::TlsInfo>) {
        if let Some(t) = tls {
            self.tls_version = Some(t.version.clone());
            self.tls_cipher = Some(t.cipher.clone());
        }
    }
}

/// Why results could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// File error.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The existing file is not a JSON list.
    #[error("{0}: not a JSON list of rows: {1}")]
    Json(String, serde_json::Error),
}

/// Appends `rows` to the JSON list in `path` (created when missing).
pub fn append_rows(path: &Path, rows: &[Row]) -> Result<(), ReportError> {
    let name = path.display().to_string();
    let mut all: Vec<serde_json::Value> = match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => {
            serde_json::from_str(&s).map_err(|e| ReportError::Json(name.clone(), e))?
        }
        Ok(_) => Vec::new(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ReportError::Io(name, e)),
    };
    for r in rows {
        all.push(serde_json::to_value(r).map_err(|e| ReportError::Json(name.clone(), e))?);
    }
    let text =
        serde_json::to_string_pretty(&all).map_err(|e| ReportError::Json(name.clone(), e))?;
    std::fs::write(path, text + "\n").map_err(|e| ReportError::Io(name, e))
}

/// "N cores, X GiB, CPU model" from /proc.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    // Counted from /proc/cpuinfo: available_parallelism() would see the taskset mask.
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    format!(
        "{cores} cores, {:.1} GiB, {model}",
        mem_kb as f64 / 1024.0 / 1024.0
    )
}

/// Today's UTC date as YYYY-MM-DD.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    civil_date((secs / 86_400) as i64)
}

/// Days since 1970-01-01 → YYYY-MM-DD (proleptic Gregorian).
fn civil_date(days: i64) -> String {
    let (y, m, d) = herald_federation::calendar::time::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let cases: [(Vec<u64>, Percentiles); 3] = [
            (vec![], Percentiles::default()),
            (
                vec![5000],
                Percentiles {
                    count: 1,
                    p50_ms: 5.0,
                    p90_ms: 5.0,
                    p99_ms: 5.0,
                    max_ms: 5.0,
                },
            ),
            (
                (1..=100).rev().map(|i| i * 1000).collect(),
                Percentiles {
                    count: 100,
                    p50_ms: 50.0,
                    p90_ms: 90.0,
                    p99_ms: 99.0,
                    max_ms: 100.0,
                },
            ),
        ];
        for (mut input, want) in cases {
            assert_eq!(percentiles(&mut input), want);
        }
    }

    #[test]
    fn civil_dates() {
        for (days, want) in [
            (0, "1970-01-01"),
            (11_016, "2000-02-29"),
            (20_780, "2026-11-23"),
        ] {
            assert_eq!(civil_date(days), want);
        }
    }

    #[test]
    fn stat_cpu_fields() {
        // utime 1500, stime 250; the command name has spaces and a ')' of its own.
        let odd = "4242 (beam.smp (x) y) S 1 4242 4242 0 -1 4194560 9 0 0 0 1500 250 0 0 20 0 \
                   40 0 123 456 789";
        let cases = [
            (odd, Some(1750)),
            ("1 (herald) R 0 1 1 0 -1 0 0 0 0 0 7 3 0 0", Some(10)),
            ("1 (herald) R 0 1 1 0 -1 0 0 0 0 0 7", None),
            ("1 (herald) R 0 1 1 0 -1 0 0 0 0 0 x 3", None),
            ("no parenthesis at all", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(stat_cpu_ticks(line), want, "{line}");
        }
    }

    #[test]
    fn cpu_use_arithmetic() {
        let u = CpuUse::from_ticks(100, 350, 2.0).expect("forward");
        assert_eq!(u.cpu_us, 2_500_000);
        assert_eq!(u.percent(), Some(125.0));
        assert_eq!(u.us_per(10_000), Some(250.0));
        assert_eq!(u.us_per(0), None);
        assert_eq!(CpuUse::from_ticks(350, 100, 2.0), None);
        assert_eq!(
            CpuUse::from_ticks(1, 1, 0.0).and_then(|u| u.percent()),
            None
        );
    }

    #[test]
    fn own_process_readings() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).is_some_and(|b| b > 0));
        assert!(cpu_ticks(pid).is_some());
        assert_eq!(rss_bytes(u32::MAX), None);
    }

    #[test]
    fn append_creates_and_extends() {
        let path = std::env::temp_dir().join(format!("herald-bench-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let row = Row {
            system: "herald".into(),
            scenario: "login".into(),
            sessions: 2,
            ..Row::default()
        };
        append_rows(&path, std::slice::from_ref(&row)).expect("first write");
        append_rows(&path, &[row]).expect("second write");
        let text = std::fs::read_to_string(&path).expect("read back");
        let v: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json list");
        assert_eq!(v.len(), 2);
        assert_eq!(v[1]["system"], "herald");
        assert!(v[0]["p99_ms"].is_null());
        let _ = std::fs::remove_file(&path);
    }
}
