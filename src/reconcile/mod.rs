//! The reconciler: makes the control plane match what the IdP pushed, level-triggered.
//!
//! Each run reads the desired state ([`crate::policy`]) and the actual state (the control plane),
//! computes `plan = diff(desired, actual)` ([`plan`]) and applies it in phases. This module holds
//! the pure part: the plan, the safety rules and the deletion fuse, with no I/O, so that every rule
//! is unit-tested and `/admin/plan` can show exactly what a run would do.

pub mod desired;
pub mod explain;
pub mod plan;
pub mod run;

pub use plan::{
    apply_fuse, diff, held_digest, ActualState, FuseLimits, FuseOutcome, FuseState, MemberList, Op,
    OpKind, Phase, Plan, PlanOptions,
};
pub use run::{Approval, OpOutcome, Reconciler, ReconcilerStatus, RunSummary, Scope};

use crate::policy::{ScimGroup, ScimUser};
use crate::store::Record;

/// The policy's view of a stored user.
pub fn scim_user(record: &Record) -> ScimUser {
    ScimUser {
        id: record.id.clone(),
        data: record.data.clone(),
    }
}

/// The policy's view of a stored group; `member_ids` come from the store's member table
/// ([`crate::store::Resource::refs`]).
pub fn scim_group(record: &Record, member_ids: impl IntoIterator<Item = String>) -> ScimGroup {
    ScimGroup {
        id: record.id.clone(),
        display_name: record
            .data
            .get("displayName")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string(),
        members: member_ids.into_iter().collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_become_policy_inputs() {
        let rec = |id: &str, data| Record {
            id: id.into(),
            version: 1,
            created: String::new(),
            last_modified: String::new(),
            data,
        };
        let u = scim_user(&rec("u1", json!({"userName": "a@x.io"})));
        assert_eq!(u.id, "u1");
        assert_eq!(u.data["userName"], "a@x.io");
        let g = scim_group(
            &rec("g1", json!({"displayName": "ws-Eng-role-admin"})),
            vec!["u1".to_string()],
        );
        assert_eq!(g.display_name, "ws-Eng-role-admin");
        assert_eq!(g.members, vec!["u1".to_string()]);
    }
}
