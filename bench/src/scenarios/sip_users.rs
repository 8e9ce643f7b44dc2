//! The XMPP side of the SIP benchmark (`bench/sip.sh`): Herald users logged in with the real
//! TLS client while a SIP generator (SIPp) sends MESSAGE and SUBSCRIBE through the routing node.
//!
//! Driven line by line on stdin, answering one JSON object per line on stdout:
//! - after the logins: `{"ready": N, "failed": F}`;
//! - `report TAG`: the messages whose body is `sipbench TAG SECS USECS` (the sender's wall
//!   clock, SIPp's `gettimeofday`) received so far: count and end-to-end latency percentiles
//!   (receipt wall clock − stamp; same machine, same clock);
//! - `presence ROUND`: every session sends `<presence><status>sipbench ROUND EPOCH_US</status>`
//!   (one wall-clock stamp taken before the first send, printed as `sent_epoch_us`);
//! - `approved`: how many subscription requests were approved (every `subscribe` presence is
//!   answered `subscribed`: the user allows SIP watchers, as in the guides' pending → allowed);
//! - `quit` or end of input: close the sessions and exit.
//!
//! Bounded: logins by the per-login timeout, the whole run by `limit`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_xmpp::{ns, Element};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use super::{close_all, iq_reply, Common};
use crate::client::Session;
use crate::report::{percentiles, Percentiles};

/// One account of the run: localpart, password and the node it logs in to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub password: String,
    pub server: std::net::SocketAddr,
}

/// Parses `LOCALPART PASSWORD IP:PORT` lines (blank lines and `#` comments skipped).
pub fn parse_accounts(text: &str) -> Result<Vec<Account>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [user, password, server] = f[..] else {
            return Err(format!(
                "line {}: expected LOCALPART PASSWORD IP:PORT",
                n + 1
            ));
        };
        let server = server
            .parse()
            .map_err(|e| format!("line {}: {server}: {e}", n + 1))?;
        out.push(Account {
            user: user.into(),
            password: password.into(),
            server,
        });
    }
    Ok(out)
}

/// Wall clock in microseconds since 1970 (shared with SIPp's `gettimeofday`).
pub fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `sipbench TAG SECS USECS` → (TAG, stamp µs). SIPp prints its variables as decimals
/// (`1796522399.000000 929926.000000`); a trailing line end is allowed.
pub fn parse_stamp(body: &str) -> Option<(String, u64)> {
    let mut f = body.split_whitespace();
    if f.next()? != "sipbench" {
        return None;
    }
    let tag = f.next()?.to_string();
    let secs: f64 = f.next()?.parse().ok()?;
    let usecs: f64 = f.next()?.parse().ok()?;
    Some((tag, secs as u64 * 1_000_000 + usecs as u64))
}

enum Event {
    Sample(String, u64),
    Approved,
    Report(String, oneshot::Sender<Percentiles>),
    Approvals(oneshot::Sender<u64>),
}

/// Runs until `quit`, end of input or `limit`.
pub async fn run(common: &Common, accounts: Vec<Account>, limit: Duration) {
    let sem = Arc::new(Semaphore::new(common.concurrency.max(1)));
    let mut logins = JoinSet::new();
    for (i, a) in accounts.into_iter().enumerate() {
        let sem = sem.clone();
        let mut cfg = common.connect.clone();
        cfg.server = a.server;
        logins.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, Session::login(&cfg, i, &a.user, &a.password).await)
        });
    }
    let (mut sessions, mut failed) = (Vec::new(), 0usize);
    while let Some(r) = logins.join_next().await {
        match r {
            Ok((i, Ok(s))) => sessions.push((i, s)),
            Ok((i, Err(e))) => {
                failed += 1;
                eprintln!("sip-users: login {i}: {e}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("sip-users: login task: {e}");
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({"ready": sessions.len(), "failed": failed})
    );

    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (cmd_tx, _) = broadcast::channel::<String>(16);
    let aggregator = tokio::spawn(aggregate(ev_rx));
    let mut tasks = JoinSet::new();
    for (i, s) in sessions {
        tasks.spawn(session(i, s, ev_tx.clone(), cmd_tx.subscribe()));
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let Ok(Some(line)) = line else { break };
        let mut f = line.split_whitespace();
        match (f.next(), f.next()) {
            (Some("report"), Some(tag)) => {
                let (tx, rx) = oneshot::channel();
                let _ = ev_tx.send(Event::Report(tag.into(), tx));
                let p = rx.await.unwrap_or_default();
                println!("{}", serde_json::json!({"tag": tag, "latency": p}));
            }
            (Some("presence"), Some(round)) => {
                let t = epoch_us();
                let _ = cmd_tx.send(format!(
                    "<presence><status>sipbench {round} {} {}</status></presence>",
                    t / 1_000_000,
                    t % 1_000_000
                ));
                println!(
                    "{}",
                    serde_json::json!({"round": round, "sent_epoch_us": t})
                );
            }
            (Some("approved"), _) => {
                let (tx, rx) = oneshot::channel();
                let _ = ev_tx.send(Event::Approvals(tx));
                println!("{}", serde_json::json!({"approved": rx.await.unwrap_or(0)}));
            }
            (Some("quit"), _) => break,
            _ => eprintln!("sip-users: unknown command {line:?}"),
        }
    }
    drop(cmd_tx);
    let mut back = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(Some(s)) = r {
            back.push(s);
        }
    }
    drop(ev_tx);
    let _ = aggregator.await;
    close_all(back, Duration::from_secs(10)).await;
}

async fn aggregate(mut rx: mpsc::UnboundedReceiver<Event>) {
    let mut samples: HashMap<String, Vec<u64>> = HashMap::new();
    let mut approved = 0u64;
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Sample(tag, us) => samples.entry(tag).or_default().push(us),
            Event::Approved => approved += 1,
            Event::Report(tag, reply) => {
                let mut v = samples.get(&tag).cloned().unwrap_or_default();
                let _ = reply.send(percentiles(&mut v));
            }
            Event::Approvals(reply) => {
                let _ = reply.send(approved);
            }
        }
    }
}

/// One session: answers iqs, approves subscription requests, stamps tagged messages, sends
/// the presence it is told to; returns the session when the command channel closes.
async fn session(
    i: usize,
    mut s: Session,
    ev: mpsc::UnboundedSender<Event>,
    mut cmd: broadcast::Receiver<String>,
) -> Option<(usize, Session)> {
    loop {
        loop {
            match s.buffered_stanza() {
                Ok(Some(e)) => {
                    let reply = match e.name() {
                        "message" => {
                            let body = e.get_child("body", ns::CLIENT).map(|b| b.text());
                            if let Some((tag, t)) = body.as_deref().and_then(parse_stamp) {
                                let _ = ev.send(Event::Sample(tag, epoch_us().saturating_sub(t)));
                            }
                            None
                        }
                        "presence" if e.get_attr("type") == Some("subscribe") => {
                            let _ = ev.send(Event::Approved);
                            e.get_attr("from").map(|from| {
                                Element::new("presence", ns::CLIENT)
                                    .attr("to", from)
                                    .attr("type", "subscribed")
                            })
                        }
                        "iq" => iq_reply(&e),
                        _ => None,
                    };
                    if let Some(r) = reply {
                        if s.send(&r).await.is_err() {
                            return None;
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => return None,
            }
        }
        tokio::select! {
            c = cmd.recv() => match c {
                Ok(p) => if s.send_raw(p.as_bytes()).await.is_err() { return None },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Some((i, s)),
            },
            r = s.fill() => if !matches!(r, Ok(true)) { return None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        let cases = [
            (
                "sipbench 3 1796522399.000000 929926.000000\r\n",
                Some(("3", 1_796_522_399_929_926)),
            ),
            (
                "sipbench m2 1796522400 30514",
                Some(("m2", 1_796_522_400_030_514)),
            ),
            ("hello", None),
            ("sipbench 3 x 1", None),
            ("sipbench 3 1", None),
        ];
        for (body, want) in cases {
            let got = parse_stamp(body);
            assert_eq!(
                got.as_ref().map(|(t, us)| (t.as_str(), *us)),
                want,
                "{body:?}"
            );
        }
    }

    #[test]
    fn accounts() {
        let a = parse_accounts("# c\nu1 pw1 127.0.0.52:15222\n\nu7 pw7 127.0.0.53:15222\n")
            .expect("parses");
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].user, "u7");
        assert_eq!(a[1].server.to_string(), "127.0.0.53:15222");
        assert!(parse_accounts("u1 pw1").is_err());
        assert!(parse_accounts("u1 pw1 nowhere").is_err());
    }
}
