//! SCRAM (RFC 5802, RFC 7677), server side, without channel binding.
//!
//! ```text
//! C: n,,n=user,r=<client nonce>                         client-first (gs2 header + bare)
//! S: r=<client nonce><server nonce>,s=<salt>,i=<count>  server-first
//! C: c=biws,r=<both nonces>,p=<ClientProof>             client-final
//! S: v=<ServerSignature>                                server-final, in <success/>
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::crypto::{ct_eq, HashAlg};
use super::{check_authzid, username, SaslError, Step, StoredSecret};

/// The longest server nonce we take from the caller, in bytes.
const MAX_SERVER_NONCE: usize = 256;
/// The shortest server nonce we take from the caller, in bytes.
const MIN_SERVER_NONCE: usize = 16;

fn malformed(what: &str) -> SaslError {
    SaslError::MalformedRequest(what.to_string())
}

/// A parsed client-first message.
#[derive(Debug)]
pub(crate) struct ClientFirst {
    hash: HashAlg,
    /// `n,,`, `y,,` or with an authzid: covered by the `c=` attribute of the final message.
    gs2_header: String,
    /// client-first-message-bare, part of the AuthMessage.
    bare: String,
    client_nonce: String,
    /// The prepared username.
    pub(crate) authcid: String,
    /// The normalised authzid, when one was given.
    authzid: Option<String>,
}

/// State after the server-first message was sent.
#[derive(Debug)]
pub(crate) struct AwaitFinal {
    first: ClientFirst,
    server_first: String,
    /// Client nonce followed by server nonce.
    nonce: String,
    secret: StoredSecret,
    /// False when `secret` is made up (unknown user, or no secret for this hash).
    real: bool,
}

/// Printable per RFC 5802: `%x21-2B / %x2D-7E` (no space, no comma).
fn printable(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

/// The server's part of the nonce: `server_nonce` as-is when it is already printable, else its
/// base64 (which is printable).
pub(crate) fn server_nonce_part(server_nonce: &[u8]) -> Result<String, SaslError> {
    if !(MIN_SERVER_NONCE..=MAX_SERVER_NONCE).contains(&server_nonce.len()) {
        return Err(SaslError::TemporaryAuthFailure);
    }
    if server_nonce.iter().all(|&b| printable(b)) {
        // Printable bytes are ASCII, hence UTF-8.
        Ok(server_nonce.iter().map(|&b| char::from(b)).collect())
    } else {
        Ok(B64.encode(server_nonce))
    }
}

/// Decodes a SCRAM saslname: `=2C` is ',', `=3D` is '='; any other '=' is malformed.
fn decode_saslname(s: &str) -> Result<String, SaslError> {
    if s.is_empty() {
        return Err(malformed("empty name"));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3);
        match esc {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(malformed("bad '=' escape in a name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks an optional extension attribute: one ASCII letter, '=', a value.
fn check_extension(attr: &str) -> Result<(), SaslError> {
    let b = attr.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b'=' {
        Ok(())
    } else {
        Err(malformed("bad attribute"))
    }
}

/// Parses the client-first message.
pub(crate) fn parse_client_first(hash: HashAlg, msg: &[u8]) -> Result<ClientFirst, SaslError> {
    let msg = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
    let mut parts = msg.splitn(3, ',');
    let (Some(flag), Some(authz), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed("no gs2 header"));
    };
    match flag {
        // "y": the client could bind but believes we cannot. We offer no -PLUS mechanism, so
        // that is true and there is no downgrade to detect.
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(malformed("channel binding is not offered")),
        _ => return Err(malformed("bad gs2 channel binding flag")),
    }
    let authzid = match authz {
        "" => String::new(),
        a => match a.strip_prefix("a=") {
            Some(name) => decode_saslname(name)?,
            None => return Err(malformed("bad gs2 authzid")),
        },
    };
    let gs2_header = msg[..msg.len() - bare.len()].to_string();

    let mut attrs = bare.split(',');
    let user = match attrs.next() {
        Some(a) if a.starts_with("m=") => return Err(malformed("mandatory extension")),
        Some(a) => a
            .strip_prefix("n=")
            .ok_or_else(|| malformed("no username"))?,
        None => return Err(malformed("no username")),
    };
    let client_nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or_else(|| malformed("no nonce"))?;
    if client_nonce.is_empty() || !client_nonce.bytes().all(printable) {
        return Err(malformed("bad nonce"));
    }
    attrs.try_for_each(check_extension)?;

    let authcid = username(&decode_saslname(user)?)?;
    let authzid = check_authzid(&authzid, &authcid)?;
    Ok(ClientFirst {
        hash,
        gs2_header,
        bare: bare.to_string(),
        client_nonce: client_nonce.to_string(),
        authcid,
        authzid,
    })
}

/// Builds the server-first message from the user's secret for this hash (`None`: unknown user
/// or no such secret; a made-up one is used and the exchange will fail at the end).
pub(crate) fn server_first(
    first: ClientFirst,
    secret: Option<&StoredSecret>,
    server_nonce_part: &str,
) -> (AwaitFinal, Vec<u8>) {
    let hash = first.hash;
    let (secret, real) = match secret.filter(|s| hash.usable(s)) {
        Some(s) => (s.clone(), true),
        None => (hash.fake_secret(&first.authcid), false),
    };
    let nonce = format!("{}{}", first.client_nonce, server_nonce_part);
    let server_first = format!(
        "r={},s={},i={}",
        nonce,
        B64.encode(&secret.salt),
        secret.iterations
    );
    let challenge = server_first.clone().into_bytes();
    (
        AwaitFinal {
            first,
            server_first,
            nonce,
            secret,
            real,
        },
        challenge,
    )
}

/// Checks the client-final message; on success the step carries `v=ServerSignature`.
pub(crate) fn client_final(state: AwaitFinal, msg: &[u8]) -> Result<Step, SaslError> {
    let hash = state.first.hash;
    let msg = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
    let (without_proof, proof) = msg
        .rsplit_once(",p=")
        .ok_or_else(|| malformed("no proof"))?;
    let mut attrs = without_proof.split(',');
    let cbind = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or_else(|| malformed("no channel binding"))?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or_else(|| malformed("no nonce"))?;
    attrs.try_for_each(check_extension)?;
    let cbind = B64
        .decode(cbind)
        .map_err(|_| malformed("channel binding is not base64"))?;
    let proof = B64
        .decode(proof)
        .map_err(|_| malformed("proof is not base64"))?;

    if cbind != state.first.gs2_header.as_bytes() {
        return Err(SaslError::NotAuthorized);
    }
    if !ct_eq(nonce.as_bytes(), state.nonce.as_bytes()) {
        return Err(SaslError::NotAuthorized);
    }
    if proof.len() != hash.len() {
        return Err(SaslError::NotAuthorized);
    }

    let auth_message = format!(
        "{},{},{}",
        state.first.bare, state.server_first, without_proof
    );
    let client_signature = hash.hmac(&state.secret.stored_key, auth_message.as_bytes());
    let client_key: Vec<u8> = proof
        .iter()
        .zip(&client_signature)
        .map(|(p, s)| p ^ s)
        .collect();
    let matches = ct_eq(&hash.digest(&client_key), &state.secret.stored_key);
    if !(matches && state.real) {
        return Err(SaslError::NotAuthorized);
    }
    let server_signature = hash.hmac(&state.secret.server_key, auth_message.as_bytes());
    Ok(Step::Success {
        authcid: state.first.authcid,
        authzid: state.first.authzid,
        additional: format!("v={}", B64.encode(server_signature)).into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslnames() {
        let table: &[(&str, Result<&str, ()>)] = &[
            ("user", Ok("user")),
            ("a=2Cb", Ok("a,b")),
            ("a=3Db", Ok("a=b")),
            ("=2C=3D", Ok(",=")),
            ("=3D2C", Ok("=2C")),
            ("", Err(())),
            ("a=", Err(())),
            ("a=2", Err(())),
            ("a=2c", Err(())),
            ("a=41", Err(())),
            ("a==3D", Err(())),
            ("é=2", Err(())),
        ];
        for (input, want) in table {
            let got = decode_saslname(input).map_err(|_| ());
            assert_eq!(got, want.map(str::to_string), "{input:?}");
        }
    }

    #[test]
    fn server_nonce_encoding() {
        assert_eq!(
            server_nonce_part(b"3rfcNHYJY1ZVvWVs7j").as_deref(),
            Ok("3rfcNHYJY1ZVvWVs7j")
        );
        assert_eq!(
            server_nonce_part(&[0u8; 16]).as_deref(),
            Ok("AAAAAAAAAAAAAAAAAAAAAA==")
        );
        assert_eq!(
            server_nonce_part(b"with,comma,inside"),
            Ok(B64.encode(b"with,comma,inside"))
        );
        assert_eq!(
            server_nonce_part(&[1u8; 15]),
            Err(SaslError::TemporaryAuthFailure)
        );
        assert_eq!(
            server_nonce_part(&[1u8; 257]),
            Err(SaslError::TemporaryAuthFailure)
        );
    }

    #[test]
    fn client_first_parsing() {
        let ok = parse_client_first(HashAlg::Sha256, b"y,,n=User,r=abc,x=ext")
            .map(|c| (c.gs2_header, c.bare, c.client_nonce, c.authcid, c.authzid));
        assert_eq!(
            ok,
            Ok((
                "y,,".to_string(),
                "n=User,r=abc,x=ext".to_string(),
                "abc".to_string(),
                "user".to_string(),
                None
            ))
        );
        let bad: &[&[u8]] = &[
            b"",
            b"n,,",
            b"n",
            b"n,",
            b"x,,n=user,r=abc",
            b"p=tls-unique,,n=user,r=abc",
            b"n,b=user,n=user,r=abc",
            b"n,,m=ext,n=user,r=abc",
            b"n,,n=user",
            b"n,,n=user,x=abc",
            b"n,,r=abc,n=user",
            b"n,,n=,r=abc",
            b"n,,n=user,r=",
            b"n,,n=user,r=a b",
            b"n,,n=user,r=ab\x7f",
            b"n,,n=user,r=abc,",
            b"n,,n=user,r=abc,=x",
            b"n,,n=us=2er,r=abc",
            b"n,,n=a b,r=abc",
            b"n,,n=\xff,r=abc",
        ];
        for msg in bad {
            assert!(
                matches!(
                    parse_client_first(HashAlg::Sha1, msg),
                    Err(SaslError::MalformedRequest(_))
                ),
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
    }
}
