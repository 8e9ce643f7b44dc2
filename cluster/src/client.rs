//! Clients of other nodes' node-to-node API, with the cluster token attached.

use std::time::Duration;

use herald_grpc::cluster::node_api_client::NodeApiClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Metadata key carrying the shared cluster token on node-to-node calls.
pub const TOKEN_HEADER: &str = "x-herald-cluster-token";

/// Adds the cluster token to every outgoing request.
#[derive(Clone)]
pub struct TokenInjector(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for TokenInjector {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert(TOKEN_HEADER, t.clone());
        }
        Ok(req)
    }
}

pub type PeerClient = NodeApiClient<InterceptedService<Channel, TokenInjector>>;

/// How to reach peers: the shared token, the message size cap, and (mutual TLS between nodes)
/// the cluster CA with this node's certificate.
#[derive(Clone, Debug, Default)]
pub struct PeerOptions {
    pub token: Option<String>,
    pub max_message_bytes: usize,
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// Source address of node-to-node connections (the node's own bind address, so that peers
    /// and firewalls see node-to-node traffic come from it); `None`: the kernel's choice.
    pub local_address: Option<std::net::IpAddr>,
}

fn endpoint(address: &str, opts: &PeerOptions) -> Result<Endpoint, tonic::Status> {
    let bad = |e: &dyn std::fmt::Display| {
        tonic::Status::invalid_argument(format!("bad peer address {address}: {e}"))
    };
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    let mut ep = Endpoint::from_shared(format!("{scheme}://{address}")).map_err(|e| bad(&e))?;
    if let Some(tls) = &opts.tls {
        ep = ep.tls_config(tls.clone()).map_err(|e| bad(&e))?;
    }
    // Only towards a peer of the same address family (a name is resolved later: any).
    let peer_ip = address
        .rsplit_once(':')
        .and_then(|(h, _)| h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().ok());
    if let Some(local) = opts.local_address {
        if peer_ip.is_none_or(|p| p.is_ipv4() == local.is_ipv4()) {
            ep = ep.local_address(Some(local));
        }
    }
    Ok(ep
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true))
}

fn wrap(channel: Channel, opts: &PeerOptions) -> Result<PeerClient, tonic::Status> {
    let token = match &opts.token {
        Some(t) => Some(
            t.parse::<MetadataValue<Ascii>>()
                .map_err(|_| tonic::Status::invalid_argument("cluster token is not ASCII"))?,
        ),
        None => None,
    };
    let max = if opts.max_message_bytes == 0 {
        64 << 20
    } else {
        opts.max_message_bytes
    };
    Ok(
        NodeApiClient::with_interceptor(channel, TokenInjector(token))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
}

/// A lazily connecting client for `address` (host:port). Must be called inside a tokio runtime.
pub fn peer_client(address: &str, opts: &PeerOptions) -> Result<PeerClient, tonic::Status> {
    wrap(endpoint(address, opts)?.connect_lazy(), opts)
}

/// A client for `address` whose connection is established now (fails fast when the peer is
/// down, so that a caller can tell "never sent" from "sent and lost").
pub async fn peer_client_connected(
    address: &str,
    opts: &PeerOptions,
) -> Result<PeerClient, tonic::Status> {
    let channel = endpoint(address, opts)?
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("cannot connect to {address}: {e}")))?;
    wrap(channel, opts)
}

/// Compares two secrets without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Server-side check of the cluster token (constant-time comparison).
pub fn check_token(expected: Option<&str>, req: &tonic::Request<()>) -> Result<(), tonic::Status> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let got = req
        .metadata()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if constant_time_eq(got.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(tonic::Status::unauthenticated(
            "missing or wrong cluster token on a node-to-node call",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check() {
        let mut req = tonic::Request::new(());
        assert!(check_token(None, &req).is_ok());
        assert_eq!(
            check_token(Some("s3cret"), &req).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        req.metadata_mut()
            .insert(TOKEN_HEADER, "s3cre".parse().unwrap());
        assert!(check_token(Some("s3cret"), &req).is_err());
        req.metadata_mut()
            .insert(TOKEN_HEADER, "s3cret".parse().unwrap());
        assert!(check_token(Some("s3cret"), &req).is_ok());
    }
}
