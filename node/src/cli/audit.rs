//! `herald audit list [--limit N] [--kind K] [--since ISO]`: the audit log of admin changes,
//! newest first, as a table or (`-o json`) a JSON array.

use herald_grpc::admin::{AuditListReply, AuditListRequest};
use herald_grpc::config::{AuditRecord, ObjectKind};
use herald_grpc::objects::{kind_from_name, kind_name};
use serde_json::{json, Value};

use super::render::{utc_iso, Table};
use super::{CliError, Client, OutputFormat};

/// The audit log.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum AuditCmd {
    /// Admin changes, newest first: when, who, which node received them, what changed.
    List {
        /// At most this many records.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only changes of this kind (`calendar-credentials`, `user`, `node`, ...).
        #[arg(long)]
        kind: Option<String>,
        /// Only changes at or after this UTC time: `2026-01-31` or `2026-01-31T12:00:00Z`.
        #[arg(long)]
        since: Option<String>,
    },
}

/// The request a parsed `audit list` sends (no I/O).
pub fn request(cmd: &AuditCmd) -> Result<AuditListRequest, CliError> {
    let AuditCmd::List { limit, kind, since } = cmd;
    let kind = match kind {
        None => ObjectKind::Unspecified,
        Some(k) => kind_from_name(k)
            .ok_or_else(|| CliError::Usage(format!("--kind: unknown object kind {k:?}")))?,
    };
    let since_ms = match since {
        None => 0,
        Some(s) => parse_since(s)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--since: {s:?} is not YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)"
                ))
            })?
            .saturating_mul(1000),
    };
    Ok(AuditListRequest {
        limit: *limit,
        kind: kind as i32,
        since_ms,
        linearizable: false,
    })
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS][Z]` (UTC) as seconds since the Unix epoch.
pub fn parse_since(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.splitn(3, '-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let mut secs = 0i64;
    if let Some(t) = time {
        let mut parts = t.split(':');
        let h: i64 = parts.next()?.parse().ok()?;
        let mi: i64 = parts.next()?.parse().ok()?;
        let se: i64 = match parts.next() {
            Some(x) => x.split('.').next()?.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        secs = h * 3600 + mi * 60 + se;
    }
    Some(herald_federation::calendar::time::days_from_civil(y, m, day) * 86_400 + secs)
}

fn when(r: &AuditRecord) -> String {
    let ms = r.at_ms.rem_euclid(1000);
    let iso = utc_iso(r.at_ms.div_euclid(1000));
    format!("{}.{ms:03}Z", iso.trim_end_matches('Z'))
}

fn record_json(r: &AuditRecord) -> Value {
    json!({
        "index": r.index,
        "at": when(r),
        "at_ms": r.at_ms,
        "actor": r.actor,
        "node_id": r.node_id,
        "kind": kind_name(r.kind()),
        "key": r.key,
        "operation": r.operation,
        "summary": r.summary,
    })
}

/// Renders the reply, newest first as the server sent it.
pub fn render(reply: &AuditListReply, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => {
            let v: Vec<Value> = reply.records.iter().map(record_json).collect();
            format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| "[]".into())
            )
        }
        OutputFormat::Table => {
            let mut t = Table::new(&[
                "WHEN (UTC)",
                "ACTOR",
                "NODE",
                "OPERATION",
                "KIND",
                "KEY",
                "REVISION",
                "SUMMARY",
            ]);
            for r in &reply.records {
                t.push(vec![
                    when(r),
                    r.actor.clone(),
                    r.node_id.to_string(),
                    r.operation.clone(),
                    kind_name(r.kind()).to_string(),
                    r.key.clone(),
                    r.index.to_string(),
                    r.summary.clone(),
                ]);
            }
            format!(
                "{}({} of {} records)\n",
                t.render(),
                reply.records.len(),
                reply.total
            )
        }
    }
}

/// Runs `audit list`.
pub async fn execute(
    client: &mut Client,
    req: AuditListRequest,
    format: OutputFormat,
) -> Result<super::Output, CliError> {
    let reply = client.audit_list(req).await?.into_inner();
    Ok(super::Output {
        stdout: render(&reply, format),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parses_dates_and_times_in_utc() {
        assert_eq!(parse_since("1970-01-01"), Some(0));
        assert_eq!(parse_since("1970-01-02T00:00:01Z"), Some(86_401));
        assert_eq!(
            parse_since("2026-12-06T01:02"),
            parse_since("2026-12-06T01:02:00Z")
        );
        assert!(parse_since("2026-13-01").is_none());
        assert!(parse_since("yesterday").is_none());
        assert!(parse_since("2026-01-01T25:00").is_none());
    }

    #[test]
    fn requests_and_rendering() {
        let r = request(&AuditCmd::List {
            limit: 5,
            kind: Some("calendar-credentials".into()),
            since: Some("1970-01-01T00:00:10Z".into()),
        })
        .unwrap();
        assert_eq!(r.kind, ObjectKind::CalendarCredentials as i32);
        assert_eq!(r.since_ms, 10_000);
        assert!(request(&AuditCmd::List {
            limit: 5,
            kind: Some("nope".into()),
            since: None
        })
        .is_err());
        let reply = AuditListReply {
            records: vec![AuditRecord {
                index: 7,
                at_ms: 1_500,
                actor: "token:abcd1234".into(),
                node_id: 2,
                kind: ObjectKind::Domain as i32,
                key: "d.test".into(),
                operation: "create".into(),
                summary: "LocalDomain { name: \"d.test\" }".into(),
            }],
            total: 1,
        };
        let t = render(&reply, OutputFormat::Table);
        assert!(t.contains("1970-01-01T00:00:01.500Z") && t.contains("token:abcd1234"));
        assert!(t.contains("(1 of 1 records)"));
        let j: Value = serde_json::from_str(&render(&reply, OutputFormat::Json)).unwrap();
        assert_eq!(j[0]["kind"], "domain");
        assert_eq!(j[0]["operation"], "create");
    }
}
