//! Backups, inspection and compaction of store files.
//!
//! A backup is a fresh redb file with every table copied from one read transaction: an MVCC
//! snapshot, so it is consistent while the writer goes on committing. Copying table by table
//! (rather than the file's bytes) also leaves out the free pages, so a backup is compact.
//! Inspection and compaction open a file exclusively and so only work on a store no daemon is
//! using ([`StoreError::Locked`] otherwise).

use super::handle::{check_version, open_file, schema_version};
use super::tables::*;
use super::{DbResult, Result, Store, StoreError};
use redb::{
    Key, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    ReadableTableMetadata, TableDefinition, Value,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The cache of a database opened only to be copied, inspected or compacted.
const TOOL_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// What a store file holds, as `scim-sync check-store` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoreInfo {
    pub path: String,
    pub file_bytes: u64,
    pub schema_version: u64,
    /// The newest schema version this release reads.
    pub supported_schema_version: u64,
    pub users: u64,
    pub groups: u64,
    pub memberships: u64,
    pub change_feed_entries: u64,
    pub last_change_seq: u64,
    pub reconcile_cursor: u64,
    /// People's links (by email).
    pub links: u64,
    /// Workspaces the daemon has managed.
    pub workspace_links: u64,
    pub audit_entries: u64,
    pub held_ops: u64,
    pub failing_ops: u64,
    /// The write-ahead log beside the file holds writes the file does not have yet (the daemon
    /// did not stop cleanly): the counts above leave them out.
    pub unapplied_log: bool,
}

impl StoreInfo {
    /// Whether this release can open the file.
    pub fn readable(&self) -> bool {
        self.schema_version <= self.supported_schema_version
    }
}

/// Every table, by name, for copying. A table added to tables.rs must be added here too: a test
/// compares this list with the tables a new store has.
fn copy_all(from: &redb::ReadTransaction, to: &redb::Database) -> Result<()> {
    copy_table(from, to, META)?;
    copy_table(from, to, USERS)?;
    copy_table(from, to, GROUPS)?;
    copy_table(from, to, USERNAME_IDX)?;
    copy_table(from, to, GROUPNAME_IDX)?;
    copy_multimap(from, to, USER_EXTERNAL_IDX)?;
    copy_multimap(from, to, GROUP_EXTERNAL_IDX)?;
    copy_multimap(from, to, USER_EMAIL_IDX)?;
    copy_multimap(from, to, MEMBERS)?;
    copy_multimap(from, to, USER_GROUPS)?;
    copy_table(from, to, CHANGES)?;
    copy_table(from, to, LINKS)?;
    copy_multimap(from, to, LINKS_BY_SCIM_ID)?;
    copy_table(from, to, WORKSPACE_LINKS)?;
    copy_table(from, to, AUDIT)?;
    copy_table(from, to, FUSE_LOG)?;
    copy_table(from, to, HELD)?;
    copy_table(from, to, FAILING)?;
    Ok(())
}

/// Rows per commit while copying, so that a large table is not one huge transaction in memory.
const COPY_CHUNK: usize = 50_000;

fn copy_table<K: Key + 'static, V: Value + 'static>(
    from: &redb::ReadTransaction,
    to: &redb::Database,
    def: TableDefinition<K, V>,
) -> Result<()> {
    let src = match from.open_table(def) {
        Ok(t) => t,
        // A table this snapshot does not have (an older store) is not copied either.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(StoreError::Storage(e.into())),
    };
    let mut rows = src.iter().db()?.peekable();
    loop {
        let tx = to.begin_write().db()?;
        {
            let mut dst = tx.open_table(def).db()?;
            for _ in 0..COPY_CHUNK {
                let Some(row) = rows.next() else { break };
                let (k, v) = row.db()?;
                dst.insert(k.value(), v.value()).db()?;
            }
        }
        tx.commit().db()?;
        if rows.peek().is_none() {
            return Ok(());
        }
    }
}

fn copy_multimap<K: Key + 'static, V: Key + 'static>(
    from: &redb::ReadTransaction,
    to: &redb::Database,
    def: MultimapTableDefinition<K, V>,
) -> Result<()> {
    let src = match from.open_multimap_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(StoreError::Storage(e.into())),
    };
    let mut keys = src.iter().db()?.peekable();
    loop {
        let tx = to.begin_write().db()?;
        {
            let mut dst = tx.open_multimap_table(def).db()?;
            let mut n = 0usize;
            while n < COPY_CHUNK {
                let Some(entry) = keys.next() else { break };
                let (k, values) = entry.db()?;
                for v in values {
                    dst.insert(k.value(), v.db()?.value()).db()?;
                    n += 1;
                }
            }
        }
        tx.commit().db()?;
        if keys.peek().is_none() {
            return Ok(());
        }
    }
}

/// Copies the snapshot `from` into a new redb file at `dest`, which must not exist yet.
fn write_copy(from: &redb::ReadTransaction, dest: &Path) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| io_error(dest, "cannot create", e))?;
    let to = open_file(dest, TOOL_CACHE_BYTES, true)?;
    copy_all(from, &to)?;
    to.close().db()
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::Storage(redb::Error::Io(std::io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    )))
}

/// A finished backup, open for reading. Its file has no name any more (it is removed as soon
/// as it is open), so nothing is left behind however the transfer ends.
pub struct BackupFile {
    pub file: std::fs::File,
    pub len: u64,
    _guard: BackupGuard,
}

/// Holds the store's one backup slot until dropped.
struct BackupGuard(Arc<AtomicBool>);

impl Drop for BackupGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Store {
    /// Writes a consistent copy of the store (one read snapshot) to a temporary file beside it
    /// and returns it open for reading. Blocking: run it on a blocking thread. Writes go on
    /// meanwhile. One backup at a time: a second one fails with [`StoreError::BackupRunning`]
    /// until the first is dropped.
    pub fn backup(&self) -> Result<BackupFile> {
        if self.backup_running.swap(true, Ordering::AcqRel) {
            return Err(StoreError::BackupRunning);
        }
        let guard = BackupGuard(self.backup_running.clone());
        let rtx = self.db.begin_read()?;
        let tmp = temp_path(self.db.path(), "backup");
        let written = write_copy(&rtx, &tmp);
        drop(rtx);
        let opened = written.and_then(|()| {
            let file = std::fs::File::open(&tmp).map_err(|e| io_error(&tmp, "cannot open", e))?;
            let len = file
                .metadata()
                .map_err(|e| io_error(&tmp, "cannot stat", e))?
                .len();
            Ok((file, len))
        });
        // Removed whether or not the copy worked: an open file stays readable without its name.
        if let Err(e) = std::fs::remove_file(&tmp) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %tmp.display(), error = %e, "cannot remove a backup's temporary file");
            }
        }
        let (file, len) = opened?;
        Ok(BackupFile {
            file,
            len,
            _guard: guard,
        })
    }
}

/// `.NAME.WHAT-UUID.tmp` beside `path`: same directory, so the same filesystem.
pub fn temp_path(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let tmp = format!(".{name}.{what}-{}.tmp", uuid::Uuid::new_v4().simple());
    match path.parent() {
        Some(dir) => dir.join(tmp),
        None => PathBuf::from(tmp),
    }
}

/// Offline tools do not replay the write-ahead log; a copy or compaction without its writes
/// would lose them.
fn refuse_pending_log(path: &Path) -> Result<()> {
    if super::wal::unapplied(path) {
        return Err(StoreError::LogPending {
            path: path.display().to_string(),
        });
    }
    Ok(())
}

/// Copies the store at `src`, which no daemon may be using, to `dest` (which must not exist).
pub fn backup_offline(src: &Path, dest: &Path) -> Result<()> {
    if !src.exists() {
        return Err(StoreError::NotAStore {
            path: src.display().to_string(),
            reason: "no such file".into(),
        });
    }
    // Opened first: a store a daemon holds is `Locked`, which sends the CLI to the daemon.
    let db = open_file(src, TOOL_CACHE_BYTES, false)?;
    refuse_pending_log(src)?;
    let rtx = db.begin_read().db()?;
    let v = schema_version(&rtx, src)?.ok_or_else(|| StoreError::NotAStore {
        path: src.display().to_string(),
        reason: "no scim-sync schema version in it".into(),
    })?;
    check_version(v)?;
    let r = write_copy(&rtx, dest);
    if r.is_err() {
        // A partial copy is of no use to anyone.
        let _ = std::fs::remove_file(dest);
    }
    r
}

/// Opens a store file without changing it (beyond the repair redb makes after an unclean
/// shutdown) and counts what it holds. Refuses a file a daemon is using, a file that is not a
/// redb database, and a redb database that is not a scim-sync store. A schema version newer
/// than this release is reported, not refused: see [`StoreInfo::readable`].
pub fn inspect(path: &Path) -> Result<StoreInfo> {
    if !path.exists() {
        return Err(StoreError::NotAStore {
            path: path.display().to_string(),
            reason: "no such file".into(),
        });
    }
    let file_bytes = std::fs::metadata(path)
        .map_err(|e| io_error(path, "cannot stat", e))?
        .len();
    let db = open_file(path, TOOL_CACHE_BYTES, false)?;
    let rtx = db.begin_read().db()?;
    let not_ours = |reason: &str| StoreError::NotAStore {
        path: path.display().to_string(),
        reason: reason.into(),
    };
    let schema_version =
        schema_version(&rtx, path)?.ok_or_else(|| not_ours("no scim-sync schema version in it"))?;
    let mut info = StoreInfo {
        path: path.display().to_string(),
        file_bytes,
        schema_version,
        supported_schema_version: super::SCHEMA_VERSION,
        users: 0,
        groups: 0,
        memberships: 0,
        change_feed_entries: 0,
        last_change_seq: 0,
        reconcile_cursor: 0,
        links: 0,
        workspace_links: 0,
        audit_entries: 0,
        held_ops: 0,
        failing_ops: 0,
        unapplied_log: super::wal::unapplied(path),
    };
    if !info.readable() {
        // The layout of a later schema is unknown here: the version is all that can be said.
        return Ok(info);
    }
    let count = |def: TableDefinition<&str, &[u8]>| -> Result<u64> {
        match rtx.open_table(def) {
            Ok(t) => t.len().db(),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(StoreError::Storage(e.into())),
        }
    };
    info.users = count(USERS)?;
    info.groups = count(GROUPS)?;
    if schema_version < 2 {
        // Not migrated yet: its workspace links are the prefixed rows of the links table.
        match rtx.open_table(LINKS) {
            Ok(t) => {
                for row in t.iter().db()? {
                    let (k, _) = row.db()?;
                    if k.value().starts_with(V1_WORKSPACE_LINK_PREFIX) {
                        info.workspace_links += 1;
                    } else {
                        info.links += 1;
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(StoreError::Storage(e.into())),
        }
    } else {
        info.links = count(LINKS)?;
        info.workspace_links = count(WORKSPACE_LINKS)?;
    }
    info.held_ops = count(HELD)?;
    info.failing_ops = count(FAILING)?;
    let count_seq = |def: TableDefinition<u64, &[u8]>| -> Result<u64> {
        match rtx.open_table(def) {
            Ok(t) => t.len().db(),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(StoreError::Storage(e.into())),
        }
    };
    info.change_feed_entries = count_seq(CHANGES)?;
    info.audit_entries = count_seq(AUDIT)?;
    info.memberships = match rtx.open_multimap_table(MEMBERS) {
        Ok(t) => t.len().db()?,
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(StoreError::Storage(e.into())),
    };
    let meta = rtx.open_table(META).db()?;
    let get = |k: &str| -> Result<u64> {
        Ok(redb::ReadableTable::get(&meta, k)
            .db()?
            .map(|v| v.value())
            .unwrap_or(0))
    };
    info.reconcile_cursor = get(super::ledger::CURSOR_KEY)?;
    info.last_change_seq = match rtx.open_table(CHANGES) {
        Ok(t) => super::upkeep::last_assigned(&meta, META_CHANGES_LAST_SEQ, &t)?,
        Err(_) => get(META_CHANGES_LAST_SEQ)?,
    };
    Ok(info)
}

/// The file sizes before and after [`compact`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    pub before_bytes: u64,
    pub after_bytes: u64,
}

/// Compacts the store at `path` in place: redb moves pages to the front and truncates the file.
/// Needs exclusive access: fails with [`StoreError::Locked`] while a daemon uses the file.
pub fn compact(path: &Path) -> Result<Compaction> {
    if !path.exists() {
        return Err(StoreError::NotAStore {
            path: path.display().to_string(),
            reason: "no such file".into(),
        });
    }
    let size = |p: &Path| -> Result<u64> {
        Ok(std::fs::metadata(p)
            .map_err(|e| io_error(p, "cannot stat", e))?
            .len())
    };
    let before_bytes = size(path)?;
    let mut db = open_file(path, TOOL_CACHE_BYTES, false)?;
    refuse_pending_log(path)?;
    {
        let rtx = db.begin_read().db()?;
        let v = schema_version(&rtx, path)?.ok_or_else(|| StoreError::NotAStore {
            path: path.display().to_string(),
            reason: "no scim-sync schema version in it".into(),
        })?;
        check_version(v)?;
    }
    // Each call moves what it can; a later call may find more room once pages were freed.
    while db.compact().db()? {}
    db.close().db()?;
    Ok(Compaction {
        before_bytes,
        after_bytes: size(path)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::scim::resource::Normalized;
    use crate::scim::schema::ResourceKind;
    use crate::store::StoreOptions;
    use redb::{MultimapTableHandle, TableHandle};
    use std::collections::BTreeSet;

    #[test]
    fn every_table_of_a_new_store_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        let rtx = store.db.begin_read().unwrap();
        let mut names: BTreeSet<String> = rtx
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        names.extend(
            rtx.list_multimap_tables()
                .unwrap()
                .map(|t| t.name().to_string()),
        );
        let dest = dir.path().join("copy.redb");
        write_copy(&rtx, &dest).unwrap();
        let copy = redb::Database::open(&dest).unwrap();
        let crtx = copy.begin_read().unwrap();
        let mut copied: BTreeSet<String> = crtx
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        copied.extend(
            crtx.list_multimap_tables()
                .unwrap()
                .map(|t| t.name().to_string()),
        );
        assert_eq!(names, copied, "copy_all must name every table");
        assert!(names.len() >= 15, "{names:?}");
    }

    #[tokio::test]
    async fn a_backup_is_a_consistent_snapshot_and_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(
            &path,
            StoreOptions {
                cache_bytes: 1 << 20,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        for i in 0..120 {
            let n = Normalized {
                resource: serde_json::json!({"userName": format!("u{i}@example.com")}),
                members: None,
            };
            store.create(ResourceKind::User, n).await.unwrap();
        }
        let backup = {
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.backup())
                .await
                .unwrap()
                .unwrap()
        };
        // Only one at a time.
        assert!(matches!(store.backup(), Err(StoreError::BackupRunning)));
        // Nothing but the store itself (and its write-ahead log, while open) in its directory.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "s.redb.wal")
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("s.redb")]);
        let out = dir.path().join("out.redb");
        let mut f = backup.file.try_clone().unwrap();
        let mut w = std::fs::File::create(&out).unwrap();
        assert_eq!(std::io::copy(&mut f, &mut w).unwrap(), backup.len);
        drop(backup);
        let info = inspect(&out).unwrap();
        assert_eq!((info.users, info.change_feed_entries), (120, 120));
        assert_eq!(info.last_change_seq, 120);
        assert!(store.backup().is_ok());
    }
}
