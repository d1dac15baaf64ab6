//! The properties the fuzz targets check, one function per target, shared by the libFuzzer
//! targets in `fuzz/` (nightly) and by `tests/it/fuzz_props.rs` (stable, in CI), so both run
//! exactly the same checks. See docs/fuzzing.md.
//!
//! Each function takes arbitrary bytes and returns `Err` with a description when a property
//! does not hold; a panic inside the library is a failure too (the fuzz target and the test both
//! see it). They are not used by the server.

use crate::config::{Config, ConfigError, ENV_ADMIN_TOKEN, ENV_PORTKEY_API_KEY, ENV_SCIM_TOKEN};
use crate::scim::error::{ScimError, ScimType};
use crate::scim::filter::{self, Filter, IndexHint, PatchPath};
use crate::scim::patch;
use crate::scim::resource;
use crate::scim::schema::ResourceKind;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// What a property violation looks like: a sentence naming the input's outcome.
pub type Violation = String;

const KINDS: [ResourceKind; 2] = [ResourceKind::User, ResourceKind::Group];

// ---------------------------------------------------------------------------------------------
// Filter
// ---------------------------------------------------------------------------------------------

/// The filter parser and evaluator, on `input` read as a filter and as a PATCH path:
/// - a filter that parses stays within the cost limits, renders to text that parses back to the
///   same tree, validates or not for each resource kind without panicking, and evaluates against
///   sample resources; when it matches one and names an index hint, the hint selects that
///   resource (the store looks candidates up by the hint, so a mismatch would hide results);
/// - a refusal is a `400` with `invalidFilter`, or `tooMany` exactly when the cost is the reason;
/// - the same for a PATCH path (`invalidPath` for every refusal).
pub fn filter(input: &[u8]) -> Result<(), Violation> {
    let Ok(text) = std::str::from_utf8(input) else {
        // Query strings reach the parser as `&str`; invalid UTF-8 is refused before it.
        return Ok(());
    };
    check_filter(text)?;
    check_path(text)?;
    check_shortcuts(text)
}

/// The parsers' shortcuts for one comparison and for a plain attribute name answer exactly what
/// the grammar answers, wherever they answer at all.
fn check_shortcuts(text: &str) -> Result<(), Violation> {
    let trimmed = text.trim();
    if trimmed.len() > filter::MAX_FILTER_LEN {
        return Ok(());
    }
    if let Some(quick) = filter::simple_comparison(trimmed) {
        match filter::parse_filter_by_grammar(text) {
            Ok(full) if full == quick => {}
            other => {
                return Err(format!(
                    "{text:?}: the shortcut read {quick:?}, the grammar {other:?}"
                ))
            }
        }
    }
    if let Some(name) = filter::plain_attr_name(trimmed) {
        match filter::parse_path_by_grammar(text) {
            Ok(PatchPath::Attr(a)) if a == filter::AttrRef::named(name) => {}
            other => {
                return Err(format!(
                    "{text:?}: the path shortcut read {name:?}, the grammar {other:?}"
                ))
            }
        }
    }
    Ok(())
}

fn check_filter(text: &str) -> Result<(), Violation> {
    let parsed = filter::parse_filter(text);
    let f = match parsed {
        Err(e) => return expect_refusal(&e, &[ScimType::InvalidFilter, ScimType::TooMany], text),
        Ok(f) => f,
    };
    check_cost(&f, text)?;
    if text.trim().len() > filter::MAX_FILTER_LEN {
        return Err(format!("a {}-byte filter was accepted", text.len()));
    }
    let rendered = f.to_string();
    if rendered.len() <= filter::MAX_FILTER_LEN {
        match filter::parse_filter(&rendered) {
            Ok(again) if again == f => {}
            Ok(again) => {
                return Err(format!(
                    "{text:?} parsed to {f:?}, rendered as {rendered:?}, which parses to {again:?}"
                ))
            }
            Err(e) => {
                return Err(format!(
                    "{text:?} parsed, rendered as {rendered:?}, which is refused: {e}"
                ))
            }
        }
    }
    for kind in KINDS {
        let valid = filter::validate(&f, kind);
        if let Err(e) = &valid {
            expect_refusal(e, &[ScimType::InvalidFilter], text)?;
        }
        let hint = filter::index_hint(&f, kind);
        for res in samples(kind) {
            match (filter::matches(&f, kind, res), &valid) {
                (Ok(true), Ok(())) => check_hint(hint.as_ref(), kind, res, text)?,
                (Ok(false), Ok(())) | (Err(_), Err(_)) => {}
                (got, want) => {
                    return Err(format!(
                        "{text:?}: validate says {want:?} but matches says {got:?}"
                    ))
                }
            }
        }
        // `references` is used to refuse filters on attributes that are never returned.
        filter::references(&f, "password");
    }
    Ok(())
}

fn check_cost(f: &Filter, text: &str) -> Result<(), Violation> {
    let c = filter::cost(f);
    if c.comparisons > filter::MAX_FILTER_COMPARISONS
        || c.substring > filter::MAX_SUBSTRING_COMPARISONS
    {
        return Err(format!("{text:?} was accepted with cost {c:?}"));
    }
    Ok(())
}

/// The store answers a filter with a hint from the hint's index only (`store::hint_ids`): ids
/// compared exactly, `userName` and group `displayName` lower-cased, `externalId` exactly.
fn check_hint(
    hint: Option<&IndexHint>,
    kind: ResourceKind,
    res: &Value,
    text: &str,
) -> Result<(), Violation> {
    let field = |name: &str| res.get(name).and_then(Value::as_str).unwrap_or_default();
    let found = match (kind, hint) {
        (_, None) => true,
        (_, Some(IndexHint::Id(v))) => field("id") == v,
        (ResourceKind::User, Some(IndexHint::UserName(v))) => {
            field("userName").to_lowercase() == v.to_lowercase()
        }
        (ResourceKind::Group, Some(IndexHint::DisplayName(v))) => {
            field("displayName").to_lowercase() == v.to_lowercase()
        }
        (_, Some(IndexHint::ExternalId(v))) => field("externalId") == v,
        (_, Some(_)) => false,
    };
    if found {
        Ok(())
    } else {
        Err(format!(
            "{text:?} matches {} {} but its index hint {hint:?} would not find it",
            kind.name(),
            field("id")
        ))
    }
}

fn check_path(text: &str) -> Result<(), Violation> {
    let p = match filter::parse_path(text) {
        Err(e) => return expect_refusal(&e, &[ScimType::InvalidPath], text),
        Ok(p) => p,
    };
    if let PatchPath::Value { filter: f, .. } = &p {
        check_cost(f, text)?;
    }
    let rendered = p.to_string();
    if rendered.len() <= filter::MAX_FILTER_LEN {
        match filter::parse_path(&rendered) {
            Ok(again) if again == p => {}
            other => {
                return Err(format!(
                    "path {text:?} parsed to {p:?}, rendered as {rendered:?}, which gives {other:?}"
                ))
            }
        }
    }
    Ok(())
}

/// A refusal must be a 400 with one of the expected `scimType`s and a detail a person can read.
fn expect_refusal(e: &ScimError, allowed: &[ScimType], input: &str) -> Result<(), Violation> {
    let typed = e.scim_type.is_some_and(|t| allowed.contains(&t));
    if e.status != 400 || !typed || e.detail.trim().is_empty() {
        return Err(format!(
            "{input:.200?} was refused with {e:?}; expected 400 with one of {allowed:?}"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

/// Canonical resources as the store keeps them (with `id` and `meta`), used as filter subjects
/// and as the starting point of PATCH requests: Okta's and Entra's create bodies, normalised.
fn samples(kind: ResourceKind) -> &'static [Value] {
    static USERS: OnceLock<Vec<Value>> = OnceLock::new();
    static GROUPS: OnceLock<Vec<Value>> = OnceLock::new();
    let stored = |kind: ResourceKind, id: &str, body: Value| -> Option<Value> {
        let mut r = resource::normalize(kind, &body).ok()?.resource;
        let obj = r.as_object_mut()?;
        obj.insert("id".into(), json!(id));
        obj.insert(
            "meta".into(),
            json!({"resourceType": kind.name(), "created": "2024-01-02T03:04:05Z",
                   "lastModified": "2024-05-06T07:08:09Z", "version": "W/\"1\""}),
        );
        Some(r)
    };
    match kind {
        ResourceKind::User => USERS.get_or_init(|| {
            [
                stored(
                    kind,
                    "2819c223-7f76-453a-919d-413861904646",
                    json!({
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                        "userName": "Alice@Example.com",
                        "externalId": "00u1a2b3c4d5e6f7g8h9",
                        "name": {"givenName": "Alice", "familyName": "Smith"},
                        "displayName": "Alice Smith",
                        "emails": [{"primary": true, "value": "alice@example.com", "type": "work"},
                                   {"value": "a.smith@home.example", "type": "home"}],
                        "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
                        "roles": [{"value": "admin", "primary": "True"}],
                        "active": true,
                        "title": "Engineer",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                            "employeeNumber": "701984", "department": "R&D",
                            "manager": {"value": "26118915"}
                        }
                    }),
                ),
                stored(
                    kind,
                    "b1",
                    json!({"userName": "bob", "active": false, "title": "",
                           "emails": [{"value": "BOB@example.org", "type": "work"}]}),
                ),
            ]
            .into_iter()
            .flatten()
            .collect()
        }),
        ResourceKind::Group => GROUPS.get_or_init(|| {
            [
                stored(
                    kind,
                    "g1",
                    json!({"displayName": "ws-Engineering-role-admin", "externalId": "8aa1a0c0"}),
                ),
                stored(kind, "g2", json!({"displayName": "Sales"})),
            ]
            .into_iter()
            .flatten()
            .collect()
        }),
    }
}

/// Resource normalisation, on `input` as a User body and as a Group body:
/// - a refusal is a `400` with a `scimType`;
/// - an accepted body's canonical form validates, is within the size limits, survives a JSON
///   round trip unchanged, and normalising it again (also with the `id`, `meta` and members the
///   server adds when it answers) gives the same resource and the same members.
pub fn resource(input: &[u8]) -> Result<(), Violation> {
    let Ok(body) = serde_json::from_slice::<Value>(input) else {
        return Ok(());
    };
    for kind in KINDS {
        check_resource(kind, &body)?;
    }
    Ok(())
}

fn check_resource(kind: ResourceKind, body: &Value) -> Result<(), Violation> {
    let first = match resource::normalize(kind, body) {
        Err(e) => {
            return expect_refusal(
                &e,
                &[ScimType::InvalidValue, ScimType::InvalidSyntax],
                &body.to_string(),
            )
        }
        Ok(n) => n,
    };
    let name = kind.name();
    let Value::Object(obj) = &first.resource else {
        return Err(format!("{name}: canonical form is not an object"));
    };
    check_stored(kind, obj).map_err(|e| format!("{name} {body}: {e}"))?;
    let text = first.resource.to_string();
    match serde_json::from_str::<Value>(&text) {
        Ok(v) if v == first.resource => {}
        other => return Err(format!("{name}: {text} reads back as {other:?}")),
    }
    let mut answered = obj.clone();
    answered.insert("id".into(), json!("x1"));
    answered.insert("meta".into(), json!({"resourceType": name}));
    if let Some(members) = &first.members {
        let list: Vec<Value> = members.iter().map(|m| json!({"value": m.value})).collect();
        answered.insert("members".into(), Value::Array(list));
    }
    match resource::normalize(kind, &Value::Object(answered)) {
        Ok(again) if again == first => Ok(()),
        other => Err(format!(
            "{name} {body}: canonical {first:?} normalises again to {other:?}"
        )),
    }
}

/// What every stored resource satisfies.
fn check_stored(kind: ResourceKind, obj: &Map<String, Value>) -> Result<(), Violation> {
    resource::validate(kind, obj).map_err(|e| format!("stored form does not validate: {e}"))?;
    resource::check_resource_limits(kind, obj, None)
        .map_err(|e| format!("stored form is over a limit: {e}"))?;
    for key in ["id", "meta", "password", "members", "groups"] {
        if obj.contains_key(key) {
            return Err(format!("stored form keeps {key}"));
        }
    }
    match obj.get("schemas").and_then(Value::as_array) {
        Some(s) if s.first() == Some(&json!(kind.core().id)) => Ok(()),
        other => Err(format!("stored form has schemas {other:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// PATCH
// ---------------------------------------------------------------------------------------------

/// The PATCH engine, on `input` as a PATCH body applied to each sample user and group:
/// - a request over [`patch::MAX_OPERATIONS`] is refused with `400 invalidValue`; any refusal is a
///   4xx with a `scimType`;
/// - a request that applies leaves a resource that is still a valid stored resource within the
///   size limits (and that normalises to itself);
/// - a request that fails changes nothing.
pub fn patch(input: &[u8]) -> Result<(), Violation> {
    let Ok(body) = serde_json::from_slice::<Value>(input) else {
        return Ok(());
    };
    let op_count = body
        .as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("Operations"))
        })
        .and_then(|(_, v)| v.as_array())
        .map_or(0, Vec::len);
    let ops = match patch::parse_request(&body) {
        Err(e) => {
            if op_count > patch::MAX_OPERATIONS
                && (e.scim_type != Some(ScimType::InvalidValue) || !e.detail.contains("limit"))
            {
                return Err(format!(
                    "{op_count} operations refused with {e:?}, not the operations limit"
                ));
            }
            return expect_patch_refusal(&e);
        }
        Ok(ops) => ops,
    };
    if op_count > patch::MAX_OPERATIONS {
        return Err(format!("a PATCH with {op_count} operations was accepted"));
    }
    for kind in KINDS {
        for start in samples(kind) {
            check_apply(kind, start, &ops)?;
        }
    }
    Ok(())
}

fn check_apply(kind: ResourceKind, start: &Value, ops: &[patch::PatchOp]) -> Result<(), Violation> {
    // The store hands `apply` the stored document without `id` and `meta`, then adds them back.
    let mut doc = start.clone();
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("id");
        obj.remove("meta");
    }
    let before = doc.clone();
    match patch::apply(kind, &mut doc, ops) {
        Err(e) => {
            expect_patch_refusal(&e)?;
            if doc != before {
                return Err(format!(
                    "a failed PATCH ({e}) changed the {}: {before} became {doc}",
                    kind.name()
                ));
            }
            Ok(())
        }
        Ok(_) => {
            let Value::Object(obj) = &doc else {
                return Err(format!("PATCH left the {} as {doc}", kind.name()));
            };
            check_stored(kind, obj).map_err(|e| format!("after PATCH {ops:?}: {e}"))?;
            match resource::normalize(kind, &doc) {
                Ok(n) if n.resource == doc => Ok(()),
                other => Err(format!(
                    "after PATCH {ops:?} the {} {doc} normalises to {other:?}",
                    kind.name()
                )),
            }
        }
    }
}

fn expect_patch_refusal(e: &ScimError) -> Result<(), Violation> {
    if !(400..500).contains(&e.status) || e.scim_type.is_none() || e.detail.trim().is_empty() {
        return Err(format!("PATCH refused with {e:?}"));
    }
    if e.detail.contains("the limit is")
        && !matches!(
            e.scim_type,
            Some(ScimType::InvalidValue | ScimType::InvalidPath)
        )
    {
        return Err(format!("a PATCH limit answered {e:?}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

const EXAMPLE_CONFIG: &str = include_str!("../config/scim-sync.example.toml");

/// Every key the example file documents, as errors name them (`[section] key`), plus the
/// environment variables and the mapping table.
fn known_keys() -> &'static [String] {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys: Vec<String> = [
            ENV_SCIM_TOKEN,
            ENV_ADMIN_TOKEN,
            ENV_PORTKEY_API_KEY,
            "[[mapping.groups]]",
        ]
        .iter()
        .map(|k| (*k).to_string())
        .collect();
        let mut section = String::new();
        for line in EXAMPLE_CONFIG.lines() {
            let line = line.trim_start_matches('#').trim();
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                if !s.starts_with('[') {
                    section = s.to_string();
                }
            } else if let Some((key, _)) = line.split_once('=') {
                let key = key.trim();
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    keys.push(format!("[{section}] {key}"));
                }
            }
        }
        keys
    })
}

/// The config loader, on `input` as the TOML file with and without the secrets in the
/// environment: it never panics, every validation error names a key the example file documents
/// (or an environment variable) and a fix, a syntax or type error says where, and a loaded
/// configuration never shows a secret in its `Debug` form.
pub fn config(input: &[u8]) -> Result<(), Violation> {
    let Ok(text) = std::str::from_utf8(input) else {
        return Ok(());
    };
    let secrets: HashMap<String, String> = [
        (ENV_SCIM_TOKEN, "scim-secret-f00d"),
        (ENV_ADMIN_TOKEN, "admin-secret-beef"),
        (ENV_PORTKEY_API_KEY, "pk-secret-cafe"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect();
    for env in [HashMap::new(), secrets] {
        match Config::from_toml(text, Path::new("fuzz.toml"), &env) {
            Ok(cfg) => {
                let shown = format!("{cfg:?}");
                if let Some(leak) = env.values().find(|v| shown.contains(v.as_str())) {
                    return Err(format!("the loaded config shows the secret {leak}"));
                }
            }
            Err(ConfigError::Invalid { key, problem, fix }) => {
                if !known_keys().iter().any(|k| key.contains(k.as_str())) {
                    return Err(format!(
                        "error names key {key:?}, which the example config does not document \
                         ({problem})"
                    ));
                }
                if problem.trim().is_empty() || fix.trim().is_empty() {
                    return Err(format!("error for {key} lacks a problem or a fix"));
                }
            }
            Err(ConfigError::Parse { reason, .. }) => {
                if !parse_error_says_where(&reason) {
                    return Err(format!("parse error names neither key nor place: {reason}"));
                }
            }
            Err(e @ ConfigError::Read { .. }) => {
                return Err(format!("from_toml reported a read error: {e}"))
            }
        }
    }
    Ok(())
}

/// A parse error points at a line (TOML syntax) or names the key or field at fault.
fn parse_error_says_where(reason: &str) -> bool {
    reason.contains("line")
        || reason.contains("key")
        || reason.contains("field")
        || known_keys().iter().any(|k| {
            k.rsplit(' ')
                .next()
                .is_some_and(|name| reason.contains(name))
        })
}
