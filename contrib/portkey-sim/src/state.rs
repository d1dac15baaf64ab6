//! The simulator's shared state (model, faults, request log) and the helpers both fronts use:
//! the API router (`server`) and the control routes (`control`), neither of which imports the
//! other for them.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;
use warp::http::{Method, StatusCode};
use warp::reply::{Reply, Response};

use crate::model::State;
use crate::{Faults, Quirks, Seed, SimOptions};

/// Oldest entries are dropped beyond this, so a long-running demo does not grow forever.
const LOG_CAP: usize = 200_000;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave these plain maps half-updated in a way
    // that matters to a test double, so keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct FaultState {
    pub(crate) faults: Faults,
    pub(crate) rng: StdRng,
    /// Writes already answered 500 by `apply_then_500` (method, path, body). The fault
    /// models a lost response, so an identical retry gets the real answer.
    pub(crate) fired: HashSet<String>,
}

impl FaultState {
    pub(crate) fn new(faults: Faults) -> Self {
        let rng = StdRng::seed_from_u64(faults.seed);
        FaultState {
            faults,
            rng,
            fired: HashSet::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoggedRequest {
    seq: u64,
    method: String,
    path: String,
    query: String,
    body: Value,
    /// `None` while the request is in flight (or held by a hang fault).
    status: Option<u16>,
    /// Which injected fault, if any, shaped the answer.
    fault: Option<&'static str>,
}

#[derive(Default)]
pub(crate) struct RequestLog {
    next_seq: u64,
    entries: VecDeque<LoggedRequest>,
}

impl RequestLog {
    pub(crate) fn push(&mut self, method: &Method, path: &str, query: &str, body: Value) -> u64 {
        self.next_seq += 1;
        if self.entries.len() >= LOG_CAP {
            self.entries.pop_front();
        }
        self.entries.push_back(LoggedRequest {
            seq: self.next_seq,
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            body,
            status: None,
            fault: None,
        });
        self.next_seq
    }

    pub(crate) fn finish(&mut self, seq: u64, status: u16, fault: Option<&'static str>) {
        if let Ok(i) = self.entries.binary_search_by_key(&seq, |e| e.seq) {
            if let Some(e) = self.entries.get_mut(i) {
                e.status = Some(status);
                e.fault = fault;
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<LoggedRequest> {
        self.entries.iter().cloned().collect()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

pub(crate) struct Inner {
    pub(crate) api_key: String,
    /// Replaced at run time by `PUT`/`PATCH /_sim/quirks`; each request reads a copy.
    pub(crate) quirks: Mutex<Quirks>,
    pub(crate) max_page_size: usize,
    pub(crate) auto_accept: Option<Duration>,
    pub(crate) state: Mutex<State>,
    pub(crate) faults: Mutex<FaultState>,
    pub(crate) log: Mutex<RequestLog>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Inner {
    pub(crate) fn new(opts: &SimOptions, shutdown: watch::Receiver<bool>) -> Self {
        Inner {
            api_key: opts.api_key.clone(),
            quirks: Mutex::new(Quirks {
                missing_is_403: opts.missing_is_403 || opts.quirks.missing_is_403,
                ..opts.quirks.clone()
            }),
            max_page_size: opts.max_page_size.max(1),
            auto_accept: opts.auto_accept,
            state: Mutex::new(State::new()),
            faults: Mutex::new(FaultState::new(opts.faults.clone())),
            log: Mutex::new(RequestLog::default()),
            shutdown,
        }
    }

    /// Sleeps, but wakes early when the server shuts down. Returns false on shutdown.
    pub(crate) async fn sleep(&self, d: Duration) -> bool {
        let mut rx = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = rx.wait_for(|s| *s) => false,
        }
    }
}

/// Accepts `ids` after the configured delay, unless the server stops first.
pub(crate) fn schedule_auto_accept(inner: &Arc<Inner>, ids: Vec<Uuid>) {
    let Some(delay) = inner.auto_accept else {
        return;
    };
    if ids.is_empty() {
        return;
    }
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        if inner.sleep(delay).await {
            let mut st = lock(&inner.state);
            let at = crate::model::now();
            for id in ids {
                st.accept_invite(id, at);
            }
        }
    });
}

pub(crate) fn load_seed(inner: &Arc<Inner>, seed: &Seed) -> Result<(), String> {
    let pending = {
        let mut st = lock(&inner.state);
        // Applied to a copy so a bad seed leaves the state untouched.
        let mut next = st.clone();
        let pending = next.load_seed(seed)?;
        *st = next;
        pending
    };
    schedule_auto_accept(inner, pending);
    Ok(())
}

pub(crate) fn json_response(status: u16, v: &Value) -> Response {
    let mut resp = warp::reply::json(v).into_response();
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp
}
