//! The write-ahead log of SCIM writes: what makes a batch of them durable with one small
//! sequential append instead of redb's flush of every page the batch touched.
//!
//! redb makes a commit durable by writing its pages (about 18 for a batch of eight creates,
//! scattered over the file) and flushing the file; on a virtual disk that flush is most of a
//! create's time, and the one writer thread waits for it (BENCHMARKS.md). With the log, the writer
//! appends what each SCIM write did (its [`Effect`](super::write::Effect): the record as written,
//! the memberships added and removed, the change-feed entry) to this file, flushes it, and only
//! then commits the batch to redb without a flush (`Durability::None`), so nothing a reader can
//! see is less durable than the log. From time to time (the log nearly full, the writer idle for
//! a moment with no reads being served, a write that is not logged, closing) the writer makes a
//! durable redb commit, which persists everything before it, and starts the log over: a
//! checkpoint.
//!
//! After a crash redb opens at its last durable commit; replaying the log's effects in order
//! puts back every write answered since. Effects set state (this record, these pairs, this feed
//! entry at this number), so replaying one that redb already holds changes nothing: a crash
//! between a checkpoint's commit and the log's restart is harmless.
//!
//! A log names the store file it belongs to (device and inode) and the schema version its effects
//! are written in; one found beside another file (the store replaced after a crash) is kept aside
//! under another name and not applied.
//!
//! Layout of `<store>.wal`: a header block (magic, epoch, owner, schema version, checksum), then
//! records (magic, epoch, sequence number, payload length, CRC-32 of all of that and the
//! payload, payload). A record counts only if all of it is intact, its epoch is the header's and
//! its sequence number the next one; a torn last record (a crash during the append) is ignored:
//! the writes in it were never answered. Starting over writes a header with the next epoch, so
//! older records left in the file no longer count.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The log's default size (about 40,000 writes of an Okta-shaped user), written out page by page when it is created so that appends never allocate
/// blocks (an allocation makes each flush commit the filesystem's own journal too), and never
/// in large writes (which leave large folios in the page cache that each small append would then
/// dirty and flush whole; BENCHMARKS.md, 2026-12-03).
pub const DEFAULT_WAL_BYTES: u64 = 32 << 20;
/// The least a log may be: a header and room for a few batches.
pub const MIN_WAL_BYTES: u64 = 64 << 10;
const HEADER_BYTES: u64 = 4096;
const FILL_CHUNK: usize = 4096;
const HEADER_MAGIC: &[u8; 8] = b"SCIMWAL1";
const RECORD_MAGIC: u32 = 0x5741_4c52;
/// magic, epoch, sequence, payload length, CRC.
const RECORD_HEAD: usize = 4 + 8 + 8 + 8 + 4;
/// magic, epoch, device, inode, schema version.
const HEADER_USED: usize = 8 + 8 + 8 + 8 + 8;

/// The log that goes with the store file at `store`.
pub(crate) fn wal_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".wal");
    PathBuf::from(name)
}

/// Where the records of a log that belongs to another file are kept.
fn orphan_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    // A clock before 1970 only changes the name's number; the name stays unique enough.
    let now = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs(),
        Err(_) => 0,
    };
    name.push(format!(".wal.orphaned-{now}"));
    PathBuf::from(name)
}

/// Which file a log belongs to: its device and inode. A store file replaced by another (a
/// restore by `mv`, a copy elsewhere) must not get the old file's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    dev: u64,
    ino: u64,
}

impl Owner {
    pub(crate) fn of(path: &Path) -> io::Result<Owner> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Owner {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    epoch: u64,
    owner: Owner,
    schema: u64,
}

fn header_block(h: Header) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_BYTES as usize];
    b[..8].copy_from_slice(HEADER_MAGIC);
    b[8..16].copy_from_slice(&h.epoch.to_le_bytes());
    b[16..24].copy_from_slice(&h.owner.dev.to_le_bytes());
    b[24..32].copy_from_slice(&h.owner.ino.to_le_bytes());
    b[32..40].copy_from_slice(&h.schema.to_le_bytes());
    let crc = crc32fast::hash(&b[..HEADER_USED]);
    b[HEADER_USED..HEADER_USED + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

fn read_header(file: &File) -> io::Result<Option<Header>> {
    let mut b = [0u8; HEADER_USED + 4];
    match file.read_exact_at(&mut b, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if &b[..8] != HEADER_MAGIC {
        return Ok(None);
    }
    let crc = u32::from_le_bytes([
        b[HEADER_USED],
        b[HEADER_USED + 1],
        b[HEADER_USED + 2],
        b[HEADER_USED + 3],
    ]);
    if crc32fast::hash(&b[..HEADER_USED]) != crc {
        return Ok(None);
    }
    let (Some(epoch), Some(dev), Some(ino), Some(schema)) = (
        u64_at(&b, 8),
        u64_at(&b, 16),
        u64_at(&b, 24),
        u64_at(&b, 32),
    ) else {
        return Ok(None);
    };
    Ok(Some(Header {
        epoch,
        owner: Owner { dev, ino },
        schema,
    }))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

fn record_head(epoch: u64, seq: u64, payload: &[u8]) -> [u8; RECORD_HEAD] {
    let mut head = [0u8; RECORD_HEAD];
    head[..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    head[4..12].copy_from_slice(&epoch.to_le_bytes());
    head[12..20].copy_from_slice(&seq.to_le_bytes());
    head[20..28].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&head[..28]);
    h.update(payload);
    head[28..].copy_from_slice(&h.finalize().to_le_bytes());
    head
}

/// The records of `epoch` from the log's start, in order, as long as they are intact; and
/// where the next record would go.
fn read_records(file: &File, epoch: u64) -> io::Result<(Vec<Vec<u8>>, u64)> {
    let len = file.metadata()?.len();
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
        if record_head(epoch, seq, &payload) != head {
            break;
        }
        out.push(payload);
        at = body_at + n;
        seq += 1;
    }
    Ok((out, at))
}

/// Opens (creating if needed) the log at `path`, zero-filled to its full size.
fn open_file(path: &Path, bytes: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    fill(&file, path, bytes)?;
    Ok(file)
}

/// Zero-fills `file` from its end up to `bytes`, page by page.
fn fill(file: &File, path: &Path, bytes: u64) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len < bytes {
        let zeros = [0u8; FILL_CHUNK];
        let mut at = len;
        while at < bytes {
            let n = (bytes - at).min(FILL_CHUNK as u64) as usize;
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        file.sync_all()?;
        // A log whose name a power loss forgot would leave its records unreplayed.
        sync_dir(path)?;
    }
    Ok(())
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Whether the log beside `store` may hold writes the store file does not have: it has records
/// in its current epoch. For offline tools, which do not replay it.
pub(crate) fn unapplied(store: &Path) -> bool {
    let Ok(file) = File::open(wal_path(store)) else {
        return false;
    };
    match read_header(&file) {
        Ok(Some(h)) => read_records(&file, h.epoch).is_ok_and(|(r, _)| !r.is_empty()),
        // A log that cannot be read is reported rather than skipped.
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Why a log could not be opened for replay.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WalError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The log holds writes of another schema version than this release's.
    #[error(
        "the write-ahead log {path} holds writes in schema version {found}, this release writes \
         {supported}: start the release that wrote it once (it applies them and stops with an \
         empty log), or move the log away to drop those writes"
    )]
    Schema {
        path: String,
        found: u64,
        supported: u64,
    },
}

/// An open log; see the module documentation. The writer thread owns appends and restarts;
/// replay runs where the store is opened.
#[derive(Debug)]
pub(crate) struct Wal {
    file: File,
    path: PathBuf,
    store: PathBuf,
    header: Header,
    /// The most the records may take (the file may be larger, from an earlier setting).
    bytes: u64,
    /// Where the next record goes.
    end: u64,
    seq: u64,
}

impl Wal {
    /// Opens (creating if needed) the log of the store file at `store`, which must exist.
    /// Records of another file are copied aside and dropped; the caller replays
    /// [`Self::pending`] and then [`Self::restart`]s the log. `floor` is the epoch the store
    /// last recorded: a new log (or one older than the store) starts above it, so that its
    /// records never look already applied.
    pub(crate) fn open(store: &Path, schema: u64, floor: u64, bytes: u64) -> Result<Wal, WalError> {
        let bytes = bytes.max(MIN_WAL_BYTES);
        let path = wal_path(store);
        let file = open_file(&path, bytes)?;
        let owner = Owner::of(store)?;
        let mut wal = match read_header(&file)? {
            Some(h) => Wal {
                file,
                path,
                store: store.to_path_buf(),
                header: h,
                bytes,
                end: HEADER_BYTES,
                seq: 0,
            },
            None => {
                let mut wal = Wal {
                    file,
                    path,
                    store: store.to_path_buf(),
                    header: Header {
                        epoch: floor,
                        owner,
                        schema,
                    },
                    bytes,
                    end: HEADER_BYTES,
                    seq: 0,
                };
                wal.restart()?;
                return Ok(wal);
            }
        };
        let (records, end) = read_records(&wal.file, wal.header.epoch)?;
        if wal.header.owner != owner {
            wal.header.owner = owner;
            wal.header.schema = schema;
            if records.is_empty() {
                wal.header.epoch = wal.header.epoch.max(floor);
                wal.restart()?;
            } else {
                wal.set_aside(
                    records.len(),
                    "the write-ahead log beside the store belongs to another file (the store was \
                     replaced or copied after a crash)",
                    floor,
                )?;
            }
            return Ok(wal);
        }
        if wal.header.epoch < floor {
            // Every record here is older than the store's last commit: nothing to apply.
            wal.header.schema = schema;
            wal.header.epoch = floor;
            wal.restart()?;
            return Ok(wal);
        }
        if !records.is_empty() && wal.header.schema != schema {
            return Err(WalError::Schema {
                path: wal.path.display().to_string(),
                found: wal.header.schema,
                supported: schema,
            });
        }
        wal.header.schema = schema;
        wal.end = end;
        wal.seq = records.len() as u64;
        Ok(wal)
    }

    /// Copies the log aside (its records are not for this store file), says so, and starts it
    /// over empty one epoch above `floor` (the epoch the store recorded), so that replay after
    /// the next crash finds it in step with the store. The file is zeroed first: no record of the
    /// set-aside log may pass for one of that epoch.
    pub(crate) fn set_aside(&mut self, records: usize, why: &str, floor: u64) -> io::Result<()> {
        // Kept for whoever wants to look; never applied to a file they were not for.
        let aside = orphan_path(&self.store);
        std::fs::copy(&self.path, &aside)?;
        tracing::error!(
            store = %self.store.display(),
            log = %aside.display(),
            records,
            "store: {why}; its writes were not applied and are kept in the copy named here"
        );
        self.file.set_len(0)?;
        fill(&self.file, &self.path, self.bytes)?;
        self.header.epoch = floor;
        self.restart()
    }

    /// The intact records of the current epoch, in order: writes not yet known to be in the
    /// store file's last durable commit.
    pub(crate) fn pending(&self) -> io::Result<Vec<Vec<u8>>> {
        Ok(read_records(&self.file, self.header.epoch)?.0)
    }

    /// Whether the log holds records (writes a durable commit may not cover yet).
    pub(crate) fn is_empty(&self) -> bool {
        self.seq == 0
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.header.epoch
    }

    /// Records in the current epoch.
    pub(crate) fn records(&self) -> u64 {
        self.seq
    }

    /// Whether a record of `payload` bytes fits.
    pub(crate) fn fits(&self, payload: usize) -> bool {
        self.end + (RECORD_HEAD + payload) as u64 <= self.bytes
    }

    /// Appends one record and flushes it. On error the record may or may not be in the file;
    /// the caller treats the log as failed (the store is reopened, which replays it).
    pub(crate) fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        if !self.fits(payload.len()) {
            return Err(io::Error::other("the write-ahead log is full"));
        }
        let head = record_head(self.header.epoch, self.seq, payload);
        // One write, one flush: a crash in between tears the record, and a torn record is
        // ignored on replay (its writes were never answered).
        let mut rec = Vec::with_capacity(RECORD_HEAD + payload.len());
        rec.extend_from_slice(&head);
        rec.extend_from_slice(payload);
        self.file.write_all_at(&rec, self.end)?;
        self.file.sync_data()?;
        self.end += rec.len() as u64;
        self.seq += 1;
        Ok(())
    }

    /// Starts the log over (a new epoch): call only once a durable commit holds every record.
    pub(crate) fn restart(&mut self) -> io::Result<()> {
        let next = Header {
            epoch: self.header.epoch.wrapping_add(1),
            ..self.header
        };
        self.file.write_all_at(&header_block(next), 0)?;
        self.file.sync_data()?;
        self.header = next;
        self.end = HEADER_BYTES;
        self.seq = 0;
        Ok(())
    }

    /// Removes the log after a clean close (the store file then holds everything, and a stopped
    /// daemon's store is one file to copy). Only call after a durable commit.
    pub(crate) fn remove(self) -> io::Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path)?;
        sync_dir(&self.path)
    }

    pub(crate) fn store_path(&self) -> &Path {
        &self.store
    }
}

/// Makes the log beside `store` name that file as its owner: a test's copy of a store and its
/// log, taken while the store is open, then stands for what a crash leaves behind.
#[cfg(test)]
pub(crate) fn adopt(store: &Path) {
    let path = wal_path(store);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut h = read_header(&file).unwrap().unwrap();
    h.owner = Owner::of(store).unwrap();
    file.write_all_at(&header_block(h), 0).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_file(dir: &Path) -> PathBuf {
        let p = dir.join("s.redb");
        std::fs::write(&p, b"store").unwrap();
        p
    }

    #[test]
    fn records_come_back_in_order_until_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_file(dir.path());
        let mut wal = Wal::open(&store, 3, 0, DEFAULT_WAL_BYTES).unwrap();
        assert!(wal.is_empty());
        wal.append(b"one").unwrap();
        wal.append(b"two").unwrap();
        drop(wal);

        let mut wal = Wal::open(&store, 3, 0, DEFAULT_WAL_BYTES).unwrap();
        assert_eq!(
            wal.pending().unwrap(),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        assert!(!wal.is_empty());
        wal.append(b"three").unwrap();
        assert_eq!(wal.pending().unwrap().len(), 3);
        wal.restart().unwrap();
        assert!(wal.is_empty());
        assert!(wal.pending().unwrap().is_empty());
        drop(wal);
        // The old epoch's records are still in the file; they no longer count.
        let wal = Wal::open(&store, 3, 0, DEFAULT_WAL_BYTES).unwrap();
        assert!(wal.pending().unwrap().is_empty());
        assert_eq!(
            std::fs::metadata(wal_path(&store)).unwrap().len(),
            DEFAULT_WAL_BYTES
        );
    }

    #[test]
    fn a_torn_last_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_file(dir.path());
        let mut wal = Wal::open(&store, 3, 0, DEFAULT_WAL_BYTES).unwrap();
        wal.append(b"kept").unwrap();
        let at = wal.end;
        wal.append(b"torn record").unwrap();
        drop(wal);
        // A crash during the second append: its payload's last byte never reached the disk.
        let f = OpenOptions::new()
            .write(true)
            .open(wal_path(&store))
            .unwrap();
        f.write_all_at(&[0], at + RECORD_HEAD as u64 + 10).unwrap();
        let mut wal = Wal::open(&store, 3, 0, DEFAULT_WAL_BYTES).unwrap();
        assert_eq!(wal.pending().unwrap(), vec![b"kept".to_vec()]);
        // The next append overwrites the torn one, and both count.
        wal.append(b"next").unwrap();
        drop(wal);
        let wal = Wal::open(&store, 3, 0, DEFAULT_WAL_BYTES).unwrap();
        assert_eq!(
            wal.pending().unwrap(),
            vec![b"kept".to_vec(), b"next".to_vec()]
        );
    }

    #[test]
    fn a_log_beside_another_file_is_set_aside_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_file(dir.path());
        let mut wal = Wal::open(&store, 3, 0, DEFAULT_WAL_BYTES).unwrap();
        for _ in 0..3 {
            wal.restart().unwrap();
        }
        assert_eq!(wal.epoch(), 4);
        wal.append(b"for the old file").unwrap();
        drop(wal);
        // The store replaced after a crash (a restore by `mv`): a new inode at the same path.
        // It recorded epoch 2.
        let restored = dir.path().join("restored");
        std::fs::write(&restored, b"restored").unwrap();
        std::fs::rename(&restored, &store).unwrap();
        let mut wal = Wal::open(&store, 3, 2, DEFAULT_WAL_BYTES).unwrap();
        assert!(wal.pending().unwrap().is_empty());
        // In step with the new file: one epoch above what it recorded, so that its own records
        // count after the next crash.
        assert_eq!(wal.epoch(), 3);
        wal.append(b"for the new file").unwrap();
        drop(wal);
        let wal = Wal::open(&store, 3, 2, DEFAULT_WAL_BYTES).unwrap();
        assert_eq!(wal.pending().unwrap(), vec![b"for the new file".to_vec()]);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".wal.orphaned-"))
            .collect();
        assert_eq!(aside.len(), 1);
    }

    #[test]
    fn records_of_another_schema_version_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_file(dir.path());
        let mut wal = Wal::open(&store, 2, 0, DEFAULT_WAL_BYTES).unwrap();
        wal.append(b"v2 effect").unwrap();
        drop(wal);
        let e = Wal::open(&store, 3, 0, DEFAULT_WAL_BYTES).unwrap_err();
        assert!(
            matches!(
                e,
                WalError::Schema {
                    found: 2,
                    supported: 3,
                    ..
                }
            ),
            "{e}"
        );
        // An empty log of another version is simply taken over.
        let mut wal = Wal::open(&store, 2, 0, DEFAULT_WAL_BYTES).unwrap();
        wal.restart().unwrap();
        drop(wal);
        assert!(Wal::open(&store, 3, 0, DEFAULT_WAL_BYTES).is_ok());
    }

    #[test]
    fn a_new_log_starts_above_the_epoch_the_store_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_file(dir.path());
        let wal = Wal::open(&store, 3, 41, DEFAULT_WAL_BYTES).unwrap();
        assert!(wal.epoch() > 41);
        drop(wal);
        // A log left from before the store's last recorded epoch holds nothing to apply.
        let mut wal = Wal::open(&store, 3, 0, DEFAULT_WAL_BYTES).unwrap();
        wal.append(b"stale").unwrap();
        drop(wal);
        let wal = Wal::open(&store, 3, 100, DEFAULT_WAL_BYTES).unwrap();
        assert!(wal.epoch() > 100);
        assert!(wal.pending().unwrap().is_empty());
    }

    #[test]
    fn a_full_log_refuses_rather_than_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_file(dir.path());
        let mut wal = Wal::open(&store, 3, 0, DEFAULT_WAL_BYTES).unwrap();
        let big = vec![7u8; 1 << 20];
        let mut n = 0;
        while wal.fits(big.len()) {
            wal.append(&big).unwrap();
            n += 1;
        }
        assert!(n >= 30, "{n}");
        assert!(wal.append(&big).is_err());
        assert_eq!(wal.pending().unwrap().len(), n);
    }
}

/// The log as the store uses it: what a crash leaves behind (the files copied while the store
/// is open, the page cache's view, as after `kill -9`) must open to every answered write.
#[cfg(test)]
mod replay_tests {
    use super::{adopt, wal_path, MIN_WAL_BYTES};
    use crate::scim::patch::MemberChange;
    use crate::scim::resource::{MemberRef, Normalized};
    use crate::scim::schema::ResourceKind;
    use crate::store::tables::*;
    use crate::store::write::tests::group;
    use crate::store::{Store, StoreOptions, WalOptions};
    use redb::{ReadableMultimapTable, ReadableTable};
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    fn opts(bytes: u64, idle: Duration) -> StoreOptions {
        StoreOptions {
            wal: Some(WalOptions {
                bytes,
                checkpoint_idle: idle,
                ..WalOptions::default()
            }),
            ..StoreOptions::default()
        }
    }

    /// No checkpoint while the test runs, unless the log fills or a write is not logged.
    fn no_idle() -> StoreOptions {
        opts(super::DEFAULT_WAL_BYTES, Duration::from_secs(3600))
    }

    /// Every row of every table a SCIM write touches, in key order.
    fn dump(store: &Store) -> Vec<String> {
        let rtx = store.db.begin_read().unwrap();
        let mut out = Vec::new();
        for def in [USERS, GROUPS] {
            for row in rtx.open_table(def).unwrap().iter().unwrap() {
                let (k, v) = row.unwrap();
                out.push(format!(
                    "{def}: {} = {}",
                    k.value(),
                    String::from_utf8_lossy(v.value())
                ));
            }
        }
        for def in [USERNAME_IDX, GROUPNAME_IDX] {
            for row in rtx.open_table(def).unwrap().iter().unwrap() {
                let (k, v) = row.unwrap();
                out.push(format!("{def}: {} = {}", k.value(), v.value()));
            }
        }
        for def in [
            USER_EXTERNAL_IDX,
            GROUP_EXTERNAL_IDX,
            USER_EMAIL_IDX,
            MEMBERS,
            USER_GROUPS,
        ] {
            for row in rtx.open_multimap_table(def).unwrap().iter().unwrap() {
                let (k, vs) = row.unwrap();
                for v in vs {
                    out.push(format!("{def}: {} = {}", k.value(), v.unwrap().value()));
                }
            }
        }
        for row in rtx.open_table(CHANGES).unwrap().iter().unwrap() {
            let (k, v) = row.unwrap();
            out.push(format!(
                "changes: {} = {}",
                k.value(),
                String::from_utf8_lossy(v.value())
            ));
        }
        out
    }

    /// Equal dumps, or the first row that differs.
    fn same(got: &[String], want: &[String]) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g, w, "row {i}");
        }
        assert_eq!(got.len(), want.len(), "rows");
    }

    /// The store file and its log as a crash would leave them, in `to`.
    fn crash_image(from: &Path, to: &Path, with_log: bool) -> PathBuf {
        let dest = to.join("s.redb");
        std::fs::copy(from, &dest).unwrap();
        if with_log {
            std::fs::copy(wal_path(from), wal_path(&dest)).unwrap();
            adopt(&dest);
        }
        dest
    }

    fn user(name: &str, ext: &str) -> Normalized {
        Normalized {
            resource: serde_json::json!({
                "userName": name,
                "externalId": ext,
                "emails": [{"value": name, "primary": true}],
                "active": true
            }),
            members: None,
        }
    }

    /// Creates, PUTs, PATCHes (attributes and members) and deletes of users and groups.
    async fn mixed_writes(store: &Store) {
        let mut u = Vec::new();
        for i in 0..20 {
            let (r, _) = store
                .create(
                    ResourceKind::User,
                    user(&format!("u{i}@x.io"), &format!("ext-{i}")),
                )
                .await
                .unwrap();
            u.push(r.id);
        }
        let refs = |ids: &[usize]| -> Vec<String> { ids.iter().map(|i| u[*i].clone()).collect() };
        let g1m = refs(&[0, 1, 2, 3, 4]);
        let g1m: Vec<&str> = g1m.iter().map(String::as_str).collect();
        let (g1, _) = store
            .create(ResourceKind::Group, group("ws-eng-role-member", &g1m))
            .await
            .unwrap();
        let (g2, _) = store
            .create(
                ResourceKind::Group,
                group("ws-ops-role-admin", &[u[5].as_str()]),
            )
            .await
            .unwrap();
        let (add, remove) = (u[10].clone(), u[1].clone());
        store
            .patch(
                ResourceKind::Group,
                g1.id.clone(),
                move |data: &mut serde_json::Value| -> Result<Vec<MemberChange>, ()> {
                    data["displayName"] = "ws-eng-role-manager".into();
                    Ok(vec![
                        MemberChange::Add(vec![
                            MemberRef { value: add },
                            MemberRef {
                                value: "not-a-user".into(),
                            },
                        ]),
                        MemberChange::Remove(vec![remove]),
                    ])
                },
                None,
            )
            .await
            .unwrap()
            .unwrap();
        store
            .patch(
                ResourceKind::User,
                u[2].clone(),
                |data: &mut serde_json::Value| -> Result<Vec<MemberChange>, ()> {
                    data["userName"] = "renamed@x.io".into();
                    data["active"] = false.into();
                    Ok(vec![])
                },
                None,
            )
            .await
            .unwrap()
            .unwrap();
        store
            .replace(
                ResourceKind::User,
                u[3].clone(),
                user("u3-new@x.io", "ext-3-new"),
                None,
            )
            .await
            .unwrap();
        let g2m = [u[6].as_str(), u[7].as_str()];
        store
            .replace(
                ResourceKind::Group,
                g2.id.clone(),
                group("ws-ops-role-admin", &g2m),
                None,
            )
            .await
            .unwrap();
        store
            .delete(ResourceKind::User, u[4].clone(), None)
            .await
            .unwrap();
        store
            .delete(ResourceKind::Group, g2.id.clone(), None)
            .await
            .unwrap();
        // A refused write is not in the log, and a taken name is still refused after replay.
        assert!(store
            .create(ResourceKind::User, user("u0@x.io", "dup"))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_crash_keeps_every_answered_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path, no_idle()).unwrap();
        mixed_writes(&store).await;
        let before = dump(&store);
        assert!(
            store.write_stats().logged_commits >= 28,
            "{:?}",
            store.write_stats()
        );

        // The store file alone holds none of it: redb never flushed those commits.
        let alone = tempfile::tempdir().unwrap();
        let alone = Store::open(&crash_image(&path, alone.path(), false), no_idle()).unwrap();
        assert_eq!(alone.count(ResourceKind::User).unwrap(), 0);

        let crashed = tempfile::tempdir().unwrap();
        let image = crash_image(&path, crashed.path(), true);
        let after = Store::open(&image, no_idle()).unwrap();
        same(&dump(&after), &before);
        // It goes on where the crashed one stopped: the next change gets the next number.
        let last = after.last_seq().unwrap();
        after
            .create(ResourceKind::User, user("next@x.io", "ext-next"))
            .await
            .unwrap();
        assert_eq!(after.last_seq().unwrap(), last + 1);
        let taken = after
            .create(ResourceKind::User, user("RENAMED@x.io", "dup"))
            .await;
        assert!(taken.is_err());

        // A second crash right after the replay: nothing is applied twice.
        let before = dump(&after);
        let again = tempfile::tempdir().unwrap();
        let again = Store::open(&crash_image(&image, again.path(), true), no_idle()).unwrap();
        same(&dump(&again), &before);
    }

    #[tokio::test]
    async fn a_write_the_log_cannot_hold_makes_everything_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path, no_idle()).unwrap();
        for i in 0..5 {
            store
                .create(ResourceKind::User, user(&format!("u{i}@x.io"), "e"))
                .await
                .unwrap();
        }
        assert_eq!(store.write_stats().checkpoints, 0);
        // The reconciler's writes are not logged: their commit is durable and covers the log.
        store.set_reconcile_cursor(1).await.unwrap();
        assert_eq!(store.write_stats().checkpoints, 1);
        let copy = tempfile::tempdir().unwrap();
        let alone = Store::open(&crash_image(&path, copy.path(), false), no_idle()).unwrap();
        assert_eq!(alone.count(ResourceKind::User).unwrap(), 5);
    }

    #[tokio::test]
    async fn a_full_log_and_an_idle_writer_both_empty_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path, opts(MIN_WAL_BYTES, Duration::from_secs(3600))).unwrap();
        for i in 0..300 {
            store
                .create(ResourceKind::User, user(&format!("u{i}@x.io"), "e"))
                .await
                .unwrap();
        }
        let stats = store.write_stats();
        assert!(stats.checkpoints >= 1, "{stats:?}");
        assert!(stats.logged_commits > stats.checkpoints, "{stats:?}");
        let before = dump(&store);
        let crashed = tempfile::tempdir().unwrap();
        let after = Store::open(&crash_image(&path, crashed.path(), true), no_idle()).unwrap();
        same(&dump(&after), &before);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path, opts(MIN_WAL_BYTES, Duration::from_millis(20))).unwrap();
        store
            .create(ResourceKind::User, user("idle@x.io", "e"))
            .await
            .unwrap();
        let mut waited = 0;
        while store.write_stats().checkpoints == 0 && waited < 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert_eq!(store.write_stats().checkpoints, 1);
    }

    /// While reads go on the idle checkpoint waits (its flush would stall them), then follows
    /// the first quiet interval; reads that never pause hold it back no longer than the cap.
    #[tokio::test]
    async fn an_idle_checkpoint_waits_for_a_pause_in_the_reads_up_to_a_cap() {
        let idle = Duration::from_millis(250);
        let read_for = |store: Store, id: String, stop: std::time::Instant| {
            std::thread::spawn(move || {
                let mut checkpoints_seen = 0;
                while std::time::Instant::now() < stop && checkpoints_seen == 0 {
                    store.get(ResourceKind::User, &id, false).unwrap().unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                    checkpoints_seen = store.write_stats().checkpoints;
                }
                checkpoints_seen
            })
        };
        let open = |dir: &Path, defer_max: Duration| {
            Store::open(
                &dir.join("s.redb"),
                StoreOptions {
                    wal: Some(WalOptions {
                        checkpoint_idle: idle,
                        checkpoint_defer_max: defer_max,
                        ..WalOptions::default()
                    }),
                    ..StoreOptions::default()
                },
            )
            .unwrap()
        };

        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), Duration::from_secs(3600));
        let (rec, _) = store
            .create(ResourceKind::User, user("a@x.io", "e"))
            .await
            .unwrap();
        let stop = std::time::Instant::now() + 6 * idle;
        let reader = read_for(store.clone(), rec.id.clone(), stop);
        assert_eq!(
            reader.join().unwrap(),
            0,
            "a checkpoint while reads went on"
        );
        let mut waited = 0;
        while store.write_stats().checkpoints == 0 && waited < 500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert_eq!(
            store.write_stats().checkpoints,
            1,
            "none once the reads stopped"
        );

        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 2 * idle);
        let (rec, _) = store
            .create(ResourceKind::User, user("b@x.io", "e"))
            .await
            .unwrap();
        let stop = std::time::Instant::now() + Duration::from_secs(10);
        let reader = read_for(store.clone(), rec.id.clone(), stop);
        assert_eq!(
            reader.join().unwrap(),
            1,
            "the cap did not bring the checkpoint"
        );
        assert!(
            std::time::Instant::now() < stop,
            "reads held it back past the cap"
        );
    }

    #[tokio::test]
    async fn a_clean_close_leaves_one_file_and_the_log_can_be_switched_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path, no_idle()).unwrap();
        mixed_writes(&store).await;
        let before = dump(&store);

        // A crash image opened with the log switched off: the log is applied, then removed.
        let crashed = tempfile::tempdir().unwrap();
        let image = crash_image(&path, crashed.path(), true);
        let off = StoreOptions {
            wal: None,
            ..StoreOptions::default()
        };
        let after = Store::open(&image, off.clone()).unwrap();
        same(&dump(&after), &before);
        assert!(!wal_path(&image).exists());
        after.close().await;
        drop(after);

        store.close().await;
        drop(store);
        assert!(!wal_path(&path).exists());
        let reopened = Store::open(&path, off).unwrap();
        same(&dump(&reopened), &before);
    }

    #[tokio::test]
    async fn offline_tools_refuse_a_store_whose_log_holds_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path, no_idle()).unwrap();
        mixed_writes(&store).await;
        let crashed = tempfile::tempdir().unwrap();
        let image = crash_image(&path, crashed.path(), true);
        let dest = crashed.path().join("copy.redb");
        assert!(crate::store::inspect(&image).unwrap().unapplied_log);
        let e = crate::store::backup::backup_offline(&image, &dest).unwrap_err();
        assert!(
            matches!(e, crate::store::StoreError::LogPending { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("start scim-sync"), "{e}");
        assert!(crate::store::compact(&image).is_err());
        // Once a daemon has opened and closed it, the file is whole and the tools work.
        let s = Store::open(&image, no_idle()).unwrap();
        s.close().await;
        drop(s);
        assert!(!crate::store::inspect(&image).unwrap().unapplied_log);
        crate::store::backup::backup_offline(&image, &dest).unwrap();
        assert_eq!(crate::store::inspect(&dest).unwrap().users, 19);
    }

    #[tokio::test]
    async fn a_log_newer_than_its_store_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let old = tempfile::tempdir().unwrap();
        let older = old.path().join("old.redb");
        {
            let store = Store::open(&path, no_idle()).unwrap();
            store
                .create(ResourceKind::User, user("early@x.io", "e"))
                .await
                .unwrap();
            store.close().await;
        }
        // An old copy of the file, from before two more checkpoints.
        std::fs::copy(&path, &older).unwrap();
        let store = Store::open(&path, no_idle()).unwrap();
        for i in 0..3 {
            store
                .create(ResourceKind::User, user(&format!("late{i}@x.io"), "e"))
                .await
                .unwrap();
            store.set_reconcile_cursor(i).await.unwrap();
        }
        store
            .create(ResourceKind::User, user("last@x.io", "e"))
            .await
            .unwrap();
        // The old copy put back over the file in place (same inode) after a crash.
        let crashed = tempfile::tempdir().unwrap();
        let image = crash_image(&path, crashed.path(), true);
        std::fs::write(&image, std::fs::read(&older).unwrap()).unwrap();
        let restored = Store::open(&image, no_idle()).unwrap();
        assert_eq!(restored.count(ResourceKind::User).unwrap(), 1);
        let aside = std::fs::read_dir(crashed.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(".wal.orphaned-"));
        assert!(aside);
        // The restored store's own writes are logged in step with it: a crash keeps them.
        restored
            .create(ResourceKind::User, user("after@x.io", "e"))
            .await
            .unwrap();
        let again = tempfile::tempdir().unwrap();
        let again = Store::open(&crash_image(&image, again.path(), true), no_idle()).unwrap();
        assert_eq!(again.count(ResourceKind::User).unwrap(), 2);
    }
}
