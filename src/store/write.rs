//! The writer thread (group commit) and the write operations it runs.

use super::handle::{is_io, Db};
use super::tables::*;
use super::{
    decode, display_of, member_ids, now_rfc3339, Change, ChangeAction, ChangeKind, DbResult,
    Record, Result, StoreError, WriteNotes, RETRY_AFTER_SECS,
};
use crate::scim::filter;
use crate::scim::patch::MemberChange;
use crate::scim::resource::Normalized;
use crate::scim::schema::{ResourceKind, GROUP};
use redb::{ReadableMultimapTable, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// A queued write. Called with `None` when the batch could not start. Returns how to answer the
/// caller once the commit outcome is known, what its failure means for the batch, and what it
/// wrote in terms the write-ahead log can hold.
type Job = Box<dyn FnOnce(Option<&WriteTransaction>) -> (Finish, Severity, Redo) + Send>;

/// What a job wrote, for the write-ahead log.
enum Redo {
    /// Nothing.
    Nothing,
    /// This effect, which the log can hold.
    Logged(Box<Effect>),
    /// Something the log cannot hold: the batch needs a durable commit of its own.
    Unlogged,
}

/// What a job's outcome means for the batch it ran in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Severity {
    /// Succeeded, or failed on the request's own merits without touching the transaction.
    Fine,
    /// The transaction may hold part of this job: nothing in the batch may commit.
    Abort,
    /// The file failed (I/O): abort, and reopen it before the next batch.
    Io(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub commits: u64,
    pub writes: u64,
    /// Commits made durable by the write-ahead log, and durable commits that started it over.
    pub logged_commits: u64,
    pub checkpoints: u64,
    /// Time the writer thread spent running jobs in open transactions, and ending them (commits:
    /// page writes and `fdatasync`; the rare abort counts here too), so far: the rest of its
    /// time it waited for work.
    pub applying: Duration,
    pub committing: Duration,
}

enum Msg {
    Job(Job),
    /// Someone else saw the file fail: reopen it now rather than at the next write.
    Wake,
    /// Finish what is queued, then stop and release the database.
    Stop,
}

/// The first wait before reopening after an I/O error, and the most it grows to. A disk that
/// filled up usually stays full for minutes, so retrying faster than every few seconds only
/// fills the log; the first retry is quick for a transient error.
const REOPEN_FIRST: Duration = Duration::from_millis(250);
const REOPEN_MAX: Duration = Duration::from_secs(RETRY_AFTER_SECS);

/// What [`WriteStats`] reports, as the writer thread counts it.
#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    logged: AtomicU64,
    checkpoints: AtomicU64,
    applying_ns: AtomicU64,
    committing_ns: AtomicU64,
}

impl Counters {
    fn add_time(counter: &AtomicU64, d: Duration) {
        counter.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Writer {
    pub(crate) fn start(db: Arc<Db>, max_batch: usize, timing: CheckpointTiming) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(db, rx, max_batch.max(1), timing, &c))
            .map_err(|e| StoreError::BatchFailed(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            tx,
            counters,
            thread: Arc::new(std::sync::Mutex::new(Some(handle))),
        })
    }

    /// Applies what is queued, stops the writer thread and waits for it, so that its handle on
    /// the database is gone when this returns. Later writes fail with `WriterGone`.
    pub(crate) async fn close(&self) {
        // A writer that is already gone has nothing left to stop.
        let _ = self.tx.send(Msg::Stop);
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            // A writer thread that panicked has released the database all the same.
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }

    /// Tells the writer that the file failed outside a write (see [`Db::fail`]).
    pub(crate) fn wake(&self) {
        // A stopped writer reopens nothing; the store is being closed anyway.
        let _ = self.tx.send(Msg::Wake);
    }

    pub(crate) fn stats(&self) -> WriteStats {
        let c = &self.counters;
        WriteStats {
            commits: c.commits.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            logged_commits: c.logged.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            applying: Duration::from_nanos(c.applying_ns.load(Ordering::Relaxed)),
            committing: Duration::from_nanos(c.committing_ns.load(Ordering::Relaxed)),
        }
    }

    /// Queues `f` and waits until the transaction it ran in is durable (or failed).
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        self.run_standing(f, |_| false).await
    }

    /// [`Self::run`] for a job whose answer may be a refusal made before it touched the
    /// transaction (`stands` says which answers are): such an answer is the caller's whatever
    /// becomes of the commit, as a store error of the request's own is.
    pub(crate) async fn run_standing<T, F>(&self, f: F, stands: fn(&T) -> bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        // What such a job wrote is not described for the log, even when it failed: its batch
        // is committed durably.
        self.submit(move |tx| f(tx).map(|v| (v, None)), stands, false)
            .await
    }

    /// [`Self::run_standing`] for a SCIM write that says what it wrote ([`Effect`]): with the
    /// write-ahead log on, a batch of only such writes is made durable by the log.
    pub(crate) async fn run_logged<T, F>(&self, f: F, stands: fn(&T) -> bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<Logged<T>> + Send + 'static,
    {
        self.submit(f, stands, true).await
    }

    async fn submit<T, F>(&self, f: F, stands: fn(&T) -> bool, logged: bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<Logged<T>> + Send + 'static,
    {
        let (done, wait) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |tx| {
            let result = match tx {
                Some(tx) => f(tx),
                None => Err(StoreError::BatchFailed(
                    "could not begin a write transaction".into(),
                )),
            };
            let severity = match &result {
                Err(e) if is_io(e) => Severity::Io(e.to_string()),
                Err(
                    StoreError::Storage(_) | StoreError::Corrupt(..) | StoreError::BatchFailed(_),
                ) => Severity::Abort,
                _ => Severity::Fine,
            };
            let (result, redo) = match result {
                Ok((v, effect)) => (
                    Ok(v),
                    match (logged, effect) {
                        (false, _) => Redo::Unlogged,
                        (true, Some(e)) => Redo::Logged(Box::new(e)),
                        (true, None) => Redo::Nothing,
                    },
                ),
                // A logged write validates before it writes, so its failure wrote nothing.
                Err(e) if logged => (Err(e), Redo::Nothing),
                Err(e) => (Err(e), Redo::Unlogged),
            };
            let finish: Finish = Box::new(move |commit| {
                let answer = match commit {
                    Ok(()) => result,
                    Err(msg) => match result {
                        // A request that failed on its own merits keeps its own answer.
                        Err(e) if e.is_request_error() => Err(e),
                        Ok(v) if stands(&v) => Ok(v),
                        _ => Err(StoreError::BatchFailed(msg)),
                    },
                };
                // The caller may have gone (its connection closed); the write stands regardless.
                let _ = done.send(answer);
            });
            (finish, severity, redo)
        });
        self.tx
            .send(Msg::Job(job))
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// Answers every job of a batch that cannot run.
fn refuse(batch: Vec<Job>, msg: &str) {
    for job in batch {
        let (finish, _, _) = job(None);
        finish(Err(msg.to_string()));
    }
}

/// When the writer makes an idle checkpoint (see [`crate::store::WalOptions`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CheckpointTiming {
    pub idle: Duration,
    pub defer_max: Duration,
}

/// The last write the writer received, and the reads counted at its last look: an idle
/// checkpoint waits for an interval without either.
struct Quiet {
    last_write: Instant,
    reads_seen: u64,
}

impl Quiet {
    fn new(db: &Db) -> Quiet {
        Quiet {
            last_write: Instant::now(),
            reads_seen: db.reads_begun(),
        }
    }

    /// Called after an idle interval without writes. While reads are being served the
    /// checkpoint's flush would stall them on redb's page locks, and the log already holds every
    /// write, so it waits for an interval without reads too, up to `defer_max` after the last
    /// write.
    fn checkpoint_due(&mut self, db: &Db, timing: &CheckpointTiming) -> bool {
        let reads = db.reads_begun();
        let reading = reads != self.reads_seen;
        self.reads_seen = reads;
        !reading || self.last_write.elapsed() >= timing.defer_max
    }
}

/// Tries to reopen the closed store file: `(None, first backoff)` once it is open again, else
/// when to try next and the backoff after that.
fn reopen(db: &Db, backoff: Duration) -> (Option<Instant>, Duration) {
    match db.reopen() {
        Ok(()) => (None, REOPEN_FIRST),
        Err(e) => {
            tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "store: reopen failed");
            (
                Some(Instant::now() + backoff),
                (backoff * 2).min(REOPEN_MAX),
            )
        }
    }
}

fn writer_loop(
    db: Arc<Db>,
    rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    timing: CheckpointTiming,
    counters: &Counters,
) {
    let mut stop = false;
    let mut quiet = Quiet::new(&db);
    // While the file is closed after an I/O error: when to try reopening it, and the wait after
    // that attempt if it fails.
    let mut reopen_at: Option<Instant> = None;
    let mut backoff = REOPEN_FIRST;
    while !stop {
        if reopen_at.is_none() && db.degraded().is_some() {
            reopen_at = Some(Instant::now());
        }
        let log_pending = reopen_at.is_none() && db.wal().as_ref().is_some_and(|w| !w.is_empty());
        let msg = match reopen_at {
            None if log_pending => match rx.recv_timeout(timing.idle) {
                Ok(m) => Ok(m),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Idle: a durable commit now keeps the log short and the next replay quick.
                    // A failure is logged and closes the file (the reopen replays the log).
                    if quiet.checkpoint_due(&db, &timing) {
                        let _ = checkpoint(&db, counters);
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
            },
            None => rx.recv().map_err(|_| ()),
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(m) => Ok(m),
                Err(mpsc::RecvTimeoutError::Timeout) => Ok(Msg::Wake),
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
            },
        };
        let first = match msg {
            Ok(Msg::Job(job)) => {
                quiet = Quiet::new(&db);
                Some(job)
            }
            Ok(Msg::Wake) => None,
            Ok(Msg::Stop) | Err(()) => break,
        };
        if let Some(at) = reopen_at {
            if Instant::now() >= at {
                (reopen_at, backoff) = reopen(&db, backoff);
            }
        }
        let Some(first) = first else {
            continue;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => batch.push(job),
                Ok(Msg::Wake) => {}
                Ok(Msg::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if reopen_at.is_some() {
            let reason = db.degraded().map(|d| d.reason).unwrap_or_default();
            refuse(batch, &format!("the store is unavailable: {reason}"));
            continue;
        }
        let n = batch.len() as u64;
        let tx = match db.begin_write() {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, "store: cannot begin a write transaction");
                if is_io(&e) {
                    db.fail(&e.to_string());
                }
                refuse(batch, &format!("cannot begin a write transaction: {e}"));
                continue;
            }
        };
        let applying = Instant::now();
        let mut finishes = Vec::with_capacity(batch.len());
        let mut redos = Vec::with_capacity(batch.len());
        let mut worst = Severity::Fine;
        for job in batch {
            let (finish, severity, redo) = job(Some(&tx));
            match (&worst, severity) {
                (Severity::Io(_), _) | (_, Severity::Fine) => {}
                (_, s) => worst = s,
            }
            finishes.push(finish);
            redos.push(redo);
        }
        Counters::add_time(&counters.applying_ns, applying.elapsed());
        let committing = Instant::now();
        let outcome = match worst {
            Severity::Fine => commit(&db, tx, &redos, counters),
            Severity::Abort => {
                // The batch fails either way; an abort that fails on I/O also closes the file.
                if let Err(e) = tx.abort().db() {
                    if is_io(&e) {
                        db.fail(&e.to_string());
                    }
                }
                Err("a storage error aborted this write batch; nothing in it was applied".into())
            }
            Severity::Io(reason) => {
                // The file is about to be closed; what abort would undo is undone by reopening.
                let _ = tx.abort();
                db.fail(&reason);
                Err(format!(
                    "an I/O error aborted this write batch; nothing in it was applied: {reason}"
                ))
            }
        };
        Counters::add_time(&counters.committing_ns, committing.elapsed());
        if outcome.is_ok() {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters.writes.fetch_add(n, Ordering::Relaxed);
        }
        for finish in finishes {
            finish(outcome.clone());
        }
    }
    // What the log holds goes into the store file, so that a stopped daemon's store is whole
    // without it.
    let clean = db.degraded().is_none() && checkpoint(&db, counters).is_ok();
    db.close(clean);
}

/// Commits a batch whose jobs all went well. With the write-ahead log on and every write in the
/// batch described ([`Redo`]), the batch is made durable by appending its effects to the log
/// and flushing that; the redb commit that follows (which makes it visible to readers) skips
/// the flush. Otherwise the commit is durable, which covers the log's records too, and the log
/// starts over.
fn commit(
    db: &Db,
    mut tx: WriteTransaction,
    redos: &[Redo],
    counters: &Counters,
) -> std::result::Result<(), String> {
    let failed = |e: StoreError| {
        tracing::error!(error = %e, "store: commit failed");
        if is_io(&e) {
            db.fail(&e.to_string());
        }
        format!("commit failed: {e}")
    };
    let mut guard = db.wal();
    let Some(log) = guard.as_mut() else {
        return tx.commit().db().map_err(failed);
    };
    let unlogged = redos.iter().any(|r| matches!(r, Redo::Unlogged));
    if !unlogged {
        let effects: Vec<&Effect> = redos
            .iter()
            .filter_map(|r| match r {
                Redo::Logged(e) => Some(&**e),
                _ => None,
            })
            .collect();
        let payload = if effects.is_empty() {
            None
        } else {
            Some(serde_json::to_vec(&effects).map_err(|e| format!("commit failed: {e}"))?)
        };
        let fits = payload.as_ref().is_none_or(|p| log.fits(p.len()));
        if fits && tx.set_durability(redb::Durability::None).is_ok() {
            let Some(payload) = payload else {
                // Nothing was written: there is nothing to make durable.
                return tx.commit().db().map_err(failed);
            };
            super::handle::set_log_position(&tx, log.epoch(), log.records() + 1).map_err(failed)?;
            if let Err(e) = log.append(&payload) {
                // The record may be in the file or not; the reopen replays whatever is, so
                // the store and the log agree again.
                let _ = tx.abort();
                let msg = format!("the write-ahead log failed: {e}");
                db.fail(&msg);
                return Err(format!("commit failed: {msg}"));
            }
            counters.logged.fetch_add(1, Ordering::Relaxed);
            return tx.commit().db().map_err(|e| {
                // The log holds the batch: closing the file makes the reopen replay it rather
                // than leave the log ahead of the store.
                tracing::error!(error = %e, "store: commit failed after the write-ahead log took the batch");
                db.fail(&e.to_string());
                format!("commit failed: {e}")
            });
        }
        // The batch does not fit: it goes into a durable commit, which empties the log.
        if tx.set_durability(redb::Durability::Immediate).is_err() {
            return Err("commit failed: cannot make the batch durable".into());
        }
    }
    let covers = !log.is_empty();
    if covers {
        super::handle::set_log_position(&tx, log.epoch(), log.records()).map_err(failed)?;
    }
    tx.commit().db().map_err(failed)?;
    if covers {
        restart_log(db, log, counters);
    }
    Ok(())
}

/// Starts the log over after a durable commit covered it. A failure is not the batch's: it is
/// durable. The file is closed so that the reopen starts the log over.
fn restart_log(db: &Db, log: &mut super::wal::Wal, counters: &Counters) {
    match log.restart() {
        Ok(()) => {
            counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            let msg = format!("cannot start the write-ahead log over: {e}");
            tracing::error!(error = %msg, "store: write-ahead log");
            db.fail(&msg);
        }
    }
}

/// A durable commit of what the log holds, then the log starts over.
fn checkpoint(db: &Db, counters: &Counters) -> std::result::Result<(), String> {
    let mut guard = db.wal();
    let Some(log) = guard.as_mut() else {
        return Ok(());
    };
    if log.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let result = (|| {
        let tx = db.begin_write()?;
        super::handle::set_log_position(&tx, log.epoch(), log.records())?;
        tx.commit().db()
    })();
    Counters::add_time(&counters.committing_ns, started.elapsed());
    match result {
        Ok(()) => {
            restart_log(db, log, counters);
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "store: checkpoint of the write-ahead log failed");
            if is_io(&e) {
                db.fail(&e.to_string());
            }
            Err(e.to_string())
        }
    }
}

// ---- write operations ----------------------------------------------------------------------

fn name_of(kind: ResourceKind, data: &Value) -> Result<String> {
    data.get(name_attr(kind))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or(StoreError::MissingAttribute {
            kind,
            attribute: name_attr(kind),
        })
}

fn external_of(data: &Value) -> Option<String> {
    data.get("externalId")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A conflict unless `name` is free or already belongs to `self_id`.
fn check_unique(
    tx: &WriteTransaction,
    kind: ResourceKind,
    name: &str,
    self_id: Option<&str>,
) -> Result<()> {
    let idx = tx.open_table(name_idx(kind)).db()?;
    let key = name.to_lowercase();
    if let Some(owner) = idx.get(key.as_str()).db()? {
        if Some(owner.value()) != self_id {
            return Err(StoreError::Conflict {
                kind,
                attribute: name_attr(kind),
                value: name.to_string(),
            });
        }
    }
    Ok(())
}

fn check_if_match(record: &Record, if_match: Option<&str>) -> Result<()> {
    let Some(header) = if_match else {
        return Ok(());
    };
    let current = record.version.to_string();
    let ok = header.split(',').map(str::trim).any(|tag| {
        if tag == "*" {
            return true;
        }
        let t = tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"');
        t == current
    });
    if ok {
        Ok(())
    } else {
        Err(StoreError::PreconditionFailed {
            if_match: header.to_string(),
            current: record.version,
        })
    }
}

fn load(tx: &WriteTransaction, kind: ResourceKind, id: &str) -> Result<Record> {
    let t = tx.open_table(resource_table(kind)).db()?;
    let found = t.get(id).db()?;
    match found {
        Some(v) => decode(id, v.value()),
        None => Err(StoreError::NotFound {
            kind,
            id: id.to_string(),
        }),
    }
}

fn encode(record: &Record) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(record.id.clone(), e.to_string()))
}

/// Writes the record; returns it as written, for the log.
fn save(tx: &WriteTransaction, kind: ResourceKind, record: &Record) -> Result<Box<RawValue>> {
    let bytes = encode(record)?;
    put(tx, kind, &record.id, &bytes)?;
    as_logged(&record.id, bytes)
}

/// Stores a record's encoded bytes under its id.
fn put(tx: &WriteTransaction, kind: ResourceKind, id: &str, bytes: &[u8]) -> Result<()> {
    tx.open_table(resource_table(kind))
        .db()?
        .insert(id, bytes)
        .db()?;
    Ok(())
}

/// A record's stored bytes as the log carries them. The log's record is these bytes as they
/// are: a copy of the record, serialised again at the commit, cost the one writer thread more
/// than the check that they are JSON.
fn as_logged(id: &str, bytes: Vec<u8>) -> Result<Box<RawValue>> {
    let text =
        String::from_utf8(bytes).map_err(|e| StoreError::Corrupt(id.to_string(), e.to_string()))?;
    RawValue::from_string(text).map_err(|e| StoreError::Corrupt(id.to_string(), e.to_string()))
}

fn append_change(
    tx: &WriteTransaction,
    kind: ResourceKind,
    id: &str,
    action: ChangeAction,
    users: Vec<String>,
) -> Result<Change> {
    let mut t = tx.open_table(CHANGES).db()?;
    // Trimming removes the oldest entries only, and records the newest number in META before it
    // could empty the table: the last entry, when there is one, holds the newest number. META is
    // then neither read nor written here, one table fewer for every commit to write back.
    let last = match t.last().db()? {
        Some((k, _)) => k.value(),
        None => {
            let meta = tx.open_table(META).db()?;
            super::upkeep::last_assigned(&meta, META_CHANGES_LAST_SEQ, &t)?
        }
    };
    let seq = last + 1;
    let change = Change {
        seq,
        at: now_rfc3339(),
        kind: match kind {
            ResourceKind::User => ChangeKind::User,
            ResourceKind::Group => ChangeKind::Group,
        },
        id: id.to_string(),
        action,
        users,
    };
    put_change(&mut t, &change)?;
    Ok(change)
}

/// Writes a change-feed entry under its number.
fn put_change(t: &mut redb::Table<u64, &[u8]>, change: &Change) -> Result<()> {
    let seq = change.seq;
    let bytes = serde_json::to_vec(change)
        .map_err(|e| StoreError::Corrupt(format!("change {seq}"), e.to_string()))?;
    t.insert(seq, bytes.as_slice()).db()?;
    Ok(())
}

fn update_indexes(
    tx: &WriteTransaction,
    kind: ResourceKind,
    id: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Result<()> {
    let old_name = old
        .and_then(|d| d.get(name_attr(kind)))
        .and_then(Value::as_str)
        .map(str::to_lowercase);
    let new_name = new
        .and_then(|d| d.get(name_attr(kind)))
        .and_then(Value::as_str)
        .map(str::to_lowercase);
    if old_name != new_name {
        let mut idx = tx.open_table(name_idx(kind)).db()?;
        if let Some(o) = &old_name {
            idx.remove(o.as_str()).db()?;
        }
        if let Some(n) = &new_name {
            idx.insert(n.as_str(), id).db()?;
        }
    }
    if kind == ResourceKind::User {
        let old_addr = old.and_then(crate::scim::address::user_email);
        let new_addr = new.and_then(crate::scim::address::user_email);
        super::reindex(
            tx,
            USER_EMAIL_IDX,
            id,
            old_addr.as_deref(),
            new_addr.as_deref(),
        )?;
    }
    let old_ext = old.and_then(external_of);
    let new_ext = new.and_then(external_of);
    super::reindex(
        tx,
        external_idx(kind),
        id,
        old_ext.as_deref(),
        new_ext.as_deref(),
    )
}

/// Indexes every stored user by address (the migration to schema version 3); returns how many
/// have one.
pub(crate) fn build_email_index(tx: &WriteTransaction) -> Result<u64> {
    let users = tx.open_table(USERS).db()?;
    let mut idx = tx.open_multimap_table(USER_EMAIL_IDX).db()?;
    let mut n = 0;
    for row in users.iter().db()? {
        let (id, bytes) = row.db()?;
        let record = decode(id.value(), bytes.value())?;
        if let Some(addr) = crate::scim::address::user_email(&record.data) {
            idx.insert(addr.as_str(), id.value()).db()?;
            n += 1;
        }
    }
    Ok(n)
}

/// Splits member ids into those naming a stored user and those that do not.
fn known_users(tx: &WriteTransaction, ids: Vec<String>) -> Result<(Vec<String>, Vec<String>)> {
    let users = tx.open_table(USERS).db()?;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for id in ids {
        if users.get(id.as_str()).db()?.is_some() {
            known.push(id);
        } else {
            unknown.push(id);
        }
    }
    Ok((known, unknown))
}

fn current_members(tx: &WriteTransaction, gid: &str) -> Result<BTreeSet<String>> {
    let t = tx.open_multimap_table(MEMBERS).db()?;
    let mut out = BTreeSet::new();
    for v in t.get(gid).db()? {
        out.insert(v.db()?.value().to_string());
    }
    Ok(out)
}

/// Adds a membership to both link tables; true when it is new.
fn link(tx: &WriteTransaction, gid: &str, uid: &str) -> Result<bool> {
    let mut members = tx.open_multimap_table(MEMBERS).db()?;
    let existed = members.insert(gid, uid).db()?;
    if !existed {
        let mut reverse = tx.open_multimap_table(USER_GROUPS).db()?;
        reverse.insert(uid, gid).db()?;
    }
    Ok(!existed)
}

/// Removes a membership from both link tables; true when it was there.
fn unlink(tx: &WriteTransaction, gid: &str, uid: &str) -> Result<bool> {
    let mut members = tx.open_multimap_table(MEMBERS).db()?;
    let existed = members.remove(gid, uid).db()?;
    if existed {
        let mut reverse = tx.open_multimap_table(USER_GROUPS).db()?;
        reverse.remove(uid, gid).db()?;
    }
    Ok(existed)
}

fn apply_member_diff(
    tx: &WriteTransaction,
    gid: &str,
    add: &BTreeSet<String>,
    remove: &BTreeSet<String>,
) -> Result<()> {
    let mut members = tx.open_multimap_table(MEMBERS).db()?;
    let mut reverse = tx.open_multimap_table(USER_GROUPS).db()?;
    for uid in remove {
        members.remove(gid, uid.as_str()).db()?;
        reverse.remove(uid.as_str(), gid).db()?;
    }
    for uid in add {
        members.insert(gid, uid.as_str()).db()?;
        reverse.insert(uid.as_str(), gid).db()?;
    }
    Ok(())
}

/// A create made ready outside the writer: the new record, its stored bytes and what its
/// indexes need. Everything here is per request, so the request's own thread does it and the
/// one writer thread, which every write waits on, does only the transactional part.
pub(crate) struct NewResource {
    kind: ResourceKind,
    name: String,
    record: Record,
    bytes: Vec<u8>,
    members: Option<Vec<String>>,
}

pub(crate) fn prepare_create(kind: ResourceKind, n: Normalized) -> Result<NewResource> {
    let name = name_of(kind, &n.resource)?;
    // Time-ordered ids put each new record at the right edge of the tables keyed by id, so a
    // commit of many creates dirties a few pages instead of one leaf per record.
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_rfc3339();
    let record = Record {
        id,
        version: 1,
        created: now.clone(),
        last_modified: now,
        data: n.resource,
    };
    let bytes = encode(&record)?;
    let members = match kind {
        ResourceKind::Group => n.members.as_deref().map(member_ids),
        ResourceKind::User => None,
    };
    Ok(NewResource {
        kind,
        name,
        record,
        bytes,
        members,
    })
}

pub(crate) fn create(
    tx: &WriteTransaction,
    new: NewResource,
) -> Result<Logged<(Record, WriteNotes)>> {
    let NewResource {
        kind,
        name,
        record,
        bytes,
        members,
    } = new;
    check_unique(tx, kind, &name, None)?;
    let id = record.id.clone();
    let mut notes = WriteNotes::default();
    let mut add = BTreeSet::new();
    if let Some(members) = members {
        let (known, unknown) = known_users(tx, members)?;
        notes.unknown_members = unknown;
        add.extend(known);
    }
    put(tx, kind, &id, &bytes)?;
    let logged = as_logged(&id, bytes)?;
    update_indexes(tx, kind, &id, None, Some(&record.data))?;
    let users = match kind {
        ResourceKind::User => vec![id.clone()],
        ResourceKind::Group => {
            apply_member_diff(tx, &id, &add, &BTreeSet::new())?;
            add.iter().cloned().collect()
        }
    };
    let change = append_change(tx, kind, &id, ChangeAction::Created, users)?;
    let effect = Effect {
        change,
        record: Some(logged),
        add,
        remove: BTreeSet::new(),
    };
    Ok(((record, notes), Some(effect)))
}

pub(crate) fn replace(
    tx: &WriteTransaction,
    kind: ResourceKind,
    id: &str,
    n: Normalized,
    if_match: Option<&str>,
) -> Result<Logged<(Record, WriteNotes)>> {
    let old = load(tx, kind, id)?;
    check_if_match(&old, if_match)?;
    let name = name_of(kind, &n.resource)?;
    check_unique(tx, kind, &name, Some(id))?;
    let mut notes = WriteNotes::default();
    let (mut add, mut remove) = (BTreeSet::new(), BTreeSet::new());
    // A PUT without `members` leaves them as they are: a rename by PUT must not empty a group.
    if let (ResourceKind::Group, Some(members)) = (kind, &n.members) {
        let (known, unknown) = known_users(tx, member_ids(members))?;
        notes.unknown_members = unknown;
        let wanted: BTreeSet<String> = known.into_iter().collect();
        let current = current_members(tx, id)?;
        add = wanted.difference(&current).cloned().collect();
        remove = current.difference(&wanted).cloned().collect();
    }
    let record = Record {
        id: id.to_string(),
        version: old.version + 1,
        created: old.created.clone(),
        last_modified: now_rfc3339(),
        data: n.resource,
    };
    let logged = save(tx, kind, &record)?;
    update_indexes(tx, kind, id, Some(&old.data), Some(&record.data))?;
    let users = affected_users(tx, kind, id, &old.data, &record.data, &add, &remove)?;
    if kind == ResourceKind::Group {
        apply_member_diff(tx, id, &add, &remove)?;
    }
    let change = append_change(tx, kind, id, ChangeAction::Updated, users)?;
    let effect = Effect {
        change,
        record: Some(logged),
        add,
        remove,
    };
    Ok(((record, notes), Some(effect)))
}

/// Users whose desired state may change with this write. A group rename changes what every
/// member's membership means, so all members are listed then.
fn affected_users(
    tx: &WriteTransaction,
    kind: ResourceKind,
    id: &str,
    old: &Value,
    new: &Value,
    add: &BTreeSet<String>,
    remove: &BTreeSet<String>,
) -> Result<Vec<String>> {
    match kind {
        ResourceKind::User => Ok(vec![id.to_string()]),
        ResourceKind::Group => {
            let renamed = old.get("displayName") != new.get("displayName");
            let mut users: BTreeSet<String> = add.union(remove).cloned().collect();
            if renamed {
                users.extend(current_members(tx, id)?);
            }
            Ok(users.into_iter().collect())
        }
    }
}

/// Applies `edit` to a copy of the stored attributes; its refusal is the inner error, returned
/// before anything is written.
pub(crate) fn patch<E>(
    tx: &WriteTransaction,
    kind: ResourceKind,
    id: &str,
    edit: impl FnOnce(&mut Value) -> std::result::Result<Vec<MemberChange>, E>,
    if_match: Option<&str>,
) -> Result<Logged<std::result::Result<(Record, WriteNotes), E>>> {
    let old = load(tx, kind, id)?;
    check_if_match(&old, if_match)?;
    let mut data = old.data.clone();
    let changes = match edit(&mut data) {
        Ok(changes) => changes,
        Err(refused) => return Ok((Err(refused), None)),
    };
    let name = name_of(kind, &data)?;
    check_unique(tx, kind, &name, Some(id))?;

    let mut notes = WriteNotes::default();
    // Member changes are applied in order straight to the two link tables. redb reports whether
    // each pair was present, so the net effect is known without reading the member list: the
    // cost is O(changed members), except for a clear or a non-trivial filter, which must look
    // at every member. Nothing here can fail on the request's merits (unknown members are
    // skipped), so mutating before the data write keeps "validate, then mutate".
    let mut add: BTreeSet<String> = BTreeSet::new();
    let mut remove: BTreeSet<String> = BTreeSet::new();
    if kind == ResourceKind::Group {
        for change in changes {
            match change {
                MemberChange::Add(refs) => {
                    let (known, unknown) = known_users(tx, member_ids(&refs))?;
                    notes.unknown_members.extend(unknown);
                    for uid in known {
                        if link(tx, id, &uid)? && !remove.remove(&uid) {
                            add.insert(uid);
                        }
                    }
                }
                MemberChange::Remove(ids) => {
                    for uid in ids {
                        if unlink(tx, id, &uid)? && !add.remove(&uid) {
                            remove.insert(uid);
                        }
                    }
                }
                MemberChange::Clear => {
                    for uid in current_members(tx, id)? {
                        unlink(tx, id, &uid)?;
                        if !add.remove(&uid) {
                            remove.insert(uid);
                        }
                    }
                }
                MemberChange::RemoveWhere(f) => {
                    let member_def = GROUP.attributes.iter().find(|a| a.name == "members");
                    let Some(member_def) = member_def else {
                        continue;
                    };
                    let mut doomed = Vec::new();
                    {
                        let users = tx.open_table(USERS).db()?;
                        for uid in current_members(tx, id)? {
                            let display = match users.get(uid.as_str()).db()? {
                                Some(v) => display_of(&decode(&uid, v.value())?),
                                None => String::new(),
                            };
                            let element = serde_json::json!({"value": uid, "display": display, "type": "User"});
                            if filter::matches_element(&f, member_def, &element) {
                                doomed.push(uid);
                            }
                        }
                    }
                    for uid in doomed {
                        unlink(tx, id, &uid)?;
                        if !add.remove(&uid) {
                            remove.insert(uid);
                        }
                    }
                }
            }
        }
    }

    let data_changed = data != old.data;
    let members_changed = !add.is_empty() || !remove.is_empty();
    if !data_changed && !members_changed {
        // Nothing to do: keep the version so that a repeated PATCH is not a change.
        return Ok((Ok((old, notes)), None));
    }
    let record = Record {
        id: id.to_string(),
        version: old.version + 1,
        created: old.created.clone(),
        last_modified: now_rfc3339(),
        data,
    };
    let logged = save(tx, kind, &record)?;
    update_indexes(tx, kind, id, Some(&old.data), Some(&record.data))?;
    let users = affected_users(tx, kind, id, &old.data, &record.data, &add, &remove)?;
    let action = if data_changed {
        ChangeAction::Updated
    } else {
        ChangeAction::Members
    };
    let change = append_change(tx, kind, id, action, users)?;
    let effect = Effect {
        change,
        record: Some(logged),
        add,
        remove,
    };
    Ok((Ok((record, notes)), Some(effect)))
}

pub(crate) fn delete(
    tx: &WriteTransaction,
    kind: ResourceKind,
    id: &str,
    if_match: Option<&str>,
) -> Result<Logged<()>> {
    let old = load(tx, kind, id)?;
    check_if_match(&old, if_match)?;
    let users = remove_resource(tx, kind, &old)?;
    let change = append_change(tx, kind, id, ChangeAction::Deleted, users)?;
    let effect = Effect {
        change,
        record: None,
        add: BTreeSet::new(),
        remove: BTreeSet::new(),
    };
    Ok(((), Some(effect)))
}

/// Removes a stored resource with its index entries and memberships; returns the users whose
/// desired state that may change.
fn remove_resource(tx: &WriteTransaction, kind: ResourceKind, old: &Record) -> Result<Vec<String>> {
    let id = old.id.as_str();
    {
        let mut t = tx.open_table(resource_table(kind)).db()?;
        t.remove(id).db()?;
    }
    update_indexes(tx, kind, id, Some(&old.data), None)?;
    let mut reverse = tx.open_multimap_table(USER_GROUPS).db()?;
    let mut members = tx.open_multimap_table(MEMBERS).db()?;
    match kind {
        ResourceKind::User => {
            let mut groups = Vec::new();
            for g in reverse.remove_all(id).db()? {
                groups.push(g.db()?.value().to_string());
            }
            for g in &groups {
                members.remove(g.as_str(), id).db()?;
            }
            Ok(vec![id.to_string()])
        }
        ResourceKind::Group => {
            let mut users = Vec::new();
            for u in members.remove_all(id).db()? {
                users.push(u.db()?.value().to_string());
            }
            for u in &users {
                reverse.remove(u.as_str(), id).db()?;
            }
            Ok(users)
        }
    }
}

// ---- the write-ahead log's effects ---------------------------------------------------------

/// A write's answer and what it did, for the write-ahead log (`None`: nothing was written).
pub(crate) type Logged<T> = (T, Option<Effect>);

/// What one SCIM write did, in terms that apply again to the state it was made on: the unit of
/// the write-ahead log (wal.rs). Replay applies each effect exactly once, in order, to the state
/// the write saw (the log position is committed with the writes), so applying it repeats the
/// write without repeating its checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Effect {
    /// The change-feed entry it appended, with its number: the kind and id of the resource.
    change: Change,
    /// The resource as written (a [`Record`] as stored); `None` when it was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<Box<RawValue>>,
    /// Memberships of the group added and removed (net, of known users).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    add: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    remove: BTreeSet<String>,
}

/// Applies `effect` (read back from the log) to the state it was made on.
pub(crate) fn apply_effect(tx: &WriteTransaction, effect: &Effect) -> Result<()> {
    let kind = match effect.change.kind {
        ChangeKind::User => ResourceKind::User,
        ChangeKind::Group => ResourceKind::Group,
    };
    let id = effect.change.id.as_str();
    // The bytes go back into the store as they are; the decoded record is for the indexes.
    let record = match &effect.record {
        Some(raw) => Some((raw.get().as_bytes(), decode(id, raw.get().as_bytes())?)),
        None => None,
    };
    let old = {
        let t = tx.open_table(resource_table(kind)).db()?;
        let found = t.get(id).db()?;
        match found {
            Some(bytes) => Some(decode(id, bytes.value())?),
            None => None,
        }
    };
    match (&record, &old) {
        (Some((bytes, record)), _) => {
            put(tx, kind, id, bytes)?;
            update_indexes(
                tx,
                kind,
                id,
                old.as_ref().map(|o| &o.data),
                Some(&record.data),
            )?;
        }
        (None, Some(old)) => {
            remove_resource(tx, kind, old)?;
        }
        (None, None) => {
            // Replay runs each effect once on the state it was made on, so this does not
            // happen; if it does, the resource is gone either way.
            tracing::warn!(
                kind = kind.name(),
                id,
                "store: the log deletes a resource that is not there"
            );
        }
    }
    if kind == ResourceKind::Group && !(effect.add.is_empty() && effect.remove.is_empty()) {
        apply_member_diff(tx, id, &effect.add, &effect.remove)?;
    }
    put_change(&mut tx.open_table(CHANGES).db()?, &effect.change)
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::scim::patch;
    use crate::scim::resource::{MemberRef, Normalized};
    use crate::scim::schema::ResourceKind;
    use crate::store::{ChangeAction, ChangeKind, Store, StoreError, StoreOptions};

    fn user(name: &str) -> Normalized {
        Normalized {
            resource: serde_json::json!({"userName": name}),
            members: None,
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreOptions::default()).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn request_failures_say_what_failed_in_store_terms() {
        let (_dir, store) = open();
        let (alice, _) = store
            .create(ResourceKind::User, user("alice@x.io"))
            .await
            .unwrap();

        let e = store
            .create(ResourceKind::User, user("ALICE@x.io"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Conflict { kind: ResourceKind::User, attribute: "userName", value }
                if value == "ALICE@x.io"),
            "{e:?}"
        );

        let e = store
            .replace(
                ResourceKind::User,
                alice.id.clone(),
                user("alice@x.io"),
                Some("W/\"7\", W/\"8\"".into()),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::PreconditionFailed { if_match, current: 1 }
                if if_match == "W/\"7\", W/\"8\""),
            "{e:?}"
        );

        let e = store
            .delete(ResourceKind::Group, "nope".into(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::NotFound { kind: ResourceKind::Group, id } if id == "nope"),
            "{e:?}"
        );

        let e = store
            .create(
                ResourceKind::Group,
                Normalized {
                    resource: serde_json::json!({}),
                    members: None,
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::MissingAttribute {
                    kind: ResourceKind::Group,
                    attribute: "displayName"
                }
            ),
            "{e:?}"
        );

        // The edit's own refusal (here the SCIM PATCH rules') comes back untouched.
        let ops = patch::parse_request(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "id", "value": "x"}]
        }))
        .unwrap();
        let refused = store
            .patch(
                ResourceKind::User,
                alice.id.clone(),
                move |data: &mut serde_json::Value| patch::apply(ResourceKind::User, data, &ops),
                None,
            )
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.status, 400, "{refused:?}");

        // None of them wrote anything: the user is as created.
        let r = store
            .get(ResourceKind::User, &alice.id, false)
            .unwrap()
            .unwrap();
        assert_eq!(r.record, alice);
        assert_eq!(store.last_seq().unwrap(), 1);
    }

    /// The log carries a record as the bytes stored for it; a log record must read the same as
    /// one written when the effect held the record itself (logs written before), both ways.
    #[test]
    fn a_logged_record_is_the_record_as_json() {
        let record = crate::store::Record {
            id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            version: 3,
            created: "2026-12-03T10:00:00Z".into(),
            last_modified: "2026-12-03T11:00:00Z".into(),
            data: serde_json::json!({"userName": "a\"b@x.io", "name": {"givenName": "Ä"}}),
        };
        let change = crate::store::Change {
            seq: 7,
            at: "2026-12-03T11:00:00Z".into(),
            kind: ChangeKind::User,
            id: record.id.clone(),
            action: ChangeAction::Updated,
            users: vec![record.id.clone()],
        };
        let effect = super::Effect {
            change: change.clone(),
            record: Some(super::as_logged(&record.id, super::encode(&record).unwrap()).unwrap()),
            add: Default::default(),
            remove: Default::default(),
        };
        let as_before = serde_json::json!({"change": change, "record": record});
        let written: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&effect).unwrap()).unwrap();
        assert_eq!(written, as_before);
        let read: super::Effect = serde_json::from_value(as_before).unwrap();
        let raw = read.record.unwrap();
        assert_eq!(
            super::decode(&record.id, raw.get().as_bytes()).unwrap(),
            record
        );
    }

    #[tokio::test]
    async fn a_request_failure_does_not_fail_the_writes_committed_with_it() {
        let (_dir, store) = open();
        store
            .create(ResourceKind::User, user("taken@x.io"))
            .await
            .unwrap();
        // Queued together, these are likely to share one transaction; either way each gets its
        // own answer and the good ones are durable.
        let mut tasks = Vec::new();
        for i in 0..20 {
            let s = store.clone();
            let name = if i % 2 == 0 {
                "taken@x.io".to_string()
            } else {
                format!("u{i}@x.io")
            };
            tasks.push(tokio::spawn(async move {
                s.create(ResourceKind::User, user(&name)).await
            }));
        }
        let mut conflicts = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => conflicts += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(conflicts, 10);
        assert_eq!(store.count(ResourceKind::User).unwrap(), 11);
        let (group, notes) = store
            .create(
                ResourceKind::Group,
                Normalized {
                    resource: serde_json::json!({"displayName": "g"}),
                    members: Some(vec![MemberRef {
                        value: "missing".into(),
                    }]),
                },
            )
            .await
            .unwrap();
        assert_eq!(notes.unknown_members, vec!["missing".to_string()]);
        assert_eq!(
            store
                .get(ResourceKind::Group, &group.id, true)
                .unwrap()
                .unwrap()
                .refs,
            Some(vec![])
        );
    }

    pub(crate) fn group(name: &str, members: &[&str]) -> Normalized {
        Normalized {
            resource: serde_json::json!({"displayName": name}),
            members: Some(
                members
                    .iter()
                    .map(|m| MemberRef {
                        value: m.to_string(),
                    })
                    .collect(),
            ),
        }
    }

    fn feed(store: &Store) -> Vec<(ChangeKind, String, ChangeAction, Vec<String>)> {
        store
            .changes_since(0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|c| (c.kind, c.id, c.action, c.users))
            .collect()
    }

    fn edit_ops(
        kind: ResourceKind,
        ops: serde_json::Value,
    ) -> impl FnOnce(&mut serde_json::Value) -> Result<Vec<patch::MemberChange>, String> + Send + 'static
    {
        let ops = patch::parse_request(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": ops,
        }))
        .unwrap();
        move |data: &mut serde_json::Value| {
            patch::apply(kind, data, &ops).map_err(|e| e.to_string())
        }
    }

    /// Each write changes the resource, its indexes and the reverse index together, bumps the
    /// version, and appends one feed entry naming the users whose desired state may change.
    #[tokio::test]
    async fn writes_keep_indexes_versions_and_the_change_feed_together() {
        use crate::store::{ChangeAction as A, ChangeKind as K};
        let (_dir, store) = open();
        let (ada, _) = store
            .create(ResourceKind::User, user("ada@x.io"))
            .await
            .unwrap();
        let (bob, _) = store
            .create(ResourceKind::User, user("bob@x.io"))
            .await
            .unwrap();
        assert_eq!((ada.version, ada.etag()), (1, "W/\"1\"".to_string()));
        let (eng, _) = store
            .create(ResourceKind::Group, group("Eng", &[&ada.id]))
            .await
            .unwrap();
        assert_eq!(store.groups_of(&ada.id).unwrap(), vec![eng.id.clone()]);

        // PATCH adds a member: the group's version moves on.
        let (eng2, _) = store
            .patch(
                ResourceKind::Group,
                eng.id.clone(),
                edit_ops(
                    ResourceKind::Group,
                    serde_json::json!([{"op": "add", "path": "members", "value": [{"value": bob.id}]}]),
                ),
                Some(eng.etag()),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(eng2.version, 2);
        assert_eq!(store.groups_of(&bob.id).unwrap(), vec![eng.id.clone()]);
        // The same PATCH again changes nothing: no new version, no feed entry.
        let before = store.last_seq().unwrap();
        let (same, _) = store
            .patch(
                ResourceKind::Group,
                eng.id.clone(),
                edit_ops(
                    ResourceKind::Group,
                    serde_json::json!([{"op": "add", "path": "members", "value": [{"value": bob.id}]}]),
                ),
                None,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!((same.version, store.last_seq().unwrap()), (2, before));

        // PUT renames the user under its current version; the old name is free again.
        let (ada2, _) = store
            .replace(
                ResourceKind::User,
                ada.id.clone(),
                user("ada.l@x.io"),
                Some("W/\"1\"".into()),
            )
            .await
            .unwrap();
        assert_eq!(ada2.version, 2);
        assert_eq!(ada2.created, ada.created);
        store
            .create(ResourceKind::User, user("ADA@x.io"))
            .await
            .unwrap();

        // DELETE of the group frees its members.
        store
            .delete(ResourceKind::Group, eng.id.clone(), Some(eng2.etag()))
            .await
            .unwrap();
        assert!(store.groups_of(&ada.id).unwrap().is_empty());
        assert!(store
            .get(ResourceKind::Group, &eng.id, false)
            .unwrap()
            .is_none());

        let mut members = vec![ada.id.clone(), bob.id.clone()];
        members.sort();
        let f = feed(&store);
        let actions: Vec<(K, A)> = f.iter().map(|(k, _, a, _)| (*k, *a)).collect();
        assert_eq!(
            actions,
            vec![
                (K::User, A::Created),
                (K::User, A::Created),
                (K::Group, A::Created),
                // The first PATCH also stores the document in the PATCH engine's canonical
                // form, so it counts as an update, not a members-only change.
                (K::Group, A::Updated),
                (K::User, A::Updated),
                (K::User, A::Created),
                (K::Group, A::Deleted),
            ]
        );
        assert_eq!(f[2].3, vec![ada.id.clone()]);
        assert_eq!(f[3].3, vec![bob.id.clone()]);
        assert_eq!(f[4].3, vec![ada.id.clone()]);
        let mut deleted_for = f[6].3.clone();
        deleted_for.sort();
        assert_eq!(deleted_for, members);
        assert_eq!(store.last_seq().unwrap(), 7);
    }

    /// Renames through PUT and PATCH meet the same uniqueness check as creation, and a stale
    /// `If-Match` stops PATCH and DELETE before anything is written.
    #[tokio::test]
    async fn renames_and_stale_versions_are_refused_on_every_write() {
        let (_dir, store) = open();
        store
            .create(ResourceKind::Group, group("Eng", &[]))
            .await
            .unwrap();
        let (ops, _) = store
            .create(ResourceKind::Group, group("Ops", &[]))
            .await
            .unwrap();
        let e = store
            .replace(ResourceKind::Group, ops.id.clone(), group("ENG", &[]), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Conflict { kind: ResourceKind::Group, attribute: "displayName", value } if value == "ENG"),
            "{e:?}"
        );
        let e = store
            .patch(
                ResourceKind::Group,
                ops.id.clone(),
                edit_ops(
                    ResourceKind::Group,
                    serde_json::json!([{"op": "replace", "path": "displayName", "value": "eng"}]),
                ),
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict { .. }), "{e:?}");
        let e = store
            .patch(
                ResourceKind::Group,
                ops.id.clone(),
                edit_ops(
                    ResourceKind::Group,
                    serde_json::json!([{"op": "replace", "path": "displayName", "value": "Ops2"}]),
                ),
                Some("W/\"9\"".into()),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::PreconditionFailed { current: 1, .. }),
            "{e:?}"
        );
        let e = store
            .delete(ResourceKind::Group, ops.id.clone(), Some("W/\"2\"".into()))
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::PreconditionFailed { current: 1, .. }),
            "{e:?}"
        );
        let e = store
            .patch(
                ResourceKind::User,
                "nobody".into(),
                edit_ops(
                    ResourceKind::User,
                    serde_json::json!([{"op": "replace", "path": "active", "value": false}]),
                ),
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NotFound { .. }), "{e:?}");
        let kept = store
            .get(ResourceKind::Group, &ops.id, false)
            .unwrap()
            .unwrap();
        assert_eq!(kept.record, ops);
        assert_eq!(store.last_seq().unwrap(), 2);
    }
}
