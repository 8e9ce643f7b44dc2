//! NTLM client messages (MS-NLMP) for HTTP authentication, sans I/O: the NEGOTIATE message,
//! reading the server's CHALLENGE, and the AUTHENTICATE message with an **NTLMv2** response.
//! NTLMv1 (and LM) responses are never computed: the seeds' NTLMv1-only limitation (CAL-14) is
//! one Herald does not copy. The client challenge and the time are arguments, so the MS-NLMP
//! §4.2.4 test vectors reproduce exactly.
//!
//! HTTP use (connection-bound, MS-NTHT): `Authorization: NTLM base64(negotiate)` → `401` with
//! `WWW-Authenticate: NTLM base64(challenge)` → `Authorization: NTLM base64(authenticate)` on
//! the same connection. No signing or sealing is negotiated (TLS protects the channel).

use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// NTLMSSP_NEGOTIATE_UNICODE.
pub const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
/// NTLMSSP_REQUEST_TARGET.
pub const REQUEST_TARGET: u32 = 0x0000_0004;
/// NTLMSSP_NEGOTIATE_NTLM (the NTLM protocol itself; the response is still NTLMv2).
pub const NEGOTIATE_NTLM: u32 = 0x0000_0200;
/// NTLMSSP_NEGOTIATE_ALWAYS_SIGN.
pub const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
/// NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY.
pub const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
/// NTLMSSP_NEGOTIATE_TARGET_INFO.
pub const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
/// NTLMSSP_NEGOTIATE_128.
pub const NEGOTIATE_128: u32 = 0x2000_0000;
/// NTLMSSP_NEGOTIATE_56.
pub const NEGOTIATE_56: u32 = 0x8000_0000;

/// The flags Herald's NEGOTIATE message asks for.
pub const CLIENT_FLAGS: u32 = NEGOTIATE_UNICODE
    | REQUEST_TARGET
    | NEGOTIATE_NTLM
    | NEGOTIATE_ALWAYS_SIGN
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_TARGET_INFO
    | NEGOTIATE_128
    | NEGOTIATE_56;

/// Largest CHALLENGE message read.
pub const MAX_CHALLENGE: usize = 16 * 1024;

/// AV pair ids (MS-NLMP §2.2.2.1).
const AV_EOL: u16 = 0;
const AV_TIMESTAMP: u16 = 7;

/// Why a CHALLENGE message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NtlmError {
    /// Not an NTLMSSP CHALLENGE_MESSAGE (signature, type or length).
    #[error("not an NTLM challenge message: {0}")]
    NotChallenge(&'static str),
    /// A field points outside the message.
    #[error("NTLM challenge field {0} out of bounds")]
    OutOfBounds(&'static str),
    /// Longer than [`MAX_CHALLENGE`].
    #[error("NTLM challenge larger than {MAX_CHALLENGE} bytes")]
    TooLarge,
    /// The server does not offer target information, which NTLMv2 needs: it wants NTLMv1.
    #[error("the server offers no NTLMv2 (no target information in its challenge)")]
    NoNtlmV2,
}

/// What the server's CHALLENGE message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// NegotiateFlags.
    pub flags: u32,
    /// ServerChallenge.
    pub server_challenge: [u8; 8],
    /// TargetInfo (AV pairs), as sent.
    pub target_info: Vec<u8>,
    /// MsvAvTimestamp from TargetInfo, if any (FILETIME).
    pub timestamp: Option<u64>,
}

/// The service account as NTLM wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name (a UPN stays whole).
    pub user: String,
    /// NetBIOS domain, empty with a UPN.
    pub domain: String,
    /// Password.
    pub password: String,
}

impl Credentials {
    /// `DOMAIN\user` → domain and user; `user@domain` (UPN) stays the user name with an
    /// empty domain, as Windows sends it (CAL-15 accepts both forms).
    pub fn from_account(account: &str, password: &str) -> Self {
        let (domain, user) = match account.split_once('\\') {
            Some((d, u)) => (d.to_owned(), u.to_owned()),
            None => (String::new(), account.to_owned()),
        };
        Credentials {
            user,
            domain,
            password: password.to_owned(),
        }
    }
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// NTOWFv2 (MS-NLMP §3.3.2): HMAC_MD5(MD4(UNICODE(password)), UNICODE(UPPER(user) + domain)).
pub fn ntowf_v2(c: &Credentials) -> [u8; 16] {
    let nt_hash: [u8; 16] = Md4::digest(utf16le(&c.password)).into();
    let who = utf16le(&format!("{}{}", c.user.to_uppercase(), c.domain));
    hmac_md5(&nt_hash, &[&who])
}

/// The NEGOTIATE_MESSAGE (no domain or workstation supplied, no version).
pub fn negotiate() -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
    // DomainNameFields and WorkstationFields: empty.
    m.extend_from_slice(&[0; 16]);
    m
}

fn field<'a>(msg: &'a [u8], at: usize, name: &'static str) -> Result<&'a [u8], NtlmError> {
    let hdr = msg.get(at..at + 8).ok_or(NtlmError::OutOfBounds(name))?;
    let len = u16::from_le_bytes([hdr[0], hdr[1]]) as usize;
    let off = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
    if len == 0 {
        return Ok(&[]);
    }
    msg.get(off..off.checked_add(len).ok_or(NtlmError::OutOfBounds(name))?)
        .ok_or(NtlmError::OutOfBounds(name))
}

/// Reads a CHALLENGE_MESSAGE (MS-NLMP §2.2.1.2).
pub fn parse_challenge(msg: &[u8]) -> Result<Challenge, NtlmError> {
    if msg.len() > MAX_CHALLENGE {
        return Err(NtlmError::TooLarge);
    }
    if msg.len() < 32 {
        return Err(NtlmError::NotChallenge("shorter than 32 bytes"));
    }
    if &msg[..8] != SIGNATURE {
        return Err(NtlmError::NotChallenge("no NTLMSSP signature"));
    }
    if u32::from_le_bytes([msg[8], msg[9], msg[10], msg[11]]) != 2 {
        return Err(NtlmError::NotChallenge("message type is not 2"));
    }
    field(msg, 12, "TargetName")?;
    let flags = u32::from_le_bytes([msg[20], msg[21], msg[22], msg[23]]);
    let mut server_challenge = [0u8; 8];
    server_challenge.copy_from_slice(&msg[24..32]);
    let target_info = if msg.len() >= 48 && flags & NEGOTIATE_TARGET_INFO != 0 {
        field(msg, 40, "TargetInfo")?.to_vec()
    } else {
        Vec::new()
    };
    if target_info.is_empty() {
        return Err(NtlmError::NoNtlmV2);
    }
    // AV pairs: id, length, value; up to MsvAvEOL.
    let mut timestamp = None;
    let mut rest = target_info.as_slice();
    loop {
        if rest.len() < 4 {
            return Err(NtlmError::OutOfBounds("TargetInfo AV pair"));
        }
        let id = u16::from_le_bytes([rest[0], rest[1]]);
        let len = u16::from_le_bytes([rest[2], rest[3]]) as usize;
        let value = rest
            .get(4..4 + len)
            .ok_or(NtlmError::OutOfBounds("TargetInfo AV pair"))?;
        if id == AV_EOL {
            break;
        }
        if id == AV_TIMESTAMP && len == 8 {
            let mut b = [0u8; 8];
            b.copy_from_slice(value);
            timestamp = Some(u64::from_le_bytes(b));
        }
        rest = &rest[4 + len..];
    }
    Ok(Challenge {
        flags,
        server_challenge,
        target_info,
        timestamp,
    })
}

/// The NTLMv2 responses of one authentication (MS-NLMP §3.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Responses {
    /// LmChallengeResponse: LMv2, or 24 zero bytes when the server sent a timestamp.
    pub lm: Vec<u8>,
    /// NtChallengeResponse: NTProofStr followed by the client's blob.
    pub nt: Vec<u8>,
    /// SessionBaseKey.
    pub session_base_key: [u8; 16],
}

/// Computes the NTLMv2 responses. `time` is a FILETIME (100 ns since 1601), used when the
/// server sent none.
pub fn v2_responses(
    creds: &Credentials,
    ch: &Challenge,
    client_challenge: [u8; 8],
    time: u64,
) -> V2Responses {
    let key = ntowf_v2(creds);
    let time = ch.timestamp.unwrap_or(time);
    let mut temp = Vec::with_capacity(32 + ch.target_info.len());
    temp.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    temp.extend_from_slice(&time.to_le_bytes());
    temp.extend_from_slice(&client_challenge);
    temp.extend_from_slice(&[0; 4]);
    temp.extend_from_slice(&ch.target_info);
    temp.extend_from_slice(&[0; 4]);
    let proof = hmac_md5(&key, &[&ch.server_challenge, &temp]);
    let mut nt = proof.to_vec();
    nt.extend_from_slice(&temp);
    let lm = if ch.timestamp.is_some() {
        vec![0; 24]
    } else {
        let mut lm = hmac_md5(&key, &[&ch.server_challenge, &client_challenge]).to_vec();
        lm.extend_from_slice(&client_challenge);
        lm
    };
    V2Responses {
        lm,
        nt,
        session_base_key: hmac_md5(&key, &[&proof]),
    }
}

/// The AUTHENTICATE_MESSAGE answering `ch` (MS-NLMP §2.2.1.3): NTLMv2 responses, Unicode
/// names, no session key exchange, no MIC.
pub fn authenticate(
    creds: &Credentials,
    ch: &Challenge,
    client_challenge: [u8; 8],
    time: u64,
    workstation: &str,
) -> Vec<u8> {
    let r = v2_responses(creds, ch, client_challenge, time);
    let flags = (CLIENT_FLAGS & ch.flags) | NEGOTIATE_UNICODE | NEGOTIATE_NTLM;
    let payloads: [Vec<u8>; 6] = [
        r.lm,
        r.nt,
        utf16le(&creds.domain),
        utf16le(&creds.user),
        utf16le(workstation),
        Vec::new(),
    ];
    let mut m = Vec::with_capacity(64 + payloads.iter().map(Vec::len).sum::<usize>());
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = 64u32;
    for p in &payloads {
        let len = p.len() as u16;
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&offset.to_le_bytes());
        offset += p.len() as u32;
    }
    m.extend_from_slice(&flags.to_le_bytes());
    for p in &payloads {
        m.extend_from_slice(p);
    }
    m
}

/// Unix seconds → FILETIME.
pub fn filetime(unix_secs: i64) -> u64 {
    ((unix_secs + 11_644_473_600).max(0) as u64) * 10_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// MS-NLMP §4.2.1 common values and §4.2.4 (NTLMv2 authentication) results.
    fn spec_challenge() -> Challenge {
        // §4.2.4.1.3: the AV pairs MsvAvNbDomainName "Domain", MsvAvNbComputerName "Server".
        let mut ti = vec![2, 0, 12, 0];
        ti.extend(utf16le("Domain"));
        ti.extend([1, 0, 12, 0]);
        ti.extend(utf16le("Server"));
        ti.extend([0, 0, 0, 0]);
        Challenge {
            flags: 0xe28a_8233,
            server_challenge: [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
            target_info: ti,
            timestamp: None,
        }
    }

    fn spec_creds() -> Credentials {
        Credentials {
            user: "User".into(),
            domain: "Domain".into(),
            password: "Password".into(),
        }
    }

    #[test]
    fn ms_nlmp_4_2_4_ntlmv2_vectors() {
        let creds = spec_creds();
        assert_eq!(
            ntowf_v2(&creds).to_vec(),
            hex("0c 86 8a 40 3b fd 7a 93 a3 00 1e f2 2e f0 2e 3f"),
            "§4.2.4.1.1 NTOWFv2"
        );
        let r = v2_responses(&creds, &spec_challenge(), [0xaa; 8], 0);
        assert_eq!(
            r.lm,
            hex("86 c3 50 97 ac 9c ec 10 25 54 76 4a 57 cc cc 19 aa aa aa aa aa aa aa aa"),
            "§4.2.4.2.1 LMv2 response"
        );
        assert_eq!(
            r.nt[..16].to_vec(),
            hex("68 cd 0a b8 51 e5 1c 96 aa bc 92 7b eb ef 6a 1c"),
            "§4.2.4.2.2 NTProofStr"
        );
        assert_eq!(
            r.session_base_key.to_vec(),
            hex("8d e4 0c ca db c1 4a 82 f1 5c b0 ad 0d e9 5c a3"),
            "§4.2.4.1.2 session base key"
        );
        // The blob after NTProofStr is `temp` (§4.2.4.2.2).
        assert_eq!(
            r.nt[16..].to_vec(),
            hex(
                "01 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 aa aa aa aa aa aa aa aa
                 00 00 00 00 02 00 0c 00 44 00 6f 00 6d 00 61 00 69 00 6e 00 01 00 0c 00
                 53 00 65 00 72 00 76 00 65 00 72 00 00 00 00 00 00 00 00 00"
            )
        );
    }

    fn challenge_bytes(ch: &Challenge) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(SIGNATURE);
        m.extend_from_slice(&2u32.to_le_bytes());
        let name = utf16le("Server");
        m.extend_from_slice(&(name.len() as u16).to_le_bytes());
        m.extend_from_slice(&(name.len() as u16).to_le_bytes());
        m.extend_from_slice(&48u32.to_le_bytes());
        m.extend_from_slice(&ch.flags.to_le_bytes());
        m.extend_from_slice(&ch.server_challenge);
        m.extend_from_slice(&[0; 8]);
        let ti_off = 48 + name.len() as u32;
        m.extend_from_slice(&(ch.target_info.len() as u16).to_le_bytes());
        m.extend_from_slice(&(ch.target_info.len() as u16).to_le_bytes());
        m.extend_from_slice(&ti_off.to_le_bytes());
        m.extend_from_slice(&name);
        m.extend_from_slice(&ch.target_info);
        m
    }

    #[test]
    fn challenge_round_trip_and_authenticate_layout() {
        let ch = spec_challenge();
        let parsed = parse_challenge(&challenge_bytes(&ch)).unwrap();
        assert_eq!(parsed, ch);
        let msg = authenticate(&spec_creds(), &parsed, [0xaa; 8], 0, "COMPUTER");
        assert_eq!(&msg[..8], SIGNATURE);
        assert_eq!(msg[8], 3);
        // NtChallengeResponseFields point at NTProofStr + blob, longer than NTLMv1's 24 bytes.
        let nt = field(&msg, 20, "nt").unwrap();
        assert!(nt.len() > 24);
        assert_eq!(nt[..16], hex("68cd0ab851e51c96aabc927bebef6a1c")[..]);
        assert_eq!(field(&msg, 36, "user").unwrap(), utf16le("User"));
        assert_eq!(field(&msg, 28, "domain").unwrap(), utf16le("Domain"));
    }

    #[test]
    fn a_server_timestamp_is_used_and_lm_is_zero() {
        let mut ch = spec_challenge();
        ch.target_info.truncate(ch.target_info.len() - 4);
        ch.target_info.extend([7, 0, 8, 0]);
        ch.target_info
            .extend(0x01d0_0000_0000_0000u64.to_le_bytes());
        ch.target_info.extend([0, 0, 0, 0]);
        let parsed = parse_challenge(&challenge_bytes(&ch)).unwrap();
        assert_eq!(parsed.timestamp, Some(0x01d0_0000_0000_0000));
        let r = v2_responses(&spec_creds(), &parsed, [1; 8], 42);
        assert_eq!(r.lm, vec![0; 24]);
        assert_eq!(r.nt[24..32], 0x01d0_0000_0000_0000u64.to_le_bytes());
    }

    #[test]
    fn bad_challenges() {
        let good = challenge_bytes(&spec_challenge());
        assert!(matches!(
            parse_challenge(b"garbage"),
            Err(NtlmError::NotChallenge(_))
        ));
        let mut wrong_type = good.clone();
        wrong_type[8] = 1;
        assert!(matches!(
            parse_challenge(&wrong_type),
            Err(NtlmError::NotChallenge(_))
        ));
        let mut out = good.clone();
        out[44] = 0xff; // TargetInfo offset far outside
        assert!(matches!(
            parse_challenge(&out),
            Err(NtlmError::OutOfBounds(_))
        ));
        let mut v1_only = good.clone();
        v1_only.truncate(48);
        v1_only[12] = 0; // TargetName: empty
        v1_only[40] = 0; // TargetInfo: empty
        v1_only[41] = 0;
        assert_eq!(parse_challenge(&v1_only), Err(NtlmError::NoNtlmV2));
        // Every truncation is an error, never a panic.
        for n in 0..good.len() {
            assert!(parse_challenge(&good[..n]).is_err(), "{n}");
        }
        assert_eq!(
            parse_challenge(&vec![0; MAX_CHALLENGE + 1]),
            Err(NtlmError::TooLarge)
        );
    }

    #[test]
    fn account_forms() {
        let c = Credentials::from_account("CORP\\svc", "pw");
        assert_eq!((c.domain.as_str(), c.user.as_str()), ("CORP", "svc"));
        let c = Credentials::from_account("svc@corp.example", "pw");
        assert_eq!(
            (c.domain.as_str(), c.user.as_str()),
            ("", "svc@corp.example")
        );
    }

    #[test]
    fn negotiate_offers_no_lm_key_and_asks_for_target_info() {
        let m = negotiate();
        let flags = u32::from_le_bytes([m[12], m[13], m[14], m[15]]);
        assert_ne!(flags & NEGOTIATE_TARGET_INFO, 0);
        assert_ne!(flags & NEGOTIATE_EXTENDED_SESSIONSECURITY, 0);
        assert_eq!(flags & 0x80, 0, "NTLMSSP_NEGOTIATE_LM_KEY is not offered");
    }
}
