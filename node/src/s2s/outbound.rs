//! Outbound federation: one [`LinkActor`] per (local domain, remote domain) pair owns the
//! queue (`federation::edge::link`), starts connection attempts, writes stanzas while the
//! stream is up and bounces what cannot be sent. [`connect`] opens and authenticates one
//! outbound stream; [`verify_key`] asks a domain's authoritative server about a dialback key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use herald_federation::edge::link::{Link, LinkLimits, LinkState, Push as LinkPush};
use herald_federation::edge::resolve::{self, Target};
use herald_grpc::config::XmppSecurityMode;
use herald_xmpp::codec::encode;
use herald_xmpp::error::StanzaCondition;
use herald_xmpp::s2s::{self as wire, Dialback};
use herald_xmpp::{ns, Element, StreamEvent};
use tokio::sync::mpsc;

use super::metrics as m;
use super::stream::{Conn, ReadError};
use super::S2s;

/// How long one negotiation step may take.
const STEP: Duration = Duration::from_secs(15);
/// A stream with no traffic either way for this long is closed (and reopened on demand).
pub const IDLE: Duration = Duration::from_secs(600);
/// Stanzas buffered towards an established stream's writer.
const WRITER_QUEUE: usize = 4096;

/// Why an outbound attempt failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Metric label: dns, connect, tls, auth, dialback, timeout, stream.
    pub reason: &'static str,
    pub detail: String,
}

impl Failure {
    fn new(reason: &'static str, detail: impl Into<String>) -> Failure {
        Failure {
            reason,
            detail: detail.into(),
        }
    }
    fn condition(&self) -> StanzaCondition {
        if self.reason == "dns" {
            StanzaCondition::RemoteServerNotFound
        } else {
            StanzaCondition::RemoteServerTimeout
        }
    }
}

impl From<ReadError> for Failure {
    fn from(e: ReadError) -> Failure {
        match e {
            ReadError::Timeout => Failure::new("timeout", "the peer did not answer in time"),
            ReadError::Io(e) => Failure::new("connect", format!("connection lost: {e}")),
            ReadError::Stream(e) => {
                Failure::new("stream", format!("stream error: {}", e.condition.name()))
            }
        }
    }
}

/// A stanza to send.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Push(pub Element);

/// One stanza for several recipients in the link's domain (a presence broadcast): `stanza`
/// without `to`, in `jabber:client`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PushShared {
    pub stanza: Element,
    pub to: Vec<herald_xmpp::Jid>,
}

/// Close the link (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

#[derive(Message)]
#[rtype(result = "()")]
struct Attempted {
    generation: u64,
    result: Result<Conn, Failure>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct WriterDone {
    generation: u64,
    error: Option<String>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Retry;

/// The outbound link of one domain pair.
pub struct LinkActor {
    s2s: Arc<S2s>,
    local: String,
    remote: String,
    link: Link<Element>,
    writer: Option<mpsc::Sender<Vec<u8>>>,
    /// Tells results of older attempts and writers apart from the current one.
    generation: u64,
    label: &'static str,
}

impl LinkActor {
    pub fn new(s2s: Arc<S2s>, local: String, remote: String) -> LinkActor {
        LinkActor {
            s2s,
            local,
            remote,
            link: Link::new(LinkLimits::default()),
            writer: None,
            generation: 0,
            label: "idle",
        }
    }

    fn set_state_gauge(&mut self) {
        let now = self.link.state().label();
        if now != self.label {
            metrics::gauge!(m::LINKS, "state" => self.label).decrement(1.0);
            metrics::gauge!(m::LINKS, "state" => now).increment(1.0);
            self.label = now;
        }
    }

    fn start_attempt(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let (s2s, local, remote) = (self.s2s.clone(), self.local.clone(), self.remote.clone());
        let me = ctx.address();
        actix_rt::spawn(async move {
            let result = connect(&s2s, &local, &remote).await;
            me.do_send(Attempted { generation, result });
        });
    }

    fn write(&mut self, stanza: Element) -> Result<(), Element> {
        let Some(w) = &self.writer else {
            return Err(stanza);
        };
        let mut el = stanza;
        wire::swap_ns(&mut el, ns::CLIENT, ns::SERVER);
        super::rewrite_presence(&mut el, "outbound");
        match w.try_send(encode(&el, ns::SERVER)) {
            Ok(()) => {
                metrics::counter!(m::STANZAS, "direction" => "outbound").increment(1);
                Ok(())
            }
            Err(_) => {
                wire::swap_ns(&mut el, ns::SERVER, ns::CLIENT);
                Err(el)
            }
        }
    }

    fn bounce_all(&self, items: Vec<Element>, condition: StanzaCondition, why: &str) {
        for s in items {
            self.s2s.bounce(&s, condition.clone(), why);
        }
    }
}

impl Actor for LinkActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        metrics::gauge!(m::LINKS, "state" => self.label).increment(1.0);
        // Items that wait too long for a connection are bounced even if no attempt ends.
        ctx.run_interval(Duration::from_secs(5), |act, _| {
            let expired = act.link.expire(Instant::now());
            if !expired.is_empty() {
                tracing::info!(local = %act.local, domain = %act.remote, n = expired.len(), "federated stanzas waited too long");
                act.bounce_all(expired, StanzaCondition::RemoteServerTimeout, "the remote server could not be reached in time");
            }
        });
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        let left = self.link.drain();
        if !*self.s2s.enabled.borrow() && !left.is_empty() {
            // Federation was disabled on this node: what waited here goes out through an
            // enabled node instead (or bounces there if none is live).
            tracing::info!(local = %self.local, domain = %self.remote, n = left.len(),
                "federation disabled on this node: queued stanzas handed to an enabled node");
            for s in left {
                self.s2s.send(s, false);
            }
        } else {
            self.bounce_all(
                left,
                StanzaCondition::RemoteServerTimeout,
                "the federation link closed",
            );
        }
        metrics::gauge!(m::LINKS, "state" => self.label).decrement(1.0);
        Running::Stop
    }
}

impl Handler<Push> for LinkActor {
    type Result = ();
    fn handle(&mut self, Push(stanza): Push, ctx: &mut Context<Self>) {
        let size = 256 + stanza.to_bytes(ns::CLIENT).len();
        match self.link.push(stanza, size, Instant::now()) {
            LinkPush::Write(s) => {
                if let Err(s) = self.write(s) {
                    // The writer is gone or cannot keep up: let it finish what it has, and
                    // queue this stanza for a new stream.
                    self.writer = None;
                    self.link.down();
                    self.handle(Push(s), ctx);
                    return;
                }
            }
            LinkPush::Queued { connect } => {
                if connect {
                    self.start_attempt(ctx);
                }
            }
            LinkPush::Full(s) => {
                m::failure("outbound", "queue");
                self.s2s.bounce(
                    &s,
                    StanzaCondition::ResourceConstraint,
                    "too many stanzas queued for this domain",
                );
            }
        }
        self.set_state_gauge();
    }
}

impl Handler<PushShared> for LinkActor {
    type Result = ();
    /// While the stream is up: the stanza is rewritten for the peer and encoded once, and
    /// every recipient's copy (the encoding with its `to` spliced in) goes to the writer as one
    /// buffer. Otherwise each recipient's copy is queued as any stanza is.
    fn handle(&mut self, PushShared { stanza, to }: PushShared, ctx: &mut Context<Self>) {
        metrics::histogram!(crate::xmpp::metrics::BATCH_RECIPIENTS, "path" => "s2s")
            .record(to.len() as f64);
        if let (LinkState::Up, Some(w)) = (self.link.state(), &self.writer) {
            let mut el = stanza.clone();
            wire::swap_ns(&mut el, ns::CLIENT, ns::SERVER);
            super::rewrite_presence(&mut el, "outbound");
            let enc = encode(&el, ns::SERVER);
            let mut out = Vec::with_capacity((enc.len() + 48) * to.len());
            for j in &to {
                crate::im::shared::splice_to(
                    &mut out,
                    &enc,
                    el.name(),
                    &crate::im::shared::to_attribute(j),
                );
            }
            if w.try_send(out).is_ok() {
                metrics::counter!(m::STANZAS, "direction" => "outbound").increment(to.len() as u64);
                return;
            }
            // As in `Push`: this writer finishes what it has; the copies wait for a new stream.
            self.writer = None;
            self.link.down();
        }
        for j in to {
            let mut s = stanza.clone();
            s.set_attr("to", j.to_string());
            self.handle(Push(s), ctx);
        }
    }
}

impl Handler<Attempted> for LinkActor {
    type Result = ();
    fn handle(&mut self, msg: Attempted, ctx: &mut Context<Self>) {
        if msg.generation != self.generation {
            return;
        }
        match msg.result {
            Ok(conn) => {
                tracing::info!(local = %self.local, domain = %self.remote, "outbound federation stream established");
                let (tx, rx) = mpsc::channel(WRITER_QUEUE);
                self.writer = Some(tx);
                let me = ctx.address();
                let generation = self.generation;
                let (local, remote) = (self.local.clone(), self.remote.clone());
                actix_rt::spawn(async move {
                    let error = run_writer(conn, rx, &local, &remote).await;
                    me.do_send(WriterDone { generation, error });
                });
                for s in self.link.up() {
                    if let Err(s) = self.write(s) {
                        self.s2s.bounce(
                            &s,
                            StanzaCondition::ResourceConstraint,
                            "too many stanzas queued for this domain",
                        );
                    }
                }
            }
            Err(f) => {
                tracing::warn!(local = %self.local, domain = %self.remote, reason = f.reason, detail = %f.detail, "outbound federation attempt failed");
                m::failure("outbound", f.reason);
                let (bounced, retry) = self.link.failed(Instant::now(), f.detail.clone(), true);
                let why = format!("cannot reach {}: {}", self.remote, f.detail);
                self.bounce_all(bounced, f.condition(), &why);
                if let Some(d) = retry {
                    ctx.notify_later(Retry, d);
                }
            }
        }
        self.set_state_gauge();
    }
}

impl Handler<Retry> for LinkActor {
    type Result = ();
    fn handle(&mut self, _: Retry, ctx: &mut Context<Self>) {
        if matches!(self.link.state(), LinkState::Backoff { .. }) && self.link.queued() > 0 {
            self.link.connecting(Instant::now());
            self.start_attempt(ctx);
            self.set_state_gauge();
        }
    }
}

impl Handler<WriterDone> for LinkActor {
    type Result = ();
    fn handle(&mut self, msg: WriterDone, ctx: &mut Context<Self>) {
        if msg.generation != self.generation {
            return;
        }
        self.writer = None;
        match msg.error {
            Some(e) => {
                tracing::info!(local = %self.local, domain = %self.remote, error = %e, "outbound federation stream ended")
            }
            None => {
                tracing::debug!(local = %self.local, domain = %self.remote, "outbound federation stream closed")
            }
        }
        if self.link.down() {
            self.link.connecting(Instant::now());
            self.start_attempt(ctx);
        }
        self.set_state_gauge();
    }
}

impl Handler<Stop> for LinkActor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Writes queued stanzas to an established stream and watches it for the peer's close or
/// errors, and for idleness. Returns why it ended (None: closed normally).
async fn run_writer(
    mut conn: Conn,
    mut rx: mpsc::Receiver<Vec<u8>>,
    local: &str,
    remote: &str,
) -> Option<String> {
    let mut gauge = m::ConnGauge::new("outbound");
    gauge.established();
    let mut last = tokio::time::Instant::now();
    loop {
        let idle_left = IDLE.saturating_sub(last.elapsed());
        tokio::select! {
            out = rx.recv() => match out {
                Some(mut bytes) => {
                    // Coalesce what is already waiting into one write.
                    while bytes.len() < 64 * 1024 {
                        match rx.try_recv() {
                            Ok(more) => bytes.extend_from_slice(&more),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = conn.write(&bytes).await {
                        return Some(format!("write failed: {e}"));
                    }
                    last = tokio::time::Instant::now();
                }
                None => { conn.close().await; return None; }
            },
            ev = conn.next(idle_left) => match ev {
                Ok(StreamEvent::Close) => { conn.close().await; return None; }
                Ok(StreamEvent::Stanza(e)) if e.is("error", ns::STREAM) => {
                    let cond = e.children().next().map(|c| c.name().to_string()).unwrap_or_default();
                    return Some(format!("stream error from {remote}: {cond}"));
                }
                Ok(_) => { last = tokio::time::Instant::now(); }
                Err(ReadError::Timeout) => {
                    tracing::debug!(local, domain = remote, "idle outbound federation stream closed");
                    conn.close().await;
                    return None;
                }
                Err(ReadError::Io(e)) => return Some(format!("connection lost: {e}")),
                Err(ReadError::Stream(e)) => { conn.fail(&e).await; return Some(format!("bad input: {}", e.condition.name())); }
            }
        }
    }
}

/// The targets of `domain`, in order: SRV (`_xmpps-server`, `_xmpp-server`), else the domain.
async fn targets(s2s: &S2s, domain: &str) -> Result<Vec<Target>, Failure> {
    let direct = s2s.dns.srv(&format!("_xmpps-server._tcp.{domain}")).await;
    let starttls = s2s.dns.srv(&format!("_xmpp-server._tcp.{domain}")).await;
    let (direct, starttls) = match (direct, starttls) {
        (Err(a), Err(_)) => return Err(Failure::new("dns", format!("SRV lookup failed: {a}"))),
        (d, s) => (
            d.unwrap_or(resolve::Lookup::Records(vec![])),
            s.unwrap_or(resolve::Lookup::Records(vec![])),
        ),
    };
    let t = resolve::xmpp_targets(domain, direct, starttls, s2s.default_port, |n| {
        rand::random_range(0..=n)
    });
    if t.is_empty() {
        return Err(Failure::new(
            "dns",
            format!("{domain} offers no XMPP server service"),
        ));
    }
    Ok(t)
}

/// Opens a TCP connection to the first target that answers.
async fn dial(s2s: &S2s, domain: &str) -> Result<(Conn, Target), Failure> {
    let mut last = Failure::new("dns", format!("no address found for {domain}"));
    for t in targets(s2s, domain).await? {
        let ips = match s2s.dns.addresses(&t.host).await {
            Ok(ips) => ips,
            Err(e) => {
                last = Failure::new("dns", format!("{}: {e}", t.host));
                continue;
            }
        };
        for ip in ips {
            let addr = std::net::SocketAddr::new(ip, t.port);
            match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
            {
                Ok(Ok(tcp)) => return Ok((Conn::new(tcp, s2s.limits), t)),
                Ok(Err(e)) => last = Failure::new("connect", format!("{addr}: {e}")),
                Err(_) => last = Failure::new("timeout", format!("{addr}: connect timed out")),
            }
        }
    }
    Err(last)
}

/// Opens the stream (header, features), doing STARTTLS first when the peer offers it and the
/// security mode allows. Returns the peer's stream id and features.
async fn open(
    s2s: &S2s,
    conn: &mut Conn,
    local: &str,
    remote: &str,
    mode: XmppSecurityMode,
) -> Result<(String, wire::Offer), Failure> {
    for _ in 0..3 {
        conn.write(&wire::stream_header(local, Some(remote), None))
            .await
            .map_err(|e| Failure::new("connect", e.to_string()))?;
        let id = match conn.next(STEP).await? {
            StreamEvent::Open(h) => {
                wire::check_header(&h).map_err(|e| Failure::new("stream", e))?;
                h.id.unwrap_or_default()
            }
            other => {
                return Err(Failure::new(
                    "stream",
                    format!("expected a stream header, got {other:?}"),
                ))
            }
        };
        let features = loop {
            match conn.next(STEP).await? {
                StreamEvent::Stanza(f) if f.is("features", ns::STREAM) => break f,
                StreamEvent::Stanza(e) if e.is("error", ns::STREAM) => {
                    let cond = e
                        .children()
                        .next()
                        .map(|c| c.name().to_string())
                        .unwrap_or_default();
                    return Err(Failure::new("stream", format!("stream error: {cond}")));
                }
                StreamEvent::Whitespace => continue,
                other => {
                    return Err(Failure::new(
                        "stream",
                        format!("expected stream features, got {other:?}"),
                    ))
                }
            }
        };
        let offer = wire::parse_features(&features);
        if !conn.io.is_tls() && offer.starttls && mode != XmppSecurityMode::NoTls {
            conn.write(&Element::new("starttls", ns::TLS).to_bytes(ns::SERVER))
                .await
                .map_err(|e| Failure::new("tls", e.to_string()))?;
            match conn.next(STEP).await? {
                StreamEvent::Stanza(p) if p.is("proceed", ns::TLS) => {}
                other => return Err(Failure::new("tls", format!("STARTTLS refused: {other:?}"))),
            }
            conn.tls_client(
                s2s.client_tls(local, false)
                    .map_err(|e| Failure::new("tls", e.to_string()))?,
                remote,
            )
            .await
            .map_err(|e| Failure::new("tls", format!("TLS handshake failed: {e}")))?;
            continue;
        }
        if !conn.io.is_tls() && mode == XmppSecurityMode::TlsRequired {
            return Err(Failure::new(
                "tls",
                format!("{remote} does not offer STARTTLS and TLS is required"),
            ));
        }
        return Ok((id, offer));
    }
    Err(Failure::new("stream", "too many stream restarts"))
}

/// Connects to `remote` and authenticates as `local` (SASL EXTERNAL when possible, else
/// dialback). Returns the stream, ready for stanzas.
pub async fn connect(s2s: &S2s, local: &str, remote: &str) -> Result<Conn, Failure> {
    let settings = s2s.settings();
    let mode = settings.mode();
    let (mut conn, target) = dial(s2s, remote).await?;
    if target.direct_tls && mode != XmppSecurityMode::NoTls {
        conn.tls_client(
            s2s.client_tls(local, true)
                .map_err(|e| Failure::new("tls", e.to_string()))?,
            remote,
        )
        .await
        .map_err(|e| Failure::new("tls", format!("TLS handshake failed: {e}")))?;
    }
    let (id, offer) = open(s2s, &mut conn, local, remote, mode).await?;
    let cert = if conn.io.is_tls() {
        s2s.trust.verify(conn.io.peer_certs().as_deref(), remote)
    } else {
        Err("no TLS".to_string())
    };
    if let Err(why) = &cert {
        if mode == XmppSecurityMode::TlsRequired {
            m::failure("outbound", "tls");
            return Err(Failure::new(
                "tls",
                format!("certificate of {remote} not accepted: {why}"),
            ));
        }
    }
    if conn.io.is_tls() && offer.external && settings.federation.sasl_outbound {
        conn.write(&wire::sasl_external_auth(local).to_bytes(ns::SERVER))
            .await
            .map_err(|e| Failure::new("auth", e.to_string()))?;
        match conn.next(STEP).await? {
            StreamEvent::Stanza(s) if s.is("success", ns::SASL) => {
                metrics::counter!(m::AUTH, "direction" => "outbound", "method" => "sasl_external", "result" => "ok").increment(1);
                conn.restart();
                open(s2s, &mut conn, local, remote, mode).await?;
                return Ok(conn);
            }
            StreamEvent::Stanza(f) if f.is("failure", ns::SASL) => {
                metrics::counter!(m::AUTH, "direction" => "outbound", "method" => "sasl_external", "result" => "failed").increment(1);
                tracing::info!(
                    local,
                    domain = remote,
                    "SASL EXTERNAL refused by the peer; trying dialback"
                );
                if !offer.dialback {
                    return Err(Failure::new(
                        "auth",
                        "SASL EXTERNAL refused and no dialback offered",
                    ));
                }
            }
            other => {
                return Err(Failure::new(
                    "auth",
                    format!("unexpected answer to SASL: {other:?}"),
                ))
            }
        }
    }
    if !offer.dialback {
        return Err(Failure::new(
            "auth",
            format!("{remote} offers no authentication Herald can use"),
        ));
    }
    let key = wire::dialback_key(&settings.secret, remote, local, &id);
    conn.write(&encode(
        &Dialback::request(local, remote, None, &key),
        ns::SERVER,
    ))
    .await
    .map_err(|e| Failure::new("dialback", e.to_string()))?;
    loop {
        match conn.next(STEP * 2).await? {
            StreamEvent::Stanza(e) => {
                if let Some(db) = Dialback::parse(&e).filter(|d| !d.verify) {
                    let ok = db.kind.as_deref() == Some("valid");
                    metrics::counter!(m::AUTH, "direction" => "outbound", "method" => "dialback", "result" => if ok { "ok" } else { "failed" }).increment(1);
                    if ok {
                        return Ok(conn);
                    }
                    return Err(Failure::new(
                        "dialback",
                        format!(
                            "{remote} did not accept our dialback key ({})",
                            db.kind.unwrap_or_default()
                        ),
                    ));
                }
                if e.is("error", ns::STREAM) {
                    let cond = e
                        .children()
                        .next()
                        .map(|c| c.name().to_string())
                        .unwrap_or_default();
                    return Err(Failure::new(
                        "dialback",
                        format!("stream error during dialback: {cond}"),
                    ));
                }
            }
            StreamEvent::Whitespace => {}
            StreamEvent::Close => {
                return Err(Failure::new(
                    "dialback",
                    "the peer closed the stream during dialback",
                ))
            }
            StreamEvent::Open(_) => return Err(Failure::new("stream", "unexpected stream header")),
        }
    }
}

/// Asks `originating`'s authoritative server whether `key` is valid for a stream with id
/// `stream_id` that it opened to our `receiving` domain (XEP-0220 §2.1.3).
pub async fn verify_key(
    s2s: &S2s,
    receiving: &str,
    originating: &str,
    stream_id: &str,
    key: &str,
) -> Result<bool, Failure> {
    let mode = s2s.settings().mode();
    let (mut conn, target) = dial(s2s, originating).await?;
    if target.direct_tls && mode != XmppSecurityMode::NoTls {
        conn.tls_client(
            s2s.client_tls(receiving, true)
                .map_err(|e| Failure::new("tls", e.to_string()))?,
            originating,
        )
        .await
        .map_err(|e| Failure::new("tls", format!("TLS handshake failed: {e}")))?;
    }
    open(s2s, &mut conn, receiving, originating, mode).await?;
    conn.write(&encode(
        &Dialback::request(receiving, originating, Some(stream_id), key),
        ns::SERVER,
    ))
    .await
    .map_err(|e| Failure::new("dialback", e.to_string()))?;
    let answer = loop {
        match conn.next(STEP * 2).await? {
            StreamEvent::Stanza(e) => {
                if let Some(db) =
                    Dialback::parse(&e).filter(|d| d.verify && d.id.as_deref() == Some(stream_id))
                {
                    break db.kind.as_deref() == Some("valid");
                }
                if e.is("error", ns::STREAM) {
                    return Err(Failure::new(
                        "dialback",
                        "stream error while verifying a key",
                    ));
                }
            }
            StreamEvent::Whitespace => {}
            _ => {
                return Err(Failure::new(
                    "dialback",
                    "the authoritative server closed the stream",
                ))
            }
        }
    };
    conn.close().await;
    Ok(answer)
}
