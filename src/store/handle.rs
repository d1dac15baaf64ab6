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
use super::{init_tables, now_rfc3339, DbResult, Result, StoreError, SCHEMA_VERSION};
use redb::ReadableDatabase;
use serde::Serialize;
use std::path::{Path, PathBuf};
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
    /// Opens (creating if needed) the store file and checks its schema version.
    pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<Db> {
        let db = open_file(path, cache_bytes, true)?;
        init_tables(&db, path)?;
        Ok(Db {
            path: path.to_path_buf(),
            cache_bytes,
            slot: RwLock::new(Some(db)),
            degraded: Mutex::new(None),
        })
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
        // init_tables ends in a commit, which shows that the file takes writes again.
        let attempt = open_file(&self.path, self.cache_bytes, true).and_then(|db| {
            init_tables(&db, &self.path)?;
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

    /// Closes the file for good (the writer is stopping).
    pub(crate) fn close(&self) {
        drop(self.slot.write().unwrap_or_else(|e| e.into_inner()).take());
    }
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
