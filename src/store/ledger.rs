//! What the reconciler keeps in the store: the link ledger (which control-plane user or invite
//! a SCIM user became, which workspace a group maps to), the audit log of every control-plane
//! change applied, and the reconciler's cursor into the change feed.

use super::tables::*;
use super::{now_rfc3339, DbResult, Result, Store, StoreError};
use redb::ReadableTable;
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

pub(crate) const CURSOR_KEY: &str = "reconcile_cursor";

impl Store {
    /// Every link, by email.
    pub fn links(&self) -> Result<BTreeMap<String, Link>> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(LINKS).db()?;
        let mut out = BTreeMap::new();
        for entry in t.iter().db()? {
            let (k, v) = entry.db()?;
            let link: Link = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Corrupt(format!("link {}", k.value()), e.to_string()))?;
            out.insert(k.value().to_string(), link);
        }
        Ok(out)
    }

    /// Sets (or with `None`, removes) the links of several emails in one transaction.
    pub async fn set_links(&self, changes: Vec<(String, Option<Link>)>) -> Result<()> {
        self.writer
            .run(move |tx| {
                let mut t = tx.open_table(LINKS).db()?;
                for (email, link) in changes {
                    let key = email.to_lowercase();
                    match link {
                        Some(mut l) => {
                            if l.updated.is_empty() {
                                l.updated = now_rfc3339();
                            }
                            let bytes = serde_json::to_vec(&l).map_err(|e| {
                                StoreError::Corrupt(format!("link {key}"), e.to_string())
                            })?;
                            t.insert(key.as_str(), bytes.as_slice()).db()?;
                        }
                        None => {
                            t.remove(key.as_str()).db()?;
                        }
                    }
                }
                Ok(())
            })
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
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(AUDIT).db()?;
        let end = before.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for entry in t.range(..end).db()?.rev().take(limit) {
            let (k, v) = entry.db()?;
            let e: AuditEntry = serde_json::from_slice(v.value()).map_err(|err| {
                StoreError::Corrupt(format!("audit {}", k.value()), err.to_string())
            })?;
            out.push(e);
        }
        Ok(out)
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
}
