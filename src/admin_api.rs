//! The admin API's contract: the JSON documents the admin server answers with and the CLI reads,
//! one type per document, shared by both sides.
//!
//! These are wire types. Field names, and which fields are present, are a stable interface
//! (admins script against them; README and docs/operations.md describe them): add fields, never
//! rename or remove one. They mirror the domain types ([`crate::reconcile`], [`crate::policy`])
//! rather than embed them, so that the CLI can read them back without the domain types having to
//! be deserialisable, and so that a change to a domain type cannot change the contract unseen
//! (the `From` conversions below are where that shows).

use crate::policy::{Conflict, Explanation};
use crate::portkey::{Invite, User};
use crate::reconcile::{Op, OpOutcome, Plan, RunSummary};
use crate::store::{AuditEntry, Degraded};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every failure: `{"error": "..."}`, with the status saying which kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<DegradedDoc>,
}

/// `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    /// `ready` or `not ready`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DegradedDoc {
    pub since: String,
    pub reason: String,
    pub reopen_attempts: u64,
}

impl From<Degraded> for DegradedDoc {
    fn from(d: Degraded) -> Self {
        Self {
            since: d.since,
            reason: d.reason,
            reopen_attempts: d.reopen_attempts,
        }
    }
}

// ---- GET /admin/status -----------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    pub version: String,
    pub uptime_secs: u64,
    pub scim: ScimStatus,
    pub store: StoreStatus,
    pub control_plane: ControlPlaneDoc,
    pub reconciler: ReconcilerDoc,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScimStatus {
    pub ok: bool,
    pub listen: String,
    pub base_path: String,
    pub last_ok_at: String,
}

/// The store's part of the status: counts when it answers, why not when it does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoreStatus {
    Ok {
        /// Always true.
        ok: bool,
        users: u64,
        groups: u64,
        last_change_seq: u64,
        last_ok_at: String,
        write_commits: u64,
        writes: u64,
        /// `[store] write_ahead_log`; with it, the commits the log made durable and the durable
        /// commits that emptied it, since the daemon started.
        #[serde(default)]
        write_ahead_log: bool,
        #[serde(default)]
        logged_commits: u64,
        #[serde(default)]
        checkpoints: u64,
    },
    Failing {
        /// Always false.
        ok: bool,
        degraded: Option<DegradedDoc>,
        error: Option<String>,
    },
}

impl StoreStatus {
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok { ok: true, .. })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlPlaneDoc {
    pub ok: Option<bool>,
    pub last_ok_at: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressDoc {
    pub done: usize,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcilerDoc {
    /// The last run's `ok`; `None` before the first run.
    pub ok: Option<bool>,
    /// The id of the run in progress.
    pub running: Option<String>,
    pub progress: ProgressDoc,
    pub last_successful_run_at: Option<String>,
    pub last_successful_full_run_at: Option<String>,
    pub next_retry_at: Option<String>,
    pub last_run: Option<LastRunDoc>,
    /// The last runs, newest first (at most ten), without per-op results.
    #[serde(default)]
    pub recent_runs: Vec<LastRunDoc>,
    pub held_deletions: Vec<Op>,
    pub held_reason: Option<String>,
    pub held_digest: Option<String>,
    pub approved_waiting: usize,
    pub failing_ops: Vec<FailingDoc>,
    pub store_error: Option<String>,
}

/// A run without its per-op results: the status's last and recent runs, and the head of a
/// [`RunDoc`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRunDoc {
    pub run_id: String,
    pub kind: String,
    pub trigger: String,
    pub ok: bool,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub dry_run: bool,
    pub planned: BTreeMap<String, usize>,
    pub applied: usize,
    pub failed: usize,
    pub held: usize,
    pub withheld: usize,
    pub quarantined: usize,
    pub approved: usize,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl From<&RunSummary> for LastRunDoc {
    fn from(l: &RunSummary) -> Self {
        Self {
            run_id: l.run_id.clone(),
            kind: wire_name(&l.kind),
            trigger: wire_name(&l.trigger),
            ok: l.ok,
            started_at: l.started_at.clone(),
            finished_at: l.finished_at.clone(),
            duration_ms: l.duration_ms,
            dry_run: l.dry_run,
            planned: counts(&l.planned),
            applied: l.applied,
            failed: l.failed,
            held: l.held,
            withheld: l.withheld,
            quarantined: l.quarantined,
            approved: l.approved,
            errors: l.errors.clone(),
            warnings: l.warnings.clone(),
        }
    }
}

/// An op that keeps failing. `op` is the op as it was stored, which an older release may have
/// written in another shape; it is shown, not interpreted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailingDoc {
    pub op: serde_json::Value,
    pub attempts: u32,
    pub first_failed_at: String,
    pub last_failed_at: String,
    pub last_error: String,
    pub next_attempt_at: String,
}

// ---- runs: POST /admin/resync, POST /admin/approve-deletions ---------------------------------

/// A run's summary, with the result of every op: the status's [`LastRunDoc`] and the results,
/// in one JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDoc {
    #[serde(flatten)]
    pub run: LastRunDoc,
    pub results: Vec<OpResultDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpResultDoc {
    #[serde(flatten)]
    pub op: Op,
    /// `ok`, `ok (…)`, `failed: …`, `quarantined: …` or `dry-run`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OpOutcome>,
}

impl OpResultDoc {
    pub fn failed(&self) -> bool {
        self.result.starts_with("failed")
    }
}

impl From<&RunSummary> for RunDoc {
    fn from(s: &RunSummary) -> Self {
        Self {
            run: LastRunDoc::from(s),
            results: s
                .results
                .iter()
                .map(|r| OpResultDoc {
                    op: r.op.clone(),
                    result: r.result.clone(),
                    outcome: r.outcome.clone(),
                })
                .collect(),
            scope: s.scope.clone(),
        }
    }
}

/// `POST /admin/resync`: 202 with the run id, or (`?wait=true`) 200 with its summary too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResyncDoc {
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<RunDoc>,
}

/// `POST /admin/approve-deletions`, 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ApprovalDoc {
    /// The held set was approved and a run applied it; `summary` is `null` when the reconciler
    /// stopped before the run finished.
    Applied {
        approved: usize,
        run_id: String,
        summary: Option<Box<RunDoc>>,
    },
    /// Nothing was held (`approved` is 0).
    NothingHeld { approved: usize, detail: String },
}

/// `POST /admin/approve-deletions` refused: 400 without a digest, 409 when the held set changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRefused {
    pub error: String,
    pub held_digest: Option<String>,
    pub held: usize,
}

// ---- GET /admin/plan -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDoc {
    /// Op counts per kind, plus `destructive` and `total`.
    pub summary: BTreeMap<String, usize>,
    /// Always true: computing a plan changes nothing.
    pub dry_run_only: bool,
    pub plan: PlanBody,
    pub held_by_fuse: Vec<Op>,
    pub held_reason: Option<String>,
    pub held_digest: Option<String>,
    pub read_errors: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanBody {
    pub ops: Vec<Op>,
    pub withheld: Option<WithheldDoc>,
    pub conflicts: Vec<ConflictDoc>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    pub managed_users: usize,
}

impl From<&Plan> for PlanBody {
    fn from(p: &Plan) -> Self {
        Self {
            ops: p.ops.clone(),
            withheld: p.withheld.as_ref().map(|w| WithheldDoc {
                incomplete: w.incomplete.clone(),
                dropped: w.dropped,
                reason: w.reason.clone(),
            }),
            conflicts: p.conflicts.iter().map(ConflictDoc::from).collect(),
            warnings: p.warnings.clone(),
            notes: p.notes.clone(),
            managed_users: p.managed_users,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithheldDoc {
    pub incomplete: Vec<String>,
    pub dropped: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictDoc {
    pub email: String,
    pub workspace: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub chosen: String,
}

impl From<&Conflict> for ConflictDoc {
    fn from(c: &Conflict) -> Self {
        Self {
            email: c.email.clone(),
            workspace: c.workspace.clone(),
            roles: c.roles.iter().map(|r| r.as_str().to_string()).collect(),
            groups: c.groups.clone(),
            chosen: c.chosen.as_str().to_string(),
        }
    }
}

// ---- GET /admin/explain/{who} ----------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainDoc {
    /// As asked.
    pub query: String,
    /// The person's lower-cased email.
    pub email: String,
    /// What the IdP asks for; `None` when no SCIM user is found.
    pub desired: Option<DesiredDoc>,
    /// What the control plane has; `None` when it could not be read.
    pub actual: Option<ActualDoc>,
    /// The planned ops about this person only (an `add_members` op keeps only their row).
    pub planned_ops: Vec<Op>,
    pub read_errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredDoc {
    pub scim_id: String,
    pub user_name: String,
    pub email: Option<String>,
    pub desired: bool,
    pub excluded_because: Option<String>,
    pub org_role: Option<String>,
    pub org_role_reason: Option<String>,
    pub workspaces: Vec<ExplainedMembershipDoc>,
    pub conflicts: Vec<ConflictDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainedMembershipDoc {
    pub workspace: String,
    pub role: String,
    pub because: Vec<String>,
}

impl From<&Explanation> for DesiredDoc {
    fn from(e: &Explanation) -> Self {
        Self {
            scim_id: e.scim_id.clone(),
            user_name: e.user_name.clone(),
            email: e.email.clone(),
            desired: e.desired,
            excluded_because: e.excluded_because.clone(),
            org_role: e.org_role.map(|r| r.as_str().to_string()),
            org_role_reason: e.org_role_reason.clone(),
            workspaces: e
                .workspaces
                .iter()
                .map(|w| ExplainedMembershipDoc {
                    workspace: w.workspace.clone(),
                    role: w.role.as_str().to_string(),
                    because: w.because.clone(),
                })
                .collect(),
            conflicts: e.conflicts.iter().map(ConflictDoc::from).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActualDoc {
    pub user: Option<User>,
    pub invites: Vec<Invite>,
    pub memberships_in_managed_workspaces: Vec<MembershipDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipDoc {
    pub workspace_id: String,
    pub role: String,
}

// ---- GET /admin/audit ------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditDoc {
    pub entries: Vec<AuditEntry>,
    /// Where the next page starts (`before=`) when the log holds more below these entries; a
    /// search that read its bound of entries without filling `limit` says so here too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

// ---- requests: the query parameters of the operator routes -----------------------------------

/// A request's query parameters, read leniently: names are case-insensitive, and a value that
/// does not parse is read as absent, since every parameter has a default.
pub trait FromQuery: Sized {
    fn from_query(pairs: &[(String, String)]) -> Self;
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `POST /admin/resync[?wait=true]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResyncQuery {
    /// Answer when the run has finished, with its summary (200), rather than at once (202).
    pub wait: bool,
}

impl ResyncQuery {
    /// The path and query the CLI sends.
    pub fn path(&self) -> &'static str {
        if self.wait {
            "/admin/resync?wait=true"
        } else {
            "/admin/resync"
        }
    }
}

impl FromQuery for ResyncQuery {
    fn from_query(pairs: &[(String, String)]) -> Self {
        Self {
            wait: matches!(param(pairs, "wait"), Some("true" | "1" | "yes")),
        }
    }
}

/// `POST /admin/approve-deletions?digest=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApproveQuery {
    /// The held set reviewed (`held_digest`); required, the answer says so when missing.
    pub digest: Option<String>,
}

impl ApproveQuery {
    /// The path and query the CLI sends.
    pub fn path(&self) -> String {
        match &self.digest {
            Some(d) => format!(
                "/admin/approve-deletions?digest={}",
                percent_encoding::utf8_percent_encode(d, percent_encoding::NON_ALPHANUMERIC)
            ),
            None => "/admin/approve-deletions".into(),
        }
    }
}

impl FromQuery for ApproveQuery {
    fn from_query(pairs: &[(String, String)]) -> Self {
        Self {
            digest: param(pairs, "digest").map(str::to_string),
        }
    }
}

/// `GET /admin/audit[?limit=N][&before=SEQ][&q=TEXT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Default 100, at most 10,000.
    pub limit: usize,
    pub before: Option<u64>,
    /// Keeps entries that mention this text (any case): an email, a workspace, an op, a run
    /// id, a result. Trimmed, lower-cased, at most [`AUDIT_SEARCH_MAX_CHARS`] characters;
    /// empty means no search.
    pub q: Option<String>,
}

/// Longer search texts are cut to this many characters.
pub const AUDIT_SEARCH_MAX_CHARS: usize = 256;

/// A search reads at most this many entries per request; the answer's `next_before` goes on.
pub const AUDIT_SEARCH_SCAN: usize = 50_000;

impl FromQuery for AuditQuery {
    fn from_query(pairs: &[(String, String)]) -> Self {
        Self {
            limit: param(pairs, "limit")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(100)
                .min(10_000),
            before: param(pairs, "before").and_then(|v| v.parse::<u64>().ok()),
            q: param(pairs, "q")
                .map(|v| {
                    v.trim()
                        .chars()
                        .take(AUDIT_SEARCH_MAX_CHARS)
                        .collect::<String>()
                        .to_lowercase()
                })
                .filter(|v| !v.is_empty()),
        }
    }
}

// ---- helpers ---------------------------------------------------------------------------------

/// A unit enum's name as serde writes it (`full`, `manual`, …).
pub fn wire_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("<{e}>"),
    }
}

fn counts(m: &BTreeMap<&'static str, usize>) -> BTreeMap<String, usize> {
    m.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::policy::ExplainedMembership;
    use crate::reconcile::plan::Withheld;
    use crate::reconcile::OpKind;
    use crate::roles::{OrgRole, WorkspaceRole};
    use serde_json::json;

    /// The wire type says exactly what the domain type said: no field renamed or lost.
    fn same_json<A: Serialize, B: Serialize>(domain: &A, wire: &B) {
        assert_eq!(
            serde_json::to_value(domain).unwrap(),
            serde_json::to_value(wire).unwrap()
        );
    }

    fn conflict() -> Conflict {
        Conflict {
            email: "a@x.io".into(),
            workspace: "Eng".into(),
            roles: vec![WorkspaceRole::Member, WorkspaceRole::Admin],
            groups: vec!["g1".into(), "g2".into()],
            chosen: WorkspaceRole::Admin,
        }
    }

    fn remove(email: &str) -> Op {
        serde_json::from_value(json!({"op": "remove_user", "user_id": "u1", "email": email,
            "reason": "gone"}))
        .unwrap()
    }

    #[test]
    fn the_plan_keeps_its_shape() {
        let plan = Plan {
            ops: vec![remove("a@x.io")],
            withheld: Some(Withheld {
                incomplete: vec!["users".into()],
                dropped: 2,
                reason: "timeout".into(),
            }),
            conflicts: vec![conflict()],
            warnings: vec!["w".into()],
            notes: vec!["n".into()],
            managed_users: 7,
        };
        let body = PlanBody::from(&plan);
        same_json(&plan, &body);
        let back: PlanBody = serde_json::from_value(serde_json::to_value(&body).unwrap()).unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn an_explanation_keeps_its_shape() {
        let e = Explanation {
            scim_id: "s1".into(),
            user_name: "a".into(),
            email: Some("a@x.io".into()),
            desired: true,
            excluded_because: None,
            org_role: Some(OrgRole::Admin),
            org_role_reason: Some("group".into()),
            workspaces: vec![ExplainedMembership {
                workspace: "Eng".into(),
                role: WorkspaceRole::Manager,
                because: vec!["g".into()],
            }],
            conflicts: vec![conflict()],
        };
        same_json(&e, &DesiredDoc::from(&e));
    }

    #[test]
    fn store_status_reads_back_as_the_variant_it_was() {
        let ok = StoreStatus::Ok {
            ok: true,
            users: 1,
            groups: 2,
            last_change_seq: 3,
            last_ok_at: "t".into(),
            write_commits: 4,
            writes: 5,
            write_ahead_log: true,
            logged_commits: 3,
            checkpoints: 1,
        };
        let failing = StoreStatus::Failing {
            ok: false,
            degraded: None,
            error: Some("disk full".into()),
        };
        for s in [ok, failing] {
            let v = serde_json::to_value(&s).unwrap();
            assert_eq!(serde_json::from_value::<StoreStatus>(v).unwrap(), s);
        }
    }

    #[test]
    fn approvals_read_back_as_the_variant_they_were() {
        for a in [
            ApprovalDoc::Applied {
                approved: 2,
                run_id: "r".into(),
                summary: None,
            },
            ApprovalDoc::NothingHeld {
                approved: 0,
                detail: "no deletions are held".into(),
            },
        ] {
            let v = serde_json::to_value(&a).unwrap();
            assert_eq!(serde_json::from_value::<ApprovalDoc>(v).unwrap(), a);
        }
        let v = serde_json::to_value(ApprovalDoc::Applied {
            approved: 1,
            run_id: "r".into(),
            summary: None,
        })
        .unwrap();
        assert!(v.get("summary").unwrap().is_null(), "{v}");
    }

    #[test]
    fn op_results_flatten_the_op() {
        let r = OpResultDoc {
            op: remove("a@x.io"),
            result: "ok".into(),
            outcome: Some(OpOutcome::Done { note: None }),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["op"], "remove_user");
        assert_eq!(v["email"], "a@x.io");
        assert_eq!(v["outcome"]["outcome"], "done");
        assert_eq!(serde_json::from_value::<OpResultDoc>(v).unwrap(), r);
        assert!(matches!(r.op.kind, OpKind::RemoveUser { .. }));
    }

    #[test]
    fn a_run_summary_keeps_its_shape() {
        let summary = RunSummary::sample();
        let doc = RunDoc::from(&summary);
        same_json(&summary, &doc);
        let back: RunDoc = serde_json::from_value(serde_json::to_value(&doc).unwrap()).unwrap();
        assert_eq!(back, doc);
        let mut last = serde_json::to_value(&summary).unwrap();
        for gone in ["results", "scope"] {
            last.as_object_mut().unwrap().remove(gone);
        }
        assert_eq!(
            serde_json::to_value(LastRunDoc::from(&summary)).unwrap(),
            last
        );
    }

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    #[test]
    fn queries_are_read_leniently() {
        assert!(ResyncQuery::from_query(&pairs("WAIT=yes")).wait);
        assert!(!ResyncQuery::from_query(&pairs("wait=no")).wait);
        assert_eq!(
            ApproveQuery::from_query(&pairs("Digest=d1"))
                .digest
                .as_deref(),
            Some("d1")
        );
        assert_eq!(ApproveQuery::from_query(&[]).digest, None);
        let q = ApproveQuery {
            digest: Some("a b&c".into()),
        };
        let sent = q.path();
        let (_, query) = sent.split_once('?').unwrap();
        assert_eq!(ApproveQuery::from_query(&pairs(query)), q);
        assert_eq!(
            ResyncQuery::from_query(&pairs(
                ResyncQuery { wait: true }.path().split_once('?').unwrap().1
            )),
            ResyncQuery { wait: true }
        );
        let a = AuditQuery::from_query(&pairs("limit=x&before=7"));
        assert_eq!((a.limit, a.before), (100, Some(7)));
        assert_eq!(AuditQuery::from_query(&pairs("limit=99999")).limit, 10_000);
    }
}
