//! In-memory simulator of the Portkey control-plane Admin API.
//!
//! It answers over real HTTP with the shapes and quirks described in
//! `portkey-admin-api.md` (the project's API reference), so the control-plane
//! client and the reconciler can be tested end to end without a real Portkey.
//! Where the reference leaves behaviour open, the simulator picks one answer
//! and the README lists it as a guess.
//!
//! ```no_run
//! # async fn demo() -> Result<(), portkey_sim::SimError> {
//! let sim = portkey_sim::spawn(([127, 0, 0, 1], 0).into(), Default::default()).await?;
//! println!("{}", sim.base_url());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod control;
mod error;
mod model;
mod query;
mod server;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the simulator behaves. Build with `..Default::default()` so new fields do not break callers.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Value expected in `x-portkey-api-key`.
    pub api_key: String,
    /// State loaded before the first request.
    pub seed: Option<Seed>,
    /// Pending invites are accepted this long after they are created (or seeded).
    pub auto_accept: Option<Duration>,
    /// Fault injection in effect at start; replace later with `PUT /_sim/faults`.
    pub faults: Faults,
    /// Answer 403 AB03 instead of 404 AB08 when a referenced resource does not exist
    /// (Terraform's provider observed both from the real API). Kept for existing callers:
    /// the simulator starts with this switch on when either this field or
    /// `quirks.missing_is_403` is true.
    pub missing_is_403: bool,
    /// Larger requested page sizes are clamped to this; it is also the default page size.
    pub max_page_size: usize,
    /// Switches for undocumented behaviours, in effect at start; replace later with
    /// `PUT /_sim/quirks` (or change some with `PATCH /_sim/quirks`).
    pub quirks: Quirks,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            api_key: "sim-key".to_string(),
            seed: None,
            auto_accept: None,
            faults: Faults::default(),
            missing_is_403: false,
            max_page_size: 100,
            quirks: Quirks::default(),
        }
    }
}

/// The Admin-API key scopes that the reference documents (KEYS; AB03 "Complete scope
/// reference"), the only names `Quirks::denied_scopes` accepts.
pub const ADMIN_API_SCOPES: [&str; 15] = [
    "organisation_users.create",
    "organisation_users.read",
    "organisation_users.update",
    "organisation_users.delete",
    "organisation_users.list",
    "workspaces.create",
    "workspaces.read",
    "workspaces.update",
    "workspaces.delete",
    "workspaces.list",
    "workspace_users.create",
    "workspace_users.read",
    "workspace_users.update",
    "workspace_users.delete",
    "workspace_users.list",
];

/// Switches for behaviours the reference leaves open, so a client can be tested against
/// each reading. All off (the default) is the simulator's usual behaviour. The JSON form
/// is the body of `GET`/`PUT`/`PATCH /_sim/quirks`; unknown keys are rejected.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Quirks {
    /// Answer a missing resource with `403 AB03` (the same body as a denied scope)
    /// instead of `404 AB08`.
    pub missing_is_403: bool,
    /// `GET /admin/users` (the list) leaves `workspace_ids` out of its rows;
    /// `GET /admin/users/{id}` still carries it.
    pub lists_omit_workspace_ids: bool,
    /// The `email` filter on the users, invites and workspace-members lists matches the
    /// stored email exactly (case-sensitive) instead of case-insensitively.
    pub email_filter_case_sensitive: bool,
    /// Scopes the Admin API key lacks, from [`ADMIN_API_SCOPES`]. A request that needs
    /// one is answered `403 AB03` and is not applied.
    pub denied_scopes: Vec<String>,
}

impl Quirks {
    /// Rejects scope names that are not in [`ADMIN_API_SCOPES`], so a typo cannot
    /// silently leave a scope granted.
    pub fn validate(&self) -> Result<(), String> {
        match self
            .denied_scopes
            .iter()
            .find(|s| !ADMIN_API_SCOPES.contains(&s.as_str()))
        {
            Some(s) => Err(format!(
                "unknown scope '{s}' in denied_scopes; known scopes: {}",
                ADMIN_API_SCOPES.join(", ")
            )),
            None => Ok(()),
        }
    }
}

/// Fault injection. All random decisions come from an RNG seeded with `seed`, so the
/// same request sequence meets the same faults.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Faults {
    pub seed: u64,
    /// Probability that a request is answered 500 AB04 without being applied.
    pub rate_5xx: f64,
    /// Probability that a request is answered 429 AB06 without being applied.
    pub rate_429: f64,
    /// `Retry-After` (seconds) sent with injected 429s when set.
    pub retry_after_secs: Option<u64>,
    /// Added to every `/v1` request before anything else.
    pub latency_ms: u64,
    /// Probability that a request is never answered (held for an hour or until shutdown).
    pub hang_rate: f64,
    /// One page of one list endpoint that always answers 500.
    pub fail_page: Option<FailPage>,
    /// `"METHOD /v1/path"` patterns (`*` or `{name}` match one segment; the `/v1` prefix
    /// may be left out): the write is applied, then 500 is answered. Each distinct write
    /// (method, path, JSON body) is hit once, like a lost response: an identical retry
    /// gets the real answer (for example 409 for a repeated invite).
    pub apply_then_500: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct FailPage {
    /// Request path, e.g. `/v1/admin/users`.
    pub path: String,
    /// 0-based page number (`currentPage` / `current_page`) that answers 500.
    pub page: u64,
}

/// State to load. Workspaces and invites reference users by email and workspaces by
/// slug, UUID or name.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Seed {
    pub users: Vec<SeedUser>,
    pub workspaces: Vec<SeedWorkspace>,
    pub invites: Vec<SeedInvite>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SeedUser {
    pub email: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    /// `owner`, `admin` or `member`.
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SeedWorkspace {
    pub name: String,
    /// Defaults to `ws-` plus the slugified name.
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub members: Vec<SeedMember>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SeedMember {
    pub email: String,
    /// `admin`, `manager` or `member`.
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SeedInvite {
    pub email: String,
    /// `admin` or `member`.
    pub role: String,
    #[serde(default)]
    pub workspaces: Vec<SeedInviteWorkspace>,
    /// `pending` (default), `accepted`, `cancelled` or `expired`.
    #[serde(default)]
    pub status: Option<String>,
    /// RFC 3339; defaults to 7 days from now (or the past for `expired`).
    #[serde(default)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SeedInviteWorkspace {
    /// Workspace slug, UUID or (in seeds only) name.
    pub id: String,
    /// `admin`, `manager` or `member`.
    pub role: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid seed: {0}")]
    Seed(String),
    #[error("invalid quirks: {0}")]
    Quirks(String),
}

/// A running simulator. Dropping it stops the server too, without waiting.
#[derive(Debug)]
pub struct SimServer {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl SimServer {
    /// Base URL of the Admin API, as a client would configure it.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Base URL of the `/_sim` control routes.
    pub fn control_url(&self) -> String {
        format!("http://{}/_sim", self.addr)
    }

    /// Stops accepting connections, wakes held (hanging) requests and waits up to a few
    /// seconds for open connections to finish.
    pub async fn shutdown(mut self) {
        // The server task may have ended already; then there is nothing left to stop.
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        // The server task may have ended already; then there is nothing left to stop.
        let _ = self.shutdown.send(true);
    }
}

/// Binds `addr` (port 0 picks a free port), loads the seed and serves in the background.
/// Fails with `SimError::Quirks` when `opts.quirks` names an unknown scope.
pub async fn spawn(addr: SocketAddr, opts: SimOptions) -> Result<SimServer, SimError> {
    opts.quirks.validate().map_err(SimError::Quirks)?;
    let (tx, rx) = watch::channel(false);
    let inner = Arc::new(state::Inner::new(&opts, rx.clone()));
    if let Some(seed) = &opts.seed {
        state::load_seed(&inner, seed).map_err(SimError::Seed)?;
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| SimError::Bind { addr, source })?;
    let routes = server::routes(inner);
    let mut stop = rx;
    let task = tokio::spawn(async move {
        warp::serve(routes)
            .incoming(listener)
            .graceful(async move {
                // A dropped sender (the handle is gone) means stop, just like `true`.
                let _ = stop.wait_for(|s| *s).await;
            })
            .run()
            .await;
    });
    Ok(SimServer {
        addr: bound,
        shutdown: tx,
        task: Some(task),
    })
}
