//! Slowloris on the operator listeners: a connection that sends nothing (admin and node-to-node
//! gRPC) or stops half-way through an HTTP request is closed by the node — after 30 s on HTTP,
//! 60 s on gRPC (`node/src/idle.rs`) — while the node keeps serving everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Result;
use herald_tests::{Mode, Sandbox};

/// Reads until the server closes the connection; how long that took (None: still open at
/// `bound`).
fn time_to_close(mut s: TcpStream, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut buf = [0u8; 512];
    while start.elapsed() < bound {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {} // e.g. an HTTP/2 settings frame or keepalive ping: not a close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()), // reset
        }
    }
    None
}

#[test]
fn silent_and_half_sent_connections_are_closed() -> Result<()> {
    let mut sb = Sandbox::new();
    sb.start_ready(1, Mode::Bootstrap)?;

    let mut http = TcpStream::connect(sb.http_addr(1))?;
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: herald\r\n")?; // never finished
    let admin = TcpStream::connect(sb.admin_addr(1))?;
    let cluster = TcpStream::connect(sb.cluster_addr(1))?;

    let bound = Duration::from_secs(90);
    let waits: Vec<_> = [("http", http), ("admin", admin), ("cluster", cluster)]
        .into_iter()
        .map(|(name, s)| (name, std::thread::spawn(move || time_to_close(s, bound))))
        .collect();

    // Meanwhile the node serves everyone else.
    std::thread::sleep(Duration::from_secs(5));
    sb.status(1)?;
    let (code, _) = sb.http_get(1, "/healthz")?;
    assert_eq!(code, 200);

    for (name, w) in waits {
        let took = w
            .join()
            .map_err(|_| anyhow::anyhow!("{name}: reader panicked"))?;
        let (min, max) = if name == "http" { (25, 45) } else { (55, 80) };
        match took {
            Some(t) => assert!(
                (min..=max).contains(&t.as_secs()),
                "{name}: closed after {t:?}, expected {min}-{max} s"
            ),
            None => panic!("{name}: still open after {bound:?}"),
        }
    }
    sb.status(1)?;
    Ok(())
}
