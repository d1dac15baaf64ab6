//! The PATCH engine (RFC 7644 §3.5.2) with the Okta and Entra dialects of
//! `shared/idp-scim-behaviors.md` §4.
//!
//! A request is applied to a copy of the resource and committed only when every operation
//! succeeded and the result still satisfies [`resource::validate`], so a failed PATCH changes
//! nothing (RFC 7644 §3.5.2: "the entire request MUST fail").
//!
//! Where the RFC and the IdPs disagree we follow the IdPs, because Entra retries a rejected
//! operation every cycle and quarantines the job when failures pile up:
//! - An empty `Operations` list is a no-op (the Entra validator sends one), and a missing `schemas`
//!   is not an error.
//! - `add` *and* `replace` on a value filter that matches no element (`emails[type eq "work"].value`)
//!   create the element from the filter's equalities plus the value. The RFC says `noTarget` for
//!   `replace`, but Entra sends `replace` for attributes it believes exist, and refusing would leave
//!   the user without the email for good.
//! - `remove` on a value filter that matches nothing succeeds: the state asked for already holds.
//! - A path naming an attribute the schema does not know is a no-op, mirroring
//!   [`resource::normalize`], which drops unknown attributes: IdP mappings routinely include
//!   attributes this server does not keep. A path that does not parse is still `invalidPath`.
//! - `remove` of `members` with a `value` list removes only those members (Entra's default dialect);
//!   without a value it clears the group.
//!
//! # Limits
//! The store applies a PATCH on its single writer thread, so a request's cost delays every other
//! write: 15,000 operations once took 18.7 s while a small `POST /Users` waited behind them.
//! [`parse_request`], which runs before the store sees the request, refuses with `400
//! invalidValue` a request over [`MAX_OPERATIONS`], [`MAX_VALUES_PER_REQUEST`],
//! [`MAX_MEMBER_FILTER_SCANS`] or [`MAX_PATH_FILTER_COMPARISONS`], and any value over the
//! attribute limits of [`resource::check_limits`]. Without the resource type at hand it reads a
//! name as whichever of User or Group defines it; the names both define mean the same in both.
//! [`apply`] then refuses a list that an `add` grows past [`resource::MAX_MULTI_VALUES`].

use crate::scim::error::ScimError;
use crate::scim::filter::{self, AttrRef, CompOp, Filter, PatchPath};
use crate::scim::resource::{self, Assignment, MemberRef, WriteMode};
use crate::scim::schema::{AttrDef, Mutability, ResolvedAttr, ResourceKind};
use serde_json::{Map, Value};

/// Most operations in one PATCH request. Okta and Entra send one per changed attribute, or a few
/// hundred member operations for a large group push, so 1,000 leaves room while bounding the
/// writer-thread time of one request.
pub const MAX_OPERATIONS: usize = 1_000;

/// Most values one PATCH request may carry in all its operations' value lists together: group
/// members (added, removed or replaced, by value list or by `members[value eq …]`) and values of
/// multi-valued attributes. Each member value costs a lookup and a link-table write on the writer
/// thread. Entra batches member changes and Okta splits big pushes into several PATCHes, so an
/// IdP batch stays far below 10,000; a group bigger than that can still be set in one PUT.
pub const MAX_VALUES_PER_REQUEST: usize = 10_000;

/// Most `remove` operations per request whose `members[…]` filter is not a list of member ids
/// (`members[display eq "alice"]`): each one reads every member of the group. IdPs remove by id,
/// which needs no scan.
pub const MAX_MEMBER_FILTER_SCANS: usize = 10;

/// Most comparisons, over all value-filter paths of one request (`emails[type eq "work"]`), that
/// are evaluated against elements (member-id filters are not: they name ids). Each is evaluated
/// against every element of its list; Entra sends one or two per filtered operation.
pub const MAX_PATH_FILTER_COMPARISONS: usize = 1_000;

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

/// Parses a PATCH request body (`schemas`, `Operations`) and checks it against the limits of
/// the module documentation.
pub fn parse_request(body: &Value) -> Result<Vec<PatchOp>, ScimError> {
    let Value::Object(obj) = body else {
        return Err(ScimError::invalid_syntax(
            "a PATCH body must be a JSON object",
        ));
    };
    let ops: Vec<&Value> = match get_ci(obj, "Operations") {
        None => {
            return Err(ScimError::invalid_syntax(
                "a PATCH body needs an Operations list",
            ))
        }
        Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single @ Value::Object(_)) => vec![single],
        Some(_) => {
            return Err(ScimError::invalid_syntax(
                "Operations must be a list of operations",
            ))
        }
    };
    // Counted before any operation is parsed, so an oversized request costs no parsing.
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_value(format!(
            "the request has {} operations; the limit is {MAX_OPERATIONS} per PATCH",
            ops.len()
        )));
    }
    let ops: Vec<PatchOp> = ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| parse_op(op).map_err(|e| at_op(i, e)))
        .collect::<Result<_, _>>()?;
    check_request_limits(&ops)?;
    Ok(ops)
}

/// What a request has used of the per-request limits so far.
#[derive(Default)]
struct Budget {
    values: usize,
    member_scans: usize,
    path_comparisons: usize,
}

impl Budget {
    fn check(&self) -> Result<(), ScimError> {
        let over = |what: &str, n: usize, limit: usize| {
            Err(ScimError::invalid_value(format!(
                "the request has {n} {what}; the limit is {limit} per PATCH"
            )))
        };
        if self.values > MAX_VALUES_PER_REQUEST {
            return over(
                "list values (group members and values of multi-valued attributes)",
                self.values,
                MAX_VALUES_PER_REQUEST,
            );
        }
        if self.member_scans > MAX_MEMBER_FILTER_SCANS {
            return over(
                "member removals by a filter other than member ids",
                self.member_scans,
                MAX_MEMBER_FILTER_SCANS,
            );
        }
        if self.path_comparisons > MAX_PATH_FILTER_COMPARISONS {
            return over(
                "comparisons in value-filter paths",
                self.path_comparisons,
                MAX_PATH_FILTER_COMPARISONS,
            );
        }
        Ok(())
    }
}

fn check_request_limits(ops: &[PatchOp]) -> Result<(), ScimError> {
    let mut budget = Budget::default();
    for (i, op) in ops.iter().enumerate() {
        check_op_limits(op, &mut budget).map_err(|e| at_op(i, e))?;
        // Totals are the request's, not the operation's, so they carry no operation index.
        budget.check()?;
    }
    Ok(())
}

fn check_op_limits(op: &PatchOp, budget: &mut Budget) -> Result<(), ScimError> {
    let target = match &op.path {
        None => None,
        Some(PatchPath::Attr(r)) => Some(resolve_any(r)),
        Some(PatchPath::Value { attr, filter, sub }) => {
            let target = match (resolve_any(attr), sub) {
                // `addresses[type eq "work"].formatted`: the value is the sub-attribute's.
                (Target::Attr { attr, sub: None }, Some(s)) if attr.def.is_complex() => {
                    Target::Attr {
                        attr,
                        sub: Some(attr.def.sub_attr(s)),
                    }
                }
                (t, _) => t,
            };
            let members =
                matches!(&target, Target::Attr { attr, .. } if attr.def.name == "members");
            match member_ids(filter) {
                Some(ids) if members => budget.values += ids.len(),
                _ => {
                    if members && op.op == OpKind::Remove {
                        budget.member_scans += 1;
                    }
                    budget.path_comparisons += filter::cost(filter).comparisons;
                }
            }
            Some(target)
        }
    };
    let Some(value) = &op.value else {
        return Ok(());
    };
    match target {
        None => match value {
            Value::Object(obj) => check_object_limits(obj, None, budget),
            // Refused by `apply`; nothing to measure.
            _ => Ok(()),
        },
        Some(t) => check_target_limits(t, value, budget),
    }
}

/// A path-less value, or the value of a schema-URN path (`scope`): its keys are attributes,
/// resolved the way [`resource::expand_value_object`] resolves them.
fn check_object_limits(
    obj: &Map<String, Value>,
    scope: Option<&'static str>,
    budget: &mut Budget,
) -> Result<(), ScimError> {
    for (key, value) in obj {
        let key = key.trim();
        if value.is_null() || (scope.is_none() && key.eq_ignore_ascii_case("schemas")) {
            continue;
        }
        let r = AttrRef {
            urn: scope.map(str::to_string),
            name: key.to_string(),
            sub: None,
        };
        check_target_limits(resolve_any(&r), value, budget)?;
    }
    Ok(())
}

fn check_target_limits(
    target: Target,
    value: &Value,
    budget: &mut Budget,
) -> Result<(), ScimError> {
    match target {
        Target::Unknown => Ok(()),
        Target::Schema(urn) => match value {
            Value::Object(obj) => check_object_limits(obj, Some(urn), budget),
            _ => Ok(()),
        },
        Target::Attr { attr, sub } => {
            let def = attr.def;
            if !resource::accepts_client_value(def) {
                return Ok(());
            }
            let (checked, label) = match sub {
                // A sub-attribute this schema does not define: nothing is kept.
                Some(None) => return Ok(()),
                Some(Some(sd)) => {
                    if !resource::accepts_client_value(sd) {
                        return Ok(());
                    }
                    (sd, format!("{}.{}", def.name, sd.name))
                }
                None => (def, def.name.to_string()),
            };
            if checked.multi {
                budget.values += match value {
                    Value::Array(items) => items.len(),
                    _ => 1,
                };
            }
            resource::check_limits(checked, value, &label)
        }
    }
}

/// Resolves a path or key as the User schema would, else as the Group one. PATCH is parsed
/// before the resource type is looked at, and the limits only need the attribute's shape, which
/// is the same for the names both define (`displayName`, `externalId`).
fn resolve_any(r: &AttrRef) -> Target {
    for kind in [ResourceKind::User, ResourceKind::Group] {
        match resolve_ref(kind, r) {
            Ok(Target::Unknown) | Err(_) => continue,
            Ok(t) => return t,
        }
    }
    Target::Unknown
}

fn parse_op(op: &Value) -> Result<PatchOp, ScimError> {
    let Value::Object(obj) = op else {
        return Err(ScimError::invalid_syntax(
            "an operation must be a JSON object",
        ));
    };
    let kind = match get_ci(obj, "op") {
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "add" => OpKind::Add,
            "replace" => OpKind::Replace,
            "remove" => OpKind::Remove,
            _ => {
                return Err(ScimError::invalid_syntax(format!(
                    "unknown op {s:?}; expected add, replace or remove"
                )))
            }
        },
        Some(_) => return Err(ScimError::invalid_syntax("op must be a string")),
        None => return Err(ScimError::invalid_syntax("an operation needs an op")),
    };
    let path = match get_ci(obj, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(filter::parse_path(s.trim())?),
        Some(_) => return Err(ScimError::invalid_path("path must be a string")),
    };
    let value = get_ci(obj, "value").filter(|v| !v.is_null()).cloned();
    match (kind, &path, &value) {
        (OpKind::Remove, None, _) => Err(ScimError::no_target("remove needs a path")),
        (OpKind::Add | OpKind::Replace, _, None) => Err(ScimError::invalid_value(format!(
            "{} needs a value",
            op_name(kind)
        ))),
        _ => Ok(PatchOp {
            op: kind,
            path,
            value,
        }),
    }
}

fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn op_name(op: OpKind) -> &'static str {
    match op {
        OpKind::Add => "add",
        OpKind::Replace => "replace",
        OpKind::Remove => "remove",
    }
}

fn at_op(i: usize, mut e: ScimError) -> ScimError {
    e.detail = format!("Operations[{i}]: {}", e.detail);
    e
}

/// Applies operations to a canonical resource (without members). Member changes are returned
/// for the store to apply.
pub fn apply(
    kind: ResourceKind,
    resource: &mut Value,
    ops: &[PatchOp],
) -> Result<Vec<MemberChange>, ScimError> {
    let Value::Object(current) = resource else {
        return Err(ScimError::internal("stored resource is not a JSON object"));
    };
    let mut work = current.clone();
    let mut changes = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        apply_op(kind, &mut work, op, &mut changes).map_err(|e| at_op(i, e))?;
    }
    let finished = resource::finish(kind, work)?;
    // `parse_request` checked every value; what it cannot see is a value a filter path creates
    // (`emails[type eq "…"].value`) and lists growing by one element per operation.
    if let Value::Object(obj) = &finished {
        resource::check_resource_limits(kind, obj, Some(current))?;
    }
    *resource = finished;
    Ok(changes)
}

fn apply_op(
    kind: ResourceKind,
    work: &mut Map<String, Value>,
    op: &PatchOp,
    changes: &mut Vec<MemberChange>,
) -> Result<(), ScimError> {
    match &op.path {
        None => {
            let mode =
                write_mode(op.op).ok_or_else(|| ScimError::no_target("remove needs a path"))?;
            match op.value.as_ref() {
                Some(Value::Object(obj)) => apply_object(kind, work, obj, mode, changes),
                Some(_) => Err(ScimError::invalid_value(format!(
                    "{} without a path needs an object of attributes as its value",
                    op_name(op.op)
                ))),
                None => Err(ScimError::invalid_value(format!(
                    "{} needs a value",
                    op_name(op.op)
                ))),
            }
        }
        Some(PatchPath::Attr(r)) => apply_attr(kind, work, op, r, changes),
        Some(PatchPath::Value { attr, filter, sub }) => {
            apply_filtered(kind, work, op, attr, filter, sub.as_deref(), changes)
        }
    }
}

fn write_mode(op: OpKind) -> Option<WriteMode> {
    match op {
        OpKind::Add => Some(WriteMode::Add),
        OpKind::Replace => Some(WriteMode::Replace),
        OpKind::Remove => None,
    }
}

/// A path-less `add`/`replace`: every attribute of the object is written as if it had been the
/// path. Read-only and unknown keys (Okta's `id` in a rename) are ignored like in a POST body.
fn apply_object(
    kind: ResourceKind,
    work: &mut Map<String, Value>,
    obj: &Map<String, Value>,
    mode: WriteMode,
    changes: &mut Vec<MemberChange>,
) -> Result<(), ScimError> {
    let expanded = resource::expand_value_object(kind, obj)?;
    for a in &expanded.assignments {
        write(work, a, mode)?;
    }
    if let Some(members) = expanded.members {
        push_member_writes(mode, members, changes);
    }
    Ok(())
}

/// Writes an assignment and keeps `primary` exclusive within the list it touched.
fn write(work: &mut Map<String, Value>, a: &Assignment, mode: WriteMode) -> Result<(), ScimError> {
    let def = a.attr.def;
    let len = |work: &Map<String, Value>| {
        let container = match a.attr.extension {
            Some(urn) => work.get(urn).and_then(Value::as_object),
            None => Some(work),
        };
        container
            .and_then(|c| c.get(def.name))
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    };
    let before = len(work);
    let written = resource::write_assignment(work, a, mode)?;
    if def.multi && !written.is_empty() {
        // Checked after each operation, not only at the end: every `add` compares its values
        // with the whole list, so a list left to grow across a thousand operations would make
        // the request quadratic. A list already over the limit may stay as it is.
        let after = len(work);
        if after > resource::MAX_MULTI_VALUES && after > before {
            return Err(ScimError::invalid_value(format!(
                "{} would have {after} values; the limit is {}",
                def.name,
                resource::MAX_MULTI_VALUES
            )));
        }
        let c = resource::container_mut(work, a.attr.extension)?;
        if let Some(list) = c.get_mut(def.name).and_then(Value::as_array_mut) {
            resource::make_primary_exclusive(list, &written);
        }
    }
    Ok(())
}

fn push_member_writes(mode: WriteMode, members: Vec<MemberRef>, changes: &mut Vec<MemberChange>) {
    if mode == WriteMode::Replace {
        changes.push(MemberChange::Clear);
    }
    if !members.is_empty() {
        changes.push(MemberChange::Add(members));
    }
}

/// What an attribute reference of a path names.
enum Target {
    /// A whole schema: `urn:…:enterprise:2.0:User` as a path.
    Schema(&'static str),
    Attr {
        attr: ResolvedAttr,
        /// `None`: no sub-attribute in the path; `Some(None)`: one this schema does not define.
        sub: Option<Option<&'static AttrDef>>,
    },
    /// An attribute the schema does not define.
    Unknown,
}

fn resolve_ref(kind: ResourceKind, r: &AttrRef) -> Result<Target, ScimError> {
    // A bare schema URN may come back split at its last colon (`…:2.0` + `User`).
    if let (Some(u), None) = (&r.urn, &r.sub) {
        let full = format!("{u}:{}", r.name);
        if full.eq_ignore_ascii_case(kind.core().id) {
            return Ok(Target::Schema(kind.core().id));
        }
        if let Some(ext) = kind.extension(&full) {
            return Ok(Target::Schema(ext.id));
        }
    }
    // The path parser may or may not have split the URN off; accept both.
    let (urn, name): (Option<&str>, &str) = match &r.urn {
        Some(u) => (Some(u.as_str()), r.name.as_str()),
        None => kind.split_urn(&r.name),
    };
    let (name, sub) = match (&r.sub, name.split_once('.')) {
        (Some(s), _) => (name, Some(s.as_str())),
        (None, Some((n, s))) if urn.is_some() || !name.contains(':') => (n, Some(s)),
        (None, _) => (name, None),
    };
    if urn.is_none() && sub.is_none() {
        if name.eq_ignore_ascii_case(kind.core().id) {
            return Ok(Target::Schema(kind.core().id));
        }
        if let Some(ext) = kind.extension(name) {
            return Ok(Target::Schema(ext.id));
        }
    }
    let Some(attr) = resource::resolve_lenient(kind, urn, name) else {
        return Ok(Target::Unknown);
    };
    let sub = match sub {
        None => None,
        Some(s) => {
            if !attr.def.is_complex() {
                return Err(ScimError::invalid_path(format!(
                    "{} has no sub-attributes (path names {}.{s})",
                    attr.def.name, attr.def.name
                )));
            }
            Some(attr.def.sub_attr(s))
        }
    };
    Ok(Target::Attr { attr, sub })
}

fn check_writable(def: &AttrDef, label: &str) -> Result<(), ScimError> {
    if def.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!(
            "{label} is read-only and cannot be modified"
        )));
    }
    Ok(())
}

fn apply_attr(
    kind: ResourceKind,
    work: &mut Map<String, Value>,
    op: &PatchOp,
    r: &AttrRef,
    changes: &mut Vec<MemberChange>,
) -> Result<(), ScimError> {
    let (attr, sub) = match resolve_ref(kind, r)? {
        Target::Unknown => return Ok(()),
        Target::Schema(urn) => return apply_schema(kind, work, op, urn, changes),
        Target::Attr { attr, sub } => (attr, sub),
    };
    let def = attr.def;
    if resource::is_group_members(kind, def) {
        return member_op(op, None, sub.map(|s| s.map_or("", |d| d.name)), changes);
    }
    check_writable(def, def.name)?;
    if def.mutability == Mutability::WriteOnly {
        // `password`: accepted and discarded, like in a POST body.
        return Ok(());
    }
    match sub {
        Some(None) => Ok(()),
        Some(Some(sd)) => {
            let label = format!("{}.{}", def.name, sd.name);
            check_writable(sd, &label)?;
            if sd.mutability == Mutability::WriteOnly {
                return Ok(());
            }
            if def.multi {
                apply_sub_all(work, op, attr, sd, &label)
            } else {
                apply_sub_single(work, op, attr, sd, &label)
            }
        }
        None => apply_whole(work, op, attr),
    }
}

/// A path that is a schema URN: the value is that schema's attributes.
fn apply_schema(
    kind: ResourceKind,
    work: &mut Map<String, Value>,
    op: &PatchOp,
    urn: &'static str,
    changes: &mut Vec<MemberChange>,
) -> Result<(), ScimError> {
    let Some(mode) = write_mode(op.op) else {
        if urn == kind.core().id {
            return Err(ScimError::invalid_value(
                "the core schema cannot be removed",
            ));
        }
        work.remove(urn);
        return Ok(());
    };
    match op.value.as_ref() {
        Some(Value::Object(obj)) => {
            let mut wrapped = Map::new();
            wrapped.insert(urn.to_string(), Value::Object(obj.clone()));
            apply_object(kind, work, &wrapped, mode, changes)
        }
        _ => Err(ScimError::invalid_value(format!(
            "a value for {urn} must be an object of its attributes"
        ))),
    }
}

fn op_value(op: &PatchOp) -> Result<&Value, ScimError> {
    op.value
        .as_ref()
        .ok_or_else(|| ScimError::invalid_value(format!("{} needs a value", op_name(op.op))))
}

/// `add`/`replace`/`remove` on a whole attribute (`active`, `emails`, `name`, `…:manager`).
fn apply_whole(
    work: &mut Map<String, Value>,
    op: &PatchOp,
    attr: ResolvedAttr,
) -> Result<(), ScimError> {
    let def = attr.def;
    let Some(mode) = write_mode(op.op) else {
        if def.required {
            return Err(ScimError::invalid_value(format!(
                "{} is required and cannot be removed",
                def.name
            )));
        }
        let c = resource::container_mut(work, attr.extension)?;
        match (&op.value, def.multi) {
            // Entra's member-removal shape applied to any list: remove only the values named.
            (Some(v), true) => {
                let Some(Value::Array(gone)) = resource::coerce(def, v, def.name)? else {
                    return Ok(());
                };
                if let Some(list) = c.get_mut(def.name).and_then(Value::as_array_mut) {
                    list.retain(|el| !gone.iter().any(|g| resource::same_element(def, el, g)));
                }
            }
            _ => {
                c.remove(def.name);
            }
        }
        return Ok(());
    };
    let Some(value) = resource::coerce(def, op_value(op)?, def.name)? else {
        return Ok(());
    };
    write(
        work,
        &Assignment {
            attr,
            sub: None,
            value,
        },
        mode,
    )
}

/// A sub-attribute of a single-valued complex attribute (`name.givenName`, `…:manager.value`).
fn apply_sub_single(
    work: &mut Map<String, Value>,
    op: &PatchOp,
    attr: ResolvedAttr,
    sd: &'static AttrDef,
    label: &str,
) -> Result<(), ScimError> {
    let def = attr.def;
    let Some(mode) = write_mode(op.op) else {
        let c = resource::container_mut(work, attr.extension)?;
        if let Some(obj) = c.get_mut(def.name).and_then(Value::as_object_mut) {
            obj.remove(sd.name);
        }
        return Ok(());
    };
    let Some(value) = resource::coerce_single(sd, op_value(op)?, label)? else {
        return Ok(());
    };
    write(
        work,
        &Assignment {
            attr,
            sub: Some(sd),
            value,
        },
        mode,
    )
}

/// A sub-attribute of every element of a multi-valued attribute (`emails.type`): RFC 7644 applies
/// an unfiltered path to all values.
fn apply_sub_all(
    work: &mut Map<String, Value>,
    op: &PatchOp,
    attr: ResolvedAttr,
    sd: &'static AttrDef,
    label: &str,
) -> Result<(), ScimError> {
    let def = attr.def;
    let value = match op.op {
        OpKind::Remove => None,
        _ => match resource::coerce_single(sd, op_value(op)?, label)? {
            Some(v) => Some(v),
            None => return Ok(()),
        },
    };
    let c = resource::container_mut(work, attr.extension)?;
    let mut list = take_list(c, def.name);
    let mut written = Vec::new();
    match value {
        None => {
            let mut touched = Vec::new();
            for (i, el) in list.iter_mut().enumerate() {
                if let Some(obj) = el.as_object_mut() {
                    obj.remove(sd.name);
                    touched.push(i);
                }
            }
            // Without the sub-attribute, two elements may now be one value (`type` removed
            // from a work and a home copy of one address).
            fold_written_duplicates(def, &mut list, &touched);
        }
        Some(v) => {
            if list.is_empty() {
                list.push(Value::Object(Map::new()));
            }
            for (i, el) in list.iter_mut().enumerate() {
                if let Some(obj) = el.as_object_mut() {
                    obj.insert(sd.name.to_string(), v.clone());
                    resource::tidy_element(def, obj);
                    written.push(i);
                }
            }
            // The same value written into every element can make them equal (found by
            // fuzzing: `replace emails.value` on a list of two addresses).
            written = fold_written_duplicates(def, &mut list, &written);
        }
    }
    resource::make_primary_exclusive(&mut list, &written);
    c.insert(def.name.to_string(), Value::Array(list));
    Ok(())
}

fn take_list(c: &mut Map<String, Value>, name: &str) -> Vec<Value> {
    match c.remove(name) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other],
    }
}

/// `attr[filter]` and `attr[filter].sub`.
fn apply_filtered(
    kind: ResourceKind,
    work: &mut Map<String, Value>,
    op: &PatchOp,
    attr_ref: &AttrRef,
    filter: &Filter,
    sub: Option<&str>,
    changes: &mut Vec<MemberChange>,
) -> Result<(), ScimError> {
    let (attr, ref_sub) = match resolve_ref(kind, attr_ref)? {
        Target::Unknown => return Ok(()),
        Target::Schema(urn) => {
            return Err(ScimError::invalid_path(format!(
                "a value filter cannot select from the schema {urn}"
            )))
        }
        Target::Attr { attr, sub } => (attr, sub),
    };
    if ref_sub.is_some() {
        return Err(ScimError::invalid_path(
            "a value filter must follow the attribute name (attr[filter].sub)",
        ));
    }
    let def = attr.def;
    if resource::is_group_members(kind, def) {
        return member_op(op, Some(filter), sub, changes);
    }
    check_writable(def, def.name)?;
    if def.mutability == Mutability::WriteOnly {
        return Ok(());
    }
    if !def.multi || !def.is_complex() {
        return Err(ScimError::invalid_path(format!(
            "{} is not a multi-valued complex attribute, so a value filter cannot select from it",
            def.name
        )));
    }
    let sub_def = match sub {
        None => None,
        Some(s) => match def.sub_attr(s) {
            Some(sd) => {
                let label = format!("{}.{}", def.name, sd.name);
                check_writable(sd, &label)?;
                if sd.mutability == Mutability::WriteOnly {
                    return Ok(());
                }
                Some(sd)
            }
            // Unknown sub-attribute: like an unknown attribute, nothing to keep.
            None => return Ok(()),
        },
    };

    let c = resource::container_mut(work, attr.extension)?;
    let mut list = take_list(c, def.name);
    let matched: Vec<usize> = list
        .iter()
        .enumerate()
        .filter(|(_, el)| filter::matches_element(filter, def, el))
        .map(|(i, _)| i)
        .collect();

    let result = match write_mode(op.op) {
        None => {
            remove_filtered(&mut list, &matched, sub_def);
            Ok(())
        }
        Some(mode) => write_filtered(&mut list, &matched, def, filter, sub_def, op, mode),
    };
    c.insert(def.name.to_string(), Value::Array(list));
    result
}

fn remove_filtered(list: &mut Vec<Value>, matched: &[usize], sub_def: Option<&AttrDef>) {
    match sub_def {
        None => {
            let mut i = 0;
            list.retain(|_| {
                let keep = !matched.contains(&i);
                i += 1;
                keep
            });
        }
        Some(sd) => {
            for &i in matched {
                if let Some(obj) = list.get_mut(i).and_then(Value::as_object_mut) {
                    obj.remove(sd.name);
                }
            }
        }
    }
}

fn write_filtered(
    list: &mut Vec<Value>,
    matched: &[usize],
    def: &AttrDef,
    filter: &Filter,
    sub_def: Option<&'static AttrDef>,
    op: &PatchOp,
    mode: WriteMode,
) -> Result<(), ScimError> {
    // What to write into each selected element: one sub-attribute, or a whole element.
    let patch: Map<String, Value> = match sub_def {
        Some(sd) => {
            let label = format!("{}.{}", def.name, sd.name);
            let Some(v) = resource::coerce_single(sd, op_value(op)?, &label)? else {
                return Ok(());
            };
            Map::from_iter([(sd.name.to_string(), v)])
        }
        None => match resource::coerce(def, op_value(op)?, def.name)? {
            Some(Value::Array(mut items)) if items.len() <= 1 => match items.pop() {
                Some(Value::Object(obj)) => obj,
                _ => return Ok(()),
            },
            Some(_) => {
                return Err(ScimError::invalid_value(format!(
                    "a value for a filtered {} path must be a single element",
                    def.name
                )))
            }
            None => return Ok(()),
        },
    };

    let written: Vec<usize> = if matched.is_empty() {
        let Some(mut element) = filter_equalities(filter, def) else {
            return Err(ScimError::no_target(format!(
                "no element of {} matches the filter, and the filter does not say what a new \
                 element would hold (only eq and and can)",
                def.name
            )));
        };
        element.extend(patch);
        resource::tidy_element(def, &mut element);
        list.push(Value::Object(element));
        vec![list.len() - 1]
    } else {
        for &i in matched {
            let Some(el) = list.get_mut(i) else { continue };
            // RFC 7644 §3.5.2.3: a filtered replace without sub-attribute replaces each matching
            // value; everything else merges into it.
            if mode == WriteMode::Replace && sub_def.is_none() {
                *el = Value::Object(patch.clone());
            } else if let Some(obj) = el.as_object_mut() {
                obj.extend(patch.clone());
            }
            if let Some(obj) = el.as_object_mut() {
                resource::tidy_element(def, obj);
            }
        }
        matched.to_vec()
    };
    let written = fold_written_duplicates(def, list, &written);
    resource::make_primary_exclusive(list, &written);
    Ok(())
}

/// A filtered write can turn an element into a copy of another: `replace` of
/// `emails[type eq "work"]` with a bare address leaves `{"value": …}`, which another element may
/// already be. Each written element is folded into an equal one (`resource::same_element`), as
/// an `add` of it would have been, so the list holds no duplicates (RFC 7643 §2.4) and a PUT of
/// the result stores the same thing. Returns where the written elements are now.
fn fold_written_duplicates(def: &AttrDef, list: &mut Vec<Value>, written: &[usize]) -> Vec<usize> {
    let old = std::mem::take(list);
    let mut is_written: Vec<bool> = Vec::with_capacity(old.len());
    let mut landed = Vec::with_capacity(written.len());
    for (i, el) in old.into_iter().enumerate() {
        let w = written.contains(&i);
        let same = list
            .iter()
            .zip(&is_written)
            .position(|(e, &ew)| (w || ew) && resource::same_element(def, e, &el));
        match same {
            Some(j) => {
                if let (Some(Value::Object(kept)), Value::Object(new)) = (list.get_mut(j), el) {
                    for (k, v) in new {
                        // What this request wrote wins over what was stored.
                        if w || !kept.contains_key(&k) {
                            kept.insert(k, v);
                        }
                    }
                }
                if w {
                    landed.push(j);
                }
                if let Some(flag) = is_written.get_mut(j) {
                    *flag |= w;
                }
            }
            None => {
                list.push(el);
                is_written.push(w);
                if w {
                    landed.push(list.len() - 1);
                }
            }
        }
    }
    landed.sort_unstable();
    landed.dedup();
    landed
}

/// The element a filter describes, when it is a conjunction of equalities on known
/// sub-attributes (`type eq "work"`, `primary eq "True"` → `primary: true`).
fn filter_equalities(filter: &Filter, def: &AttrDef) -> Option<Map<String, Value>> {
    match filter {
        Filter::Compare(r, CompOp::Eq, v) => {
            let sd = def.sub_attr(element_attr_name(r, def)?)?;
            let v = resource::coerce_single(sd, v, sd.name).ok()??;
            Some(Map::from_iter([(sd.name.to_string(), v)]))
        }
        Filter::And(parts) => {
            let mut out = Map::new();
            for p in parts {
                out.extend(filter_equalities(p, def)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// The sub-attribute an inner-filter reference names: `type`, or `emails.type` written in full.
fn element_attr_name<'a>(r: &'a AttrRef, parent: &AttrDef) -> Option<&'a str> {
    match &r.sub {
        None => Some(r.name.as_str()),
        Some(s) if r.name.eq_ignore_ascii_case(parent.name) => Some(s.as_str()),
        Some(_) => None,
    }
}

/// Operations on a group's `members`, which become [`MemberChange`]s for the store.
fn member_op(
    op: &PatchOp,
    filter: Option<&Filter>,
    sub: Option<&str>,
    changes: &mut Vec<MemberChange>,
) -> Result<(), ScimError> {
    if let Some(s) = sub {
        if op.op == OpKind::Remove && !s.eq_ignore_ascii_case("value") {
            // Only the member id is stored; there is no display or type to remove.
            return Ok(());
        }
        return Err(ScimError::mutability(format!(
            "members.{s} is immutable; add or remove the member instead"
        )));
    }
    match (op.op, filter) {
        (OpKind::Remove, Some(f)) => {
            changes.push(match member_ids(f) {
                Some(ids) => MemberChange::Remove(ids),
                None => MemberChange::RemoveWhere(f.clone()),
            });
        }
        (OpKind::Remove, None) => match &op.value {
            Some(v) => {
                let ids: Vec<String> = resource::member_refs(v)?
                    .into_iter()
                    .map(|m| m.value)
                    .collect();
                // An empty list names no member; it must never clear the group.
                if !ids.is_empty() {
                    changes.push(MemberChange::Remove(ids));
                }
            }
            None => changes.push(MemberChange::Clear),
        },
        (OpKind::Add | OpKind::Replace, Some(_)) => {
            return Err(ScimError::mutability(
                "members cannot be modified through a filter; use add or remove with path \
                 \"members\"",
            ))
        }
        (OpKind::Add, None) => {
            let members = resource::member_refs(op_value(op)?)?;
            push_member_writes(WriteMode::Add, members, changes);
        }
        (OpKind::Replace, None) => {
            let members = resource::member_refs(op_value(op)?)?;
            push_member_writes(WriteMode::Replace, members, changes);
        }
    }
    Ok(())
}

/// The member ids a filter names when it is `value eq "…"` or an `or` of those.
fn member_ids(f: &Filter) -> Option<Vec<String>> {
    match f {
        Filter::Compare(r, CompOp::Eq, Value::String(id)) if is_member_value(r) => {
            Some(vec![id.clone()])
        }
        Filter::Or(parts) => {
            let mut ids = Vec::new();
            for p in parts {
                for id in member_ids(p)? {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            Some(ids)
        }
        _ => None,
    }
}

fn is_member_value(r: &AttrRef) -> bool {
    r.urn.is_none()
        && match &r.sub {
            None => r.name.eq_ignore_ascii_case("value"),
            Some(s) => r.name.eq_ignore_ascii_case("members") && s.eq_ignore_ascii_case("value"),
        }
}

#[cfg(test)]
// Tests fail loudly on purpose.
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::scim::error::ScimType;
    use crate::scim::resource::normalize;
    use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, PATCH_OP_SCHEMA, USER_SCHEMA};
    use serde_json::json;

    const BJ: &str = "2819c223-7f76-453a-919d-413861904646";
    const JS: &str = "08e1d05d-121c-4561-8b96-473d93df9210";

    fn body(ops: Value) -> Value {
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops})
    }

    fn patch(
        kind: ResourceKind,
        res: &mut Value,
        ops: Value,
    ) -> Result<Vec<MemberChange>, ScimError> {
        let ops = parse_request(&body(ops))?;
        apply(kind, res, &ops)
    }

    fn user_patch(res: &mut Value, ops: Value) -> Vec<MemberChange> {
        patch(ResourceKind::User, res, ops).unwrap()
    }

    fn group_patch(res: &mut Value, ops: Value) -> Vec<MemberChange> {
        patch(ResourceKind::Group, res, ops).unwrap()
    }

    fn user_err(res: &mut Value, ops: Value) -> ScimError {
        let before = res.clone();
        let e = patch(ResourceKind::User, res, ops).unwrap_err();
        assert_eq!(*res, before, "a failed PATCH must not change the resource");
        e
    }

    fn bjensen() -> Value {
        normalize(
            ResourceKind::User,
            &json!({
                "userName": "bjensen",
                "name": {"givenName": "Barbara", "familyName": "Jensen"},
                "emails": [
                    {"value": "bjensen@example.com", "type": "work", "primary": true},
                    {"value": "babs@jensen.org", "type": "home"}
                ],
                "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood"}],
                "active": true
            }),
        )
        .unwrap()
        .resource
    }

    fn group() -> Value {
        normalize(ResourceKind::Group, &json!({"displayName": "Tour Guides"}))
            .unwrap()
            .resource
    }

    fn add(ids: &[&str]) -> MemberChange {
        MemberChange::Add(
            ids.iter()
                .map(|i| MemberRef {
                    value: i.to_string(),
                })
                .collect(),
        )
    }

    fn remove(ids: &[&str]) -> MemberChange {
        MemberChange::Remove(ids.iter().map(|i| i.to_string()).collect())
    }

    // RFC 7644 §3.5.2.1, add.

    #[test]
    fn rfc_add_members() {
        let mut g = group();
        let ch = group_patch(
            &mut g,
            json!([{
                "op": "add",
                "path": "members",
                "value": [{
                    "display": "Babs Jensen",
                    "$ref": format!("https://example.com/v2/Users/{BJ}"),
                    "value": BJ
                }]
            }]),
        );
        assert_eq!(ch, vec![add(&[BJ])]);
        assert_eq!(g, group(), "members never enter the group document");
    }

    #[test]
    fn rfc_add_without_path() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{
                "op": "add",
                "value": {
                    "emails": [{"value": "babs@jensen.org", "type": "home"}, {"value": "b@new.org", "type": "other"}],
                    "nickname": "Babs"
                }
            }]),
        );
        assert_eq!(u["nickName"], "Babs");
        assert_eq!(
            u["emails"],
            json!([
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"},
                {"value": "b@new.org", "type": "other"}
            ]),
            "add appends, and an existing value is not duplicated"
        );
    }

    #[test]
    fn rfc_add_single_valued_sets_and_complex_merges() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([
                {"op": "add", "path": "title", "value": "Tour Guide"},
                {"op": "add", "path": "name", "value": {"middleName": "Jane"}}
            ]),
        );
        assert_eq!(u["title"], "Tour Guide");
        assert_eq!(
            u["name"],
            json!({"givenName": "Barbara", "familyName": "Jensen", "middleName": "Jane"})
        );
    }

    // RFC 7644 §3.5.2.2, remove.

    #[test]
    fn rfc_remove_single_member() {
        let mut g = group();
        let ch = group_patch(
            &mut g,
            json!([{"op": "remove", "path": format!("members[value eq \"{BJ}\"]")}]),
        );
        assert_eq!(ch, vec![remove(&[BJ])]);
    }

    #[test]
    fn rfc_remove_all_members() {
        let mut g = group();
        let ch = group_patch(&mut g, json!([{"op": "remove", "path": "members"}]));
        assert_eq!(ch, vec![MemberChange::Clear]);
    }

    #[test]
    fn rfc_remove_then_add_member() {
        let mut g = group();
        let ch = group_patch(
            &mut g,
            json!([
                {"op": "remove", "path": format!("members[value eq \"{BJ}\"]")},
                {"op": "add", "path": "members", "value": [{
                    "display": "James Smith",
                    "$ref": format!("https://example.com/v2/Users/{JS}"),
                    "value": JS
                }]}
            ]),
        );
        assert_eq!(ch, vec![remove(&[BJ]), add(&[JS])]);
    }

    #[test]
    fn rfc_replace_all_members_by_remove_then_add() {
        let mut g = group();
        let ch = group_patch(
            &mut g,
            json!([
                {"op": "remove", "path": "members"},
                {"op": "add", "path": "members", "value": [
                    {"display": "Babs Jensen", "$ref": format!("https://example.com/v2/Users/{BJ}"), "value": BJ},
                    {"display": "James Smith", "$ref": format!("https://example.com/v2/Users/{JS}"), "value": JS}
                ]}
            ]),
        );
        assert_eq!(ch, vec![MemberChange::Clear, add(&[BJ, JS])]);
    }

    #[test]
    fn rfc_remove_by_complex_filter() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{"op": "remove", "path": "emails[type eq \"work\" and value ew \"example.com\"]"}]),
        );
        assert_eq!(
            u["emails"],
            json!([{"value": "babs@jensen.org", "type": "home"}])
        );
    }

    #[test]
    fn rfc_remove_certificate_by_value() {
        let cert = "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx";
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{"op": "add", "path": "x509Certificates", "value": [{"value": cert}]}]),
        );
        assert_eq!(u["x509Certificates"], json!([{"value": cert}]));
        user_patch(
            &mut u,
            json!([{"op": "remove", "path": format!("x509certificates[value eq \"{cert}\"]")}]),
        );
        assert!(u.get("x509Certificates").is_none());
    }

    #[test]
    fn rfc_remove_single_valued_attribute() {
        let mut u = bjensen();
        user_patch(&mut u, json!([{"op": "remove", "path": "name.givenName"}]));
        assert_eq!(u["name"], json!({"familyName": "Jensen"}));
        user_patch(
            &mut u,
            json!([{"op": "remove", "path": "name"}, {"op": "remove", "path": "active"}]),
        );
        assert!(u.get("name").is_none() && u.get("active").is_none());
    }

    // RFC 7644 §3.5.2.3, replace.

    #[test]
    fn rfc_replace_members() {
        let mut g = group();
        let ch = group_patch(
            &mut g,
            json!([{
                "op": "replace",
                "path": "members",
                "value": [
                    {"display": "Babs Jensen", "$ref": format!("https://example.com/v2/Users/{BJ}"), "value": BJ},
                    {"display": "James Smith", "$ref": format!("https://example.com/v2/Users/{JS}"), "value": JS}
                ]
            }]),
        );
        assert_eq!(ch, vec![MemberChange::Clear, add(&[BJ, JS])]);
    }

    /// Found by fuzzing: a sub-attribute written into (or removed from) every element can make
    /// two elements one value; they are folded, as a PUT of the result would.
    #[test]
    fn a_sub_attribute_write_to_every_element_never_leaves_two_equal_elements() {
        let mut res = bjensen();
        user_patch(
            &mut res,
            json!([{"op": "replace", "path": "emails.value", "value": "same@example.com"}]),
        );
        assert_eq!(
            res["emails"].as_array().unwrap().len(),
            2,
            "{}",
            res["emails"]
        );
        user_patch(&mut res, json!([{"op": "remove", "path": "emails.type"}]));
        assert_eq!(
            res["emails"].as_array().unwrap().len(),
            1,
            "{}",
            res["emails"]
        );
        assert_eq!(normalize(ResourceKind::User, &res).unwrap().resource, res);
    }

    /// Found by fuzzing: a `replace` of a whole multi-valued attribute kept two elements of the
    /// request that denote one value (a POST or PUT of the same list folds them).
    #[test]
    fn a_whole_list_replace_never_keeps_two_equal_elements() {
        let mut res = bjensen();
        user_patch(
            &mut res,
            json!([{"op": "replace", "path": "emails", "value": [
                {"value": "x@example.com"},
                {"value": "x@example.com", "unknown": "dropped"},
                {"value": "y@example.com", "type": "home"},
                {"value": "X@example.com", "primary": true}
            ]}]),
        );
        assert_eq!(
            res["emails"],
            json!([{"value": "X@example.com", "primary": true}, {"value": "y@example.com", "type": "home"}])
        );
        assert_eq!(normalize(ResourceKind::User, &res).unwrap().resource, res);
    }

    /// Found by fuzzing: a filtered `replace` with a bare value turned the matched element into a
    /// copy of another one, and the stored list kept both (a PUT of the same document folds them).
    #[test]
    fn a_filtered_write_never_leaves_two_equal_elements() {
        let mut res = bjensen();
        let by_type = |op: &str| json!({"op": op, "path": "emails[type eq \"work\"]", "value": "x@example.com"});
        user_patch(
            &mut res,
            json!([by_type("replace"), by_type("add"), by_type("replace")]),
        );
        assert_eq!(
            res["emails"],
            json!([{"value": "x@example.com"}, {"value": "babs@jensen.org", "type": "home"}])
        );
        assert_eq!(normalize(ResourceKind::User, &res).unwrap().resource, res);

        // A sub-attribute write that makes an element equal to another folds it into that one,
        // and what the request wrote wins.
        let mut res = bjensen();
        user_patch(
            &mut res,
            json!([{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "BJENSEN@example.com"},
                   {"op": "replace", "path": "emails[type eq \"home\"].type", "value": "work"}]),
        );
        assert_eq!(
            res["emails"],
            json!([{"value": "BJENSEN@example.com", "type": "work", "primary": true}])
        );
    }

    #[test]
    fn rfc_replace_address_by_filter() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{
                "op": "replace",
                "path": "addresses[type eq \"work\"]",
                "value": {
                    "type": "work",
                    "streetAddress": "911 Universal City Plaza",
                    "locality": "Hollywood",
                    "region": "CA",
                    "postalCode": "91608",
                    "country": "US",
                    "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US",
                    "primary": true
                }
            }]),
        );
        assert_eq!(
            u["addresses"],
            json!([{
                "type": "work",
                "streetAddress": "911 Universal City Plaza",
                "locality": "Hollywood",
                "region": "CA",
                "postalCode": "91608",
                "country": "US",
                "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US",
                "primary": true
            }])
        );
    }

    #[test]
    fn rfc_replace_street_address_by_filter() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{"op": "replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1010 Broadway Ave"}]),
        );
        assert_eq!(
            u["addresses"],
            json!([{"type": "work", "streetAddress": "1010 Broadway Ave", "locality": "Hollywood"}])
        );
    }

    #[test]
    fn rfc_replace_without_path() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{
                "op": "replace",
                "value": {
                    "emails": [
                        {"value": "bjensen@example.com", "type": "work", "primary": true},
                        {"value": "babs@jensen.org", "type": "home"}
                    ],
                    "nickname": "Babs"
                }
            }]),
        );
        assert_eq!(
            u["emails"],
            json!([
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ])
        );
        assert_eq!(u["nickName"], "Babs");
    }

    #[test]
    fn rfc_replace_multi_valued_replaces_the_list() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{"op": "replace", "path": "emails", "value": [{"value": "only@x.com", "type": "work"}]}]),
        );
        assert_eq!(
            u["emails"],
            json!([{"value": "only@x.com", "type": "work"}])
        );
        user_patch(
            &mut u,
            json!([{"op": "replace", "path": "emails", "value": []}]),
        );
        assert!(u.get("emails").is_none());
    }

    // shared/idp-scim-behaviors.md §4, items 1–12.

    #[test]
    fn checklist_01_op_case_insensitive() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([
                {"op": "Add", "path": "nickName", "value": "Babs"},
                {"op": "Replace", "path": "title", "value": "Guide"},
                {"op": "REPLACE", "path": "active", "value": "False"},
                {"op": "Remove", "path": "title"}
            ]),
        );
        assert_eq!(u["nickName"], "Babs");
        assert_eq!(u["active"], false);
        assert!(u.get("title").is_none());
        let e = parse_request(&body(
            json!([{"op": "Update", "path": "title", "value": "x"}]),
        ))
        .unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
        assert!(e.detail.contains("Update"), "{}", e.detail);
    }

    #[test]
    fn checklist_02_attribute_names_and_urns_case_insensitive() {
        let mut g = group();
        group_patch(
            &mut g,
            json!([{"op": "Replace", "path": "DisplayName", "value": "Guides"}]),
        );
        assert_eq!(g["displayName"], "Guides");
        assert!(g.get("DisplayName").is_none());

        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([
                {"op": "replace", "path": "Emails[Type eq \"work\"].Value", "value": "barbara@example.com"},
                {"op": "add", "path": "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:EmployeeNumber", "value": "7"},
                {"op": "add", "path": "phoneNumbers", "value": [{"Value": "555", "Primary": "True", "Type": "work"}]}
            ]),
        );
        assert_eq!(u["emails"][0]["value"], "barbara@example.com");
        assert_eq!(u[ENTERPRISE_USER_SCHEMA], json!({"employeeNumber": "7"}));
        assert_eq!(
            u["phoneNumbers"],
            json!([{"value": "555", "primary": true, "type": "work"}])
        );
        let p =
            parse_request(&json!({"operations": [{"OP": "add", "PATH": "title", "VALUE": "t"}]}))
                .unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].op, OpKind::Add);
    }

    #[test]
    fn checklist_03_pathless_object_values() {
        // Okta deactivate and reactivate.
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{"op": "replace", "value": {"active": false}}]),
        );
        assert_eq!(u["active"], false);
        user_patch(
            &mut u,
            json!([{"op": "replace", "value": {"active": true}}]),
        );
        assert_eq!(u["active"], true);

        // Okta group rename, sent with every membership update: `id` is ignored, members untouched.
        let mut g = group();
        let ch = group_patch(
            &mut g,
            json!([{"op": "replace", "value": {"id": "a1b2c3", "displayName": "Tour Guides EMEA"}}]),
        );
        assert!(ch.is_empty());
        assert_eq!(
            g,
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Tour Guides EMEA"})
        );

        // Entra with aadOptscim062020: dotted and URN-qualified keys.
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{
                "op": "replace",
                "value": {
                    "displayName": "Babs J",
                    "name.givenName": "Babs",
                    "name.familyName": "Jensen-Smith",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "701984"
                }
            }]),
        );
        assert_eq!(u["displayName"], "Babs J");
        assert_eq!(
            u["name"],
            json!({"givenName": "Babs", "familyName": "Jensen-Smith"})
        );
        assert_eq!(
            u[ENTERPRISE_USER_SCHEMA],
            json!({"employeeNumber": "701984"})
        );
        assert_eq!(u["schemas"], json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]));
        assert!(u.get("name.givenName").is_none());
    }

    #[test]
    fn checklist_04_extension_paths() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "42"},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "m-1"},
                {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Sales"}
            ]),
        );
        assert_eq!(
            u[ENTERPRISE_USER_SCHEMA],
            json!({"employeeNumber": "42", "manager": {"value": "m-1"}, "department": "Sales"})
        );
        user_patch(
            &mut u,
            json!([{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "value": "m-2"}]),
        );
        assert_eq!(
            u[ENTERPRISE_USER_SCHEMA]["manager"],
            json!({"value": "m-2"})
        );
        user_patch(
            &mut u,
            json!([
                {"op": "Remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"},
                {"op": "Remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"},
                {"op": "Remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}
            ]),
        );
        assert!(u.get(ENTERPRISE_USER_SCHEMA).is_none());
        assert_eq!(u["schemas"], json!([USER_SCHEMA]));
    }

    #[test]
    fn checklist_05_value_filter_paths_create_missing_elements() {
        let mut u = normalize(ResourceKind::User, &json!({"userName": "newhire"}))
            .unwrap()
            .resource;
        user_patch(
            &mut u,
            json!([
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "newhire@contoso.com"},
                {"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"},
                {"op": "Add", "path": "addresses[type eq \"work\"].formatted", "value": "1 Microsoft Way"},
                {"op": "Add", "path": "roles[primary eq \"True\"].value", "value": "Admin"}
            ]),
        );
        assert_eq!(
            u["emails"],
            json!([{"type": "work", "value": "newhire@contoso.com"}])
        );
        assert_eq!(
            u["phoneNumbers"],
            json!([{"type": "mobile", "value": "+1 555 0100"}])
        );
        assert_eq!(
            u["addresses"],
            json!([{"type": "work", "formatted": "1 Microsoft Way"}])
        );
        assert_eq!(u["roles"], json!([{"primary": true, "value": "Admin"}]));

        // Matching elements are modified in place, not duplicated.
        user_patch(
            &mut u,
            json!([
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "nh@contoso.com"},
                {"op": "replace", "path": "roles[primary eq \"True\"].value", "value": "Member"}
            ]),
        );
        assert_eq!(
            u["emails"],
            json!([{"type": "work", "value": "nh@contoso.com"}])
        );
        assert_eq!(u["roles"], json!([{"primary": true, "value": "Member"}]));

        // Remove on a filter that matches nothing succeeds and changes nothing.
        let before = u.clone();
        user_patch(
            &mut u,
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        );
        assert_eq!(u, before);
    }

    #[test]
    fn checklist_06_string_booleans() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        );
        assert_eq!(u["active"], false);
        user_patch(
            &mut u,
            json!([{"op": "replace", "path": "active", "value": "true"}]),
        );
        assert_eq!(u["active"], true);
        user_patch(
            &mut u,
            json!([{"op": "Add", "path": "active", "value": "false"}]),
        );
        assert_eq!(u["active"], false);
        user_patch(
            &mut u,
            json!([{"op": "replace", "value": {"active": "True"}}]),
        );
        assert_eq!(u["active"], true);
        user_patch(
            &mut u,
            json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": "True"}]),
        );
        assert_eq!(u["emails"][1]["primary"], true);
        let posted = normalize(
            ResourceKind::User,
            &json!({"userName": "p", "active": "True"}),
        )
        .unwrap();
        assert_eq!(posted.resource["active"], true);
        let e = user_err(
            &mut u,
            json!([{"op": "replace", "path": "active", "value": "nope"}]),
        );
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(e.detail.contains("active"));
    }

    #[test]
    fn checklist_07_single_values_where_lists_or_objects_are_expected() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "26118915-6090-4610-87a4-ffed91a12a8a"}]),
        );
        assert_eq!(
            u[ENTERPRISE_USER_SCHEMA]["manager"],
            json!({"value": "26118915-6090-4610-87a4-ffed91a12a8a"})
        );
        // Older Entra docs: `path: "manager"` with a one-element list.
        user_patch(
            &mut u,
            json!([{"op": "replace", "path": "manager", "value": [{"$ref": "../Users/m2", "value": "m2"}]}]),
        );
        assert_eq!(
            u[ENTERPRISE_USER_SCHEMA]["manager"],
            json!({"$ref": "../Users/m2", "value": "m2"})
        );

        let mut g = group();
        let ch = group_patch(
            &mut g,
            json!([
                {"op": "Add", "path": "members", "value": "u1"},
                {"op": "Add", "path": "members", "value": {"value": "u2"}},
                {"op": "Add", "path": "members", "value": [{"$ref": null, "value": "u3"}]}
            ]),
        );
        assert_eq!(ch, vec![add(&["u1"]), add(&["u2"]), add(&["u3"])]);
    }

    #[test]
    fn checklist_08_stringified_role_values() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{"op": "Add", "path": "roles", "value": [{"value": "{\"id\":\"06b07648-ecfe-589f-9d2f-6325724a46ee\",\"value\":\"25\",\"displayName\":\"Role1234\"}"}]}]),
        );
        assert_eq!(u["roles"], json!([{"value": "25", "display": "Role1234"}]));
        // Entra repeats the Add every cycle; it must stay one role.
        user_patch(
            &mut u,
            json!([{"op": "Add", "path": "roles", "value": [{"value": "{\"id\":\"06b07648-ecfe-589f-9d2f-6325724a46ee\",\"value\":\"25\",\"displayName\":\"Role1234\"}"}]}]),
        );
        assert_eq!(u["roles"], json!([{"value": "25", "display": "Role1234"}]));
        user_patch(
            &mut u,
            json!([{"op": "replace", "path": "roles", "value": [
                {"primary": false, "type": "WindowsAzureActiveDirectoryRole", "display": "Admin", "value": "Admin"}
            ]}]),
        );
        assert_eq!(
            u["roles"],
            json!([{"primary": false, "type": "WindowsAzureActiveDirectoryRole", "display": "Admin", "value": "Admin"}])
        );
    }

    #[test]
    fn checklist_09_remove_members_with_value_list_or_none() {
        let mut g = group();
        let ch = group_patch(
            &mut g,
            json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "u1"}, {"value": "u2"}]}]),
        );
        assert_eq!(ch, vec![remove(&["u1", "u2"])]);
        let ch = group_patch(
            &mut g,
            json!([{"op": "Remove", "path": "members", "value": []}]),
        );
        assert!(
            ch.is_empty(),
            "an empty value list must never clear the group"
        );
        let ch = group_patch(&mut g, json!([{"op": "remove", "path": "members"}]));
        assert_eq!(ch, vec![MemberChange::Clear]);
        let ch = group_patch(
            &mut g,
            json!([{"op": "remove", "path": "members[value eq \"u1\" or value eq \"u2\"]"}]),
        );
        assert_eq!(ch, vec![remove(&["u1", "u2"])]);
        let ch = group_patch(
            &mut g,
            json!([{"op": "remove", "path": "members[display eq \"alice\"]"}]),
        );
        assert!(matches!(ch.as_slice(), [MemberChange::RemoveWhere(_)]));
    }

    #[test]
    fn checklist_10_replace_members_empty_and_add_is_a_set_union() {
        let mut g = group();
        let ch = group_patch(
            &mut g,
            json!([{"op": "replace", "path": "members", "value": []}]),
        );
        assert_eq!(ch, vec![MemberChange::Clear]);
        let ch = group_patch(
            &mut g,
            json!([{"op": "add", "path": "members", "value": [{"value": "u1"}, {"value": "u1", "display": "a"}, {"value": "u2"}]}]),
        );
        assert_eq!(ch, vec![add(&["u1", "u2"])]);
        let ch = group_patch(
            &mut g,
            json!([{"op": "add", "path": "members", "value": []}]),
        );
        assert!(ch.is_empty());
    }

    #[test]
    fn checklist_11_empty_operations_is_a_no_op() {
        let ops = parse_request(&json!({"schemas": [PATCH_OP_SCHEMA], "Operations": []})).unwrap();
        assert!(ops.is_empty());
        let mut u = bjensen();
        let ch = apply(ResourceKind::User, &mut u, &ops).unwrap();
        assert!(ch.is_empty());
        assert_eq!(u, bjensen());
        // No `schemas` at all is tolerated too.
        assert!(parse_request(&json!({"Operations": []}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn checklist_12_read_only_and_unknown_data_is_ignored() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{"op": "replace", "value": {
                "id": "other",
                "meta": {"resourceType": "User"},
                "groups": [{"value": "g1"}],
                "password": "hunter2",
                "schemas": ["http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/User"],
                "favouriteColour": "blue",
                "title": null,
                "displayName": "Babs"
            }}]),
        );
        let mut expected = bjensen();
        expected["displayName"] = json!("Babs");
        assert_eq!(u, expected);
        // Okta's password sync: accepted and discarded.
        user_patch(
            &mut u,
            json!([{"op": "replace", "path": "password", "value": "s3cret"}]),
        );
        assert_eq!(u, expected);
        // A path naming an attribute the schema does not know is a no-op.
        user_patch(
            &mut u,
            json!([{"op": "add", "path": "favouriteColour", "value": "blue"}]),
        );
        user_patch(
            &mut u,
            json!([{"op": "add", "path": "urn:example:custom:2.0:User:badge", "value": "7"}]),
        );
        assert_eq!(u, expected);
        // A path naming a read-only attribute is an error.
        for path in ["id", "meta.lastModified", "groups", "meta"] {
            let e = user_err(
                &mut u,
                json!([{"op": "replace", "path": path, "value": "x"}]),
            );
            assert_eq!(e.scim_type, Some(ScimType::Mutability), "{path}");
        }
    }

    // Engine rules beyond the checklist.

    #[test]
    fn primary_true_on_one_element_clears_the_others() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{"op": "add", "path": "emails", "value": [{"value": "new@x.com", "type": "other", "primary": true}]}]),
        );
        assert_eq!(
            u["emails"],
            json!([
                {"value": "bjensen@example.com", "type": "work", "primary": false},
                {"value": "babs@jensen.org", "type": "home"},
                {"value": "new@x.com", "type": "other", "primary": true}
            ])
        );
        user_patch(
            &mut u,
            json!([{"op": "replace", "path": "emails[type eq \"work\"].primary", "value": true}]),
        );
        assert_eq!(u["emails"][0]["primary"], true);
        assert_eq!(u["emails"][2]["primary"], false);
        let e = user_err(
            &mut u,
            json!([{"op": "add", "path": "emails", "value": [
                {"value": "a@x.com", "primary": true}, {"value": "b@x.com", "primary": true}
            ]}]),
        );
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    }

    #[test]
    fn required_attributes_cannot_be_removed_or_blanked() {
        let mut u = bjensen();
        let e = user_err(&mut u, json!([{"op": "remove", "path": "userName"}]));
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(
            e.detail.contains("userName") && e.detail.contains("required"),
            "{}",
            e.detail
        );
        let e = user_err(
            &mut u,
            json!([{"op": "replace", "path": "userName", "value": " "}]),
        );
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        let mut g = group();
        let e = patch(
            ResourceKind::Group,
            &mut g,
            json!([{"op": "remove", "path": "displayName"}]),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    }

    #[test]
    fn a_failed_operation_fails_the_whole_request() {
        let mut u = bjensen();
        let e = user_err(
            &mut u,
            json!([
                {"op": "replace", "path": "title", "value": "Guide"},
                {"op": "replace", "path": "id", "value": "x"}
            ]),
        );
        assert!(e.detail.starts_with("Operations[1]"), "{}", e.detail);
    }

    #[test]
    fn request_shape_errors() {
        let cases = [
            (json!([{"op": "remove"}]), ScimType::NoTarget),
            (
                json!([{"op": "add", "path": "title"}]),
                ScimType::InvalidValue,
            ),
            (
                json!([{"op": "replace", "path": "title", "value": null}]),
                ScimType::InvalidValue,
            ),
            (
                json!([{"path": "title", "value": "x"}]),
                ScimType::InvalidSyntax,
            ),
            (
                json!([{"op": "add", "path": "emails[type eq", "value": "x"}]),
                ScimType::InvalidPath,
            ),
            (
                json!([{"op": "add", "path": 7, "value": "x"}]),
                ScimType::InvalidPath,
            ),
            (json!("add"), ScimType::InvalidSyntax),
        ];
        for (ops, t) in cases {
            let e = parse_request(&body(ops.clone())).unwrap_err();
            assert_eq!(e.scim_type, Some(t), "{ops}: {}", e.detail);
        }
        let e = parse_request(&json!({"schemas": [PATCH_OP_SCHEMA]})).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    }

    #[test]
    fn semantic_path_errors() {
        let mut u = bjensen();
        let e = user_err(
            &mut u,
            json!([{"op": "replace", "path": "userName.first", "value": "x"}]),
        );
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
        let e = user_err(
            &mut u,
            json!([{"op": "replace", "path": "name[givenName eq \"x\"]", "value": "x"}]),
        );
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
        let e = user_err(&mut u, json!([{"op": "replace", "value": "not an object"}]));
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        // A filter that cannot describe a new element: nothing to create, nothing to target.
        let e = user_err(
            &mut u,
            json!([{"op": "replace", "path": "emails[value co \"nomatch\"].type", "value": "x"}]),
        );
        assert_eq!(e.scim_type, Some(ScimType::NoTarget));
        let mut g = group();
        let e = patch(
            ResourceKind::Group,
            &mut g,
            json!([{"op": "replace", "path": "members[value eq \"u1\"].value", "value": "u2"}]),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::Mutability));
    }

    #[test]
    fn extension_urn_as_path() {
        let mut u = bjensen();
        user_patch(
            &mut u,
            json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "value": {"department": "Ops", "manager": "m9"}}]),
        );
        assert_eq!(
            u[ENTERPRISE_USER_SCHEMA],
            json!({"department": "Ops", "manager": {"value": "m9"}})
        );
        user_patch(
            &mut u,
            json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}]),
        );
        assert!(u.get(ENTERPRISE_USER_SCHEMA).is_none());
    }

    #[test]
    fn pathless_members_on_groups() {
        let mut g = group();
        let ch = group_patch(
            &mut g,
            json!([{"op": "add", "value": {"members": [{"value": "u1"}]}}]),
        );
        assert_eq!(ch, vec![add(&["u1"])]);
        let ch = group_patch(&mut g, json!([{"op": "replace", "value": {"members": []}}]));
        assert_eq!(ch, vec![MemberChange::Clear]);
    }

    // Limits: everything is refused by `parse_request`, before the store's writer sees it, except
    // what only applying can show.

    fn parse_err(ops: Value) -> ScimError {
        let e = parse_request(&body(ops)).unwrap_err();
        assert_eq!(e.status, 400, "{}", e.detail);
        e
    }

    fn member_values(from: usize, n: usize) -> Value {
        Value::Array(
            (from..from + n)
                .map(|i| json!({"value": format!("u{i}")}))
                .collect(),
        )
    }

    #[test]
    fn operations_are_capped_per_request() {
        let ops = |n: usize| {
            Value::Array(
                (0..n)
                    .map(|i| json!({"op": "replace", "path": "title", "value": format!("t{i}")}))
                    .collect(),
            )
        };
        let mut u = bjensen();
        user_patch(&mut u, ops(MAX_OPERATIONS));
        assert_eq!(u["title"], format!("t{}", MAX_OPERATIONS - 1));
        for n in [MAX_OPERATIONS + 1, 15_000] {
            let e = parse_err(ops(n));
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
            assert_eq!(
                e.detail,
                format!("the request has {n} operations; the limit is 1000 per PATCH")
            );
        }
        // Counted before parsing: operations that would not parse still get the count error.
        let junk = Value::Array(vec![json!("junk"); MAX_OPERATIONS + 1]);
        assert!(parse_err(junk).detail.contains("operations"));
    }

    #[test]
    fn member_values_are_capped_per_request_in_every_shape() {
        let mut g = group();
        // Entra-sized batches split over operations, exactly at the limit.
        let half = MAX_VALUES_PER_REQUEST / 2;
        let ch = group_patch(
            &mut g,
            json!([
                {"op": "Add", "path": "members", "value": member_values(0, half)},
                {"op": "add", "value": {"members": member_values(half, half)}}
            ]),
        );
        assert_eq!(ch.len(), 2);
        let at_limit = json!([{"op": "replace", "path": "members", "value": member_values(0, MAX_VALUES_PER_REQUEST)}]);
        assert!(parse_request(&body(at_limit)).is_ok());

        let over = [
            json!([{"op": "add", "path": "members", "value": member_values(0, MAX_VALUES_PER_REQUEST + 1)}]),
            json!([
                {"op": "add", "path": "members", "value": member_values(0, half)},
                {"op": "Remove", "path": "members", "value": member_values(half, half)},
                {"op": "remove", "path": "members[value eq \"x\"]"}
            ]),
            json!([
                {"op": "replace", "value": {"members": member_values(0, MAX_VALUES_PER_REQUEST)}},
                {"op": "add", "path": "members", "value": "u-extra"}
            ]),
        ];
        for ops in over {
            let e = parse_err(ops);
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
            assert_eq!(
                e.detail,
                "the request has 10001 list values (group members and values of multi-valued attributes); the limit is 10000 per PATCH"
            );
        }
    }

    #[test]
    fn multi_valued_values_count_towards_the_request_and_the_list_caps() {
        let emails = |from: usize, n: usize| -> Value {
            Value::Array(
                (from..from + n)
                    .map(|i| json!({"value": format!("e{i}@x.com")}))
                    .collect(),
            )
        };
        // One list over the limit is refused when parsed.
        let e = parse_err(json!([{"op": "replace", "path": "emails", "value": emails(0, 101)}]));
        assert_eq!(
            e.detail,
            "Operations[0]: emails has 101 values; the limit is 100"
        );
        // Lists that only grow too long together are refused while applying, at the first
        // operation that passes the limit, and the resource is left alone.
        let mut u = bjensen();
        let e = user_err(
            &mut u,
            json!([
                {"op": "add", "path": "emails", "value": emails(0, 60)},
                {"op": "add", "value": {"emails": emails(60, 60)}}
            ]),
        );
        assert_eq!(
            e.detail,
            "Operations[1]: emails would have 122 values; the limit is 100"
        );
        // Exactly the limit is fine.
        user_patch(
            &mut u,
            json!([{"op": "add", "path": "emails", "value": emails(0, 98)}]),
        );
        assert_eq!(u["emails"].as_array().map(Vec::len), Some(100));
        // Elements created one at a time by filter paths are caught at the end.
        let e = user_err(
            &mut u,
            json!([{"op": "add", "path": "emails[type eq \"x\"].value", "value": "x@x.com"}]),
        );
        assert_eq!(e.detail, "emails has 101 values; the limit is 100");
        // Values of other lists share the request total with members.
        let ops: Vec<Value> = (0..101)
            .map(|i| json!({"op": "add", "path": "roles", "value": emails(i * 100, 100)}))
            .collect();
        let e = parse_err(Value::Array(ops));
        assert_eq!(
            e.detail,
            "the request has 10100 list values (group members and values of multi-valued attributes); the limit is 10000 per PATCH"
        );
    }

    #[test]
    fn a_list_stored_over_the_limit_does_not_block_other_changes() {
        let mut u = bjensen();
        let emails: Vec<Value> = (0..150)
            .map(|i| json!({"value": format!("old{i}@x.com")}))
            .collect();
        u["emails"] = Value::Array(emails);
        u["displayName"] = json!("d".repeat(10_000));
        // Deprovisioning must go through on an account stored before the limits.
        user_patch(
            &mut u,
            json!([{"op": "replace", "path": "active", "value": "False"}]),
        );
        assert_eq!(u["active"], false);
        // Re-adding an address it already has does not grow the list either.
        user_patch(
            &mut u,
            json!([{"op": "add", "path": "emails", "value": [{"value": "old3@x.com", "primary": true}]}]),
        );
        let e = user_err(
            &mut u,
            json!([{"op": "add", "path": "emails", "value": [{"value": "new@x.com"}]}]),
        );
        assert!(
            e.detail.contains("emails would have 151 values"),
            "{}",
            e.detail
        );
    }

    #[test]
    fn long_strings_are_refused_when_parsed_wherever_they_sit() {
        let big = "x".repeat(1_000_000);
        let cases = [
            (
                json!([{"op": "replace", "path": "displayName", "value": big}]),
                "displayName",
            ),
            (
                json!([{"op": "Replace", "value": {"displayName": big}}]),
                "displayName",
            ),
            (
                json!([{"op": "add", "value": {"name.givenName": big}}]),
                "name.givenName",
            ),
            (
                json!([{"op": "add", "path": "name.givenName", "value": big}]),
                "name.givenName",
            ),
            (
                json!([{"op": "add", "path": "name", "value": {"givenName": big}}]),
                "name.givenName",
            ),
            (
                json!([{"op": "add", "path": "emails[type eq \"work\"].value", "value": big}]),
                "emails.value",
            ),
            (
                json!([{"op": "add", "path": "addresses[type eq \"work\"].formatted", "value": big}]),
                "addresses.formatted",
            ),
            (
                json!([{"op": "replace", "path": "addresses[type eq \"work\"]", "value": {"locality": big}}]),
                "addresses.locality",
            ),
            (
                json!([{"op": "add", "path": "emails", "value": [{"value": big}]}]),
                "emails.value",
            ),
            (
                json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": big}]),
                "manager.value",
            ),
            (
                json!([{"op": "replace", "value": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": big}}]),
                "employeeNumber",
            ),
            (
                json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "value": {"department": big}}]),
                "department",
            ),
            (
                json!([{"op": "add", "value": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"costCenter": big}}}]),
                "costCenter",
            ),
            (
                json!([{"op": "add", "path": "members", "value": [{"value": big}]}]),
                "members.value",
            ),
            (
                json!([{"op": "remove", "path": "emails", "value": [{"value": big}]}]),
                "emails.value",
            ),
        ];
        for (ops, attr) in cases {
            let e = parse_err(ops.clone());
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{attr}");
            assert_eq!(
                e.detail,
                format!("Operations[0]: {attr} is 1000000 bytes long; the limit is 4096 bytes")
            );
        }
        // Exactly at the limit is applied.
        let mut u = bjensen();
        let at = "x".repeat(resource::MAX_STRING_BYTES);
        user_patch(
            &mut u,
            json!([{"op": "replace", "path": "displayName", "value": at}]),
        );
        assert_eq!(
            u["displayName"].as_str().map(str::len),
            Some(resource::MAX_STRING_BYTES)
        );
        // Dropped values are not measured, like in a POST body.
        user_patch(
            &mut u,
            json!([
                {"op": "replace", "path": "password", "value": big},
                {"op": "add", "path": "favouriteColour", "value": big},
                {"op": "replace", "value": {"id": big, "password": big}}
            ]),
        );
        // A value a filter path creates is caught while applying.
        let over = "x".repeat(resource::MAX_STRING_BYTES + 1);
        let e = user_err(
            &mut u,
            json!([{"op": "add", "path": format!("emails[type eq \"{over}\"].value"), "value": "a@x.com"}]),
        );
        assert_eq!(
            e.detail,
            "emails.type is 4097 bytes long; the limit is 4096 bytes"
        );
    }

    #[test]
    fn member_filter_scans_and_path_comparisons_are_capped() {
        let scans = |n: usize| {
            Value::Array(
                (0..n)
                    .map(|i| json!({"op": "remove", "path": format!("members[display eq \"d{i}\"]")}))
                    .collect(),
            )
        };
        assert!(parse_request(&body(scans(MAX_MEMBER_FILTER_SCANS))).is_ok());
        let e = parse_err(scans(MAX_MEMBER_FILTER_SCANS + 1));
        assert_eq!(
            e.detail,
            "the request has 11 member removals by a filter other than member ids; the limit is \
             10 per PATCH"
        );
        // Removal by member id needs no scan: Okta's and Entra's shape, at the operation limit.
        let by_id: Vec<Value> = (0..MAX_OPERATIONS)
            .map(|i| json!({"op": "remove", "path": format!("members[value eq \"u{i}\"]")}))
            .collect();
        assert!(parse_request(&body(Value::Array(by_id))).is_ok());

        let filtered = |ops: usize| {
            let f = (0..50)
                .map(|i| format!("type eq \"t{i}\""))
                .collect::<Vec<_>>()
                .join(" or ");
            Value::Array(
                (0..ops)
                    .map(|_| json!({"op": "remove", "path": format!("emails[{f}]")}))
                    .collect(),
            )
        };
        assert!(parse_request(&body(filtered(MAX_PATH_FILTER_COMPARISONS / 50))).is_ok());
        let e = parse_err(filtered(MAX_PATH_FILTER_COMPARISONS / 50 + 1));
        assert_eq!(
            e.detail,
            "the request has 1050 comparisons in value-filter paths; the limit is 1000 per PATCH"
        );
    }
}
