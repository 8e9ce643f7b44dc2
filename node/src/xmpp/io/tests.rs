//! Tests of the client connection's socket side: the output queue, the TLS driver over split
//! records, and the size of an idle connection's task.

use super::*;

/// An idle connection's task is tokio's task cell around `run`'s future: the future plus
/// 96 bytes, rounded up to 128 (the cell's alignment). Up to 1,440 bytes of future that is
/// one 1,536-byte block of the allocator; a few bytes more and every connection pays for
/// the next size class (mimalloc's: 1,792, then 2,048). It was 1,976 bytes (a 2,560-byte
/// block) before the connection was stored once and the rare parts boxed: bench/README.md,
/// "Fixes and their effect".
#[test]
fn an_idle_connection_task_stays_in_its_size_class() {
    fn future_size<A, B, C, D, E, F, R>(_: fn(A, B, C, D, E, F) -> R) -> usize {
        std::mem::size_of::<R>()
    }
    let n = future_size(run::<Box<()>>);
    assert!(
        n <= 1440,
        "a connection's future is {n} bytes: more than 1,440 puts every connection's task \
         into a larger allocation"
    );
}

#[test]
fn queue_limits_bytes_but_not_control_items() {
    let (tx, rx) = out_queue(10);
    assert!(tx.try_send(Out::Bytes(vec![0; 6])).is_ok());
    assert!(tx.try_send(Out::Bytes(vec![0; 5])).is_err());
    assert!(tx.try_send(Out::Close).is_ok());
    assert!(matches!(rx.pop(), Some(Out::Bytes(b)) if b.len() == 6));
    assert!(tx.try_send(Out::Bytes(vec![0; 10])).is_ok());
    assert!(matches!(rx.pop(), Some(Out::Close)));
    assert!(rx.pop_bytes(9).is_none(), "does not fit");
    assert!(rx.pop_bytes(10).is_some());
    assert!(rx.pop().is_none());
}

#[test]
fn receiver_ends_when_session_is_gone_and_queue_drained() {
    let (tx, rx) = out_queue(100);
    tx.try_send(Out::Bytes(b"x".to_vec())).unwrap();
    drop(tx);
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(matches!(
        rx.poll_next(&mut cx),
        Poll::Ready(Some(Out::Bytes(_)))
    ));
    assert!(matches!(rx.poll_next(&mut cx), Poll::Ready(None)));
}

#[test]
fn append_with_grows_to_the_size_asked() {
    let mut wire = b"ab".to_vec();
    append_with(&mut wire, 1, |buf| {
        if buf.len() < 3 {
            Err(Some(3))
        } else {
            buf[..3].copy_from_slice(b"cde");
            Ok(3)
        }
    })
    .unwrap();
    assert_eq!(wire, b"abcde");
    assert!(append_with(&mut wire, 1, |_| Err(None)).is_err());
    assert_eq!(wire, b"abcde", "failure leaves the buffer as it was");
}

/// Bytes that are not a TLS record (`decode_error`), or a ClientHello the server cannot
/// accept: `drive` fails and the bytes for the peer hold the fatal alert (RFC 8446 §6.2).
#[test]
fn a_failed_handshake_answers_with_a_fatal_alert() {
    let (_dir, _c, mut s) = tls_pair();
    let mut garbage = b"this is not a TLS client hello\r\n\r\n".to_vec();
    let (mut plain, mut wire) = (Vec::new(), Vec::new());
    let err = drive(&mut s, &mut garbage, &mut plain, &mut wire, None, false)
        .expect_err("garbage is refused");
    assert!(matches!(err, rustls::Error::InvalidMessage(_)), "{err:?}");
    // Plaintext alert record: type 21, version, length 2, level fatal (2), description.
    assert_eq!(wire.len(), 7, "one alert record: {wire:?}");
    assert_eq!(
        (wire[0], wire[3], wire[4], wire[5]),
        (21, 0, 2, 2),
        "{wire:?}"
    );
    assert_eq!(wire[6], 50, "decode_error: {wire:?}");

    // A well-formed ClientHello offering only TLS 1.0: handshake_failure (40) or
    // protocol_version (70).
    let (_dir, _c, mut s) = tls_pair();
    let mut hello = tls10_client_hello();
    let mut wire = Vec::new();
    drive(&mut s, &mut hello, &mut plain, &mut wire, None, false).expect_err("TLS 1.0 is refused");
    assert_eq!(
        (wire.len(), wire[0], wire[5]),
        (7, 21, 2),
        "a fatal alert: {wire:?}"
    );
    assert!(matches!(wire[6], 40 | 70), "handshake_failure: {wire:?}");
}

/// A minimal TLS 1.0 ClientHello (no extensions, one cipher suite).
fn tls10_client_hello() -> Vec<u8> {
    let mut body = vec![3, 1]; // client_version TLS 1.0
    body.extend_from_slice(&[7; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0, 2, 0x00, 0x2f]); // TLS_RSA_WITH_AES_128_CBC_SHA
    body.extend_from_slice(&[1, 0]); // null compression
    let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend_from_slice(&hs);
    rec
}

/// A development-certificate server config and a client trusting it.
fn tls_pair() -> (
    tempfile::TempDir,
    rustls::ClientConnection,
    UnbufferedServerConnection,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = crate::config::NodeConfig::for_test(
        1,
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        dir.path().to_path_buf(),
    );
    cfg.domains = vec!["example.test".into()];
    let m = crate::tls::load_or_generate(&cfg).expect("dev certificate");
    let server = crate::tls::server_config(&m).expect("server config");
    let ca = m.ca_pem_path.clone().expect("dev CA");
    let client = crate::tls::client_config_trusting(&ca).expect("client config");
    let name = rustls::pki_types::ServerName::try_from("example.test").expect("name");
    let c = rustls::ClientConnection::new(client, name).expect("client");
    let s = UnbufferedServerConnection::new(server).expect("server");
    (dir, c, s)
}

/// Client to server: everything the client has to send, fed to `drive` in pieces of
/// `chunk` bytes (records split anywhere); what the server answers goes to `wire`.
fn client_to_server(
    c: &mut rustls::ClientConnection,
    s: &mut UnbufferedServerConnection,
    chunk: usize,
    plain: &mut Vec<u8>,
    wire: &mut Vec<u8>,
) -> bool {
    let mut bytes = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut bytes).expect("client write_tls");
    }
    let mut pending = Vec::new();
    let mut peer_closed = false;
    for piece in bytes.chunks(chunk) {
        pending.extend_from_slice(piece);
        let d = drive(s, &mut pending, plain, wire, None, false).expect("drive");
        pending.drain(..d.used);
        peer_closed |= d.peer_closed;
    }
    assert!(
        pending.is_empty(),
        "a whole flight leaves no partial record"
    );
    peer_closed
}

/// Server to client: `wire` into the client; returns the plaintext it got.
fn server_to_client(c: &mut rustls::ClientConnection, wire: &mut Vec<u8>) -> Vec<u8> {
    let mut rd = &wire[..];
    let mut got = Vec::new();
    while !rd.is_empty() {
        c.read_tls(&mut rd).expect("client read_tls");
        c.process_new_packets().expect("client processes records");
        // Take the plaintext as it comes (the client buffers only so much).
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut c.reader(), &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }
    wire.clear();
    got
}

#[test]
fn drive_runs_handshake_data_and_close_over_split_records() {
    let (_dir, mut c, mut s) = tls_pair();
    let (mut plain, mut wire) = (Vec::new(), Vec::new());
    // Nothing may be encrypted before the handshake: the caller keeps it.
    let d = drive(
        &mut s,
        &mut [],
        &mut plain,
        &mut wire,
        Some(b"early"),
        false,
    )
    .expect("drive");
    assert!(d.unsent && wire.is_empty());
    for _ in 0..10 {
        if !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
        client_to_server(&mut c, &mut s, 7, &mut plain, &mut wire);
        server_to_client(&mut c, &mut wire);
    }
    assert!(
        !c.is_handshaking() && !s.is_handshaking(),
        "handshake completed"
    );
    assert!(plain.is_empty());

    // Client to server: more than three records, fed 1,000 bytes at a time.
    let up: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    std::io::Write::write_all(&mut c.writer(), &up).expect("client write");
    client_to_server(&mut c, &mut s, 1000, &mut plain, &mut wire);
    assert_eq!(plain, up);

    // Server to client: one call, several records, then close_notify.
    let down: Vec<u8> = (0..40_000u32).map(|i| (i % 241) as u8).collect();
    let d = drive(&mut s, &mut [], &mut plain, &mut wire, Some(&down), true).expect("drive");
    assert!(!d.unsent);
    assert_eq!(server_to_client(&mut c, &mut wire), down);
    let mut rest = Vec::new();
    assert_eq!(
        std::io::Read::read_to_end(&mut c.reader(), &mut rest).ok(),
        Some(0),
        "the client saw close_notify (clean EOF)"
    );

    // The client's close_notify is reported.
    c.send_close_notify();
    assert!(client_to_server(&mut c, &mut s, 3, &mut plain, &mut wire));
}

#[test]
fn drive_rejects_garbage_instead_of_a_client_hello() {
    let (_dir, _c, mut s) = tls_pair();
    let mut junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let (mut plain, mut wire) = (Vec::new(), Vec::new());
    assert!(drive(&mut s, &mut junk, &mut plain, &mut wire, None, false).is_err());
}
