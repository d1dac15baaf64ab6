//! A redo journal under redb: a commit is made durable by one sequential append to a small
//! preallocated file instead of flushing the pages it scattered over the store file.
//!
//! redb makes a commit durable by writing its pages (about 18 for a batch of eight creates, all
//! over the file) and calling [`StorageBackend::sync_data`]. On a virtual disk that flush costs
//! a little per scattered page on top of the flush itself (BENCHMARKS.md, 2026-12-02), and the
//! single writer waits for it. This backend passes every write to the store file at once (so
//! reads see it) and keeps a copy; `sync_data` appends the copies as one record to the journal
//! and flushes the journal only. Every so often (the journal full, a record too large, closing)
//! it flushes the store file instead and starts the journal over.
//!
//! After a crash the store file holds everything up to the last checkpoint, plus any mix of the
//! writes made since (the kernel may have written some back); replaying the journal's records
//! in order puts back exactly what each completed `sync_data` had covered. That is the state
//! redb expects after a crash on a plain file, so its own recovery runs as usual. Replay happens
//! in [`JournaledFile::open`], before redb reads the file, under a lock on the journal so that a
//! second process cannot replay underneath the first.
//!
//! A journal names the store file it belongs to (device and inode); one found beside a different
//! file (the store replaced after a crash) is kept aside under another name and not applied.
//!
//! Layout of `<store>.journal`: a header block (magic, epoch, owner, checksum), then records (magic,
//! epoch, sequence number, payload length, CRC-32 of all of that and the payload, payload). A
//! record counts only if all of it is intact, its epoch is the header's and its sequence number
//! the next one; a torn last record (a crash during the append) is ignored: its commit never
//! returned. Starting over writes a header with the next epoch, so older records left in the
//! file no longer count.

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The journal's size, written out once when it is created so that appends never allocate
/// blocks (an allocation would make each flush commit the filesystem's own journal too).
pub(crate) const JOURNAL_BYTES: u64 = 16 << 20;
const HEADER_BYTES: u64 = 4096;
const HEADER_MAGIC: &[u8; 8] = b"SCIMJRN1";
const RECORD_MAGIC: u32 = 0x4a52_4e52;
/// magic, epoch, sequence, payload length, CRC.
const RECORD_HEAD: usize = 4 + 8 + 8 + 8 + 4;
const OP_WRITE: u8 = 1;
const OP_SET_LEN: u8 = 2;

/// The journal that goes with the store file at `store`.
pub(crate) fn journal_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// Where the records of a journal that belongs to another file are kept.
fn orphan_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    // A clock before 1970 only changes the name's number; the name stays unique enough.
    let now = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs(),
        Err(_) => 0,
    };
    name.push(format!(".journal.orphaned-{now}"));
    PathBuf::from(name)
}

#[derive(Debug)]
struct State {
    file: File,
    epoch: u64,
    /// Where the next record goes.
    end: u64,
    seq: u64,
    /// The payload of the next record: every write and resize since the last `sync_data`.
    pending: Vec<u8>,
    /// `pending` outgrew what one record may hold and was dropped: the next `sync_data` flushes
    /// the store file instead.
    overflowed: bool,
    /// Writes since the last flush of either file.
    dirty: bool,
}

/// The store file with its journal; see the module documentation.
#[derive(Debug)]
pub(crate) struct JournaledFile {
    store: FileBackend,
    /// The store file again, for flushing it (redb's backend does not lend its file out).
    store_file: File,
    owner: Owner,
    journal_path: PathBuf,
    state: Mutex<State>,
}

/// Counts of what [`JournaledFile::open`] replayed, for the log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replayed {
    pub records: u64,
    pub bytes: u64,
    /// The journal did not exist before this open.
    pub created: bool,
}

/// The error type of the backend's I/O methods (`std::io::Error` without redb's
/// `experimental-api-5`).
type BackendIoError = io::Error;

/// Which file a journal belongs to: its device and inode. A store file replaced by another
/// (a restore by `mv`, a copy elsewhere) must not get the old file's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    dev: u64,
    ino: u64,
}

impl Owner {
    fn of(file: &File) -> io::Result<Owner> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        Ok(Owner {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

const HEADER_USED: usize = 8 + 8 + 8 + 8;

fn header_block(epoch: u64, owner: Owner) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_BYTES as usize];
    h[..8].copy_from_slice(HEADER_MAGIC);
    h[8..16].copy_from_slice(&epoch.to_le_bytes());
    h[16..24].copy_from_slice(&owner.dev.to_le_bytes());
    h[24..32].copy_from_slice(&owner.ino.to_le_bytes());
    let crc = crc32fast::hash(&h[..HEADER_USED]);
    h[HEADER_USED..HEADER_USED + 4].copy_from_slice(&crc.to_le_bytes());
    h
}

fn read_header(file: &File) -> io::Result<Option<(u64, Owner)>> {
    let mut h = [0u8; HEADER_USED + 4];
    match file.read_exact_at(&mut h, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if &h[..8] != HEADER_MAGIC {
        return Ok(None);
    }
    let mut c = [0u8; 4];
    c.copy_from_slice(&h[HEADER_USED..]);
    if crc32fast::hash(&h[..HEADER_USED]) != u32::from_le_bytes(c) {
        return Ok(None);
    }
    let (Some(epoch), Some(dev), Some(ino)) = (u64_at(&h, 8), u64_at(&h, 16), u64_at(&h, 24))
    else {
        return Ok(None);
    };
    Ok(Some((epoch, Owner { dev, ino })))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// The records of `epoch` from the journal's start, in order, as long as they are intact.
fn read_records(file: &File, epoch: u64, len: u64) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut at = HEADER_BYTES;
    let mut seq = 0u64;
    let mut head = [0u8; RECORD_HEAD];
    while at + RECORD_HEAD as u64 <= len {
        file.read_exact_at(&mut head, at)?;
        let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let (Some(e), Some(s), Some(n)) = (u64_at(&head, 4), u64_at(&head, 12), u64_at(&head, 20))
        else {
            break;
        };
        if magic != RECORD_MAGIC || e != epoch || s != seq {
            break;
        }
        let body_at = at + RECORD_HEAD as u64;
        if n > len.saturating_sub(body_at) {
            break;
        }
        let mut payload = vec![0u8; n as usize];
        file.read_exact_at(&mut payload, body_at)?;
        let crc = u32::from_le_bytes([head[28], head[29], head[30], head[31]]);
        let mut h = crc32fast::Hasher::new();
        h.update(&head[..28]);
        h.update(&payload);
        if h.finalize() != crc {
            break;
        }
        out.push(payload);
        at = body_at + n;
        seq += 1;
    }
    Ok(out)
}

/// Applies one record's operations to the store file.
fn apply(store: &File, payload: &[u8]) -> io::Result<()> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "a journal record is malformed");
    let mut at = 0usize;
    while at < payload.len() {
        let op = payload[at];
        at += 1;
        match op {
            OP_WRITE => {
                let offset = u64_at(payload, at).ok_or_else(bad)?;
                let n = u64_at(payload, at + 8).ok_or_else(bad)? as usize;
                at += 16;
                let data = payload.get(at..at + n).ok_or_else(bad)?;
                store.write_all_at(data, offset)?;
                at += n;
            }
            OP_SET_LEN => {
                let len = u64_at(payload, at).ok_or_else(bad)?;
                at += 8;
                store.set_len(len)?;
            }
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// Opens (creating if needed) the journal at `path`, zero-filled to its full size.
fn open_journal(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let len = file.metadata()?.len();
    if len < JOURNAL_BYTES {
        let zeros = vec![0u8; 1 << 20];
        let mut at = len;
        while at < JOURNAL_BYTES {
            let n = (JOURNAL_BYTES - at).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        file.sync_all()?;
        // A journal whose name a power loss forgot would leave its records unreplayed.
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

/// Whether the journal is held by another process.
fn locked(e: &std::fs::TryLockError) -> bool {
    matches!(e, std::fs::TryLockError::WouldBlock)
}

/// Why [`JournaledFile::open`] failed.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Another process has this store open.
    Locked,
    Io(io::Error),
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

impl JournaledFile {
    /// Opens the store file `store` (created when `create`), replays its journal into it and
    /// starts the journal over.
    pub(crate) fn open(store: &Path, create: bool) -> Result<(JournaledFile, Replayed), OpenError> {
        let store_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(store)?;
        let path = journal_path(store);
        let created = !path.exists();
        let journal = open_journal(&path)?;
        // Held until the journal's handle closes; redb takes its own lock on the store file.
        if let Err(e) = journal.try_lock() {
            return Err(if locked(&e) {
                OpenError::Locked
            } else {
                OpenError::Io(io::Error::other(e.to_string()))
            });
        }
        let len = journal.metadata()?.len();
        let owner = Owner::of(&store_file)?;
        let mut replayed = Replayed {
            created,
            ..Replayed::default()
        };
        let epoch = match read_header(&journal)? {
            Some((epoch, was)) if was != owner => {
                let records = read_records(&journal, epoch, len)?;
                if !records.is_empty() {
                    // Keep the records for whoever wants to look; never apply them here.
                    let aside = orphan_path(store);
                    std::fs::copy(&path, &aside)?;
                    tracing::error!(
                        store = %store.display(),
                        journal = %aside.display(),
                        records = records.len(),
                        "store: the journal beside the store belongs to another file (the store \
                         was replaced or copied after a crash); its records were not applied and \
                         are kept in the journal copy named here"
                    );
                }
                epoch.wrapping_add(1)
            }
            Some((epoch, _)) => {
                let records = read_records(&journal, epoch, len)?;
                for r in &records {
                    apply(&store_file, r)?;
                    replayed.records += 1;
                    replayed.bytes += r.len() as u64;
                }
                if !records.is_empty() {
                    store_file.sync_all()?;
                }
                epoch.wrapping_add(1)
            }
            None => 1,
        };
        journal.write_all_at(&header_block(epoch, owner), 0)?;
        journal.sync_data()?;
        let backend = FileBackend::new(store_file.try_clone()?)
            .map_err(|e| OpenError::Io(io::Error::other(e.to_string())))?;
        Ok((
            JournaledFile {
                store: backend,
                store_file,
                owner,
                journal_path: path,
                state: Mutex::new(State {
                    file: journal,
                    epoch,
                    end: HEADER_BYTES,
                    seq: 0,
                    pending: Vec::new(),
                    overflowed: false,
                    dirty: false,
                }),
            },
            replayed,
        ))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Flushes the store file and starts the journal over: everything written so far is in the
    /// store file itself.
    fn checkpoint(&self, s: &mut State) -> io::Result<()> {
        self.store_file.sync_data()?;
        let next = s.epoch.wrapping_add(1);
        s.file.write_all_at(&header_block(next, self.owner), 0)?;
        s.file.sync_data()?;
        s.epoch = next;
        s.end = HEADER_BYTES;
        s.seq = 0;
        s.pending.clear();
        s.overflowed = false;
        s.dirty = false;
        Ok(())
    }

    fn note(&self, s: &mut State, op: &[&[u8]]) {
        s.dirty = true;
        if s.overflowed {
            return;
        }
        let n: usize = op.iter().map(|p| p.len()).sum();
        if (s.pending.len() + n + RECORD_HEAD) as u64 > JOURNAL_BYTES - HEADER_BYTES {
            s.overflowed = true;
            s.pending = Vec::new();
            return;
        }
        for p in op {
            s.pending.extend_from_slice(p);
        }
    }
}

impl StorageBackend for JournaledFile {
    fn len(&self) -> Result<u64, BackendIoError> {
        self.store.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendIoError> {
        self.store.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendIoError> {
        let mut s = self.state();
        self.store.set_len(len)?;
        self.note(&mut s, &[&[OP_SET_LEN], &len.to_le_bytes()]);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), BackendIoError> {
        let mut s = self.state();
        if !s.dirty {
            return Ok(());
        }
        let need = (RECORD_HEAD + s.pending.len()) as u64;
        if s.overflowed || s.end + need > JOURNAL_BYTES {
            return self.checkpoint(&mut s);
        }
        let mut head = Vec::with_capacity(RECORD_HEAD);
        head.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
        head.extend_from_slice(&s.epoch.to_le_bytes());
        head.extend_from_slice(&s.seq.to_le_bytes());
        head.extend_from_slice(&(s.pending.len() as u64).to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&head);
        h.update(&s.pending);
        head.extend_from_slice(&h.finalize().to_le_bytes());
        // Two writes, one flush: the CRC covers both, so a crash between them tears the record.
        s.file.write_all_at(&head, s.end)?;
        s.file
            .write_all_at(&s.pending, s.end + RECORD_HEAD as u64)?;
        s.file.sync_data()?;
        s.end += need;
        s.seq += 1;
        s.pending.clear();
        // One large commit should not keep its buffer for the daemon's lifetime.
        if s.pending.capacity() > 1 << 20 {
            s.pending = Vec::new();
        }
        s.dirty = false;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendIoError> {
        let mut s = self.state();
        self.store.write(offset, data)?;
        self.note(
            &mut s,
            &[
                &[OP_WRITE],
                &offset.to_le_bytes(),
                &(data.len() as u64).to_le_bytes(),
                data,
            ],
        );
        Ok(())
    }

    fn close(&self) -> Result<(), BackendIoError> {
        // A store closed cleanly is whole in its own file, and the journal goes: a stopped
        // daemon's store is one file to copy. After a failed flush the journal stays, to be
        // replayed by the next open.
        let mut s = self.state();
        let flushed = self.checkpoint(&mut s);
        if flushed.is_ok() {
            if let Err(e) = std::fs::remove_file(&self.journal_path) {
                tracing::warn!(error = %e, journal = %self.journal_path.display(), "store: cannot remove the journal after a clean close");
            }
        }
        // The lock goes with the handle anyway; unlocking now lets a reopen in this process in
        // before redb drops this backend (read transactions may hold it a while).
        let _ = s.file.unlock();
        let closed = self.store.close();
        flushed.and(closed)
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.store.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.store.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.store.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.store.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.store.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.store.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(b: u8) -> Vec<u8> {
        vec![b; 4096]
    }

    fn contents(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    /// A crash after two journaled syncs, with none of the store file's own writes on disk
    /// (the kernel wrote nothing back): the replay puts back exactly what the syncs covered.
    #[test]
    fn a_replay_restores_what_each_sync_covered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let (j, r) = JournaledFile::open(&path, true).unwrap();
        assert!(r.created);
        j.write(0, &page(1)).unwrap();
        j.sync_data().unwrap();
        j.write(4096, &page(2)).unwrap();
        j.write(0, &page(3)).unwrap();
        j.sync_data().unwrap();
        // Written but never synced: may or may not survive a crash.
        j.write(8192, &page(9)).unwrap();
        drop(j);
        // The crash lost everything the store file had not flushed.
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();

        let (j, r) = JournaledFile::open(&path, false).unwrap();
        assert_eq!((r.records, r.created), (2, false));
        let mut want = page(3);
        want.extend(page(2));
        assert_eq!(contents(&path), want);
        assert_eq!(j.len().unwrap(), 8192);
        // The replayed journal starts over: a second crash replays nothing more.
        drop(j);
        let (_j, r) = JournaledFile::open(&path, false).unwrap();
        assert_eq!(r.records, 0);
        assert_eq!(contents(&path), want);
    }

    /// A crash in the middle of an append leaves a torn record; its sync never returned, so
    /// it is not replayed, and neither is anything after it.
    #[test]
    fn a_torn_record_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let (j, _) = JournaledFile::open(&path, true).unwrap();
        j.write(0, &page(1)).unwrap();
        j.sync_data().unwrap();
        j.write(0, &page(2)).unwrap();
        j.sync_data().unwrap();
        let second_ends = j.state().end;
        drop(j);
        let journal = OpenOptions::new()
            .write(true)
            .open(journal_path(&path))
            .unwrap();
        journal.write_all_at(&[0xff], second_ends - 1).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();

        let (_j, r) = JournaledFile::open(&path, false).unwrap();
        assert_eq!(r.records, 1);
        assert_eq!(contents(&path), page(1));
    }

    /// More than one record can hold goes to the store file itself; the journal starts over
    /// under a new epoch and the records of the old one, still in the file, no longer count.
    #[test]
    fn an_oversized_sync_flushes_the_store_and_retires_older_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let (j, _) = JournaledFile::open(&path, true).unwrap();
        j.write(0, &page(1)).unwrap();
        j.sync_data().unwrap();
        let big = vec![5u8; (JOURNAL_BYTES / 4) as usize];
        for i in 0..4u64 {
            j.write(4096 + i * big.len() as u64, &big).unwrap();
        }
        assert!(j.state().overflowed);
        assert!(
            j.state().pending.is_empty(),
            "the copies are dropped, not kept"
        );
        j.sync_data().unwrap();
        let (seq, end) = {
            let s = j.state();
            (s.seq, s.end)
        };
        assert_eq!((seq, end), (0, HEADER_BYTES));
        drop(j);
        // The first record is still in the journal's bytes, under the old epoch.
        let mut magic = [0u8; 4];
        File::open(journal_path(&path))
            .unwrap()
            .read_exact_at(&mut magic, HEADER_BYTES)
            .unwrap();
        assert_eq!(u32::from_le_bytes(magic), RECORD_MAGIC);
        // Overwrite page 0 behind the journal's back: a stale replay would put page(1) back.
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&page(7), 0)
            .unwrap();
        let (_j, r) = JournaledFile::open(&path, false).unwrap();
        assert_eq!(r.records, 0);
        assert_eq!(&contents(&path)[..4096], &page(7)[..]);
        assert_eq!(contents(&path).len() as u64, 4096 + JOURNAL_BYTES);
    }

    /// A store replaced after a crash (a restore by `mv`) does not get the old file's records:
    /// they are kept aside, and the new file is left as it is.
    #[test]
    fn a_journal_is_never_replayed_onto_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let (j, _) = JournaledFile::open(&path, true).unwrap();
        j.write(0, &page(1)).unwrap();
        j.sync_data().unwrap();
        drop(j);
        let other = dir.path().join("backup.redb");
        std::fs::write(&other, page(8)).unwrap();
        std::fs::rename(&other, &path).unwrap();

        let (_j, r) = JournaledFile::open(&path, false).unwrap();
        assert_eq!(r.records, 0);
        assert_eq!(contents(&path), page(8));
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("s.redb.journal.orphaned-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
    }

    #[test]
    fn a_second_open_of_an_open_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let (_j, _) = JournaledFile::open(&path, true).unwrap();
        assert!(matches!(
            JournaledFile::open(&path, false),
            Err(OpenError::Locked)
        ));
    }

    /// After a clean close the store file is whole and the journal is gone.
    #[test]
    fn a_clean_close_leaves_the_store_whole_and_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let (j, _) = JournaledFile::open(&path, true).unwrap();
        j.write(0, &page(4)).unwrap();
        j.set_len(8192).unwrap();
        j.sync_data().unwrap();
        j.close().unwrap();
        assert!(!journal_path(&path).exists());
        let mut want = page(4);
        want.extend(vec![0u8; 4096]);
        assert_eq!(contents(&path), want);
        // And it opens again, a fresh journal beside it.
        let (_j, r) = JournaledFile::open(&path, false).unwrap();
        assert_eq!((r.records, r.created), (0, true));
    }
}

#[cfg(test)]
mod power_loss {
    use super::*;
    use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};

    const T: TableDefinition<&str, u64> = TableDefinition::new("t");

    /// redb on the journal, and a power loss that keeps none of the store file's writes since
    /// it was opened (only the journal's flushed appends): every committed transaction is back
    /// after the replay, and redb opens the result as a sound database.
    #[test]
    fn every_commit_survives_losing_the_store_files_unflushed_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let db = crate::store::handle::open_file(&path, 1 << 20, true).unwrap();
        for c in 0..20u64 {
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(T).unwrap();
                for k in 0..50u64 {
                    t.insert(format!("k{:05}", c * 50 + k).as_str(), c).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let journal = std::fs::read(journal_path(&path)).unwrap();
        drop(db);
        // What the disk held at the power loss: the journal as flushed, the store file as it
        // was when opened (empty: it was created by this open).
        std::fs::write(journal_path(&path), &journal).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();

        let db = crate::store::handle::open_file(&path, 1 << 20, false).unwrap();
        let rtx = db.begin_read().unwrap();
        let t = rtx.open_table(T).unwrap();
        assert_eq!(t.len().unwrap(), 1000);
        for c in 0..20u64 {
            let k = format!("k{:05}", c * 50 + 49);
            assert_eq!(t.get(k.as_str()).unwrap().map(|v| v.value()), Some(c));
        }
    }
}
