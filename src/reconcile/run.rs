//! One reconciliation run with I/O: read the SCIM state from the store and the actual state from
//! the control plane, plan, hold what the fuse holds, apply the rest in phase order, and record
//! every applied op in the audit log and every link in the ledger.
//!
//! A run is level-triggered: it recomputes everything from live state, so a crash or a failed op
//! at any point is repaired by the next run, and nothing is applied twice.

use super::plan::{apply_fuse, diff, ActualState, MemberList, Op, OpKind, Plan, PlanOptions};
use crate::config::{GroupMapping, PortkeyConfig, SyncConfig};
use crate::policy::{self, DesiredState};
use crate::portkey::{
    self, Client, ClientConfig, CreateInvite, CreateWorkspace, InviteFilter, InviteWorkspace,
    MemberFilter, NewMember, RetryConfig, UserFilter, WorkspaceFilter,
};
use crate::scheduler::{BoxFuture, RunKind, Runner, Trigger};
use crate::scim::schema::ResourceKind;
use crate::store::{now_rfc3339, AuditEntry, Link, Query, Store};
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

/// The outcome of one op.
#[derive(Debug, Clone, Serialize)]
pub struct OpResult {
    #[serde(flatten)]
    pub op: Op,
    pub result: String,
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

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcilerStatus {
    pub running: Option<String>,
    pub progress: Progress,
    pub last_run: Option<RunSummary>,
    pub last_successful_run_at: Option<String>,
    pub last_successful_full_run_at: Option<String>,
    pub control_plane: ControlPlaneStatus,
    /// Destructive ops held by the fuse; `POST /admin/approve-deletions` releases them.
    pub held: Vec<Op>,
    pub held_reason: Option<String>,
}

pub struct Reconciler {
    store: Store,
    client: Client,
    sync: SyncConfig,
    mappings: Vec<GroupMapping>,
    status: Mutex<ReconcilerStatus>,
    /// Destructive ops an operator approved: applied by the next run if still planned.
    approved: Mutex<BTreeSet<String>>,
}

/// Ledger keys of workspaces the daemon has managed (emails never start with this).
const WORKSPACE_LINK: &str = "workspace:";

fn op_key(op: &Op) -> String {
    serde_json::to_string(&op.kind).unwrap_or_default()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a plan computation produced, for `/admin/plan` and for a run.
#[derive(Debug, Clone, Serialize)]
pub struct PlanView {
    pub plan: Plan,
    /// What the plan was computed from; not part of the `/admin/plan` document.
    #[serde(skip)]
    pub desired: DesiredState,
    /// Destructive ops the fuse would hold.
    pub held: Vec<Op>,
    pub held_reason: Option<String>,
    pub read_errors: Vec<String>,
}

impl Reconciler {
    pub fn new(
        store: Store,
        portkey: &PortkeyConfig,
        sync: SyncConfig,
        mappings: Vec<GroupMapping>,
    ) -> Result<Self, ReconcileError> {
        Ok(Self {
            store,
            client: Client::new(client_config(portkey))?,
            sync,
            mappings,
            status: Mutex::new(ReconcilerStatus::default()),
            approved: Mutex::new(BTreeSet::new()),
        })
    }

    pub fn status(&self) -> ReconcilerStatus {
        lock(&self.status).clone()
    }

    /// Approves the destructive ops currently held; the next run applies those still planned.
    pub fn approve_held(&self) -> usize {
        let held = lock(&self.status).held.clone();
        let mut approved = lock(&self.approved);
        approved.clear();
        approved.extend(held.iter().map(op_key));
        approved.len()
    }

    /// The desired state, read on a blocking thread: it scans every SCIM user and group.
    pub async fn desired_async(&self) -> Result<DesiredState, ReconcileError> {
        let (store, sync, mappings) =
            (self.store.clone(), self.sync.clone(), self.mappings.clone());
        tokio::task::spawn_blocking(move || desired_from(&store, &sync, &mappings))
            .await
            .map_err(|e| {
                ReconcileError::Store(crate::store::StoreError::BatchFailed(e.to_string()))
            })?
    }

    /// The desired state from the store.
    pub fn desired(&self) -> Result<DesiredState, ReconcileError> {
        desired_from(&self.store, &self.sync, &self.mappings)
    }
}

fn desired_from(
    store: &Store,
    sync: &SyncConfig,
    mappings: &[GroupMapping],
) -> Result<DesiredState, ReconcileError> {
    let all = |with_refs| Query {
        filter: None,
        start_index: 1,
        count: usize::MAX,
        with_refs,
    };
    let users = store.query(ResourceKind::User, &all(false))?;
    let groups = store.query(ResourceKind::Group, &all(true))?;
    let users: Vec<_> = users
        .items
        .iter()
        .map(|r| super::scim_user(&r.record))
        .collect();
    let groups: Vec<_> = groups
        .items
        .iter()
        .map(|r| {
            let ids = r.refs.iter().flatten().map(|(id, _)| id.clone());
            super::scim_group(&r.record, ids)
        })
        .collect();
    Ok(policy::desired_state(&users, &groups, sync, mappings))
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

    /// Computes what a run would do now, without changing anything.
    pub async fn plan(&self) -> Result<(PlanView, ActualState), ReconcileError> {
        let mut desired = self.desired_async().await?;
        let links = self.store.links()?;
        // Workspaces managed before stay managed while they exist, so that renaming or deleting
        // a group removes the memberships it granted. They are never created again.
        let former: BTreeSet<String> = links
            .keys()
            .filter_map(|k| k.strip_prefix(WORKSPACE_LINK))
            .map(str::to_string)
            .collect();
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
        for f in &former {
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
        let linked: BTreeSet<String> = links
            .into_keys()
            .filter(|k| !k.starts_with(WORKSPACE_LINK))
            .collect();
        Ok(self.finish_plan(desired, actual, read_errors, linked, None))
    }

    fn finish_plan(
        &self,
        desired: DesiredState,
        actual: ActualState,
        read_errors: Vec<String>,
        linked: BTreeSet<String>,
        fuse_denominator: Option<usize>,
    ) -> (PlanView, ActualState) {
        let opts = PlanOptions::new(
            &self.sync.protected_emails,
            linked,
            self.sync.create_workspaces,
            time::OffsetDateTime::now_utc(),
        );
        let plan = diff(&desired, &actual, &opts);
        let fuse = apply_fuse(
            &plan,
            self.sync.max_deletions,
            self.sync.max_deletion_percent,
            plan.managed_users.max(fuse_denominator.unwrap_or(0)),
        );
        (
            PlanView {
                held: fuse.held,
                held_reason: fuse.reason,
                plan,
                read_errors,
                desired,
            },
            actual,
        )
    }

    /// The emails a change-driven run is about (every email a changed SCIM user has or had, by
    /// the ledger) and the feed position it covers; `None` when the changes are too many for a
    /// targeted run to be cheaper than a full one.
    fn affected(&self, cursor: u64) -> Result<Option<(BTreeSet<String>, u64)>, ReconcileError> {
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
        let links = self.store.links()?;
        let mut emails = BTreeSet::new();
        for id in &ids {
            if let Some(r) = self.store.get(ResourceKind::User, id, false)? {
                if let Some(e) = policy::user_email(&r.record.data) {
                    emails.insert(e.to_lowercase());
                }
            }
            // A changed userName or email: the old address is in the ledger.
            emails.extend(
                links
                    .iter()
                    .filter(|(_, l)| l.scim_id.as_deref() == Some(id.as_str()))
                    .map(|(e, _)| e.clone()),
            );
        }
        Ok(Some((emails, last)))
    }

    /// Plans for a few people only, reading only them at the control plane. Every read is
    /// filtered again here by email and user id, so that a server ignoring a filter parameter
    /// can never put someone else's row in front of the diff (which would read as "remove").
    pub async fn plan_for(
        &self,
        emails: &BTreeSet<String>,
    ) -> Result<(PlanView, ActualState), ReconcileError> {
        let mut desired = self.desired_async().await?;
        let links = self.store.links()?;
        let former: BTreeSet<String> = links
            .keys()
            .filter_map(|k| k.strip_prefix(WORKSPACE_LINK))
            .map(str::to_string)
            .collect();
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
        for email in emails {
            let uf = UserFilter {
                email: Some(email.clone()),
                ..UserFilter::default()
            };
            let inf = InviteFilter {
                email: Some(email.clone()),
                status: Some(portkey::InviteStatus::Pending),
                ..InviteFilter::default()
            };
            let (users, invites) =
                tokio::join!(self.client.list_users(&uf), self.client.list_invites(&inf));
            match users {
                Ok(u) => actual.users.extend(
                    u.into_iter()
                        .filter(|u| u.email.eq_ignore_ascii_case(email)),
                ),
                Err(e) => {
                    actual.users_complete = false;
                    errors.push(e.to_string());
                }
            }
            match invites {
                Ok(i) => actual.invites.extend(
                    i.into_iter()
                        .filter(|i| i.email.eq_ignore_ascii_case(email)),
                ),
                Err(e) => {
                    actual.invites_complete = false;
                    errors.push(e.to_string());
                }
            }
        }
        match self
            .client
            .list_workspaces(&WorkspaceFilter::default())
            .await
        {
            Ok(w) => {
                actual.workspaces = w;
                actual.workspaces_complete = true;
            }
            Err(e) => errors.push(e.to_string()),
        }
        // The workspaces that matter: where these people should be, and managed ones where
        // they are now.
        let mut relevant: BTreeSet<String> = desired
            .users
            .values()
            .flat_map(|d| d.workspaces.keys().cloned())
            .collect();
        for u in &actual.users {
            for wid in &u.workspace_ids {
                if let Some(w) = actual
                    .workspaces
                    .iter()
                    .find(|w| &w.id == wid || w.slug.as_deref() == Some(wid.as_str()))
                {
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
        let user_ids: BTreeSet<String> = actual.users.iter().map(|u| u.id.clone()).collect();
        let ws_ids: Vec<String> = actual
            .workspaces
            .iter()
            .filter(|w| relevant_lower.contains(&w.name.to_lowercase()))
            .map(|w| w.id.clone())
            .collect();
        for ws in ws_ids {
            let mut list = MemberList {
                members: Vec::new(),
                complete: true,
            };
            for u in &actual.users {
                let mf = MemberFilter {
                    email: Some(u.email.clone()),
                    ..MemberFilter::default()
                };
                match self.client.list_members(&ws, &mf).await {
                    Ok(ms) => list
                        .members
                        .extend(ms.into_iter().filter(|m| user_ids.contains(&m.id))),
                    Err(e) => {
                        list.complete = false;
                        errors.push(e.to_string());
                    }
                }
            }
            actual.members.insert(ws, list);
        }
        let linked: BTreeSet<String> = links
            .keys()
            .filter(|k| !k.starts_with(WORKSPACE_LINK) && emails.contains(*k))
            .cloned()
            .collect();
        // The fuse's percentage is of everyone the daemon manages, not of this handful.
        let managed = links
            .keys()
            .filter(|k| !k.starts_with(WORKSPACE_LINK))
            .count();
        Ok(self.finish_plan(desired, actual, errors, linked, Some(managed)))
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
            ok: false,
            errors: Vec::new(),
            warnings: Vec::new(),
            results: Vec::new(),
            scope: None,
        };
        // The feed position this run covers is taken before anything is read, so a SCIM write
        // that lands during the run is handled by the next one.
        let cursor = self.store.reconcile_cursor().unwrap_or(0);
        let mut covers = self.store.last_seq().unwrap_or(0);
        let planned = match kind {
            RunKind::Full => self.plan().await,
            RunKind::Changes => match self.affected(cursor) {
                Ok(Some((emails, last))) => {
                    covers = last;
                    summary.scope = Some(emails.iter().cloned().collect());
                    self.plan_for(&emails).await
                }
                Ok(None) => self.plan().await,
                Err(e) => Err(e),
            },
        };
        match planned {
            Err(e) => summary.errors.push(e.to_string()),
            Ok((view, actual)) => self.execute(&run_id, view, &actual, &mut summary).await,
        }
        summary.ok = summary.errors.is_empty() && summary.failed == 0;
        if summary.ok && !summary.dry_run && covers > cursor {
            if let Err(e) = self.store.set_reconcile_cursor(covers).await {
                summary.errors.push(format!("reconcile cursor: {e}"));
                summary.ok = false;
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
        m.held_deletions.set(summary.held as i64);
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
        st.last_run = Some(summary.clone());
        tracing::info!(
            run = %summary.run_id,
            kind = ?summary.kind,
            trigger = ?summary.trigger,
            ok = summary.ok,
            applied = summary.applied,
            failed = summary.failed,
            held = summary.held,
            withheld = summary.withheld,
            ms = summary.duration_ms,
            "reconcile run finished"
        );
        summary
    }

    async fn execute(
        &self,
        run_id: &str,
        view: PlanView,
        actual: &ActualState,
        s: &mut RunSummary,
    ) {
        let PlanView {
            plan,
            held,
            held_reason,
            read_errors,
            desired,
        } = view;
        {
            let mut st = lock(&self.status);
            if read_errors.is_empty() {
                st.control_plane.ok = Some(true);
                st.control_plane.last_ok_at = Some(now_rfc3339());
                st.control_plane.last_error = None;
            } else {
                st.control_plane.ok = Some(false);
                st.control_plane.last_error = read_errors.first().cloned();
            }
        }
        s.errors.extend(read_errors);
        s.planned = plan.summary();
        s.warnings = plan.warnings.clone();
        s.withheld = plan.withheld.as_ref().map(|w| w.dropped).unwrap_or(0);

        // Approved held ops pass the fuse once (they are still in `plan.ops`); everything else
        // the fuse held stays held.
        let approved = std::mem::take(&mut *lock(&self.approved));
        let still_held: Vec<Op> = held
            .into_iter()
            .filter(|op| !approved.contains(&op_key(op)))
            .collect();
        let held_keys: BTreeSet<String> = still_held.iter().map(op_key).collect();
        s.held = still_held.len();
        {
            let mut st = lock(&self.status);
            st.held = still_held.clone();
            st.held_reason = if still_held.is_empty() {
                None
            } else {
                held_reason
            };
        }
        let to_apply: Vec<Op> = plan
            .ops
            .iter()
            .filter(|op| !held_keys.contains(&op_key(op)))
            .cloned()
            .collect();
        if self.sync.dry_run {
            s.results = to_apply
                .into_iter()
                .map(|op| OpResult {
                    op,
                    result: "dry-run".into(),
                })
                .collect();
            return;
        }

        lock(&self.status).progress = Progress {
            done: 0,
            total: to_apply.len(),
        };
        let m = crate::metrics::metrics();
        m.reconcile_progress_total.set(to_apply.len() as i64);
        m.reconcile_progress_done.set(0);
        for op in &still_held {
            m.reconcile_ops
                .get_or_create(&crate::metrics::OpLabels {
                    op: op.kind.name().into(),
                    result: "held".into(),
                })
                .inc();
        }
        let mut created: BTreeMap<String, String> = BTreeMap::new();
        // Everyone about to be invited is linked before the first invite is sent, in one
        // transaction: a crash mid-run must not leave an invite the daemon does not know it
        // owns (it could then never revoke it).
        let existing = self.store.links().unwrap_or_default();
        let intents: Vec<(String, Option<Link>)> = to_apply
            .iter()
            .filter_map(|op| match &op.kind {
                OpKind::Invite { email, .. } => Some(email.to_lowercase()),
                _ => None,
            })
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
                s.errors
                    .push(format!("link ledger: {e}; no invite sent this run"));
                return;
            }
        }
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
                    self.record_op(run_id, op, result, links, s, &mut pending_writes, &mut done);
                }
            } else {
                let created = &created;
                let mut running = futures::stream::iter(group.into_iter().map(|op| async move {
                    let out = self.apply(&op, created).await;
                    (op, out)
                }))
                .buffer_unordered(concurrency);
                while let Some((op, (result, _, links))) = running.next().await {
                    self.record_op(run_id, op, result, links, s, &mut pending_writes, &mut done);
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
        let more = self.links_for(&desired, actual, &created);
        if !more.is_empty() {
            if let Err(e) = self.store.set_links(more).await {
                s.errors.push(format!("link ledger: {e}"));
            }
        }
    }

    /// Counts, logs and records one applied op; its audit entry and link changes go to the
    /// store without waiting (the writer groups them into one commit).
    #[allow(clippy::too_many_arguments)]
    fn record_op(
        &self,
        run_id: &str,
        op: Op,
        result: Result<String, String>,
        link_changes: Vec<(String, Option<Link>)>,
        s: &mut RunSummary,
        pending_writes: &mut Vec<tokio::task::JoinHandle<Result<(), crate::store::StoreError>>>,
        done: &mut usize,
    ) {
        let m = crate::metrics::metrics();
        m.reconcile_ops
            .get_or_create(&crate::metrics::OpLabels {
                op: op.kind.name().into(),
                result: if result.is_ok() { "ok" } else { "failed" }.into(),
            })
            .inc();
        let text = match &result {
            Ok(note) => {
                s.applied += 1;
                note.clone()
            }
            Err(e) => {
                s.failed += 1;
                tracing::warn!(op = op.kind.name(), error = %e, "reconcile op failed");
                format!("failed: {e}")
            }
        };
        let entry = AuditEntry {
            seq: 0,
            at: String::new(),
            run_id: run_id.to_string(),
            op: serde_json::to_value(&op.kind).unwrap_or_default(),
            reason: op.reason.clone(),
            result: text.clone(),
        };
        let store = self.store.clone();
        pending_writes.push(tokio::spawn(async move {
            store.append_audit(vec![entry]).await.map(|_| ())?;
            if !link_changes.is_empty() {
                store.set_links(link_changes).await?;
            }
            Ok::<(), crate::store::StoreError>(())
        }));
        s.results.push(OpResult { op, result: text });
        *done += 1;
        lock(&self.status).progress.done = *done;
        m.reconcile_progress_done.set(*done as i64);
        // Progress of long runs in the log, without a line per op.
        if *done % 500 == 0 {
            tracing::info!(run = %run_id, done = *done, "reconcile progress");
        }
    }

    /// Ledger entries not recorded yet: desired users that exist in the control plane, and managed
    /// workspaces that exist.
    fn links_for(
        &self,
        desired: &DesiredState,
        actual: &ActualState,
        created: &BTreeMap<String, String>,
    ) -> Vec<(String, Option<Link>)> {
        let Ok(existing) = self.store.links() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let existing_ws: BTreeSet<String> = actual
            .workspaces
            .iter()
            .map(|w| w.name.to_lowercase())
            .chain(created.keys().cloned())
            .collect();
        for name in &desired.managed_workspaces {
            let key = format!("{WORKSPACE_LINK}{}", name.to_lowercase());
            if existing_ws.contains(&name.to_lowercase()) && !existing.contains_key(&key) {
                out.push((
                    key,
                    Some(Link {
                        updated: String::new(),
                        ..Link::default()
                    }),
                ));
            }
        }
        for inv in &actual.invites {
            let email = inv.email.to_lowercase();
            if let (Some(d), false) = (desired.users.get(&email), existing.contains_key(&email)) {
                out.push((
                    email,
                    Some(Link {
                        scim_id: Some(d.scim_id.clone()),
                        invite_id: Some(inv.id.clone()),
                        ..Link::default()
                    }),
                ));
            }
        }
        for u in &actual.users {
            let email = u.email.to_lowercase();
            if let Some(d) = desired.users.get(&email) {
                let have = existing.get(&email);
                if have.and_then(|l| l.portkey_user_id.as_deref()) != Some(u.id.as_str()) {
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
    ) -> Result<String, String> {
        id.cloned()
            .or_else(|| created.get(&name.to_lowercase()).cloned())
            .ok_or_else(|| {
                format!("workspace '{name}' does not exist (its creation failed or is disabled)")
            })
    }

    /// Applies one op. `Ok` carries what happened ("ok", or why a repeat counts as done).
    /// Applies one op: what happened ("ok", or why a repeat counts as done), the workspace it
    /// created (lower-cased name, id), and the link changes it implies.
    async fn apply(
        &self,
        op: &Op,
        created: &BTreeMap<String, String>,
    ) -> (
        Result<String, String>,
        Option<(String, String)>,
        Vec<(String, Option<Link>)>,
    ) {
        let mut links = Vec::new();
        let mut made = None;
        let result = self.apply_inner(op, created, &mut made, &mut links).await;
        (result, made, links)
    }

    async fn apply_inner(
        &self,
        op: &Op,
        created: &BTreeMap<String, String>,
        made: &mut Option<(String, String)>,
        links: &mut Vec<(String, Option<Link>)>,
    ) -> Result<String, String> {
        let done_if =
            |r: portkey::Result<()>, benign: fn(&portkey::Error) -> bool, note: &str| match r {
                Ok(()) => Ok("ok".to_string()),
                Err(e) if benign(&e) => Ok(format!("ok ({note})")),
                Err(e) => Err(e.to_string()),
            };
        match &op.kind {
            OpKind::CreateWorkspace { name } => {
                let ws = self
                    .client
                    .create_workspace(&CreateWorkspace {
                        name: name.clone(),
                        description: Some("Managed by scim-sync".into()),
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                *made = Some((name.to_lowercase(), ws.id.clone()));
                Ok("ok".into())
            }
            OpKind::Invite {
                email,
                role,
                workspaces,
                replaces_expired,
            } => {
                let mut targets = Vec::new();
                for t in workspaces {
                    let id = Self::workspace_ref(&t.workspace, t.workspace_id.as_ref(), created)?;
                    targets.push(InviteWorkspace {
                        id,
                        role: t.role.clone(),
                    });
                }
                let body = CreateInvite {
                    email: email.clone(),
                    role: role.clone(),
                    workspaces: targets,
                    workspace_api_key_details: None,
                };
                let mut result = self.client.create_invite(&body).await;
                if let (Err(e), Some(old)) = (&result, replaces_expired) {
                    // The expired invite may still block a new one: revoke it, then retry once.
                    if e.is_conflict() {
                        let _ = self.client.delete_invite(old).await;
                        result = self.client.create_invite(&body).await;
                    }
                }
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
                        Ok("ok".into())
                    }
                    Err(e) if e.is_conflict() => Ok("ok (already invited or a member)".into()),
                    Err(e) => Err(e.to_string()),
                }
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
                let id = Self::workspace_ref(workspace, workspace_id.as_ref(), created)?;
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
            } => done_if(
                self.client.remove_member(workspace_id, user_id).await,
                portkey::Error::is_not_found,
                "already gone",
            ),
            OpKind::RevokeInvite { invite_id, email } => {
                let r = done_if(
                    self.client.delete_invite(invite_id).await,
                    portkey::Error::is_not_found,
                    "already gone",
                );
                if r.is_ok() {
                    links.push((email.to_lowercase(), None));
                }
                r
            }
            OpKind::RemoveUser { user_id, email } => {
                let r = done_if(
                    self.client.delete_user(user_id).await,
                    portkey::Error::is_not_found,
                    "already gone",
                );
                if r.is_ok() {
                    links.push((email.to_lowercase(), None));
                }
                r
            }
        }
    }
}

impl Runner for Reconciler {
    type Summary = RunSummary;
    fn run(&self, run_id: String, kind: RunKind, trigger: Trigger) -> BoxFuture<'_, RunSummary> {
        Box::pin(self.run_once(run_id, kind, trigger))
    }
}
