//! What differs by gateway kind (CalDAV, EWS): the service account and how it
//! authenticates, the gateway check, and what a poll returns. The actor stays kind-agnostic
//! apart from building each kind's poll.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use herald_federation::calendar::time::Timestamp;
use herald_grpc::config::{CalendarAuthMethod, CalendarGateway, CalendarKind};

use super::caldav::{self, PollError, PollOk};
use super::ews;
use super::http::{Auth, Conn, HttpLimits, Target};

/// A boxed future the actor spawns.
pub(super) type BoxFut<T> = Pin<Box<dyn Future<Output = T>>>;

/// One kind's service account (CAL-7), password opened.
#[derive(Clone)]
pub(super) struct Creds {
    pub account: String,
    pub password: String,
    pub method: CalendarAuthMethod,
    /// EWS: send the impersonation header.
    pub impersonate: bool,
}

/// Kinds Herald polls.
pub(super) fn supported_kind(kind: i32) -> bool {
    kind == CalendarKind::Caldav as i32 || kind == CalendarKind::ExchangeEws as i32
}

/// What one poll returned, by gateway kind.
pub(super) enum Polled {
    Caldav(PollOk),
    /// With the connection to keep for the next poll.
    Ews(ews::EwsPoll, Option<Box<Conn>>),
}

/// Where a gateway is and how to authenticate to it: Basic when the kind's credentials
/// say so (CalDAV's default), else NTLM with NTLMv2 responses (EWS; `ntlm` and `ntlmv2`
/// alike: NTLMv1 is never used).
pub(super) fn target_for(g: &CalendarGateway, creds: Option<&Creds>) -> Target {
    let auth = match creds {
        None => Auth::None,
        Some(c) => {
            let basic = match c.method {
                CalendarAuthMethod::Basic => true,
                CalendarAuthMethod::Ntlm | CalendarAuthMethod::Ntlmv2 => false,
                CalendarAuthMethod::Unspecified => g.kind != CalendarKind::ExchangeEws as i32,
            };
            if basic {
                Auth::Basic(c.account.clone(), c.password.clone())
            } else {
                Auth::Ntlm(
                    herald_federation::calendar::ntlm::Credentials::from_account(
                        &c.account,
                        &c.password,
                    ),
                )
            }
        }
    };
    Target {
        host: g.host.clone(),
        port: u16::try_from(g.port).unwrap_or(443),
        auth,
    }
}

/// The gateway check of `cfg`'s kind.
pub(super) fn check(
    tls: Arc<rustls::ClientConfig>,
    http: HttpLimits,
    cfg: &CalendarGateway,
    target: Target,
    creds: Option<&Creds>,
    now: Timestamp,
) -> BoxFut<Result<(), PollError>> {
    if cfg.kind == CalendarKind::ExchangeEws as i32 {
        let account = creds.map(|c| c.account.clone()).unwrap_or_default();
        Box::pin(ews::check(
            tls,
            target,
            http,
            cfg.path.clone(),
            account,
            now,
        ))
    } else {
        Box::pin(caldav::check(tls, target, http, cfg.path.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_by_kind_and_method() {
        use CalendarAuthMethod as M;
        use CalendarKind as K;
        // (kind, method, Basic?)
        let rows = [
            (K::Caldav, M::Unspecified, true),
            (K::Caldav, M::Basic, true),
            (K::Caldav, M::Ntlmv2, false),
            (K::ExchangeEws, M::Unspecified, false),
            (K::ExchangeEws, M::Ntlm, false),
            (K::ExchangeEws, M::Ntlmv2, false),
            (K::ExchangeEws, M::Basic, true),
        ];
        for (kind, method, basic) in rows {
            let g = CalendarGateway {
                kind: kind as i32,
                host: "cas.example.test".into(),
                port: 8443,
                ..Default::default()
            };
            let c = Creds {
                account: "CORP\\svc".into(),
                password: "pw".into(),
                method,
                impersonate: true,
            };
            let t = target_for(&g, Some(&c));
            assert_eq!(t.port, 8443);
            match t.auth {
                Auth::Basic(u, p) => {
                    assert!(basic, "{kind:?} {method:?}");
                    assert_eq!((u.as_str(), p.as_str()), ("CORP\\svc", "pw"));
                }
                Auth::Ntlm(n) => {
                    assert!(!basic, "{kind:?} {method:?}");
                    assert_eq!((n.domain.as_str(), n.user.as_str()), ("CORP", "svc"));
                }
                Auth::None => panic!("credentials were given"),
            }
        }
        assert!(matches!(
            target_for(&CalendarGateway::default(), None).auth,
            Auth::None
        ));
    }
}
