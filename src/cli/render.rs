//! Rendering: the admin API's documents as the short tables `scim-sync` prints, and whether the
//! answer needs attention (exit code 1).

use crate::admin_api as api;
use crate::reconcile::{Op, OpKind};
use serde_json::Value;
use std::collections::BTreeMap;

/// An optional value as plain text, `-` when absent.
pub(super) fn opt(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A JSON value as plain text: strings unquoted, null as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns; the last one is not padded.
fn table(out: &mut String, indent: &str, headers: &[&str], rows: &[Vec<String>]) {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(n) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut l = String::from(indent);
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(out, headers.to_vec());
    for row in rows {
        line(out, row.iter().map(String::as_str).collect());
    }
}

pub(super) fn field(out: &mut String, label: &str, value: impl std::fmt::Display) {
    push_line!(out, "{label:<16}{value}");
}

fn list(out: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    push_line!(out, "{title} ({}):", items.len());
    for i in items {
        push_line!(out, "  - {i}");
    }
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn held_hint(n: usize) -> String {
    format!(
        "{n} destructive op(s) held by the fuse. Review them with `scim-sync plan`, release them \
         with `scim-sync approve-deletions`, or fix the IdP if they are a mistake."
    )
}

/// `GET /admin/status` as a short table; false when something needs attention.
pub fn render_status(s: &api::StatusDoc, base: &str) -> (String, bool) {
    let mut out = String::new();
    let mut attention: Vec<String> = Vec::new();
    push_line!(
        out,
        "scim-sync {} at {base}, up {}",
        s.version,
        duration(s.uptime_secs)
    );
    field(
        &mut out,
        "SCIM",
        format!(
            "{}, listening on {} (base path {})",
            if s.scim.ok { "ok" } else { "NOT OK" },
            s.scim.listen,
            s.scim.base_path
        ),
    );
    status_store(&mut out, &mut attention, &s.store);
    status_control_plane(&mut out, &mut attention, &s.control_plane);
    status_runs(&mut out, &mut attention, &s.reconciler);
    status_held_and_failing(&mut out, &mut attention, &s.reconciler);
    if !attention.is_empty() {
        push_line!(out, "\nNeeds attention:");
        for a in &attention {
            push_line!(out, "  - {a}");
        }
    }
    (out, attention.is_empty())
}

fn status_store(out: &mut String, attention: &mut Vec<String>, store: &api::StoreStatus) {
    match store {
        api::StoreStatus::Ok {
            ok: true,
            users,
            groups,
            last_change_seq,
            ..
        } => field(
            out,
            "Store",
            format!("ok: {users} users, {groups} groups, change seq {last_change_seq}"),
        ),
        api::StoreStatus::Ok { .. } => {
            field(out, "Store", "NOT OK: -");
            attention.push("the store is failing".into());
        }
        api::StoreStatus::Failing { error, .. } => {
            field(out, "Store", format!("NOT OK: {}", opt(error.as_ref())));
            attention.push("the store is failing".into());
        }
    }
}

fn status_control_plane(out: &mut String, attention: &mut Vec<String>, cp: &api::ControlPlaneDoc) {
    let last_ok = cp.last_ok_at.as_deref().unwrap_or("never");
    match cp.ok {
        Some(true) => field(out, "Control plane", format!("ok (last ok {last_ok})")),
        Some(false) => {
            field(
                out,
                "Control plane",
                format!(
                    "FAILING: {} (last ok {last_ok})",
                    opt(cp.last_error.as_ref())
                ),
            );
            attention.push("the control plane cannot be read".into());
        }
        None => field(out, "Control plane", "not contacted yet"),
    }
}

/// The run in progress, the last run and the last success.
fn status_runs(out: &mut String, attention: &mut Vec<String>, r: &api::ReconcilerDoc) {
    match &r.running {
        None => field(out, "Reconciler", "idle"),
        Some(run) => field(
            out,
            "Reconciler",
            format!(
                "running {run} ({}/{} ops)",
                r.progress.done, r.progress.total
            ),
        ),
    }
    match &r.last_run {
        None => field(out, "Last run", "none yet"),
        Some(last) => {
            field(
                out,
                "Last run",
                format!(
                    "{}: {} run ({}) finished {}, {} ms{}",
                    if last.ok { "ok" } else { "NOT OK" },
                    last.kind,
                    last.trigger,
                    last.finished_at,
                    last.duration_ms,
                    if last.dry_run { ", dry run" } else { "" }
                ),
            );
            field(
                out,
                "",
                format!(
                    "applied {}, failed {}, held {}, withheld {}",
                    last.applied, last.failed, last.held, last.withheld
                ),
            );
            for e in &last.errors {
                field(out, "", format!("error: {e}"));
            }
            if !last.ok {
                attention.push("the last run was not ok".into());
            }
        }
    }
    field(
        out,
        "Last success",
        match &r.last_successful_run_at {
            None => "never".to_string(),
            Some(v) => format!(
                "{v} (full run: {})",
                r.last_successful_full_run_at.as_deref().unwrap_or("never")
            ),
        },
    );
}

fn status_held_and_failing(out: &mut String, attention: &mut Vec<String>, r: &api::ReconcilerDoc) {
    let held = r.held_deletions.len();
    if held == 0 {
        field(out, "Held deletions", "0");
    } else {
        field(
            out,
            "Held deletions",
            format!("{held}: {}", opt(r.held_reason.as_ref())),
        );
        attention.push(held_hint(held));
    }
    if r.failing_ops.is_empty() {
        field(out, "Failing ops", "0");
        return;
    }
    field(out, "Failing ops", r.failing_ops.len());
    for f in &r.failing_ops {
        // The op as stored, possibly by an older release: shown, not interpreted.
        push_line!(
            out,
            "  {} {}: {} (attempt {}, next after {})",
            text(&f.op["op"]),
            text(&f.op["email"]),
            f.last_error,
            f.attempts,
            f.next_attempt_at
        );
    }
    attention.push(format!(
        "{} op(s) keep failing and are retried with a backoff; a removal the control plane refuses stays here until it succeeds. Check the Admin API key's permissions and the audit log (GET /admin/audit).",
        r.failing_ops.len()
    ));
}

/// One plan op as table rows: phase, op, target, reason (an `add_members` op is one row per
/// member).
fn op_rows(op: &Op, held: bool) -> Vec<Vec<String>> {
    let phase = api::wire_name(&op.phase());
    let name = op.kind.name();
    let mark = |n: &str| {
        if held {
            format!("{n} (HELD)")
        } else {
            n.to_string()
        }
    };
    let reason = op.reason.clone();
    let target = match &op.kind {
        OpKind::CreateWorkspace { name } => format!("workspace {name}"),
        OpKind::Invite {
            email,
            role,
            workspaces,
            replaces_expired,
        } => {
            let mut s = format!("{email} as org {}", role.as_str());
            let ws: Vec<String> = workspaces
                .iter()
                .map(|w| format!("{}: {}", w.workspace, w.role.as_str()))
                .collect();
            if !ws.is_empty() {
                s.push_str(&format!("; {}", ws.join(", ")));
            }
            if let Some(old) = replaces_expired {
                s.push_str(&format!(" (replaces expired invite {old})"));
            }
            s
        }
        OpKind::UpdateOrgRole {
            email, from, to, ..
        } => format!("{email}: org {} -> {}", from.as_str(), to.as_str()),
        OpKind::AddMembers {
            workspace, members, ..
        } => {
            return members
                .iter()
                .map(|m| {
                    vec![
                        phase.clone(),
                        mark("add_member"),
                        format!("{} to {workspace} as {}", m.email, m.role.as_str()),
                        m.reason.clone(),
                    ]
                })
                .collect();
        }
        OpKind::UpdateMemberRole {
            workspace,
            email,
            from,
            to,
            ..
        } => format!(
            "{email} in {workspace}: {} -> {}",
            from.as_str(),
            to.as_str()
        ),
        OpKind::RemoveMember {
            workspace, email, ..
        } => format!("{email} from {workspace}"),
        OpKind::RevokeInvite { invite_id, email } => format!("invite {invite_id} for {email}"),
        OpKind::RemoveUser { email, .. } => format!("{email} from the organisation"),
    };
    vec![vec![phase, mark(name), target, reason]]
}

const OP_HEADERS: [&str; 4] = ["PHASE", "OP", "TARGET", "REASON"];

pub(super) fn ops_table(out: &mut String, indent: &str, ops: &[Op], held: &[Op]) {
    let rows: Vec<Vec<String>> = ops
        .iter()
        .flat_map(|op| op_rows(op, held.contains(op)))
        .collect();
    table(out, indent, &OP_HEADERS, &rows);
}

fn summary_line(summary: &BTreeMap<String, usize>) -> String {
    let parts: Vec<(&String, usize)> = summary
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "destructive" | "total"))
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k, *n))
        .collect();
    if parts.is_empty() {
        return "nothing to do".into();
    }
    let total = summary
        .get("total")
        .copied()
        .unwrap_or_else(|| parts.iter().map(|(_, n)| n).sum());
    let list: Vec<String> = parts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(
        "{total} op(s): {} ({} destructive)",
        list.join(", "),
        summary.get("destructive").copied().unwrap_or(0)
    )
}

fn conflict_line(c: &api::ConflictDoc) -> String {
    format!(
        "groups {} ask for {}; {} wins",
        c.groups.join(", "),
        c.roles.join(", "),
        c.chosen
    )
}

/// `GET /admin/plan` as a table; false when the control plane was not read completely.
pub fn render_plan(p: &api::PlanDoc) -> (String, bool) {
    let mut out = String::new();
    let plan = &p.plan;
    let held = &p.held_by_fuse;
    push_line!(
        out,
        "Plan (dry run, nothing was changed): {}",
        summary_line(&p.summary)
    );
    if plan.ops.is_empty() {
        push_line!(
            out,
            "The control plane already matches the IdP{}.",
            if p.read_errors.is_empty() {
                ""
            } else {
                " as far as it could be read"
            }
        );
    } else {
        out.push('\n');
        ops_table(&mut out, "", &plan.ops, held);
    }
    if !held.is_empty() {
        push_line!(
            out,
            "\nHeld by the deletion fuse ({}): {}",
            held.len(),
            opt(p.held_reason.as_ref())
        );
        push_line!(
            out,
            "  A run applies everything else and holds these until `scim-sync approve-deletions`."
        );
    }
    if let Some(w) = &plan.withheld {
        push_line!(
            out,
            "\nWithheld: {} destructive op(s) left out because {} could not be read completely: {}",
            w.dropped,
            w.incomplete.join(", "),
            w.reason
        );
    }
    let conflicts: Vec<String> = plan
        .conflicts
        .iter()
        .map(|c| format!("{} in {}: {}", c.email, c.workspace, conflict_line(c)))
        .collect();
    let mut tail = String::new();
    list(&mut tail, "Role conflicts", &conflicts);
    list(&mut tail, "Warnings", &plan.warnings);
    list(&mut tail, "Left alone", &plan.notes);
    list(
        &mut tail,
        "Read errors (the plan may be incomplete)",
        &p.read_errors,
    );
    if !tail.is_empty() {
        out.push('\n');
        out.push_str(&tail);
    }
    (out, p.read_errors.is_empty())
}

/// `GET /admin/explain/{user}` as desired vs actual plus planned ops.
pub fn render_explain(e: &api::ExplainDoc) -> (String, bool) {
    let mut out = String::new();
    push_line!(out, "{} (asked for '{}')", e.email, e.query);
    out.push_str("\nDesired (from the IdP):\n");
    match &e.desired {
        None => out.push_str("  not a SCIM user: the IdP does not know this person\n"),
        Some(d) => {
            field(
                &mut out,
                "  SCIM user",
                format!("{} (id {})", d.user_name, d.scim_id),
            );
            if d.desired {
                field(
                    &mut out,
                    "  org role",
                    format!(
                        "{} ({})",
                        opt(d.org_role.as_ref()),
                        opt(d.org_role_reason.as_ref())
                    ),
                );
                if d.workspaces.is_empty() {
                    field(&mut out, "  workspaces", "none");
                } else {
                    let rows: Vec<Vec<String>> = d
                        .workspaces
                        .iter()
                        .map(|w| vec![w.workspace.clone(), w.role.clone(), w.because.join("; ")])
                        .collect();
                    out.push_str("  workspaces:\n");
                    table(&mut out, "    ", &["WORKSPACE", "ROLE", "BECAUSE"], &rows);
                }
            } else {
                field(
                    &mut out,
                    "  in scope",
                    format!("no: {}", opt(d.excluded_because.as_ref())),
                );
            }
            for c in &d.conflicts {
                field(
                    &mut out,
                    "  conflict",
                    format!("{}: {}", c.workspace, conflict_line(c)),
                );
            }
        }
    }
    out.push_str("\nActual (control plane):\n");
    match &e.actual {
        None => out.push_str("  could not be read (see read errors)\n"),
        Some(a) => {
            match &a.user {
                None => field(&mut out, "  user", "not in the organisation"),
                Some(u) => field(
                    &mut out,
                    "  user",
                    format!("{} (id {}), org {}", u.email, u.id, u.role.as_str()),
                ),
            }
            for i in &a.invites {
                field(
                    &mut out,
                    "  invite",
                    format!(
                        "{} as org {}, {} (expires {})",
                        i.id,
                        i.role.as_str(),
                        i.status.as_str(),
                        opt(i.expires_at.as_ref())
                    ),
                );
            }
            let ms = &a.memberships_in_managed_workspaces;
            if ms.is_empty() {
                field(&mut out, "  workspaces", "none of the managed workspaces");
            } else {
                let rows: Vec<Vec<String>> = ms
                    .iter()
                    .map(|m| vec![m.workspace_id.clone(), m.role.clone()])
                    .collect();
                out.push_str("  workspaces (managed ones):\n");
                table(&mut out, "    ", &["WORKSPACE ID", "ROLE"], &rows);
            }
        }
    }
    if e.planned_ops.is_empty() {
        out.push_str("\nPlanned ops: none, the control plane matches\n");
    } else {
        push_line!(out, "\nPlanned ops ({}):", e.planned_ops.len());
        ops_table(&mut out, "  ", &e.planned_ops, &[]);
    }
    if !e.read_errors.is_empty() {
        out.push('\n');
        list(
            &mut out,
            "Read errors (actual state may be incomplete)",
            &e.read_errors,
        );
    }
    (out, true)
}

/// Beyond this many applied ops a run summary only counts them.
const MAX_LISTED_RESULTS: usize = 25;

/// A run summary (`resync --wait`, `approve-deletions`); false when not ok, when ops failed, or
/// when deletions are held. `None`: the daemon could not say how the run ended.
pub fn render_run(s: Option<&api::RunDoc>) -> (String, bool) {
    let mut out = String::new();
    let Some(s) = s else {
        out.push_str(
            "The run's result is unknown (the reconciler stopped?). Check `scim-sync status`.\n",
        );
        return (out, false);
    };
    let results = &s.results;
    let s = &s.run;
    push_line!(
        out,
        "Run {} ({}, {}): {}",
        s.run_id,
        s.kind,
        s.trigger,
        match (s.ok, s.failed) {
            (true, 0) => "ok".to_string(),
            (true, n) => format!("ok, but {n} op(s) failed and are retried with a backoff"),
            (false, _) => "NOT OK".to_string(),
        }
    );
    field(
        &mut out,
        "  finished",
        format!(
            "{} ({} ms){}",
            s.finished_at,
            s.duration_ms,
            if s.dry_run {
                ", dry run: nothing was changed"
            } else {
                ""
            }
        ),
    );
    field(&mut out, "  planned", summary_line(&s.planned));
    field(&mut out, "  applied", s.applied);
    field(&mut out, "  failed", s.failed);
    field(&mut out, "  held", s.held);
    field(&mut out, "  withheld", s.withheld);
    if s.quarantined > 0 {
        field(&mut out, "  quarantined", s.quarantined);
    }
    let result_rows = |rs: &[&api::OpResultDoc]| -> Vec<Vec<String>> {
        rs.iter()
            .flat_map(|r| {
                op_rows(&r.op, false).into_iter().map(|mut row| {
                    row.pop();
                    row.push(r.result.clone());
                    row
                })
            })
            .collect()
    };
    let (failed, done): (Vec<&api::OpResultDoc>, Vec<&api::OpResultDoc>) =
        results.iter().partition(|r| r.failed());
    if !failed.is_empty() {
        push_line!(out, "\nFailed ops ({}):", failed.len());
        table(
            &mut out,
            "  ",
            &["PHASE", "OP", "TARGET", "RESULT"],
            &result_rows(&failed),
        );
    }
    if !done.is_empty() && done.len() <= MAX_LISTED_RESULTS {
        push_line!(out, "\nApplied ops ({}):", done.len());
        table(
            &mut out,
            "  ",
            &["PHASE", "OP", "TARGET", "RESULT"],
            &result_rows(&done),
        );
    } else if !done.is_empty() {
        push_line!(
            out,
            "\n{} ops applied; every one is in the audit log (GET /admin/audit), or use --json.",
            done.len()
        );
    }
    let mut tail = String::new();
    list(&mut tail, "Errors", &s.errors);
    list(&mut tail, "Warnings", &s.warnings);
    if !tail.is_empty() {
        out.push('\n');
        out.push_str(&tail);
    }
    if s.held > 0 {
        push_line!(out, "\n{}", held_hint(s.held));
    }
    (out, s.ok && s.held == 0 && s.failed == 0)
}

/// `POST /admin/approve-deletions`.
pub fn render_approval(a: &api::ApprovalDoc) -> (String, bool) {
    match a {
        api::ApprovalDoc::Applied {
            approved, summary, ..
        } if *approved > 0 => {
            let mut out =
                format!("Approved {approved} held deletion(s); they were applied by this run:\n\n");
            let (run, ok) = render_run(summary.as_deref());
            out.push_str(&run);
            (out, ok)
        }
        _ => ("No deletions are held; nothing to approve.\n".into(), true),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plan_renders_ops_held_and_errors() {
        let remove = json!({"op": "remove_member", "workspace": "Eng", "workspace_id": "w1",
            "user_id": "u9", "email": "bob@x.io", "reason": "no longer in ws-Eng-role-member"});
        let body = json!({
            "summary": {"add_members": 2, "remove_member": 1, "destructive": 1},
            "dry_run_only": true,
            "plan": {
                "ops": [
                    {"op": "add_members", "workspace": "Eng", "workspace_id": "w1", "members": [
                        {"user_id": "u1", "email": "a@x.io", "role": "member", "reason": "group A"},
                        {"user_id": "u2", "email": "c@x.io", "role": "admin", "reason": "group B"}
                    ], "reason": "members"},
                    remove,
                ],
                "withheld": null, "conflicts": [], "warnings": ["w!"], "notes": [], "managed_users": 3
            },
            "held_by_fuse": [remove],
            "held_reason": "1 > max_deletions 0",
            "held_digest": "d1",
            "read_errors": []
        });
        let doc = |v: &Value| serde_json::from_value::<api::PlanDoc>(v.clone()).unwrap();
        let (out, ok) = render_plan(&doc(&body));
        assert!(ok);
        assert!(out.contains("PHASE"), "{out}");
        assert!(out.contains("add_or_change_members"), "{out}");
        assert!(out.contains("a@x.io to Eng as member"), "{out}");
        assert!(out.contains("remove_member (HELD)"), "{out}");
        assert!(out.contains("bob@x.io from Eng"), "{out}");
        assert!(out.contains("1 > max_deletions 0"), "{out}");
        assert!(out.contains("w!"), "{out}");
        let mut bad = body.clone();
        bad["read_errors"] = json!(["users: timeout"]);
        let (out, ok) = render_plan(&doc(&bad));
        assert!(!ok);
        assert!(out.contains("users: timeout"), "{out}");
    }

    #[test]
    fn run_not_ok_or_held_is_a_failure() {
        let mut s = json!({"run_id": "r1", "kind": "full", "trigger": "manual", "ok": true,
            "started_at": "t", "finished_at": "t", "duration_ms": 5, "dry_run": false,
            "planned": {}, "applied": 0, "failed": 0, "held": 0, "withheld": 0,
            "quarantined": 0, "approved": 0, "errors": [], "warnings": [], "results": []});
        let run = |v: &Value| render_run(Some(&serde_json::from_value(v.clone()).unwrap()));
        assert!(run(&s).1);
        s["held"] = json!(2);
        let (out, ok) = run(&s);
        assert!(!ok);
        assert!(out.contains("approve-deletions"), "{out}");
        s["held"] = json!(0);
        s["ok"] = json!(false);
        s["failed"] = json!(1);
        s["results"] = json!([{"op": "remove_user", "user_id": "u", "email": "e@x.io",
            "reason": "gone", "result": "failed: 500"}]);
        let (out, ok) = run(&s);
        assert!(!ok);
        assert!(out.contains("e@x.io from the organisation"), "{out}");
        assert!(out.contains("failed: 500"), "{out}");
        assert!(!render_run(None).1);
    }

    #[test]
    fn status_flags_what_needs_attention() {
        let mut s = json!({
            "version": "0.1.0", "uptime_secs": 3700,
            "scim": {"ok": true, "listen": "127.0.0.1:8080", "base_path": "/scim/v2",
                "last_ok_at": "t1"},
            "store": {"ok": true, "users": 3, "groups": 1, "last_change_seq": 9,
                "last_ok_at": "t1", "write_commits": 2, "writes": 4},
            "control_plane": {"ok": true, "last_ok_at": "t1", "last_error": null},
            "reconciler": {"ok": true, "running": null, "progress": {"done": 0, "total": 0},
                "last_successful_run_at": "t1", "last_successful_full_run_at": "t1",
                "next_retry_at": null,
                "last_run": {"run_id": "r", "kind": "full", "trigger": "startup", "ok": true,
                    "started_at": "t0", "finished_at": "t1", "duration_ms": 3, "dry_run": false,
                    "planned": {}, "applied": 1, "failed": 0, "held": 0, "withheld": 0,
                    "quarantined": 0, "approved": 0, "errors": [], "warnings": []},
                "held_deletions": [], "held_reason": null, "held_digest": null,
                "approved_waiting": 0, "failing_ops": [], "store_error": null}
        });
        let status =
            |v: &Value| render_status(&serde_json::from_value(v.clone()).unwrap(), "http://a");
        let (out, ok) = status(&s);
        assert!(ok, "{out}");
        assert!(out.contains("3 users, 1 groups"), "{out}");
        assert!(out.contains("up 1h 1m"), "{out}");
        let held = |email: &str| json!({"op": "remove_user", "user_id": "u", "email": email, "reason": "gone"});
        s["reconciler"]["held_deletions"] = json!([held("a@x.io"), held("b@x.io")]);
        s["control_plane"]["ok"] = json!(false);
        s["control_plane"]["last_error"] = json!("connect refused");
        let (out, ok) = status(&s);
        assert!(!ok);
        assert!(out.contains("connect refused"), "{out}");
        assert!(out.contains("Held deletions  2"), "{out}");
        assert!(out.contains("Needs attention"), "{out}");
    }
}
