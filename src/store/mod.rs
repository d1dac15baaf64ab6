//! The durable SCIM store, one redb file.
//!
//! Every SCIM write is one closure run inside one write transaction that updates the resource, its
//! unique indexes, the user→groups reverse index and the change feed together, so a crash never
//! leaves a resource without its index or its feed entry. Writes go through a single writer
//! thread that runs all queued writes in the same transaction and commits once (group commit):
//! each caller gets its answer only after that commit is durable. Each write validates before it
//! mutates, so a write that fails on its own merits (not found, a taken name, a stale `If-Match`,
//! a PATCH that does not apply) leaves nothing behind in the shared transaction. Reads run on
//! MVCC snapshots and never wait for the writer.
//!
//! With the write-ahead log on (wal.rs, the default), "durable" means the batch's effects are
//! flushed in `<store>.wal`; redb commits them without a flush, and a durable redb commit every so
//! often empties the log. A write that is not a SCIM one (the reconciler's) commits durably.
//!
//! Failures are [`StoreError`]s that say what went wrong in the store's terms; the SCIM server
//! (`http::scim`) chooses the HTTP status and `scimType` for each.

pub mod backup;
mod handle;
pub mod ledger;
pub mod safety;
mod tables;
pub mod upkeep;
mod wal;
mod write;

use crate::scim::filter::{self, Filter, IndexHint};
use crate::scim::patch::MemberChange;
use crate::scim::resource::{MemberRef, Normalized};
use crate::scim::schema::ResourceKind;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use tables::*;

pub use backup::{compact, inspect, StoreInfo};
pub use handle::Degraded;
pub use ledger::{AuditEntry, Link, WorkspaceLink};
pub use safety::{FailingOp, HeldOp};
pub use upkeep::{Retention, UpkeepReport};
pub use write::WriteStats;

/// Version of the table layout; opening an older store migrates it (see [`init_tables`]).
///
/// - 1: the first layout.
/// - 2: workspace links in their own table instead of the email-keyed links table.
/// - 3: users indexed by address, and links by SCIM id, so that a run for a few people reads
///   only theirs.
pub const SCHEMA_VERSION: u64 = 3;

/// What a client is told to wait (`Retry-After`, seconds) when the store cannot take a write:
/// the writer retries reopening the file every few seconds at most (see handle.rs).
pub const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No resource of this type has this id.
    #[error("{} {id} not found", kind.name())]
    NotFound { kind: ResourceKind, id: String },
    /// Another resource of this type already holds this value of its unique attribute
    /// (compared case-insensitively).
    #[error("{} {attribute} '{value}' is already taken", kind.name())]
    Conflict {
        kind: ResourceKind,
        attribute: &'static str,
        value: String,
    },
    /// The `If-Match` the write was made under names none of the current version.
    #[error("If-Match {if_match} does not match the current version {current}")]
    PreconditionFailed { if_match: String, current: u64 },
    /// The resource lacks the attribute that must be unique for its type.
    #[error("{} {attribute} is required", kind.name())]
    MissingAttribute {
        kind: ResourceKind,
        attribute: &'static str,
    },
    #[error("storage error: {0}")]
    Storage(#[from] redb::Error),
    #[error("the store is already open in another process ({0}); only one scim-sync may use a store file")]
    Locked(String),
    #[error("store schema version {found} is newer than this scim-sync supports (schema version {supported}): a later release wrote it. Fix: run the release that wrote it, or restore a backup taken with this release (`scim-sync check-store FILE` shows a file's schema version)")]
    TooNew { found: u64, supported: u64 },
    #[error("{path} is not a scim-sync store: {reason}. Fix: point [store] path at the store file, or restore a backup (`scim-sync check-store FILE` tells what a file holds)")]
    NotAStore { path: String, reason: String },
    #[error("a backup is already being taken; wait for it to finish")]
    BackupRunning,
    /// The file is closed after an I/O error and being reopened; retry later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("stored record {0} is corrupt: {1}")]
    Corrupt(String, String),
    /// The store's write-ahead log holds writes the file does not have yet (the daemon did not
    /// stop cleanly); an offline tool would miss them.
    #[error(
        "{path}: its write-ahead log {path}.wal holds writes that are not in the file yet (the \
         daemon did not stop cleanly); start scim-sync on this store once and stop it (it applies \
         them and removes the log), then retry"
    )]
    LogPending { path: String },
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("write not applied: {0}")]
    BatchFailed(String),
}

impl StoreError {
    /// Whether the request failed on its own merits (nothing of it was written, and the rest of
    /// the batch it ran in is unaffected), as opposed to a failure of the store.
    pub fn is_request_error(&self) -> bool {
        matches!(
            self,
            Self::NotFound { .. }
                | Self::Conflict { .. }
                | Self::PreconditionFailed { .. }
                | Self::MissingAttribute { .. }
        )
    }

    /// Whether the request may succeed if retried later (the SCIM answer is 503 with
    /// `Retry-After`), as opposed to a failure of the request itself.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::WriterGone | Self::BatchFailed(_)
        ) || handle::is_io(self)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Converts any redb error into [`StoreError::Storage`].
pub(crate) trait DbResult<T> {
    fn db(self) -> Result<T>;
}

impl<T, E: Into<redb::Error>> DbResult<T> for std::result::Result<T, E> {
    fn db(self) -> Result<T> {
        self.map_err(|e| StoreError::Storage(e.into()))
    }
}

/// A stored resource: the canonical attributes plus what the server owns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub id: String,
    pub version: u64,
    pub created: String,
    pub last_modified: String,
    pub data: Value,
}

impl Record {
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

/// A record with the multi-valued references the server maintains, when they were asked for.
#[derive(Debug, Clone)]
pub struct Resource {
    pub kind: ResourceKind,
    pub record: Record,
    /// Groups: member user ids with a display name. Users: ids and names of their groups.
    pub refs: Option<Vec<(String, String)>>,
}

/// One entry of the change feed, for the reconciler.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Change {
    pub seq: u64,
    pub at: String,
    pub kind: ChangeKind,
    pub id: String,
    pub action: ChangeAction,
    /// Users whose desired state may have changed (the user itself, or the members touched).
    #[serde(default)]
    pub users: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    User,
    Group,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChangeAction {
    Created,
    Updated,
    Deleted,
    Members,
}

/// What a write did beyond the resource itself, for logging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteNotes {
    /// Member ids that named no stored user and were skipped.
    pub unknown_members: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub cache_bytes: usize,
    /// SCIM writes made durable by the write-ahead log (`[store] write_ahead_log`, wal.rs);
    /// `None`: by redb's own durable commits.
    pub wal: Option<WalOptions>,
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// What [`Store::upkeep`] keeps of the change feed and the audit log.
    pub retention: Retention,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 64 * 1024 * 1024,
            wal: Some(WalOptions::default()),
            max_batch: 1024,
            retention: Retention::default(),
        }
    }
}

/// The write-ahead log's settings.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// The log file's size: when it is full, a durable commit empties it.
    pub bytes: u64,
    /// How long the writer waits idle before a durable commit empties the log. While reads are
    /// being served the wait starts over (the commit's flush would stall them), but never past
    /// `checkpoint_defer_max` after the last write.
    pub checkpoint_idle: std::time::Duration,
    /// The longest an idle checkpoint waits for a pause in the reads.
    pub checkpoint_defer_max: std::time::Duration,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            bytes: wal::DEFAULT_WAL_BYTES,
            checkpoint_idle: std::time::Duration::from_millis(250),
            checkpoint_defer_max: std::time::Duration::from_secs(10),
        }
    }
}

/// A query over one resource type.
#[derive(Debug, Clone)]
pub struct Query {
    /// A filter the caller has checked against this resource type ([`filter::validate`]): a
    /// typo is the caller's to report, so names the schema does not know match nothing here.
    pub filter: Option<Filter>,
    /// 1-based.
    pub start_index: usize,
    pub count: usize,
    /// Whether results need member lists (groups) or group lists (users).
    pub with_refs: bool,
}

impl Query {
    /// Whether this query reads at most a few records through an exact index (`id`,
    /// `userName`, `externalId`) and no group's member list: cheap enough for an async thread.
    pub fn is_point_lookup(&self, kind: ResourceKind) -> bool {
        let Some(f) = &self.filter else {
            return false;
        };
        let exact =
            filter::index_hint(f, kind).is_some_and(|h| !matches!(h, IndexHint::DisplayName(_)));
        let members =
            kind == ResourceKind::Group && (self.with_refs || filter::references(f, "members"));
        exact && !members
    }
}

#[derive(Debug, Clone)]
pub struct Page {
    pub total: usize,
    pub items: Vec<Resource>,
}

#[derive(Clone)]
pub struct Store {
    db: Arc<handle::Db>,
    writer: write::Writer,
    /// Ticks after every acknowledged SCIM write, for change-driven reconciliation.
    changed: Arc<tokio::sync::watch::Sender<u64>>,
    retention: Retention,
    /// When this process last pruned the audit log, to do it at most once an hour.
    audit_pruned_at: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Set while a backup is being taken or streamed: one at a time.
    backup_running: Arc<std::sync::atomic::AtomicBool>,
    /// `[store] write_ahead_log`, as opened (the log itself is the writer's, behind a lock).
    write_ahead_log: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

impl Store {
    /// Opens (creating if needed) the store file. Fails with [`StoreError::Locked`] when another
    /// process holds it.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store> {
        let db = Arc::new(handle::Db::open(path, opts.cache_bytes, opts.wal.as_ref())?);
        let write_ahead_log = opts.wal.is_some();
        let timing = opts
            .wal
            .map(|w| write::CheckpointTiming {
                idle: w.checkpoint_idle,
                defer_max: w.checkpoint_defer_max,
            })
            .unwrap_or_default();
        let writer = write::Writer::start(db.clone(), opts.max_batch, timing)?;
        let (changed, _) = tokio::sync::watch::channel(0u64);
        Ok(Store {
            db,
            writer,
            changed: Arc::new(changed),
            retention: opts.retention,
            audit_pruned_at: Arc::new(std::sync::Mutex::new(None)),
            backup_running: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            write_ahead_log,
        })
    }

    /// The store file's size on disk; `None` when it cannot be read.
    pub fn file_bytes(&self) -> Option<u64> {
        std::fs::metadata(self.db.path()).ok().map(|m| m.len())
    }

    /// Why the store is not serving, while it is reopening after an I/O error.
    pub fn degraded(&self) -> Option<Degraded> {
        self.db.degraded()
    }

    /// A receiver that sees a new value after each acknowledged SCIM write.
    pub fn subscribe_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn tick<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_ok() {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
        r
    }

    /// Stops the writer after the writes already queued. Every clone of this store stops
    /// writing; the file is released once the last clone is dropped.
    pub async fn close(&self) {
        self.writer.close().await;
    }

    pub fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }

    /// Whether SCIM writes are made durable by the write-ahead log (`[store] write_ahead_log`).
    pub fn write_ahead_log(&self) -> bool {
        self.write_ahead_log
    }

    // ---- writes -------------------------------------------------------------------------

    pub async fn create(&self, kind: ResourceKind, n: Normalized) -> Result<(Record, WriteNotes)> {
        let new = write::prepare_create(kind, n)?;
        let r = self
            .writer
            .run_logged(move |tx| write::create(tx, new), |_| false)
            .await;
        self.tick(r)
    }

    pub async fn replace(
        &self,
        kind: ResourceKind,
        id: String,
        n: Normalized,
        if_match: Option<String>,
    ) -> Result<(Record, WriteNotes)> {
        let r = self
            .writer
            .run_logged(
                move |tx| write::replace(tx, kind, &id, n, if_match.as_deref()),
                |_| false,
            )
            .await;
        self.tick(r)
    }

    /// Applies `edit` to the stored attributes of one resource, in its write transaction. The
    /// edit (the SCIM PATCH rules, for the server) may refuse: its refusal is the inner error,
    /// passed back untouched, and nothing of the request is written. The outer error is the
    /// store's own (not found, stale `If-Match`, taken name, storage).
    pub async fn patch<E, F>(
        &self,
        kind: ResourceKind,
        id: String,
        edit: F,
        if_match: Option<String>,
    ) -> Result<std::result::Result<(Record, WriteNotes), E>>
    where
        E: Send + 'static,
        F: FnOnce(&mut Value) -> std::result::Result<Vec<MemberChange>, E> + Send + 'static,
    {
        let r = self
            .writer
            .run_logged(
                move |tx| write::patch(tx, kind, &id, edit, if_match.as_deref()),
                std::result::Result::is_err,
            )
            .await;
        match r {
            Ok(Ok(done)) => self.tick(Ok(Ok(done))),
            other => other,
        }
    }

    pub async fn delete(
        &self,
        kind: ResourceKind,
        id: String,
        if_match: Option<String>,
    ) -> Result<()> {
        let r = self
            .writer
            .run_logged(
                move |tx| write::delete(tx, kind, &id, if_match.as_deref()),
                |_| false,
            )
            .await;
        self.tick(r)
    }

    // ---- reads --------------------------------------------------------------------------

    pub fn get(&self, kind: ResourceKind, id: &str, with_refs: bool) -> Result<Option<Resource>> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(resource_table(kind)).db()?;
        let Some(bytes) = t.get(id).db()? else {
            return Ok(None);
        };
        let record = decode(id, bytes.value())?;
        let refs = if with_refs {
            Some(read_refs(&rtx, kind, id)?)
        } else {
            None
        };
        Ok(Some(Resource { kind, record, refs }))
    }

    /// Runs a query on one snapshot. Ordering is by id, which is stable across pages.
    pub fn query(&self, kind: ResourceKind, q: &Query) -> Result<Page> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(resource_table(kind)).db()?;
        let start = q.start_index.max(1) - 1;
        // Filters on `members` (groups) or `groups` (users) need the reference lists, which are
        // not part of the stored document; only then are they loaded.
        let ref_attr = match kind {
            ResourceKind::Group => "members",
            ResourceKind::User => "groups",
        };
        let needs_refs_for_filter = q
            .filter
            .as_ref()
            .is_some_and(|f| filter::references(f, ref_attr));
        // A filter that only asks whether given ids are in the list (Entra's membership check)
        // gets those of them that are, looked up one by one, not the whole list.
        let named_refs = q
            .filter
            .as_ref()
            .filter(|_| needs_refs_for_filter)
            .and_then(|f| filter::reference_values(f, ref_attr));

        let Some(f) = &q.filter else {
            let total = t.len().db()? as usize;
            let mut items = Vec::new();
            if q.count > 0 {
                for entry in t.iter().db()?.skip(start).take(q.count) {
                    let (k, v) = entry.db()?;
                    let record = decode(k.value(), v.value())?;
                    items.push(self.with_refs(&rtx, kind, record, q.with_refs)?);
                }
            }
            return Ok(Page { total, items });
        };

        // `id` and `meta` are added to a candidate's document only for filters that name them:
        // building `meta` for every candidate cost more than the usual `userName eq` test.
        let common = CommonAttrs {
            id: filter::references(f, "id"),
            meta: filter::references(f, "meta"),
        };
        let candidates: Option<Vec<String>> = match filter::index_hint(f, kind) {
            Some(hint) => Some(hint_ids(&rtx, kind, &hint)?),
            None => None,
        };
        let mut matched: Vec<Record> = Vec::new();
        let mut consider = |mut record: Record| -> Result<()> {
            let refs = if needs_refs_for_filter {
                let ref_type = if kind == ResourceKind::Group {
                    "User"
                } else {
                    "direct"
                };
                let refs = match &named_refs {
                    Some(ids) => read_named_refs(&rtx, kind, &record.id, ids)?,
                    None => read_refs(&rtx, kind, &record.id)?,
                };
                Some(Value::Array(
                    refs.into_iter()
                        .map(|(v, d)| serde_json::json!({"value": v, "display": d, "type": ref_type}))
                        .collect(),
                ))
            } else {
                None
            };
            let extra = refs.map(|r| (ref_attr, r));
            if with_eval_doc(kind, &mut record, common, extra, |doc| {
                filter::matches_checked(f, kind, doc)
            }) {
                matched.push(record);
            }
            Ok(())
        };
        match candidates {
            Some(ids) => {
                let mut ids = ids;
                ids.sort();
                ids.dedup();
                for id in ids {
                    if let Some(v) = t.get(id.as_str()).db()? {
                        let record = decode(&id, v.value())?;
                        consider(record)?;
                    }
                }
            }
            None => {
                for entry in t.iter().db()? {
                    let (k, v) = entry.db()?;
                    let record = decode(k.value(), v.value())?;
                    consider(record)?;
                }
            }
        }
        let total = matched.len();
        let mut items = Vec::new();
        for record in matched.into_iter().skip(start).take(q.count) {
            items.push(self.with_refs(&rtx, kind, record, q.with_refs)?);
        }
        Ok(Page { total, items })
    }

    fn with_refs(
        &self,
        rtx: &redb::ReadTransaction,
        kind: ResourceKind,
        record: Record,
        with_refs: bool,
    ) -> Result<Resource> {
        let refs = if with_refs {
            Some(read_refs(rtx, kind, &record.id)?)
        } else {
            None
        };
        Ok(Resource { kind, record, refs })
    }

    pub fn count(&self, kind: ResourceKind) -> Result<u64> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(resource_table(kind)).db()?;
        t.len().db()
    }

    /// Every user known by this address (lower-cased, as [`crate::scim::address::user_email`]
    /// gives it), active or not, by id.
    pub fn users_by_email(&self, email: &str) -> Result<Vec<Resource>> {
        let rtx = self.db.begin_read()?;
        let idx = rtx.open_multimap_table(USER_EMAIL_IDX).db()?;
        let users = rtx.open_table(USERS).db()?;
        let mut out = Vec::new();
        for id in idx.get(email).db()? {
            let id = id.db()?;
            let id = id.value();
            // The index and the record are written in one transaction: a miss here is a bug
            // worth hearing about, not a reason to guess.
            let bytes = users.get(id).db()?.ok_or_else(|| {
                StoreError::Corrupt(
                    id.to_string(),
                    format!("indexed under {email} but not stored"),
                )
            })?;
            out.push(Resource {
                kind: ResourceKind::User,
                record: decode(id, bytes.value())?,
                refs: None,
            });
        }
        Ok(out)
    }

    /// The user whose `userName` is `name` (compared case-insensitively), from the unique index.
    pub fn user_by_name(&self, name: &str) -> Result<Option<Resource>> {
        let id = {
            let rtx = self.db.begin_read()?;
            let idx = rtx.open_table(USERNAME_IDX).db()?;
            let found = idx.get(name.to_lowercase().as_str()).db()?;
            match found {
                Some(id) => id.value().to_string(),
                None => return Ok(None),
            }
        };
        self.get(ResourceKind::User, &id, false)
    }

    /// Every group with the ids of its members, on one snapshot, without reading the members'
    /// records (a query `with_refs` reads each member's record for its display name).
    pub fn groups_with_member_ids(&self) -> Result<Vec<(Record, Vec<String>)>> {
        let rtx = self.db.begin_read()?;
        let groups = rtx.open_table(GROUPS).db()?;
        let mut out = Vec::new();
        for row in groups.iter().db()? {
            let (id, bytes) = row.db()?;
            let record = decode(id.value(), bytes.value())?;
            let members = multimap_values(&rtx, MEMBERS, id.value())?;
            out.push((record, members));
        }
        Ok(out)
    }

    /// Group ids of a user, from the reverse index.
    pub fn groups_of(&self, user_id: &str) -> Result<Vec<String>> {
        multimap_values(&self.db.begin_read()?, USER_GROUPS, user_id)
    }

    /// Change-feed entries with `seq > after`, oldest first, at most `limit`.
    pub fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(CHANGES).db()?;
        let mut out = Vec::new();
        for entry in t.range((after.saturating_add(1))..).db()?.take(limit) {
            let (k, v) = entry.db()?;
            let c: Change = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Corrupt(format!("change {}", k.value()), e.to_string()))?;
            out.push(c);
        }
        Ok(out)
    }

    /// The newest change-feed sequence number ever assigned (0 before the first write), whether
    /// or not its entry has been trimmed since.
    pub fn last_seq(&self) -> Result<u64> {
        let rtx = self.db.begin_read()?;
        let meta = rtx.open_table(META).db()?;
        let t = rtx.open_table(CHANGES).db()?;
        upkeep::last_assigned(&meta, META_CHANGES_LAST_SEQ, &t)
    }

    /// A cheap end-to-end read, for health checks. An I/O error here closes the file for the
    /// writer to reopen, as one during a write does, so a store that only serves reads also
    /// recovers.
    pub fn ping(&self) -> Result<()> {
        let r = (|| {
            let rtx = self.db.begin_read()?;
            let t = rtx.open_table(META).db()?;
            t.get(META_SCHEMA_VERSION).db()?;
            Ok(())
        })();
        if let Err(e) = &r {
            if handle::is_io(e) {
                self.db.fail(&e.to_string());
                self.writer.wake();
            }
        }
        r
    }
}

/// Which of the attributes every resource has, but its stored document lacks, a filter needs.
#[derive(Clone, Copy)]
struct CommonAttrs {
    id: bool,
    meta: bool,
}

/// Runs `test` on the record's document as filters see it: the stored attributes with `id` and
/// `meta` (those `common` asks for) and `extra` (the reference list a filter names) added. The
/// document is built in place and put back afterwards: a copy of every candidate's document
/// cost more than the comparison.
fn with_eval_doc<T>(
    kind: ResourceKind,
    record: &mut Record,
    common: CommonAttrs,
    extra: Option<(&'static str, Value)>,
    test: impl FnOnce(&Value) -> T,
) -> T {
    let id = common.id.then(|| ("id", Value::String(record.id.clone())));
    let meta = common.meta.then(|| {
        let meta = serde_json::json!({
            "resourceType": kind.name(),
            "created": record.created,
            "lastModified": record.last_modified,
            "version": record.etag(),
        });
        ("meta", meta)
    });
    let Some(obj) = record.data.as_object_mut() else {
        return test(&record.data);
    };
    let displaced: Vec<(&str, Option<Value>)> = id
        .into_iter()
        .chain(meta)
        .chain(extra)
        .map(|(k, v)| (k, obj.insert(k.to_string(), v)))
        .collect();
    let out = test(&record.data);
    if let Some(obj) = record.data.as_object_mut() {
        for (k, old) in displaced.into_iter().rev() {
            match old {
                Some(v) => obj.insert(k.to_string(), v),
                None => obj.remove(k),
            };
        }
    }
    out
}

pub(crate) fn decode(id: &str, bytes: &[u8]) -> Result<Record> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(id.to_string(), e.to_string()))
}

/// Creates the tables a new store needs, or checks an existing store's schema version (before
/// writing anything to it) and migrates an older one, all in one write transaction: a crash
/// leaves the store as it was or fully migrated.
pub(crate) fn init_tables(db: &redb::Database, path: &Path) -> Result<()> {
    let found = {
        let rtx = db.begin_read().db()?;
        match handle::schema_version(&rtx, path)? {
            Some(v) => {
                handle::check_version(v)?;
                Some(v)
            }
            None => {
                // A new store is empty. A redb file that holds tables but no schema version
                // belongs to something else: adding ours to it would hide the mistake.
                let other = rtx.list_tables().db()?.next().is_some()
                    || rtx.list_multimap_tables().db()?.next().is_some();
                if other {
                    return Err(StoreError::NotAStore {
                        path: path.display().to_string(),
                        reason: "a redb database without scim-sync's schema version".into(),
                    });
                }
                None
            }
        }
    };
    let tx = db.begin_write().db()?;
    {
        let mut meta = tx.open_table(META).db()?;
        // A store from before the sequence numbers were kept in META gets them from its tables
        // now, before any trimming could empty one.
        for (key, def) in [
            (META_CHANGES_LAST_SEQ, CHANGES),
            (META_AUDIT_LAST_SEQ, AUDIT),
        ] {
            if meta.get(key).db()?.is_none() {
                let t = tx.open_table(def).db()?;
                let last = upkeep::last_assigned(&meta, key, &t)?;
                meta.insert(key, last).db()?;
            }
        }
        tx.open_table(USERS).db()?;
        tx.open_table(GROUPS).db()?;
        tx.open_table(USERNAME_IDX).db()?;
        tx.open_table(GROUPNAME_IDX).db()?;
        tx.open_multimap_table(USER_EXTERNAL_IDX).db()?;
        tx.open_multimap_table(GROUP_EXTERNAL_IDX).db()?;
        tx.open_multimap_table(USER_EMAIL_IDX).db()?;
        tx.open_multimap_table(MEMBERS).db()?;
        tx.open_multimap_table(USER_GROUPS).db()?;
        tx.open_table(CHANGES).db()?;
        tx.open_table(LINKS).db()?;
        tx.open_multimap_table(LINKS_BY_SCIM_ID).db()?;
        tx.open_table(WORKSPACE_LINKS).db()?;
        tx.open_table(AUDIT).db()?;
        // Added after schema version 1 without changing it: an older store gains them empty.
        tx.open_table(FUSE_LOG).db()?;
        tx.open_table(HELD).db()?;
        tx.open_table(FAILING).db()?;
        if let Some(v) = found.filter(|v| *v < 2) {
            let moved = ledger::migrate_workspace_links(&tx)?;
            tracing::info!(
                store = %path.display(),
                from = v,
                to = 2,
                workspace_links = moved,
                "store: schema migrated (workspace links moved to their own table)"
            );
        }
        if let Some(v) = found.filter(|v| *v < 3) {
            let indexed = write::build_email_index(&tx)?;
            let links = ledger::build_link_index(&tx)?;
            tracing::info!(
                store = %path.display(),
                from = v,
                to = 3,
                users = indexed,
                links,
                "store: schema migrated (users indexed by address, links by SCIM id)"
            );
        }
        if found != Some(SCHEMA_VERSION) {
            meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION).db()?;
        }
    }
    tx.commit().db()?;
    Ok(())
}

/// Moves `value` in a multimap index from under `old` to under `new` (either may be absent);
/// nothing when the key did not change.
pub(crate) fn reindex(
    tx: &redb::WriteTransaction,
    def: redb::MultimapTableDefinition<&str, &str>,
    value: &str,
    old: Option<&str>,
    new: Option<&str>,
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let mut idx = tx.open_multimap_table(def).db()?;
    if let Some(o) = old {
        idx.remove(o, value).db()?;
    }
    if let Some(n) = new {
        idx.insert(n, value).db()?;
    }
    Ok(())
}

/// Every value under `key` in a multimap table, on one snapshot.
fn multimap_values(
    rtx: &redb::ReadTransaction,
    def: redb::MultimapTableDefinition<&str, &str>,
    key: &str,
) -> Result<Vec<String>> {
    let t = rtx.open_multimap_table(def).db()?;
    let mut out = Vec::new();
    for v in t.get(key).db()? {
        out.push(v.db()?.value().to_string());
    }
    Ok(out)
}

fn hint_ids(
    rtx: &redb::ReadTransaction,
    kind: ResourceKind,
    hint: &IndexHint,
) -> Result<Vec<String>> {
    Ok(match (kind, hint) {
        (_, IndexHint::Id(id)) => vec![id.clone()],
        (ResourceKind::User, IndexHint::UserName(name)) => {
            let t = rtx.open_table(USERNAME_IDX).db()?;
            let key = name.to_lowercase();
            t.get(key.as_str())
                .db()?
                .map(|v| vec![v.value().to_string()])
                .unwrap_or_default()
        }
        (ResourceKind::Group, IndexHint::DisplayName(name)) => {
            let t = rtx.open_table(GROUPNAME_IDX).db()?;
            let key = name.to_lowercase();
            t.get(key.as_str())
                .db()?
                .map(|v| vec![v.value().to_string()])
                .unwrap_or_default()
        }
        (_, IndexHint::ExternalId(ext)) => {
            let t = rtx.open_multimap_table(external_idx(kind)).db()?;
            let mut ids = Vec::new();
            for v in t.get(ext.as_str()).db()? {
                ids.push(v.db()?.value().to_string());
            }
            ids
        }
        // A hint that does not apply to this kind cannot narrow the scan; matching nothing is
        // right because the attribute does not exist on this resource type.
        _ => Vec::new(),
    })
}

/// Member ids with display names (groups), or group ids with names (users).
fn read_refs(
    rtx: &redb::ReadTransaction,
    kind: ResourceKind,
    id: &str,
) -> Result<Vec<(String, String)>> {
    let (link, other) = match kind {
        ResourceKind::Group => (MEMBERS, USERS),
        ResourceKind::User => (USER_GROUPS, GROUPS),
    };
    let links = rtx.open_multimap_table(link).db()?;
    let others = rtx.open_table(other).db()?;
    let mut out = Vec::new();
    for v in links.get(id).db()? {
        let other_id = v.db()?.value().to_string();
        let display = match others.get(other_id.as_str()).db()? {
            Some(bytes) => display_of(&decode(&other_id, bytes.value())?),
            None => String::new(),
        };
        out.push((other_id, display));
    }
    Ok(out)
}

/// Of `named`, the ids in `id`'s reference list, with display names as [`read_refs`] gives
/// them. Both ways go through the user's side (a user's groups), which stays short however
/// large a group grows.
fn read_named_refs(
    rtx: &redb::ReadTransaction,
    kind: ResourceKind,
    id: &str,
    named: &[String],
) -> Result<Vec<(String, String)>> {
    let user_groups = rtx.open_multimap_table(USER_GROUPS).db()?;
    let in_groups_of = |uid: &str, gid: &str| -> Result<bool> {
        for g in user_groups.get(uid).db()? {
            if g.db()?.value() == gid {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let other = match kind {
        ResourceKind::Group => USERS,
        ResourceKind::User => GROUPS,
    };
    let others = rtx.open_table(other).db()?;
    let mut out = Vec::new();
    for other_id in named {
        let linked = match kind {
            ResourceKind::Group => in_groups_of(other_id, id)?,
            ResourceKind::User => in_groups_of(id, other_id)?,
        };
        if !linked {
            continue;
        }
        let display = match others.get(other_id.as_str()).db()? {
            Some(bytes) => display_of(&decode(other_id, bytes.value())?),
            None => String::new(),
        };
        out.push((other_id.clone(), display));
    }
    Ok(out)
}

pub(crate) fn display_of(r: &Record) -> String {
    let get = |k: &str| r.data.get(k).and_then(Value::as_str).map(str::to_string);
    get("displayName")
        .or_else(|| get("userName"))
        .unwrap_or_default()
}

/// Normalised member ids, in order, without duplicates.
pub(crate) fn member_ids(members: &[MemberRef]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    members
        .iter()
        .filter(|m| seen.insert(m.value.clone()))
        .map(|m| m.value.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::resource;

    #[test]
    fn only_exact_index_reads_without_member_lists_count_as_point_lookups() {
        let q = |f: Option<&str>, with_refs: bool| Query {
            filter: f.map(|f| filter::parse_filter(f).unwrap()),
            start_index: 1,
            count: 100,
            with_refs,
        };
        let user = ResourceKind::User;
        let group = ResourceKind::Group;
        assert!(q(Some("userName eq \"a@x.io\""), true).is_point_lookup(user));
        assert!(q(Some("id eq \"u1\" and active eq true"), false).is_point_lookup(user));
        assert!(q(Some("externalId eq \"x\""), false).is_point_lookup(group));
        assert!(!q(Some("externalId eq \"x\""), true).is_point_lookup(group));
        assert!(!q(Some("id eq \"g1\" and members eq \"u1\""), false).is_point_lookup(group));
        assert!(!q(Some("displayName eq \"Eng\""), false).is_point_lookup(group));
        assert!(!q(Some("userName sw \"a\""), false).is_point_lookup(user));
        assert!(!q(Some("userName eq \"a\" or userName eq \"b\""), false).is_point_lookup(user));
        assert!(!q(None, false).is_point_lookup(user));
    }

    /// Filters see `id`, `meta` and (when named) the reference list; the records a query
    /// returns are as stored, whether they matched or not.
    #[tokio::test]
    async fn query_answers_records_as_stored_after_evaluating_on_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreOptions::default()).unwrap();
        let body = |name: &str| {
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": name,
                "active": true,
            })
        };
        let user = ResourceKind::User;
        let (a, _) = store
            .create(user, resource::normalize(user, &body("a@x.io")).unwrap())
            .await
            .unwrap();
        let (b, _) = store
            .create(user, resource::normalize(user, &body("b@x.io")).unwrap())
            .await
            .unwrap();
        let group = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "eng",
            "members": [{"value": a.id}],
        });
        let group_kind = ResourceKind::Group;
        let (g, _) = store
            .create(group_kind, resource::normalize(group_kind, &group).unwrap())
            .await
            .unwrap();
        let query = |kind: ResourceKind, f: &str| {
            store
                .query(
                    kind,
                    &Query {
                        filter: Some(filter::parse_filter(f).unwrap()),
                        start_index: 1,
                        count: 100,
                        with_refs: false,
                    },
                )
                .unwrap()
        };
        let ids = |p: &Page| {
            p.items
                .iter()
                .map(|r| r.record.id.clone())
                .collect::<Vec<_>>()
        };
        for (kind, f, want) in [
            (
                user,
                "userName eq \"a@x.io\"".to_string(),
                vec![a.id.clone()],
            ),
            (user, format!("id eq \"{}\"", b.id), vec![b.id.clone()]),
            // Named in another case and under a `not`, `id` is still added for the test.
            (
                user,
                format!("not (ID eq \"{}\")", a.id),
                vec![b.id.clone()],
            ),
            (user, "meta.resourceType eq \"User\"".into(), {
                let mut v = vec![a.id.clone(), b.id.clone()];
                v.sort();
                v
            }),
            (
                group_kind,
                format!("members eq \"{}\"", a.id),
                vec![g.id.clone()],
            ),
            (group_kind, format!("members eq \"{}\"", b.id), vec![]),
            // Membership checks (looked up by the ids they name, not by reading every member).
            (
                group_kind,
                format!("id eq \"{}\" and members[value eq \"{}\"]", g.id, a.id),
                vec![g.id.clone()],
            ),
            (
                group_kind,
                format!("id eq \"{}\" and members[value eq \"{}\"]", g.id, b.id),
                vec![],
            ),
            (
                group_kind,
                format!("members[value eq \"nobody\" or value eq \"{}\"]", a.id),
                vec![g.id.clone()],
            ),
            (
                group_kind,
                format!("not (members.value eq \"{}\")", b.id),
                vec![g.id.clone()],
            ),
            (
                user,
                format!("groups[value eq \"{}\"]", g.id),
                vec![a.id.clone()],
            ),
            (
                user,
                format!("not (groups[value eq \"{}\"])", g.id),
                vec![b.id.clone()],
            ),
        ] {
            let page = query(kind, &f);
            assert_eq!(ids(&page), want, "{f}");
            for r in &page.items {
                let stored = store.get(kind, &r.record.id, false).unwrap().unwrap();
                assert_eq!(r.record.data, stored.record.data, "{f}");
                for added in ["id", "meta", "members", "groups"] {
                    assert!(
                        r.record.data.get(added).is_none(),
                        "{f}: {added} left behind"
                    );
                }
            }
        }
    }
}
