//! The PATCH engine (RFC 7644 §3.5.2) with the Okta and Entra dialects of
//! `shared/idp-scim-behaviors.md` §4.

use crate::scim::error::ScimError;
use crate::scim::filter::{Filter, PatchPath};
use crate::scim::resource::MemberRef;
use crate::scim::schema::ResourceKind;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// A change to a group's member list. Members live outside the group document so that a change
/// costs O(changed members); the store applies these in order.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberChange {
    Add(Vec<MemberRef>),
    Remove(Vec<String>),
    /// Remove the members matching a filter whose attribute names are relative to a member
    /// (`value`, `display`, `type`, `$ref`).
    RemoveWhere(Filter),
    Clear,
}

/// Parses a PATCH request body (`schemas`, `Operations`).
pub fn parse_request(_body: &Value) -> Result<Vec<PatchOp>, ScimError> {
    Err(ScimError::invalid_syntax("PATCH is not available yet"))
}

/// Applies operations to a canonical resource (without members). Member changes are returned
/// for the store to apply.
pub fn apply(
    _kind: ResourceKind,
    _resource: &mut Value,
    _ops: &[PatchOp],
) -> Result<Vec<MemberChange>, ScimError> {
    Err(ScimError::invalid_syntax("PATCH is not available yet"))
}
