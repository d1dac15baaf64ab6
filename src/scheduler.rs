//! When reconciliation runs: a full run at startup, a change-driven run shortly after SCIM writes
//! (debounced), a periodic full resync from cron, and forced full runs from the admin API.
//!
//! One loop owns the decision, so two runs never overlap; triggers that arrive during a run
//! coalesce into at most one more run. A full run also covers pending changes.

use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
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
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The run in progress and who waits for its summary.
type InFlight<'a, S> = (BoxFuture<'a, S>, Vec<oneshot::Sender<S>>);

/// Performs one run. The scheduler guarantees calls never overlap.
pub trait Runner: Send + Sync + 'static {
    type Summary: Clone + Send + Sync + 'static;
    fn run(&self, run_id: String, kind: RunKind, trigger: Trigger) -> BoxFuture<'_, Self::Summary>;
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
}

impl<S> Clone for Handle<S> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
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
    pub debounce: Duration,
    /// Six-field cron (with seconds); `None` disables the periodic resync.
    pub cron: Option<String>,
    /// Run a full reconciliation as soon as the scheduler starts.
    pub run_at_startup: bool,
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

/// Starts the scheduling loop. `changes` ticks whenever the store commits a SCIM write. The loop
/// ends when `shutdown` resolves (after the run in progress, if any).
pub async fn spawn<R: Runner>(
    runner: Arc<R>,
    opts: Options,
    mut changes: watch::Receiver<u64>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Handle<R::Summary>, tokio::task::JoinHandle<()>), CronError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Request<R::Summary>>();
    let handle = Handle { tx: tx.clone() };

    let mut cron_scheduler = match &opts.cron {
        Some(expr) => {
            validate_cron(expr)?;
            let sched = tokio_cron_scheduler::JobScheduler::new()
                .await
                .map_err(|e| CronError(format!("cannot start the cron scheduler: {e:?}")))?;
            let cron_tx = tx.clone();
            let job = tokio_cron_scheduler::Job::new_async(expr.as_str(), move |_, _| {
                let t = cron_tx.clone();
                Box::pin(async move {
                    let _ = t.send(Request::Full {
                        trigger: Trigger::Cron,
                        reply: None,
                        wait: None,
                    });
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
            Some(sched)
        }
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
        let mut changes_open = true;
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
                    let _ = changes.borrow_and_update();
                    current = Some((
                        runner.run(id, RunKind::Full, trigger),
                        std::mem::take(&mut next_waiters),
                    ));
                }
            }
            let sleep_until =
                changes_due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                () = &mut shutdown, if !stopping => stopping = true,
                summary = async {
                    match current.as_mut() {
                        Some((fut, _)) => fut.await,
                        None => std::future::pending().await,
                    }
                }, if current.is_some() => {
                    if let Some((_, waiters)) = current.take() {
                        for w in waiters {
                            let _ = w.send(summary.clone());
                        }
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
                        // Debounce: a burst of writes becomes one run after it goes quiet.
                        changes_due = Some(Instant::now() + opts.debounce);
                    }
                }
                () = tokio::time::sleep_until(sleep_until),
                    if changes_due.is_some() && current.is_none() && full.is_none() && !stopping => {
                    changes_due = None;
                    let id = run_id(next_run);
                    next_run += 1;
                    current = Some((runner.run(id, RunKind::Changes, Trigger::Change), Vec::new()));
                }
            }
        }
        if let Some(s) = cron_scheduler.as_mut() {
            let _ = s.shutdown().await;
        }
    });
    Ok((handle, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        runs: Mutex<Vec<(String, RunKind, Trigger)>>,
        running: Mutex<bool>,
        overlap: Mutex<bool>,
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
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.runs
                    .lock()
                    .unwrap()
                    .push((run_id.clone(), kind, trigger));
                *self.running.lock().unwrap() = false;
                run_id
            })
        }
    }

    fn opts(startup: bool) -> Options {
        Options {
            debounce: Duration::from_millis(500),
            cron: None,
            run_at_startup: startup,
        }
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

    #[test]
    fn cron_is_validated() {
        assert!(validate_cron("0 */15 * * * *").is_ok());
        assert!(validate_cron("every banana").is_err());
    }
}
