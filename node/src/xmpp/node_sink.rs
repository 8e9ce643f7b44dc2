//! What other nodes route here: [`NodeSink`] hands each item to its user's registry shard (or
//! the federation edges), and [`SharedBroadcast`] is a presence batch decoded.

use std::sync::Arc;

use actix::prelude::*;
use herald_cluster::routing::RouteSink;
use herald_grpc::cluster::route_message::Kind;
use herald_xmpp::Jid;

use super::*;

/// A presence broadcast received from another node (or handed back as lost), decoded.
pub(super) struct SharedBroadcast {
    pub(super) stanza: Arc<crate::im::SharedStanza>,
    pub(super) to: Vec<Jid>,
    pub(super) forwarded: bool,
}

impl SharedBroadcast {
    /// `None` when the stanza does not parse or has no usable `from`; recipients that are
    /// not JIDs are left out.
    pub(super) fn decode(b: &herald_grpc::cluster::Broadcast) -> Option<SharedBroadcast> {
        let el = parse_stanza(&b.stanza)?;
        let from = Jid::parse(el.get_attr("from")?).ok()?;
        Some(SharedBroadcast {
            stanza: crate::im::SharedStanza::new(el, from),
            to: b.to.iter().filter_map(|t| Jid::parse(t).ok()).collect(),
            forwarded: b.forwarded,
        })
    }

    /// On to the recipients, as a broadcast made on this node.
    pub(super) fn send(&self, shared: &Arc<Shared>) {
        shared
            .router()
            .broadcast_as(&self.stanza, &self.to, &mut Vec::new(), self.forwarded);
    }
}

/// Receives what other nodes route here and hands it to the user's registry shard.
pub(super) struct NodeSink {
    pub(super) shards: Vec<Addr<UserRegistry>>,
    pub(super) shared: std::sync::Weak<Shared>,
}

impl NodeSink {
    fn shard(&self, jid: &Jid) -> &Addr<UserRegistry> {
        &self.shards[shard_index(jid, self.shards.len())]
    }
}

impl RouteSink for NodeSink {
    fn deliver(&self, from_node: u64, kind: Kind) -> bool {
        let parse_full = |s: &str| Jid::parse(s).ok().filter(|j| !j.is_bare());
        let sent = match kind {
            Kind::ToUser(xml) => match parse_stanza(&xml) {
                Some(el) => match el.get_attr("to").and_then(|t| Jid::parse(t).ok()) {
                    Some(to) => self.shard(&to).try_send(ToUser(el)).is_ok(),
                    None => {
                        tracing::warn!(from_node, "routed stanza without a usable 'to' dropped");
                        true
                    }
                },
                None => {
                    tracing::warn!(from_node, "undecodable routed stanza dropped");
                    true
                }
            },
            Kind::FromClient(cs) => match (parse_full(&cs.full_jid), parse_stanza(&cs.stanza)) {
                (Some(full_jid), Some(stanza)) => self
                    .shard(&full_jid)
                    .try_send(ClientStanzaMsg {
                        full_jid,
                        stanza,
                        // A previous home handing a stanza over names the session's node.
                        loc: SessionLoc::Remote(if cs.session_node != 0 {
                            cs.session_node
                        } else {
                            from_node
                        }),
                    })
                    .is_ok(),
                _ => true,
            },
            Kind::SessionOpened(full) => match parse_full(&full) {
                Some(full_jid) => self
                    .shard(&full_jid)
                    .try_send(SessionOpened {
                        full_jid,
                        loc: SessionLoc::Remote(from_node),
                    })
                    .is_ok(),
                None => true,
            },
            Kind::SessionClosed(full) => match parse_full(&full) {
                Some(full_jid) => self
                    .shard(&full_jid)
                    .try_send(SessionClosed { full_jid })
                    .is_ok(),
                None => true,
            },
            Kind::ToRemote(xml) => {
                let s2s = self.shared.upgrade().and_then(|s| s.s2s.get().cloned());
                match (s2s, parse_stanza(&xml)) {
                    (Some(s2s), Some(el)) => s2s.send(el, true),
                    _ => tracing::warn!(
                        from_node,
                        "stanza for another domain dropped: no federation edge here"
                    ),
                }
                true
            }
            Kind::ToSip(xml) => {
                let sip = self.shared.upgrade().and_then(|s| s.sip.get().cloned());
                match (sip, parse_stanza(&xml)) {
                    (Some(sip), Some(el)) => sip.from_cluster(el, from_node),
                    _ => tracing::warn!(
                        from_node,
                        "presence for a SIP domain dropped: no SIP edge here"
                    ),
                }
                true
            }
            // Through the recipients' shards, as `ToUser` (the order of a sender's stanzas).
            Kind::Broadcast(b) => match SharedBroadcast::decode(&b) {
                Some(sb) => {
                    let mut by_shard: Vec<Vec<Jid>> = vec![Vec::new(); self.shards.len()];
                    for j in sb.to {
                        by_shard[shard_index(&j, self.shards.len())].push(j);
                    }
                    let mut all = true;
                    for (shard, to) in self.shards.iter().zip(by_shard) {
                        if !to.is_empty() {
                            all &= shard
                                .try_send(registry::ToUsers {
                                    stanza: sb.stanza.clone(),
                                    to,
                                    forwarded: sb.forwarded,
                                })
                                .is_ok();
                        }
                    }
                    all
                }
                None => {
                    tracing::warn!(from_node, "undecodable presence broadcast dropped");
                    true
                }
            },
            Kind::ToSession(cs) => match (parse_full(&cs.full_jid), parse_stanza(&cs.stanza)) {
                (Some(full), Some(stanza)) => self
                    .shard(&full)
                    .try_send(ToLocalSession {
                        full_jid: cs.full_jid,
                        stanza,
                    })
                    .is_ok(),
                _ => true,
            },
        };
        if !sent {
            ::metrics::counter!(metrics::MAILBOX_DROPS, "mailbox" => "registry").increment(1);
        }
        sent
    }

    fn local_sessions(
        &self,
        bare: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send>> {
        let shard = Jid::parse(&bare).ok().map(|j| (self.shard(&j).clone(), j));
        Box::pin(async move {
            match shard {
                Some((registry, j)) => registry
                    .send(users::LocalSessionsOf(j))
                    .await
                    .unwrap_or_default(),
                None => vec![],
            }
        })
    }
}
