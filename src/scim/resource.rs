//! Resource normalisation: turns what an IdP sends in a POST or PUT body into the canonical form
//! the store keeps, and renders stored resources back.

use crate::scim::error::ScimError;
use crate::scim::schema::ResourceKind;
use serde_json::Value;

/// One member reference of a group, as sent by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef {
    pub value: String,
}

/// A POST/PUT body after normalisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// Canonical JSON object: schema-cased attribute names, extension attributes under their URN
    /// key, no `id`/`meta`/`groups`/`members`/`password`, no nulls, booleans as booleans.
    pub resource: Value,
    /// Groups only: the member list of the body (`None` when the body has no `members` key).
    pub members: Option<Vec<MemberRef>>,
}

/// Normalises a POST or PUT body.
pub fn normalize(_kind: ResourceKind, _body: &Value) -> Result<Normalized, ScimError> {
    Err(ScimError::invalid_syntax("resource normalisation is not available yet"))
}
