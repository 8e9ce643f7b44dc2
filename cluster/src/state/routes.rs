//! Static-route destination patterns (RTE-2): the reversed-domain form `.com.example.*`, or
//! `.*` for everything, and the predefined open-federation route (OPEN-1/2).

use super::names::check_dns_label;
use herald_grpc::config::{RouteType, StaticRoute, Transport};

/// Id of the predefined open-federation static route.
pub const OPEN_FEDERATION_ROUTE_ID: &str = "open-federation";
/// Destination pattern matching every domain.
pub const MATCH_ALL_PATTERN: &str = ".*";
/// Priority of the predefined route (fixed, OPEN-2).
pub const OPEN_FEDERATION_PRIORITY: u32 = 1;
/// Weight of the predefined route (fixed, OPEN-2).
pub const OPEN_FEDERATION_WEIGHT: u32 = 10;

/// The reversed destination pattern of a plain domain: `example.com` → `.com.example.*`.
/// The domain is lowercased; it is not validated (validate it first, or validate the result
/// with [`normalize_destination_pattern`]).
pub fn reversed_pattern_for_domain(domain: &str) -> String {
    let mut out = String::with_capacity(domain.len() + 3);
    for label in domain.rsplit('.') {
        out.push('.');
        out.push_str(&label.to_ascii_lowercase());
    }
    out.push_str(".*");
    out
}

/// Checks a destination pattern and returns it lowercased: `.*`, or a leading '.', one or more
/// valid DNS labels separated by '.', and a trailing `.*`.
pub fn normalize_destination_pattern(pattern: &str) -> Result<String, String> {
    if pattern == MATCH_ALL_PATTERN {
        return Ok(pattern.to_string());
    }
    let inner = pattern
        .strip_prefix('.')
        .and_then(|p| p.strip_suffix(".*"))
        .ok_or_else(|| {
            format!("'{pattern}' must be '.*' or a reversed domain such as '.com.example.*'")
        })?;
    if inner.len() > super::names::MAX_DNS_NAME_LEN {
        return Err(format!(
            "'{pattern}' names a domain longer than 253 characters"
        ));
    }
    for label in inner.split('.') {
        check_dns_label(label).map_err(|e| format!("'{pattern}': {e}"))?;
    }
    Ok(pattern.to_ascii_lowercase())
}

/// The predefined open-federation route as created at bootstrap: pattern `.*`, blocked, in
/// service, TLS on port 5061, no next hop yet (the admin sets it to enable open federation).
pub fn open_federation_route() -> StaticRoute {
    StaticRoute {
        id: OPEN_FEDERATION_ROUTE_ID.to_string(),
        description: "Predefined route for SIP open federation".to_string(),
        destination_pattern: MATCH_ALL_PATTERN.to_string(),
        next_hop: String::new(),
        next_hop_port: 5061,
        route_type: RouteType::Domain as i32,
        transport: Transport::Tls as i32,
        priority: OPEN_FEDERATION_PRIORITY,
        weight: OPEN_FEDERATION_WEIGHT,
        in_service: true,
        blocked: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_patterns() {
        let table = [
            ("example.com", ".com.example.*"),
            ("domaina.com", ".com.domaina.*"),
            ("Sub.Office365.com", ".com.office365.sub.*"),
            ("localhost", ".localhost.*"),
        ];
        for (domain, want) in table {
            let got = reversed_pattern_for_domain(domain);
            assert_eq!(got, want, "{domain}");
            assert_eq!(normalize_destination_pattern(&got).as_deref(), Ok(want));
        }
    }

    #[test]
    fn destination_patterns() {
        let table: &[(&str, Option<&str>)] = &[
            (".*", Some(".*")),
            (".com.example.*", Some(".com.example.*")),
            (".COM.Example.*", Some(".com.example.*")),
            (".com.*", Some(".com.*")),
            ("*", None),
            ("", None),
            ("com.example.*", None),
            (".com.example", None),
            (".com..example.*", None),
            (".com.-x.*", None),
            (".com.ex_ample.*", None),
            ("..*", None),
            (".com.*.example.*", None),
        ];
        for (input, want) in table {
            let got = normalize_destination_pattern(input).ok();
            assert_eq!(got.as_deref(), *want, "{input:?}");
        }
    }
}
