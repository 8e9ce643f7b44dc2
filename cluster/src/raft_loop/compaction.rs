//! Log compaction with snapshots encoded off the Raft thread.
//!
//! Every `snapshot_entries` applied entries (and after each membership change) the loop hands the
//! state it just published (an immutable `Arc`) to a thread of its own, which turns it into the
//! snapshot bytes; the loop keeps serving Raft meanwhile. When the bytes are ready the loop
//! stores the snapshot, with the conf state as of its index, and drops the log before a trailing
//! window of `compaction_lag` entries. One build at a time.
//!
//! What is still on the Raft thread: storing the snapshot (one redb write and fsync of its bytes).

use std::sync::Arc;

use crossbeam_channel::{Receiver, TryRecvError};
use prost::Message as _;
use raft::eraftpb::ConfState;

use super::{Applied, LoopError, RaftLoop};
use crate::metrics as m;

/// A snapshot being encoded.
pub(super) struct Build {
    index: u64,
    /// The conf state at `index` (a later membership change must not leak into it).
    conf: ConfState,
    bytes: Receiver<Vec<u8>>,
}

impl RaftLoop {
    /// Starts a snapshot build when one is due and none is running.
    pub(super) fn maybe_compact(&mut self) -> Result<(), LoopError> {
        self.finish_snapshot_build()?;
        if self.building.is_some() {
            return Ok(());
        }
        let applied = self.state.applied_index();
        let due = applied >= self.last_snapshot_index + self.cfg.snapshot_entries;
        if !(due || self.force_snapshot) || applied <= self.last_snapshot_index {
            return Ok(());
        }
        let published: Arc<Applied> = self.applied_tx.borrow().clone();
        if published.state.applied_index() != applied {
            // Not published yet (cannot happen: on_ready publishes first); try next round.
            return Ok(());
        }
        self.force_snapshot = false;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name(format!("raft-snap-{}", self.cfg.node_id))
            .spawn(move || {
                let bytes = published.state.to_snapshot().encode_to_vec();
                let _ = tx.send(bytes);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a snapshot build; retrying later");
            return Ok(());
        }
        self.building = Some(Build {
            index: applied,
            conf: self.raw.store().conf_state().clone(),
            bytes: rx,
        });
        Ok(())
    }

    /// Stores the snapshot whose bytes are ready, if any. Called every round.
    pub(super) fn finish_snapshot_build(&mut self) -> Result<(), LoopError> {
        let Some(b) = &self.building else {
            return Ok(());
        };
        let data = match b.bytes.try_recv() {
            Ok(data) => data,
            Err(TryRecvError::Empty) => return Ok(()),
            Err(TryRecvError::Disconnected) => {
                tracing::error!(index = b.index, "a snapshot build died; retrying later");
                self.building = None;
                return Ok(());
            }
        };
        let Some(b) = self.building.take() else {
            return Ok(());
        };
        if b.index <= self.last_snapshot_index {
            // A newer snapshot (installed from the leader) superseded it.
            return Ok(());
        }
        let bytes = data.len();
        // Keep a trailing window of entries behind the snapshot for lagging followers.
        let keep_from = (b.index + 1).saturating_sub(self.cfg.compaction_lag);
        self.raw
            .mut_store()
            .compact(b.index, data, keep_from, b.conf)?;
        self.last_snapshot_index = b.index;
        metrics::counter!(m::SNAPSHOTS_TAKEN).increment(1);
        tracing::debug!(index = b.index, bytes, "log compacted behind a snapshot");
        Ok(())
    }
}
