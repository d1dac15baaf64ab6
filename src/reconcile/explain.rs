//! One person as the reconciler sees them (`explain`): what the IdP asks for, what the control
//! plane has, and the ops planned for them.
//!
//! A person is one lower-cased email, compared whole: `bob@x.io` is not `jimbob@x.io`. A bulk
//! `add_members` op is cut down to this person's row, so another person's access never shows
//! up in someone else's explanation.

use super::plan::{ActualState, Op, OpKind, Plan};
use super::run::{PlanView, ReconcileError};
use crate::policy::Explanation;
use crate::portkey::{Invite, User, WorkspaceRole};

/// A workspace the person is a member of, among the workspaces read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub workspace_id: String,
    pub role: WorkspaceRole,
}

/// What the control plane has for the person.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Held {
    pub user: Option<User>,
    pub invites: Vec<Invite>,
    pub memberships: Vec<Membership>,
}

/// The answer to `explain`.
#[derive(Debug, Clone)]
pub struct Person {
    /// `None` when no SCIM user has this email, `userName` or id.
    pub explanation: Option<Explanation>,
    /// Lower-cased.
    pub email: String,
    /// `None` when the plan could not be computed (the reason is in `read_errors`).
    pub actual: Option<Held>,
    pub ops: Vec<Op>,
    pub read_errors: Vec<String>,
}

impl Person {
    pub(crate) fn new(
        explanation: Option<Explanation>,
        email: String,
        planned: Result<(PlanView, ActualState), ReconcileError>,
    ) -> Self {
        match planned {
            Ok((view, actual)) => Self {
                ops: ops_for(&view.plan, &email),
                actual: Some(held_by(&actual, &email)),
                read_errors: view.read_errors,
                explanation,
                email,
            },
            Err(e) => Self {
                explanation,
                email,
                actual: None,
                ops: Vec::new(),
                read_errors: vec![e.to_string()],
            },
        }
    }

    /// Neither a SCIM user nor a control-plane user.
    pub fn unknown(&self) -> bool {
        self.explanation.is_none() && self.actual.as_ref().is_none_or(|a| a.user.is_none())
    }
}

/// The ops of `plan` about the person with this (lower-cased) email; an `add_members` op keeps
/// only their row, and is left out when they have none.
pub fn ops_for(plan: &Plan, email: &str) -> Vec<Op> {
    plan.ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::AddMembers {
                workspace,
                workspace_id,
                members,
            } => {
                let mine: Vec<_> = members
                    .iter()
                    .filter(|m| m.email.eq_ignore_ascii_case(email))
                    .cloned()
                    .collect();
                (!mine.is_empty()).then(|| Op {
                    kind: OpKind::AddMembers {
                        workspace: workspace.clone(),
                        workspace_id: workspace_id.clone(),
                        members: mine,
                    },
                    reason: op.reason.clone(),
                })
            }
            kind => kind
                .email()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
                .then(|| op.clone()),
        })
        .collect()
}

/// What `actual` holds for the person with this email.
pub fn held_by(actual: &ActualState, email: &str) -> Held {
    let user = actual
        .users
        .iter()
        .find(|u| u.email.eq_ignore_ascii_case(email))
        .cloned();
    let invites = actual
        .invites
        .iter()
        .filter(|i| i.email.eq_ignore_ascii_case(email))
        .cloned()
        .collect();
    let memberships = match &user {
        Some(u) => actual
            .members
            .iter()
            .filter_map(|(ws, list)| {
                list.members
                    .iter()
                    .find(|m| m.id == u.id)
                    .map(|m| Membership {
                        workspace_id: ws.clone(),
                        role: m.role.clone(),
                    })
            })
            .collect(),
        None => Vec::new(),
    };
    Held {
        user,
        invites,
        memberships,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(v: serde_json::Value) -> Op {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_person_is_a_whole_email_and_bulk_adds_keep_only_their_row() {
        let plan = Plan {
            ops: vec![
                op(
                    json!({"op": "add_members", "workspace": "Eng", "workspace_id": "w1",
                    "members": [
                        {"user_id": "u1", "email": "jimbob@x.io", "role": "member", "reason": "g"},
                        {"user_id": "u2", "email": "bob@x.io", "role": "admin", "reason": "g"}
                    ], "reason": "groups"}),
                ),
                op(
                    json!({"op": "add_members", "workspace": "Ops", "workspace_id": "w2",
                    "members": [{"user_id": "u1", "email": "jimbob@x.io", "role": "member", "reason": "g"}],
                    "reason": "groups"}),
                ),
                op(
                    json!({"op": "remove_user", "user_id": "u1", "email": "jimbob@x.io",
                    "reason": "gone"}),
                ),
                op(
                    json!({"op": "update_org_role", "user_id": "u2", "email": "Bob@X.io",
                    "from": "member", "to": "admin", "reason": "group"}),
                ),
            ],
            ..Plan::default()
        };
        let mine = ops_for(&plan, "bob@x.io");
        let text = serde_json::to_string(&mine).unwrap();
        assert!(!text.contains("jimbob"), "{text}");
        assert_eq!(mine.len(), 2, "{text}");
        match &mine[0].kind {
            OpKind::AddMembers { members, .. } => {
                assert_eq!(members.len(), 1);
                assert_eq!(members[0].email, "bob@x.io");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ops_for(&plan, "jimbob@x.io").len(), 3);
        assert!(ops_for(&plan, "bob@x").is_empty());
    }

    #[test]
    fn what_the_control_plane_holds_is_for_the_whole_email_only() {
        let actual = ActualState {
            users: vec![
                serde_json::from_value(
                    json!({"id": "u1", "email": "jimbob@x.io", "role": "member"}),
                )
                .unwrap(),
                serde_json::from_value(json!({"id": "u2", "email": "Bob@x.io", "role": "admin"}))
                    .unwrap(),
            ],
            invites: vec![serde_json::from_value(
                json!({"id": "i1", "email": "jimbob@x.io", "role": "member", "status": "pending"}),
            )
            .unwrap()],
            ..ActualState::default()
        };
        let bob = held_by(&actual, "bob@x.io");
        assert_eq!(bob.user.as_ref().map(|u| u.id.as_str()), Some("u2"));
        assert!(bob.invites.is_empty());
        let jimbob = held_by(&actual, "jimbob@x.io");
        assert_eq!(jimbob.user.as_ref().map(|u| u.id.as_str()), Some("u1"));
        assert_eq!(jimbob.invites.len(), 1);
        assert_eq!(held_by(&actual, "bob@x"), Held::default());
    }
}
