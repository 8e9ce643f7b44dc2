//! Log levels per component, changeable at run time (`herald log set federation=debug`).
//!
//! The filter of the global subscriber sits in a `tracing_subscriber::reload` layer
//! ([`crate::telemetry::init`] registers it here). A change is a list of directives merged into
//! the filter in force: a directive for a target replaces the one for the same target, a bare
//! level replaces the default, everything else stays. Component names are short for the
//! tracing targets of Herald's crates ([`COMPONENTS`]); any other target is taken as written.
//! The merge is pure ([`merge`]) and checked by tracing-subscriber's own parser before anything
//! changes, so a bad directive leaves the node's logging as it was.

use std::sync::{Mutex, OnceLock};

use tracing_subscriber::{reload, EnvFilter, Registry};

/// Component names accepted in directives and the tracing targets they stand for.
pub const COMPONENTS: &[(&str, &str)] = &[
    ("cluster", "herald_cluster"),
    ("federation", "herald_federation"),
    ("node", "herald_node"),
    ("xmpp", "herald_node::xmpp"),
    ("im", "herald_node::im"),
    ("admin", "herald_node::admin"),
    ("tls", "herald_node::tls"),
    ("http", "herald_node::http"),
    ("raft", "raft"),
];

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Why a filter change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogFilterError {
    /// A directive does not parse; nothing was changed.
    #[error("invalid log directive `{directive}`: {reason} (expected COMPONENT=LEVEL or LEVEL, LEVEL one of off, error, warn, info, debug, trace; components: {components})", components = component_names())]
    Invalid {
        /// The directive as given.
        directive: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing to apply.
    #[error("no log directive given (e.g. `federation=debug,cluster=info` or `debug`)")]
    Empty,
    /// This process's subscriber has no reload layer (not started by `herald agent`).
    #[error("logging in this process cannot be changed at run time")]
    NotReloadable,
    /// The subscriber refused the new filter.
    #[error("the log filter could not be replaced: {0}")]
    Reload(String),
}

fn component_names() -> String {
    COMPONENTS
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The target a component name stands for (or the name itself).
fn expand_target(target: &str) -> &str {
    COMPONENTS
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(target))
        .map_or(target, |(_, t)| *t)
}

/// One directive split into its merge key (the target part, `""` for the default level) and
/// its text with the component name expanded.
fn split_directive(d: &str) -> (String, String) {
    let (lhs, level) = match d.rsplit_once('=') {
        // `target[span{field=value}]` has '=' inside brackets: only a trailing `=LEVEL` counts.
        Some((l, r)) if !r.contains(']') && !r.contains('}') => (l, Some(r)),
        _ => (d, None),
    };
    if level.is_none() && LEVELS.iter().any(|l| l.eq_ignore_ascii_case(lhs)) {
        return (String::new(), lhs.to_ascii_lowercase());
    }
    let (target, span) = match lhs.find('[') {
        Some(i) => (&lhs[..i], &lhs[i..]),
        None => (lhs, ""),
    };
    let key = format!("{}{span}", expand_target(target));
    let text = match level {
        Some(l) => format!("{key}={}", l.to_ascii_lowercase()),
        None => key.clone(),
    };
    (key, text)
}

/// The directives of `change`, each checked on its own, with component names expanded.
pub fn parse_change(change: &str) -> Result<Vec<(String, String)>, LogFilterError> {
    let mut out = Vec::new();
    for d in change.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (key, text) = split_directive(d);
        if let Err(e) = EnvFilter::builder().parse(&text) {
            return Err(LogFilterError::Invalid {
                directive: d.to_string(),
                reason: e.to_string(),
            });
        }
        // A target made of nothing but a level word's typo (`debg`) parses as "everything in
        // target `debg` at TRACE"; that is never what an operator means.
        if !d.contains('=') && !key.is_empty() && !key.contains(':') && !key.contains('[') {
            return Err(LogFilterError::Invalid {
                directive: d.to_string(),
                reason: "neither a level nor COMPONENT=LEVEL".to_string(),
            });
        }
        out.push((key, text));
    }
    if out.is_empty() {
        return Err(LogFilterError::Empty);
    }
    Ok(out)
}

/// `current` with the directives of `change` merged in: same target replaced, default level
/// first, the rest in order of first appearance. Checked as a whole before it is returned.
pub fn merge(current: &str, change: &str) -> Result<String, LogFilterError> {
    let mut merged: Vec<(String, String)> = current
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(split_directive)
        .collect();
    for (key, text) in parse_change(change)? {
        match merged.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = text,
            None => merged.push((key, text)),
        }
    }
    merged.sort_by_key(|(k, _)| !k.is_empty());
    let filter = merged
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",");
    EnvFilter::builder()
        .parse(&filter)
        .map_err(|e| LogFilterError::Invalid {
            directive: change.to_string(),
            reason: e.to_string(),
        })?;
    Ok(filter)
}

struct Reloadable {
    handle: reload::Handle<EnvFilter, Registry>,
    /// (filter the process started with, filter in force).
    filters: Mutex<(String, String)>,
}

static RELOADABLE: OnceLock<Reloadable> = OnceLock::new();

/// Registers the reload handle of the global subscriber and the filter it started with.
pub(crate) fn register(handle: reload::Handle<EnvFilter, Registry>, startup: String) {
    let _ = RELOADABLE.set(Reloadable {
        handle,
        filters: Mutex::new((startup.clone(), startup)),
    });
}

/// The filter in force, when logging is reloadable in this process.
pub fn current() -> Option<String> {
    RELOADABLE.get().map(|r| {
        r.filters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    })
}

/// Merges `directives` into the filter in force (into the startup filter with `reset`; only
/// `reset` with no directives goes back to it) and swaps it in. Returns the new filter.
pub fn change(directives: &str, reset: bool) -> Result<String, LogFilterError> {
    let r = RELOADABLE.get().ok_or(LogFilterError::NotReloadable)?;
    let mut filters = r.filters.lock().unwrap_or_else(|p| p.into_inner());
    let base = if reset { &filters.0 } else { &filters.1 };
    let next = if directives.trim().is_empty() && reset {
        base.clone()
    } else {
        merge(base, directives)?
    };
    let filter = EnvFilter::builder()
        .parse(&next)
        .map_err(|e| LogFilterError::Invalid {
            directive: directives.to_string(),
            reason: e.to_string(),
        })?;
    r.handle
        .reload(filter)
        .map_err(|e| LogFilterError::Reload(e.to_string()))?;
    filters.1 = next.clone();
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_table() {
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            (
                "info",
                "federation=debug",
                Ok("info,herald_federation=debug"),
            ),
            (
                "info,raft=warn",
                "cluster=info,raft=debug",
                Ok("info,raft=debug,herald_cluster=info"),
            ),
            ("info,raft=warn", "debug", Ok("debug,raft=warn")),
            ("raft=warn", "WARN", Ok("warn,raft=warn")),
            (
                "info",
                "herald_node::xmpp::session=trace",
                Ok("info,herald_node::xmpp::session=trace"),
            ),
            ("info", "xmpp=DEBUG", Ok("info,herald_node::xmpp=debug")),
            (
                "info",
                "cluster[apply{index=3}]=debug",
                Ok("info,herald_cluster[apply{index=3}]=debug"),
            ),
            ("info", "federation=loud", Err("federation=loud")),
            ("info", "debg", Err("debg")),
            ("info", " , ", Err("no log directive")),
            ("info", "a=b=c", Err("a=b=c")),
        ];
        for (current, change, want) in cases {
            let got = merge(current, change);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(&g, w, "{current} + {change}"),
                (Err(e), Err(w)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(w), "{current} + {change}: {msg}");
                }
                (got, want) => panic!("{current} + {change}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn invalid_directive_message_says_what_is_expected() {
        let e = merge("info", "federation=loud").unwrap_err().to_string();
        assert!(e.contains("`federation=loud`"), "{e}");
        assert!(e.contains("COMPONENT=LEVEL"), "{e}");
        assert!(e.contains("federation"), "{e}");
    }
}
