//! Logging: a tracing subscriber writing human or JSON lines to stderr, and a `slog` drain
//! that forwards raft-rs records into tracing (target `raft`).

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter directive (from `RUST_LOG` or `log_level`) does not parse.
    #[error("invalid log filter in {source_name} `{directive}`: {reason}")]
    Filter {
        /// "RUST_LOG" or "log_level".
        source_name: &'static str,
        /// The directive as given.
        directive: String,
        /// The parser's message.
        reason: String,
    },
}

/// Builds the log filter: `rust_log` (the `RUST_LOG` value) when set and non-empty, else
/// `level`.
pub fn build_filter(rust_log: Option<&str>, level: &str) -> Result<EnvFilter, TelemetryError> {
    let (source_name, directive) = match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(env) => ("RUST_LOG", env),
        None => ("log_level", level),
    };
    EnvFilter::builder()
        .parse(directive)
        .map_err(|e| TelemetryError::Filter {
            source_name,
            directive: directive.to_string(),
            reason: e.to_string(),
        })
}

/// Installs the global tracing subscriber: `format` lines on stderr, filtered by `RUST_LOG`
/// when set, else by `level`. Records of the `log` crate (rustls, …) are captured too.
/// The filter sits in a reload layer, so `herald log set` can change it at run time
/// ([`crate::log_filter`]). Calling it again (or after another subscriber was installed)
/// changes nothing and is not an error.
pub fn init(format: LogFormat, level: &str) -> Result<(), TelemetryError> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = build_filter(rust_log.as_deref(), level)?;
    // What `herald log show` reports and `herald log reset` returns to, as the operator wrote it.
    let startup = match rust_log.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(env) => env.to_string(),
        None => level.trim().to_string(),
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // `try_init` fails only when a global subscriber already exists: keep that one.
    let installed = match format {
        LogFormat::Human => registry
            .with(fmt.with_ansi(std::io::stderr().is_terminal()))
            .try_init()
            .is_ok(),
        LogFormat::Json => registry
            .with(fmt.json().flatten_event(true).with_current_span(false))
            .try_init()
            .is_ok(),
    };
    if installed {
        crate::log_filter::register(handle, startup);
    }
    Ok(())
}

/// A `slog` drain for raft-rs: each record becomes a tracing event with target `raft`, the
/// level mapped (critical → error), and the record's key-values appended as ` key=value`.
/// (slog's default features drop trace records at compile time, and release builds drop debug
/// records too: `slog/max_level_*` features decide.)
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingDrain;

/// The logger to hand to `raft::RawNode::new`.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

/// Collects slog key-values as ` key=value` pairs.
struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        // Writing to a String cannot fail.
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

fn kv_text(record: &slog::Record<'_>, values: &slog::OwnedKVList) -> String {
    use slog::KV as _;
    let mut out = KvText(String::new());
    // Serializing into a String only fails if a value's own serializer fails; keep the rest.
    let _ = record.kv().serialize(record, &mut out);
    let _ = values.serialize(record, &mut out);
    out.0
}

macro_rules! forward {
    ($level:expr, $record:expr, $values:expr) => {
        if tracing::enabled!(target: "raft", $level) {
            let kv = kv_text($record, $values);
            tracing::event!(target: "raft", $level, "{}{}", $record.msg(), kv);
        }
    };
}

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        use tracing::Level;
        match record.level() {
            slog::Level::Critical | slog::Level::Error => forward!(Level::ERROR, record, values),
            slog::Level::Warning => forward!(Level::WARN, record, values),
            slog::Level::Info => forward!(Level::INFO, record, values),
            slog::Level::Debug => forward!(Level::DEBUG, record, values),
            slog::Level::Trace => forward!(Level::TRACE, record, values),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// A writer that appends to a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        }
    }

    fn capture(filter: &str, json: bool, f: impl FnOnce()) -> String {
        let buf = Buffer::default();
        let builder = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(filter))
            .with_writer(buf.clone())
            .with_ansi(false);
        if json {
            tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), f);
        } else {
            tracing::subscriber::with_default(builder.finish(), f);
        }
        buf.text()
    }

    #[test]
    fn raft_records_reach_tracing_with_levels_and_kvs() {
        let out = capture("trace", false, || {
            let log = raft_logger().new(slog::o!("raft_id" => 3));
            slog::info!(log, "became leader"; "term" => 7);
            slog::crit!(log, "fatal thing");
            slog::warn!(log, "slow"; "ms" => 12);
            slog::debug!(log, "detail");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        let want = [
            ("INFO", "became leader term=7 raft_id=3"),
            ("ERROR", "fatal thing raft_id=3"),
            ("WARN", "slow ms=12 raft_id=3"),
            ("DEBUG", "detail raft_id=3"),
        ];
        for (line, (level, text)) in lines.iter().zip(want) {
            assert!(line.contains(level), "{line}");
            assert!(line.contains(" raft: "), "target raft: {line}");
            assert!(line.ends_with(text), "{line} should end with {text}");
        }
    }

    #[test]
    fn raft_filter_applies() {
        let out = capture("raft=warn", false, || {
            let log = raft_logger();
            slog::info!(log, "hidden");
            slog::error!(log, "shown");
        });
        assert!(!out.contains("hidden") && out.contains("shown"), "{out}");
    }

    #[test]
    fn json_lines_are_objects() {
        let out = capture("info", true, || {
            slog::info!(raft_logger(), "hello"; "k" => "v");
            tracing::warn!(answer = 42, "plain event");
        });
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json line");
            assert!(
                v.get("level").is_some() && v.get("target").is_some(),
                "{line}"
            );
        }
        assert!(out.contains(r#""message":"hello k=v""#), "{out}");
        assert!(out.contains(r#""answer":42"#), "{out}");
    }

    #[test]
    fn filter_source_precedence_and_errors() {
        let cases = [
            (None, "info", Ok("info")),
            (Some("debug"), "info", Ok("debug")),
            (Some("  "), "warn", Ok("warn")),
            (Some("info,["), "info", Err("RUST_LOG")),
            (None, "info,[", Err("log_level")),
        ];
        for (rust_log, level, want) in cases {
            match (build_filter(rust_log, level), want) {
                (Ok(f), Ok(s)) => assert_eq!(f.to_string(), s),
                (Err(e), Err(name)) => assert!(e.to_string().contains(name), "{e}"),
                (got, want) => panic!("{rust_log:?}/{level}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn init_twice_is_harmless() {
        init(LogFormat::Human, "warn").expect("first");
        init(LogFormat::Json, "info").expect("second is a no-op");
    }
}
