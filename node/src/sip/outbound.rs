//! One outbound link per next hop: a task owning a bounded queue, the connection (TCP, or TLS
//! through [`super::tls::SipTls::connect`]), the
//! connection state and backoff (`federation::edge::link`) and the client transactions in
//! flight. Every message gets an answer: a 2xx, or a bounce to its XMPP sender (non-2xx final
//! response, no final response within Timer F, connection failed or closed, queue full).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_federation::edge::link::{Link, LinkLimits, LinkState, Push};
use herald_sip::{Decoder, Frame, Message, Request, Response};
use herald_xmpp::error::StanzaCondition;
use herald_xmpp::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::edge;
use super::metrics as m;
use super::tls::Stream;
use super::Sip;

/// Messages waiting in a link's channel.
pub const QUEUE: usize = 1024;
/// Timer F (64 × T1): a MESSAGE without a final response by then has failed.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(32);
/// Longest connection attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection without transactions for this long is closed.
pub const IDLE: Duration = Duration::from_secs(120);

/// A next hop: where a link connects, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hop {
    pub host: String,
    pub port: u16,
    /// TLS (mutual: we present our certificate) rather than plain TCP.
    pub tls: bool,
}

impl Hop {
    fn transport(&self) -> &'static str {
        if self.tls {
            "tls"
        } else {
            "tcp"
        }
    }
}

/// One message to send.
pub struct Outgoing {
    /// The XMPP stanza it came from (bounced on failure).
    pub stanza: Element,
    pub request: Request,
    /// The SIP domain (for logs).
    pub domain: String,
    /// Where the final response goes (presence requests); `None` for a MESSAGE, whose failure
    /// bounces `stanza`. A request that gets no final response is answered here with a 408
    /// made up by the link.
    pub answer: Option<tokio::sync::oneshot::Sender<Response>>,
}

struct Pending {
    item: Outgoing,
    deadline: Instant,
}

struct State {
    sip: Arc<Sip>,
    hop: Hop,
    link: Link<Outgoing>,
    conn: Option<Box<dyn Stream>>,
    decoder: Decoder,
    pending: HashMap<String, Pending>,
    retry_at: Option<Instant>,
    last_activity: Instant,
}

/// Runs the link of `hop` until its channel closes (shutdown); then bounces what is left.
pub async fn run(sip: Arc<Sip>, hop: Hop, rx: mpsc::Receiver<Outgoing>) {
    let span = tracing::info_span!(
        "sip_outbound",
        next_hop = %format!("{}:{}", hop.host, hop.port),
        transport = hop.transport()
    );
    let limits = sip.limits;
    let st = State {
        sip,
        hop,
        link: Link::new(LinkLimits {
            max_items: QUEUE,
            ..LinkLimits::default()
        }),
        conn: None,
        decoder: Decoder::outbound(limits),
        pending: HashMap::new(),
        retry_at: None,
        last_activity: Instant::now(),
    };
    st.run(rx).instrument(span).await;
}

impl State {
    async fn run(mut self, mut rx: mpsc::Receiver<Outgoing>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(item) => self.push(item).await,
                    None => break,
                },
                read = read_some(&mut self.conn, &mut buf) => match read {
                    Ok(0) | Err(_) => self.closed("connection closed by the SIP peer"),
                    Ok(n) => {
                        self.decoder.feed(&buf[..n]);
                        self.drain_frames().await;
                    }
                },
                _ = tick.tick() => self.on_tick().await,
            }
        }
        self.close_conn();
        let left: Vec<Outgoing> = self
            .link
            .drain()
            .into_iter()
            .chain(self.pending.drain().map(|(_, p)| p.item))
            .collect();
        for item in left {
            self.fail(
                item,
                StanzaCondition::RemoteServerTimeout,
                "shutdown",
                "the server is shutting down",
            );
        }
    }

    async fn push(&mut self, item: Outgoing) {
        let size = item.request.body.len() + 512;
        match self.link.push(item, size, Instant::now()) {
            Push::Write(item) => self.write(item).await,
            Push::Queued { connect: true } => self.connect().await,
            Push::Queued { connect: false } => {
                // Waiting out a backoff with nothing else queued before: retry when it ends.
                if let (LinkState::Backoff { until, .. }, None) = (self.link.state(), self.retry_at)
                {
                    self.retry_at = Some(*until);
                }
            }
            Push::Full(item) => self.fail(
                item,
                StanzaCondition::ResourceConstraint,
                "queue_full",
                "too many messages waiting for the SIP peer",
            ),
        }
    }

    async fn connect(&mut self) {
        self.retry_at = None;
        let (host, port) = (self.hop.host.clone(), self.hop.port);
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, dial(&self.sip, &host, port)).await;
        let attempt = match attempt {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                secure(self.sip.tls.get().cloned(), &self.hop, tcp).await
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        };
        match attempt {
            Ok(conn) => {
                tracing::info!("SIP link up");
                self.sip.hop_state(&self.hop, false);
                m::connection_opened("outbound", self.hop.transport());
                self.conn = Some(conn);
                self.decoder = Decoder::outbound(self.sip.limits);
                self.last_activity = Instant::now();
                for item in self.link.up() {
                    self.write(item).await;
                }
            }
            Err(why) => self.connect_failed(why),
        }
    }

    fn connect_failed(&mut self, why: String) {
        tracing::warn!(error = %why, "SIP link: connection failed");
        self.sip.hop_state(&self.hop, true);
        let now = Instant::now();
        let (bounced, retry) = self.link.failed(now, why, true);
        for item in bounced {
            // A page-mode MESSAGE whose domain has another next hop up goes that way (a backup
            // route, the next SRV target); requests with an answer channel are the table's.
            let item =
                if item.answer.is_none() && item.request.method == herald_sip::Method::Message {
                    let Outgoing {
                        stanza,
                        request,
                        domain,
                        answer,
                    } = item;
                    match self.sip.try_reroute(stanza, &domain) {
                        None => continue,
                        Some(stanza) => Outgoing {
                            stanza,
                            request,
                            domain,
                            answer,
                        },
                    }
                } else {
                    item
                };
            self.fail(
                item,
                StanzaCondition::RemoteServerNotFound,
                "connect",
                "the SIP peer cannot be reached",
            );
        }
        self.retry_at = retry.map(|d| now + d);
    }

    async fn write(&mut self, item: Outgoing) {
        let Some(branch) = item
            .request
            .headers
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string))
        else {
            self.fail(
                item,
                StanzaCondition::InternalServerError,
                "internal",
                "no Via branch",
            );
            return;
        };
        let bytes = Message::from(item.request.clone()).encode();
        let ok = match self.conn.as_mut() {
            Some(c) => c.write_all(&bytes).await.is_ok() && c.flush().await.is_ok(),
            None => false,
        };
        if !ok {
            self.fail(
                item,
                StanzaCondition::RemoteServerTimeout,
                "write",
                "the connection to the SIP peer broke",
            );
            self.closed("write failed");
            return;
        }
        if item.request.method == herald_sip::Method::Ack {
            // No response comes to an ACK (RFC 3261 §17.1.1.3): nothing to wait for.
            self.last_activity = Instant::now();
            return;
        }
        tracing::debug!(domain = %item.domain, method = %item.request.method, %branch, "SIP request sent");
        self.last_activity = Instant::now();
        self.pending.insert(
            branch,
            Pending {
                item,
                deadline: Instant::now() + TRANSACTION_TIMEOUT,
            },
        );
    }

    async fn drain_frames(&mut self) {
        loop {
            match self.decoder.next() {
                Ok(None) => return,
                Ok(Some(Frame::Message(Message::Response(r)))) => self.on_response(r).await,
                Ok(Some(Frame::Message(Message::Request(req)))) => {
                    // This edge takes requests on its routing node's listener only.
                    tracing::info!(method = %req.method, "SIP request on an outbound connection refused");
                    m::failure("inbound", "on_outbound_connection");
                    let resp =
                        Response::for_request(&req, 403, Some("Send Requests To The Listener"));
                    if req.method != herald_sip::Method::Ack {
                        if let Some(c) = self.conn.as_mut() {
                            let _ = c.write_all(&Message::from(resp).encode()).await;
                            let _ = c.flush().await;
                        }
                    }
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "malformed SIP input from the peer");
                    m::failure("outbound", "decode");
                    if e.is_fatal() {
                        self.closed("framing lost");
                        return;
                    }
                }
            }
        }
    }

    async fn on_response(&mut self, r: Response) {
        self.last_activity = Instant::now();
        let Some(branch) = r
            .headers
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string))
        else {
            return;
        };
        if r.is_provisional() {
            return;
        }
        let Some(mut p) = self.pending.remove(&branch) else {
            tracing::debug!(status = r.status, "SIP response for no transaction ignored");
            return;
        };
        let method = p.item.request.method.as_str().to_string();
        m::request("outbound", &method, r.status);
        if p.item.request.method == herald_sip::Method::Invite && r.status >= 300 {
            // The INVITE client transaction acknowledges a non-2xx final answer itself, on the
            // same hop (RFC 3261 §17.1.1.3).
            let ack = ack_for_non_2xx(&p.item.request, &r);
            if let Some(c) = self.conn.as_mut() {
                let _ = c.write_all(&Message::from(ack).encode()).await;
                let _ = c.flush().await;
            }
        }
        if let Some(answer) = p.item.answer.take() {
            tracing::debug!(domain = %p.item.domain, %method, status = r.status, "SIP request answered");
            let _ = answer.send(r);
            return;
        }
        m::forward_leg(&p.item.stanza, "to_sip_answer");
        if r.is_success() {
            tracing::info!(domain = %p.item.domain, status = r.status, "SIP MESSAGE accepted");
            ::metrics::counter!(m::MESSAGES, "direction" => "outbound").increment(1);
        } else {
            tracing::info!(domain = %p.item.domain, status = r.status, reason = %r.reason, "SIP MESSAGE refused");
            let text = format!("the SIP peer answered {} {}", r.status, r.reason);
            self.fail(
                p.item,
                edge::response_condition(r.status),
                "response",
                &text,
            );
        }
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(b, _)| b.clone())
            .collect();
        for b in expired {
            if let Some(p) = self.pending.remove(&b) {
                self.fail(
                    p.item,
                    StanzaCondition::RemoteServerTimeout,
                    "timeout",
                    "the SIP peer did not answer in time",
                );
            }
        }
        for item in self.link.expire(now) {
            self.fail(
                item,
                StanzaCondition::RemoteServerTimeout,
                "timeout",
                "the SIP peer could not be reached in time",
            );
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.link.connecting(now);
            self.connect().await;
        }
        if self.conn.is_some()
            && self.pending.is_empty()
            && now.duration_since(self.last_activity) >= IDLE
        {
            tracing::debug!("idle SIP link closed");
            self.close_conn();
            self.link.down();
        }
    }

    /// The connection broke: transactions on it fail; queued messages wait for a new attempt
    /// (on the next tick).
    fn closed(&mut self, why: &str) {
        if self.conn.is_none() {
            return;
        }
        tracing::info!(reason = why, "SIP link down");
        self.close_conn();
        for (_, p) in std::mem::take(&mut self.pending) {
            self.fail(
                p.item,
                StanzaCondition::RemoteServerTimeout,
                "closed",
                "the connection to the SIP peer closed before it answered",
            );
        }
        if self.link.down() {
            self.retry_at = Some(Instant::now());
        }
    }

    fn close_conn(&mut self) {
        if self.conn.take().is_some() {
            m::connection_closed("outbound", self.hop.transport());
        }
    }

    fn fail(&self, item: Outgoing, condition: StanzaCondition, reason: &'static str, text: &str) {
        m::failure("outbound", reason);
        if let Some(answer) = item.answer {
            tracing::info!(domain = %item.domain, method = %item.request.method, reason, "SIP request failed: {text}");
            let mut r = Response::for_request(&item.request, 408, Some("Request Timeout"));
            r.reason = format!("Request Timeout ({text})");
            let _ = answer.send(r);
            return;
        }
        tracing::info!(domain = %item.domain, reason, "SIP MESSAGE failed; bounced to the XMPP sender");
        self.sip.bounce(&item.stanza, condition, text);
    }
}

/// The ACK of a non-2xx final response to `invite`: the INVITE's Request-URI, top Via (same
/// branch), Route set, From, Call-ID and CSeq number, and the response's To (with its tag).
pub fn ack_for_non_2xx(invite: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(herald_sip::Method::Ack, invite.uri.clone());
    if let Some(v) = invite.headers.get(&herald_sip::HeaderName::Via) {
        ack = ack.header(herald_sip::HeaderName::Via, v.to_string());
    }
    ack = ack.header(herald_sip::HeaderName::MaxForwards, "70");
    for r in invite.headers.get_all(&herald_sip::HeaderName::Route) {
        ack = ack.header(herald_sip::HeaderName::Route, r.to_string());
    }
    for name in [herald_sip::HeaderName::From, herald_sip::HeaderName::CallId] {
        if let Some(v) = invite.headers.get(&name) {
            ack = ack.header(name.clone(), v.to_string());
        }
    }
    if let Some(to) = resp.headers.get(&herald_sip::HeaderName::To) {
        ack = ack.header(herald_sip::HeaderName::To, to.to_string());
    }
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    ack.header(herald_sip::HeaderName::CSeq, format!("{seq} ACK"))
}

/// The connection as a link uses it: TLS on top of `tcp` for a TLS hop.
async fn secure(
    tls: Option<Arc<super::tls::SipTls>>,
    hop: &Hop,
    tcp: TcpStream,
) -> Result<Box<dyn Stream>, String> {
    if !hop.tls {
        return Ok(Box::new(tcp));
    }
    let tls = tls.ok_or("TLS is not configured on this node")?;
    let s = tls.connect(&hop.host, tcp).await?;
    let names = s
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(super::tls::cert_names);
    tracing::info!(cert_names = ?names, "SIP TLS handshake done");
    Ok(Box::new(s))
}

/// A TCP connection to `host:port`, its addresses found through the federation resolver
/// (`--dns-resolver`, like the SRV records that named it); each address tried in turn.
async fn dial(sip: &Sip, host: &str, port: u16) -> std::io::Result<TcpStream> {
    let ips = sip.dns.addresses(host).await.map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no address for {host}: {e}"),
        )
    })?;
    let mut last = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no address for {host}"),
    );
    for ip in ips {
        match TcpStream::connect((ip, port)).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Reads from the connection, or waits forever when there is none.
async fn read_some(conn: &mut Option<Box<dyn Stream>>, buf: &mut [u8]) -> std::io::Result<usize> {
    match conn {
        Some(c) => c.read(buf).await,
        None => std::future::pending().await,
    }
}
