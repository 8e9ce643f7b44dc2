//! One inbound SIP connection (TCP, or TLS after [`super::tls`] admitted the peer): read,
//! decode (herald-sip, bounded), answer. Requests are judged by [`super::edge::inbound`]; this
//! loop only carries the decision out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_sip::{Decoder, Frame, HeaderName, Message, Method, Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use super::edge::{self, Inbound};
use super::metrics as m;
use super::policy::Sender;
use super::Sip;

/// A connection that sends nothing (not even a keep-alive) for this long is closed.
pub const IDLE: Duration = Duration::from_secs(300);
/// A message must arrive whole within this long of its first byte (a peer trickling a
/// request byte by byte, slowloris-style, is cut off), and a new TCP connection must send its
/// first bytes within it; SIP's own transaction timers give up after 32 s, so no honest peer
/// takes this long.
pub const MESSAGE_TIME: Duration = Duration::from_secs(20);

/// Serves one accepted connection until the peer closes it, it idles out, or its framing
/// breaks (a fatal decoder error, answered first). `transport` is `tcp` or `tls`; `tls_name`
/// the `tls-peer` subject the peer's certificate matched (for the ACL).
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    sip: Arc<Sip>,
    stream: S,
    peer: SocketAddr,
    transport: &'static str,
    tls_name: Option<String>,
) {
    m::connection_opened("inbound", transport);
    let span = tracing::info_span!("sip_inbound", peer = %peer, transport, tls_peer = ?tls_name);
    async {
        tracing::debug!("SIP connection accepted");
        let why = run(&sip, stream, peer, transport, tls_name.as_deref()).await;
        tracing::debug!(reason = why, "SIP connection closed");
    }
    .instrument(span)
    .await;
    m::connection_closed("inbound", transport);
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    sip: &Arc<Sip>,
    mut conn: S,
    peer: SocketAddr,
    transport: &'static str,
    tls_name: Option<&str>,
) -> &'static str {
    let mut dec = Decoder::new(sip.limits);
    let mut buf = vec![0u8; 16 * 1024];
    // When the bytes of an incomplete message started to arrive.
    let mut partial_since: Option<tokio::time::Instant> = None;
    loop {
        loop {
            let mut after = Vec::new();
            let next = dec.next();
            if matches!(next, Ok(Some(_))) {
                // A whole message (or keep-alive) came out: the next one's clock starts anew.
                partial_since = None;
            }
            let out = match next {
                Ok(None) => break,
                Ok(Some(Frame::Ping)) => Some(herald_sip::codec::PONG.to_vec()),
                Ok(Some(Frame::Pong)) => None,
                Ok(Some(Frame::Message(Message::Request(req)))) => {
                    answer(sip, &req, peer, transport, tls_name).map(|(r, actions)| {
                        after = actions;
                        Message::from(r).encode()
                    })
                }
                Ok(Some(Frame::Message(Message::Response(r)))) => {
                    tracing::debug!(status = r.status, "stray SIP response ignored");
                    m::failure("inbound", "stray_response");
                    None
                }
                Err(e) => {
                    let fatal = e.is_fatal();
                    let status = e.status();
                    let reason = e.reason();
                    tracing::info!(error = %e, status, "malformed SIP input refused");
                    m::failure("inbound", "decode");
                    let resp = match dec.take_rejected() {
                        Some(Message::Request(r)) => {
                            m::request("inbound", r.method.as_str(), status);
                            (r.method != Method::Ack).then(|| {
                                with_to_tag(Response::for_request(&r, status, Some(&reason)))
                            })
                        }
                        Some(Message::Response(_)) => None,
                        // Framing is lost and nothing identifies the request: answer bare so
                        // the peer sees why, then close.
                        None if fatal => {
                            let mut r = Response::new(status);
                            r.reason = reason;
                            Some(r)
                        }
                        None => None,
                    };
                    if let Some(r) = resp {
                        if send(&mut conn, &Message::from(r).encode()).await.is_err() {
                            return "write failed";
                        }
                    }
                    if fatal {
                        let _ = conn.shutdown().await;
                        return "framing lost";
                    }
                    None
                }
            };
            if let Some(bytes) = out {
                if send(&mut conn, &bytes).await.is_err() {
                    return "write failed";
                }
            }
            // NOTIFYs and requests to XMPP follow the response they belong to.
            sip.execute(after);
        }
        let wait = if dec.buffered() == 0 {
            partial_since = None;
            IDLE
        } else {
            let since = *partial_since.get_or_insert_with(tokio::time::Instant::now);
            MESSAGE_TIME.saturating_sub(since.elapsed())
        };
        let n = match tokio::time::timeout(wait, conn.read(&mut buf)).await {
            Err(_) if partial_since.is_some() => {
                tracing::info!(
                    bytes = dec.buffered(),
                    "SIP message not completed in time; connection closed"
                );
                m::failure("inbound", "message_timeout");
                let _ = conn.shutdown().await;
                return "message timeout";
            }
            Err(_) => return "idle",
            Ok(Err(_)) => return "read failed",
            Ok(Ok(0)) => return "closed by peer",
            Ok(Ok(n)) => n,
        };
        dec.feed(&buf[..n]);
    }
}

/// Writes and flushes (a TLS stream holds records back until flushed).
async fn send<S: AsyncWrite + Unpin>(conn: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    conn.write_all(bytes).await?;
    conn.flush().await
}

/// The response to one request (`None` for ACK), and what the subscription table does next.
fn answer(
    sip: &Arc<Sip>,
    req: &Request,
    peer: SocketAddr,
    transport: &'static str,
    tls_name: Option<&str>,
) -> Option<(Response, Vec<super::subs::Action>)> {
    if req.method == Method::Ack {
        return None;
    }
    let domain = edge::from_domain(req).unwrap_or_default();
    let method = req.method.as_str().to_string();
    let routing = sip.routing_node();
    let (status, reason) = if routing != Some(sip.node_id) {
        tracing::info!(domain = %domain, %method, routing_node = ?routing, "SIP request refused: not the routing node");
        m::failure("inbound", "not_routing_node");
        (503, "Not The Routing Node".to_string())
    } else {
        let who = Sender {
            ip: peer.ip(),
            tls_name,
        };
        match edge::inbound(req, &who, &sip.view()) {
            Inbound::Deliver(msg) if sip.sender_blocked(&msg) => {
                // As if the user were offline: the block is never revealed.
                tracing::info!(domain = %domain, "SIP MESSAGE from a blocked sender refused as offline");
                m::failure("inbound", "blocked");
                (480, "Temporarily Unavailable".to_string())
            }
            Inbound::Deliver(msg) => {
                let to = msg.get_attr("to").unwrap_or_default().to_string();
                if sip.deliver(msg) {
                    tracing::info!(domain = %domain, to = %to, "SIP MESSAGE delivered to XMPP");
                    ::metrics::counter!(m::MESSAGES, "direction" => "inbound").increment(1);
                    (200, "OK".to_string())
                } else {
                    m::failure("inbound", "shutting_down");
                    (503, "Shutting Down".to_string())
                }
            }
            Inbound::Ok => (200, "OK".to_string()),
            Inbound::Invite { remote, user } => {
                let resp = sip.on_invite(req, &remote, &user, transport == "tls");
                tracing::info!(domain = %domain, remote = %remote, user = %user, status = resp.status, "SIP INVITE (IM session) answered");
                m::request("inbound", &method, resp.status);
                return Some((resp, Vec::new()));
            }
            Inbound::InDialog => match sip.on_in_dialog(req) {
                super::subs::InDialog::Respond(resp) => {
                    m::request("inbound", &method, resp.status);
                    return Some((resp, Vec::new()));
                }
                super::subs::InDialog::Deliver { remote, user } => {
                    match edge::chat(req, &remote, &user) {
                        Inbound::Deliver(msg) => {
                            if sip.deliver(msg) {
                                tracing::info!(domain = %domain, to = %user, "SIP MESSAGE (session) delivered to XMPP");
                                ::metrics::counter!(m::MESSAGES, "direction" => "inbound")
                                    .increment(1);
                                (200, "OK".to_string())
                            } else {
                                (503, "Shutting Down".to_string())
                            }
                        }
                        Inbound::Reject {
                            status,
                            reason,
                            label,
                        } => {
                            m::failure("inbound", label);
                            (status, reason)
                        }
                        _ => (500, "Server Internal Error".to_string()),
                    }
                }
            },
            Inbound::Subscribe { watcher, user } => {
                let (resp, actions) = sip.on_subscribe(req, &watcher, &user, transport == "tls");
                tracing::info!(domain = %domain, watcher = %watcher, user = %user, status = resp.status, "SIP SUBSCRIBE answered");
                m::request("inbound", &method, resp.status);
                return Some((resp, actions));
            }
            Inbound::Notify => {
                let (resp, actions) = sip.on_notify(req, transport == "tls");
                tracing::debug!(domain = %domain, status = resp.status, "SIP NOTIFY answered");
                if resp.status >= 300 {
                    m::failure("inbound", "notify_refused");
                }
                m::request("inbound", &method, resp.status);
                return Some((resp, actions));
            }
            Inbound::Reject {
                status,
                reason,
                label,
            } => {
                tracing::info!(domain = %domain, %method, status, reason = label, "SIP request refused");
                m::failure("inbound", label);
                (status, reason)
            }
        }
    };
    m::request("inbound", &method, status);
    let mut resp = with_to_tag(Response::for_request(req, status, Some(&reason)));
    if req.method == Method::Options || status == 405 {
        resp = resp
            .header(HeaderName::Allow, edge::ALLOW)
            .header(HeaderName::Accept, "text/plain");
    }
    if status == 415 {
        resp = resp.header(HeaderName::Accept, "text/plain");
    }
    Some((resp, Vec::new()))
}

/// Adds a To tag when the request had none (RFC 3261 §8.2.6.2).
fn with_to_tag(mut resp: Response) -> Response {
    let to = resp.headers.get(&HeaderName::To).map(str::to_string);
    if let Some(to) = to {
        if let Ok(mut na) = herald_sip::NameAddr::parse(&to) {
            if na.tag().is_none() {
                na.set_tag(&super::random_token());
                resp.headers.set(HeaderName::To, na.to_string());
            }
        }
    }
    resp
}
