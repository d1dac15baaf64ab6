//! When reconciliation runs: a full run at startup, a change-driven run shortly after SCIM writes
//! (debounced, with a cap so a steady stream of writes cannot postpone it forever), a periodic
//! full resync from cron, forced full runs from the admin API, and retries of failed runs with
//! exponential backoff.
//!
//! One loop owns the decision, so two runs never overlap; triggers that arrive during a run
//! coalesce into at most one more run. A full run also covers pending changes and pending retries.

use rand::Rng;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Reads the whole control plane; repairs drift.
    Full,
    /// After SCIM writes; may read only what changed.
    Changes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Startup,
    Change,
    Cron,
    Manual,
    /// Retry of a failed run (same kind as the run that failed), after a backoff.
    Retry,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The run in progress and who waits for its summary.
struct InFlight<'a, S> {
    kind: RunKind,
    fut: BoxFuture<'a, S>,
    waiters: Vec<oneshot::Sender<S>>,
}

/// Performs one run. The scheduler guarantees calls never overlap.
pub trait Runner: Send + Sync + 'static {
    type Summary: Clone + Send + Sync + 'static;
    fn run(&self, run_id: String, kind: RunKind, trigger: Trigger) -> BoxFuture<'_, Self::Summary>;

    /// Whether the run went well. A run that did not is retried with backoff (see
    /// [`Options::retry_initial`]). The default never asks for a retry.
    fn succeeded(summary: &Self::Summary) -> bool {
        let _ = summary;
        true
    }
}

enum Request<S> {
    Full {
        trigger: Trigger,
        reply: Option<oneshot::Sender<String>>,
        wait: Option<oneshot::Sender<S>>,
    },
}

/// How to ask for runs.
pub struct Handle<S> {
    tx: mpsc::UnboundedSender<Request<S>>,
    next_retry: watch::Receiver<Option<SystemTime>>,
}

impl<S> Clone for Handle<S> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            next_retry: self.next_retry.clone(),
        }
    }
}

impl<S> Handle<S> {
    /// When the retry of a failed run is scheduled, if one is pending. The time may be in the
    /// past when the retry waits for a run in progress. `None` once the loop has stopped.
    pub fn next_retry(&self) -> Option<SystemTime> {
        *self.next_retry.borrow()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the reconciler has stopped")]
pub struct Stopped;

impl<S: Send + 'static> Handle<S> {
    /// Asks for a full run and returns the id of the run that will serve it. When `wait` is
    /// set, the second value resolves with that run's summary.
    pub async fn resync(
        &self,
        trigger: Trigger,
        wait: bool,
    ) -> Result<(String, Option<oneshot::Receiver<S>>), Stopped> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let (wait_tx, wait_rx) = if wait {
            let (t, r) = oneshot::channel();
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        self.tx
            .send(Request::Full {
                trigger,
                reply: Some(reply_tx),
                wait: wait_tx,
            })
            .map_err(|_| Stopped)?;
        let id = reply_rx.await.map_err(|_| Stopped)?;
        Ok((id, wait_rx))
    }
}

pub struct Options {
    /// A change-driven run starts once no SCIM write has arrived for this long...
    pub debounce: Duration,
    /// ...or at the latest this long after the first write not yet covered by a run, even if
    /// writes keep arriving.
    pub debounce_max: Duration,
    /// Six-field cron (with seconds); `None` disables the periodic resync.
    pub cron: Option<String>,
    /// Run a full reconciliation as soon as the scheduler starts.
    pub run_at_startup: bool,
    /// Delay before retrying a failed run (see [`Runner::succeeded`]); it doubles after each
    /// consecutive failure, up to `retry_max`, and comes back to this after any successful run.
    /// Each delay gets ±20% jitter and never exceeds `retry_max`. Zero (here or in
    /// `retry_max`) disables retries.
    pub retry_initial: Duration,
    /// The longest delay between retries.
    pub retry_max: Duration,
}

/// A retry waiting for its time.
#[derive(Debug, Clone, Copy)]
struct PendingRetry {
    at: Instant,
    kind: RunKind,
}

/// Exponential backoff between retries of failed runs.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.min(max);
        Self {
            initial,
            max,
            next: initial,
        }
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The delay before the next retry, or `None` when retries are disabled.
    fn next_delay(&mut self) -> Option<Duration> {
        if self.initial.is_zero() {
            return None;
        }
        let base = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        let factor: f64 = rand::thread_rng().gen_range(0.8..=1.2);
        let jittered = Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base);
        Some(jittered.min(self.max))
    }
}

/// What is left to retry once a run of `kind` has ended: a full run covers any retry, a change
/// run only a change retry. A failed run adds (or merges into) a retry after the next backoff.
fn retry_after_run(
    kind: RunKind,
    succeeded: bool,
    pending: Option<PendingRetry>,
    backoff: &mut Backoff,
) -> Option<PendingRetry> {
    let left = pending.filter(|p| kind == RunKind::Changes && p.kind == RunKind::Full);
    if succeeded {
        backoff.reset();
        return left;
    }
    let Some(at) = backoff
        .next_delay()
        .and_then(|d| Instant::now().checked_add(d))
    else {
        return left;
    };
    Some(match left {
        // A full retry still owed covers this change run too; keep its (earlier) time.
        Some(p) => PendingRetry {
            at: p.at.min(at),
            kind: RunKind::Full,
        },
        None => PendingRetry { at, kind },
    })
}

/// The wall-clock time of a pending retry, for status.
fn wall_time(retry: Option<PendingRetry>) -> Option<SystemTime> {
    let p = retry?;
    SystemTime::now().checked_add(p.at.saturating_duration_since(Instant::now()))
}

/// The earlier of two deadlines, ignoring one that overflowed.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("config key [sync] full_resync_cron: {0}")]
pub struct CronError(String);

/// Checks a cron expression the way the scheduler will use it.
pub fn validate_cron(expr: &str) -> Result<(), CronError> {
    tokio_cron_scheduler::Job::new_async(expr, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|e| CronError(format!("'{expr}' is not a valid cron expression: {e:?}")))
}

/// The cron job that asks for full runs. A tick while the loop is gone (shutting down) has
/// nobody to ask, and is dropped.
async fn start_cron<S: Send + 'static>(
    expr: &str,
    tx: mpsc::UnboundedSender<Request<S>>,
) -> Result<tokio_cron_scheduler::JobScheduler, CronError> {
    validate_cron(expr)?;
    let sched = tokio_cron_scheduler::JobScheduler::new()
        .await
        .map_err(|e| CronError(format!("cannot start the cron scheduler: {e:?}")))?;
    let job = tokio_cron_scheduler::Job::new_async(expr, move |_, _| {
        let t = tx.clone();
        Box::pin(async move {
            if t.send(Request::Full {
                trigger: Trigger::Cron,
                reply: None,
                wait: None,
            })
            .is_err()
            {
                tracing::debug!("cron tick after the scheduler stopped");
            }
        })
    })
    .map_err(|e| CronError(format!("{e:?}")))?;
    sched
        .add(job)
        .await
        .map_err(|e| CronError(format!("{e:?}")))?;
    sched
        .start()
        .await
        .map_err(|e| CronError(format!("{e:?}")))?;
    Ok(sched)
}

/// Starts the scheduling loop. `changes` ticks whenever the store commits a SCIM write. The loop
/// ends when `shutdown` resolves (after the run in progress, if any).
// Over 120 lines on purpose: the loop is one `select!` over the run in flight, requests, store
// changes, the debounce and the retry timers, and its state (pending full run, waiters, burst
// start, backoff) is read by every arm; split up, each piece would need all of it passed back
// and forth, and the order of the arms (which decides what wins a tie) would be harder to see.
#[allow(clippy::too_many_lines)]
pub async fn spawn<R: Runner>(
    runner: Arc<R>,
    opts: Options,
    mut changes: watch::Receiver<u64>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Handle<R::Summary>, tokio::task::JoinHandle<()>), CronError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Request<R::Summary>>();
    let (next_retry_tx, next_retry_rx) = watch::channel(None);
    let handle = Handle {
        tx: tx.clone(),
        next_retry: next_retry_rx,
    };

    let mut cron_scheduler = match &opts.cron {
        Some(expr) => Some(start_cron(expr, tx.clone()).await?),
        None => None,
    };

    let task = tokio::spawn(async move {
        let runner = runner;
        let mut shutdown = std::pin::pin!(shutdown);
        let run_id = |n: u64| format!("run-{n}");
        // The id the next run will get; requests that arrive now are promised that run.
        let mut next_run: u64 = 1;
        let mut full: Option<Trigger> = opts.run_at_startup.then_some(Trigger::Startup);
        let mut next_waiters: Vec<oneshot::Sender<R::Summary>> = Vec::new();
        let mut changes_due: Option<Instant> = None;
        // When the first write not yet covered by a run arrived; caps the debounce.
        let mut burst_start: Option<Instant> = None;
        let mut changes_open = true;
        let mut retry: Option<PendingRetry> = None;
        let mut backoff = Backoff::new(opts.retry_initial, opts.retry_max);
        let mut current: Option<InFlight<'_, R::Summary>> = None;
        let mut stopping = false;
        loop {
            if current.is_none() {
                if stopping {
                    break;
                }
                if let Some(trigger) = full.take() {
                    let id = run_id(next_run);
                    next_run += 1;
                    // A full run reads everything, so it also covers pending changes.
                    changes_due = None;
                    burst_start = None;
                    let _ = changes.borrow_and_update();
                    current = Some(InFlight {
                        kind: RunKind::Full,
                        fut: runner.run(id, RunKind::Full, trigger),
                        waiters: std::mem::take(&mut next_waiters),
                    });
                }
            }
            let far = Instant::now() + Duration::from_secs(3600);
            let changes_at = changes_due.unwrap_or(far);
            let retry_at = retry.map_or(far, |p| p.at);
            // Nothing new starts while a run is in progress, a full run is pending (it starts
            // at the top of the loop) or the loop is stopping.
            let may_start = current.is_none() && full.is_none() && !stopping;
            tokio::select! {
                () = &mut shutdown, if !stopping => stopping = true,
                summary = async {
                    match current.as_mut() {
                        Some(run) => run.fut.as_mut().await,
                        None => std::future::pending().await,
                    }
                }, if current.is_some() => {
                    if let Some(run) = current.take() {
                        let ok = R::succeeded(&summary);
                        for w in run.waiters {
                            // A waiter that gave up (its `--wait` timed out) has nobody to tell.
                            let _ = w.send(summary.clone());
                        }
                        retry = retry_after_run(run.kind, ok, retry, &mut backoff);
                        if let (false, false, Some(p)) = (ok, stopping, retry) {
                            tracing::info!(
                                kind = ?p.kind,
                                in_ms = p.at.saturating_duration_since(Instant::now()).as_millis() as u64,
                                "reconciliation run failed; retry scheduled"
                            );
                        }
                        next_retry_tx.send_replace(wall_time(retry));
                    }
                }
                req = rx.recv(), if !stopping => match req {
                    Some(Request::Full { trigger, reply, wait }) => {
                        // Several requests before the next run starts share it.
                        full.get_or_insert(trigger);
                        if let Some(r) = reply {
                            let _ = r.send(run_id(next_run));
                        }
                        if let Some(w) = wait {
                            next_waiters.push(w);
                        }
                    }
                    None => stopping = true,
                },
                res = changes.changed(), if changes_open && !stopping => {
                    if res.is_err() {
                        changes_open = false;
                    } else {
                        // Debounce: a burst of writes becomes one run after it goes quiet, or
                        // `debounce_max` after its first write if it does not.
                        let now = Instant::now();
                        let first = *burst_start.get_or_insert(now);
                        changes_due = earliest(
                            now.checked_add(opts.debounce),
                            first.checked_add(opts.debounce_max),
                        );
                    }
                }
                () = tokio::time::sleep_until(changes_at), if changes_due.is_some() && may_start => {
                    // The run reads what changed so far, which also covers a pending change
                    // retry; if that retry is still owed when the run ends, it is dropped then.
                    changes_due = None;
                    burst_start = None;
                    let id = run_id(next_run);
                    next_run += 1;
                    current = Some(InFlight {
                        kind: RunKind::Changes,
                        fut: runner.run(id, RunKind::Changes, Trigger::Change),
                        waiters: Vec::new(),
                    });
                }
                () = tokio::time::sleep_until(retry_at), if retry.is_some() && may_start => {
                    if let Some(p) = retry.take() {
                        next_retry_tx.send_replace(None);
                        match p.kind {
                            // Starts at the top of the loop, with anyone waiting for the next
                            // full run.
                            RunKind::Full => full = Some(Trigger::Retry),
                            RunKind::Changes => {
                                // Covers the writes pending since, too.
                                changes_due = None;
                                burst_start = None;
                                let id = run_id(next_run);
                                next_run += 1;
                                current = Some(InFlight {
                                    kind: RunKind::Changes,
                                    fut: runner.run(id, RunKind::Changes, Trigger::Retry),
                                    waiters: Vec::new(),
                                });
                            }
                        }
                    }
                }
            }
        }
        next_retry_tx.send_replace(None);
        if let Some(s) = cron_scheduler.as_mut() {
            if let Err(e) = s.shutdown().await {
                tracing::warn!(error = ?e, "cron scheduler did not stop cleanly");
            }
        }
    });
    Ok((handle, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder {
        runs: Mutex<Vec<(String, RunKind, Trigger)>>,
        /// Start and end of each run, in order.
        times: Mutex<Vec<(Instant, Instant)>>,
        running: Mutex<bool>,
        overlap: Mutex<bool>,
        run_time: Duration,
        /// Whether the run with this (0-based) index fails.
        fail: fn(usize) -> bool,
    }

    impl Default for Recorder {
        fn default() -> Self {
            Self::failing(|_| false)
        }
    }

    impl Recorder {
        fn failing(fail: fn(usize) -> bool) -> Self {
            Self {
                runs: Mutex::default(),
                times: Mutex::default(),
                running: Mutex::default(),
                overlap: Mutex::default(),
                run_time: Duration::from_millis(100),
                fail,
            }
        }

        fn kinds(&self) -> Vec<(RunKind, Trigger)> {
            self.runs
                .lock()
                .unwrap()
                .iter()
                .map(|r| (r.1, r.2))
                .collect()
        }

        fn times(&self) -> Vec<(Instant, Instant)> {
            self.times.lock().unwrap().clone()
        }

        fn overlapped(&self) -> bool {
            *self.overlap.lock().unwrap()
        }
    }

    impl Runner for Recorder {
        type Summary = String;
        fn run(&self, run_id: String, kind: RunKind, trigger: Trigger) -> BoxFuture<'_, String> {
            Box::pin(async move {
                {
                    let mut r = self.running.lock().unwrap();
                    if *r {
                        *self.overlap.lock().unwrap() = true;
                    }
                    *r = true;
                }
                let start = Instant::now();
                tokio::time::sleep(self.run_time).await;
                let index = {
                    let mut runs = self.runs.lock().unwrap();
                    runs.push((run_id.clone(), kind, trigger));
                    runs.len() - 1
                };
                self.times.lock().unwrap().push((start, Instant::now()));
                *self.running.lock().unwrap() = false;
                if (self.fail)(index) {
                    format!("{run_id} failed")
                } else {
                    run_id
                }
            })
        }

        fn succeeded(summary: &String) -> bool {
            !summary.ends_with(" failed")
        }
    }

    fn opts(startup: bool) -> Options {
        Options {
            debounce: Duration::from_millis(500),
            debounce_max: Duration::from_secs(10),
            cron: None,
            run_at_startup: startup,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }

    /// Tokio timers fire on whole milliseconds, so a deadline may be met up to 1 ms late.
    const SLACK: Duration = Duration::from_millis(2);

    fn assert_between(what: &str, d: Duration, lo: Duration, hi: Duration) {
        assert!(
            d >= lo && d <= hi + SLACK,
            "{what}: {d:?} not within [{lo:?}, {hi:?}]"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn startup_run_then_debounced_change_run() {
        let rec = Arc::new(Recorder::default());
        let (tx, rx) = watch::channel(0u64);
        let (_h, _t) = spawn(rec.clone(), opts(true), rx, std::future::pending())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        for i in 1..=5 {
            tx.send(i).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(rec.runs.lock().unwrap().len(), 1, "still debouncing");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let runs = rec.runs.lock().unwrap().clone();
        assert_eq!(
            runs.iter().map(|r| (r.1, r.2)).collect::<Vec<_>>(),
            vec![
                (RunKind::Full, Trigger::Startup),
                (RunKind::Changes, Trigger::Change)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn resync_returns_id_and_waits_and_triggers_coalesce() {
        let rec = Arc::new(Recorder::default());
        let (_tx, rx) = watch::channel(0u64);
        let (h, _t) = spawn(rec.clone(), opts(false), rx, std::future::pending())
            .await
            .unwrap();
        let (id, wait) = h.resync(Trigger::Manual, true).await.unwrap();
        assert_eq!(id, "run-1");
        // While run-1 runs, three more requests are answered at once and coalesce into one
        // more run.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut later = Vec::new();
        for _ in 0..3 {
            later.push(h.resync(Trigger::Manual, true).await.unwrap());
        }
        assert!(
            rec.runs.lock().unwrap().is_empty(),
            "ids come back before run-1 ends"
        );
        assert_eq!(wait.unwrap().await.unwrap(), "run-1");
        for (id, w) in later {
            assert_eq!(id, "run-2");
            assert_eq!(w.unwrap().await.unwrap(), "run-2");
        }
        assert_eq!(rec.runs.lock().unwrap().len(), 2);
        assert!(!*rec.overlap.lock().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn steady_writes_still_get_change_runs_within_debounce_max() {
        let rec = Arc::new(Recorder::default());
        let (tx, rx) = watch::channel(0u64);
        let o = Options {
            debounce_max: Duration::from_secs(2),
            ..opts(false)
        };
        let (_h, _t) = spawn(rec.clone(), o, rx, std::future::pending())
            .await
            .unwrap();
        // A write every 400 ms for 8 s: the 500 ms debounce alone would never fire.
        let mut writes = Vec::new();
        for i in 1..=20 {
            tx.send(i).unwrap();
            writes.push(Instant::now());
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let last_write = *writes.last().unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;

        let kinds = rec.kinds();
        assert!(kinds
            .iter()
            .all(|k| *k == (RunKind::Changes, Trigger::Change)));
        let starts: Vec<Instant> = rec.times().iter().map(|t| t.0).collect();
        assert_between(
            "first change run after the first write",
            starts[0] - writes[0],
            Duration::from_secs(2),
            Duration::from_secs(2),
        );
        // Every write is picked up by a run that starts at most debounce_max later.
        for w in &writes {
            assert!(
                starts
                    .iter()
                    .any(|s| *s >= *w && *s <= *w + Duration::from_secs(2) + SLACK),
                "no change run within 2 s of the write at {:?} (runs at {:?})",
                *w - writes[0],
                starts.iter().map(|s| *s - writes[0]).collect::<Vec<_>>()
            );
        }
        assert!(
            starts.iter().filter(|s| **s <= last_write).count() >= 3,
            "runs happen while the writes continue"
        );
        // And once the writes stop, the plain debounce still ends the last burst.
        assert_between(
            "trailing run after the last write",
            *starts.last().unwrap() - last_write,
            Duration::from_millis(500),
            Duration::from_millis(500),
        );
        assert!(!rec.overlapped());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_runs_are_retried_with_backoff_until_one_succeeds() {
        let rec = Arc::new(Recorder::failing(|i| i < 2));
        let (_tx, rx) = watch::channel(0u64);
        let (h, _t) = spawn(rec.clone(), opts(true), rx, std::future::pending())
            .await
            .unwrap();
        assert_eq!(h.next_retry(), None);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(rec.kinds().len(), 1);
        let at = h
            .next_retry()
            .expect("a retry is scheduled after the failure");
        let wait = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        assert!(wait <= Duration::from_millis(1200), "{wait:?}");

        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            rec.kinds(),
            vec![
                (RunKind::Full, Trigger::Startup),
                (RunKind::Full, Trigger::Retry),
                (RunKind::Full, Trigger::Retry),
            ]
        );
        let t = rec.times();
        assert_between(
            "first retry",
            t[1].0 - t[0].1,
            Duration::from_millis(800),
            Duration::from_millis(1200),
        );
        assert_between(
            "second retry",
            t[2].0 - t[1].1,
            Duration::from_millis(1600),
            Duration::from_millis(2400),
        );
        // The third run succeeded: no more retries.
        assert_eq!(h.next_retry(), None);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(rec.kinds().len(), 3);
        assert!(!rec.overlapped());
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_retry_max() {
        let rec = Arc::new(Recorder::failing(|_| true));
        let (_tx, rx) = watch::channel(0u64);
        let o = Options {
            retry_max: Duration::from_secs(3),
            ..opts(true)
        };
        let (_h, _t) = spawn(rec.clone(), o, rx, std::future::pending())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        let t = rec.times();
        assert!(t.len() >= 8, "{}", t.len());
        let gaps: Vec<Duration> = t.windows(2).map(|w| w[1].0 - w[0].1).collect();
        let ms = Duration::from_millis;
        assert_between("gap 1", gaps[0], ms(800), ms(1200));
        assert_between("gap 2", gaps[1], ms(1600), ms(2400));
        for (i, g) in gaps.iter().enumerate().skip(2) {
            assert_between(&format!("gap {}", i + 1), *g, ms(2400), ms(3000));
        }
        assert!(rec.kinds()[1..]
            .iter()
            .all(|k| *k == (RunKind::Full, Trigger::Retry)));
        assert!(!rec.overlapped());
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_backoff() {
        // Runs 0 and 1 fail, 2 (the second retry) succeeds, 3 (forced) fails again.
        let rec = Arc::new(Recorder::failing(|i| i == 0 || i == 1 || i == 3));
        let (_tx, rx) = watch::channel(0u64);
        let (h, _t) = spawn(rec.clone(), opts(true), rx, std::future::pending())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(rec.kinds().len(), 3);
        let (_, wait) = h.resync(Trigger::Manual, true).await.unwrap();
        assert_eq!(wait.unwrap().await.unwrap(), "run-4 failed");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            rec.kinds()[3..],
            [
                (RunKind::Full, Trigger::Manual),
                (RunKind::Full, Trigger::Retry)
            ]
        );
        let t = rec.times();
        assert_between(
            "retry after the reset",
            t[4].0 - t[3].1,
            Duration::from_millis(800),
            Duration::from_millis(1200),
        );
        assert!(!rec.overlapped());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_change_run_is_retried_as_a_change_run() {
        let rec = Arc::new(Recorder::failing(|i| i == 0));
        let (tx, rx) = watch::channel(0u64);
        let (h, _t) = spawn(rec.clone(), opts(false), rx, std::future::pending())
            .await
            .unwrap();
        tx.send(1).unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            rec.kinds(),
            vec![
                (RunKind::Changes, Trigger::Change),
                (RunKind::Changes, Trigger::Retry)
            ]
        );
        let t = rec.times();
        assert_between(
            "change retry",
            t[1].0 - t[0].1,
            Duration::from_millis(800),
            Duration::from_millis(1200),
        );
        assert_eq!(h.next_retry(), None);
        assert!(!rec.overlapped());
    }

    #[tokio::test(start_paused = true)]
    async fn successful_forced_run_cancels_the_pending_retry() {
        let rec = Arc::new(Recorder::failing(|i| i == 0));
        let (_tx, rx) = watch::channel(0u64);
        let o = Options {
            retry_initial: Duration::from_secs(10),
            ..opts(true)
        };
        let (h, _t) = spawn(rec.clone(), o, rx, std::future::pending())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(h.next_retry().is_some());
        let (id, wait) = h.resync(Trigger::Manual, true).await.unwrap();
        assert_eq!(id, "run-2");
        assert_eq!(wait.unwrap().await.unwrap(), "run-2");
        assert_eq!(h.next_retry(), None);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(
            rec.kinds(),
            vec![
                (RunKind::Full, Trigger::Startup),
                (RunKind::Full, Trigger::Manual)
            ]
        );
        assert!(!rec.overlapped());
    }

    #[tokio::test(start_paused = true)]
    async fn due_retry_waits_for_the_run_in_progress() {
        // Long runs: the startup run fails at 2 s; a write at 1 s makes a change run due at
        // 1.5 s, which starts when the startup run ends; the full retry (due ~2.1 s) waits for
        // it, and is not cancelled by it, since a change run does not cover a full one.
        let rec = Arc::new(Recorder {
            run_time: Duration::from_secs(2),
            ..Recorder::failing(|i| i == 0)
        });
        let (tx, rx) = watch::channel(0u64);
        let o = Options {
            retry_initial: Duration::from_millis(100),
            ..opts(true)
        };
        let (h, _t) = spawn(rec.clone(), o, rx, std::future::pending())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(1).unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            rec.kinds(),
            vec![
                (RunKind::Full, Trigger::Startup),
                (RunKind::Changes, Trigger::Change),
                (RunKind::Full, Trigger::Retry),
            ]
        );
        let t = rec.times();
        assert!(t[1].0 >= t[0].1 && t[2].0 >= t[1].1);
        assert_eq!(h.next_retry(), None);
        assert!(!rec.overlapped());
    }

    #[tokio::test(start_paused = true)]
    async fn change_retry_waits_for_a_forced_run_that_then_covers_it() {
        // 1 s runs: the change run (0.5 s to 1.5 s) fails, so a change retry is due ~1.6 s; a
        // forced full run asked for at 1 s starts at 1.5 s, the retry waits for it, and its
        // success cancels the retry.
        let rec = Arc::new(Recorder {
            run_time: Duration::from_secs(1),
            ..Recorder::failing(|i| i == 0)
        });
        let (tx, rx) = watch::channel(0u64);
        let o = Options {
            retry_initial: Duration::from_millis(100),
            ..opts(false)
        };
        let (h, _t) = spawn(rec.clone(), o, rx, std::future::pending())
            .await
            .unwrap();
        tx.send(1).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        h.resync(Trigger::Manual, false).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            rec.kinds(),
            vec![
                (RunKind::Changes, Trigger::Change),
                (RunKind::Full, Trigger::Manual)
            ]
        );
        assert_eq!(h.next_retry(), None);
        assert!(!rec.overlapped());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_a_pending_retry_ends_the_loop() {
        let rec = Arc::new(Recorder::failing(|_| true));
        let (_tx, rx) = watch::channel(0u64);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (h, task) = spawn(rec.clone(), opts(true), rx, async move {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(h.next_retry().is_some());
        stop_tx.send(()).unwrap();
        // Well before the retry (>= 800 ms away) would have run.
        tokio::time::timeout(Duration::from_millis(10), task)
            .await
            .expect("the loop ends at once")
            .unwrap();
        assert_eq!(h.next_retry(), None);
        assert!(h.resync(Trigger::Manual, false).await.is_err());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(rec.kinds(), vec![(RunKind::Full, Trigger::Startup)]);
        assert!(!rec.overlapped());
    }

    #[test]
    fn retry_trigger_serialises_lowercase() {
        assert_eq!(serde_json::to_string(&Trigger::Retry).unwrap(), "\"retry\"");
    }

    #[test]
    fn cron_is_validated() {
        assert!(validate_cron("0 */15 * * * *").is_ok());
        assert!(validate_cron("every banana").is_err());
    }
}
