//! Resource normalisation: turns what an IdP sends in a POST or PUT body (or in a path-less PATCH
//! value) into the canonical form the store keeps.
//!
//! # The canonical form
//! A JSON object with schema-cased attribute names (`userName`, not `USERNAME`), core and common
//! attributes at the top level, enterprise extension attributes inside the object keyed by the
//! extension URN, and `schemas` listing the core URN plus the extension URN when that object is
//! non-empty. There is no `id`/`meta` (the store adds them), no `groups` on users, no `members` on
//! groups (members live in their own table, see [`Normalized::members`]) and never a `password`.
//!
//! # What clients may send
//! IdPs disagree about shapes (`shared/idp-scim-behaviors.md` §4), and a 400 on something harmless
//! makes Entra retry and eventually quarantine the whole job, so this module is liberal in what it
//! accepts and strict in what it keeps:
//! - Names are matched case-insensitively. Extension attributes may be nested under their URN or
//!   URN-qualified (`urn:…:enterprise:2.0:User:employeeNumber`); dotted keys (`name.givenName`)
//!   address sub-attributes. A bare enterprise attribute name (`manager`, `department`) that the
//!   core schema does not define is taken as the enterprise one: older Entra documentation
//!   addresses `manager` without its URN (behaviours §2.6).
//! - **Unknown attributes are dropped, not stored and not returned.** So are unknown schema URNs,
//!   read-only attributes (`id`, `meta`, `groups`, `manager.displayName`), `password` and explicit
//!   `null`s (which mean "absent").
//! - Scalars are coerced where the schema leaves no doubt: `"True"`/`"false"` become booleans, numbers
//!   sent for strings become strings, a single value where the schema says multi-valued becomes a
//!   one-element list, and a bare scalar where the schema says complex becomes `{"value": …}` (Entra's
//!   `manager`). Entra's stringified JSON role values are unpacked.
//! - What cannot be coerced is a 400 `invalidValue` naming the attribute, as are a missing required
//!   attribute and more than one `primary: true` in a list (RFC 7643 §2.4).
//! - So is a value over a size limit ([`MAX_STRING_BYTES`], [`MAX_BINARY_BYTES`],
//!   [`MAX_MULTI_VALUES`]). Values that are dropped (unknown, read-only and write-only attributes)
//!   are not measured: they cost nothing, and refusing them would break on harmless input.

use crate::scim::error::ScimError;
use crate::scim::schema::{AttrDef, AttrType, Mutability, ResolvedAttr, ResourceKind};
use serde_json::{Map, Number, Value};

/// Longest string value, in bytes, of any attribute except binary ones. A stored string is
/// returned on every read and compared by every filter that names it, so a 1 MB `displayName`
/// costs on each list and search. Real values are short: an email address is at most 254 bytes,
/// Entra's `displayName` at most 256 characters, and its stringified role JSON
/// (`{"id":"<guid>","value":…,"displayName":…}`) a few hundred bytes. 4 KiB leaves room for
/// multi-byte scripts and long `formatted` addresses.
pub const MAX_STRING_BYTES: usize = 4 * 1024;

/// Longest value, in bytes, of a binary attribute (`x509Certificates.value`, base64 DER). An
/// end-entity certificate is 1–2 KB of DER; one with a long list of names can pass 3 KB, and
/// base64 adds a third, more than [`MAX_STRING_BYTES`].
pub const MAX_BINARY_BYTES: usize = 16 * 1024;

/// Most values of one multi-valued attribute other than a group's `members` (`emails`,
/// `phoneNumbers`, `roles`, …). Adding to such a list compares the new value with every stored
/// one, so long lists make each PATCH slower; Okta and Entra send one to three emails or phone
/// numbers and a few roles. Group members are bounded per request instead (see
/// `patch::MAX_VALUES_PER_REQUEST`), since groups legitimately hold tens of thousands.
pub const MAX_MULTI_VALUES: usize = 100;

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

/// One attribute write taken from a client object, already canonicalised and coerced.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub attr: ResolvedAttr,
    /// Set when the key was dotted (`name.givenName`): the write targets this sub-attribute of a
    /// single-valued complex attribute.
    pub sub: Option<&'static AttrDef>,
    /// Coerced to the attribute's shape: a list for multi-valued attributes, an object for complex
    /// ones, a scalar of the schema type otherwise.
    pub value: Value,
}

/// A client object (a resource body or a path-less PATCH value) split into attribute writes.
#[derive(Debug, Clone, Default)]
pub struct Expanded {
    pub assignments: Vec<Assignment>,
    /// Groups only: members named by the object, in order, without duplicates.
    pub members: Option<Vec<MemberRef>>,
}

/// How a write meets what is already there (RFC 7644 §3.5.2.1 and §3.5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Multi-valued: append (an element equal to an existing one updates it); complex: merge
    /// sub-attributes; simple: set.
    Add,
    /// Multi-valued: the list is replaced; complex: merge sub-attributes; simple: set.
    Replace,
}

/// Normalises a POST or PUT body.
pub fn normalize(kind: ResourceKind, body: &Value) -> Result<Normalized, ScimError> {
    let Value::Object(obj) = body else {
        return Err(ScimError::invalid_syntax(format!(
            "a {} body must be a JSON object",
            kind.name()
        )));
    };
    let expanded = expand_value_object(kind, obj)?;
    let mut resource = Map::new();
    for a in &expanded.assignments {
        write_assignment(&mut resource, a, WriteMode::Add)?;
    }
    let resource = finish(kind, resource)?;
    // Each value was checked on its way in; a list named twice (`emails` and `Emails`) can still
    // add up to more than one list may hold.
    if let Value::Object(obj) = &resource {
        check_resource_limits(kind, obj, None)?;
    }
    Ok(Normalized {
        resource,
        members: expanded.members,
    })
}

/// Splits a client object into canonical attribute writes: the shared front half of
/// [`normalize`] and of path-less PATCH `add`/`replace` (whose value "contains a set of attributes
/// to be added to the resource", RFC 7644 §3.5.2.1).
pub fn expand_value_object(
    kind: ResourceKind,
    obj: &Map<String, Value>,
) -> Result<Expanded, ScimError> {
    let mut out = Expanded::default();
    expand_into(kind, None, obj, &mut out)?;
    Ok(out)
}

fn expand_into(
    kind: ResourceKind,
    scope: Option<&'static str>,
    obj: &Map<String, Value>,
    out: &mut Expanded,
) -> Result<(), ScimError> {
    for (raw_key, value) in obj {
        if value.is_null() {
            continue;
        }
        let key = raw_key.trim();
        if scope.is_none() {
            if key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            if let Some(urn) = schema_urn(kind, key) {
                // A value under a schema URN that is not an object addresses nothing.
                if let Value::Object(inner) = value {
                    expand_into(kind, Some(urn), inner, out)?;
                }
                continue;
            }
        }
        let (urn, rest) = match scope {
            Some(urn) => (Some(urn), key),
            None => kind.split_urn(key),
        };
        let (name, sub_name) = match rest.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (rest, None),
        };
        let Some(attr) = resolve_lenient(kind, urn, name) else {
            continue;
        };
        let def = attr.def;
        if is_group_members(kind, def) {
            if sub_name.is_none() {
                let refs = member_refs(value)?;
                let list = out.members.get_or_insert_with(Vec::new);
                if list.is_empty() {
                    *list = refs;
                } else {
                    // Rare: the same body names `members` twice (e.g. under two spellings).
                    let mut seen: std::collections::HashSet<String> =
                        list.iter().map(|m| m.value.clone()).collect();
                    list.extend(refs.into_iter().filter(|r| seen.insert(r.value.clone())));
                }
            }
            continue;
        }
        if !accepts_client_value(def) {
            continue;
        }
        let (sub, label, target_def) = match sub_name {
            None => (None, def.name.to_string(), def),
            Some(sn) => {
                // Dotted keys only make sense for single-valued complex attributes; anything else
                // names nothing we keep, like any unknown attribute.
                if !def.is_complex() || def.multi {
                    continue;
                }
                let Some(sd) = def.sub_attr(sn) else {
                    continue;
                };
                if !accepts_client_value(sd) {
                    continue;
                }
                (Some(sd), format!("{}.{}", def.name, sd.name), sd)
            }
        };
        if let Some(v) = coerce(target_def, value, &label)? {
            out.assignments.push(Assignment {
                attr,
                sub,
                value: v,
            });
        }
    }
    Ok(())
}

/// The schema URN a top-level key names exactly, if any.
fn schema_urn(kind: ResourceKind, key: &str) -> Option<&'static str> {
    if key.eq_ignore_ascii_case(kind.core().id) {
        return Some(kind.core().id);
    }
    kind.extension(key).map(|s| s.id)
}

/// [`ResourceKind::resolve`], falling back to the extensions for unqualified names the core schema
/// does not define (older Entra documentation sends `path: "manager"`).
pub fn resolve_lenient(kind: ResourceKind, urn: Option<&str>, name: &str) -> Option<ResolvedAttr> {
    if let Some(found) = kind.resolve(urn, name) {
        return Some(found);
    }
    if urn.is_some() {
        return None;
    }
    kind.extensions()
        .iter()
        .find_map(|ext| kind.resolve(Some(ext.id), name))
}

pub(crate) fn is_group_members(kind: ResourceKind, def: &AttrDef) -> bool {
    kind == ResourceKind::Group && def.name == "members"
}

/// Whether a client-sent value for this attribute is kept: read-only values belong to the server
/// and write-only ones (`password`) are never stored.
pub(crate) fn accepts_client_value(def: &AttrDef) -> bool {
    !matches!(def.mutability, Mutability::ReadOnly | Mutability::WriteOnly)
}

/// Coerces a client value to the shape the schema gives `def`. `Ok(None)` means "nothing to keep"
/// (null, or an object with nothing we know).
pub fn coerce(def: &AttrDef, value: &Value, label: &str) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    // Before any copying: an oversized list would otherwise be appended element by element.
    check_limits(def, value, label)?;
    if def.multi {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if item.is_array() {
                return Err(ScimError::invalid_value(format!(
                    "{label} must be a list of values, not a list of lists"
                )));
            }
            if let Some(v) = coerce_single(def, item, label)? {
                out.push(v);
            }
        }
        return Ok(Some(Value::Array(out)));
    }
    coerce_single(def, value, label)
}

/// Coerces one value (an element, for multi-valued attributes).
pub fn coerce_single(
    def: &AttrDef,
    value: &Value,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    match value {
        Value::Null => Ok(None),
        // Clients wrap single values in a list now and then (older Entra `manager`).
        Value::Array(items) if !def.multi => match items.as_slice() {
            [] => Ok(None),
            [one] if !one.is_array() => coerce_single(def, one, label),
            _ => Err(ScimError::invalid_value(format!(
                "{label} is single-valued; got a list"
            ))),
        },
        _ if def.is_complex() => coerce_complex(def, value, label),
        _ => coerce_scalar(def.ty, value, label).map(Some),
    }
}

fn coerce_complex(def: &AttrDef, value: &Value, label: &str) -> Result<Option<Value>, ScimError> {
    let mut out = Map::new();
    match value {
        Value::Object(obj) => {
            for (k, v) in obj {
                let Some(sd) = def.sub_attr(k.trim()) else {
                    continue;
                };
                if !accepts_client_value(sd) {
                    continue;
                }
                if let Some(cv) = coerce_single(sd, v, &format!("{label}.{}", sd.name))? {
                    out.insert(sd.name.to_string(), cv);
                }
            }
        }
        Value::Array(_) => {
            return Err(ScimError::invalid_value(format!(
                "{label} must be an object, not a list"
            )))
        }
        scalar => match def.sub_attr("value") {
            Some(sd) => {
                let v = coerce_scalar(sd.ty, scalar, &format!("{label}.value"))?;
                out.insert(sd.name.to_string(), v);
            }
            None => {
                return Err(ScimError::invalid_value(format!(
                    "{label} must be an object with sub-attributes"
                )))
            }
        },
    }
    tidy_element(def, &mut out);
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// Repairs element shapes that IdPs produce from their own data models.
pub(crate) fn tidy_element(def: &AttrDef, element: &mut Map<String, Value>) {
    if def.name == "roles" {
        unpack_stringified_role(element);
    }
}

/// Entra's default role mapping sends each role as a JSON object serialised into `value`
/// (`"{\"id\":\"06b0…\",\"value\":\"Admin\",\"displayName\":\"Role1234\"}"`, behaviours §2.10).
/// The app-role `value` is what the role means, so it becomes the value.
fn unpack_stringified_role(element: &mut Map<String, Value>) {
    let Some(Value::String(raw)) = element.get("value") else {
        return;
    };
    if !raw.trim_start().starts_with('{') {
        return;
    }
    let Ok(Value::Object(inner)) = serde_json::from_str::<Value>(raw) else {
        return;
    };
    let inner_value = inner
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("value"))
        .and_then(|(_, v)| scalar_to_string(v));
    let Some(inner_value) = inner_value else {
        return;
    };
    element.insert("value".into(), Value::String(inner_value));
    if !element.contains_key("display") {
        let display = inner
            .iter()
            .find(|(k, _)| {
                k.eq_ignore_ascii_case("displayName") || k.eq_ignore_ascii_case("display")
            })
            .and_then(|(_, v)| scalar_to_string(v));
        if let Some(d) = display {
            element.insert("display".into(), Value::String(d));
        }
    }
}

fn scalar_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Coerces a scalar to a schema type, accepting the stringly-typed forms IdPs send.
pub fn coerce_scalar(ty: AttrType, value: &Value, label: &str) -> Result<Value, ScimError> {
    let wrong = |what: &str| {
        ScimError::invalid_value(format!("{label} must be {what}; got {}", shape(value)))
    };
    match ty {
        AttrType::Boolean => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(wrong("a boolean")),
        },
        AttrType::String | AttrType::Reference | AttrType::DateTime | AttrType::Binary => {
            match scalar_to_string(value) {
                Some(s) => Ok(Value::String(s)),
                None => Err(wrong("a string")),
            }
        }
        AttrType::Integer => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(value.clone()),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(|i| Value::Number(i.into()))
                .map_err(|_| wrong("an integer")),
            _ => Err(wrong("an integer")),
        },
        AttrType::Decimal => match value {
            Value::Number(_) => Ok(value.clone()),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| wrong("a number")),
            _ => Err(wrong("a number")),
        },
        AttrType::Complex => Err(wrong("an object")),
    }
}

fn shape(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Reads group members from a `members` value: a list, a single object or a bare id.
pub fn member_refs(value: &Value) -> Result<Vec<MemberRef>, ScimError> {
    let items: Vec<&Value> = match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    let mut out: Vec<MemberRef> = Vec::with_capacity(items.len());
    // Order kept, duplicates dropped in linear time: full pushes carry tens of thousands.
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for item in items {
        let id = match item {
            Value::Null => continue,
            Value::String(s) => Some(s),
            Value::Object(obj) => obj_value_str(obj),
            _ => None,
        };
        let Some(id) = id.filter(|s| !s.trim().is_empty()) else {
            return Err(ScimError::invalid_value(
                "every element of members needs a non-empty string value (the member's id)",
            ));
        };
        if id.len() > MAX_STRING_BYTES {
            return Err(too_long("members.value", id.len(), MAX_STRING_BYTES));
        }
        if seen.insert(id.clone()) {
            out.push(MemberRef { value: id.clone() });
        }
    }
    Ok(out)
}

fn obj_value_str(obj: &Map<String, Value>) -> Option<&String> {
    obj.iter()
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("value"))
        .and_then(|(_, v)| match v {
            Value::String(s) => Some(s),
            _ => None,
        })
}

/// Refuses a client value for `def` that breaks a size limit: a string over
/// [`MAX_STRING_BYTES`] ([`MAX_BINARY_BYTES`] for binary attributes), or a list of more than
/// [`MAX_MULTI_VALUES`] (group `members` excepted). The value is read in every shape [`coerce`]
/// accepts, without coercing it, so PATCH can check a request before the store sees it.
/// Sub-attributes the server drops (read-only, write-only, unknown) are not checked.
pub fn check_limits(def: &AttrDef, value: &Value, label: &str) -> Result<(), ScimError> {
    check_limits_at(def, value, label, None)
}

/// `label` plus `sub` name the attribute in an error; they are joined only when there is one.
fn check_limits_at(
    def: &AttrDef,
    value: &Value,
    label: &str,
    sub: Option<&str>,
) -> Result<(), ScimError> {
    let name = || match sub {
        Some(s) => format!("{label}.{s}"),
        None => label.to_string(),
    };
    match value {
        Value::Array(items) => {
            if def.multi && def.name != "members" && items.len() > MAX_MULTI_VALUES {
                return Err(ScimError::invalid_value(format!(
                    "{} has {} values; the limit is {MAX_MULTI_VALUES}",
                    name(),
                    items.len()
                )));
            }
            // Nested lists are refused by `coerce`; here they only need walking, and JSON
            // parsing already bounds their depth.
            items
                .iter()
                .try_for_each(|item| check_limits_at(def, item, label, sub))
        }
        Value::Object(obj) if def.is_complex() => {
            let label = name();
            for (k, v) in obj {
                let Some(sd) = def.sub_attr(k.trim()) else {
                    continue;
                };
                if accepts_client_value(sd) {
                    check_limits_at(sd, v, &label, Some(sd.name))?;
                }
            }
            Ok(())
        }
        Value::String(text) => {
            // A bare string where a complex value belongs is its `value` (Entra's `manager`).
            let (leaf, name) = if def.is_complex() {
                match def.sub_attr("value") {
                    Some(sd) => (sd, format!("{}.value", name())),
                    None => return Ok(()),
                }
            } else {
                (def, name())
            };
            let limit = max_bytes(leaf);
            if text.len() > limit {
                return Err(too_long(&name, text.len(), limit));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn max_bytes(def: &AttrDef) -> usize {
    if def.ty == AttrType::Binary {
        MAX_BINARY_BYTES
    } else {
        MAX_STRING_BYTES
    }
}

fn too_long(name: &str, len: usize, limit: usize) -> ScimError {
    ScimError::invalid_value(format!(
        "{name} is {len} bytes long; the limit is {limit} bytes"
    ))
}

/// Checks the size limits on a resource in stored form. With `before`, only what differs from it
/// is checked (attributes, and within lists the elements and the growth): a resource stored
/// before these limits existed must stay writable, or a PATCH of `active` (deprovisioning) would
/// fail on an old long `displayName`.
pub fn check_resource_limits(
    kind: ResourceKind,
    resource: &Map<String, Value>,
    before: Option<&Map<String, Value>>,
) -> Result<(), ScimError> {
    let scopes = std::iter::once((kind.core().attributes, Some(resource), before)).chain(
        kind.extensions().iter().map(|ext| {
            (
                ext.attributes,
                resource.get(ext.id).and_then(Value::as_object),
                before
                    .and_then(|b| b.get(ext.id))
                    .and_then(Value::as_object),
            )
        }),
    );
    for (attrs, obj, old) in scopes {
        let Some(obj) = obj else { continue };
        for def in attrs {
            let Some(v) = obj.get(def.name) else { continue };
            let was = old.and_then(|o| o.get(def.name));
            match (before.is_some(), v, was) {
                (true, _, Some(w)) if w == v => {}
                (true, Value::Array(items), Some(Value::Array(old_items))) => {
                    if items.len() > MAX_MULTI_VALUES && items.len() > old_items.len() {
                        return Err(ScimError::invalid_value(format!(
                            "{} has {} values; the limit is {MAX_MULTI_VALUES}",
                            def.name,
                            items.len()
                        )));
                    }
                    for item in items.iter().filter(|i| !old_items.contains(i)) {
                        check_limits(def, item, def.name)?;
                    }
                }
                _ => check_limits(def, v, def.name)?,
            }
        }
    }
    Ok(())
}

/// The object holding an attribute: the resource itself, or the extension object (created when
/// missing).
pub(crate) fn container_mut<'a>(
    resource: &'a mut Map<String, Value>,
    extension: Option<&str>,
) -> Result<&'a mut Map<String, Value>, ScimError> {
    let Some(urn) = extension else {
        return Ok(resource);
    };
    let slot = resource
        .entry(urn.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
        .ok_or_else(|| ScimError::internal("extension object is not an object"))
}

/// Applies one write. Returns, for multi-valued attributes, the indices of the elements it wrote
/// (so PATCH can make a newly written `primary` exclusive).
pub fn write_assignment(
    resource: &mut Map<String, Value>,
    a: &Assignment,
    mode: WriteMode,
) -> Result<Vec<usize>, ScimError> {
    let def = a.attr.def;
    let c = container_mut(resource, a.attr.extension)?;
    if let Some(sd) = a.sub {
        let slot = c
            .entry(def.name.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        if let Some(obj) = slot.as_object_mut() {
            obj.insert(sd.name.to_string(), a.value.clone());
        }
        return Ok(Vec::new());
    }
    if def.multi {
        let incoming = match &a.value {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        return Ok(match mode {
            // The new list is built the way a POST body's is, so two elements of the request
            // that denote one value become one (RFC 7643 §2.4), and a PUT of the result stores
            // the same list.
            WriteMode::Replace => {
                let mut list = Vec::with_capacity(incoming.len());
                let written = append_elements(def, &mut list, incoming);
                c.insert(def.name.to_string(), Value::Array(list));
                written
            }
            WriteMode::Add => {
                let slot = c
                    .entry(def.name.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !slot.is_array() {
                    *slot = Value::Array(Vec::new());
                }
                match slot.as_array_mut() {
                    Some(list) => append_elements(def, list, incoming),
                    None => Vec::new(),
                }
            }
        });
    }
    if def.is_complex() {
        if let (Some(Value::Object(existing)), Value::Object(new)) = (c.get_mut(def.name), &a.value)
        {
            // A new `value` names a different referent (manager), so its `$ref` must not survive.
            if !new.contains_key("value") {
                for (k, v) in new {
                    existing.insert(k.clone(), v.clone());
                }
                return Ok(Vec::new());
            }
        }
    }
    c.insert(def.name.to_string(), a.value.clone());
    Ok(Vec::new())
}

/// Appends elements to a multi-valued attribute without creating duplicates: an element that
/// denotes the same value as an existing one (see [`same_element`]) updates it instead, which
/// makes Entra's every-cycle `Add roles` idempotent.
pub(crate) fn append_elements(
    def: &AttrDef,
    list: &mut Vec<Value>,
    incoming: Vec<Value>,
) -> Vec<usize> {
    let mut written = Vec::with_capacity(incoming.len());
    for el in incoming {
        match list.iter().position(|e| same_element(def, e, &el)) {
            Some(i) => {
                if let (Some(Value::Object(existing)), Value::Object(new)) = (list.get_mut(i), &el)
                {
                    for (k, v) in new {
                        existing.insert(k.clone(), v.clone());
                    }
                }
                written.push(i);
            }
            None => {
                list.push(el);
                written.push(list.len() - 1);
            }
        }
    }
    written
}

/// Two elements denote the same value when they are equal, or when they have the same `value`
/// and the same `type` (compared case-insensitively unless `value` is case-exact).
pub(crate) fn same_element(def: &AttrDef, a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    let (Value::Object(x), Value::Object(y)) = (a, b) else {
        return false;
    };
    let exact = def.sub_attr("value").is_some_and(|d| d.case_exact);
    let eq = |k: &str, exact: bool| match (x.get(k), y.get(k)) {
        (None, None) => true,
        (Some(Value::String(p)), Some(Value::String(q))) if !exact => p.eq_ignore_ascii_case(q),
        (p, q) => p == q,
    };
    x.contains_key("value") && eq("value", exact) && eq("type", false)
}

/// After a PATCH wrote elements `written` of a list, a `primary: true` among them takes the
/// primary flag from every other element (RFC 7644 §3.5.2).
pub(crate) fn make_primary_exclusive(list: &mut [Value], written: &[usize]) {
    let wrote_primary = written.iter().any(|&i| list.get(i).is_some_and(is_primary));
    if !wrote_primary {
        return;
    }
    for (i, el) in list.iter_mut().enumerate() {
        if !written.contains(&i) && is_primary(el) {
            if let Some(obj) = el.as_object_mut() {
                obj.insert("primary".into(), Value::Bool(false));
            }
        }
    }
}

fn is_primary(v: &Value) -> bool {
    v.get("primary") == Some(&Value::Bool(true))
}

/// Turns a resource object into its stored form: drops empty values, recomputes `schemas`, and
/// validates. Shared by [`normalize`] and PATCH so both enforce the same rules.
pub fn finish(kind: ResourceKind, mut resource: Map<String, Value>) -> Result<Value, ScimError> {
    resource.remove("schemas");
    resource.retain(|_, v| !prune(v));
    let mut schemas = vec![Value::String(kind.core().id.to_string())];
    for ext in kind.extensions() {
        if resource.contains_key(ext.id) {
            schemas.push(Value::String(ext.id.to_string()));
        }
    }
    validate(kind, &resource)?;
    resource.insert("schemas".into(), Value::Array(schemas));
    Ok(Value::Object(resource))
}

/// Removes nulls and empty lists/objects below `v`; returns whether `v` itself is now empty.
fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => {
            items.retain_mut(|i| !prune(i));
            items.is_empty()
        }
        Value::Object(obj) => {
            obj.retain(|_, i| !prune(i));
            obj.is_empty()
        }
        _ => false,
    }
}

/// The rules a stored resource must satisfy (RFC 7643 §2.4, §4.1, §4.2).
pub fn validate(kind: ResourceKind, resource: &Map<String, Value>) -> Result<(), ScimError> {
    for def in kind.core().attributes.iter().filter(|d| d.required) {
        let ok = match resource.get(def.name) {
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        };
        if !ok {
            return Err(ScimError::invalid_value(format!(
                "{} is required and must not be blank",
                def.name
            )));
        }
    }
    let scopes = std::iter::once((kind.core().attributes, Some(resource))).chain(
        kind.extensions().iter().map(|ext| {
            (
                ext.attributes,
                resource.get(ext.id).and_then(Value::as_object),
            )
        }),
    );
    for (attrs, obj) in scopes {
        let Some(obj) = obj else { continue };
        for def in attrs.iter().filter(|d| d.multi && d.is_complex()) {
            let primaries = obj
                .get(def.name)
                .and_then(Value::as_array)
                .map_or(0, |l| l.iter().filter(|e| is_primary(e)).count());
            if primaries > 1 {
                return Err(ScimError::invalid_value(format!(
                    "{} has {primaries} values marked primary; at most one may be",
                    def.name
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
// Tests fail loudly on purpose.
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::scim::error::ScimType;
    use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
    use serde_json::json;

    fn user(body: Value) -> Value {
        normalize(ResourceKind::User, &body).unwrap().resource
    }

    fn user_err(body: Value) -> ScimError {
        normalize(ResourceKind::User, &body).unwrap_err()
    }

    #[test]
    fn okta_create_body() {
        // Behaviours §1.4: what an Okta app sends on assignment.
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "alice@example.com",
            "name": {"givenName": "Alice", "familyName": "Smith"},
            "emails": [{"primary": true, "value": "alice@example.com", "type": "work"}],
            "displayName": "Alice Smith",
            "locale": "en-US",
            "externalId": "00u1a2b3c4d5e6f7g8h9",
            "groups": [],
            "password": "tV9#kq2L",
            "active": true
        });
        assert_eq!(
            user(body),
            json!({
                "schemas": [USER_SCHEMA],
                "userName": "alice@example.com",
                "name": {"givenName": "Alice", "familyName": "Smith"},
                "emails": [{"primary": true, "value": "alice@example.com", "type": "work"}],
                "displayName": "Alice Smith",
                "locale": "en-US",
                "externalId": "00u1a2b3c4d5e6f7g8h9",
                "active": true
            })
        );
    }

    #[test]
    fn entra_create_body() {
        // Behaviours §2.5: Entra's default create body, with its client-sent `meta` and empty roles.
        let body = json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
            ],
            "externalId": "jdoe",
            "userName": "jdoe@contoso.com",
            "active": true,
            "emails": [{"primary": true, "type": "work", "value": "jdoe@contoso.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "John Doe", "familyName": "Doe", "givenName": "John"},
            "roles": []
        });
        assert_eq!(
            user(body),
            json!({
                "schemas": [USER_SCHEMA],
                "externalId": "jdoe",
                "userName": "jdoe@contoso.com",
                "active": true,
                "emails": [{"primary": true, "type": "work", "value": "jdoe@contoso.com"}],
                "name": {"formatted": "John Doe", "familyName": "Doe", "givenName": "John"}
            })
        );
    }

    #[test]
    fn entra_older_body_with_nulls_and_extension() {
        // Behaviours §2.5: older Entra docs send explicit nulls, which mean "absent".
        let body = json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
            "active": true,
            "addresses": null,
            "title": null,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "department": "Sales",
                "manager": null
            }
        });
        assert_eq!(
            user(body),
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
                "active": true,
                ENTERPRISE_USER_SCHEMA: {"department": "Sales"}
            })
        );
    }

    #[test]
    fn entra_group_create_ignores_adscim_schema() {
        let body = json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:Group",
                "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
            ],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "Group1936",
            "meta": {"resourceType": "Group"}
        });
        let n = normalize(ResourceKind::Group, &body).unwrap();
        assert_eq!(
            n.resource,
            json!({
                "schemas": [GROUP_SCHEMA],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "displayName": "Group1936"
            })
        );
        assert_eq!(n.members, None);
    }

    #[test]
    fn okta_group_create_with_members() {
        let n = normalize(
            ResourceKind::Group,
            &json!({"schemas": [GROUP_SCHEMA], "displayName": "Engineering", "members": []}),
        )
        .unwrap();
        assert_eq!(n.members, Some(vec![]));
        let n = normalize(
            ResourceKind::Group,
            &json!({
                "displayName": "Engineering",
                "members": [
                    {"value": "u1", "display": "alice@example.com", "$ref": "https://x/Users/u1", "type": "User"},
                    {"value": "u2"},
                    {"Value": "u1"},
                    "u3"
                ]
            }),
        )
        .unwrap();
        let ids: Vec<_> = n.members.unwrap().into_iter().map(|m| m.value).collect();
        assert_eq!(ids, ["u1", "u2", "u3"]);
        assert_eq!(
            n.resource,
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Engineering"})
        );
    }

    #[test]
    fn member_without_string_value_is_invalid() {
        for members in [
            json!([{"display": "x"}]),
            json!([{"value": 42}]),
            json!([{"value": " "}]),
        ] {
            let e = normalize(
                ResourceKind::Group,
                &json!({"displayName": "g", "members": members}),
            )
            .unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{members}");
        }
    }

    #[test]
    fn names_are_case_insensitive_and_canonicalised() {
        let r = user(json!({
            "USERNAME": "bob",
            "Emails": [{"Value": "bob@x.com", "Primary": "True", "TYPE": "work"}],
            "Active": "false",
            "NAME": {"GIVENNAME": "Bob"},
            "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER": {"Department": "R&D"}
        }));
        assert_eq!(
            r,
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "userName": "bob",
                "emails": [{"value": "bob@x.com", "primary": true, "type": "work"}],
                "active": false,
                "name": {"givenName": "Bob"},
                ENTERPRISE_USER_SCHEMA: {"department": "R&D"}
            })
        );
    }

    #[test]
    fn urn_qualified_and_dotted_keys_are_expanded() {
        let r = user(json!({
            "userName": "carol",
            "name.givenName": "Carol",
            "name": {"familyName": "King"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "42",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value": "m1",
            "urn:ietf:params:scim:schemas:core:2.0:User:title": "Boss"
        }));
        assert_eq!(
            r,
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "userName": "carol",
                "name": {"givenName": "Carol", "familyName": "King"},
                "title": "Boss",
                ENTERPRISE_USER_SCHEMA: {"employeeNumber": "42", "manager": {"value": "m1"}}
            })
        );
    }

    #[test]
    fn unknown_readonly_and_secret_attributes_are_dropped() {
        let r = user(json!({
            "id": "client-chosen",
            "meta": {"created": "2020-01-01T00:00:00Z"},
            "userName": "dave",
            "groups": [{"value": "g1"}],
            "password": "hunter2",
            "favouriteColour": "blue",
            "name": {"givenName": "Dave", "nickname2": "D"},
            "urn:example:custom:2.0:User": {"badge": "7"},
            "urn:example:custom:2.0:User:badge": "7",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "manager": {"value": "m1", "displayName": "Boss"},
                "shoeSize": 44
            }
        }));
        assert_eq!(
            r,
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "userName": "dave",
                "name": {"givenName": "Dave"},
                ENTERPRISE_USER_SCHEMA: {"manager": {"value": "m1"}}
            })
        );
    }

    #[test]
    fn scalars_are_coerced_to_the_schema_type() {
        let r = user(json!({
            "userName": 12345,
            "active": "TRUE",
            "emails": {"value": "e@x.com", "primary": "False"},
            "phoneNumbers": "+1 555 0100",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": 42,
                "manager": "m-7"
            }
        }));
        assert_eq!(
            r,
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "userName": "12345",
                "active": true,
                "emails": [{"value": "e@x.com", "primary": false}],
                "phoneNumbers": [{"value": "+1 555 0100"}],
                ENTERPRISE_USER_SCHEMA: {"employeeNumber": "42", "manager": {"value": "m-7"}}
            })
        );
    }

    #[test]
    fn uncoercible_values_name_the_attribute() {
        let cases = [
            (json!({"userName": "u", "active": "maybe"}), "active"),
            (json!({"userName": "u", "active": 1}), "active"),
            (json!({"userName": "u", "name": "Just A String"}), "name"),
            (json!({"userName": "u", "title": {"a": 1}}), "title"),
            (
                json!({"userName": "u", "emails": [[{"value": "x"}]]}),
                "emails",
            ),
            (
                json!({"userName": "u", "emails": [{"primary": "yes", "value": "x"}]}),
                "emails.primary",
            ),
            (json!({"userName": ["a", "b"]}), "userName"),
        ];
        for (body, attr) in cases {
            let e = user_err(body.clone());
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{body}");
            assert!(e.detail.contains(attr), "{body}: {}", e.detail);
        }
    }

    #[test]
    fn stringified_role_values_are_unpacked() {
        let r = user(json!({
            "userName": "erin",
            "roles": [
                {"value": "{\"id\":\"06b07648-ecfe-589f-9d2f-6325724a46ee\",\"value\":\"Admin\",\"displayName\":\"Role1234\"}"},
                {"primary": true, "type": "WindowsAzureActiveDirectoryRole", "value": "member"}
            ]
        }));
        assert_eq!(
            r["roles"],
            json!([
                {"value": "Admin", "display": "Role1234"},
                {"primary": true, "type": "WindowsAzureActiveDirectoryRole", "value": "member"}
            ])
        );
    }

    #[test]
    fn required_attributes() {
        for body in [
            json!({}),
            json!({"userName": "  "}),
            json!({"userName": null}),
        ] {
            let e = user_err(body);
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
            assert!(e.detail.contains("userName"));
        }
        let e = normalize(ResourceKind::Group, &json!({"members": []})).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(e.detail.contains("displayName"));
    }

    #[test]
    fn more_than_one_primary_is_invalid() {
        let e = user_err(json!({
            "userName": "f",
            "emails": [
                {"value": "a@x.com", "primary": true},
                {"value": "b@x.com", "primary": "True"}
            ]
        }));
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(e.detail.contains("emails"));
    }

    #[test]
    fn a_body_must_be_an_object() {
        let e = normalize(ResourceKind::User, &json!([1])).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    }

    fn limit_err(body: Value) -> String {
        let e = user_err(body);
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidValue)));
        e.detail
    }

    #[test]
    fn strings_are_capped_in_bytes() {
        let at = "x".repeat(MAX_STRING_BYTES);
        let over = "x".repeat(MAX_STRING_BYTES + 1);
        assert_eq!(
            user(json!({"userName": "a", "displayName": at}))["displayName"]
                .as_str()
                .map(str::len),
            Some(MAX_STRING_BYTES)
        );
        let d = limit_err(json!({"userName": "a", "displayName": over}));
        assert_eq!(d, "displayName is 4097 bytes long; the limit is 4096 bytes");
        let d = limit_err(json!({"userName": "a", "displayName": "x".repeat(1_000_000)}));
        assert!(d.contains("displayName is 1000000 bytes"), "{d}");
        // Bytes, not characters: 2,048 two-byte characters fit, one more does not.
        user(json!({"userName": "a", "displayName": "é".repeat(MAX_STRING_BYTES / 2)}));
        limit_err(json!({"userName": "a", "displayName": "é".repeat(MAX_STRING_BYTES / 2 + 1)}));
        // Every place a string can sit names the attribute it sits in.
        let cases = [
            (json!({"userName": over}), "userName"),
            (
                json!({"userName": "a", "emails": [{"value": over}]}),
                "emails.value",
            ),
            (json!({"userName": "a", "emails": over}), "emails.value"),
            (
                json!({"userName": "a", "name": {"givenName": over}}),
                "name.givenName",
            ),
            (
                json!({"userName": "a", "name.familyName": over}),
                "name.familyName",
            ),
            (
                json!({"userName": "a", "addresses": [{"type": "work", "formatted": over}]}),
                "addresses.formatted",
            ),
            (json!({"userName": "a", "externalId": over}), "externalId"),
            (
                json!({"userName": "a", ENTERPRISE_USER_SCHEMA: {"manager": over}}),
                "manager.value",
            ),
            (
                json!({"userName": "a", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": over}),
                "department",
            ),
        ];
        for (body, attr) in cases {
            let d = limit_err(body.clone());
            assert!(d.starts_with(&format!("{attr} is ")), "{body}: {d}");
            assert!(d.contains("4096"), "{d}");
        }
        let e = normalize(ResourceKind::Group, &json!({"displayName": over})).unwrap_err();
        assert!(e.detail.starts_with("displayName is 4097"), "{}", e.detail);
    }

    #[test]
    fn legitimate_long_values_fit() {
        // Entra's stringified role with a long role value and display name, and a certificate
        // at the binary limit.
        let role = json!({"id": "06b07648-ecfe-589f-9d2f-6325724a46ee", "value": "v".repeat(120), "displayName": "d".repeat(256)}).to_string();
        let r = user(json!({"userName": "a", "roles": [{"value": role}]}));
        assert_eq!(r["roles"][0]["value"].as_str().map(str::len), Some(120));
        let cert = "M".repeat(MAX_BINARY_BYTES);
        let r = user(json!({"userName": "a", "x509Certificates": [{"value": cert}]}));
        assert_eq!(
            r["x509Certificates"][0]["value"].as_str().map(str::len),
            Some(MAX_BINARY_BYTES)
        );
        let d = limit_err(
            json!({"userName": "a", "x509Certificates": [{"value": "M".repeat(MAX_BINARY_BYTES + 1)}]}),
        );
        assert_eq!(
            d,
            "x509Certificates.value is 16385 bytes long; the limit is 16384 bytes"
        );
    }

    #[test]
    fn dropped_values_are_not_measured() {
        let big = "x".repeat(1_000_000);
        let r = user(json!({
            "userName": "a",
            "password": big,
            "favouriteColour": big,
            "groups": [{"value": "g", "display": big}],
            "name": {"nickname2": big},
            "urn:example:custom:2.0:User": {"badge": big}
        }));
        assert_eq!(r, json!({"schemas": [USER_SCHEMA], "userName": "a"}));
    }

    #[test]
    fn multi_valued_attributes_are_capped() {
        let emails = |n: usize| -> Vec<Value> {
            (0..n)
                .map(|i| json!({"value": format!("u{i}@x.com")}))
                .collect()
        };
        let r = user(json!({"userName": "a", "emails": emails(MAX_MULTI_VALUES)}));
        assert_eq!(r["emails"].as_array().map(Vec::len), Some(MAX_MULTI_VALUES));
        let d = limit_err(json!({"userName": "a", "emails": emails(MAX_MULTI_VALUES + 1)}));
        assert_eq!(d, "emails has 101 values; the limit is 100");
        let roles: Vec<Value> = (0..=MAX_MULTI_VALUES)
            .map(|i| json!({"value": format!("r{i}")}))
            .collect();
        assert!(limit_err(json!({"userName": "a", "roles": roles})).starts_with("roles has 101"));
        // The same list under two spellings adds up.
        let mut body = json!({"userName": "a", "emails": emails(60)});
        body["Emails"] = Value::Array(
            (60..120)
                .map(|i| json!({"value": format!("u{i}@x.com")}))
                .collect(),
        );
        assert!(limit_err(body).starts_with("emails has 120 values"));
    }

    #[test]
    fn group_members_are_not_capped_in_a_body_but_their_ids_are() {
        let members: Vec<Value> = (0..20_000)
            .map(|i| json!({"value": format!("u{i}")}))
            .collect();
        let n = normalize(
            ResourceKind::Group,
            &json!({"displayName": "g", "members": members}),
        )
        .unwrap();
        assert_eq!(n.members.map(|m| m.len()), Some(20_000));
        let e = normalize(
            ResourceKind::Group,
            &json!({"displayName": "g", "members": [{"value": "u".repeat(MAX_STRING_BYTES + 1)}]}),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(
            e.detail.starts_with("members.value is 4097 bytes"),
            "{}",
            e.detail
        );
    }

    #[test]
    fn stored_limits_skip_unchanged_attributes() {
        let long = Value::String("x".repeat(MAX_STRING_BYTES + 1));
        let mut old = Map::new();
        old.insert("userName".into(), json!("a"));
        old.insert("displayName".into(), long.clone());
        let mut new = old.clone();
        new.insert("active".into(), json!(false));
        check_resource_limits(ResourceKind::User, &new, Some(&old)).unwrap();
        let e = check_resource_limits(ResourceKind::User, &new, None).unwrap_err();
        assert!(e.detail.starts_with("displayName"), "{}", e.detail);
        new.insert("title".into(), long);
        let e = check_resource_limits(ResourceKind::User, &new, Some(&old)).unwrap_err();
        assert!(e.detail.starts_with("title"), "{}", e.detail);
    }

    #[test]
    fn bare_enterprise_names_fall_back_to_the_extension() {
        let r = user(json!({"userName": "g", "department": "Ops", "manager": [{"value": "m2"}]}));
        assert_eq!(
            r[ENTERPRISE_USER_SCHEMA],
            json!({"department": "Ops", "manager": {"value": "m2"}})
        );
    }
}
