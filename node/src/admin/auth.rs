//! Who calls the admin API: the bearer-token check, and how the audit log names a token or an
//! mTLS client certificate.

use herald_cluster::client::constant_time_eq;
use tonic::{Request, Status};

use super::ADMIN_REQUESTS;

/// How the audit log names a bearer token: `token:` and 8 hex digits of its SHA-256, enough to
/// tell tokens apart, useless to recover one.
pub fn token_actor(token: &str) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(token.as_bytes());
    format!("token:{}", hex::encode(&h[..4]))
}

/// How the audit log names an mTLS client: its certificate's subject and its SANs.
pub fn cert_actor(cert_der: &[u8]) -> String {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return "cert:<unparsable>".to_string();
    };
    let mut s = format!("cert:{}", cert.subject());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(format!("DNS:{d}")),
                GeneralName::RFC822Name(e) => Some(format!("email:{e}")),
                GeneralName::URI(u) => Some(format!("URI:{u}")),
                _ => None,
            })
            .collect();
        if !names.is_empty() {
            s.push_str(&format!(" san={}", names.join(",")));
        }
    }
    s
}

/// Rejects admin calls without the configured bearer token.
///
/// The expected header is kept as raw bytes built from the token, never parsed: a token that
/// could not travel in a header (the config refuses those at start, see
/// `config::validate::check_secret`) would then simply match nothing. There is no input that
/// turns the check off; only `None` (no token configured) does, which the agent allows on
/// loopback or behind mutual TLS only.
#[derive(Clone)]
pub struct AuthCheck(Option<std::sync::Arc<[u8]>>);

impl AuthCheck {
    /// The check for `token` (`None`: no token configured, calls pass).
    pub fn new(token: Option<&str>) -> Self {
        AuthCheck(token.map(|t| format!("Bearer {t}").into_bytes().into()))
    }
}

impl tonic::service::Interceptor for AuthCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(exp) = &self.0 {
            let ok = req
                .metadata()
                .get("authorization")
                .is_some_and(|v| constant_time_eq(v.as_bytes(), exp));
            if !ok {
                metrics::counter!(ADMIN_REQUESTS, "method" => "any", "code" => "Unauthenticated")
                    .increment(1);
                return Err(Status::unauthenticated(
                    "admin API: missing or wrong bearer token (set --admin-token / HERALD_ADMIN_TOKEN)",
                ));
            }
        }
        Ok(req)
    }
}
