//! A TCP stream that keeps the kernel's receive time of the bytes it last read
//! (`SO_TIMESTAMPNS`, CLOCK_REALTIME), so that a latency sample is stamped when the data
//! reached this host, not when the generator's event loop got round to reading it: with a
//! thousand deliveries arriving in one burst, a read-time stamp charges the generator's own lag
//! to the server (issue "Presence fan-out at company scale").
//!
//! Reads go through `recvmsg` with a control buffer; writes are the plain TcpStream's.

use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Microseconds since the Unix epoch, now (the clock the kernel stamps with).
pub fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Kernel receive time of the latest stamped bytes read, µs since the Unix epoch (0: none yet).
/// Shared between the stream and whoever reads its stanzas. (The kernel enables stamping
/// host-wide lazily: the very first segments after the first socket asks can come unstamped,
/// which the logins absorb before anything is measured.)
#[derive(Clone, Default)]
pub struct RxStamp(Arc<AtomicU64>);

impl RxStamp {
    /// The last kernel receive time, µs since the epoch; `None` before the first stamped read.
    pub fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }
}

/// A TcpStream whose reads record the kernel receive time.
pub struct StampedTcp {
    tcp: TcpStream,
    stamp: RxStamp,
    /// Kernel stamps asked for and granted (false: reads are plain, `stamp` stays empty).
    on: bool,
}

impl StampedTcp {
    /// Wraps `tcp`, asking the kernel for receive timestamps. If the socket refuses, reads
    /// still work and [`RxStamp::get`] stays `None` (callers fall back to read time).
    pub fn new(tcp: TcpStream) -> Self {
        let on = socket::setsockopt(&tcp, sockopt::ReceiveTimestampns, &true).is_ok();
        StampedTcp {
            tcp,
            stamp: RxStamp::default(),
            on,
        }
    }

    pub fn stamp(&self) -> RxStamp {
        self.stamp.clone()
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut iov = [IoSliceMut::new(buf)];
        let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let msg = socket::recvmsg::<()>(
            self.tcp.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .map_err(io::Error::from)?;
        let n = msg.bytes;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(ts) = c {
                    let us = (ts.tv_sec() as u64) * 1_000_000 + (ts.tv_nsec() as u64) / 1_000;
                    self.stamp.0.store(us.max(1), Ordering::Relaxed);
                }
            }
        }
        Ok(n)
    }
}

impl AsyncRead for StampedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.on {
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
        }
        loop {
            ready!(this.tcp.poll_read_ready(cx))?;
            let dst = buf.initialize_unfilled();
            match this.tcp.try_io(Interest::READABLE, || this.recv(dst)) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for StampedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_carry_the_kernel_receive_time() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), l.accept());
        let mut rx = StampedTcp::new(client.unwrap());
        let (mut tx, _) = server.unwrap();
        let stamp = rx.stamp();
        assert_eq!(stamp.get(), None);
        // The kernel turns receive timestamps on host-wide with deferred work when the first
        // socket asks, so the first segments may still arrive unstamped: send until one is
        // stamped (bounded), as the loadgen's logins do long before anything is measured.
        let mut buf = [0u8; 16];
        for _ in 0..100 {
            tx.write_all(b"x").await.unwrap();
            let n = rx.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"x");
            if stamp.get().is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            stamp.get().is_some(),
            "no kernel receive stamp within 100 tries"
        );
        let before = wall_us();
        tx.write_all(b"hello").await.unwrap();
        // Arrived, then read well after: the stamp is the arrival, not the read.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let n = rx.read(&mut buf).await.unwrap();
        let read_at = wall_us();
        assert_eq!(&buf[..n], b"hello");
        let at = stamp.get().expect("kernel stamp");
        assert!(at >= before.saturating_sub(1000), "{at} vs {before}");
        assert!(
            read_at - at >= 40_000,
            "stamped at arrival: {}",
            read_at - at
        );
        // Writes pass through.
        rx.write_all(b"back").await.unwrap();
        let n = tx.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"back");
    }
}
