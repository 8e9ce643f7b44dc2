//! Durable Raft storage on redb: log entries, hard state, conf state and the latest snapshot.
//!
//! The owner loop is the only writer. Every mutating call that Raft needs durable (entries, term,
//! vote, conf state, snapshots) is one redb write transaction with immediate durability (fsync)
//! before it returns, so whatever Raft is told is persisted really is. A hard state that only
//! moves the commit index is kept in memory and written with the next durable write: the commit
//! index need not survive a crash (a restarted node learns it again from the leader, and never
//! below its snapshot, which [`DiskStorage::compact`] records with it).
//!
//! The latest snapshot this node took itself lives in a file of its own next to the store
//! ([`crate::snapfile`]), written and fsynced by the thread that encodes it; the store commits
//! only a pointer to it (name and SHA-256) with the log truncation, so storing a snapshot of
//! megabytes costs the Raft thread one small write. A snapshot installed from the leader (rare)
//! is stored inline in the store, as all snapshots were by earlier builds; both are read back.
//!
//! Dropping the log behind a snapshot is immediate in memory but spread out on disk: each durable
//! write deletes at most [`TRIM_CHUNK`] of the entries it still holds below the log's start, so
//! no single write frees thousands of entries' pages (tens of milliseconds on the Raft thread at
//! 2,000 user writes/s). Entries left on disk by a crash before they were deleted are loaded
//! back as part of the trailing window; they are committed entries the snapshot already covers.
//!
//! Reads come from an in-memory mirror that is loaded at open and kept in step with each write.
//! The log is compacted behind each snapshot but keeps a trailing window of entries (the
//! snapshot may sit inside the log): a follower that lags by less than the window catches up
//! from the log instead of receiving a whole snapshot.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::snapfile;

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const KEY_HARD_STATE: &str = "hard_state";
const KEY_CONF_STATE: &str = "conf_state";
const KEY_SNAPSHOT: &str = "snapshot";
/// A [`crate::snapfile::Pointer`] to the snapshot file, when the snapshot is not inline.
const KEY_SNAPSHOT_FILE: &str = "snapshot_file";

/// Entries below the log's start deleted from disk per durable write (see the module doc).
pub const TRIM_CHUNK: u64 = 128;

/// Durable (fsynced) write transactions of every store in this process (for benchmarks and
/// tests; `/metrics` has [`crate::metrics::FSYNCS`]).
pub static FSYNCS: AtomicU64 = AtomicU64::new(0);
/// Hard-state updates that only moved the commit index and so cost no write at all.
pub static COMMITS_UNSYNCED: AtomicU64 = AtomicU64::new(0);

fn commit_durable(tx: redb::WriteTransaction) -> Result<(), StorageError> {
    tx.commit().map_err(redb_err)?;
    FSYNCS.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(crate::metrics::FSYNCS).increment(1);
    Ok(())
}

/// Failures of the durable store. Any of them makes the node stop: Raft cannot go on after a
/// write it was promised did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("raft store {path}: {source}")]
    Open { path: String, source: redb::Error },
    #[error("raft store write failed: {0}")]
    Write(#[from] redb::Error),
    #[error("raft store holds an undecodable {what}: {source}")]
    Corrupt {
        what: &'static str,
        source: protobuf::ProtobufError,
    },
    #[error("raft store: {0}")]
    Invalid(String),
}

fn redb_err(e: impl Into<redb::Error>) -> StorageError {
    StorageError::Write(e.into())
}

/// Raft storage backed by one redb file.
pub struct DiskStorage {
    db: Database,
    /// The directory of the store: snapshot files live there.
    dir: PathBuf,
    /// The file the latest snapshot was read from or stored to (`None`: inline, or none).
    snapshot_file: Option<String>,
    /// The lowest index that may still be on disk: entries from here up to the log's start are
    /// dropped in memory and deleted a chunk per write.
    disk_first: u64,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// The log, contiguous: `entries[i].index == entries[0].index + i`. When not empty it
    /// starts at or before `snapshot index + 1` (a trailing window behind the snapshot may be
    /// kept) and ends at or after the snapshot index.
    entries: Vec<Entry>,
}

impl DiskStorage {
    /// Opens (or creates) the store at `path` and loads it.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = Database::create(path).map_err(|e| StorageError::Open {
            path: path.display().to_string(),
            source: e.into(),
        })?;
        {
            let tx = db.begin_write().map_err(redb_err)?;
            tx.open_table(ENTRIES).map_err(redb_err)?;
            tx.open_table(META).map_err(redb_err)?;
            tx.commit().map_err(redb_err)?;
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut s = DiskStorage {
            db,
            dir,
            snapshot_file: None,
            disk_first: 0,
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            snapshot: Snapshot::default(),
            entries: Vec::new(),
        };
        s.load()?;
        Ok(s)
    }

    fn load(&mut self) -> Result<(), StorageError> {
        let tx = self.db.begin_read().map_err(redb_err)?;
        let meta = tx.open_table(META).map_err(redb_err)?;
        if let Some(v) = meta.get(KEY_HARD_STATE).map_err(redb_err)? {
            self.hard_state = decode(v.value(), "hard state")?;
        }
        if let Some(v) = meta.get(KEY_CONF_STATE).map_err(redb_err)? {
            self.conf_state = decode(v.value(), "conf state")?;
        }
        let file = match meta.get(KEY_SNAPSHOT_FILE).map_err(redb_err)? {
            Some(v) => Some(snapfile::Pointer::decode(v.value())?),
            None => None,
        };
        if let Some(p) = &file {
            self.snapshot = snapfile::read(&self.dir, p)?;
        } else if let Some(v) = meta.get(KEY_SNAPSHOT).map_err(redb_err)? {
            self.snapshot = decode(v.value(), "snapshot")?;
        }
        // Files of builds that a crash or a newer snapshot overtook.
        self.snapshot_file = file.map(|p| p.name);
        snapfile::remove_others(&self.dir, self.snapshot_file.as_deref(), u64::MAX);
        let entries = tx.open_table(ENTRIES).map_err(redb_err)?;
        let snap_index = self.snapshot_index();
        let mut expected: Option<u64> = None;
        for item in entries.iter().map_err(redb_err)? {
            let (k, v) = item.map_err(redb_err)?;
            let index = k.value();
            match expected {
                None if index > snap_index + 1 => {
                    return Err(StorageError::Invalid(format!(
                        "log gap: the log starts at {index}, after the snapshot at {snap_index}"
                    )));
                }
                Some(want) if index != want => {
                    return Err(StorageError::Invalid(format!(
                        "log gap: expected entry {want}, found {index}"
                    )));
                }
                _ => {}
            }
            let e: Entry = decode(v.value(), "log entry")?;
            self.entries.push(e);
            expected = Some(index + 1);
        }
        if self.entries.last().is_some_and(|e| e.index < snap_index) {
            // Older than the snapshot as a whole: nothing there is needed.
            self.entries.clear();
        }
        // The snapshot holds applied (so committed) state.
        self.hard_state.commit = self.hard_state.commit.max(snap_index);
        self.disk_first = self.first_idx();
        Ok(())
    }

    /// True when nothing was ever stored: a brand-new node.
    pub fn is_empty(&self) -> bool {
        self.hard_state == HardState::default()
            && self.conf_state == ConfState::default()
            && self.snapshot.get_metadata().index == 0
            && self.entries.is_empty()
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The latest snapshot, data included.
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn last_idx(&self) -> u64 {
        self.entries
            .last()
            .map(|e| e.index)
            .unwrap_or_else(|| self.snapshot_index())
    }

    /// Index of the first entry held (snapshot index + 1 when the log is empty).
    fn first_idx(&self) -> u64 {
        self.entries
            .first()
            .map(|e| e.index)
            .unwrap_or_else(|| self.snapshot_index() + 1)
    }

    /// Number of log entries held (the trailing window behind the snapshot included).
    pub fn log_len(&self) -> usize {
        self.entries.len()
    }

    /// Appends entries, first truncating any conflicting suffix, then fsyncs.
    pub fn append(&mut self, ents: &[Entry]) -> Result<(), StorageError> {
        self.persist(ents, None)
    }

    /// Appends entries (truncating any conflicting suffix) and sets the hard state, in one
    /// transaction and one fsync. A hard state that differs from the stored one only by its
    /// commit index, with no entries, costs no write (see the module doc).
    pub fn persist(&mut self, ents: &[Entry], hs: Option<&HardState>) -> Result<(), StorageError> {
        let Some(first) = ents.first() else {
            return match hs {
                Some(hs) if hs.term == self.hard_state.term && hs.vote == self.hard_state.vote => {
                    self.set_commit(hs.commit)
                }
                Some(hs) => self.set_hard_state(hs.clone()),
                None => Ok(()),
            };
        };
        if first.index <= self.snapshot_index() {
            return Err(StorageError::Invalid(format!(
                "append at {} overlaps the snapshot at {}",
                first.index,
                self.snapshot_index()
            )));
        }
        if first.index > self.last_idx() + 1 {
            return Err(StorageError::Invalid(format!(
                "append at {} leaves a gap after {}",
                first.index,
                self.last_idx()
            )));
        }
        let tx = self.db.begin_write().map_err(redb_err)?;
        let trimmed;
        {
            let mut t = tx.open_table(ENTRIES).map_err(redb_err)?;
            if first.index <= self.last_idx() {
                t.retain_in(first.index.., |_, _| false).map_err(redb_err)?;
            }
            trimmed = self.trim_chunk(&mut t, self.first_idx().min(first.index))?;
            for e in ents {
                let bytes = encode(e, "log entry")?;
                t.insert(e.index, bytes.as_slice()).map_err(redb_err)?;
            }
            // Without a new hard state, the current one goes along: it carries a commit index
            // that may have been kept in memory only so far.
            let bytes = encode(hs.unwrap_or(&self.hard_state), "meta")?;
            let mut m = tx.open_table(META).map_err(redb_err)?;
            m.insert(KEY_HARD_STATE, bytes.as_slice())
                .map_err(redb_err)?;
        }
        commit_durable(tx)?;
        self.disk_first = trimmed;
        let keep = (first.index - self.first_idx()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
        if let Some(hs) = hs {
            self.hard_state = hs.clone();
        }
        Ok(())
    }

    /// Persists the hard state (term, vote, commit).
    pub fn set_hard_state(&mut self, hs: HardState) -> Result<(), StorageError> {
        self.put_meta(KEY_HARD_STATE, &hs)?;
        self.hard_state = hs;
        Ok(())
    }

    /// Records the commit index (from a LightReady or a commit-only hard state) in memory; it
    /// is written with the next durable write. Never moves it backwards.
    pub fn set_commit(&mut self, commit: u64) -> Result<(), StorageError> {
        if commit > self.hard_state.commit {
            self.hard_state.commit = commit;
            COMMITS_UNSYNCED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Persists the conf state after a membership change was applied.
    pub fn set_conf_state(&mut self, cs: ConfState) -> Result<(), StorageError> {
        self.put_meta(KEY_CONF_STATE, &cs)?;
        self.conf_state = cs;
        Ok(())
    }

    fn put_meta(&self, key: &str, msg: &dyn protobuf::Message) -> Result<(), StorageError> {
        let bytes = encode(msg, "meta")?;
        let tx = self.db.begin_write().map_err(redb_err)?;
        {
            let mut t = tx.open_table(META).map_err(redb_err)?;
            t.insert(key, bytes.as_slice()).map_err(redb_err)?;
        }
        commit_durable(tx)
    }

    /// Installs a snapshot received from the leader (or made at bootstrap): the log is replaced,
    /// the conf state and the hard state's commit follow the snapshot.
    pub fn apply_snapshot(&mut self, snap: Snapshot) -> Result<(), StorageError> {
        let meta = snap.get_metadata().clone();
        if meta.index <= self.snapshot_index() && self.snapshot_index() != 0 {
            return Err(StorageError::Invalid(format!(
                "snapshot at {} is older than the one held at {}",
                meta.index,
                self.snapshot_index()
            )));
        }
        let mut hs = self.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        let tx = self.db.begin_write().map_err(redb_err)?;
        {
            let mut t = tx.open_table(ENTRIES).map_err(redb_err)?;
            t.retain(|_, _| false).map_err(redb_err)?;
            let mut m = tx.open_table(META).map_err(redb_err)?;
            for (key, msg) in [
                (KEY_SNAPSHOT, &snap as &dyn protobuf::Message),
                (KEY_CONF_STATE, meta.get_conf_state()),
                (KEY_HARD_STATE, &hs),
            ] {
                let bytes = encode(msg, "meta")?;
                m.insert(key, bytes.as_slice()).map_err(redb_err)?;
            }
            m.remove(KEY_SNAPSHOT_FILE).map_err(redb_err)?;
        }
        commit_durable(tx)?;
        // Older files; a newer one may be a build being written (it will be ignored).
        snapfile::remove_others(&self.dir, None, meta.index);
        self.snapshot_file = None;
        self.entries.clear();
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state = hs;
        self.snapshot = snap;
        self.disk_first = self.first_idx();
        Ok(())
    }

    /// Stores a snapshot of the applied state at `index` and drops the log before `keep_from`
    /// (see [`Self::store_snapshot_file`]), writing its file on this thread: the Raft loop
    /// writes the file on the thread that encodes the snapshot instead
    /// ([`Self::snapshot_at`], [`snapfile::write`]).
    pub fn compact(
        &mut self,
        index: u64,
        data: Vec<u8>,
        keep_from: u64,
        conf: ConfState,
    ) -> Result<(), StorageError> {
        if index <= self.snapshot_index() {
            return Ok(());
        }
        let snap = self.snapshot_at(index, data, conf)?;
        let file = snapfile::write(&self.dir, &snap)?;
        self.store_snapshot_file(snap, file, keep_from)
    }

    /// A snapshot of the applied state at `index` (which must be in the log): its term comes
    /// from the log, `conf` is the conf state as of `index`.
    pub fn snapshot_at(
        &self,
        index: u64,
        data: Vec<u8>,
        conf: ConfState,
    ) -> Result<Snapshot, StorageError> {
        if index > self.last_idx() {
            return Err(StorageError::Invalid(format!(
                "compact to {index} beyond last index {}",
                self.last_idx()
            )));
        }
        let term = self.entry_term(index)?;
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        meta.set_conf_state(conf);
        let mut snap = Snapshot::default();
        snap.set_metadata(meta);
        snap.data = data.into();
        Ok(snap)
    }

    /// The directory snapshot files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes `snap`, already written durably to the file `file` names, the latest snapshot,
    /// and drops the log before `keep_from` (clamped to `..= index + 1`): entries from
    /// `keep_from` on stay, so that followers that lag a little catch up from the log. One
    /// small write: the pointer, the hard state (its commit at least the snapshot's index) and
    /// the truncation. Older snapshot files are removed after it. A snapshot not newer than the
    /// one held is ignored (its file removed).
    pub fn store_snapshot_file(
        &mut self,
        snap: Snapshot,
        file: snapfile::Pointer,
        keep_from: u64,
    ) -> Result<(), StorageError> {
        let index = snap.get_metadata().index;
        let current = self.snapshot_index();
        if index <= current {
            snapfile::remove_others(&self.dir, self.snapshot_file.as_deref(), current);
            return Ok(());
        }
        if index > self.last_idx() || self.entry_term(index)? != snap.get_metadata().term {
            return Err(StorageError::Invalid(format!(
                "snapshot at {index} (term {}) is not in the log",
                snap.get_metadata().term
            )));
        }
        let keep_from = keep_from.clamp(self.first_idx(), index + 1);
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(index);
        let hs_bytes = encode(&hs, "meta")?;
        let tx = self.db.begin_write().map_err(redb_err)?;
        let trimmed;
        {
            let mut m = tx.open_table(META).map_err(redb_err)?;
            m.insert(KEY_SNAPSHOT_FILE, file.encode().as_slice())
                .map_err(redb_err)?;
            m.remove(KEY_SNAPSHOT).map_err(redb_err)?;
            m.insert(KEY_HARD_STATE, hs_bytes.as_slice())
                .map_err(redb_err)?;
            let mut t = tx.open_table(ENTRIES).map_err(redb_err)?;
            trimmed = self.trim_chunk(&mut t, keep_from)?;
        }
        commit_durable(tx)?;
        self.disk_first = trimmed;
        snapfile::remove_others(&self.dir, Some(&file.name), index);
        self.snapshot_file = Some(file.name);
        let drop = (keep_from - self.first_idx()) as usize;
        self.entries.drain(..drop);
        self.hard_state = hs;
        self.snapshot = snap;
        Ok(())
    }

    /// Deletes the next chunk of entries that are still on disk below the log's start (in the
    /// caller's transaction; [`Self::trimmed`] once it is committed).
    /// `log_start`: where the log starts once the transaction is committed.
    fn trim_chunk(
        &self,
        t: &mut redb::Table<u64, &[u8]>,
        log_start: u64,
    ) -> Result<u64, StorageError> {
        let upto = log_start.min(self.disk_first.saturating_add(TRIM_CHUNK));
        if self.disk_first < upto {
            t.retain_in(self.disk_first..upto, |_, _| false)
                .map_err(redb_err)?;
        }
        Ok(upto.max(self.disk_first))
    }

    /// Entries dropped from the log in memory that are still on disk (deleted a chunk per
    /// durable write).
    pub fn untrimmed(&self) -> u64 {
        self.first_idx().saturating_sub(self.disk_first)
    }

    fn entry_term(&self, idx: u64) -> Result<u64, StorageError> {
        if idx == self.snapshot_index() {
            return Ok(self.snapshot.get_metadata().term);
        }
        let off = self.first_idx();
        if idx < off {
            return Err(StorageError::Invalid(format!("no entry at {idx}")));
        }
        self.entries
            .get((idx - off) as usize)
            .map(|e| e.term)
            .ok_or_else(|| StorageError::Invalid(format!("no entry at {idx}")))
    }
}

/// `msg`'s encoding (`what` names it in the error).
pub(crate) fn encode(
    msg: &dyn protobuf::Message,
    what: &'static str,
) -> Result<Vec<u8>, StorageError> {
    msg.write_to_bytes()
        .map_err(|source| StorageError::Corrupt { what, source })
}

fn decode<M: protobuf::Message>(bytes: &[u8], what: &'static str) -> Result<M, StorageError> {
    M::parse_from_bytes(bytes).map_err(|source| StorageError::Corrupt { what, source })
}

impl raft::Storage for DiskStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let first = self.first_idx();
        if low < first {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if high > self.last_idx() + 1 {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let lo = (low - first) as usize;
        let hi = (high - first) as usize;
        let mut out = Vec::with_capacity(hi - lo);
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut size = 0u64;
        for e in &self.entries[lo..hi] {
            size += u64::from(e.compute_size());
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let snap = self.snapshot.get_metadata();
        if idx == snap.index {
            return Ok(snap.term);
        }
        let first = self.first_idx();
        if idx < first {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if idx > self.last_idx() {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        Ok(self.entries[(idx - first) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_idx())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_idx())
    }

    fn snapshot(&self, _request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // A member added after the snapshot would ignore it (raft-rs drops a snapshot whose conf
        // state lacks the receiver): Raft asks again once the next one (already being built
        // after the membership change) is stored.
        let cs = self.snapshot.get_metadata().get_conf_state();
        if !cs.voters.contains(&to) && !cs.learners.contains(&to) {
            return Err(raft::Error::Store(
                RaftStorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("e{index}").into_bytes().into(),
            ..Default::default()
        }
    }

    fn snap(index: u64, term: u64, voters: Vec<u64>) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.mut_metadata().mut_conf_state().voters = voters;
        s.data = b"state".to_vec().into();
        s
    }

    #[test]
    fn append_truncate_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let mut s = DiskStorage::open(&path).unwrap();
            assert!(s.is_empty());
            s.apply_snapshot(snap(1, 1, vec![1])).unwrap();
            s.append(&[entry(2, 1), entry(3, 1), entry(4, 1)]).unwrap();
            // A conflicting suffix from a new leader replaces 3 and 4.
            s.append(&[entry(3, 2)]).unwrap();
            let hs = HardState {
                term: 2,
                vote: 1,
                commit: 3,
                ..Default::default()
            };
            s.set_hard_state(hs).unwrap();
            assert_eq!(s.last_index().unwrap(), 3);
            assert_eq!(s.term(3).unwrap(), 2);
        }
        let s = DiskStorage::open(&path).unwrap();
        assert!(!s.is_empty());
        assert_eq!(s.first_index().unwrap(), 2);
        assert_eq!(s.last_index().unwrap(), 3);
        assert_eq!(s.term(1).unwrap(), 1);
        assert_eq!(s.term(3).unwrap(), 2);
        let st = s.initial_state().unwrap();
        assert_eq!(st.hard_state.commit, 3);
        assert_eq!(st.hard_state.term, 2);
        assert_eq!(st.conf_state.voters, vec![1]);
        let ents = s
            .entries(2, 4, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(ents.iter().map(|e| e.index).collect::<Vec<_>>(), vec![2, 3]);
        assert!(matches!(
            s.entries(1, 3, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(RaftStorageError::Compacted))
        ));
    }

    #[test]
    fn compaction_keeps_tail_and_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let mut s = DiskStorage::open(&path).unwrap();
            s.apply_snapshot(snap(1, 1, vec![1, 2, 3])).unwrap();
            let ents: Vec<_> = (2..=10).map(|i| entry(i, 1)).collect();
            s.append(&ents).unwrap();
            s.compact(7, b"at7".to_vec(), 8, s.conf_state().clone())
                .unwrap();
            assert_eq!(s.first_index().unwrap(), 8);
            assert_eq!(s.term(7).unwrap(), 1);
        }
        let s = DiskStorage::open(&path).unwrap();
        assert_eq!(s.first_index().unwrap(), 8);
        assert_eq!(s.last_index().unwrap(), 10);
        let sn = s.snapshot(0, 2).unwrap();
        assert_eq!(sn.get_metadata().index, 7);
        assert_eq!(sn.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
        assert_eq!(&sn.data[..], b"at7");
    }

    #[test]
    fn persist_writes_entries_and_hard_state_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let mut s = DiskStorage::open(&path).unwrap();
            s.apply_snapshot(snap(1, 1, vec![1])).unwrap();
            let hs = HardState {
                term: 3,
                vote: 1,
                commit: 2,
                ..Default::default()
            };
            s.persist(&[entry(2, 3), entry(3, 3)], Some(&hs)).unwrap();
            // A hard state alone (no entries) that changes the term or vote is persisted too.
            let hs2 = HardState {
                term: 4,
                vote: 0,
                ..hs.clone()
            };
            s.persist(&[], Some(&hs2)).unwrap();
        }
        let s = DiskStorage::open(&path).unwrap();
        assert_eq!(s.last_index().unwrap(), 3);
        assert_eq!((s.hard_state().term, s.hard_state().vote), (4, 0));
        assert_eq!(s.hard_state().commit, 2);
    }

    #[test]
    fn rejects_gaps_and_old_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DiskStorage::open(&dir.path().join("r.redb")).unwrap();
        s.apply_snapshot(snap(5, 1, vec![1])).unwrap();
        assert!(s.append(&[entry(8, 1)]).is_err());
        assert!(s.append(&[entry(5, 1)]).is_err());
        assert!(s.apply_snapshot(snap(3, 1, vec![1])).is_err());
        // The store is unchanged by the rejected calls.
        assert_eq!(s.last_index().unwrap(), 5);
        s.append(&[entry(6, 1)]).unwrap();
        assert_eq!(s.last_index().unwrap(), 6);
    }

    #[test]
    fn compaction_keeps_a_trailing_window_behind_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let mut s = DiskStorage::open(&path).unwrap();
            s.apply_snapshot(snap(1, 1, vec![1, 2, 3])).unwrap();
            let ents: Vec<_> = (2..=20).map(|i| entry(i, 1)).collect();
            s.append(&ents).unwrap();
            // Snapshot at 15, keep entries from 11 on.
            s.compact(15, b"at15".to_vec(), 11, s.conf_state().clone())
                .unwrap();
            assert_eq!(s.first_index().unwrap(), 11);
            assert_eq!(s.term(15).unwrap(), 1);
            assert_eq!(s.hard_state().commit, 15);
            // A window that would reach before the log is clamped to it.
            s.compact(17, b"at17".to_vec(), 3, s.conf_state().clone())
                .unwrap();
            assert_eq!(s.first_index().unwrap(), 11);
            s.append(&[entry(21, 2)]).unwrap();
        }
        let s = DiskStorage::open(&path).unwrap();
        assert_eq!(s.first_index().unwrap(), 11);
        assert_eq!(s.last_index().unwrap(), 21);
        assert_eq!(s.latest_snapshot().get_metadata().index, 17);
        assert_eq!(s.hard_state().commit, 17);
        let ents = s
            .entries(11, 14, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(
            ents.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![11, 12, 13]
        );
        assert!(matches!(
            s.entries(10, 14, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(RaftStorageError::Compacted))
        ));
        assert!(matches!(
            s.term(10),
            Err(raft::Error::Store(RaftStorageError::Compacted))
        ));
    }

    #[test]
    fn a_commit_only_hard_state_costs_no_write_and_rides_with_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let mut s = DiskStorage::open(&path).unwrap();
            s.apply_snapshot(snap(1, 1, vec![1])).unwrap();
            let hs = HardState {
                term: 2,
                vote: 1,
                commit: 1,
                ..Default::default()
            };
            s.persist(&[entry(2, 2), entry(3, 2)], Some(&hs)).unwrap();
            s.persist(
                &[],
                Some(&HardState {
                    commit: 2,
                    ..hs.clone()
                }),
            )
            .unwrap();
            s.set_commit(3).unwrap();
            assert_eq!(s.hard_state().commit, 3);
        }
        {
            // Not written: a crash here loses only the commit index (learned again).
            let mut s = DiskStorage::open(&path).unwrap();
            assert_eq!(s.hard_state().commit, 1);
            s.set_commit(3).unwrap();
            s.append(&[entry(4, 2)]).unwrap();
        }
        let s = DiskStorage::open(&path).unwrap();
        assert_eq!(s.hard_state().commit, 3);
        assert_eq!(s.hard_state().term, 2);
        assert_eq!(s.last_index().unwrap(), 4);
    }
}
