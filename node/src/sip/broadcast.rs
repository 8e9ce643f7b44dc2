//! A presence broadcast's recipients in a SIP domain, handed over once (see
//! [`crate::xmpp::router::Router::broadcast`]).

use std::sync::Arc;

use herald_grpc::config::ObjectKind;
use herald_xmpp::Jid;

use super::{metrics, Sip};

impl Sip {
    /// The recipients in the SIP domain `domain` of one presence broadcast (see
    /// [`crate::xmpp::router::Router::broadcast`]): the sender is checked once, the routing
    /// node gets them in one message (`forwarded`: this node was sent them as the routing
    /// node), and there the presence is mapped once and each watcher's subscriptions notified.
    pub fn broadcast(
        self: &Arc<Self>,
        stanza: &Arc<crate::im::SharedStanza>,
        domain: &str,
        to: Vec<Jid>,
        forwarded: bool,
    ) {
        let from = stanza.from();
        let local = self
            .cluster
            .applied()
            .state
            .peek(ObjectKind::Domain, from.domain())
            .is_some();
        if !local {
            tracing::info!(domain, from = %from, "presence for a SIP domain from outside refused (no relaying)");
            metrics::failure("outbound", "not_local_sender");
            return;
        }
        match self.routing_node() {
            Some(n) if n == self.node_id => {}
            Some(n) if !forwarded => {
                let xml = stanza.stanza().to_xml_string();
                let to: Vec<String> = to.iter().map(|j| j.to_string()).collect();
                for batch in crate::xmpp::router::batches(&xml, &to, true) {
                    let n_batch = batch.to.len();
                    let kind = herald_grpc::cluster::route_message::Kind::Broadcast(batch);
                    match self.cluster.route(n, kind) {
                        Ok(()) => ::metrics::counter!(metrics::FORWARDED, "kind" => "presence")
                            .increment(1),
                        Err(e) => {
                            tracing::warn!(routing_node = n, domain, recipients = n_batch, error = %e,
                                "presence for a SIP domain not forwarded to the routing node");
                            forward_failed(&e);
                        }
                    }
                }
                return;
            }
            Some(_) => {
                not_routing_node(domain, to.len(), None);
                return;
            }
            None => {
                tracing::info!(
                    domain,
                    "presence for a SIP domain dropped: no routing node is live"
                );
                metrics::failure("outbound", "no_routing_node");
                return;
            }
        }
        ::metrics::histogram!(crate::xmpp::metrics::BATCH_RECIPIENTS, "path" => "sip")
            .record(to.len() as f64);
        let now = std::time::Instant::now();
        let actions = {
            let mut env = self.env();
            self.table()
                .on_xmpp_broadcast(stanza.stanza(), from, &to, now, &mut env)
        };
        self.gauges();
        self.execute(actions);
    }
}

/// A forward to the routing node failed: counted by reason (the caller logs it).
pub(super) fn forward_failed(e: &herald_cluster::routing::RouteError) {
    metrics::failure("outbound", "forward");
    let reason = match e {
        herald_cluster::routing::RouteError::UnknownNode(_) => "unknown_node",
        herald_cluster::routing::RouteError::Overloaded(_) => "queue_full",
    };
    ::metrics::counter!(metrics::FORWARD_FAILURES, "reason" => reason).increment(1);
}

/// Presence for `domain` (`n` recipients) sent here (from `from_node` when known) as to the
/// routing node, which this node no longer is: dropped, logged and counted.
pub(super) fn not_routing_node(domain: &str, n: usize, from_node: Option<u64>) {
    tracing::info!(
        domain,
        recipients = n,
        from_node,
        "presence for a SIP domain dropped: this node is no longer the routing node"
    );
    metrics::failure("outbound", "not_routing_node");
    ::metrics::counter!(metrics::FORWARD_FAILURES, "reason" => "not_routing_node").increment(1);
}
