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

use crate::scim::error::ScimError;
use crate::scim::filter::{self, AttrRef, CompOp, Filter, PatchPath};
use crate::scim::resource::{self, Assignment, MemberRef, WriteMode};
use crate::scim::schema::{AttrDef, Mutability, ResolvedAttr, ResourceKind};
use serde_json::{Map, Value};

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
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| parse_op(op).map_err(|e| at_op(i, e)))
        .collect()
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
    *resource = resource::finish(kind, work)?;
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
    let written = resource::write_assignment(work, a, mode)?;
    if a.attr.def.multi && !written.is_empty() {
        let c = resource::container_mut(work, a.attr.extension)?;
        if let Some(list) = c.get_mut(a.attr.def.name).and_then(Value::as_array_mut) {
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
            for el in list.iter_mut().filter_map(Value::as_object_mut) {
                el.remove(sd.name);
            }
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
    resource::make_primary_exclusive(list, &written);
    Ok(())
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
