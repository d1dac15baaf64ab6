//! What the reconciler keeps in the store: the link ledger (which control-plane user or invite
//! a SCIM user became, by email; which workspaces the daemon has managed, by name), the audit
//! log of every control-plane change applied, and the reconciler's cursor into the change feed.

use super::tables::*;
use super::{now_rfc3339, DbResult, Result, Store, StoreError};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the daemon knows it created or manages for one email (lower-cased).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Link {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portkey_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_id: Option<String>,
    pub updated: String,
}

/// A workspace the daemon has managed, by lower-cased name. It stays managed while it exists,
/// so that renaming or deleting the group that granted it removes the memberships it granted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkspaceLink {
    /// When the row was written; set by the store when empty.
    pub updated: String,
}

/// A ledger row whose `updated` time the store fills in when the caller leaves it empty.
trait Stamped: Serialize {
    fn stamp(&mut self);
}

impl Stamped for Link {
    fn stamp(&mut self) {
        if self.updated.is_empty() {
            self.updated = now_rfc3339();
        }
    }
}

impl Stamped for WorkspaceLink {
    fn stamp(&mut self) {
        if self.updated.is_empty() {
            self.updated = now_rfc3339();
        }
    }
}

/// Every row of a ledger table, by key.
fn read_rows<T: DeserializeOwned>(
    rtx: &redb::ReadTransaction,
    def: TableDefinition<&str, &[u8]>,
    what: &str,
) -> Result<BTreeMap<String, T>> {
    let t = rtx.open_table(def).db()?;
    let mut out = BTreeMap::new();
    for entry in t.iter().db()? {
        let (k, v) = entry.db()?;
        let row: T = serde_json::from_slice(v.value())
            .map_err(|e| StoreError::Corrupt(format!("{what} {}", k.value()), e.to_string()))?;
        out.insert(k.value().to_string(), row);
    }
    Ok(out)
}

/// Sets (or with `None`, removes) rows of a ledger table, keyed by the lower-cased key.
fn write_rows<T: Stamped>(
    tx: &WriteTransaction,
    def: TableDefinition<&str, &[u8]>,
    what: &str,
    changes: Vec<(String, Option<T>)>,
) -> Result<()> {
    let mut t = tx.open_table(def).db()?;
    for (key, row) in changes {
        let key = key.to_lowercase();
        match row {
            Some(mut row) => {
                row.stamp();
                let bytes = serde_json::to_vec(&row)
                    .map_err(|e| StoreError::Corrupt(format!("{what} {key}"), e.to_string()))?;
                t.insert(key.as_str(), bytes.as_slice()).db()?;
            }
            None => {
                t.remove(key.as_str()).db()?;
            }
        }
    }
    Ok(())
}

/// Keeps [`LINKS_BY_SCIM_ID`] in step with link rows about to be written by [`write_rows`].
fn index_link_owners(tx: &WriteTransaction, changes: &[(String, Option<Link>)]) -> Result<()> {
    let links = tx.open_table(LINKS).db()?;
    for (key, row) in changes {
        let key = key.to_lowercase();
        let old = match links.get(key.as_str()).db()? {
            Some(v) => {
                serde_json::from_slice::<Link>(v.value())
                    .map_err(|e| StoreError::Corrupt(format!("link {key}"), e.to_string()))?
                    .scim_id
            }
            None => None,
        };
        let new = row.as_ref().and_then(|l| l.scim_id.as_deref());
        super::reindex(tx, LINKS_BY_SCIM_ID, &key, old.as_deref(), new)?;
    }
    Ok(())
}

/// Indexes every link by its SCIM id (the migration to schema version 3); returns how many
/// name one.
pub(crate) fn build_link_index(tx: &WriteTransaction) -> Result<u64> {
    let links = tx.open_table(LINKS).db()?;
    let mut idx = tx.open_multimap_table(LINKS_BY_SCIM_ID).db()?;
    let mut n = 0;
    for row in links.iter().db()? {
        let (k, v) = row.db()?;
        let link: Link = serde_json::from_slice(v.value())
            .map_err(|e| StoreError::Corrupt(format!("link {}", k.value()), e.to_string()))?;
        if let Some(id) = &link.scim_id {
            idx.insert(id.as_str(), k.value()).db()?;
            n += 1;
        }
    }
    Ok(n)
}

/// Schema version 1 → 2: moves the workspace rows of the email-keyed links table into their
/// own table, in the caller's (the opening) transaction. Returns how many moved.
pub(crate) fn migrate_workspace_links(tx: &WriteTransaction) -> Result<u64> {
    let mut links = tx.open_table(LINKS).db()?;
    let mut workspaces = tx.open_table(WORKSPACE_LINKS).db()?;
    let mut moved = 0u64;
    // The workspace rows sort together from the prefix on; emails that sort after it stay.
    for row in links
        .extract_from_if(V1_WORKSPACE_LINK_PREFIX.., |k, _| {
            k.starts_with(V1_WORKSPACE_LINK_PREFIX)
        })
        .db()?
    {
        let (k, v) = row.db()?;
        let key = k.value();
        let name = key.strip_prefix(V1_WORKSPACE_LINK_PREFIX).unwrap_or(key);
        // A v1 row is a `Link` with only its time set; the time is what carries over.
        let old: Link = serde_json::from_slice(v.value())
            .map_err(|e| StoreError::Corrupt(format!("link {key}"), e.to_string()))?;
        let bytes = serde_json::to_vec(&WorkspaceLink {
            updated: old.updated,
        })
        .map_err(|e| StoreError::Corrupt(format!("workspace link {name}"), e.to_string()))?;
        workspaces.insert(name, bytes.as_slice()).db()?;
        moved += 1;
    }
    Ok(moved)
}

/// One control-plane change the reconciler applied (or tried, or held).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    /// Assigned by the store.
    #[serde(default)]
    pub seq: u64,
    /// Assigned by the store when empty.
    #[serde(default)]
    pub at: String,
    pub run_id: String,
    /// The operation, as the plan shows it.
    pub op: serde_json::Value,
    pub reason: String,
    /// `ok`, `failed: …`, `held`, `dry-run`, `skipped: …`.
    pub result: String,
}

impl AuditEntry {
    /// Whether `needle` (lower case) is part of the run id, time, op, reason or result, compared
    /// in lower case.
    pub fn mentions(&self, needle: &str) -> bool {
        [
            self.run_id.as_str(),
            self.at.as_str(),
            self.reason.as_str(),
            self.result.as_str(),
        ]
        .iter()
        .any(|f| f.to_lowercase().contains(needle))
            || self.op.to_string().to_lowercase().contains(needle)
    }
}

pub(crate) const CURSOR_KEY: &str = "reconcile_cursor";

impl Store {
    /// Every person's link, by email.
    pub fn links(&self) -> Result<BTreeMap<String, Link>> {
        read_rows(&self.db.begin_read()?, LINKS, "link")
    }

    /// The links of these emails (lower-cased) that exist, read on one snapshot: a run for a few
    /// people reads theirs, not the whole ledger.
    pub fn links_of<'a>(
        &self,
        emails: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, Link>> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(LINKS).db()?;
        let mut out = BTreeMap::new();
        for email in emails {
            if let Some(v) = t.get(email).db()? {
                let row: Link = serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Corrupt(format!("link {email}"), e.to_string()))?;
                out.insert(email.to_string(), row);
            }
        }
        Ok(out)
    }

    /// The lower-cased emails the ledger links to this SCIM id: every address the daemon
    /// provisioned for that user, its current one and any it had before.
    pub fn emails_linked_to(&self, scim_id: &str) -> Result<Vec<String>> {
        super::multimap_values(&self.db.begin_read()?, LINKS_BY_SCIM_ID, scim_id)
    }

    /// How many people the ledger holds.
    pub fn link_count(&self) -> Result<u64> {
        let rtx = self.db.begin_read()?;
        rtx.open_table(LINKS).db()?.len().db()
    }

    /// Sets (or with `None`, removes) the links of several emails in one transaction.
    pub async fn set_links(&self, changes: Vec<(String, Option<Link>)>) -> Result<()> {
        self.writer
            .run(move |tx| {
                index_link_owners(tx, &changes)?;
                write_rows(tx, LINKS, "link", changes)
            })
            .await
    }

    /// Every workspace the daemon has managed, by lower-cased name.
    pub fn workspace_links(&self) -> Result<BTreeMap<String, WorkspaceLink>> {
        read_rows(&self.db.begin_read()?, WORKSPACE_LINKS, "workspace link")
    }

    /// Sets (or with `None`, removes) the links of several workspaces, by name, in one
    /// transaction.
    pub async fn set_workspace_links(
        &self,
        changes: Vec<(String, Option<WorkspaceLink>)>,
    ) -> Result<()> {
        self.writer
            .run(move |tx| write_rows(tx, WORKSPACE_LINKS, "workspace link", changes))
            .await
    }

    /// Appends audit entries in one transaction; returns their sequence numbers.
    pub async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<Vec<u64>> {
        self.writer
            .run(move |tx| {
                let mut meta = tx.open_table(META).db()?;
                let mut t = tx.open_table(AUDIT).db()?;
                let mut seq = super::upkeep::last_assigned(&meta, META_AUDIT_LAST_SEQ, &t)?;
                let mut seqs = Vec::with_capacity(entries.len());
                for mut e in entries {
                    seq += 1;
                    e.seq = seq;
                    if e.at.is_empty() {
                        e.at = now_rfc3339();
                    }
                    let bytes = serde_json::to_vec(&e).map_err(|err| {
                        StoreError::Corrupt(format!("audit {seq}"), err.to_string())
                    })?;
                    t.insert(seq, bytes.as_slice()).db()?;
                    seqs.push(seq);
                }
                meta.insert(META_AUDIT_LAST_SEQ, seq).db()?;
                Ok(seqs)
            })
            .await
    }

    /// The newest audit entries, newest first, at most `limit`, optionally only those before
    /// `before` (for paging backwards).
    pub fn audit(&self, limit: usize, before: Option<u64>) -> Result<Vec<AuditEntry>> {
        Ok(self.audit_search(limit, before, None, usize::MAX)?.0)
    }

    /// Up to `limit` entries, newest first, below `before`, whose run id, time, op, reason or
    /// result contains `needle` (lower case; `None` matches all). At most `scan` entries are
    /// read, so a search that matches little over a long log stays bounded; the second value is
    /// where to go on from (`before`) when the log holds more below what was read.
    pub fn audit_search(
        &self,
        limit: usize,
        before: Option<u64>,
        needle: Option<&str>,
        scan: usize,
    ) -> Result<(Vec<AuditEntry>, Option<u64>)> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(AUDIT).db()?;
        let end = before.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut last_seen = None;
        for (scanned, entry) in t.range(..end).db()?.rev().enumerate() {
            if out.len() >= limit || scanned >= scan {
                return Ok((out, last_seen));
            }
            let (k, v) = entry.db()?;
            last_seen = Some(k.value());
            let e: AuditEntry = serde_json::from_slice(v.value()).map_err(|err| {
                StoreError::Corrupt(format!("audit {}", k.value()), err.to_string())
            })?;
            if needle.is_none_or(|n| e.mentions(n)) {
                out.push(e);
            }
        }
        Ok((out, None))
    }

    /// The last change-feed sequence number the reconciler has fully handled.
    pub fn reconcile_cursor(&self) -> Result<u64> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(META).db()?;
        let v = t.get(CURSOR_KEY).db()?.map(|v| v.value()).unwrap_or(0);
        Ok(v)
    }

    pub async fn set_reconcile_cursor(&self, seq: u64) -> Result<()> {
        self.writer
            .run(move |tx| {
                let mut t = tx.open_table(META).db()?;
                t.insert(CURSOR_KEY, seq).db()?;
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[tokio::test]
    async fn links_audit_and_cursor_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path, StoreOptions::default()).unwrap();
            store
                .set_links(vec![(
                    "Alice@Example.com".into(),
                    Some(Link {
                        portkey_user_id: Some("u1".into()),
                        ..Default::default()
                    }),
                )])
                .await
                .unwrap();
            let entry = AuditEntry {
                seq: 0,
                at: String::new(),
                run_id: "r1".into(),
                op: serde_json::json!({"kind": "invite"}),
                reason: "in group".into(),
                result: "ok".into(),
            };
            let seqs = store
                .append_audit(vec![entry.clone(), entry])
                .await
                .unwrap();
            assert_eq!(seqs, vec![1, 2]);
            store.set_reconcile_cursor(42).await.unwrap();
            store.close().await;
        }
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        let links = store.links().unwrap();
        assert_eq!(
            links["alice@example.com"].portkey_user_id.as_deref(),
            Some("u1")
        );
        assert!(!links["alice@example.com"].updated.is_empty());
        let audit = store.audit(10, None).unwrap();
        assert_eq!(audit.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(store.audit(10, Some(2)).unwrap().len(), 1);
        assert_eq!(store.reconcile_cursor().unwrap(), 42);
        store
            .set_links(vec![("alice@example.com".into(), None)])
            .await
            .unwrap();
        assert!(store.links().unwrap().is_empty());
    }

    #[tokio::test]
    async fn audit_search_matches_any_field_in_any_case_and_reads_a_bounded_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreOptions::default()).unwrap();
        let entry = |email: &str, result: &str| AuditEntry {
            seq: 0,
            at: String::new(),
            run_id: "run-7".into(),
            op: serde_json::json!({"op": "remove_user", "email": email}),
            reason: "deactivated in the IdP".into(),
            result: result.into(),
        };
        // seq 1..=10: bob at 2 and 9, jimbob at 5.
        let mut entries: Vec<AuditEntry> = (1..=10)
            .map(|i| entry(&format!("p{i}@x.io"), "ok"))
            .collect();
        entries[1] = entry("Bob@X.io", "ok");
        entries[4] = entry("jimbob@x.io", "failed: 500");
        entries[8] = entry("bob@x.io", "held");
        store.append_audit(entries).await.unwrap();

        let seqs = |v: &[AuditEntry]| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        let (all, next) = store
            .audit_search(100, None, Some("bob@x.io"), usize::MAX)
            .unwrap();
        assert_eq!(seqs(&all), vec![9, 5, 2]);
        assert_eq!(next, None);
        let (failed, _) = store
            .audit_search(100, None, Some("failed"), usize::MAX)
            .unwrap();
        assert_eq!(seqs(&failed), vec![5]);
        let (run, _) = store
            .audit_search(100, None, Some("run-7"), usize::MAX)
            .unwrap();
        assert_eq!(run.len(), 10);
        // Filled the limit: go on below the last entry returned.
        let (page, next) = store
            .audit_search(2, None, Some("bob@x.io"), usize::MAX)
            .unwrap();
        assert_eq!((seqs(&page), next), (vec![9, 5], Some(5)));
        let (rest, next) = store
            .audit_search(2, next, Some("bob@x.io"), usize::MAX)
            .unwrap();
        assert_eq!((seqs(&rest), next), (vec![2], None));
        // Read its bound (10, 9, 8) without filling the limit: says where to go on.
        let (bounded, next) = store.audit_search(100, None, Some("bob@x.io"), 3).unwrap();
        assert_eq!((seqs(&bounded), next), (vec![9], Some(8)));
        let (none, next) = store
            .audit_search(100, None, Some("carol"), usize::MAX)
            .unwrap();
        assert!(none.is_empty() && next.is_none());
    }

    #[tokio::test]
    async fn links_are_found_by_scim_id_as_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreOptions::default()).unwrap();
        let link = |id: Option<&str>| {
            Some(Link {
                scim_id: id.map(str::to_string),
                ..Link::default()
            })
        };
        let linked = |id: &str| {
            let mut v = store.emails_linked_to(id).unwrap();
            v.sort();
            v
        };
        store
            .set_links(vec![
                ("Ann@x.io".into(), link(Some("u1"))),
                ("ann.old@x.io".into(), link(Some("u1"))),
                ("bo@x.io".into(), link(Some("u2"))),
                ("cy@x.io".into(), link(None)),
            ])
            .await
            .unwrap();
        assert_eq!(linked("u1"), vec!["ann.old@x.io", "ann@x.io"]);
        assert_eq!(linked("u2"), vec!["bo@x.io"]);
        // Re-linked to another record, unlinked, removed, and linked from nothing.
        store
            .set_links(vec![
                ("ann.old@x.io".into(), link(Some("u2"))),
                ("ann@x.io".into(), link(None)),
                ("bo@x.io".into(), None),
                ("cy@x.io".into(), link(Some("u3"))),
            ])
            .await
            .unwrap();
        assert!(linked("u1").is_empty());
        assert_eq!(linked("u2"), vec!["ann.old@x.io"]);
        assert_eq!(linked("u3"), vec!["cy@x.io"]);
        let few = store
            .links_of(["cy@x.io", "nobody@x.io", "ann@x.io"])
            .unwrap();
        assert_eq!(few.keys().collect::<Vec<_>>(), vec!["ann@x.io", "cy@x.io"]);
        assert_eq!(store.link_count().unwrap(), 3);
    }

    #[tokio::test]
    async fn workspace_links_are_kept_by_lower_cased_name_apart_from_people() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreOptions::default()).unwrap();
        store
            .set_workspace_links(vec![("Engineering".into(), Some(WorkspaceLink::default()))])
            .await
            .unwrap();
        let ws = store.workspace_links().unwrap();
        assert_eq!(ws.keys().collect::<Vec<_>>(), vec!["engineering"]);
        assert!(!ws["engineering"].updated.is_empty());
        assert!(store.links().unwrap().is_empty());
        store
            .set_workspace_links(vec![("ENGINEERING".into(), None)])
            .await
            .unwrap();
        assert!(store.workspace_links().unwrap().is_empty());
    }

    /// A v1 store as its reconciler left it: workspace rows under a prefix in the links table,
    /// among emails that sort before and after it.
    #[tokio::test]
    async fn opening_a_v1_store_moves_its_workspace_rows_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        Store::open(&path, StoreOptions::default())
            .unwrap()
            .close()
            .await;
        {
            let db = redb::Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut links = tx.open_table(LINKS).unwrap();
                for (k, v) in [
                    ("ada@x.io", r#"{"portkey_user_id":"p1","updated":"t0"}"#),
                    ("workspace:eng", r#"{"updated":"t1"}"#),
                    ("workspace:ops", r#"{"updated":"t2"}"#),
                    ("zoe@x.io", r#"{"invite_id":"i1","updated":"t3"}"#),
                ] {
                    links.insert(k, v.as_bytes()).unwrap();
                }
                tx.delete_table(WORKSPACE_LINKS).unwrap();
                tx.open_table(META)
                    .unwrap()
                    .insert(META_SCHEMA_VERSION, 1)
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        for _ in 0..2 {
            let store = Store::open(&path, StoreOptions::default()).unwrap();
            let ws = store.workspace_links().unwrap();
            assert_eq!(ws.keys().collect::<Vec<_>>(), vec!["eng", "ops"]);
            assert_eq!(ws["ops"].updated, "t2");
            let links = store.links().unwrap();
            assert_eq!(
                links.keys().collect::<Vec<_>>(),
                vec!["ada@x.io", "zoe@x.io"]
            );
            assert_eq!(links["zoe@x.io"].invite_id.as_deref(), Some("i1"));
            let rtx = store.db.begin_read().unwrap();
            let meta = rtx.open_table(META).unwrap();
            assert_eq!(
                meta.get(META_SCHEMA_VERSION).unwrap().unwrap().value(),
                crate::store::SCHEMA_VERSION
            );
            drop((meta, rtx));
            store.close().await;
        }
    }
}
