//! In-memory transport for simulated clusters (STYLE.md habit 13b): every node's inbox in one hub,
//! with knobs to isolate nodes, cut links and drop a share of messages.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use raft::eraftpb::Message;

use super::Transport;
use crate::raft_loop::Input;

#[derive(Default)]
struct Hub {
    inboxes: HashMap<u64, Sender<Input>>,
    /// Directed links that lose everything.
    cut: HashSet<(u64, u64)>,
    /// Nodes that neither send nor receive.
    isolated: HashSet<u64>,
    /// Drop one message in `drop_every` (0: none), counted per hub.
    drop_every: u64,
    counter: u64,
}

/// The shared network of a simulated cluster.
#[derive(Clone, Default)]
pub struct MemHub {
    inner: Arc<Mutex<Hub>>,
}

impl MemHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a node's inbox (again after a restart) and returns its transport.
    pub fn attach(&self, node_id: u64, inbox: Sender<Input>) -> Arc<MemTransport> {
        self.lock().inboxes.insert(node_id, inbox);
        Arc::new(MemTransport {
            hub: self.clone(),
            from: node_id,
        })
    }

    pub fn isolate(&self, node_id: u64) {
        self.lock().isolated.insert(node_id);
    }

    pub fn heal(&self) {
        let mut h = self.lock();
        h.isolated.clear();
        h.cut.clear();
        h.drop_every = 0;
    }

    /// Cuts both directions between two nodes.
    pub fn cut(&self, a: u64, b: u64) {
        let mut h = self.lock();
        h.cut.insert((a, b));
        h.cut.insert((b, a));
    }

    pub fn drop_every(&self, n: u64) {
        self.lock().drop_every = n;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One node's view of the hub.
pub struct MemTransport {
    hub: MemHub,
    from: u64,
}

impl Transport for MemTransport {
    fn send(&self, msg: Message) {
        let mut h = self.hub.lock();
        let (from, to) = (self.from, msg.to);
        if h.isolated.contains(&from) || h.isolated.contains(&to) || h.cut.contains(&(from, to)) {
            return;
        }
        h.counter += 1;
        if h.drop_every > 0 && h.counter.is_multiple_of(h.drop_every) {
            return;
        }
        if let Some(inbox) = h.inboxes.get(&to) {
            let _ = inbox.try_send(Input::Raft {
                message: Box::new(msg),
                from_address: String::new(),
            });
        }
    }

    fn learn_address(&self, _node_id: u64, _address: &str) {}

    fn forget(&self, _node_id: u64) {}
}
