//! The checks a framed message must pass before the transaction layer sees it.

use crate::error::DecodeError;
use crate::header::HeaderName;
use crate::message::Message;
use crate::uri::Uri;

/// Headers every request and response must carry (RFC 3261 §8.1.1; Max-Forwards is not
/// required: RFC 3261 §16.3 lets a proxy add it, and Herald does).
pub const MANDATORY: [HeaderName; 5] = [
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
];

/// Headers that may appear at most once.
const SINGLE: [HeaderName; 9] = [
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::ContentType,
    HeaderName::Expires,
    HeaderName::Event,
    HeaderName::SubscriptionState,
];

/// Checks a message: Request-URI scheme (416), mandatory headers present (named in the
/// error), single headers not repeated, Via/From/To/CSeq/Max-Forwards parse, Call-ID is one
/// word, and a request's CSeq method is its method.
pub fn validate(msg: &Message) -> Result<(), DecodeError> {
    if let Message::Request(r) = msg {
        if let Uri::Other(_) = &r.uri {
            return Err(DecodeError::UnsupportedUriScheme {
                scheme: r.uri.scheme().chars().take(16).collect(),
            });
        }
    }
    let h = msg.headers();
    for name in MANDATORY {
        if !h.contains(&name) {
            return Err(DecodeError::MissingHeader { name });
        }
    }
    for name in SINGLE {
        if h.count(&name) > 1 {
            return Err(DecodeError::DuplicateHeader { name });
        }
    }
    h.top_via()?;
    h.from()?;
    h.to()?;
    let call_id = h.call_id()?;
    if call_id.is_empty() || call_id.bytes().any(|b| b == b' ' || b == b'\t') {
        return Err(DecodeError::BadHeader {
            name: HeaderName::CallId,
            reason: "not a single word",
        });
    }
    let cseq = h.cseq()?;
    h.max_forwards()?;
    if let Message::Request(r) = msg {
        if cseq.method != r.method {
            return Err(DecodeError::BadHeader {
                name: HeaderName::CSeq,
                reason: "method differs from the request method",
            });
        }
    }
    Ok(())
}
