//! Decoder errors, each with the SIP status the caller answers with (RFC 3261 §21) and
//! whether the stream framing survived.
//!
//! Fatal errors ([`DecodeError::is_fatal`]) mean the byte stream can no longer be split
//! into messages: answer if possible, then close the connection. The others reject one
//! framed message; the decoder goes on with the next one, and
//! [`crate::codec::Decoder::take_rejected`] returns the rejected message so that a request
//! can be answered with [`crate::Response::for_request`].

use crate::header::HeaderName;
use crate::typed::HeaderError;

/// Why the decoder refused input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The first line is neither a request line nor a status line. Fatal, 400.
    #[error("bad start line: {reason}")]
    BadStartLine {
        /// What is wrong.
        reason: &'static str,
    },
    /// A SIP version other than 2.0. Fatal, 505.
    #[error("unsupported SIP version {version:?}")]
    UnsupportedVersion {
        /// The version as written (truncated to 16 bytes).
        version: String,
    },
    /// A line of the header section is longer than the limit. Fatal, 400.
    #[error("header line longer than {limit} bytes")]
    LineTooLong {
        /// [`crate::Limits::max_line_bytes`].
        limit: usize,
    },
    /// More header lines than the limit. Fatal, 400.
    #[error("more than {limit} headers")]
    TooManyHeaders {
        /// [`crate::Limits::max_headers`].
        limit: usize,
    },
    /// Header section, or header section plus body, larger than the limit. Fatal, 513.
    #[error("message larger than {limit} bytes")]
    MessageTooLarge {
        /// [`crate::Limits::max_message_bytes`].
        limit: usize,
    },
    /// Content-Length larger than the body limit. Fatal (the body is not read), 413.
    #[error("body of {length} bytes is larger than {limit}")]
    BodyTooLarge {
        /// The declared length.
        length: u64,
        /// [`crate::Limits::max_body_bytes`].
        limit: usize,
    },
    /// No Content-Length: required on streams (RFC 3261 §18.3). Fatal, 400.
    #[error("missing Content-Length")]
    MissingContentLength,
    /// Content-Length is not a number, or several disagree. Fatal, 400.
    #[error("invalid Content-Length")]
    BadContentLength,
    /// A mandatory header is missing (RFC 3261 §8.1.1). Not fatal, 400.
    #[error("missing {name} header")]
    MissingHeader {
        /// The header.
        name: HeaderName,
    },
    /// A header that must appear once appears several times. Not fatal, 400.
    #[error("duplicate {name} header")]
    DuplicateHeader {
        /// The header.
        name: HeaderName,
    },
    /// A header line or value is malformed (no colon, bad name, not UTF-8, unparsable value,
    /// CSeq method differing from the request method). Not fatal, 400.
    #[error("invalid {name} header: {reason}")]
    BadHeader {
        /// The header (`Other("")` when the name itself is unreadable).
        name: HeaderName,
        /// What is wrong.
        reason: &'static str,
    },
    /// The Request-URI scheme is not sip or sips. Not fatal, 416.
    #[error("unsupported URI scheme {scheme:?}")]
    UnsupportedUriScheme {
        /// The scheme.
        scheme: String,
    },
}

impl DecodeError {
    /// The status code to answer a request with.
    pub fn status(&self) -> u16 {
        match self {
            DecodeError::UnsupportedVersion { .. } => 505,
            DecodeError::MessageTooLarge { .. } => 513,
            DecodeError::BodyTooLarge { .. } => 413,
            DecodeError::UnsupportedUriScheme { .. } => 416,
            _ => 400,
        }
    }

    /// The reason phrase to answer with; for 400 it names the problem as RFC 3261 §21.4.1
    /// suggests ("Missing Call-ID Header Field").
    pub fn reason(&self) -> String {
        match self {
            DecodeError::BadStartLine { .. } => "Bad Request Line".into(),
            DecodeError::LineTooLong { .. } => "Header Line Too Long".into(),
            DecodeError::TooManyHeaders { .. } => "Too Many Header Fields".into(),
            DecodeError::MissingContentLength => "Missing Content-Length Header Field".into(),
            DecodeError::BadContentLength => "Invalid Content-Length Header Field".into(),
            DecodeError::MissingHeader { name } => format!("Missing {name} Header Field"),
            DecodeError::DuplicateHeader { name } => format!("Duplicate {name} Header Field"),
            DecodeError::BadHeader { name, .. } if name.as_str().is_empty() => {
                "Malformed Header Field".into()
            }
            DecodeError::BadHeader { name, .. } => format!("Invalid {name} Header Field"),
            other => crate::message::default_reason(other.status()).into(),
        }
    }

    /// Whether the stream framing is lost: answer if possible, then close the connection.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            DecodeError::MissingHeader { .. }
                | DecodeError::DuplicateHeader { .. }
                | DecodeError::BadHeader { .. }
                | DecodeError::UnsupportedUriScheme { .. }
        )
    }
}

impl From<HeaderError> for DecodeError {
    fn from(e: HeaderError) -> Self {
        match e {
            HeaderError::Missing(name) => DecodeError::MissingHeader { name },
            HeaderError::Invalid { name, reason } => DecodeError::BadHeader { name, reason },
        }
    }
}
