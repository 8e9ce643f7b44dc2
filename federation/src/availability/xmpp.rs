//! The RFC 6121 presence wire form of an [`Availability`], both ways (MAP-3).
//!
//! | state | `<show/>` | generic XMPP status when none is set |
//! |---|---|---|
//! | Available | none | |
//! | Busy | `away` | "Busy" (Table 1 rule) |
//! | Do Not Disturb | `dnd` | |
//! | Be Right Back | `away` (MAP-6) | |
//! | Away | `away` | |
//! | Extended Away | `xa` | |
//! | Idle | `away` | "Idle" (MAP-4) |
//! | Offline | `type='unavailable'` | |
//!
//! The user's own status text always wins over the synthesized one. XEP-0319 `<idle/>` is read
//! but not written (its `since` is required and the model carries no timestamp).
//!
//! For a Herald peer ([`PeerType::Herald`]) the same RFC form is sent (so a hop that does not
//! know Herald still renders it), without synthesized status text, plus
//! `<availability xmlns='urn:x-herald:availability:0' state='…' overlay='…'/>` carrying the
//! exact state and overlay, so Herald-to-Herald presence is lossless.
//!
//! Reading is lenient where RFC 6121 leaves room, because remote servers vary: an unknown
//! `<show/>` value is read as Available (the stanza is still an available presence and the
//! value says nothing we can use; our c2s layer rejects it from local clients before this),
//! `chat` is Available, an empty `<status/>` is no status, and an unusable Herald extension is
//! ignored in favour of the RFC form.

use herald_xmpp::{ns, stanza::Presence, Element};

use super::model::{Availability, Overlay, State};

/// XEP-0319 Last User Interaction in Presence.
pub const IDLE_NS: &str = "urn:xmpp:idle:1";

/// Herald's presence extension carrying the exact canonical state.
pub const HERALD_AVAILABILITY_NS: &str = "urn:x-herald:availability:0";

/// Who the presence is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerType {
    /// Any RFC 6121 client or server (third-party XMPP).
    GenericXmpp,
    /// A federated Herald, or a client known to read Herald's extension.
    Herald,
}

/// Why a stanza carries no availability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The element is not a presence.
    #[error("<{0}/> is not a presence")]
    NotPresence(String),
    /// A presence of another type (subscription, probe, error).
    #[error("presence type {0:?} carries no availability")]
    NotAvailability(String),
    /// `<priority/>` is not an integer in -128..=127.
    #[error("priority {0:?} is not an integer in -128..127")]
    BadPriority(String),
}

/// The availability an available or unavailable presence announces.
pub fn from_presence(presence: &Element) -> Result<Availability, WireError> {
    if presence.name() != "presence" {
        return Err(WireError::NotPresence(presence.name().to_owned()));
    }
    let ns = presence.ns();
    let status = Presence(presence).status().filter(|s| !s.trim().is_empty());
    match presence.get_attr("type") {
        None => {}
        Some("unavailable") => {
            return Ok(Availability {
                state: State::Offline,
                status,
                overlay: None,
            })
        }
        Some(other) => return Err(WireError::NotAvailability(other.to_owned())),
    }
    if let Some(ext) = presence.get_child("availability", HERALD_AVAILABILITY_NS) {
        if let Some(a) = read_extension(ext, status.clone()) {
            return Ok(a);
        }
    }
    let show = presence.get_child("show", ns).map(Element::text);
    let mut state = match show.as_deref().map(str::trim) {
        Some("away") => State::Away,
        Some("xa") => State::ExtendedAway,
        Some("dnd") => State::DoNotDisturb,
        // None, "chat", or a value RFC 6121 does not define.
        _ => State::Available,
    };
    if presence.get_child("idle", IDLE_NS).is_some()
        && matches!(state, State::Available | State::Away)
    {
        state = State::Idle;
    }
    Ok(Availability {
        state,
        status,
        overlay: None,
    })
}

/// [`from_presence`] plus the RFC 6121 priority (absent = 0).
pub fn from_presence_with_priority(presence: &Element) -> Result<(Availability, i8), WireError> {
    let availability = from_presence(presence)?;
    let priority = Presence(presence).priority().map_err(|_| {
        let text = presence
            .get_child("priority", presence.ns())
            .map(Element::text)
            .unwrap_or_default();
        WireError::BadPriority(text)
    })?;
    Ok((availability, priority))
}

/// A `jabber:client` presence (no addressing; the router sets `from`/`to` and the stream
/// namespace) announcing `a` to a `peer`.
pub fn to_presence(a: &Availability, peer: PeerType) -> Element {
    let mut presence = Element::new("presence", ns::CLIENT);
    let (show, marker) = match a.state {
        State::Available => (None, None),
        State::Busy => (Some("away"), Some("Busy")),
        State::DoNotDisturb => (Some("dnd"), None),
        State::BeRightBack | State::Away => (Some("away"), None),
        State::ExtendedAway => (Some("xa"), None),
        State::Idle => (Some("away"), Some("Idle")),
        State::Offline => (None, None),
    };
    if a.state == State::Offline {
        presence.set_attr("type", "unavailable");
    }
    if let Some(show) = show {
        presence.push(Element::new("show", ns::CLIENT).text_node(show));
    }
    let status = match peer {
        PeerType::GenericXmpp => a.status.as_deref().or(marker),
        PeerType::Herald => a.status.as_deref(),
    };
    if let Some(status) = status {
        presence.push(Element::new("status", ns::CLIENT).text_node(status));
    }
    if peer == PeerType::Herald && a.state != State::Offline {
        let ext = Element::new("availability", HERALD_AVAILABILITY_NS)
            .attr("state", state_token(a.state))
            .attr_opt("overlay", a.overlay.map(Overlay::token));
        presence.push(ext);
    }
    presence
}

fn read_extension(ext: &Element, status: Option<String>) -> Option<Availability> {
    let state = ext.get_attr("state").and_then(state_from_token)?;
    let overlay = match ext.get_attr("overlay") {
        None => None,
        Some(token) => Some(Overlay::from_token(token)?),
    };
    (state != State::Offline).then_some(Availability {
        state,
        status,
        overlay,
    })
}

/// The token of `state` in Herald's extension ("do-not-disturb").
pub fn state_token(state: State) -> &'static str {
    match state {
        State::Available => "available",
        State::Busy => "busy",
        State::DoNotDisturb => "do-not-disturb",
        State::BeRightBack => "be-right-back",
        State::Away => "away",
        State::ExtendedAway => "extended-away",
        State::Idle => "idle",
        State::Offline => "offline",
    }
}

/// Parses [`state_token`].
pub fn state_from_token(token: &str) -> Option<State> {
    State::ALL.into_iter().find(|&s| state_token(s) == token)
}

#[cfg(test)]
#[path = "xmpp_tests.rs"]
mod tests;
