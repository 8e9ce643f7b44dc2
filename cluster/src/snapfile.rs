//! Snapshot files: the latest snapshot of the Raft store lives in a file of its own next to
//! `raft.redb`, so that storing a large one (many users' rosters: megabytes) is not a redb write
//! on the Raft thread. The thread that encodes a snapshot also writes it here and makes it
//! durable (written to a temporary name, fsynced, renamed, the directory fsynced); the Raft
//! thread then commits only a [`Pointer`] to it (name and SHA-256) with the log truncation. A
//! file that no committed pointer names (a build that a crash or a newer snapshot overtook) is
//! removed when the store is opened or the next snapshot is stored.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use protobuf::Message as _;
use raft::eraftpb::Snapshot;
use sha2::{Digest, Sha256};

use crate::storage::StorageError;

const PREFIX: &str = "raft-snapshot-";
const SUFFIX: &str = ".bin";

/// What the Raft store records about the snapshot file it relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    pub name: String,
    /// SHA-256 of the file's bytes, hex: a file changed or cut short is refused at load.
    pub sha256: String,
}

impl Pointer {
    pub fn encode(&self) -> Vec<u8> {
        format!("{}\n{}", self.name, self.sha256).into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        let bad = || StorageError::Invalid("undecodable snapshot file pointer".into());
        let s = std::str::from_utf8(bytes).map_err(|_| bad())?;
        let (name, sha256) = s.split_once('\n').ok_or_else(bad)?;
        if index_of(name).is_none() || sha256.len() != 64 {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_string(),
            sha256: sha256.to_string(),
        })
    }
}

/// The index a snapshot file's name carries.
fn index_of(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)
        .and_then(|r| r.strip_suffix(SUFFIX))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Invalid(format!("{what} {}: {e}", path.display()))
}

/// Writes `snap` durably to a file of its own in `dir` and returns the pointer to it. Safe to
/// call off the Raft thread: it touches no file the store uses.
pub fn write(dir: &Path, snap: &Snapshot) -> Result<Pointer, StorageError> {
    let bytes = crate::storage::encode(snap, "snapshot")?;
    let name = format!("{PREFIX}{:020}{SUFFIX}", snap.get_metadata().index);
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(&name);
    {
        let mut f = open_private(&tmp).map_err(|e| io_err("cannot create", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_err("cannot write", &tmp, e))?;
    }
    fs::rename(&tmp, &path).map_err(|e| io_err("cannot rename", &tmp, e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("cannot sync", dir, e))?;
    Ok(Pointer {
        name,
        sha256: hex::encode(Sha256::digest(&bytes)),
    })
}

/// The data of a snapshot may hold sealed secrets and every user's roster: owner-only.
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// Reads the snapshot `p` names, refusing a file whose bytes are not the ones recorded.
pub fn read(dir: &Path, p: &Pointer) -> Result<Snapshot, StorageError> {
    let path = dir.join(&p.name);
    let bytes = fs::read(&path).map_err(|e| io_err("cannot read", &path, e))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    if sha != p.sha256 {
        return Err(StorageError::Invalid(format!(
            "snapshot file {} does not hold what the store recorded (SHA-256 {sha}, expected {})",
            path.display(),
            p.sha256
        )));
    }
    Snapshot::parse_from_bytes(&bytes).map_err(|source| StorageError::Corrupt {
        what: "snapshot file",
        source,
    })
}

/// Removes the snapshot files (and leftover temporary files) in `dir` of an index up to `upto`,
/// but `keep`. A newer one may be a build still being written. Failures are logged: a stale
/// file costs disk space, not correctness.
pub fn remove_others(dir: &Path, keep: Option<&str>, upto: u64) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let base = name.strip_suffix(".tmp").unwrap_or(name);
        if index_of(base).is_none_or(|i| i > upto) || Some(name) == keep {
            continue;
        }
        if let Err(e) = fs::remove_file(ent.path()) {
            tracing::warn!(file = %ent.path().display(), error = %e, "cannot remove an old snapshot file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::SnapshotMetadata;

    fn snap(index: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.set_metadata(SnapshotMetadata {
            index,
            term: 3,
            ..Default::default()
        });
        s.data = vec![7u8; 1000].into();
        s
    }

    /// Every file name in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn written_read_back_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &snap(42)).unwrap();
        assert_eq!(p.name, "raft-snapshot-00000000000000000042.bin");
        assert_eq!(Pointer::decode(&p.encode()).unwrap(), p);
        assert_eq!(read(dir.path(), &p).unwrap(), snap(42));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(&p.name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // One byte changed: refused with a clear error, not loaded.
        let path = dir.path().join(&p.name);
        let mut b = fs::read(&path).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        fs::write(&path, &b).unwrap();
        let e = read(dir.path(), &p).unwrap_err().to_string();
        assert!(e.contains("does not hold what the store recorded"), "{e}");
        // Missing: an error naming the file.
        fs::remove_file(&path).unwrap();
        let e = read(dir.path(), &p).unwrap_err().to_string();
        assert!(e.contains(&p.name), "{e}");
    }

    #[test]
    fn only_the_kept_file_survives_a_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let old = write(dir.path(), &snap(1)).unwrap();
        let new = write(dir.path(), &snap(2)).unwrap();
        let newer = write(dir.path(), &snap(9)).unwrap();
        fs::write(
            dir.path()
                .join("raft-snapshot-00000000000000000003.bin.tmp"),
            b"x",
        )
        .unwrap();
        fs::write(dir.path().join("raft.redb"), b"x").unwrap();
        fs::write(dir.path().join("raft-snapshot-notes.txt"), b"x").unwrap();
        // Up to index 5: the newer file (a build being written) stays.
        remove_others(dir.path(), Some(&new.name), 5);
        assert_eq!(
            names(dir.path()),
            vec![
                new.name.clone(),
                newer.name.clone(),
                "raft-snapshot-notes.txt".into(),
                "raft.redb".into()
            ]
        );
        assert!(!dir.path().join(&old.name).exists());
    }

    #[test]
    fn malformed_pointers_are_refused() {
        for bad in [
            &b""[..],
            b"raft.redb\nabc",
            b"raft-snapshot-1.bin",
            b"\xff\xfe",
        ] {
            assert!(Pointer::decode(bad).is_err(), "{bad:?}");
        }
    }

    /// The Raft store with snapshot files: what it stores, reads back and refuses.
    mod store {
        use super::*;
        use crate::storage::DiskStorage;
        use raft::eraftpb::{ConfState, Entry};
        use raft::Storage as _;

        fn entries(from: u64, to: u64) -> Vec<Entry> {
            (from..=to)
                .map(|index| Entry {
                    index,
                    term: 2,
                    data: format!("e{index}").into_bytes().into(),
                    ..Default::default()
                })
                .collect()
        }

        /// The snapshot files in `dir`, sorted.
        fn files(dir: &Path) -> Vec<String> {
            names(dir)
                .into_iter()
                .filter(|n| n.starts_with(PREFIX))
                .collect()
        }

        fn voters(v: Vec<u64>) -> ConfState {
            ConfState {
                voters: v,
                ..Default::default()
            }
        }

        #[test]
        fn a_snapshot_lives_in_its_file_and_survives_a_restart() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("raft.redb");
            {
                let mut s = DiskStorage::open(&path).unwrap();
                s.append(&entries(1, 20)).unwrap();
                s.compact(5, b"at5".to_vec(), 4, voters(vec![1])).unwrap();
                s.compact(12, b"at12".to_vec(), 10, voters(vec![1, 2]))
                    .unwrap();
                // Only the latest file is kept.
                assert_eq!(
                    files(dir.path()),
                    vec!["raft-snapshot-00000000000000000012.bin"]
                );
                // A build that a newer snapshot overtook is ignored and its file removed.
                let old = s
                    .snapshot_at(11, b"at11".to_vec(), voters(vec![1]))
                    .unwrap();
                let p = write(dir.path(), &old).unwrap();
                s.store_snapshot_file(old, p, 11).unwrap();
                assert_eq!(files(dir.path()).len(), 1);
                assert_eq!(s.first_index().unwrap(), 10);
            }
            // A leftover of a build a crash interrupted is removed at open.
            fs::write(
                dir.path()
                    .join("raft-snapshot-00000000000000000019.bin.tmp"),
                b"x",
            )
            .unwrap();
            let s = DiskStorage::open(&path).unwrap();
            assert_eq!(
                files(dir.path()),
                vec!["raft-snapshot-00000000000000000012.bin"]
            );
            let sn = s.snapshot(0, 2).unwrap();
            assert_eq!(sn.get_metadata().index, 12);
            assert_eq!(sn.get_metadata().term, 2);
            assert_eq!(sn.get_metadata().get_conf_state().voters, vec![1, 2]);
            assert_eq!(&sn.data[..], b"at12");
            assert_eq!(
                (s.first_index().unwrap(), s.last_index().unwrap()),
                (10, 20)
            );
            assert!(s.hard_state().commit >= 12);
        }

        #[test]
        fn a_snapshot_from_the_leader_is_inline_and_replaces_the_file() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("raft.redb");
            {
                let mut s = DiskStorage::open(&path).unwrap();
                s.append(&entries(1, 8)).unwrap();
                s.compact(6, b"mine".to_vec(), 7, voters(vec![1])).unwrap();
                let mut leader = Snapshot::default();
                leader.mut_metadata().index = 30;
                leader.mut_metadata().term = 4;
                leader.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
                leader.data = b"leader's".to_vec().into();
                s.apply_snapshot(leader).unwrap();
                assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
            }
            let s = DiskStorage::open(&path).unwrap();
            let sn = s.snapshot(0, 3).unwrap();
            assert_eq!(
                (sn.get_metadata().index, &sn.data[..]),
                (30, &b"leader's"[..])
            );
        }

        #[test]
        fn a_damaged_or_missing_snapshot_file_stops_the_open_with_its_name() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("raft.redb");
            {
                let mut s = DiskStorage::open(&path).unwrap();
                s.append(&entries(1, 4)).unwrap();
                s.compact(3, vec![9; 100], 4, voters(vec![1])).unwrap();
            }
            let file = dir.path().join("raft-snapshot-00000000000000000003.bin");
            let good = fs::read(&file).unwrap();
            let mut bad = good.clone();
            bad[10] ^= 0x40;
            fs::write(&file, &bad).unwrap();
            let e = DiskStorage::open(&path).err().expect("refused").to_string();
            assert!(e.contains("does not hold what the store recorded"), "{e}");
            // Refusing it removed nothing: put back, it opens.
            fs::write(&file, &good).unwrap();
            assert_eq!(
                DiskStorage::open(&path)
                    .unwrap()
                    .latest_snapshot()
                    .get_metadata()
                    .index,
                3
            );
            fs::remove_file(&file).unwrap();
            let e = DiskStorage::open(&path).err().expect("refused").to_string();
            assert!(e.contains("raft-snapshot-00000000000000000003.bin"), "{e}");
        }

        #[test]
        fn the_log_behind_a_snapshot_is_deleted_a_chunk_per_write() {
            use crate::storage::TRIM_CHUNK;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("raft.redb");
            let n = 3 * TRIM_CHUNK + 50;
            {
                let mut s = DiskStorage::open(&path).unwrap();
                s.append(&entries(1, n)).unwrap();
                s.compact(n - 10, b"s".to_vec(), n - 20, voters(vec![1]))
                    .unwrap();
                // In memory the log starts at once where asked; on disk one chunk went.
                assert_eq!(s.first_index().unwrap(), n - 20);
                assert_eq!(s.untrimmed(), n - 21 - TRIM_CHUNK);
            }
            let last;
            {
                // What is still on disk comes back as a longer trailing window: committed
                // entries, consistent with the snapshot.
                let mut s = DiskStorage::open(&path).unwrap();
                assert_eq!(s.first_index().unwrap(), TRIM_CHUNK + 1);
                assert_eq!(
                    s.entries(
                        TRIM_CHUNK + 1,
                        n + 1,
                        None,
                        raft::GetEntriesContext::empty(false)
                    )
                    .unwrap()
                    .len() as u64,
                    n - TRIM_CHUNK
                );
                s.compact(n - 5, b"t".to_vec(), n - 5, voters(vec![1]))
                    .unwrap();
                let mut next = n + 1;
                while s.untrimmed() > 0 {
                    assert!(
                        next < n + 10,
                        "trimming does not advance: {}",
                        s.untrimmed()
                    );
                    s.append(&entries(next, next)).unwrap();
                    next += 1;
                }
                last = next - 1;
            }
            let s = DiskStorage::open(&path).unwrap();
            assert_eq!(s.first_index().unwrap(), n - 5);
            assert_eq!(s.last_index().unwrap(), last);
        }
    }
}
