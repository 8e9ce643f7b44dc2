//! `herald troubleshoot`: the checks an operator would make by hand, over the admin API of
//! the node the CLI talks to (which reaches the others), plus DNS and optional TLS probes.
//!
//! - `facts`: the plain data the checks judge;
//! - `gather`: all I/O (Diagnose and config reads, certificate parsing, DNS, `--probe`);
//! - `checks`: pure functions from facts to report rows (table-tested in `tests`);
//! - `certs`: certificate parsing and the RFC 6125 name rule;
//! - this file: the command's options, the report and its rendering.

mod certs;
mod checks;
mod facts;
mod gather;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_gather;

use serde_json::json;

use super::render::Table;
use super::{CliError, Client, Output, OutputFormat};
pub use checks::{Row, Verdict};

/// `herald troubleshoot` options.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TroubleshootArgs {
    /// Also connect over TLS to each federated SIP domain's next hop and check that its
    /// certificate names a `tls-peer` subject.
    #[arg(long)]
    pub probe: bool,
    /// DNS server for the SRV checks, IP[:PORT] (default: the nameservers of /etc/resolv.conf).
    #[arg(long, env = "HERALD_DNS_RESOLVER", value_name = "IP[:PORT]")]
    pub dns_resolver: Option<String>,
    /// Extra trusted CA certificates (PEM) for the chain check; repeatable. The system bundle
    /// and each node's development CA are trusted already.
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_files: Vec<std::path::PathBuf>,
}

/// Seconds since the Unix epoch now.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Gathers the facts, runs every check and renders the report; the output counts the
/// failed checks (the exit status is non-zero when there are any).
pub(crate) async fn execute(
    client: &mut Client,
    args: TroubleshootArgs,
    format: OutputFormat,
) -> Result<Output, CliError> {
    let opts = gather::Options {
        probe: args.probe,
        dns_resolver: args.dns_resolver,
        ca_files: args.ca_files,
    };
    let facts = gather::gather(client, &opts).await?;
    let rows = checks::all(&facts);
    Ok(report(facts.answered_by, &rows, format))
}

/// The rendered report of `rows`.
pub fn report(answered_by: u64, rows: &[Row], format: OutputFormat) -> Output {
    let count = |v: Verdict| rows.iter().filter(|r| r.verdict == v).count();
    let (pass, warn, fail) = (
        count(Verdict::Pass),
        count(Verdict::Warn),
        count(Verdict::Fail),
    );
    let stdout = match format {
        OutputFormat::Json => {
            let v = json!({
                "answered_by": answered_by,
                "checks": rows,
                "summary": {"pass": pass, "warn": warn, "fail": fail},
            });
            format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        OutputFormat::Table => {
            let mut t = Table::new(&["STATUS", "CHECK", "SUBJECT", "DETAIL"]);
            for r in rows {
                t.push(vec![
                    r.verdict.as_str().to_string(),
                    r.check.to_string(),
                    r.subject.clone(),
                    r.detail.clone(),
                ]);
            }
            let mut out = t.render();
            let fixes: Vec<&Row> = rows.iter().filter(|r| r.verdict != Verdict::Pass).collect();
            if !fixes.is_empty() {
                out.push_str("\nTo fix:\n");
                for r in fixes {
                    out.push_str(&format!(
                        "  {} {} {}: {}\n",
                        r.verdict.as_str(),
                        r.check,
                        r.subject,
                        r.fix
                    ));
                }
            }
            out.push_str(&format!(
                "\n{pass} passed, {warn} warnings, {fail} failed (gathered through node {answered_by})\n"
            ));
            out
        }
    };
    Output {
        stdout,
        stderr: Vec::new(),
        failures: fail,
    }
}
