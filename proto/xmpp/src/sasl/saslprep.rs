//! String preparation for SASL names and passwords.
//!
//! What we do, and what we leave out:
//!
//! - **Usernames** (the authcid, which is a JID localpart): a pragmatic subset of PRECIS
//!   UsernameCaseMapped (RFC 8265 §3.3). Rejected: the empty string, control characters,
//!   whitespace (ASCII and Unicode), the invisible "commonly mapped to nothing" characters of
//!   RFC 3454 table B.1, and the characters RFC 7622 §3.3.1 forbids in a localpart
//!   (`" & ' / : < > @`). Accepted names are lowercased (Unicode lowercase) and must be at most
//!   1023 bytes. No width mapping and no NFC.
//! - **Passwords**: the mapping step of SASLprep (RFC 4013 §2.1): "commonly mapped to nothing"
//!   characters (RFC 3454 B.1) are removed, then non-ASCII space characters (RFC 3454 C.1.2)
//!   become U+0020. **NFKC normalisation is not applied** (it would need the Unicode tables of
//!   an extra crate), so a password typed in a decomposed form on one client and composed on
//!   another derives different keys. The prohibited-output and bidi checks are not applied
//!   either: the password is never shown or compared as text, only hashed, and mapping is all
//!   that is needed for both sides of PLAIN and SCRAM to agree. ASCII passwords are unchanged.

use std::borrow::Cow;

/// Longest username (localpart) accepted, in bytes, after lowercasing (RFC 7622 §3).
pub const MAX_USERNAME: usize = 1023;

/// Why a SASL username cannot be a Herald localpart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// The username is empty.
    #[error("empty username")]
    Empty,
    /// The username is longer than [`MAX_USERNAME`] bytes.
    #[error("username longer than {MAX_USERNAME} bytes")]
    TooLong,
    /// The username contains a character that no localpart may hold.
    #[error("forbidden character {0:?} in the username")]
    Forbidden(char),
}

/// RFC 3454 table B.1: characters "commonly mapped to nothing".
fn mapped_to_nothing(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{1806}'
            | '\u{180B}'..='\u{180D}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
    )
}

/// RFC 3454 table C.1.2: non-ASCII space characters.
fn non_ascii_space(c: char) -> bool {
    matches!(
        c,
        '\u{00A0}' | '\u{1680}' | '\u{2000}'..='\u{200B}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// Prepares a SASL username (authcid) as a Herald localpart: see the module documentation for
/// the exact rules. Returns the lowercased name.
pub fn prepare_username(name: &str) -> Result<String, UsernameError> {
    if name.is_empty() {
        return Err(UsernameError::Empty);
    }
    if let Some(c) = name.chars().find(|&c| {
        c.is_control()
            || c.is_whitespace()
            || mapped_to_nothing(c)
            || matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@')
    }) {
        return Err(UsernameError::Forbidden(c));
    }
    let lower = name.to_lowercase();
    if lower.len() > MAX_USERNAME {
        return Err(UsernameError::TooLong);
    }
    Ok(lower)
}

/// Prepares a password with the RFC 4013 mapping (see the module documentation; no NFKC).
/// Borrowed when nothing changes, which is always the case for ASCII passwords.
pub fn prepare_password(password: &str) -> Cow<'_, str> {
    if password
        .chars()
        .all(|c| !mapped_to_nothing(c) && !non_ascii_space(c))
    {
        return Cow::Borrowed(password);
    }
    // B.1 first: U+200B is in both tables and is removed, as other SASLprep implementations do.
    Cow::Owned(
        password
            .chars()
            .filter(|&c| !mapped_to_nothing(c))
            .map(|c| if non_ascii_space(c) { ' ' } else { c })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        let table: &[(&str, Result<&str, UsernameError>)] = &[
            ("user", Ok("user")),
            ("User", Ok("user")),
            ("JÜRGEN", Ok("jürgen")),
            ("a.b-c_d+e", Ok("a.b-c_d+e")),
            ("a,b=c", Ok("a,b=c")),
            ("", Err(UsernameError::Empty)),
            ("a b", Err(UsernameError::Forbidden(' '))),
            ("a\u{00A0}b", Err(UsernameError::Forbidden('\u{00A0}'))),
            ("a\u{3000}b", Err(UsernameError::Forbidden('\u{3000}'))),
            ("a\tb", Err(UsernameError::Forbidden('\t'))),
            ("a\u{7f}", Err(UsernameError::Forbidden('\u{7f}'))),
            ("a\u{200B}b", Err(UsernameError::Forbidden('\u{200B}'))),
            ("a\u{00AD}b", Err(UsernameError::Forbidden('\u{00AD}'))),
            ("user@example.com", Err(UsernameError::Forbidden('@'))),
            ("a/b", Err(UsernameError::Forbidden('/'))),
            ("a:b", Err(UsernameError::Forbidden(':'))),
            ("<a>", Err(UsernameError::Forbidden('<'))),
            ("a'b", Err(UsernameError::Forbidden('\''))),
            ("a\"b", Err(UsernameError::Forbidden('"'))),
            ("a&b", Err(UsernameError::Forbidden('&'))),
        ];
        for (input, want) in table {
            assert_eq!(
                prepare_username(input),
                want.clone().map(str::to_string),
                "{input:?}"
            );
        }
        assert_eq!(
            prepare_username(&"a".repeat(1023)).map(|s| s.len()),
            Ok(1023)
        );
        assert_eq!(
            prepare_username(&"a".repeat(1024)),
            Err(UsernameError::TooLong)
        );
    }

    #[test]
    fn passwords() {
        let table: &[(&str, &str)] = &[
            ("pencil", "pencil"),
            ("pen cil", "pen cil"),
            ("I\u{00AD}X", "IX"),
            ("a\u{00A0}b", "a b"),
            ("a\u{2003}b\u{3000}c", "a b c"),
            ("a\u{200B}b", "ab"),
            ("\u{FEFF}x\u{FE0F}", "x"),
            ("ü", "ü"),
            // NFKC is not applied: U+2168 ROMAN NUMERAL NINE stays as it is.
            ("\u{2168}", "\u{2168}"),
            ("", ""),
        ];
        for (input, want) in table {
            assert_eq!(prepare_password(input), *want, "{input:?}");
        }
        assert!(matches!(prepare_password("pencil"), Cow::Borrowed(_)));
    }
}
