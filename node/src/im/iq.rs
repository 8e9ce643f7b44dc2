//! IQ routing for the account (RFC 6120 §8.2.3, RFC 6121 §8.5) and the IQs the server answers
//! for the user: roster, XEP-0191 block list, XEP-0030 disco#info on the account.

use herald_xmpp::{ns, Element, Jid};

use super::errors::{Condition, StanzaError};
use super::roster::iq_result;
use super::{stanza_type, Out, UserCore};

/// Why an IQ is malformed (RFC 6120 §8.2.3), if it is.
pub fn check_iq(iq: &Element) -> Result<(), StanzaError> {
    if iq.get_attr("id").is_none() {
        return Err(Condition::BadRequest.into());
    }
    match stanza_type(iq) {
        "get" | "set" if iq.children().count() == 1 => Ok(()),
        "result" | "error" => Ok(()),
        _ => Err(Condition::BadRequest.into()),
    }
}

/// Features advertised by the account (XEP-0030 on the bare JID).
pub fn account_features(pre_approval: bool) -> Vec<&'static str> {
    let mut f = vec![
        ns::DISCO_INFO,
        ns::ROSTER,
        ns::ROSTER_VER,
        ns::BLOCKING,
        ns::OFFLINE,
        ns::SID,
    ];
    if pre_approval {
        f.push(ns::PRE_APPROVAL);
    }
    f
}

impl UserCore {
    /// An IQ from one of the user's sessions.
    pub(crate) fn client_iq(
        &mut self,
        resource: &str,
        stanza: Element,
        _now_ms: u64,
        out: &mut Out,
    ) {
        let me = self.full_jid(resource);
        let reply_err = |out: &mut Out, err: StanzaError| {
            out.reject(resource, me.as_ref(), &stanza, &err);
        };
        if let Err(e) = check_iq(&stanza) {
            // Never an error in answer to an error (RFC 6120 §8.3.1); everything else that
            // is malformed (no id, an unknown type, a get/set without exactly one payload) is
            // told so, not dropped.
            if stanza_type(&stanza) != "error" {
                reply_err(out, e);
            }
            return;
        }
        let Some(full) = self.full_jid(resource) else {
            return;
        };
        let to = match stanza.get_attr("to").map(Jid::parse) {
            None => None,
            Some(Ok(j)) if j == self.jid => None,
            Some(Ok(j)) => Some(j),
            Some(Err(_)) => return reply_err(out, Condition::JidMalformed.into()),
        };
        let Some(to) = to else {
            return self.own_iq(resource, stanza, out);
        };
        let is_request = matches!(stanza_type(&stanza), "get" | "set");
        if self.is_blocked(&to) {
            if is_request {
                reply_err(out, StanzaError::blocked());
            }
            return;
        }
        let mut stanza = stanza;
        stanza.set_attr("from", full.to_string());
        stanza.set_attr("to", to.to_string());
        if to.bare() == self.jid {
            // Another resource of the same account.
            self.inbound_iq(&full, &to, stanza, out);
        } else {
            out.route(stanza);
        }
    }

    /// An IQ the server answers on behalf of the account (no `to`, or the bare JID).
    fn own_iq(&mut self, resource: &str, stanza: Element, out: &mut Out) {
        let typ = stanza_type(&stanza).to_string();
        if typ != "get" && typ != "set" {
            return;
        }
        let Some(payload) = stanza.children().next().cloned() else {
            return;
        };
        let res = match (typ.as_str(), payload.name(), payload.ns()) {
            ("get", "query", ns::ROSTER) => {
                self.roster_get(resource, &stanza, &payload, out);
                Ok(())
            }
            ("set", "query", ns::ROSTER) => self.roster_set(resource, &stanza, &payload, out),
            ("get", "blocklist", ns::BLOCKING) => {
                self.blocklist_get(resource, &stanza, out);
                Ok(())
            }
            ("set", "block", ns::BLOCKING) => self.block(resource, &stanza, &payload, out),
            ("set", "unblock", ns::BLOCKING) => self.unblock(resource, &stanza, &payload, out),
            ("get", "query", ns::DISCO_INFO) => self.disco_info(resource, &stanza, &payload, out),
            _ => Err(Condition::ServiceUnavailable.into()),
        };
        if let Err(e) = res {
            out.reject(resource, self.full_jid(resource).as_ref(), &stanza, &e);
        }
    }

    /// XEP-0030 disco#info on the account: identity account/registered and its features.
    fn disco_info(
        &self,
        resource: &str,
        iq: &Element,
        query: &Element,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        if query.get_attr("node").is_some() {
            return Err(Condition::ItemNotFound.into());
        }
        let mut q = Element::new("query", ns::DISCO_INFO).child(
            Element::new("identity", ns::DISCO_INFO)
                .attr("category", "account")
                .attr("type", "registered"),
        );
        for f in account_features(self.limits.pre_approval) {
            q.push(Element::new("feature", ns::DISCO_INFO).attr("var", f));
        }
        let result = iq_result(iq, self.full_jid(resource).as_ref())
            .attr("from", self.jid.to_string())
            .child(q);
        out.send_session(resource, result);
        Ok(())
    }

    /// An IQ from someone else: to a bound full JID it is delivered; to the bare JID or an
    /// unknown resource, get/set are answered with service-unavailable (RFC 6121 §8.5.2.1.3,
    /// §8.5.3.2.2) and results/errors dropped. Blocked senders get service-unavailable
    /// (XEP-0191 §3.5).
    pub(crate) fn inbound_iq(&mut self, from: &Jid, to: &Jid, stanza: Element, out: &mut Out) {
        let is_request = matches!(stanza_type(&stanza), "get" | "set");
        if !self.is_blocked(from) {
            if let Some(res) = to.resource() {
                if self.sessions.contains_key(res) {
                    out.send_session(res, stanza);
                    return;
                }
            }
        }
        if is_request {
            let err = StanzaError::new(Condition::ServiceUnavailable);
            if from.bare() == self.jid {
                // From one of the user's own sessions: answer it directly.
                if let Some(res) = from.resource() {
                    out.reject(res, Some(from), &stanza, &err);
                }
            } else {
                self.bounce(&stanza, err, out);
            }
        }
    }
}
