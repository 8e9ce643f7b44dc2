//! Every node accepts SIP; the routing node serves it. A node that is not the routing node
//! relays each accepted SIP connection, TCP or TLS alike and before any TLS handshake (a
//! layer-4 relay: TLS, the client-certificate check and the ACL all happen on the routing
//! node), byte for byte to the routing node's listener of the same port, after a PROXY
//! protocol v2 header ([`super::proxy_v2`]) that carries the peer's real address. A Kubernetes
//! Service over all pods (or DNS naming every node) then reaches the routing node, wherever the
//! role is, with no load balancer that would have to know it.
//!
//! Per accepted connection ([`accepted`]):
//! 1. The first bytes are read ([`read_opening`], bounded: at most [`proxy_v2::MAX_HEADER`]
//!    header bytes, [`HEADER_TIMEOUT`] once they started). SIP text and TLS records never look
//!    like a header, so a client's first bytes are decided on at once (a CRLF keep-alive alone
//!    waits [`HEADER_TIMEOUT`]).
//! 2. [`plan`] decides: a header from a source that is not a cluster member is refused (never
//!    trusted from outside); a connection relayed by a member is served here, whatever our role
//!    (one hop at most: a relay never relays again, and a node that is no longer the routing
//!    node answers 503); any other connection is relayed when relaying is on and another node
//!    holds the role, else served here.
//! 3. Relaying connects to the routing node's cluster-address host (its advertised host or IP)
//!    at the port this connection came in on: **every node must use the same `sip_port` and
//!    `sip_tls_port`**. The outgoing socket is bound to the address the client reached us on,
//!    so the routing node sees a member's address. When the routing node cannot be reached in
//!    [`CONNECT_TIMEOUT`], the connection is served here (503, counted as `relay_connect`).
//! 4. Bytes flow both ways until either side closes (its end is passed on), an error, or
//!    [`inbound::IDLE`] without a byte either way; then both connections close. The relay holds
//!    the accept loop's slot for its whole life.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::metrics as m;
use super::proxy_v2::{self, Decoded};
use super::{inbound, tls, Sip};

/// Longest wait for the rest of a PROXY header once its first byte came.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the routing node's listener (name resolution included).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the resolution of one member's host name (membership check).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a connection's PROXY header (if any) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxied {
    /// No header: the socket's peer is the peer.
    No,
    /// A header from a cluster member's address: a relayed connection.
    ByMember,
    /// A header from anyone else.
    ByOutsider,
}

/// What to do with an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Close it (a PROXY header from outside the cluster).
    Refuse,
    /// Serve it on this node (as the routing node, or with 503 when not).
    Serve,
    /// Relay it to this routing node.
    Relay(u64),
}

/// The decision for one accepted connection: `relay` is the `sip_relay` setting, `me` this
/// node, `routing` the routing node now.
pub fn plan(proxied: Proxied, relay: bool, me: u64, routing: Option<u64>) -> Plan {
    match (proxied, routing) {
        (Proxied::ByOutsider, _) => Plan::Refuse,
        (Proxied::ByMember, _) => Plan::Serve,
        (Proxied::No, Some(r)) if relay && r != me => Plan::Relay(r),
        (Proxied::No, _) => Plan::Serve,
    }
}

/// The host of a `HOST:PORT` address (brackets of an IPv6 literal removed).
pub fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    if addr.matches(':').count() > 1 {
        return addr; // a bare IPv6 literal
    }
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

/// Serves, relays or refuses one accepted SIP connection (see the module doc). `tls`: it came
/// in on the TLS port; `relay`: the `sip_relay` setting.
pub async fn accepted(sip: Arc<Sip>, mut tcp: TcpStream, peer: SocketAddr, tls: bool, relay: bool) {
    let transport = if tls { "tls" } else { "tcp" };
    // A peer connects to send: its ClientHello, PROXY header or first request comes at once.
    let first_wait = if tls {
        tls::HANDSHAKE_TIMEOUT
    } else {
        inbound::MESSAGE_TIME
    };
    let opening = match read_opening(&mut tcp, first_wait).await {
        Ok(o) => o,
        Err(OpeningError::Header(e)) => {
            tracing::info!(peer = %peer, transport, error = %e, "SIP connection closed: bad PROXY protocol header");
            m::failure("inbound", "proxy_header");
            return;
        }
        Err(OpeningError::Late) => {
            tracing::info!(peer = %peer, transport, "SIP connection closed: PROXY protocol header incomplete in time");
            m::failure("inbound", "proxy_header");
            return;
        }
        Err(OpeningError::Quiet) => {
            // Slowloris, or a port scan: counted like a TLS handshake that never ends.
            tracing::info!(peer = %peer, transport, "SIP connection closed: nothing sent in time");
            if tls {
                tls::tls_failure("inbound", "tls_timeout");
            } else {
                m::failure("inbound", "silent");
            }
            return;
        }
        Err(e) => {
            tracing::debug!(peer = %peer, transport, reason = ?e, "SIP connection closed before its first bytes");
            return;
        }
    };
    let proxied = match &opening.header {
        None => Proxied::No,
        Some(_) if is_member(&sip, peer.ip()).await => Proxied::ByMember,
        Some(_) => Proxied::ByOutsider,
    };
    let routing = sip.routing_node();
    match plan(proxied, relay, sip.node_id, routing) {
        Plan::Refuse => {
            tracing::warn!(peer = %peer, transport, claimed = ?opening.header.as_ref().and_then(|h| h.source()),
                "SIP connection refused: PROXY protocol header from a source that is not a cluster member");
            m::failure("inbound", "proxy_not_member");
            return;
        }
        Plan::Relay(node) => match connect(&sip, node, &tcp).await {
            Ok((up, to)) => {
                relay_to(tcp, opening.rest, peer, up, to, node, transport).await;
                return;
            }
            Err(e) => {
                tracing::warn!(peer = %peer, transport, routing_node = node, error = %e,
                    "SIP connection not relayed: the routing node is unreachable, answered here");
                m::failure("inbound", "relay_connect");
            }
        },
        Plan::Serve => {}
    }
    let real = match (proxied, opening.header.as_ref().and_then(|h| h.source())) {
        (Proxied::ByMember, Some(src)) => {
            tracing::info!(peer = %src, relay = %peer, transport, "SIP connection relayed by a cluster member");
            src
        }
        _ => peer,
    };
    let stream = Prefixed::new(opening.rest, tcp);
    if tls {
        tls::serve(sip, stream, real).await;
    } else {
        inbound::serve(sip, stream, real, "tcp", None).await;
    }
}

/// The first bytes of a connection: its PROXY header, if any, and the bytes read after it.
#[derive(Debug)]
pub struct Opening {
    pub header: Option<proxy_v2::Header>,
    pub rest: Vec<u8>,
}

/// Why no [`Opening`] was read.
#[derive(Debug)]
pub enum OpeningError {
    /// Closed (or failed) before anything decided.
    Closed,
    /// Nothing came within the first wait.
    Quiet,
    /// A header started and did not end within [`HEADER_TIMEOUT`].
    Late,
    /// A malformed or oversized header.
    Header(proxy_v2::Error),
}

/// Reads until the first bytes are known to be, or not to be, a PROXY v2 header: waits
/// `first_wait` for the first byte, then [`HEADER_TIMEOUT`] for the rest. Bytes that only
/// began like the signature (a CRLF keep-alive) and then stopped are not a header.
pub async fn read_opening<S: AsyncRead + Unpin>(
    conn: &mut S,
    first_wait: Duration,
) -> Result<Opening, OpeningError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let mut deadline: Option<Instant> = None;
    loop {
        match proxy_v2::decode(&buf).map_err(OpeningError::Header)? {
            Decoded::NotProxy => {
                return Ok(Opening {
                    header: None,
                    rest: buf,
                })
            }
            Decoded::Header { header, len } => {
                buf.drain(..len);
                return Ok(Opening {
                    header: Some(header),
                    rest: buf,
                });
            }
            Decoded::Incomplete => {}
        }
        let wait = deadline.map_or(first_wait, |d| d.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(wait, conn.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(OpeningError::Closed),
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                deadline.get_or_insert_with(|| Instant::now() + HEADER_TIMEOUT);
            }
            Err(_) if buf.is_empty() => return Err(OpeningError::Quiet),
            Err(_) if buf.len() < proxy_v2::SIGNATURE.len() => {
                return Ok(Opening {
                    header: None,
                    rest: buf,
                })
            }
            Err(_) => return Err(OpeningError::Late),
        }
    }
}

/// Whether `ip` is a member's cluster address written as an address (no lookup).
pub fn is_member_address(sip: &Sip, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    sip.cluster.applied().state.nodes().iter().any(|n| {
        host_of(&n.cluster_address)
            .parse::<IpAddr>()
            .is_ok_and(|a| a.to_canonical() == ip)
    })
}

/// Whether `ip` is the address of a cluster member (its cluster address, resolved when it is
/// a name).
async fn is_member(sip: &Sip, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    for n in sip.cluster.applied().state.nodes() {
        let host = host_of(&n.cluster_address);
        if let Ok(a) = host.parse::<IpAddr>() {
            if a.to_canonical() == ip {
                return true;
            }
            continue;
        }
        if let Ok(Ok(addrs)) =
            tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, 0))).await
        {
            if addrs.into_iter().any(|a| a.ip().to_canonical() == ip) {
                return true;
            }
        }
    }
    false
}

/// Connects to the routing node `node`'s listener of the port `client` came in on, from the
/// address `client` reached us on (when the families and scopes agree).
async fn connect(
    sip: &Sip,
    node: u64,
    client: &TcpStream,
) -> Result<(TcpStream, SocketAddr), String> {
    let local = client.local_addr().map_err(|e| e.to_string())?;
    let info = sip
        .cluster
        .applied()
        .state
        .nodes()
        .into_iter()
        .find(|n| n.node_id == node)
        .ok_or_else(|| format!("node {node} is not a member"))?;
    let host = host_of(&info.cluster_address).to_string();
    let attempt = async {
        let mut last = format!("{host} resolves to no address");
        for to in tokio::net::lookup_host((host.as_str(), local.port()))
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
        {
            let sock = if to.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(|e| e.to_string())?;
            let from = local.ip().to_canonical();
            if from.is_ipv4() == to.is_ipv4() && from.is_loopback() == to.ip().is_loopback() {
                if let Err(e) = sock.bind(SocketAddr::new(from, 0)) {
                    last = format!("binding {from}: {e}");
                    continue;
                }
            }
            match sock.connect(to).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok((s, to));
                }
                Err(e) => last = format!("{to}: {e}"),
            }
        }
        Err(last)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("{host}:{} did not answer in time", local.port()))?
}

/// Relays `client` (whose first bytes `rest` were read already) to `up`, the routing node.
async fn relay_to(
    client: TcpStream,
    rest: Vec<u8>,
    peer: SocketAddr,
    mut up: TcpStream,
    to: SocketAddr,
    node: u64,
    transport: &'static str,
) {
    let local = client.local_addr().unwrap_or(peer);
    let mut head = proxy_v2::encode(peer, local);
    head.extend_from_slice(&rest);
    if let Err(e) = up.write_all(&head).await {
        tracing::warn!(peer = %peer, routing_node = node, to = %to, error = %e, "SIP relay to the routing node failed at once");
        m::failure("inbound", "relay_connect");
        return;
    }
    ::metrics::counter!(m::RELAYED, "transport" => transport).increment(1);
    ::metrics::gauge!(m::RELAYS, "transport" => transport).increment(1.0);
    tracing::info!(peer = %peer, routing_node = node, to = %to, transport, "SIP connection relayed to the routing node");
    let why = pipe(client, up, inbound::IDLE).await;
    ::metrics::gauge!(m::RELAYS, "transport" => transport).decrement(1.0);
    tracing::debug!(peer = %peer, routing_node = node, reason = why, "SIP relay closed");
}

/// Copies both ways until both sides closed (each end passed on to the other side), either
/// failed, or `idle` passed without a byte either way; then drops (closes) both.
pub async fn pipe<A, B>(a: A, b: B, idle: Duration) -> &'static str
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let both = async {
        tokio::try_join!(
            copy(&mut ar, &mut bw, &last, start),
            copy(&mut br, &mut aw, &last, start)
        )
    };
    let watch = async {
        loop {
            let quiet_since = start + Duration::from_millis(last.load(Ordering::Relaxed));
            let deadline = quiet_since + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        r = both => if r.is_ok() { "closed" } else { "failed" },
        _ = watch => "idle",
    }
}

async fn copy<R, W>(r: &mut R, w: &mut W, last: &AtomicU64, start: Instant) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            let _ = w.shutdown().await;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        last.store(ms, Ordering::Relaxed);
    }
}

/// A stream whose first bytes were read already: they are read again first.
pub struct Prefixed<S> {
    head: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(head: Vec<u8>, inner: S) -> Self {
        Prefixed {
            head,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.head.len() {
            let n = (this.head.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.head.len() {
                this.head = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_per_case() {
        use Plan::*;
        use Proxied::*;
        let rows: &[(Proxied, bool, Option<u64>, Plan)] = &[
            // Not the routing node: relay (when on) to the node in office.
            (No, true, Some(2), Relay(2)),
            (No, false, Some(2), Serve),
            // The routing node, or none live: serve (none: 503).
            (No, true, Some(1), Serve),
            (No, true, None, Serve),
            // Relayed by a member: served here whatever the role (one hop at most).
            (ByMember, true, Some(1), Serve),
            (ByMember, true, Some(3), Serve),
            (ByMember, false, Some(3), Serve),
            // A header from outside is never trusted.
            (ByOutsider, true, Some(1), Refuse),
            (ByOutsider, true, Some(2), Refuse),
            (ByOutsider, false, None, Refuse),
        ];
        for (proxied, relay, routing, want) in rows {
            assert_eq!(
                plan(*proxied, *relay, 1, *routing),
                *want,
                "{proxied:?} relay={relay} routing={routing:?}"
            );
        }
    }

    #[test]
    fn host_of_addresses() {
        for (addr, host) in [
            ("10.0.0.1:7470", "10.0.0.1"),
            ("herald-0.herald.ns.svc:7470", "herald-0.herald.ns.svc"),
            ("[2001:db8::1]:7470", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("2001:db8:0:0:0:0:0:1", "2001:db8:0:0:0:0:0:1"),
            ("node1", "node1"),
        ] {
            assert_eq!(host_of(addr), host, "{addr}");
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn opening_with_a_header_then_sip() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let mut bytes = proxy_v2::encode(sa("192.0.2.9:4000"), sa("10.0.0.2:5060"));
        bytes.extend_from_slice(b"OPTIONS sip:x SIP/2.0\r\n");
        // Split across writes: the reader waits for the whole header.
        a.write_all(&bytes[..7]).await.unwrap();
        let rest = bytes[7..].to_vec();
        let w = tokio::spawn(async move {
            tokio::task::yield_now().await;
            a.write_all(&rest).await.unwrap();
            a
        });
        let o = read_opening(&mut b, Duration::from_secs(5)).await.unwrap();
        assert_eq!(o.header.unwrap().source(), Some(sa("192.0.2.9:4000")));
        assert!(o.rest.starts_with(b"OPTIONS"), "{:?}", o.rest);
        drop(w.await);
    }

    #[tokio::test]
    async fn opening_without_a_header_keeps_every_byte() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(b"MESSAGE sip:x SIP/2.0\r\n").await.unwrap();
        let o = read_opening(&mut b, Duration::from_secs(5)).await.unwrap();
        assert!(o.header.is_none());
        assert_eq!(o.rest, b"MESSAGE sip:x SIP/2.0\r\n");
        // The bytes are read again through Prefixed, then the stream goes on.
        a.write_all(b"more").await.unwrap();
        drop(a);
        let mut p = Prefixed::new(o.rest, b);
        let mut all = Vec::new();
        p.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"MESSAGE sip:x SIP/2.0\r\nmore");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_keepalive_is_not_a_header_and_silence_is_quiet() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(b"\r\n\r\n").await.unwrap();
        let o = read_opening(&mut b, Duration::from_secs(5)).await.unwrap();
        assert!(o.header.is_none());
        assert_eq!(o.rest, b"\r\n\r\n");

        let (_a, mut b) = tokio::io::duplex(4096);
        let e = read_opening(&mut b, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, OpeningError::Quiet), "{e:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_cut_short_is_late_and_a_bad_one_refused() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let bytes = proxy_v2::encode(sa("192.0.2.9:4000"), sa("10.0.0.2:5060"));
        a.write_all(&bytes[..14]).await.unwrap();
        let e = read_opening(&mut b, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, OpeningError::Late), "{e:?}");

        let (mut a, mut b) = tokio::io::duplex(4096);
        let mut bad = bytes.clone();
        bad[14..16].copy_from_slice(&1000u16.to_be_bytes());
        a.write_all(&bad).await.unwrap();
        let e = read_opening(&mut b, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(e, OpeningError::Header(proxy_v2::Error::TooLong(_))),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn pipe_carries_both_ways_and_passes_the_end_on() {
        let (mut client, relay_a) = tokio::io::duplex(64);
        let (relay_b, mut server) = tokio::io::duplex(64);
        let p = tokio::spawn(pipe(relay_a, relay_b, Duration::from_secs(60)));
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        server.write_all(b"pong").await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        // The client ends: the server sees the end, answers last words, ends too.
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        server.write_all(b"bye").await.unwrap();
        drop(server);
        let mut tail = Vec::new();
        client.read_to_end(&mut tail).await.unwrap();
        assert_eq!(tail, b"bye");
        assert_eq!(p.await.unwrap(), "closed");
    }

    #[tokio::test(start_paused = true)]
    async fn pipe_closes_both_sides_when_idle() {
        let (mut client, relay_a) = tokio::io::duplex(64);
        let (relay_b, mut server) = tokio::io::duplex(64);
        let p = tokio::spawn(pipe(relay_a, relay_b, Duration::from_secs(300)));
        client.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        server.read_exact(&mut one).await.unwrap();
        tokio::time::sleep(Duration::from_secs(200)).await;
        client.write_all(b"y").await.unwrap();
        server.read_exact(&mut one).await.unwrap();
        // Activity moved the deadline: still open 200 s later, closed after 300 s quiet.
        tokio::time::sleep(Duration::from_secs(200)).await;
        assert!(!p.is_finished());
        assert_eq!(p.await.unwrap(), "idle");
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
    }
}
