//! Log compaction with snapshots encoded off the Raft thread.
//!
//! Every `snapshot_entries` applied entries — and, once the state is larger than
//! [`SMALL_SNAPSHOT`], not before the entries applied since the last snapshot add up to
//! [`LOG_TO_SNAPSHOT`] times its size, so that a large state (many users' rosters) is not
//! rewritten every few hundred milliseconds under a steady stream of user writes — and after
//! each membership change, the loop hands the state it just published (an immutable `Arc`) to a
//! thread of its own, which encodes the snapshot straight from it (with the term and conf state
//! as of its index) and writes it durably to a file of its own ([`crate::snapfile`]); the loop
//! keeps serving Raft meanwhile. When the file is written the loop makes it the latest snapshot
//! and drops the log before a trailing window of `compaction_lag` entries: one small redb write
//! (pointer, hard state, truncation). One build at a time.

use std::sync::Arc;

use crossbeam_channel::{Receiver, TryRecvError};
use raft::eraftpb::Snapshot;

use super::{Applied, LoopError, RaftLoop};
use crate::metrics as m;
use crate::snapfile;
use crate::storage::StorageError;

/// A snapshot of a large state is due once the log applied since the last one is this many times
/// its size (and `snapshot_entries` long): taking snapshots then costs at most half the log's own
/// writes.
pub(super) const LOG_TO_SNAPSHOT: u64 = 2;

/// Up to this size a snapshot is taken every `snapshot_entries` entries whatever their size.
pub(super) const SMALL_SNAPSHOT: u64 = 1 << 20;

/// A snapshot being encoded and written.
pub(super) struct Build {
    index: u64,
    done: Receiver<Built>,
}

/// A snapshot written to its file (or why it could not be).
type Built = Result<(Snapshot, snapfile::Pointer), StorageError>;

impl RaftLoop {
    /// Starts a snapshot build when one is due and none is running.
    pub(super) fn maybe_compact(&mut self) -> Result<(), LoopError> {
        self.finish_snapshot_build()?;
        if self.building.is_some() {
            return Ok(());
        }
        let applied = self.state.applied_index();
        let due = applied >= self.last_snapshot_index + self.cfg.snapshot_entries
            && (self.snapshot_bytes <= SMALL_SNAPSHOT
                || self.log_bytes >= LOG_TO_SNAPSHOT * self.snapshot_bytes);
        if !(due || self.force_snapshot) || applied <= self.last_snapshot_index {
            return Ok(());
        }
        let published: Arc<Applied> = self.applied_tx.borrow().clone();
        if published.state.applied_index() != applied {
            // Not published yet (cannot happen: on_ready publishes first); try next round.
            return Ok(());
        }
        // The term and the conf state as of `applied` (a later membership change must not leak
        // into it); the data is filled in by the build.
        let store = self.raw.store();
        let shell = store.snapshot_at(applied, Vec::new(), store.conf_state().clone())?;
        let dir = store.dir().to_path_buf();
        self.force_snapshot = false;
        // Entries applied from here on count toward the next snapshot.
        self.log_bytes = 0;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name(format!("raft-snap-{}", self.cfg.node_id))
            .spawn(move || {
                let mut snap = shell;
                snap.data = published.state.encode_snapshot().into();
                drop(published);
                let built = snapfile::write(&dir, &snap).map(|p| (snap, p));
                let _ = tx.send(built);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a snapshot build; retrying later");
            return Ok(());
        }
        self.building = Some(Build {
            index: applied,
            done: rx,
        });
        Ok(())
    }

    /// Stores the snapshot whose bytes are ready, if any. Called every round.
    pub(super) fn finish_snapshot_build(&mut self) -> Result<(), LoopError> {
        let Some(b) = &self.building else {
            return Ok(());
        };
        let (snap, file) = match b.done.try_recv() {
            Ok(Ok(built)) => built,
            Ok(Err(e)) => {
                tracing::error!(index = b.index, error = %e, "cannot write a snapshot file; retrying later");
                metrics::counter!(m::SNAPSHOT_FAILURES).increment(1);
                self.building = None;
                return Ok(());
            }
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
        let bytes = snap.data.len();
        // Keep a trailing window of entries behind the snapshot for lagging followers. (One
        // that a newer snapshot, installed from the leader, superseded is ignored.)
        let keep_from = (b.index + 1).saturating_sub(self.cfg.compaction_lag);
        self.raw
            .mut_store()
            .store_snapshot_file(snap, file, keep_from)?;
        if b.index <= self.last_snapshot_index {
            return Ok(());
        }
        self.last_snapshot_index = b.index;
        self.snapshot_bytes = bytes as u64;
        metrics::counter!(m::SNAPSHOTS_TAKEN).increment(1);
        tracing::debug!(index = b.index, bytes, "log compacted behind a snapshot");
        Ok(())
    }
}
