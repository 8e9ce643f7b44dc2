//! PROXY protocol version 2 (HAProxy, "The PROXY protocol", section 2.2), the binary header a
//! relaying node writes before the bytes of a SIP connection it hands to the routing node, so
//! that the routing node judges (ACL, logs) the real peer rather than the relay.
//!
//! Sans-io: [`encode`] builds a header, [`decode`] reads one from the first bytes of a
//! connection, answering [`Decoded::NotProxy`] as soon as the bytes cannot start a header (SIP
//! text and TLS records can never), [`Decoded::Incomplete`] while more bytes are needed, and
//! refusing headers longer than [`MAX_HEADER`]. Only what a TCP relay needs is kept: the `PROXY`
//! command over TCP/IPv4 or TCP/IPv6 gives the addresses; `LOCAL` (and `UNSPEC` families) give
//! none; TLVs are skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12-byte signature every version 2 header starts with.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Signature, version/command, family/protocol and the 2-byte length.
pub const FIXED: usize = 16;
/// Longest header accepted, fixed part included (the spec's recommended receive buffer).
pub const MAX_HEADER: usize = 536;

const VERSION_2: u8 = 0x20;
const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;
const AF_UNSPEC: u8 = 0x0;
const AF_INET: u8 = 0x1;
const AF_INET6: u8 = 0x2;
const AF_UNIX: u8 = 0x3;
const STREAM: u8 = 0x1;
const INET_LEN: usize = 12;
const INET6_LEN: usize = 36;

/// A decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `(source, destination)` of the proxied connection; `None` for `LOCAL` (health checks,
    /// the relay's own connection) and address families without IP addresses.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

impl Header {
    /// The proxied connection's source: the real peer.
    pub fn source(&self) -> Option<SocketAddr> {
        self.addresses.map(|(s, _)| s)
    }
}

/// What the first bytes of a connection are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Not a PROXY v2 header: the bytes belong to the protocol itself.
    NotProxy,
    /// A header may be starting: more bytes are needed.
    Incomplete,
    /// A header of `len` bytes (the protocol's bytes follow it).
    Header { header: Header, len: usize },
}

/// A header that starts right (signature) and is wrong after that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("PROXY protocol version {0:#x} (only version 2 is read)")]
    Version(u8),
    #[error("PROXY command {0:#x} unknown")]
    Command(u8),
    #[error("PROXY header of {0} bytes (at most {MAX_HEADER})")]
    TooLong(usize),
    #[error("PROXY header for a transport other than TCP (family/protocol {0:#04x})")]
    NotStream(u8),
    #[error("PROXY address block of {len} bytes is too short for family/protocol {family:#04x}")]
    ShortAddresses { family: u8, len: usize },
    #[error("PROXY address family {0:#x} unknown")]
    Family(u8),
}

/// Reads a header from the start of `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded, Error> {
    let sig = buf.len().min(SIGNATURE.len());
    if buf[..sig] != SIGNATURE[..sig] {
        return Ok(Decoded::NotProxy);
    }
    if buf.len() < FIXED {
        return Ok(Decoded::Incomplete);
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    if ver_cmd & 0xF0 != VERSION_2 {
        return Err(Error::Version(ver_cmd >> 4));
    }
    let len = FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > MAX_HEADER {
        return Err(Error::TooLong(len));
    }
    let command = ver_cmd & 0x0F;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return Err(Error::Command(command));
    }
    if buf.len() < len {
        return Ok(Decoded::Incomplete);
    }
    let block = &buf[FIXED..len];
    let addresses = if command == CMD_LOCAL {
        None
    } else {
        match fam >> 4 {
            AF_UNSPEC | AF_UNIX => None,
            AF_INET | AF_INET6 if fam & 0x0F != STREAM => return Err(Error::NotStream(fam)),
            AF_INET => {
                let b = block.get(..INET_LEN).ok_or(Error::ShortAddresses {
                    family: fam,
                    len: block.len(),
                })?;
                let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]));
                let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
                Some((
                    SocketAddr::new(ip(0), port(8)),
                    SocketAddr::new(ip(4), port(10)),
                ))
            }
            AF_INET6 => {
                let b = block.get(..INET6_LEN).ok_or(Error::ShortAddresses {
                    family: fam,
                    len: block.len(),
                })?;
                let ip = |o: usize| {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&b[o..o + 16]);
                    IpAddr::V6(Ipv6Addr::from(a)).to_canonical()
                };
                let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
                Some((
                    SocketAddr::new(ip(0), port(32)),
                    SocketAddr::new(ip(16), port(34)),
                ))
            }
            other => return Err(Error::Family(other)),
        }
    };
    Ok(Decoded::Header {
        header: Header { addresses },
        len,
    })
}

/// The header of a TCP connection from `source` to `destination` (`PROXY` command, no TLVs).
/// Two addresses of different families are both written as IPv6 (IPv4-mapped).
pub fn encode(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED + INET6_LEN);
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_2 | CMD_PROXY);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(AF_INET << 4 | STREAM);
            out.extend_from_slice(&(INET_LEN as u16).to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            out.push(AF_INET6 << 4 | STREAM);
            out.extend_from_slice(&(INET6_LEN as u16).to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn header(buf: &[u8]) -> (Header, usize) {
        match decode(buf) {
            Ok(Decoded::Header { header, len }) => (header, len),
            other => panic!("expected a header, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_ipv4_and_ipv6() {
        for (src, dst, len) in [
            ("192.0.2.7:40312", "10.1.2.3:5061", FIXED + INET_LEN),
            (
                "[2001:db8::7]:40312",
                "[2001:db8::1]:5060",
                FIXED + INET6_LEN,
            ),
        ] {
            let bytes = encode(sa(src), sa(dst));
            assert_eq!(bytes.len(), len);
            let (h, n) = header(&bytes);
            assert_eq!(n, len);
            assert_eq!(h.addresses, Some((sa(src), sa(dst))));
            assert_eq!(h.source(), Some(sa(src)));
        }
    }

    #[test]
    fn the_spec_example_bytes() {
        // TCP over IPv4, 127.0.0.1:56324 -> 127.0.0.1:443, as HAProxy writes it.
        let bytes = [
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11,
            0x00, 0x0C, 127, 0, 0, 1, 127, 0, 0, 1, 0xDC, 0x04, 0x01, 0xBB,
        ];
        assert_eq!(encode(sa("127.0.0.1:56324"), sa("127.0.0.1:443")), bytes);
    }

    #[test]
    fn mixed_families_are_written_as_mapped_ipv6_and_read_back_as_ipv4() {
        let bytes = encode(sa("192.0.2.7:1000"), sa("[2001:db8::1]:5060"));
        assert_eq!(bytes[13], 0x21);
        let (h, _) = header(&bytes);
        assert_eq!(
            h.addresses,
            Some((sa("192.0.2.7:1000"), sa("[2001:db8::1]:5060")))
        );
    }

    #[test]
    fn what_follows_the_header_is_left_alone() {
        let mut bytes = encode(sa("192.0.2.7:1000"), sa("10.0.0.1:5060"));
        let n = bytes.len();
        bytes.extend_from_slice(b"OPTIONS sip:a@b SIP/2.0\r\n");
        let (_, len) = header(&bytes);
        assert_eq!(len, n);
        assert_eq!(&bytes[len..len + 7], b"OPTIONS");
    }

    #[test]
    fn truncated_anywhere_is_incomplete() {
        let bytes = encode(sa("[2001:db8::7]:1"), sa("[2001:db8::1]:2"));
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut]),
                Ok(Decoded::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn sip_tls_and_keepalives_are_not_proxy() {
        assert_eq!(decode(b"OPTIONS sip:x SIP/2.0\r\n"), Ok(Decoded::NotProxy));
        assert_eq!(decode(&[0x16, 0x03, 0x01]), Ok(Decoded::NotProxy));
        // A CRLF keep-alive ping is a prefix of the signature until its next byte says not.
        assert_eq!(decode(b"\r\n\r\n"), Ok(Decoded::Incomplete));
        assert_eq!(decode(b"\r\n\r\nOPTIONS"), Ok(Decoded::NotProxy));
        // PROXY protocol version 1 (text) is not read.
        assert_eq!(
            decode(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            Ok(Decoded::NotProxy)
        );
    }

    #[test]
    fn bad_signature_tail_is_not_proxy() {
        let mut bytes = encode(sa("192.0.2.7:1000"), sa("10.0.0.1:5060"));
        bytes[11] = b'X';
        assert_eq!(decode(&bytes), Ok(Decoded::NotProxy));
    }

    #[test]
    fn oversized_is_refused_before_it_is_read() {
        let mut bytes = SIGNATURE.to_vec();
        bytes.extend_from_slice(&[0x21, 0x11]);
        let declared = (MAX_HEADER - FIXED + 1) as u16;
        bytes.extend_from_slice(&declared.to_be_bytes());
        assert_eq!(decode(&bytes), Err(Error::TooLong(MAX_HEADER + 1)));
        // The largest allowed size is read (TLVs skipped).
        let mut ok = encode(sa("192.0.2.7:1000"), sa("10.0.0.1:5060"));
        let extra = MAX_HEADER - ok.len();
        ok[14..16].copy_from_slice(&((MAX_HEADER - FIXED) as u16).to_be_bytes());
        ok.resize(ok.len() + extra, 0);
        let (h, len) = header(&ok);
        assert_eq!(len, MAX_HEADER);
        assert_eq!(h.source(), Some(sa("192.0.2.7:1000")));
    }

    #[test]
    fn wrong_fields_are_errors() {
        let good = encode(sa("192.0.2.7:1000"), sa("10.0.0.1:5060"));
        let with = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            decode(&b)
        };
        assert_eq!(with(12, 0x11), Err(Error::Version(1)));
        assert_eq!(with(12, 0x2F), Err(Error::Command(0xF)));
        assert_eq!(with(13, 0x12), Err(Error::NotStream(0x12)));
        assert_eq!(with(13, 0x41), Err(Error::Family(4)));
        // An IPv6 family with an IPv4-sized block.
        assert_eq!(
            with(13, 0x21),
            Err(Error::ShortAddresses {
                family: 0x21,
                len: INET_LEN
            })
        );
    }

    #[test]
    fn local_and_unspec_carry_no_address() {
        let mut local = SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(header(&local), (Header { addresses: None }, FIXED));
        // LOCAL with an address block: the block is skipped, not used.
        let mut b = encode(sa("192.0.2.7:1000"), sa("10.0.0.1:5060"));
        b[12] = 0x20;
        assert_eq!(header(&b).0.source(), None);
        let mut unspec = SIGNATURE.to_vec();
        unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
        assert_eq!(header(&unspec).0.source(), None);
    }
}
