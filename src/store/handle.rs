//! The open redb file, and reopening it after an I/O error.
//!
//! After a failed write (disk full, a file-size limit, EIO) redb answers every later operation on
//! that handle with `PreviousIo` until the file is closed and opened again. Whoever sees such an
//! error closes the handle ([`Db::fail`]); the writer thread then reopens it with a backoff
//! (write.rs). Meanwhile the store is degraded: reads and writes fail at once with
//! [`StoreError::Unavailable`], which the SCIM server answers with 503 and `Retry-After`. A
//! reopen counts only once a commit works again, so a store whose disk is still full stays
//! degraded instead of flapping.

use super::tables::*;
use super::wal::{self, Wal, WalError};
use super::{init_tables, now_rfc3339, DbResult, Result, StoreError, WalOptions, SCHEMA_VERSION};
use redb::ReadableDatabase;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// Why the store is degraded, while it is.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Degraded {
    pub since: String,
    pub reason: String,
    /// Reopen attempts that failed since then.
    pub reopen_attempts: u64,
}

pub(crate) struct Db {
    path: PathBuf,
    cache_bytes: usize,
    slot: RwLock<Option<redb::Database>>,
    degraded: Mutex<Option<Degraded>>,
    /// The write-ahead log, when it is on (wal.rs); only the writer thread appends to it.
    wal: Mutex<Option<Wal>>,
    /// Read transactions begun so far: the writer holds its checkpoints back while this moves.
    reads: AtomicU64,
}

/// Whether `e` means the file handle is unusable until reopened (an I/O error, or redb's latch
/// after one), as opposed to a failure of one request.
pub(crate) fn is_io(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Storage(
            redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
        )
    )
}

impl Db {
    /// Opens (creating if needed) the store file, checks its schema version and applies what
    /// its write-ahead log holds. With `wal` the log stays open for the writer; without, a log
    /// left by an earlier run is still applied, then removed.
    pub(crate) fn open(path: &Path, cache_bytes: usize, wal: Option<&WalOptions>) -> Result<Db> {
        let db = open_file(path, cache_bytes, true)?;
        let use_wal = wal.is_some();
        let log = if use_wal || wal::wal_path(path).exists() {
            let bytes = wal.map_or(wal::MIN_WAL_BYTES, |w| w.bytes);
            Some(open_log(&db, path, bytes)?)
        } else {
            None
        };
        init_tables(&db, path)?;
        let log = match log {
            Some(mut log) => {
                replay(&db, &mut log)?;
                if use_wal {
                    Some(log)
                } else {
                    log.remove().map_err(|e| wal_io(path, e))?;
                    None
                }
            }
            None => None,
        };
        Ok(Db {
            path: path.to_path_buf(),
            cache_bytes,
            slot: RwLock::new(Some(db)),
            degraded: Mutex::new(None),
            wal: Mutex::new(log),
            reads: AtomicU64::new(0),
        })
    }

    /// The write-ahead log, for the writer thread.
    pub(crate) fn wal(&self) -> std::sync::MutexGuard<'_, Option<Wal>> {
        self.wal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many read transactions have begun since the file was opened.
    pub(crate) fn reads_begun(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn unavailable(&self) -> StoreError {
        let reason = self
            .degraded()
            .map(|d| d.reason)
            .unwrap_or_else(|| "the store is closed".into());
        StoreError::Unavailable(reason)
    }

    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let slot = self.slot.read().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(db) => db.begin_read().db(),
            None => Err(self.unavailable()),
        }
    }

    pub(crate) fn begin_write(&self) -> Result<redb::WriteTransaction> {
        let slot = self.slot.read().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(db) => db.begin_write().db(),
            None => Err(self.unavailable()),
        }
    }

    pub(crate) fn degraded(&self) -> Option<Degraded> {
        self.degraded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Closes the handle after an I/O error and marks the store degraded (once: later failures
    /// keep the first reason and time).
    pub(crate) fn fail(&self, reason: &str) {
        {
            let mut d = self.degraded.lock().unwrap_or_else(|e| e.into_inner());
            if d.is_none() {
                tracing::error!(
                    error = reason,
                    store = %self.path.display(),
                    "store: I/O error; closing the store and reopening it when writes work again \
                     (is the disk full?)"
                );
                *d = Some(Degraded {
                    since: now_rfc3339(),
                    reason: format!("I/O error, reopening: {reason}"),
                    reopen_attempts: 0,
                });
            }
        }
        let old = self.slot.write().unwrap_or_else(|e| e.into_inner()).take();
        // Closing a handle whose I/O failed may fail too; the reopen repairs what it left.
        drop(old);
    }

    /// Opens the file again and proves that a commit works. On success the store is healthy.
    pub(crate) fn reopen(&self) -> Result<()> {
        // init_tables ends in a commit, which shows that the file takes writes again. The log
        // then puts back what the closed handle may have lost: the commits made after the last
        // durable one.
        let attempt = open_file(&self.path, self.cache_bytes, true).and_then(|db| {
            init_tables(&db, &self.path)?;
            if let Some(log) = self.wal().as_mut() {
                replay(&db, log)?;
            }
            Ok(db)
        });
        match attempt {
            Ok(db) => {
                *self.slot.write().unwrap_or_else(|e| e.into_inner()) = Some(db);
                let was = self
                    .degraded
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if let Some(d) = was {
                    tracing::warn!(
                        since = %d.since,
                        attempts = d.reopen_attempts + 1,
                        "store: reopened after an I/O error; writes are accepted again"
                    );
                }
                Ok(())
            }
            Err(e) => {
                let mut d = self.degraded.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(d) = d.as_mut() {
                    d.reopen_attempts += 1;
                    d.reason = format!("I/O error, reopening (attempt {}): {e}", d.reopen_attempts);
                }
                Err(e)
            }
        }
    }

    /// Closes the file for good (the writer is stopping). The writer has made a durable commit
    /// of everything before (`clean`), so the log goes: a stopped daemon's store is one file.
    pub(crate) fn close(&self, clean: bool) {
        let log = self.wal().take();
        if let (Some(log), true) = (log, clean) {
            if let Err(e) = log.remove() {
                tracing::warn!(error = %e, store = %self.path.display(), "store: cannot remove the write-ahead log after a clean close; the next start replays nothing from it");
            }
        }
        drop(self.slot.write().unwrap_or_else(|e| e.into_inner()).take());
    }
}

fn wal_io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Storage(redb::Error::Io(std::io::Error::new(
        e.kind(),
        format!("the write-ahead log {}: {e}", wal::wal_path(path).display()),
    )))
}

/// Where the log stood at the store's last commit: its epoch and how many of its records that
/// commit held.
pub(crate) fn log_position(tx: &redb::ReadTransaction) -> Result<(u64, u64)> {
    let meta = match tx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok((0, 0)),
        Err(e) => return Err(StoreError::Storage(e.into())),
    };
    let epoch = meta
        .get(META_WAL_EPOCH)
        .db()?
        .map(|v| v.value())
        .unwrap_or(0);
    let held = meta
        .get(META_WAL_RECORDS)
        .db()?
        .map(|v| v.value())
        .unwrap_or(0);
    Ok((epoch, held))
}

/// Records in the transaction that it holds the first `records` records of the log's `epoch`.
pub(crate) fn set_log_position(
    tx: &redb::WriteTransaction,
    epoch: u64,
    records: u64,
) -> Result<()> {
    let mut meta = tx.open_table(META).db()?;
    meta.insert(META_WAL_EPOCH, epoch).db()?;
    meta.insert(META_WAL_RECORDS, records).db()?;
    Ok(())
}

/// Opens the store's log, before anything could migrate the store: a log of another schema
/// version is refused while the store is still in it.
fn open_log(db: &redb::Database, path: &Path, bytes: u64) -> Result<Wal> {
    let (epoch, _) = log_position(&db.begin_read().db()?)?;
    Wal::open(path, SCHEMA_VERSION, epoch, bytes).map_err(|e| match e {
        WalError::Io(io) => wal_io(path, io),
        schema @ WalError::Schema { .. } => StoreError::NotAStore {
            path: path.display().to_string(),
            reason: schema.to_string(),
        },
    })
}

/// Applies the log's records that the store's last commit does not hold, in one durable commit,
/// and starts the log over.
fn replay(db: &redb::Database, log: &mut Wal) -> Result<()> {
    let path = log.store_path().to_path_buf();
    let (epoch, held) = log_position(&db.begin_read().db()?)?;
    let records = log.pending().map_err(|e| wal_io(&path, e))?;
    if records.is_empty() {
        // Nothing to apply, and nothing to start over: the log stays one epoch ahead of the
        // store at most.
        return Ok(());
    }
    if log.epoch() > epoch.saturating_add(1) {
        // A log starts over only after a durable commit recorded its epoch, so it is at most
        // one epoch ahead of its store: this store file is older than the log (a backup put
        // back after a crash).
        return log
            .set_aside(
                records.len(),
                "the write-ahead log is newer than the store file beside it (an older copy of \
                 the store was put back after a crash)",
                epoch,
            )
            .map_err(|e| wal_io(&path, e));
    }
    let skip = match log.epoch().cmp(&epoch) {
        std::cmp::Ordering::Less => records.len(),
        std::cmp::Ordering::Equal => usize::try_from(held).unwrap_or(usize::MAX),
        std::cmp::Ordering::Greater => 0,
    };
    let todo = records.get(skip..).unwrap_or(&[]);
    if !todo.is_empty() {
        let tx = db.begin_write().db()?;
        let mut writes = 0u64;
        for (i, r) in todo.iter().enumerate() {
            let effects: Vec<super::write::Effect> = serde_json::from_slice(r).map_err(|e| {
                StoreError::Corrupt(
                    format!("write-ahead log record {}", skip + i),
                    e.to_string(),
                )
            })?;
            for effect in &effects {
                super::write::apply_effect(&tx, effect)?;
                writes += 1;
            }
        }
        set_log_position(&tx, log.epoch(), records.len() as u64)?;
        tx.commit().db()?;
        tracing::warn!(
            store = %path.display(),
            records = todo.len(),
            writes,
            "store: applied the write-ahead log after an unclean stop (every answered write is kept)"
        );
    }
    log.restart().map_err(|e| wal_io(&path, e))
}

/// Opens a redb file, mapping the failures an operator can act on to errors that say what to do.
/// With `create`, a missing (or empty) file becomes a new database.
pub(crate) fn open_file(path: &Path, cache_bytes: usize, create: bool) -> Result<redb::Database> {
    let mut b = redb::Builder::new();
    b.set_cache_size(cache_bytes);
    let r = if create { b.create(path) } else { b.open(path) };
    r.map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.display().to_string()),
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::NotAStore {
                path: path.display().to_string(),
                reason: io.to_string(),
            }
        }
        redb::DatabaseError::UpgradeRequired(v) => StoreError::NotAStore {
            path: path.display().to_string(),
            reason: format!("a redb file in the old format {v}, not one this release wrote"),
        },
        other => StoreError::Storage(other.into()),
    })
}

/// The schema version a store file records; a redb file with tables but no version is not a
/// scim-sync store.
pub(crate) fn schema_version(rtx: &redb::ReadTransaction, path: &Path) -> Result<Option<u64>> {
    match rtx.open_table(META) {
        Ok(meta) => Ok(meta.get(META_SCHEMA_VERSION).db()?.map(|v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(redb::TableError::TableTypeMismatch { .. }) => Err(StoreError::NotAStore {
            path: path.display().to_string(),
            reason: "its `meta` table is not the one scim-sync writes".into(),
        }),
        Err(e) => Err(StoreError::Storage(e.into())),
    }
}

/// Refuses a schema version newer than this release.
pub(crate) fn check_version(found: u64) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}
