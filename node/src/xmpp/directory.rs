//! The node's directory of user actors: every data-plane thread finds a local user's actor here
//! and sends to it directly (no registry actor on the path), and a user without an actor gets
//! one **on the arbiter of the thread that needed it** — for a user who signs in, the arbiter
//! of their first session, so that what the session sends reaches its user actor without
//! crossing threads. A message between two local users then crosses threads at most once (the
//! sender's user actor to the recipient's), where hashing users over the arbiters cost up to
//! three crossings (session → sender's shard → recipient's shard → recipient's session).
//!
//! The map is split into [`PARTS`] locks by a hash of the bare JID, each held only for a lookup
//! or an insertion, never across an await. Starting an actor and queueing the first message for
//! it happen under the same lock, so a sender on another thread that finds the new actor can
//! only queue behind that message: order per sender is kept (RFC 6120 §10.1).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};

use actix::prelude::*;
use herald_xmpp::Jid;

use super::metrics as xm;
use super::users::UserActor;

/// Locks the directory is split into (a power of two well above the number of arbiters, so that
/// two threads rarely want the same one).
pub const PARTS: usize = 64;

/// Mailbox capacity of a user actor, set before anything is sent to it (an actor's own
/// `started` runs later, on its arbiter). A bound, not an allocation (the queue is a linked
/// list): about three times the largest roster a user may have (`xmpp.roster_max` ≤ 10,000),
/// so that a popular user's contacts all answering or subscribing in the same second are
/// queued, not dropped (4,096 dropped 5,900 of 10,000 subscription requests in the fan-out
/// benchmark).
pub const USER_MAILBOX: usize = 32_768;

thread_local! {
    /// The index of the data-plane arbiter this thread runs, if it runs one.
    static DATA_PLANE: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Marks the calling thread as data-plane arbiter `i` (run once on each arbiter at start).
pub fn mark_data_plane(i: usize) {
    DATA_PLANE.with(|c| c.set(Some(i)));
}

/// The data-plane arbiter the calling thread runs, if any.
pub fn current_data_plane() -> Option<usize> {
    DATA_PLANE.with(std::cell::Cell::get)
}

/// Starts a user actor with its mailbox already sized, on `arbiter`; the address is usable at
/// once (messages wait in the mailbox until the actor runs).
pub fn start_on(arbiter: &actix_rt::ArbiterHandle, actor: UserActor) -> Addr<UserActor> {
    let (tx, rx) = actix::dev::channel::channel(USER_MAILBOX);
    arbiter.spawn_fn(move || {
        let ctx = Context::with_receiver(rx);
        actix_rt::spawn(ctx.into_future(actor));
    });
    Addr::new(tx)
}

type Part = HashMap<Jid, Addr<UserActor>>;

/// Bare JID → the user's actor on this node.
pub struct Directory {
    parts: Box<[Mutex<Part>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Directory {
    fn default() -> Self {
        Self::new()
    }
}

impl Directory {
    pub fn new() -> Self {
        Directory {
            parts: (0..PARTS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }

    fn part(&self, bare: &Jid) -> std::sync::MutexGuard<'_, Part> {
        let i = (self.hasher.hash_one(bare) as usize) % self.parts.len();
        self.parts[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live actor of `bare`'s user, if there is one.
    pub fn get(&self, bare: &Jid) -> Option<Addr<UserActor>> {
        self.part(bare).get(bare).filter(|a| a.connected()).cloned()
    }

    /// Runs `send` with the live actor of `bare`'s user, starting one with `start` first when
    /// there is none; both under the part's lock (see the module documentation).
    pub fn with_user<R>(
        &self,
        bare: &Jid,
        start: impl FnOnce() -> Addr<UserActor>,
        send: impl FnOnce(&Addr<UserActor>) -> R,
    ) -> R {
        let mut part = self.part(bare);
        match part.get(bare) {
            Some(addr) if addr.connected() => send(addr),
            stale => {
                if stale.is_some() {
                    // The actor stopped by itself: start afresh.
                    metrics::gauge!(xm::USER_ACTORS).decrement(1.0);
                }
                let addr = start();
                metrics::gauge!(xm::USER_ACTORS).increment(1.0);
                let r = send(&addr);
                part.insert(bare.clone(), addr);
                r
            }
        }
    }

    /// Removes and returns the actors of the users `leave` picks.
    pub fn take_where(&self, mut leave: impl FnMut(&Jid) -> bool) -> Vec<(Jid, Addr<UserActor>)> {
        let mut out = Vec::new();
        for p in self.parts.iter() {
            let mut part = p.lock().unwrap_or_else(PoisonError::into_inner);
            let gone: Vec<Jid> = part.keys().filter(|j| leave(j)).cloned().collect();
            for j in gone {
                if let Some(a) = part.remove(&j) {
                    metrics::gauge!(xm::USER_ACTORS).decrement(1.0);
                    out.push((j, a));
                }
            }
        }
        out
    }
}
