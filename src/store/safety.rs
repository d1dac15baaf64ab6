//! The reconciler's safety state, kept across runs and restarts: the destructive ops applied in
//! the fuse's rolling window, the ops the fuse holds (and which of them an operator approved),
//! and the ops that keep failing (quarantined with a backoff).
//!
//! Ops are stored as JSON values under a key the reconciler derives from the op, so the store
//! needs no knowledge of the plan's types.

use super::tables::{FAILING, FUSE_LOG, HELD};
use super::{DbResult, Result, Store, StoreError};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A destructive op held by the fuse.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeldOp {
    pub op: serde_json::Value,
    /// The person it is about (lower-cased), so a run scoped to some people only releases
    /// theirs.
    #[serde(default)]
    pub email: Option<String>,
    pub held_at: String,
    pub reason: String,
    /// Approved by an operator: the next run that still plans it applies it.
    #[serde(default)]
    pub approved: bool,
}

/// An op that failed and waits before it is tried again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailingOp {
    pub op: serde_json::Value,
    #[serde(default)]
    pub email: Option<String>,
    pub attempts: u32,
    pub first_failed_at: String,
    pub last_failed_at: String,
    pub last_error: String,
    /// Unix seconds; the op is skipped until then.
    pub next_attempt_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FuseEntry {
    at: i64,
    key: String,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string(), e.to_string())
}

impl Store {
    /// Destructive ops recorded at or after `since` (unix seconds).
    pub fn fuse_count_since(&self, since: i64) -> Result<usize> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(FUSE_LOG).db()?;
        let mut n = 0;
        // Keys grow with time, so the recent entries are at the end.
        for entry in t.iter().db()?.rev() {
            let (k, v) = entry.db()?;
            let e: FuseEntry = serde_json::from_slice(v.value())
                .map_err(|err| corrupt(&format!("fuse log {}", k.value()), err))?;
            if e.at < since {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Records applied destructive ops (unix seconds, op key) and drops entries older than
    /// `prune_before`, in one transaction.
    pub async fn record_destructive(
        &self,
        entries: Vec<(i64, String)>,
        prune_before: i64,
    ) -> Result<()> {
        self.writer
            .run(move |tx| {
                let mut t = tx.open_table(FUSE_LOG).db()?;
                let mut old = Vec::new();
                for entry in t.iter().db()? {
                    let (k, v) = entry.db()?;
                    let e: FuseEntry = serde_json::from_slice(v.value())
                        .map_err(|err| corrupt(&format!("fuse log {}", k.value()), err))?;
                    if e.at >= prune_before {
                        break;
                    }
                    old.push(k.value());
                }
                for k in old {
                    t.remove(k).db()?;
                }
                let mut seq = t.last().db()?.map(|(k, _)| k.value()).unwrap_or(0);
                for (at, key) in entries {
                    seq += 1;
                    let bytes = serde_json::to_vec(&FuseEntry { at, key })
                        .map_err(|e| corrupt("fuse log entry", e))?;
                    t.insert(seq, bytes.as_slice()).db()?;
                }
                Ok(())
            })
            .await
    }

    pub fn held_ops(&self) -> Result<BTreeMap<String, HeldOp>> {
        read_map(self, HELD, "held op")
    }

    /// Sets (or with `None`, removes) held ops by key, in one transaction.
    pub async fn set_held_ops(&self, changes: Vec<(String, Option<HeldOp>)>) -> Result<()> {
        write_map(self, HELD, changes).await
    }

    /// Marks every held op approved, if the held set's keys are exactly `keys`; returns whether
    /// they were. Checked and written in one transaction, so a run cannot change the set in
    /// between.
    pub async fn approve_held_ops(&self, keys: Vec<String>) -> Result<bool> {
        self.writer
            .run(move |tx| {
                let mut t = tx.open_table(HELD).db()?;
                let mut current: Vec<(String, HeldOp)> = Vec::new();
                for entry in t.iter().db()? {
                    let (k, v) = entry.db()?;
                    let op: HeldOp = serde_json::from_slice(v.value())
                        .map_err(|e| corrupt(&format!("held op {}", k.value()), e))?;
                    current.push((k.value().to_string(), op));
                }
                let mut have: Vec<&str> = current
                    .iter()
                    .filter(|(_, o)| !o.approved)
                    .map(|(k, _)| k.as_str())
                    .collect();
                have.sort_unstable();
                let mut want: Vec<&str> = keys.iter().map(String::as_str).collect();
                want.sort_unstable();
                if have != want || want.is_empty() {
                    return Ok(false);
                }
                for (k, mut op) in current {
                    if !op.approved {
                        op.approved = true;
                        let bytes = serde_json::to_vec(&op).map_err(|e| corrupt("held op", e))?;
                        t.insert(k.as_str(), bytes.as_slice()).db()?;
                    }
                }
                Ok(true)
            })
            .await
    }

    pub fn failing_ops(&self) -> Result<BTreeMap<String, FailingOp>> {
        read_map(self, FAILING, "failing op")
    }

    pub async fn set_failing_ops(&self, changes: Vec<(String, Option<FailingOp>)>) -> Result<()> {
        write_map(self, FAILING, changes).await
    }
}

fn read_map<T: serde::de::DeserializeOwned>(
    store: &Store,
    def: redb::TableDefinition<'static, &'static str, &'static [u8]>,
    what: &str,
) -> Result<BTreeMap<String, T>> {
    let rtx = store.db.begin_read()?;
    let t = rtx.open_table(def).db()?;
    let mut out = BTreeMap::new();
    for entry in t.iter().db()? {
        let (k, v) = entry.db()?;
        let value: T = serde_json::from_slice(v.value())
            .map_err(|e| corrupt(&format!("{what} {}", k.value()), e))?;
        out.insert(k.value().to_string(), value);
    }
    Ok(out)
}

async fn write_map<T: Serialize + Send + 'static>(
    store: &Store,
    def: redb::TableDefinition<'static, &'static str, &'static [u8]>,
    changes: Vec<(String, Option<T>)>,
) -> Result<()> {
    store
        .writer
        .run(move |tx| {
            let mut t = tx.open_table(def).db()?;
            for (key, value) in changes {
                match value {
                    Some(v) => {
                        let bytes = serde_json::to_vec(&v).map_err(|e| corrupt(&key, e))?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn held(email: &str) -> HeldOp {
        HeldOp {
            op: serde_json::json!({"op": "remove_user", "email": email}),
            email: Some(email.into()),
            held_at: "2026-01-01T00:00:00Z".into(),
            reason: "fuse".into(),
            approved: false,
        }
    }

    #[tokio::test]
    async fn fuse_log_counts_a_window_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreOptions::default()).unwrap();
        store
            .record_destructive(vec![(100, "a".into()), (200, "b".into())], 0)
            .await
            .unwrap();
        store
            .record_destructive(vec![(300, "c".into())], 150)
            .await
            .unwrap();
        assert_eq!(store.fuse_count_since(0).unwrap(), 2, "100 was pruned");
        assert_eq!(store.fuse_count_since(250).unwrap(), 1);
        assert_eq!(store.fuse_count_since(301).unwrap(), 0);
    }

    #[tokio::test]
    async fn approval_must_name_exactly_the_held_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path, StoreOptions::default()).unwrap();
            store
                .set_held_ops(vec![
                    ("k1".into(), Some(held("a@x.io"))),
                    ("k2".into(), Some(held("b@x.io"))),
                ])
                .await
                .unwrap();
            assert!(!store.approve_held_ops(vec!["k1".into()]).await.unwrap());
            assert!(!store.approve_held_ops(vec![]).await.unwrap());
            assert!(store
                .approve_held_ops(vec!["k2".into(), "k1".into()])
                .await
                .unwrap());
            store.close().await;
        }
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        assert!(store.held_ops().unwrap().values().all(|h| h.approved));
        store
            .set_failing_ops(vec![(
                "f".into(),
                Some(FailingOp {
                    op: serde_json::json!({}),
                    email: None,
                    attempts: 2,
                    first_failed_at: String::new(),
                    last_failed_at: String::new(),
                    last_error: "403".into(),
                    next_attempt_at: 5,
                }),
            )])
            .await
            .unwrap();
        assert_eq!(store.failing_ops().unwrap()["f"].attempts, 2);
        store
            .set_failing_ops(vec![("f".into(), None)])
            .await
            .unwrap();
        assert!(store.failing_ops().unwrap().is_empty());
    }
}
