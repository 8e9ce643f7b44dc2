//! Handling of the client's top-level elements in each negotiation state.

use super::features;
use super::{Action, BindError, C2s, State, MAX_AUTH_FAILURES};
use crate::element::Element;
use crate::error::{StanzaCondition, StanzaError, StreamCondition, StreamError};
use crate::jid::Jid;
use crate::ns;
use crate::sasl::{Mechanism, SaslError, Step};
use crate::stanza::{iq_result, StanzaKind};

/// True for an iq of type set whose single child is `name` in `ns`.
fn is_iq_set_with(e: &Element, name: &str, child_ns: &str) -> bool {
    e.is("iq", ns::CLIENT)
        && e.get_attr("type") == Some("set")
        && e.get_child(name, child_ns).is_some()
}

fn send_el(out: &mut Vec<Action>, e: &Element) {
    out.push(Action::Send(e.to_bytes(ns::CLIENT)));
}

impl C2s {
    /// One complete top-level element from the client.
    pub(super) fn on_element(&mut self, e: Element, out: &mut Vec<Action>) {
        match self.state {
            State::AwaitStartTls => {
                if e.is("starttls", ns::TLS) {
                    self.start_tls(out);
                } else {
                    let err = StreamError::with_text(
                        StreamCondition::PolicyViolation,
                        "STARTTLS is required first",
                    );
                    self.fail_or_close(Some(err), out);
                }
            }
            State::Authenticating => {
                if e.is("starttls", ns::TLS) && !self.tls && self.cfg.tls_available {
                    self.start_tls(out);
                } else if e.is("starttls", ns::TLS) {
                    // RFC 6120 §5.4.2.2: failure, then close the stream.
                    let mut bytes = Element::new("failure", ns::TLS).to_bytes(ns::CLIENT);
                    bytes.extend_from_slice(crate::codec::STREAM_CLOSE);
                    out.push(Action::Send(bytes));
                    out.push(Action::Close { error: None });
                    self.state = State::Closed;
                } else if e.is("auth", ns::SASL) {
                    self.auth(&e, out);
                } else if e.is("response", ns::SASL) {
                    self.response(&e, out);
                } else if e.is("abort", ns::SASL) {
                    self.auth_failure(SaslError::Aborted.condition(), out);
                } else {
                    self.unexpected(&e, out);
                }
            }
            State::AwaitBind => {
                if is_iq_set_with(&e, "bind", ns::BIND) {
                    let requested = e
                        .get_child("bind", ns::BIND)
                        .and_then(|b| b.get_child("resource", ns::BIND))
                        .map(|r| r.text().trim().to_string())
                        .filter(|r| !r.is_empty());
                    self.pending_bind = Some(Box::new(e));
                    self.state = State::Binding;
                    out.push(Action::Bind { requested });
                } else if is_iq_set_with(&e, "session", ns::SESSION) {
                    send_el(out, &iq_result(&e, None));
                } else {
                    self.unexpected(&e, out);
                }
            }
            State::Established => {
                if is_iq_set_with(&e, "session", ns::SESSION) {
                    send_el(out, &iq_result(&e, None));
                } else if is_iq_set_with(&e, "bind", ns::BIND) {
                    let err = StanzaError::with_text(
                        StanzaCondition::NotAllowed,
                        "a resource is already bound",
                    );
                    if let Some(reply) = err.reply_to(&e, None) {
                        send_el(out, &reply);
                    }
                } else if StanzaKind::of(&e).is_some()
                    || self.cfg.extra_features.iter().any(|f| f.ns() == e.ns())
                {
                    out.push(Action::Stanza(e));
                } else {
                    self.unexpected(&e, out);
                }
            }
            State::AwaitHeader
            | State::TlsHandshake
            | State::AwaitCredentials
            | State::Binding
            | State::Closed => self.unexpected(&e, out),
        }
    }

    /// An element not allowed now: stanzas before negotiation ended are not-authorized,
    /// negotiation elements out of place a policy violation, anything else unsupported.
    fn unexpected(&mut self, e: &Element, out: &mut Vec<Action>) {
        let err = if StanzaKind::of(e).is_some() {
            StreamError::with_text(
                StreamCondition::NotAuthorized,
                "stanzas are accepted once the stream is negotiated",
            )
        } else if [ns::TLS, ns::SASL, ns::STREAM, ns::BIND, ns::SESSION].contains(&e.ns()) {
            StreamError::with_text(
                StreamCondition::PolicyViolation,
                format!("unexpected <{}/>", e.name()),
            )
        } else {
            StreamError::with_text(
                StreamCondition::UnsupportedStanzaType,
                format!("unsupported <{}/>", e.name()),
            )
        };
        self.fail_or_close(Some(err), out);
    }

    fn start_tls(&mut self, out: &mut Vec<Action>) {
        send_el(out, &Element::new("proceed", ns::TLS));
        out.push(Action::StartTls);
        self.state = State::TlsHandshake;
    }

    fn auth(&mut self, e: &Element, out: &mut Vec<Action>) {
        self.sasl = None;
        let mech = e
            .get_attr("mechanism")
            .and_then(Mechanism::from_name)
            .filter(|m| features::offered(&self.cfg.mechanisms, self.tls).any(|o| o == *m));
        let Some(mech) = mech else {
            return self.auth_failure(SaslError::InvalidMechanism.condition(), out);
        };
        let Some(initial) = features::decode_sasl_text(&e.text()) else {
            return self.auth_failure(SaslError::IncorrectEncoding.condition(), out);
        };
        let nonce = self.next_nonce();
        match (self.sasl_start)(mech, &initial, &nonce) {
            Ok((exchange, step)) => {
                self.sasl = Some((exchange, mech));
                self.sasl_step(Ok(step), out);
            }
            Err(err) => self.auth_failure(err.condition(), out),
        }
    }

    fn response(&mut self, e: &Element, out: &mut Vec<Action>) {
        let Some(data) = features::decode_sasl_text(&e.text()) else {
            return self.auth_failure(SaslError::IncorrectEncoding.condition(), out);
        };
        let step = match self.sasl.as_mut() {
            Some((ex, _)) => ex.step(&data),
            None => Err(SaslError::MalformedRequest(
                "no exchange in progress".into(),
            )),
        };
        self.sasl_step(step, out);
    }

    /// Carries out what the SASL exchange asks for.
    pub(super) fn sasl_step(&mut self, step: Result<Step, SaslError>, out: &mut Vec<Action>) {
        match step {
            Ok(Step::NeedCredentials { authcid }) => {
                self.state = State::AwaitCredentials;
                out.push(Action::LookupUser {
                    domain: self.domain.clone().unwrap_or_default(),
                    localpart: authcid,
                });
            }
            Ok(Step::Challenge(data)) => send_el(out, &features::sasl_data("challenge", &data)),
            Ok(Step::Success {
                authcid,
                authzid,
                additional,
            }) => self.sasl_success(&authcid, authzid.as_deref(), &additional, out),
            Err(err) => self.auth_failure(err.condition(), out),
        }
    }

    fn sasl_success(
        &mut self,
        authcid: &str,
        authzid: Option<&str>,
        additional: &[u8],
        out: &mut Vec<Action>,
    ) {
        let domain = self.domain.clone().unwrap_or_default();
        let Ok(jid) = Jid::from_parts(Some(authcid), &domain, None) else {
            return self.auth_failure(SaslError::NotAuthorized.condition(), out);
        };
        if let Some(z) = authzid.filter(|z| !z.is_empty()) {
            if Jid::parse(z).ok().as_ref() != Some(&jid) {
                return self.auth_failure(SaslError::InvalidAuthzid.condition(), out);
            }
        }
        let mechanism = self
            .sasl
            .take()
            .map(|(_, m)| m)
            .unwrap_or(Mechanism::ScramSha256);
        send_el(out, &features::sasl_data("success", additional));
        out.push(Action::Authenticated {
            jid: jid.clone(),
            mechanism,
        });
        self.authenticated = Some(Box::new(jid));
        self.restart();
    }

    /// A failed SASL attempt: `<failure/>`, then the stream closes after too many.
    fn auth_failure(&mut self, condition: &'static str, out: &mut Vec<Action>) {
        self.sasl = None;
        self.state = State::Authenticating;
        self.failures = self.failures.saturating_add(1);
        send_el(out, &features::sasl_failure(condition));
        out.push(Action::AuthFailed { condition });
        if self.failures >= MAX_AUTH_FAILURES {
            let err = StreamError::with_text(
                StreamCondition::PolicyViolation,
                "too many authentication failures",
            );
            self.fail_or_close(Some(err), out);
        }
    }

    /// The caller's answer to [`Action::Bind`].
    pub(super) fn bind_result(&mut self, result: Result<Jid, BindError>, out: &mut Vec<Action>) {
        self.state = State::AwaitBind;
        let Some(req) = self.pending_bind.take() else {
            return;
        };
        let full = match result {
            Ok(full)
                if full.resource().is_some()
                    && self.authenticated.as_deref() == Some(&full.bare()) =>
            {
                full
            }
            Ok(_) => {
                return self.bind_error(
                    &req,
                    StanzaError::new(StanzaCondition::InternalServerError),
                    out,
                )
            }
            Err(e) => {
                let cond = match &e {
                    BindError::Conflict => StanzaCondition::Conflict,
                    BindError::BadResource(_) => StanzaCondition::BadRequest,
                    BindError::NotAllowed => StanzaCondition::NotAllowed,
                    BindError::ResourceConstraint => StanzaCondition::ResourceConstraint,
                };
                return self.bind_error(&req, StanzaError::with_text(cond, e.to_string()), out);
            }
        };
        let payload = Element::new("bind", ns::BIND)
            .child(Element::new("jid", ns::BIND).text_node(full.to_string()));
        send_el(out, &iq_result(&req, Some(payload)));
        out.push(Action::Established { full_jid: full });
        self.state = State::Established;
    }

    fn bind_error(&mut self, req: &Element, err: StanzaError, out: &mut Vec<Action>) {
        if let Some(reply) = err.reply_to(req, None) {
            send_el(out, &reply);
        }
    }
}
