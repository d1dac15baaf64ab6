//! One reconciliation run with I/O, in three steps:
//! - **observe** the control plane within a [`Scope`]: everyone (a full run), or a few people and
//!   the workspaces that matter for them (a change-driven run, a handful of calls);
//! - **plan**: the pure diff ([`super::plan::diff`]) and the deletion fuse, whose window, held
//!   set and approvals persist in the store across runs;
//! - **apply** what may be applied, in phase order, recording every op's typed outcome in the
//!   audit log, its links in the ledger, and a failure in the quarantine.
//!
//! A run is level-triggered: it recomputes everything from live state, so a crash or a failed op
//! at any point is repaired by the next run, and nothing is applied twice.

use super::desired;
use super::plan::{
    apply_fuse, diff, held_digest, ActualState, FuseLimits, FuseOutcome, FuseState, MemberList, Op,
    OpKind, Plan, PlanOptions,
};
use crate::config::{GroupMapping, PortkeyConfig, SyncConfig};
use crate::policy::{self, DesiredState};
use crate::portkey::{
    self, Client, ClientConfig, CreateInvite, CreateWorkspace, InviteFilter, InviteWorkspace,
    MemberFilter, NewMember, RetryConfig, User, UserFilter, Workspace, WorkspaceFilter,
};
use crate::scheduler::{BoxFuture, RunKind, Runner, Trigger};
use crate::scim::schema::ResourceKind;
use crate::store::{now_rfc3339, AuditEntry, FailingOp, HeldOp, Link, Store, WorkspaceLink};
use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The client settings from the `[portkey]` config section.
pub fn client_config(p: &PortkeyConfig) -> ClientConfig {
    ClientConfig {
        base_url: p.base_url.clone(),
        api_key: portkey::ApiKey::new(p.api_key.expose()),
        request_timeout: Duration::from_millis(p.request_timeout_ms),
        retry: RetryConfig {
            initial_interval: Duration::from_millis(p.retry_initial_ms),
            max_interval: Duration::from_millis(p.retry_max_interval_ms),
            max_elapsed: Duration::from_secs(p.retry_give_up_secs),
            ..RetryConfig::default()
        },
        max_in_flight: p.max_in_flight,
        requests_per_second: p.requests_per_second,
        page_size: p.page_size,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading SCIM state: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("control-plane client: {0}")]
    Client(#[from] portkey::Error),
}

/// How a revoke's outcome says the invite was accepted first (the link is kept).
const ACCEPTED_BEFORE_REVOKE: &str = "the invite was accepted before it could be revoked";

/// What happened to one op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OpOutcome {
    /// Applied now.
    Done {
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Already true at the control plane, with what showed it (a conflict answer, or a read
    /// after a "not found").
    AlreadyDone { evidence: String },
    /// Not applied; retried later from quarantine.
    Failed {
        error: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
}

impl OpOutcome {
    fn done() -> Self {
        Self::Done { note: None }
    }

    fn failed(e: &portkey::Error) -> Self {
        Self::Failed {
            error: e.to_string(),
            status: e.status(),
            code: e.error_code().map(str::to_string),
        }
    }

    pub fn is_ok(&self) -> bool {
        !matches!(self, Self::Failed { .. })
    }

    /// The one-line form kept in the audit log and shown by the CLI.
    pub fn text(&self) -> String {
        match self {
            Self::Done { note: None } => "ok".into(),
            Self::Done { note: Some(n) } => format!("ok ({n})"),
            Self::AlreadyDone { evidence } => format!("ok ({evidence})"),
            Self::Failed { error, .. } => format!("failed: {error}"),
        }
    }
}

/// The outcome of one op.
#[derive(Debug, Clone, Serialize)]
pub struct OpResult {
    #[serde(flatten)]
    pub op: Op,
    /// `ok`, `ok (…)`, `failed: …`, `quarantined: …` or `dry-run`.
    pub result: String,
    /// Typed, for ops that were attempted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OpOutcome>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub kind: RunKind,
    pub trigger: Trigger,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub dry_run: bool,
    /// Op counts of the plan, per kind.
    pub planned: BTreeMap<&'static str, usize>,
    pub applied: usize,
    pub failed: usize,
    /// Destructive ops held by the deletion fuse (waiting for approval).
    pub held: usize,
    /// Destructive ops left out because the control plane was not read completely.
    pub withheld: usize,
    /// Ops that failed before and wait for their next attempt (see `failing` in the status).
    pub quarantined: usize,
    /// Held ops applied because an operator approved them.
    pub approved: usize,
    /// The run read what it needed and recorded what it did. Failed ops do not make a run
    /// fail: they are quarantined and retried on their own.
    pub ok: bool,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub results: Vec<OpResult>,
    /// A change-driven run that looked only at these people; `None` for a full run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ControlPlaneStatus {
    pub ok: Option<bool>,
    pub last_ok_at: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
}

#[cfg(test)]
impl RunSummary {
    /// A finished manual full run that removed one person, for the tests of what is made of
    /// summaries.
    pub(crate) fn sample() -> Self {
        RunSummary {
            run_id: "r1".into(),
            kind: RunKind::Full,
            trigger: Trigger::Manual,
            started_at: "t0".into(),
            finished_at: "t1".into(),
            duration_ms: 5,
            dry_run: false,
            planned: BTreeMap::from([("remove_user", 1)]),
            applied: 1,
            failed: 0,
            held: 0,
            withheld: 0,
            quarantined: 0,
            approved: 0,
            ok: true,
            errors: vec!["e".into()],
            warnings: vec![],
            results: vec![OpResult {
                op: Op::new(
                    OpKind::RemoveUser {
                        user_id: "u-a@x.io".into(),
                        email: "a@x.io".into(),
                    },
                    "gone",
                ),
                result: "ok".into(),
                outcome: Some(OpOutcome::Done { note: None }),
            }],
            scope: Some(vec!["a@x.io".into()]),
        }
    }
}

/// Ops between two progress lines in the log.
const PROGRESS_EVERY: usize = 500;

/// Seconds left for a run at `done` of `total` ops, every [`PROGRESS_EVERY`] ops (`None` in
/// between): one call per op at `rps` calls a second, the rate limit that bounds a large first
/// sync.
fn progress_eta(done: usize, total: usize, rps: f64) -> Option<u64> {
    if done == 0 || !done.is_multiple_of(PROGRESS_EVERY) {
        return None;
    }
    let rps = if rps.is_finite() {
        rps.max(0.001)
    } else {
        0.001
    };
    Some((total.saturating_sub(done) as f64 / rps).ceil() as u64)
}

/// How many finished runs the status keeps.
pub const RECENT_RUNS: usize = 10;

/// How many errors and warnings a kept run keeps.
const RECENT_RUN_LINES: usize = 20;

impl RunSummary {
    /// The summary without per-op results and with at most [`RECENT_RUN_LINES`] errors and
    /// warnings: what the status keeps of past runs, bounded however large a run was.
    fn brief(&self) -> RunSummary {
        let lines = |v: &[String]| v.iter().take(RECENT_RUN_LINES).cloned().collect();
        RunSummary {
            run_id: self.run_id.clone(),
            kind: self.kind,
            trigger: self.trigger,
            started_at: self.started_at.clone(),
            finished_at: self.finished_at.clone(),
            duration_ms: self.duration_ms,
            dry_run: self.dry_run,
            planned: self.planned.clone(),
            applied: self.applied,
            failed: self.failed,
            held: self.held,
            withheld: self.withheld,
            quarantined: self.quarantined,
            approved: self.approved,
            ok: self.ok,
            errors: lines(&self.errors),
            warnings: lines(&self.warnings),
            results: Vec::new(),
            scope: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcilerStatus {
    pub running: Option<String>,
    pub progress: Progress,
    /// The last run, without its per-op results (see [`RunSummary::brief`]).
    pub last_run: Option<RunSummary>,
    /// The last [`RECENT_RUNS`] runs, newest first, without their per-op results.
    pub recent_runs: Vec<RunSummary>,
    pub last_successful_run_at: Option<String>,
    pub last_successful_full_run_at: Option<String>,
    pub control_plane: ControlPlaneStatus,
    /// Destructive ops held by the fuse, across runs, until approved or no longer planned.
    pub held: Vec<Op>,
    pub held_reason: Option<String>,
    /// Names the held ops not approved yet: `POST /admin/approve-deletions?digest=` takes it.
    pub held_digest: Option<String>,
    /// Held ops approved and waiting for the next run.
    pub approved_waiting: usize,
    /// Ops that failed and are retried with a backoff; a refused removal stays here until it
    /// succeeds or is no longer planned.
    pub failing: Vec<FailingView>,
    /// A status the store could not give (the rest of the document still stands).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailingView {
    pub op: serde_json::Value,
    pub attempts: u32,
    pub first_failed_at: String,
    pub last_failed_at: String,
    pub last_error: String,
    pub next_attempt_at: String,
}

/// The answer to an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Approval {
    /// Every held op named by the digest is approved; the next run applies them.
    Approved { approved: usize },
    /// Nothing is held.
    NothingHeld,
    /// The held set is not the one the digest names (it changed since it was reviewed).
    Mismatch { current_digest: String, held: usize },
}

pub struct Reconciler {
    store: Store,
    client: Client,
    sync: SyncConfig,
    mappings: Vec<GroupMapping>,
    status: Mutex<ReconcilerStatus>,
    /// The workspace list of the last complete read: targeted runs look names up here instead
    /// of listing every workspace for one person, and read again when a name is missing.
    workspaces: Mutex<Option<Vec<Workspace>>>,
}

/// Quarantine backoff for an op that keeps failing: 1 min, doubling, at most 1 h.
fn quarantine_delay(attempts: u32) -> i64 {
    60i64
        .saturating_mul(1i64 << attempts.saturating_sub(1).min(6))
        .min(3600)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339_of(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// What a plan computation produced, for `/admin/plan` and for a run.
#[derive(Debug, Clone, Serialize)]
pub struct PlanView {
    pub plan: Plan,
    /// What the plan was computed from; not part of the `/admin/plan` document.
    #[serde(skip)]
    pub desired: DesiredState,
    /// What the fuse lets through and holds.
    #[serde(skip)]
    pub fuse: FuseOutcome,
    /// Destructive ops the fuse holds (held before, or held by this plan).
    pub held: Vec<Op>,
    pub held_reason: Option<String>,
    pub read_errors: Vec<String>,
    /// The people a targeted plan is about; `None` for everyone.
    #[serde(skip)]
    pub scope: Option<BTreeSet<String>>,
}

impl Reconciler {
    pub fn new(
        store: Store,
        portkey: &PortkeyConfig,
        sync: SyncConfig,
        mappings: Vec<GroupMapping>,
    ) -> Result<Self, ReconcileError> {
        Ok(Self::with_client(
            store,
            Client::new(client_config(portkey))?,
            sync,
            mappings,
        ))
    }

    /// A reconciler that talks to the control plane through `client` (a test points one at the
    /// simulator with its own retry and rate settings).
    pub fn with_client(
        store: Store,
        client: Client,
        sync: SyncConfig,
        mappings: Vec<GroupMapping>,
    ) -> Self {
        Self {
            store,
            client,
            sync,
            mappings,
            status: Mutex::new(ReconcilerStatus::default()),
            workspaces: Mutex::new(None),
        }
    }

    /// The status, with the held and failing ops as the store has them now.
    pub fn status(&self) -> ReconcilerStatus {
        let mut st = lock(&self.status).clone();
        match (self.store.held_ops(), self.store.failing_ops()) {
            (Ok(held), Ok(failing)) => {
                let waiting: Vec<&str> = held
                    .iter()
                    .filter(|(_, h)| !h.approved)
                    .map(|(k, _)| k.as_str())
                    .collect();
                st.held_digest = (!waiting.is_empty()).then(|| held_digest(waiting));
                st.approved_waiting = held.values().filter(|h| h.approved).count();
                st.held_reason = held
                    .values()
                    .filter(|h| !h.approved)
                    .max_by(|a, b| a.held_at.cmp(&b.held_at))
                    .map(|h| h.reason.clone());
                st.held = held
                    .values()
                    .filter(|h| !h.approved)
                    .filter_map(|h| serde_json::from_value::<Op>(h.op.clone()).ok())
                    .collect();
                st.failing = failing
                    .into_values()
                    .map(|f| FailingView {
                        op: f.op,
                        attempts: f.attempts,
                        first_failed_at: f.first_failed_at,
                        last_failed_at: f.last_failed_at,
                        last_error: f.last_error,
                        next_attempt_at: rfc3339_of(f.next_attempt_at),
                    })
                    .collect();
            }
            (Err(e), _) | (_, Err(e)) => st.store_error = Some(e.to_string()),
        }
        st
    }

    /// Approves the held ops, if `digest` names exactly the ones held now (from `status` or
    /// `plan`); the next run applies those still planned. A dry run never uses an approval.
    pub async fn approve(&self, digest: &str) -> Result<Approval, ReconcileError> {
        let held = self.store.held_ops()?;
        let keys: Vec<String> = held
            .iter()
            .filter(|(_, h)| !h.approved)
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return Ok(Approval::NothingHeld);
        }
        let current = held_digest(keys.iter().map(String::as_str));
        if current != digest.trim() {
            return Ok(Approval::Mismatch {
                current_digest: current,
                held: keys.len(),
            });
        }
        let n = keys.len();
        if self.store.approve_held_ops(keys).await? {
            Ok(Approval::Approved { approved: n })
        } else {
            // A run changed the held set between the read and the write.
            let again = self.status();
            Ok(Approval::Mismatch {
                current_digest: again.held_digest.unwrap_or_default(),
                held: again.held.len(),
            })
        }
    }

    /// The desired state of `who` (everyone, or a few people: see [`super::desired`]), read on
    /// a blocking thread. The caller's copy of the ledger names the address owners.
    async fn desired_async(&self, who: Who) -> Result<DesiredState, ReconcileError> {
        let (store, sync, mappings) =
            (self.store.clone(), self.sync.clone(), self.mappings.clone());
        tokio::task::spawn_blocking(move || {
            let inp = desired::Inputs {
                store: &store,
                sync: &sync,
                mappings: &mappings,
            };
            match who {
                Who::Everyone { owners } => desired::everyone(&inp, &owners),
                Who::People { emails, ids } => desired::people(&inp, &emails, &ids),
            }
        })
        .await
        .map_err(|e| ReconcileError::Store(crate::store::StoreError::BatchFailed(e.to_string())))?
    }

    /// Everyone's desired state, from the store.
    pub fn desired(&self) -> Result<DesiredState, ReconcileError> {
        let owners = desired::owners_of(&self.store.links()?);
        let inp = desired::Inputs {
            store: &self.store,
            sync: &self.sync,
            mappings: &self.mappings,
        };
        desired::everyone(&inp, &owners)
    }
}

/// Whose desired state a run reads.
enum Who {
    /// With the ledger's owners of every address ([`desired::owners_of`]).
    Everyone { owners: BTreeMap<String, String> },
    People {
        emails: BTreeSet<String>,
        ids: BTreeSet<String>,
    },
}

impl Reconciler {
    /// Reads the control plane. Every part that fails is marked incomplete, which stops every
    /// destructive op of the plan built on it.
    async fn actual(&self, managed: &BTreeSet<String>) -> (ActualState, Vec<String>) {
        let mut errors = Vec::new();
        let mut actual = ActualState::default();
        let (uf, inf, wf) = (
            UserFilter::default(),
            // Accepted and cancelled invites only grow with time; expired ones are re-issued from
            // the diff alone (no live invite and not a user means "invite").
            InviteFilter {
                status: Some(portkey::InviteStatus::Pending),
                ..InviteFilter::default()
            },
            WorkspaceFilter::default(),
        );
        let (users, invites, workspaces) = tokio::join!(
            self.client.list_users(&uf),
            self.client.list_invites(&inf),
            self.client.list_workspaces(&wf),
        );
        match users {
            Ok(u) => {
                actual.users = u;
                actual.users_complete = true;
            }
            Err(e) => errors.push(e.to_string()),
        }
        match invites {
            Ok(i) => {
                actual.invites = i;
                actual.invites_complete = true;
            }
            Err(e) => errors.push(e.to_string()),
        }
        match workspaces {
            Ok(w) => {
                *lock(&self.workspaces) = Some(w.clone());
                actual.workspaces = w;
                actual.workspaces_complete = true;
            }
            Err(e) => errors.push(e.to_string()),
        }
        let managed: BTreeSet<String> = managed.iter().map(|w| w.to_lowercase()).collect();
        let wanted: Vec<String> = actual
            .workspaces
            .iter()
            .filter(|w| {
                managed.contains(&w.name.to_lowercase())
                    || w.slug
                        .as_ref()
                        .is_some_and(|s| managed.contains(&s.to_lowercase()))
                    || managed.contains(&w.id.to_lowercase())
            })
            .map(|w| w.id.clone())
            .collect();
        let reads = futures::future::join_all(wanted.iter().map(|id| async move {
            (
                id.clone(),
                self.client.list_members(id, &MemberFilter::default()).await,
            )
        }))
        .await;
        for (id, r) in reads {
            match r {
                Ok(members) => {
                    actual.members.insert(
                        id,
                        MemberList {
                            members,
                            complete: true,
                        },
                    );
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        (actual, errors)
    }

    /// Workspaces managed before, by lower-cased name (from the ledger).
    fn former_workspaces(&self) -> Result<BTreeSet<String>, ReconcileError> {
        Ok(self.store.workspace_links()?.into_keys().collect())
    }

    /// Email → the SCIM user it was provisioned for, for every person in the ledger.
    fn linked_people(links: &BTreeMap<String, Link>) -> BTreeMap<String, Option<String>> {
        links
            .iter()
            .map(|(k, l)| (k.clone(), l.scim_id.clone()))
            .collect()
    }

    /// Computes what a full run would do now, without changing anything.
    pub async fn plan(&self) -> Result<(PlanView, ActualState), ReconcileError> {
        self.plan_scoped(&Scope::Everyone).await
    }

    /// Observe the control plane within `scope`, plan against the desired state, and pass the
    /// plan through the fuse. Changes nothing; [`Self::run_once`] applies the result.
    pub async fn plan_scoped(
        &self,
        scope: &Scope,
    ) -> Result<(PlanView, ActualState), ReconcileError> {
        // A full run reads the whole ledger; a run for a few people reads their links only.
        let (links, who) = match scope {
            Scope::Everyone => {
                let links = self.store.links()?;
                let owners = desired::owners_of(&links);
                (links, Who::Everyone { owners })
            }
            Scope::People { emails, .. } => (
                self.store.links_of(emails.iter().map(String::as_str))?,
                Who::People {
                    emails: emails.clone(),
                    ids: BTreeSet::new(),
                },
            ),
        };
        let desired = self.desired_async(who).await?;
        self.plan_from(scope, &links, desired).await
    }

    /// [`Self::plan_scoped`] from a desired state already read from the store, with the ledger's
    /// links of everyone in `scope`.
    async fn plan_from(
        &self,
        scope: &Scope,
        links: &BTreeMap<String, Link>,
        mut desired: DesiredState,
    ) -> Result<(PlanView, ActualState), ReconcileError> {
        let former = self.former_workspaces()?;
        match scope {
            Scope::Everyone => {
                let (actual, read_errors) = self.observe_everyone(&mut desired, &former).await;
                let linked = Self::linked_people(links);
                let view = self.finish_plan(desired, &actual, read_errors, linked, None, None)?;
                Ok((view, actual))
            }
            Scope::People { emails, focus } => {
                let (actual, errors) = self
                    .observe_people(&mut desired, links, &former, emails, focus.as_ref())
                    .await;
                let linked: BTreeMap<String, Option<String>> = Self::linked_people(links)
                    .into_iter()
                    .filter(|(k, _)| emails.contains(k))
                    .collect();
                // The fuse's percentage is of everyone the daemon manages, not of this handful.
                let managed = usize::try_from(self.store.link_count()?).unwrap_or(usize::MAX);
                let view = self.finish_plan(
                    desired,
                    &actual,
                    errors,
                    linked,
                    Some(managed),
                    Some(emails.clone()),
                )?;
                Ok((view, actual))
            }
        }
    }

    /// Observe everything: users, pending invites, workspaces, and the members of every managed
    /// workspace. Workspaces managed before stay managed while they exist, so that renaming or
    /// deleting a group removes the memberships it granted; they are never created again.
    async fn observe_everyone(
        &self,
        desired: &mut DesiredState,
        former: &BTreeSet<String>,
    ) -> (ActualState, Vec<String>) {
        let to_read: BTreeSet<String> = desired
            .managed_workspaces
            .iter()
            .cloned()
            .chain(former.iter().cloned())
            .collect();
        let (actual, read_errors) = self.actual(&to_read).await;
        let known: BTreeSet<String> = desired
            .managed_workspaces
            .iter()
            .map(|w| w.to_lowercase())
            .collect();
        for f in former {
            if known.contains(f) {
                continue;
            }
            if let Some(w) = actual
                .workspaces
                .iter()
                .find(|w| w.name.to_lowercase() == *f)
            {
                desired.managed_workspaces.insert(w.name.clone());
            }
        }
        (actual, read_errors)
    }

    fn finish_plan(
        &self,
        desired: DesiredState,
        actual: &ActualState,
        read_errors: Vec<String>,
        linked: BTreeMap<String, Option<String>>,
        fuse_denominator: Option<usize>,
        scope: Option<BTreeSet<String>>,
    ) -> Result<PlanView, ReconcileError> {
        let opts = PlanOptions::new(
            &self.sync.protected_emails,
            linked,
            self.sync.create_workspaces,
            time::OffsetDateTime::now_utc(),
        );
        let linked = &opts.linked;
        let plan = diff(&desired, actual, &opts);
        let window = self.sync.fuse_window_minutes.saturating_mul(60) as i64;
        let state = FuseState {
            recent: self.store.fuse_count_since(unix_now() - window)?,
            held: self
                .store
                .held_ops()?
                .into_iter()
                .map(|(k, h)| (k, h.approved))
                .collect(),
            managed_before: Some(linked.keys().cloned().collect()),
        };
        let limits = FuseLimits {
            max_deletions: self.sync.max_deletions,
            max_deletion_percent: self.sync.max_deletion_percent,
            floor: self.sync.fuse_floor,
        };
        let managed = plan.managed_users.max(fuse_denominator.unwrap_or(0));
        let fuse = apply_fuse(
            &plan,
            &limits,
            managed,
            &state,
            self.sync.fuse_window_minutes,
        );
        Ok(PlanView {
            held: fuse.held.clone(),
            held_reason: fuse.reason.clone(),
            fuse,
            plan,
            read_errors,
            desired,
            scope,
        })
    }

    /// Lower-cased names of the workspaces a group grants, by convention or mapping.
    fn group_workspaces(&self, display_name: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .mappings
            .iter()
            .filter(|m| m.group.trim().eq_ignore_ascii_case(display_name.trim()))
            .map(|m| m.workspace.trim().to_lowercase())
            .collect();
        if let Some((ws, _)) = policy::parse_convention(display_name) {
            out.push(ws.to_lowercase());
        }
        out
    }

    /// The scope of a change-driven run: every email a changed SCIM user has or had (by the
    /// ledger), the workspaces whose member rows must be compared, and the feed position it
    /// covers; `None` when the changes are too many for a targeted run to be cheaper than a
    /// full one.
    fn affected(&self, cursor: u64) -> Result<Option<ChangeScope>, ReconcileError> {
        const MAX_CHANGES: usize = 500;
        const MAX_USERS: usize = 50;
        let changes = self.store.changes_since(cursor, MAX_CHANGES + 1)?;
        if changes.len() > MAX_CHANGES {
            return Ok(None);
        }
        let last = changes.last().map(|c| c.seq).unwrap_or(cursor);
        let mut ids: BTreeSet<String> = BTreeSet::new();
        for c in &changes {
            if c.kind == crate::store::ChangeKind::User {
                ids.insert(c.id.clone());
            }
            ids.extend(c.users.iter().cloned());
            if ids.len() > MAX_USERS {
                return Ok(None);
            }
        }
        // Workspace roles come from groups only. A change to a group's members touches the
        // workspaces that group grants; a change to a user already linked under its address
        // cannot change any workspace role (only its org role or whether it stays), so its
        // other memberships are not re-read (the full resync checks them for drift). A new
        // user or a new address compares every membership.
        let mut focus: Option<BTreeSet<String>> = Some(BTreeSet::new());
        for c in &changes {
            match c.kind {
                crate::store::ChangeKind::Group => {
                    if let (Some(f), Some(g)) = (
                        focus.as_mut(),
                        self.store.get(ResourceKind::Group, &c.id, false)?,
                    ) {
                        let name = g
                            .record
                            .data
                            .get("displayName")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or_default();
                        f.extend(self.group_workspaces(name));
                    }
                }
                crate::store::ChangeKind::User => {
                    let address = self
                        .store
                        .get(ResourceKind::User, &c.id, false)?
                        .and_then(|r| policy::user_email(&r.record.data));
                    let link = match &address {
                        Some(e) => self.store.links_of([e.as_str()])?.remove(e),
                        None => None,
                    };
                    let linked_here = link.is_some_and(|l| {
                        l.scim_id.as_deref() == Some(c.id.as_str()) && l.portkey_user_id.is_some()
                    });
                    if !linked_here {
                        focus = None;
                    }
                }
            }
        }
        let mut emails = BTreeSet::new();
        for id in &ids {
            if let Some(r) = self.store.get(ResourceKind::User, id, false)? {
                if let Some(e) = policy::user_email(&r.record.data) {
                    emails.insert(e);
                }
            }
            // A changed userName or email: the old address is in the ledger.
            emails.extend(self.store.emails_linked_to(id)?);
        }
        // Ops that failed earlier and are due again are retried with this run.
        let now = unix_now();
        emails.extend(
            self.store
                .failing_ops()?
                .into_values()
                .filter(|f| f.next_attempt_at <= now)
                .filter_map(|f| f.email),
        );
        if emails.len() > MAX_USERS {
            return Ok(None);
        }
        Ok(Some(ChangeScope {
            emails,
            focus,
            covers: last,
        }))
    }

    /// The workspace list for a targeted run: the last complete read, unless it lacks one of
    /// `names` (a new group), in which case it is read again.
    async fn workspace_list(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<Vec<Workspace>, portkey::Error> {
        let cached = lock(&self.workspaces).clone();
        if let Some(list) = cached {
            let has_all = names.iter().all(|n| {
                list.iter()
                    .any(|w| w.name.eq_ignore_ascii_case(n) || w.slug.as_deref() == Some(n))
            });
            if has_all {
                return Ok(list);
            }
        }
        let list = self
            .client
            .list_workspaces(&WorkspaceFilter::default())
            .await?;
        *lock(&self.workspaces) = Some(list.clone());
        Ok(list)
    }

    /// One person's control-plane user, found however the API matches `email=`: by the address
    /// as stored here (lower-cased), as the IdP spelled it, then by the id the ledger recorded.
    /// `Err` when a read failed (the person's state is then unknown).
    async fn find_user(
        &self,
        email: &str,
        original: Option<&str>,
        known_id: Option<&str>,
    ) -> Result<Option<User>, portkey::Error> {
        let mut spellings = vec![email.to_string()];
        if let Some(o) = original.filter(|o| *o != email) {
            spellings.push(o.to_string());
        }
        for sp in spellings {
            let found = self
                .client
                .list_users(&UserFilter {
                    email: Some(sp),
                    ..UserFilter::default()
                })
                .await?;
            if let Some(u) = found
                .into_iter()
                .find(|u| u.email.eq_ignore_ascii_case(email))
            {
                return Ok(Some(u));
            }
        }
        let Some(id) = known_id else {
            return Ok(None);
        };
        match self.client.get_user(id).await {
            Ok(u) if u.email.eq_ignore_ascii_case(email) => Ok(Some(u)),
            Ok(_) => Ok(None),
            Err(e) if e.status() == Some(404) => Ok(None),
            // 403 AB03 is "gone" on some endpoints and "not allowed" on others: the whole list
            // tells them apart (rare: only someone the ledger knows and the email search missed).
            Err(e) if e.is_not_found() => {
                let all = self.client.list_users(&UserFilter::default()).await?;
                Ok(all
                    .into_iter()
                    .find(|u| u.id == id || u.email.eq_ignore_ascii_case(email)))
            }
            Err(e) => Err(e),
        }
    }

    /// Live invites for one address, by both spellings (see [`Self::find_user`]).
    async fn find_invites(
        &self,
        email: &str,
        original: Option<&str>,
    ) -> Result<Vec<portkey::Invite>, portkey::Error> {
        let mut spellings = vec![email.to_string()];
        if let Some(o) = original.filter(|o| *o != email) {
            spellings.push(o.to_string());
        }
        let mut out: Vec<portkey::Invite> = Vec::new();
        for sp in spellings {
            let found = self
                .client
                .list_invites(&InviteFilter {
                    email: Some(sp),
                    status: Some(portkey::InviteStatus::Pending),
                    ..InviteFilter::default()
                })
                .await?;
            for i in found {
                if i.email.eq_ignore_ascii_case(email) && !out.iter().any(|o| o.id == i.id) {
                    out.push(i);
                }
            }
            if !out.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    /// Plans for a few people only, reading only them at the control plane. Every read is
    /// filtered again here by email and user id, so that a server ignoring a filter parameter
    /// can never put someone else's row in front of the diff (which would read as "remove").
    ///
    /// Reads per person: the user by email (a second spelling only when the IdP's differs and
    /// the first found nothing); the pending invites only when there is no user; the user by id
    /// only when the list left out `workspace_ids`; the member row of a workspace only where
    /// `workspace_ids` says the person is and the person is still meant to be (its role is
    /// compared; elsewhere it is a removal whatever the role). Someone leaving needs none of the
    /// workspace reads: removing the user removes them everywhere. The workspace list is the
    /// last complete read's.
    pub async fn plan_for(
        &self,
        emails: &BTreeSet<String>,
        focus: Option<&BTreeSet<String>>,
    ) -> Result<(PlanView, ActualState), ReconcileError> {
        self.plan_scoped(&Scope::People {
            emails: emails.clone(),
            focus: focus.cloned(),
        })
        .await
    }

    /// `explain`'s query: one person, found by email, `userName` or SCIM id, with the ops
    /// planned for them alone. Reads from the store, through its indexes, only the records that
    /// bear on this person ([`super::desired::people`]), and at the control plane only what a
    /// change-driven run for this person would read ([`Self::plan_for`]).
    pub async fn explain(&self, who: &str) -> Result<super::explain::Person, ReconcileError> {
        let people = self.resolve(who)?;
        let desired = self.desired_async(people).await?;
        let explanation = desired.explain(who);
        let email = explanation
            .as_ref()
            .and_then(|e| e.email.clone())
            .unwrap_or_else(|| who.trim().to_lowercase());
        let scope = Scope::People {
            emails: BTreeSet::from([email.clone()]),
            focus: None,
        };
        let links = self.store.links_of([email.as_str()])?;
        let planned = self.plan_from(&scope, &links, desired).await;
        Ok(super::explain::Person::new(explanation, email, planned))
    }

    /// Whom `explain`'s argument can name: the address itself, the user with that SCIM id or
    /// `userName`, and those users' addresses.
    fn resolve(&self, who: &str) -> Result<Who, ReconcileError> {
        let key = who.trim().to_lowercase();
        let mut ids = BTreeSet::new();
        let mut emails = BTreeSet::from([key.clone()]);
        let by_id = self.store.get(ResourceKind::User, who.trim(), false)?;
        let by_name = self.store.user_by_name(&key)?;
        for r in by_id.into_iter().chain(by_name) {
            emails.extend(policy::user_email(&r.record.data));
            ids.insert(r.record.id);
        }
        Ok(Who::People { emails, ids })
    }

    /// Each person's account (by email, or by the id the ledger knows), with its workspace ids,
    /// or else their pending invites. A failed read marks that list incomplete.
    async fn read_people(
        &self,
        desired: &DesiredState,
        links: &BTreeMap<String, Link>,
        emails: &BTreeSet<String>,
        actual: &mut ActualState,
        errors: &mut Vec<String>,
    ) {
        for email in emails {
            let original = desired.users.get(email).map(|d| d.email_original.clone());
            let link = links.get(email);
            let known_id = link.and_then(|l| l.portkey_user_id.as_deref());
            match self.find_user(email, original.as_deref(), known_id).await {
                Ok(Some(mut u)) => {
                    if u.workspace_ids.is_none() && desired.users.contains_key(email) {
                        match self.client.get_user(&u.id).await {
                            Ok(full) => u.workspace_ids = full.workspace_ids,
                            Err(e) => {
                                errors.push(e.to_string());
                                actual.users_complete = false;
                            }
                        }
                    }
                    actual.users.push(u);
                }
                Ok(None) => match self.find_invites(email, original.as_deref()).await {
                    Ok(i) => actual.invites.extend(i),
                    Err(e) => {
                        actual.invites_complete = false;
                        errors.push(e.to_string());
                    }
                },
                Err(e) => {
                    actual.users_complete = false;
                    errors.push(e.to_string());
                }
            }
        }
    }

    /// Observe for a few people (see [`Self::plan_for`]). Narrows `desired` to them and to the
    /// workspaces that matter for them.
    async fn observe_people(
        &self,
        desired: &mut DesiredState,
        links: &BTreeMap<String, Link>,
        former: &BTreeSet<String>,
        emails: &BTreeSet<String>,
        focus: Option<&BTreeSet<String>>,
    ) -> (ActualState, Vec<String>) {
        let managed_lower: BTreeSet<String> = desired
            .managed_workspaces
            .iter()
            .map(|w| w.to_lowercase())
            .chain(former.iter().cloned())
            .collect();
        desired.users.retain(|e, _| emails.contains(e));

        let mut errors = Vec::new();
        let mut actual = ActualState {
            users_complete: true,
            invites_complete: true,
            ..ActualState::default()
        };
        self.read_people(desired, links, emails, &mut actual, &mut errors)
            .await;

        // The workspaces that matter: where these people should be, and managed ones where
        // they are now.
        let wanted_names: BTreeSet<String> = desired
            .users
            .values()
            .flat_map(|d| d.workspaces.keys().cloned())
            .collect();
        match self.workspace_list(&wanted_names).await {
            Ok(w) => {
                actual.workspaces = w;
                actual.workspaces_complete = true;
            }
            Err(e) => errors.push(e.to_string()),
        }
        let relevant_lower = narrow_workspaces(desired, &actual, &managed_lower, wanted_names);
        let ws_in_scope: Vec<Workspace> = actual
            .workspaces
            .iter()
            .filter(|w| relevant_lower.contains(&w.name.to_lowercase()))
            .cloned()
            .collect();
        for ws in ws_in_scope {
            let mut list = MemberList {
                members: Vec::new(),
                complete: true,
            };
            for u in &actual.users {
                let Some(du) = desired.users.get(&u.email.to_lowercase()) else {
                    continue;
                };
                let ids = u.workspace_ids.as_deref().unwrap_or_default();
                let is_in = ids
                    .iter()
                    .any(|id| *id == ws.id || ws.slug.as_deref() == Some(id.as_str()));
                if !is_in {
                    continue;
                }
                if !du
                    .workspaces
                    .keys()
                    .any(|w| w.eq_ignore_ascii_case(&ws.name))
                {
                    // In the workspace and no longer meant to be: a removal, whatever the role,
                    // so the member row is not read. (Its role is never used for a change.)
                    list.members.push(portkey::WorkspaceMember {
                        id: u.id.clone(),
                        email: Some(u.email.clone()),
                        role: portkey::WorkspaceRole::Other("not read".into()),
                        org_role: Some(u.role.clone()),
                        first_name: None,
                        last_name: None,
                        status: None,
                        workspace_id: Some(ws.id.clone()),
                    });
                    continue;
                }
                if focus.is_some_and(|f| !f.contains(&ws.name.to_lowercase())) {
                    // Untouched by this change: taken to be as desired (see `affected`).
                    if let Some((_, m)) = du
                        .workspaces
                        .iter()
                        .find(|(w, _)| w.eq_ignore_ascii_case(&ws.name))
                    {
                        list.members.push(portkey::WorkspaceMember {
                            id: u.id.clone(),
                            email: Some(u.email.clone()),
                            role: m.role.into(),
                            org_role: Some(u.role.clone()),
                            first_name: None,
                            last_name: None,
                            status: None,
                            workspace_id: Some(ws.id.clone()),
                        });
                    }
                    continue;
                }
                let mf = MemberFilter {
                    email: Some(u.email.clone()),
                    ..MemberFilter::default()
                };
                match self.client.list_members(&ws.id, &mf).await {
                    Ok(ms) => list.members.extend(ms.into_iter().filter(|m| m.id == u.id)),
                    Err(e) => {
                        list.complete = false;
                        errors.push(e.to_string());
                    }
                }
            }
            actual.members.insert(ws.id.clone(), list);
        }
        (actual, errors)
    }

    /// One run: plan, apply what may be applied, record it.
    pub async fn run_once(&self, run_id: String, kind: RunKind, trigger: Trigger) -> RunSummary {
        let started = Instant::now();
        let started_at = now_rfc3339();
        lock(&self.status).running = Some(run_id.clone());
        let mut summary = RunSummary {
            run_id: run_id.clone(),
            kind,
            trigger,
            started_at,
            finished_at: String::new(),
            duration_ms: 0,
            dry_run: self.sync.dry_run,
            planned: BTreeMap::new(),
            applied: 0,
            failed: 0,
            held: 0,
            withheld: 0,
            quarantined: 0,
            approved: 0,
            ok: false,
            errors: Vec::new(),
            warnings: Vec::new(),
            results: Vec::new(),
            scope: None,
        };
        // The feed position this run covers is taken before anything is read, so a SCIM write
        // that lands during the run is handled by the next one.
        let positions = self
            .store
            .reconcile_cursor()
            .and_then(|c| Ok((c, self.store.last_seq()?)));
        let planned = match positions {
            Err(e) => Err(ReconcileError::from(e)),
            Ok((cursor, mut covers)) => {
                let planned = match kind {
                    RunKind::Full => self.plan().await,
                    RunKind::Changes => match self.affected(cursor) {
                        Ok(Some(scope)) => {
                            covers = scope.covers;
                            summary.scope = Some(scope.emails.iter().cloned().collect());
                            self.plan_scoped(&Scope::People {
                                emails: scope.emails,
                                focus: scope.focus,
                            })
                            .await
                        }
                        Ok(None) => self.plan().await,
                        Err(e) => Err(e),
                    },
                };
                planned.map(|p| (p, cursor, covers))
            }
        };
        match planned {
            Err(e) => summary.errors.push(e.to_string()),
            Ok(((view, actual), cursor, covers)) => {
                self.execute(&run_id, view, &actual, &mut summary).await;
                // Failed ops are quarantined and retried on their own schedule, so they do not
                // pin the cursor: only a failed read or store write does.
                summary.ok = summary.errors.is_empty();
                if summary.ok && !summary.dry_run && covers > cursor {
                    if let Err(e) = self.store.set_reconcile_cursor(covers).await {
                        summary.errors.push(format!("reconcile cursor: {e}"));
                        summary.ok = false;
                    }
                }
                // Only after the cursor is stored is the feed below it no longer needed. Upkeep
                // failing leaves the store larger, never wrong, so it does not fail the run.
                if summary.ok {
                    if let Err(e) = self.store.upkeep().await {
                        summary.warnings.push(format!("store upkeep: {e}"));
                    }
                }
            }
        }
        summary.finished_at = now_rfc3339();
        summary.duration_ms = started.elapsed().as_millis() as u64;
        let m = crate::metrics::metrics();
        m.reconcile_runs
            .get_or_create(&crate::metrics::RunLabels {
                kind: format!("{kind:?}").to_lowercase(),
                result: if summary.ok { "ok" } else { "failed" }.into(),
            })
            .inc();
        m.reconcile_run_duration
            .observe(summary.duration_ms as f64 / 1000.0);
        let status = self.status();
        m.held_deletions.set(status.held.len() as i64);
        m.failing_ops.set(status.failing.len() as i64);
        if summary.ok && kind == RunKind::Full {
            m.last_full_sync
                .set(time::OffsetDateTime::now_utc().unix_timestamp() as f64);
        }
        let mut st = lock(&self.status);
        st.running = None;
        if summary.ok {
            st.last_successful_run_at = Some(summary.finished_at.clone());
            if kind == RunKind::Full {
                st.last_successful_full_run_at = Some(summary.finished_at.clone());
            }
        }
        // The status keeps runs without their per-op results: a first sync of 100,000 people
        // has as many, and every status read clones what is kept.
        let brief = summary.brief();
        st.last_run = Some(brief.clone());
        st.recent_runs.insert(0, brief);
        st.recent_runs.truncate(RECENT_RUNS);
        tracing::info!(
            run = %summary.run_id,
            kind = ?summary.kind,
            trigger = ?summary.trigger,
            ok = summary.ok,
            applied = summary.applied,
            failed = summary.failed,
            held = summary.held,
            withheld = summary.withheld,
            quarantined = summary.quarantined,
            ms = summary.duration_ms,
            "reconcile run finished"
        );
        summary
    }

    /// The held set after this plan: newly held ops added, and ops no longer planned released
    /// (only for people this plan looked at, and only when it read everything it needed).
    async fn update_held(&self, view: &PlanView) -> Result<(), crate::store::StoreError> {
        let now = now_rfc3339();
        let mut changes: Vec<(String, Option<HeldOp>)> = view
            .fuse
            .newly_held
            .iter()
            .map(|op| {
                (
                    op.key(),
                    Some(HeldOp {
                        op: op_json(op),
                        email: op.kind.email().map(str::to_string),
                        held_at: now.clone(),
                        reason: view.held_reason.clone().unwrap_or_default(),
                        approved: false,
                    }),
                )
            })
            .collect();
        if view.plan.withheld.is_none() {
            let planned: BTreeSet<String> = view.plan.destructive().map(Op::key).collect();
            for (key, h) in self.store.held_ops()? {
                let in_scope = match (&view.scope, &h.email) {
                    (None, _) => true,
                    (Some(scope), Some(e)) => scope.contains(e),
                    (Some(_), None) => false,
                };
                if in_scope && !planned.contains(&key) {
                    changes.push((key, None));
                }
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.store.set_held_ops(changes).await
    }

    /// Applies what the fuse lets through, phase by phase, recording each op as it finishes.
    async fn execute(
        &self,
        run_id: &str,
        view: PlanView,
        actual: &ActualState,
        s: &mut RunSummary,
    ) {
        self.record_plan(&view, s);
        if self.sync.dry_run {
            s.results = dry_run_results(&view);
            return;
        }
        if let Err(e) = self.update_held(&view).await {
            s.errors.push(format!("held ops: {e}"));
            return;
        }
        let PlanView {
            plan,
            desired,
            fuse,
            scope,
            ..
        } = view;
        let now = unix_now();
        let Some((failing, to_apply)) = self
            .quarantine(&plan, scope.as_ref(), fuse.allowed, now, s)
            .await
        else {
            return;
        };
        let approved: BTreeSet<String> = fuse.approved.iter().map(Op::key).collect();
        self.start_progress(to_apply.len(), &fuse.newly_held);
        if let Err(e) = self.link_invitees(&to_apply, &desired).await {
            s.errors.push(e);
            return;
        }
        let ctx = RecordCtx {
            run_id,
            approved: &approved,
            failing: &failing,
            desired: &desired,
            now,
        };
        let created = self.apply_phases(&ctx, to_apply, s).await;
        let more = self.links_for(&desired, actual);
        if !more.is_empty() {
            if let Err(e) = self.store.set_links(more).await {
                s.errors.push(format!("link ledger: {e}"));
            }
        }
        match self.workspace_links_for(&desired, actual, &created) {
            Ok(more) if more.is_empty() => {}
            Ok(more) => {
                if let Err(e) = self.store.set_workspace_links(more).await {
                    s.errors.push(format!("link ledger: {e}"));
                }
            }
            Err(e) => s.errors.push(format!("link ledger: {e}")),
        }
    }

    /// The plan's counts in the summary, and the control plane's health in the status.
    fn record_plan(&self, view: &PlanView, s: &mut RunSummary) {
        {
            let mut st = lock(&self.status);
            if view.read_errors.is_empty() {
                st.control_plane.ok = Some(true);
                st.control_plane.last_ok_at = Some(now_rfc3339());
                st.control_plane.last_error = None;
            } else {
                st.control_plane.ok = Some(false);
                st.control_plane.last_error = view.read_errors.first().cloned();
            }
        }
        s.errors.extend(view.read_errors.iter().cloned());
        s.planned = view.plan.summary();
        s.warnings = view.plan.warnings.clone();
        s.withheld = view.plan.withheld.as_ref().map(|w| w.dropped).unwrap_or(0);
        s.held = view.fuse.held.len();
        s.approved = view.fuse.approved.len();
    }

    /// Ops that failed before wait for their next attempt; those no longer planned (for people
    /// this run looked at, after a complete read) are forgotten. `None` when the quarantine
    /// cannot be read: nothing is applied blind to it.
    async fn quarantine(
        &self,
        plan: &Plan,
        scope: Option<&BTreeSet<String>>,
        allowed: Vec<Op>,
        now: i64,
        s: &mut RunSummary,
    ) -> Option<(BTreeMap<String, FailingOp>, Vec<Op>)> {
        let failing = match self.store.failing_ops() {
            Ok(f) => f,
            Err(e) => {
                s.errors.push(format!("failing ops: {e}"));
                return None;
            }
        };
        if plan.withheld.is_none() {
            let planned: BTreeSet<String> = plan.ops.iter().map(Op::key).collect();
            let gone: Vec<(String, Option<FailingOp>)> = failing
                .iter()
                .filter(|(k, f)| {
                    let in_scope = match (scope, &f.email) {
                        (None, _) => true,
                        (Some(sc), Some(e)) => sc.contains(e),
                        (Some(_), None) => false,
                    };
                    in_scope && !planned.contains(*k)
                })
                .map(|(k, _)| (k.clone(), None))
                .collect();
            if !gone.is_empty() {
                if let Err(e) = self.store.set_failing_ops(gone).await {
                    s.errors.push(format!("failing ops: {e}"));
                }
            }
        }
        let mut to_apply = Vec::new();
        for op in allowed {
            match failing.get(&op.key()) {
                Some(f) if f.next_attempt_at > now => {
                    s.quarantined += 1;
                    s.results.push(OpResult {
                        result: format!(
                            "quarantined: failed {} time(s), last: {}; next attempt after {}",
                            f.attempts,
                            f.last_error,
                            rfc3339_of(f.next_attempt_at)
                        ),
                        op,
                        outcome: None,
                    });
                }
                _ => to_apply.push(op),
            }
        }
        Some((failing, to_apply))
    }

    /// Progress of this run starts at 0 of `total`; ops the fuse newly holds are counted.
    fn start_progress(&self, total: usize, newly_held: &[Op]) {
        lock(&self.status).progress = Progress { done: 0, total };
        let m = crate::metrics::metrics();
        m.reconcile_progress_total.set(total as i64);
        m.reconcile_progress_done.set(0);
        for op in newly_held {
            m.reconcile_ops
                .get_or_create(&crate::metrics::OpLabels {
                    op: op.kind.name().into(),
                    result: "held".into(),
                })
                .inc();
        }
    }

    /// Everyone about to be invited is linked before the first invite is sent, in one
    /// transaction: a crash mid-run must not leave an invite the daemon does not know it owns
    /// (it could then never revoke it).
    async fn link_invitees(&self, to_apply: &[Op], desired: &DesiredState) -> Result<(), String> {
        let invitees: BTreeSet<String> = to_apply
            .iter()
            .filter_map(|op| match &op.kind {
                OpKind::Invite { email, .. } => Some(email.to_lowercase()),
                _ => None,
            })
            .collect();
        if invitees.is_empty() {
            return Ok(());
        }
        let existing = match self.store.links_of(invitees.iter().map(String::as_str)) {
            Ok(l) => l,
            Err(e) => {
                return Err(format!("link ledger: {e}; nothing applied this run"));
            }
        };
        let intents: Vec<(String, Option<Link>)> = invitees
            .into_iter()
            .filter(|e| !existing.contains_key(e))
            .map(|email| {
                let scim_id = desired.users.get(&email).map(|d| d.scim_id.clone());
                (
                    email,
                    Some(Link {
                        scim_id,
                        ..Link::default()
                    }),
                )
            })
            .collect();
        if !intents.is_empty() {
            if let Err(e) = self.store.set_links(intents).await {
                return Err(format!("link ledger: {e}; no invite sent this run"));
            }
        }
        Ok(())
    }

    /// Runs the ops phase by phase and records each; returns the workspaces created (name → id).
    async fn apply_phases(
        &self,
        ctx: &RecordCtx<'_>,
        to_apply: Vec<Op>,
        s: &mut RunSummary,
    ) -> BTreeMap<String, String> {
        let mut created: BTreeMap<String, String> = BTreeMap::new();
        // Each op's audit entry (and link change) is written as soon as the op is done, without
        // waiting for the commit: the store's writer groups them, and a crash loses at most
        // the entries of the last commit in flight.
        let mut pending_writes = Vec::new();
        let mut done = 0usize;
        // Phases run in order; within a phase the ops are independent (different people,
        // workspaces or invites), so they run concurrently up to the client's in-flight bound.
        // Workspace creation stays sequential: later phases need the ids it yields.
        let concurrency = self.client.config().max_in_flight.max(1);
        let mut ops = to_apply.into_iter().peekable();
        while let Some(first) = ops.next() {
            let phase = first.phase();
            let mut group = vec![first];
            while let Some(next) = ops.next_if(|o| o.phase() == phase) {
                group.push(next);
            }
            if phase == super::Phase::CreateWorkspaces {
                for op in group {
                    let (result, made, links) = self.apply(&op, &created).await;
                    if let Some((name, id)) = made {
                        created.insert(name, id);
                    }
                    self.record_op(ctx, op, result, links, s, &mut pending_writes, &mut done);
                }
            } else {
                let created = &created;
                let mut running = futures::stream::iter(group.into_iter().map(|op| async move {
                    let out = self.apply(&op, created).await;
                    (op, out)
                }))
                .buffer_unordered(concurrency);
                while let Some((op, (result, _, links))) = running.next().await {
                    self.record_op(ctx, op, result, links, s, &mut pending_writes, &mut done);
                }
            }
        }
        for w in pending_writes {
            match w.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => s.errors.push(format!("audit log / link ledger: {e}")),
                Err(e) => s.errors.push(format!("audit log / link ledger: {e}")),
            }
        }
        created
    }

    /// Counts, logs and records one applied op; its audit entry, link changes and safety
    /// records (fuse window, held set, quarantine) go to the store without waiting (the writer
    /// groups them into one commit).
    #[allow(clippy::too_many_arguments)]
    fn record_op(
        &self,
        ctx: &RecordCtx<'_>,
        op: Op,
        outcome: OpOutcome,
        mut link_changes: Vec<(String, Option<Link>)>,
        s: &mut RunSummary,
        pending_writes: &mut Vec<tokio::task::JoinHandle<Result<(), crate::store::StoreError>>>,
        done: &mut usize,
    ) {
        let m = crate::metrics::metrics();
        m.reconcile_ops
            .get_or_create(&crate::metrics::OpLabels {
                op: op.kind.name().into(),
                result: if outcome.is_ok() { "ok" } else { "failed" }.into(),
            })
            .inc();
        let key = op.key();
        let was_approved = ctx.approved.contains(&key);
        let mut fuse_entry = None;
        let mut held_release = None;
        let failing_change: Option<(String, Option<FailingOp>)>;
        let text = outcome.text();
        match &outcome {
            OpOutcome::Done { .. } | OpOutcome::AlreadyDone { .. } => {
                s.applied += 1;
                if was_approved {
                    held_release = Some(key.clone());
                } else if op.is_destructive() && matches!(outcome, OpOutcome::Done { .. }) {
                    // Only what this daemon took away counts; "already gone" took nothing.
                    fuse_entry = Some((ctx.now, key.clone()));
                }
                failing_change = ctx.failing.contains_key(&key).then(|| (key.clone(), None));
                // An invite keeps the SCIM user it was sent for, so a deletion before
                // acceptance finds it.
                for (email, link) in link_changes.iter_mut() {
                    if let Some(l) = link.as_mut() {
                        if l.scim_id.is_none() {
                            l.scim_id = ctx.desired.users.get(email).map(|d| d.scim_id.clone());
                        }
                    }
                }
            }
            OpOutcome::Failed { error: e, .. } => {
                s.failed += 1;
                tracing::warn!(op = op.kind.name(), error = %e, "reconcile op failed");
                let prev = ctx.failing.get(&key);
                let attempts = prev.map(|f| f.attempts).unwrap_or(0) + 1;
                let at = now_rfc3339();
                failing_change = Some((
                    key.clone(),
                    Some(FailingOp {
                        op: op_json(&op),
                        email: op.kind.email().map(str::to_string),
                        attempts,
                        first_failed_at: prev
                            .map(|f| f.first_failed_at.clone())
                            .unwrap_or_else(|| at.clone()),
                        last_failed_at: at,
                        last_error: e.clone(),
                        next_attempt_at: ctx.now + quarantine_delay(attempts),
                    }),
                ));
            }
        }
        let entry = AuditEntry {
            seq: 0,
            at: String::new(),
            run_id: ctx.run_id.to_string(),
            op: op_json(&op.kind),
            reason: if was_approved {
                format!("{}; held by the deletion fuse, then approved", op.reason)
            } else {
                op.reason.clone()
            },
            result: text.clone(),
        };
        let store = self.store.clone();
        let window = self.sync.fuse_window_minutes.saturating_mul(60) as i64;
        let now = ctx.now;
        pending_writes.push(tokio::spawn(async move {
            store.append_audit(vec![entry]).await.map(|_| ())?;
            if !link_changes.is_empty() {
                store.set_links(link_changes).await?;
            }
            if let Some(e) = fuse_entry {
                store.record_destructive(vec![e], now - window).await?;
            }
            if let Some(k) = held_release {
                store.set_held_ops(vec![(k, None)]).await?;
            }
            if let Some(f) = failing_change {
                store.set_failing_ops(vec![f]).await?;
            }
            Ok::<(), crate::store::StoreError>(())
        }));
        s.results.push(OpResult {
            op,
            result: text,
            outcome: Some(outcome),
        });
        *done += 1;
        let total = {
            let mut st = lock(&self.status);
            st.progress.done = *done;
            st.progress.total
        };
        m.reconcile_progress_done.set(*done as i64);
        // Progress of long runs in the log, without a line per op. The estimate assumes one
        // call per op at the configured rate limit, which is what bounds a large first sync.
        if let Some(eta_secs) = progress_eta(*done, total, self.client.config().requests_per_second)
        {
            tracing::info!(
                run = %ctx.run_id,
                done = *done,
                total,
                eta_secs,
                "reconcile progress"
            );
        }
    }

    /// Workspace ledger entries not recorded yet: managed workspaces that exist (read, or
    /// created by this run: lower-cased name → id).
    fn workspace_links_for(
        &self,
        desired: &DesiredState,
        actual: &ActualState,
        created: &BTreeMap<String, String>,
    ) -> Result<Vec<(String, Option<WorkspaceLink>)>, ReconcileError> {
        let existing = self.store.workspace_links()?;
        let existing_ws: BTreeSet<String> = actual
            .workspaces
            .iter()
            .map(|w| w.name.to_lowercase())
            .chain(created.keys().cloned())
            .collect();
        Ok(desired
            .managed_workspaces
            .iter()
            .map(|name| name.to_lowercase())
            .filter(|name| existing_ws.contains(name) && !existing.contains_key(name))
            .map(|name| (name, Some(WorkspaceLink::default())))
            .collect())
    }

    /// People's ledger entries not recorded yet: desired users that exist in the control plane.
    fn links_for(
        &self,
        desired: &DesiredState,
        actual: &ActualState,
    ) -> Vec<(String, Option<Link>)> {
        let wanted: BTreeSet<String> = actual
            .invites
            .iter()
            .map(|i| i.email.to_lowercase())
            .chain(actual.users.iter().map(|u| u.email.to_lowercase()))
            .filter(|e| desired.users.contains_key(e))
            .collect();
        let Ok(existing) = self.store.links_of(wanted.iter().map(String::as_str)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for inv in &actual.invites {
            let email = inv.email.to_lowercase();
            let Some(d) = desired.users.get(&email) else {
                continue;
            };
            let have = existing.get(&email);
            if have.is_none_or(|l| l.scim_id.is_none() || l.invite_id.is_none()) {
                out.push((
                    email,
                    Some(Link {
                        scim_id: Some(d.scim_id.clone()),
                        invite_id: Some(inv.id.clone()),
                        portkey_user_id: have.and_then(|l| l.portkey_user_id.clone()),
                        updated: String::new(),
                    }),
                ));
            }
        }
        for u in &actual.users {
            let email = u.email.to_lowercase();
            if let Some(d) = desired.users.get(&email) {
                let have = existing.get(&email);
                if have.and_then(|l| l.portkey_user_id.as_deref()) != Some(u.id.as_str())
                    || have.and_then(|l| l.scim_id.as_deref()) != Some(d.scim_id.as_str())
                {
                    out.push((
                        email,
                        Some(Link {
                            scim_id: Some(d.scim_id.clone()),
                            portkey_user_id: Some(u.id.clone()),
                            invite_id: have.and_then(|l| l.invite_id.clone()),
                            updated: String::new(),
                        }),
                    ));
                }
            }
        }
        out
    }

    fn workspace_ref(
        name: &str,
        id: Option<&String>,
        created: &BTreeMap<String, String>,
    ) -> Option<String> {
        id.cloned()
            .or_else(|| created.get(&name.to_lowercase()).cloned())
    }

    /// Applies one op: its outcome, the workspace it created (lower-cased name, id), and the
    /// link changes it implies.
    async fn apply(
        &self,
        op: &Op,
        created: &BTreeMap<String, String>,
    ) -> (
        OpOutcome,
        Option<(String, String)>,
        Vec<(String, Option<Link>)>,
    ) {
        let mut links = Vec::new();
        let mut made = None;
        let outcome = self.apply_inner(op, created, &mut made, &mut links).await;
        (outcome, made, links)
    }

    /// After a removal answered "not found" (404, or 403 AB03, which is also the answer for a
    /// key without the permission): reads again, and only a read that no longer shows the
    /// thing makes it "already gone".
    async fn accepted_before_revoke(&self, email: &str, evidence: String) -> OpOutcome {
        match self
            .find_user(&email.to_lowercase(), Some(email), None)
            .await
        {
            Ok(None) => OpOutcome::AlreadyDone { evidence },
            Ok(Some(u)) => OpOutcome::AlreadyDone {
                evidence: format!(
                    "{ACCEPTED_BEFORE_REVOKE}: {email} is now control-plane user {}; the next run removes it",
                    u.id
                ),
            },
            // Whether the person now has an account is unknown: not a settled outcome.
            Err(e) => OpOutcome::Failed {
                error: format!(
                    "the invite is gone, but whether it was accepted first could not be read: {e}"
                ),
                status: e.status(),
                code: e.error_code().map(str::to_string),
            },
        }
    }

    async fn confirm_gone(&self, op: &OpKind, err: &portkey::Error) -> OpOutcome {
        let refused = |what: &str| {
            OpOutcome::Failed {
            error: format!(
                "the control plane refused: {err}; {what} is still there (the Admin API key may lack the permission for this call)"
            ),
            status: err.status(),
            code: err.error_code().map(str::to_string),
        }
        };
        let unsure = |e: portkey::Error| OpOutcome::Failed {
            error: format!("{err}; could not confirm it is gone: {e}"),
            status: err.status(),
            code: err.error_code().map(str::to_string),
        };
        let gone = |how: &str| OpOutcome::AlreadyDone {
            evidence: format!("already gone: {err}, confirmed by {how}"),
        };
        match op {
            OpKind::RemoveUser { user_id, .. } => match self.client.get_user(user_id).await {
                Ok(_) => refused("the user"),
                Err(e) if e.status() == Some(404) => gone("a read of the user (404)"),
                Err(_) => match self.client.list_users(&UserFilter::default()).await {
                    Ok(all) if all.iter().any(|u| &u.id == user_id) => refused("the user"),
                    Ok(_) => gone("a full read of the user list"),
                    Err(e) => unsure(e),
                },
            },
            OpKind::RevokeInvite { invite_id, .. } => {
                let f = InviteFilter {
                    status: Some(portkey::InviteStatus::Pending),
                    ..InviteFilter::default()
                };
                match self.client.list_invites(&f).await {
                    Ok(all)
                        if all.iter().any(|i| {
                            &i.id == invite_id && i.status == portkey::InviteStatus::Pending
                        }) =>
                    {
                        refused("the invite")
                    }
                    Ok(_) => gone("a read of the pending invites"),
                    Err(e) => unsure(e),
                }
            }
            OpKind::RemoveMember {
                workspace_id,
                user_id,
                ..
            } => match self
                .client
                .list_members(workspace_id, &MemberFilter::default())
                .await
            {
                Ok(all) if all.iter().any(|m| &m.id == user_id) => refused("the membership"),
                Ok(_) => gone("a read of the workspace's members"),
                Err(e) => unsure(e),
            },
            _ => OpOutcome::failed(err),
        }
    }

    /// An invite, with the workspaces that exist; an expired invite that blocks it is revoked
    /// first. The link to the new invite is recorded with the outcome.
    async fn apply_invite(
        &self,
        email: &str,
        role: &portkey::OrgRole,
        workspaces: &[super::plan::InviteTarget],
        replaces_expired: Option<&String>,
        created: &BTreeMap<String, String>,
        links: &mut Vec<(String, Option<Link>)>,
    ) -> OpOutcome {
        // A workspace that could not be created must not keep the person out of the
        // org: the invite goes without it, and the member diff adds it once the
        // workspace exists and the invite is accepted.
        let mut targets = Vec::new();
        let mut left_out = Vec::new();
        for t in workspaces {
            match Self::workspace_ref(&t.workspace, t.workspace_id.as_ref(), created) {
                Some(id) => targets.push(InviteWorkspace {
                    id,
                    role: t.role.clone(),
                }),
                None => left_out.push(t.workspace.clone()),
            }
        }
        let body = CreateInvite {
            email: email.to_string(),
            role: role.clone(),
            workspaces: targets,
            workspace_api_key_details: None,
        };
        let mut result = self.client.create_invite(&body).await;
        if let (Err(e), Some(old)) = (&result, replaces_expired) {
            // The expired invite may still block a new one: revoke it, then retry once.
            if e.is_conflict() {
                if let Err(revoke) = self.client.delete_invite(old).await {
                    tracing::info!(invite = %old, error = %revoke, "revoking the expired invite failed; retrying the invite anyway");
                }
                result = self.client.create_invite(&body).await;
            }
        }
        let note = (!left_out.is_empty()).then(|| {
            format!(
                "without workspace(s) {} that could not be created",
                left_out.join(", ")
            )
        });
        match result {
            Ok(created_invite) => {
                links.push((
                    email.to_lowercase(),
                    Some(Link {
                        scim_id: None,
                        portkey_user_id: None,
                        invite_id: Some(created_invite.id),
                        updated: String::new(),
                    }),
                ));
                OpOutcome::Done { note }
            }
            Err(e) if e.is_conflict() => OpOutcome::AlreadyDone {
                evidence: format!("already invited or a member: {e}"),
            },
            Err(e) => OpOutcome::failed(&e),
        }
    }

    /// Revokes an invite; a 404 is read again before it counts as done, and an invite accepted
    /// meanwhile keeps its link (see [`ACCEPTED_BEFORE_REVOKE`]).
    async fn apply_revoke(
        &self,
        kind: &OpKind,
        invite_id: &str,
        email: &str,
        links: &mut Vec<(String, Option<Link>)>,
    ) -> OpOutcome {
        let r = match self.client.delete_invite(invite_id).await {
            Ok(()) => OpOutcome::done(),
            Err(e) if e.is_not_found() => match self.confirm_gone(kind, &e).await {
                OpOutcome::AlreadyDone { evidence } => {
                    self.accepted_before_revoke(email, evidence).await
                }
                other => other,
            },
            Err(e) => OpOutcome::failed(&e),
        };
        // An invite accepted just before the revoke became an account: the link stays,
        // so the account is still ours to remove (it would otherwise look like someone
        // the daemon never managed, and stay).
        let accepted = matches!(&r, OpOutcome::AlreadyDone { evidence } if evidence.starts_with(ACCEPTED_BEFORE_REVOKE));
        if r.is_ok() && !accepted {
            links.push((email.to_lowercase(), None));
        }
        r
    }

    async fn apply_inner(
        &self,
        op: &Op,
        created: &BTreeMap<String, String>,
        made: &mut Option<(String, String)>,
        links: &mut Vec<(String, Option<Link>)>,
    ) -> OpOutcome {
        let done_if =
            |r: portkey::Result<()>, benign: fn(&portkey::Error) -> bool, evidence: &str| match r {
                Ok(()) => OpOutcome::done(),
                Err(e) if benign(&e) => OpOutcome::AlreadyDone {
                    evidence: format!("{evidence}: {e}"),
                },
                Err(e) => OpOutcome::failed(&e),
            };
        let no_workspace = |name: &str| OpOutcome::Failed {
            error: format!(
                "workspace '{name}' does not exist (its creation failed or is disabled)"
            ),
            status: None,
            code: None,
        };
        match &op.kind {
            OpKind::CreateWorkspace { name } => {
                match self
                    .client
                    .create_workspace(&CreateWorkspace {
                        name: name.clone(),
                        description: Some("Managed by scim-sync".into()),
                    })
                    .await
                {
                    Ok(ws) => {
                        *made = Some((name.to_lowercase(), ws.id.clone()));
                        OpOutcome::done()
                    }
                    Err(e) => OpOutcome::failed(&e),
                }
            }
            OpKind::Invite {
                email,
                role,
                workspaces,
                replaces_expired,
            } => {
                self.apply_invite(
                    email,
                    role,
                    workspaces,
                    replaces_expired.as_ref(),
                    created,
                    links,
                )
                .await
            }
            OpKind::UpdateOrgRole { user_id, to, .. } => done_if(
                self.client.update_user_role(user_id, to).await,
                |_| false,
                "",
            ),
            OpKind::AddMembers {
                workspace,
                workspace_id,
                members,
            } => {
                let Some(id) = Self::workspace_ref(workspace, workspace_id.as_ref(), created)
                else {
                    return no_workspace(workspace);
                };
                let users: Vec<NewMember> = members
                    .iter()
                    .map(|m| NewMember {
                        id: m.user_id.clone(),
                        role: m.role.clone(),
                    })
                    .collect();
                done_if(
                    self.client.add_members(&id, &users).await,
                    portkey::Error::is_conflict,
                    "already members",
                )
            }
            OpKind::UpdateMemberRole {
                workspace_id,
                user_id,
                to,
                ..
            } => done_if(
                self.client
                    .update_member_role(workspace_id, user_id, to)
                    .await,
                |_| false,
                "",
            ),
            OpKind::RemoveMember {
                workspace_id,
                user_id,
                ..
            } => match self.client.remove_member(workspace_id, user_id).await {
                Ok(()) => OpOutcome::done(),
                Err(e) if e.is_not_found() => self.confirm_gone(&op.kind, &e).await,
                Err(e) => OpOutcome::failed(&e),
            },
            OpKind::RevokeInvite { invite_id, email } => {
                self.apply_revoke(&op.kind, invite_id, email, links).await
            }
            OpKind::RemoveUser { user_id, email } => {
                let r = match self.client.delete_user(user_id).await {
                    Ok(()) => OpOutcome::done(),
                    Err(e) if e.is_not_found() => self.confirm_gone(&op.kind, &e).await,
                    Err(e) => OpOutcome::failed(&e),
                };
                if r.is_ok() {
                    links.push((email.to_lowercase(), None));
                }
                r
            }
        }
    }
}

/// Whom a run observes and plans for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everyone: a full run, which also repairs drift.
    Everyone,
    /// These people (lower-cased emails), comparing member rows only in the `focus`
    /// workspaces (lower-cased names; `None` for all of theirs).
    People {
        emails: BTreeSet<String>,
        focus: Option<BTreeSet<String>>,
    },
}

/// What a change-driven run looks at.
struct ChangeScope {
    emails: BTreeSet<String>,
    /// Lower-cased workspaces whose member rows are compared; `None` for all of them.
    focus: Option<BTreeSet<String>>,
    /// The change-feed position it covers.
    covers: u64,
}

/// What [`Reconciler::record_op`] needs from the run.
struct RecordCtx<'a> {
    run_id: &'a str,
    /// Keys of held ops an operator approved.
    approved: &'a BTreeSet<String>,
    failing: &'a BTreeMap<String, FailingOp>,
    desired: &'a DesiredState,
    now: i64,
}

impl Runner for Reconciler {
    type Summary = RunSummary;
    fn run(&self, run_id: String, kind: RunKind, trigger: Trigger) -> BoxFuture<'_, RunSummary> {
        Box::pin(self.run_once(run_id, kind, trigger))
    }

    fn succeeded(summary: &RunSummary) -> bool {
        summary.ok
    }
}

/// The workspaces a targeted run looks at: where these people should be, and managed ones
/// (now or before) where they are now. `desired` keeps only those as managed. Returns their
/// lower-cased names.
fn narrow_workspaces(
    desired: &mut DesiredState,
    actual: &ActualState,
    managed_lower: &BTreeSet<String>,
    wanted_names: BTreeSet<String>,
) -> BTreeSet<String> {
    let find_ws = |wid: &str| {
        actual
            .workspaces
            .iter()
            .find(|w| w.id == wid || w.slug.as_deref() == Some(wid))
    };
    let mut relevant: BTreeSet<String> = wanted_names;
    for u in &actual.users {
        if !desired.users.contains_key(&u.email.to_lowercase()) {
            continue;
        }
        for wid in u.workspace_ids.iter().flatten() {
            if let Some(w) = find_ws(wid) {
                if managed_lower.contains(&w.name.to_lowercase()) {
                    relevant.insert(w.name.clone());
                }
            }
        }
    }
    let relevant_lower: BTreeSet<String> = relevant.iter().map(|w| w.to_lowercase()).collect();
    desired
        .managed_workspaces
        .retain(|w| relevant_lower.contains(&w.to_lowercase()));
    for name in &relevant {
        if !desired
            .managed_workspaces
            .iter()
            .any(|w| w.eq_ignore_ascii_case(name))
        {
            desired.managed_workspaces.insert(name.clone());
        }
    }
    relevant_lower
}

/// A dry run holds nothing, releases nothing and uses no approval: every op the fuse lets
/// through is reported as what would have been done.
fn dry_run_results(view: &PlanView) -> Vec<OpResult> {
    view.fuse
        .allowed
        .iter()
        .filter(|op| !view.fuse.approved.contains(op))
        .cloned()
        .map(|op| OpResult {
            op,
            result: "dry-run".into(),
            outcome: None,
        })
        .collect()
}

/// An op as JSON for the store (held, failing, audit). Ops are strings and numbers, so this
/// always serialises; the Debug text is the fallback, so a record never loses the op entirely.
fn op_json<T: serde::Serialize + std::fmt::Debug>(op: &T) -> serde_json::Value {
    serde_json::to_value(op).unwrap_or_else(|_| serde_json::Value::String(format!("{op:?}")))
}

#[cfg(test)]
mod tests {
    //! The apply path, one op at a time, against the simulator over HTTP: what each answer of
    //! the control plane becomes (done, already done, failed) and which ledger changes go with it.

    use super::*;
    use crate::config::{Config, ENV_ADMIN_TOKEN, ENV_PORTKEY_API_KEY, ENV_SCIM_TOKEN};
    use crate::portkey::OrgRole;
    use crate::store::StoreOptions;
    use portkey_sim::{Seed, SeedInvite, SeedUser, SeedWorkspace, SimOptions, SimServer};
    use std::collections::HashMap;

    #[test]
    fn progress_is_logged_every_500_ops_with_the_time_left_at_the_rate_limit() {
        assert_eq!(progress_eta(0, 10_000, 20.0), None);
        assert_eq!(progress_eta(499, 10_000, 20.0), None);
        // 9,500 ops left at 20 a second.
        assert_eq!(progress_eta(500, 10_000, 20.0), Some(475));
        assert_eq!(progress_eta(1_000, 1_000, 20.0), Some(0));
        assert_eq!(progress_eta(500, 600, 0.0), Some(100_000));
        assert_eq!(progress_eta(500, 600, f64::NAN), Some(100_000));
    }

    #[test]
    fn a_kept_run_is_bounded_whatever_its_size() {
        let lines: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        let s = RunSummary {
            errors: lines.clone(),
            warnings: lines,
            ..RunSummary::sample()
        };
        let b = s.brief();
        assert_eq!((b.errors.len(), b.warnings.len()), (20, 20));
        assert!(b.results.is_empty() && b.scope.is_none());
        assert_eq!((b.run_id.as_str(), b.applied), ("r1", 1));
    }

    struct Fixture {
        rec: Reconciler,
        sim: SimServer,
        _dir: tempfile::TempDir,
    }

    async fn fixture(seed: Seed) -> Fixture {
        let sim = portkey_sim::spawn(
            "127.0.0.1:0".parse().unwrap(),
            SimOptions {
                seed: Some(seed),
                ..SimOptions::default()
            },
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[store]\npath = \"{}\"\n[portkey]\nbase_url = \"{}\"\nretry_give_up_secs = 1\n\
             retry_initial_ms = 20\n",
            dir.path().join("store.redb").display(),
            sim.base_url()
        );
        let env: HashMap<String, String> = [
            (ENV_SCIM_TOKEN, "scim-token-0123456789"),
            (ENV_ADMIN_TOKEN, "admin-token-0123456789"),
            (ENV_PORTKEY_API_KEY, "sim-key"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = Config::from_toml(&text, &dir.path().join("c.toml"), &env).unwrap();
        let store = Store::open(&config.store.path, StoreOptions::default()).unwrap();
        let rec = Reconciler::new(store, &config.portkey, config.sync.clone(), Vec::new()).unwrap();
        Fixture {
            rec,
            sim,
            _dir: dir,
        }
    }

    fn user(email: &str, role: &str) -> SeedUser {
        SeedUser {
            email: email.into(),
            role: role.into(),
            ..SeedUser::default()
        }
    }

    fn invite(email: &str) -> Op {
        Op::new(
            OpKind::Invite {
                email: email.into(),
                role: OrgRole::Member,
                workspaces: Vec::new(),
                replaces_expired: None,
            },
            "test",
        )
    }

    #[tokio::test]
    async fn an_invite_is_done_and_links_the_invite_it_created() {
        let f = fixture(Seed {
            users: vec![user("owner@example.com", "owner")],
            ..Seed::default()
        })
        .await;
        let (outcome, made, links) = f
            .rec
            .apply(&invite("New@Example.com"), &BTreeMap::new())
            .await;
        assert!(
            matches!(outcome, OpOutcome::Done { note: None }),
            "{outcome:?}"
        );
        assert!(made.is_none());
        assert_eq!(links.len(), 1, "{links:?}");
        let (email, link) = &links[0];
        assert_eq!(email, "new@example.com");
        assert!(link.as_ref().and_then(|l| l.invite_id.as_ref()).is_some());
        drop(f.sim);
    }

    #[tokio::test]
    async fn an_invite_of_someone_already_invited_is_already_done_and_links_nothing() {
        let f = fixture(Seed {
            users: vec![user("owner@example.com", "owner")],
            invites: vec![SeedInvite {
                email: "pending@example.com".into(),
                role: "member".into(),
                ..SeedInvite::default()
            }],
            ..Seed::default()
        })
        .await;
        let (outcome, _, links) = f
            .rec
            .apply(&invite("pending@example.com"), &BTreeMap::new())
            .await;
        assert!(
            matches!(&outcome, OpOutcome::AlreadyDone { evidence } if evidence.starts_with("already invited")),
            "{outcome:?}"
        );
        assert!(links.is_empty(), "{links:?}");
    }

    #[tokio::test]
    async fn a_revoke_of_an_invite_that_is_gone_is_confirmed_by_a_read_and_unlinks() {
        let f = fixture(Seed {
            users: vec![user("owner@example.com", "owner")],
            ..Seed::default()
        })
        .await;
        let op = Op::new(
            OpKind::RevokeInvite {
                invite_id: "00000000-0000-0000-0000-000000000001".into(),
                email: "Gone@example.com".into(),
            },
            "test",
        );
        let (outcome, _, links) = f.rec.apply(&op, &BTreeMap::new()).await;
        assert!(
            matches!(outcome, OpOutcome::AlreadyDone { .. }),
            "{outcome:?}"
        );
        assert_eq!(links, vec![("gone@example.com".to_string(), None)]);
    }

    #[tokio::test]
    async fn members_of_a_workspace_that_does_not_exist_fail_without_a_call() {
        let f = fixture(Seed {
            users: vec![user("owner@example.com", "owner")],
            ..Seed::default()
        })
        .await;
        let op = Op::new(
            OpKind::AddMembers {
                workspace: "Missing".into(),
                workspace_id: None,
                members: Vec::new(),
            },
            "test",
        );
        let (outcome, _, links) = f.rec.apply(&op, &BTreeMap::new()).await;
        assert!(
            matches!(&outcome, OpOutcome::Failed { error, .. } if error.contains("'Missing' does not exist")),
            "{outcome:?}"
        );
        assert!(links.is_empty());
    }

    #[tokio::test]
    async fn a_created_workspace_is_reported_by_its_lower_cased_name_and_id() {
        let f = fixture(Seed {
            users: vec![user("owner@example.com", "owner")],
            workspaces: vec![SeedWorkspace {
                name: "Existing".into(),
                ..SeedWorkspace::default()
            }],
            ..Seed::default()
        })
        .await;
        let op = Op::new(
            OpKind::CreateWorkspace {
                name: "Research".into(),
            },
            "test",
        );
        let (outcome, made, _) = f.rec.apply(&op, &BTreeMap::new()).await;
        assert!(matches!(outcome, OpOutcome::Done { .. }), "{outcome:?}");
        let (name, id) = made.unwrap();
        assert_eq!(name, "research");
        assert!(!id.is_empty());
    }
}
