//! Store upkeep: trimming the change feed behind the reconciler's cursor and pruning the audit
//! log to its retention, so the store file stops growing with every write.
//!
//! Deletions run on the store's writer in bounded batches, one transaction each, so SCIM writes
//! queued meanwhile are committed between batches instead of waiting for a whole backlog.

use super::tables::*;
use super::{DbResult, Result, Store};
use redb::ReadableTable;
use serde::Deserialize;
use std::time::{Duration, Instant};

// The defaults are product decisions the config documents; the store takes them from there.
pub use crate::config::{
    DEFAULT_AUDIT_MAX_ENTRIES, DEFAULT_AUDIT_RETENTION_DAYS, DEFAULT_KEEP_CHANGES,
};
/// Deletions per write transaction: small enough that a SCIM write sharing the transaction is
/// delayed by milliseconds, large enough that a backlog of millions takes a few hundred commits.
pub const DEFAULT_UPKEEP_BATCH: usize = 10_000;
/// Audit pruning by age only has something to do as entries cross the cutoff; once an hour
/// keeps it from costing a commit after every run.
const AUDIT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// How much of the change feed and the audit log the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// The newest entries of the change feed kept even when the reconciler is past them, for
    /// debugging.
    pub keep_changes: u64,
    /// Audit entries older than this are pruned; 0 keeps them forever.
    pub audit_retention_days: u64,
    /// The oldest audit entries beyond this many are pruned; 0 is unlimited.
    pub audit_max_entries: u64,
    /// Most deletions per write transaction.
    pub batch: usize,
}

/// What the store keeps, as `[store]` sets it.
impl From<&crate::config::StoreConfig> for Retention {
    fn from(c: &crate::config::StoreConfig) -> Self {
        Retention {
            keep_changes: c.keep_changes,
            audit_retention_days: c.audit_retention_days,
            audit_max_entries: c.audit_max_entries,
            ..Retention::default()
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_changes: DEFAULT_KEEP_CHANGES,
            audit_retention_days: DEFAULT_AUDIT_RETENTION_DAYS,
            audit_max_entries: DEFAULT_AUDIT_MAX_ENTRIES,
            batch: DEFAULT_UPKEEP_BATCH,
        }
    }
}

/// What one upkeep pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpkeepReport {
    pub changes_trimmed: u64,
    pub audit_pruned: u64,
    /// Write transactions used.
    pub batches: u64,
}

impl UpkeepReport {
    fn add(&mut self, other: UpkeepReport) {
        self.changes_trimmed += other.changes_trimmed;
        self.audit_pruned += other.audit_pruned;
        self.batches += other.batches;
    }
}

/// The newest sequence number ever assigned in `table`. A store written before the number was
/// kept in META has it only as the table's last key, hence the max.
pub(crate) fn last_assigned(
    meta: &impl ReadableTable<&'static str, u64>,
    key: &str,
    table: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<u64> {
    let kept = meta.get(key).db()?.map(|v| v.value()).unwrap_or(0);
    let last = table.last().db()?.map(|(k, _)| k.value()).unwrap_or(0);
    Ok(kept.max(last))
}

/// The highest change seq that may go, when at least one entry is at or below it. Never above
/// the cursor: targeted runs read the feed above it.
fn change_trim_bound(
    meta: &impl ReadableTable<&'static str, u64>,
    changes: &impl ReadableTable<u64, &'static [u8]>,
    keep: u64,
) -> Result<Option<u64>> {
    let cursor = meta
        .get(super::ledger::CURSOR_KEY)
        .db()?
        .map(|v| v.value())
        .unwrap_or(0);
    let last = last_assigned(meta, META_CHANGES_LAST_SEQ, changes)?;
    let bound = cursor.min(last.saturating_sub(keep));
    let first = changes.first().db()?.map(|(k, _)| k.value());
    Ok(first.filter(|f| *f <= bound).map(|_| bound))
}

#[derive(Deserialize)]
struct AuditTime {
    #[serde(default)]
    at: String,
}

/// The last key of the oldest run of audit entries beyond either bound (at most `batch` of
/// them), and how many that is.
fn audit_prune_bound(
    audit: &impl ReadableTable<u64, &'static [u8]>,
    cutoff: Option<time::OffsetDateTime>,
    max_entries: u64,
    batch: usize,
) -> Result<Option<(u64, usize)>> {
    let excess = if max_entries == 0 {
        0
    } else {
        audit.len().db()?.saturating_sub(max_entries)
    };
    if excess == 0 && cutoff.is_none() {
        return Ok(None);
    }
    let mut found = None;
    let mut n = 0usize;
    for entry in audit.iter().db()? {
        if n >= batch {
            break;
        }
        let (k, v) = entry.db()?;
        let over_count = (n as u64) < excess;
        // Entries are appended in time order, so the old ones form a prefix; an entry whose time
        // cannot be read ends it rather than failing the pass (it goes by count, if ever).
        let too_old = cutoff.is_some_and(|c| {
            serde_json::from_slice::<AuditTime>(v.value())
                .ok()
                .and_then(|a| {
                    time::OffsetDateTime::parse(
                        &a.at,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .ok()
                })
                .is_some_and(|at| at < c)
        });
        if !(over_count || too_old) {
            break;
        }
        n += 1;
        found = Some((k.value(), n));
    }
    Ok(found)
}

fn audit_cutoff(now: time::OffsetDateTime, days: u64) -> Option<time::OffsetDateTime> {
    if days == 0 {
        return None;
    }
    let days = i64::try_from(days).ok()?;
    now.checked_sub(time::Duration::days(days))
}

impl Store {
    /// Trims the change feed behind the reconciler's cursor and, at most once an hour, prunes
    /// the audit log to its retention. Meant to run after the reconciler stores its cursor.
    pub async fn upkeep(&self) -> Result<UpkeepReport> {
        let mut report = self.trim_changes().await?;
        let due = {
            let last = self
                .audit_pruned_at
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            last.is_none_or(|t| t.elapsed() >= AUDIT_PRUNE_INTERVAL)
        };
        if due {
            report.add(self.prune_audit(time::OffsetDateTime::now_utc()).await?);
            *self
                .audit_pruned_at
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        Ok(report)
    }

    /// Removes change-feed entries at or below the reconciler's cursor, except the newest
    /// `keep_changes`, in batches.
    pub async fn trim_changes(&self) -> Result<UpkeepReport> {
        let keep = self.retention.keep_changes;
        let batch = self.retention.batch.max(1);
        let mut report = UpkeepReport::default();
        // Checked on a snapshot first, so that a pass with nothing to do costs no commit.
        {
            let rtx = self.db.begin_read()?;
            let meta = rtx.open_table(META).db()?;
            let changes = rtx.open_table(CHANGES).db()?;
            if change_trim_bound(&meta, &changes, keep)?.is_none() {
                return Ok(report);
            }
        }
        let (n, batches) = self
            .in_batches(batch, move |tx| {
                let (bound, last) = {
                    let meta = tx.open_table(META).db()?;
                    let changes = tx.open_table(CHANGES).db()?;
                    (
                        change_trim_bound(&meta, &changes, keep)?,
                        last_assigned(&meta, META_CHANGES_LAST_SEQ, &changes)?,
                    )
                };
                let Some(bound) = bound else {
                    return Ok(0u64);
                };
                // Writes do not keep the newest number in META (the last entry holds it); it
                // goes there before the trim could take the last entry.
                tx.open_table(META)
                    .db()?
                    .insert(META_CHANGES_LAST_SEQ, last)
                    .db()?;
                let mut changes = tx.open_table(CHANGES).db()?;
                let n = drain(changes.extract_from_if(..=bound, |_, _| true).db()?, batch)?;
                Ok(n)
            })
            .await?;
        report.changes_trimmed = n;
        report.batches = batches;
        Ok(report)
    }

    /// Removes the oldest audit entries older than `audit_retention_days` before `now` or beyond
    /// `audit_max_entries`, in batches.
    pub async fn prune_audit(&self, now: time::OffsetDateTime) -> Result<UpkeepReport> {
        let cutoff = audit_cutoff(now, self.retention.audit_retention_days);
        let max_entries = self.retention.audit_max_entries;
        let batch = self.retention.batch.max(1);
        let mut report = UpkeepReport::default();
        {
            let rtx = self.db.begin_read()?;
            let audit = rtx.open_table(AUDIT).db()?;
            if audit_prune_bound(&audit, cutoff, max_entries, batch)?.is_none() {
                return Ok(report);
            }
        }
        let (n, batches) = self
            .in_batches(batch, move |tx| {
                let mut audit = tx.open_table(AUDIT).db()?;
                let Some((bound, count)) = audit_prune_bound(&audit, cutoff, max_entries, batch)?
                else {
                    return Ok(0u64);
                };
                let n = drain(audit.extract_from_if(..=bound, |_, _| true).db()?, count)?;
                Ok(n)
            })
            .await?;
        report.audit_pruned = n;
        report.batches = batches;
        Ok(report)
    }

    /// Runs `job` (which deletes at most `batch` rows and says how many) as separate writer jobs
    /// until a job deletes fewer than `batch`: SCIM writes queued meanwhile commit in between.
    /// Returns the rows deleted and the jobs that deleted some.
    async fn in_batches<F>(&self, batch: usize, job: F) -> Result<(u64, u64)>
    where
        F: Fn(&redb::WriteTransaction) -> Result<u64> + Clone + Send + 'static,
    {
        let (mut total, mut batches) = (0u64, 0u64);
        loop {
            let n = self.writer.run(job.clone()).await?;
            if n == 0 {
                break;
            }
            total += n;
            batches += 1;
            if n < batch as u64 {
                break;
            }
        }
        Ok((total, batches))
    }
}

/// Consumes up to `limit` entries of a redb extraction (each one is removed as it is read).
fn drain<I, T>(entries: I, limit: usize) -> Result<u64>
where
    I: Iterator<Item = std::result::Result<T, redb::StorageError>>,
{
    let mut n = 0u64;
    for entry in entries.take(limit) {
        entry.db()?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::scim::resource::Normalized;
    use crate::scim::schema::ResourceKind;
    use crate::store::{AuditEntry, StoreOptions};
    use std::path::Path;

    fn opts(retention: Retention) -> StoreOptions {
        StoreOptions {
            retention,
            ..StoreOptions::default()
        }
    }

    fn retention(keep_changes: u64, batch: usize) -> Retention {
        Retention {
            keep_changes,
            audit_retention_days: 0,
            audit_max_entries: 0,
            batch,
        }
    }

    async fn create_users(store: &Store, prefix: &str, n: usize) {
        for i in 0..n {
            let n = Normalized {
                resource: serde_json::json!({"userName": format!("{prefix}{i}@example.com")}),
                members: None,
            };
            store.create(ResourceKind::User, n).await.unwrap();
        }
    }

    fn seqs(store: &Store) -> Vec<u64> {
        store
            .changes_since(0, usize::MAX)
            .unwrap()
            .iter()
            .map(|c| c.seq)
            .collect()
    }

    fn open(path: &Path, r: Retention) -> Store {
        Store::open(path, opts(r)).unwrap()
    }

    #[tokio::test]
    async fn trimming_stays_at_or_below_the_cursor_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("s.redb"), retention(3, 10_000));
        create_users(&store, "u", 20).await;

        // Nothing is trimmed before the reconciler has handled anything.
        assert_eq!(store.upkeep().await.unwrap().changes_trimmed, 0);
        assert_eq!(seqs(&store).len(), 20);

        // The cursor is the binding limit: entries above it stay, whatever keep_changes says.
        store.set_reconcile_cursor(8).await.unwrap();
        let r = store.trim_changes().await.unwrap();
        assert_eq!(r.changes_trimmed, 8);
        assert_eq!(seqs(&store), (9..=20).collect::<Vec<_>>());
        assert_eq!(store.changes_since(8, 100).unwrap().len(), 12);

        // Past the cursor, keep_changes is: the newest 3 stay even though they are handled.
        store.set_reconcile_cursor(20).await.unwrap();
        store.trim_changes().await.unwrap();
        assert_eq!(seqs(&store), vec![18, 19, 20]);
        assert_eq!(store.last_seq().unwrap(), 20);

        // Nothing left to do costs no commit.
        let commits = store.write_stats().commits;
        assert_eq!(store.trim_changes().await.unwrap().changes_trimmed, 0);
        assert_eq!(store.write_stats().commits, commits);
    }

    /// Writes leave the newest number to the feed's last entry; a trim that takes every entry,
    /// in one batch or several, must keep it so that no number is handed out twice.
    #[tokio::test]
    async fn seq_never_goes_back_after_trimming_everything_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = open(&path, retention(0, 2));
            create_users(&store, "a", 5).await;
            store.set_reconcile_cursor(5).await.unwrap();
            assert_eq!(store.trim_changes().await.unwrap().changes_trimmed, 5);
            assert!(seqs(&store).is_empty());
            assert_eq!(store.last_seq().unwrap(), 5);
            create_users(&store, "b", 1).await;
            assert_eq!(seqs(&store), vec![6]);
            store.set_reconcile_cursor(6).await.unwrap();
            store.trim_changes().await.unwrap();
            assert!(seqs(&store).is_empty());
            store.close().await;
        }
        let store = open(&path, retention(0, 2));
        assert_eq!(store.last_seq().unwrap(), 6);
        assert_eq!(store.reconcile_cursor().unwrap(), 6);
        create_users(&store, "c", 2).await;
        assert_eq!(seqs(&store), vec![7, 8]);
        // A targeted run above the cursor still sees the new writes.
        assert_eq!(store.changes_since(6, 10).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_store_without_the_kept_seq_continues_from_its_last_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = open(&path, retention(0, 10_000));
            create_users(&store, "a", 4).await;
            store.close().await;
        }
        // As an older release left it: the numbers only in the tables' keys.
        {
            let db = redb::Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut meta = tx.open_table(META).unwrap();
                meta.remove(META_CHANGES_LAST_SEQ).unwrap();
                meta.remove(META_AUDIT_LAST_SEQ).unwrap();
            }
            tx.commit().unwrap();
        }
        let store = open(&path, retention(0, 10_000));
        store.set_reconcile_cursor(4).await.unwrap();
        store.trim_changes().await.unwrap();
        assert!(seqs(&store).is_empty());
        create_users(&store, "b", 1).await;
        assert_eq!(seqs(&store), vec![5]);
    }

    #[tokio::test]
    async fn trimming_a_backlog_goes_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("s.redb"), retention(2, 4));
        create_users(&store, "u", 13).await;
        store.set_reconcile_cursor(13).await.unwrap();
        let before = store.write_stats();
        let r = store.trim_changes().await.unwrap();
        // 11 entries in batches of at most 4: 4 + 4 + 3.
        assert_eq!(r.changes_trimmed, 11);
        assert_eq!(r.batches, 3);
        let after = store.write_stats();
        assert_eq!(after.commits - before.commits, 3);
        // Each commit's time is counted: a durable commit takes more than no time at all.
        assert!(after.committing > before.committing);
        assert!(after.applying > before.applying);
        assert_eq!(seqs(&store), vec![12, 13]);
    }

    fn entry(at: &str) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at: at.into(),
            run_id: "r".into(),
            op: serde_json::json!({"op": "invite"}),
            reason: "test".into(),
            result: "ok".into(),
        }
    }

    fn audit_seqs(store: &Store) -> Vec<u64> {
        let mut v: Vec<u64> = store
            .audit(usize::MAX, None)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        v.reverse();
        v
    }

    fn ts(s: &str) -> time::OffsetDateTime {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[tokio::test]
    async fn audit_is_pruned_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(
            &dir.path().join("s.redb"),
            Retention {
                audit_retention_days: 30,
                ..retention(0, 10_000)
            },
        );
        store
            .append_audit(vec![
                entry("2026-01-01T00:00:00Z"),
                entry("2026-01-15T12:00:00.5Z"),
                entry("2026-02-10T00:00:00+01:00"),
                entry("2026-03-01T00:00:00Z"),
            ])
            .await
            .unwrap();
        // 30 days before 2026-03-01 is 2026-01-30: the first two are older.
        let r = store.prune_audit(ts("2026-03-01T00:00:00Z")).await.unwrap();
        assert_eq!(r.audit_pruned, 2);
        assert_eq!(audit_seqs(&store), vec![3, 4]);
        // Everything aged out: the log is empty, and numbering still goes on.
        store.prune_audit(ts("2027-01-01T00:00:00Z")).await.unwrap();
        assert!(audit_seqs(&store).is_empty());
        let seqs = store.append_audit(vec![entry("")]).await.unwrap();
        assert_eq!(seqs, vec![5]);
        // A fresh entry (stamped now) is kept.
        let r = store
            .prune_audit(time::OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert_eq!(r.audit_pruned, 0);
        assert_eq!(audit_seqs(&store), vec![5]);
    }

    #[tokio::test]
    async fn audit_is_pruned_by_count_in_batches_and_numbering_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let r = Retention {
            audit_retention_days: 365,
            audit_max_entries: 3,
            ..retention(0, 2)
        };
        {
            let store = open(&path, r.clone());
            let now = crate::store::now_rfc3339();
            store
                .append_audit((0..10).map(|_| entry(&now)).collect())
                .await
                .unwrap();
            let report = store.upkeep().await.unwrap();
            // 7 beyond the bound, 2 per transaction.
            assert_eq!(report.audit_pruned, 7);
            assert_eq!(report.batches, 4);
            assert_eq!(audit_seqs(&store), vec![8, 9, 10]);
            // Pruned at most once an hour: new entries wait for the next window.
            store.append_audit(vec![entry(&now)]).await.unwrap();
            assert_eq!(store.upkeep().await.unwrap().audit_pruned, 0);
            assert_eq!(audit_seqs(&store).len(), 4);
            store.close().await;
        }
        let store = open(&path, r);
        assert_eq!(store.upkeep().await.unwrap().audit_pruned, 1);
        assert_eq!(audit_seqs(&store), vec![9, 10, 11]);
        assert_eq!(store.append_audit(vec![entry("")]).await.unwrap(), vec![12]);
    }

    #[tokio::test]
    async fn audit_retention_zero_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("s.redb"), retention(0, 10_000));
        store
            .append_audit(vec![entry("2000-01-01T00:00:00Z"), entry("garbage")])
            .await
            .unwrap();
        let r = store.prune_audit(ts("2030-01-01T00:00:00Z")).await.unwrap();
        assert_eq!(r, UpkeepReport::default());
        assert_eq!(audit_seqs(&store), vec![1, 2]);
    }
}
