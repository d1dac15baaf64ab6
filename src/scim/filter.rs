//! SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2): the one seam over the `scim_v2`
//! parser, and our evaluator over stored resources.
//!
//! The parser's AST is converted into the types below at this seam, so nothing else in the crate
//! depends on `scim_v2`.

use crate::scim::error::ScimError;
use crate::scim::schema::{AttrDef, ResourceKind};
use serde_json::Value;

/// An attribute reference: optional schema URN, attribute name, optional sub-attribute.
/// Names are kept as written; resolution against the schema is case-insensitive.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrRef {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Lt,
    Ge,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Present(AttrRef),
    /// The value is the JSON literal from the filter: string, number, `true`, `false` or `null`.
    Compare(AttrRef, CompOp, Value),
    /// `attr[inner]`: true when some element of the multi-valued `attr` matches `inner`, whose
    /// attribute names are relative to the elements (`emails[type eq "work"]`).
    ValuePath(AttrRef, Box<Filter>),
    Not(Box<Filter>),
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum PatchPath {
    Attr(AttrRef),
    /// `attr[filter]` or `attr[filter].sub`.
    Value {
        attr: AttrRef,
        filter: Filter,
        sub: Option<String>,
    },
}

/// An equality on an indexed attribute that a filter requires, so that the store can look up
/// candidates instead of scanning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexHint {
    Id(String),
    UserName(String),
    ExternalId(String),
    DisplayName(String),
}

/// Longest filter accepted, in bytes. Real IdP filters are well under 1 KiB; a batch lookup of a
/// hundred ids fits comfortably.
pub const MAX_FILTER_LEN: usize = 16 * 1024;

/// Parses a `filter` query parameter. Errors are `400 invalidFilter`.
pub fn parse_filter(_input: &str) -> Result<Filter, ScimError> {
    Err(ScimError::invalid_filter("filters are not available yet"))
}

/// Parses a PATCH `path`. Errors are `400 invalidPath`.
pub fn parse_path(_input: &str) -> Result<PatchPath, ScimError> {
    Err(ScimError::invalid_path("paths are not available yet"))
}

/// Evaluates a filter against a stored resource of the given kind (canonical JSON).
pub fn matches(_filter: &Filter, _kind: ResourceKind, _resource: &Value) -> Result<bool, ScimError> {
    Ok(false)
}

/// Evaluates the inner filter of a value path against one element of the multi-valued
/// attribute `parent`.
pub fn matches_element(_filter: &Filter, _parent: &AttrDef, _element: &Value) -> bool {
    false
}

/// An indexed equality that every match must satisfy, if there is one.
pub fn index_hint(_filter: &Filter, _kind: ResourceKind) -> Option<IndexHint> {
    None
}

/// Whether the filter mentions the (top-level) attribute `name`, case-insensitively.
pub fn references(_filter: &Filter, _name: &str) -> bool {
    false
}
