//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9): which parts of a resource a
//! response carries.
//!
//! The `returned` characteristic in `schema.rs` decides the defaults, so what `/Schemas`
//! advertises is what responses contain: `always` (`id`, `schemas`) survives every list,
//! `never` (`password`) never appears, `default` appears unless excluded or unless an
//! `attributes` list leaves it out.

use crate::scim::error::ScimError;
use crate::scim::filter::AttrRef;
use crate::scim::schema::{AttrDef, ResourceKind, Returned};
use serde_json::{Map, Value};

/// Parses a comma-separated `attributes` / `excludedAttributes` value.
///
/// Names are resolved case-insensitively and returned in schema casing: core attributes without
/// a URN (`name` with `sub` `givenName` for `urn:…:core:2.0:User:name.givenName`), extension
/// attributes with their extension URN, and a bare extension URN as an `AttrRef` whose `name`
/// is that URN (the whole extension object). Names the schema does not know are dropped, as
/// RFC 7644 §3.9 asks of unknown attributes in these lists.
pub fn parse_attr_list(input: &str, kind: ResourceKind) -> Result<Vec<AttrRef>, ScimError> {
    let mut out: Vec<AttrRef> = Vec::new();
    for item in input.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(r) = parse_attr(item, kind) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

fn parse_attr(item: &str, kind: ResourceKind) -> Option<AttrRef> {
    if let Some(ext) = kind.extension(item) {
        return Some(AttrRef::named(ext.id));
    }
    let (urn, rest) = kind.split_urn(item);
    let (name, sub) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    if name.eq_ignore_ascii_case("schemas") && sub.is_none() && ext_of(kind, urn).is_none() {
        return Some(AttrRef::named("schemas"));
    }
    let res = kind.resolve(urn, name)?;
    let sub = match sub {
        Some(s) => Some(res.def.sub_attr(s)?.name.to_string()),
        None => None,
    };
    Some(AttrRef {
        urn: res.extension.map(str::to_string),
        name: res.def.name.to_string(),
        sub,
    })
}

/// The URN if it names an extension of `kind` (as opposed to its core schema), else `None`.
fn ext_of(kind: ResourceKind, urn: Option<&str>) -> Option<&'static str> {
    urn.and_then(|u| kind.extension(u)).map(|e| e.id)
}

/// Projects a resource for a response.
///
/// With a non-empty `attributes` list the output holds exactly those attributes (or
/// sub-attributes), plus `schemas` and the `returned: always` ones. Otherwise it holds every
/// default-returned attribute minus those in `excluded`, which cannot remove `returned: always`
/// attributes. `returned: never` attributes never appear, and neither do keys the schema does
/// not know. A complex value left empty by sub-attribute selection is omitted.
pub fn project(
    kind: ResourceKind,
    resource: &Value,
    attributes: &[AttrRef],
    excluded: &[AttrRef],
) -> Value {
    let Some(obj) = resource.as_object() else {
        return resource.clone();
    };
    let mut out = Map::new();
    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") {
            out.insert(key.clone(), value.clone());
        } else if let Some(ext) = kind.extension(key) {
            let projected = value.as_object().and_then(|inner| {
                let kept: Map<String, Value> = inner
                    .iter()
                    .filter_map(|(k, v)| {
                        let def = kind.resolve(Some(ext.id), k)?.def;
                        let keep = selection(kind, Some(ext.id), def, attributes, excluded);
                        Some((k.clone(), apply(def, &keep, v)?))
                    })
                    .collect();
                (!kept.is_empty()).then_some(Value::Object(kept))
            });
            if let Some(v) = projected {
                out.insert(key.clone(), v);
            }
        } else if let Some(res) = kind.resolve(None, key) {
            let keep = selection(kind, None, res.def, attributes, excluded);
            if let Some(v) = apply(res.def, &keep, value) {
                out.insert(key.clone(), v);
            }
        }
    }
    Value::Object(out)
}

/// Whether [`project`] would keep any of the top-level attribute `name` (an attribute name, or
/// an extension URN for the extension object). The store uses it to skip loading member and
/// group lists that the response will not carry.
pub fn wants_attr(
    kind: ResourceKind,
    attributes: &[AttrRef],
    excluded: &[AttrRef],
    name: &str,
) -> bool {
    if name.eq_ignore_ascii_case("schemas") {
        return true;
    }
    if let Some(ext) = kind.extension(name) {
        return ext.attributes.iter().any(|def| {
            !matches!(
                selection(kind, Some(ext.id), def, attributes, excluded),
                Keep::Nothing
            )
        });
    }
    kind.resolve(None, name).is_some_and(|res| {
        !matches!(
            selection(kind, None, res.def, attributes, excluded),
            Keep::Nothing
        )
    })
}

/// How much of one attribute the output keeps.
enum Keep<'a> {
    Nothing,
    Whole,
    /// Only these sub-attributes.
    Only(Vec<&'a str>),
    /// All but these sub-attributes.
    Except(Vec<&'a str>),
}

/// Whether `r` names the attribute `name` held in `container` (`None` for the top level, else
/// the extension URN): `Some(None)` for the whole attribute, `Some(Some(sub))` for one of its
/// sub-attributes.
fn target<'r>(
    r: &'r AttrRef,
    kind: ResourceKind,
    container: Option<&str>,
    name: &str,
) -> Option<Option<&'r str>> {
    let r_container = ext_of(kind, r.urn.as_deref()).or_else(|| {
        // An URN that is neither core nor a known extension names nothing here.
        r.urn
            .as_deref()
            .filter(|u| !u.eq_ignore_ascii_case(kind.core().id))
    });
    if r_container.is_none()
        && r.sub.is_none()
        && container.is_some_and(|c| c.eq_ignore_ascii_case(&r.name))
    {
        return Some(None);
    }
    let same_container = match (r_container, container) {
        (None, None) => true,
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    };
    (same_container && r.name.eq_ignore_ascii_case(name)).then_some(r.sub.as_deref())
}

fn selection<'a>(
    kind: ResourceKind,
    container: Option<&str>,
    def: &AttrDef,
    attributes: &'a [AttrRef],
    excluded: &'a [AttrRef],
) -> Keep<'a> {
    match def.returned {
        Returned::Never => return Keep::Nothing,
        Returned::Always => return Keep::Whole,
        Returned::Default | Returned::Request => {}
    }
    let hits = |list: &'a [AttrRef]| -> Vec<Option<&'a str>> {
        list.iter()
            .filter_map(|r| target(r, kind, container, def.name))
            .collect()
    };
    if !attributes.is_empty() {
        let asked = hits(attributes);
        if asked.is_empty() {
            Keep::Nothing
        } else if asked.contains(&None) {
            Keep::Whole
        } else {
            Keep::Only(asked.into_iter().flatten().collect())
        }
    } else if def.returned == Returned::Request {
        Keep::Nothing
    } else {
        let dropped = hits(excluded);
        if dropped.is_empty() {
            Keep::Whole
        } else if dropped.contains(&None) {
            Keep::Nothing
        } else {
            Keep::Except(dropped.into_iter().flatten().collect())
        }
    }
}

fn apply(def: &AttrDef, keep: &Keep<'_>, value: &Value) -> Option<Value> {
    let listed = |names: &[&str], key: &str| names.iter().any(|n| n.eq_ignore_ascii_case(key));
    match keep {
        Keep::Nothing => None,
        Keep::Whole => Some(value.clone()),
        Keep::Only(names) => prune(def, value, &|k| listed(names, k)),
        Keep::Except(names) => prune(def, value, &|k| !listed(names, k)),
    }
}

/// Keeps the sub-attributes `keep` accepts in a complex value or in each element of a
/// multi-valued one.
fn prune(def: &AttrDef, value: &Value, keep: &dyn Fn(&str) -> bool) -> Option<Value> {
    match value {
        Value::Object(obj) => {
            let kept: Map<String, Value> = obj
                .iter()
                .filter(|(k, _)| {
                    keep(k)
                        && def
                            .sub_attr(k)
                            .is_none_or(|sub| sub.returned != Returned::Never)
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        // An empty list stays: `members: []` says "no members", not "not returned".
        Value::Array(items) if items.is_empty() => Some(value.clone()),
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .iter()
                .filter_map(|item| prune(def, item, keep))
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        // A bare scalar where a complex value belongs stands for its `value`.
        scalar => keep("value").then(|| scalar.clone()),
    }
}

#[cfg(test)]
// A failing test is a panic; the lints exist to keep panics out of the server, not the tests.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "id": "u1",
            "externalId": "e1",
            "userName": "bjensen",
            "password": "hunter2",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "active": true,
            "emails": [
                {"value": "b@example.com", "type": "work", "primary": true},
                {"value": "b@home.org", "type": "home"}
            ],
            "groups": [{"value": "g1", "display": "Eng"}],
            "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z"},
            ENTERPRISE_USER_SCHEMA: {"employeeNumber": "42", "manager": {"value": "m1", "displayName": "Boss"}}
        })
    }

    fn group() -> Value {
        json!({
            "schemas": [GROUP_SCHEMA],
            "id": "g1",
            "displayName": "Eng",
            "members": [{"value": "u1", "display": "Barbara"}, {"value": "u2", "display": "Jim"}],
            "meta": {"resourceType": "Group"}
        })
    }

    fn list(s: &str, kind: ResourceKind) -> Vec<AttrRef> {
        parse_attr_list(s, kind).unwrap()
    }

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn parses_lists_leniently_into_schema_casing() {
        let refs = list(
            " userName , NAME.givenname,urn:ietf:params:scim:schemas:core:2.0:User:emails.Value,,\
             nosuch, name.nosuch, urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value, \
             urn:ietf:params:scim:schemas:extension:enterprise:2.0:user, userName, schemas",
            ResourceKind::User,
        );
        assert_eq!(
            refs,
            vec![
                AttrRef::named("userName"),
                AttrRef {
                    urn: None,
                    name: "name".into(),
                    sub: Some("givenName".into())
                },
                AttrRef {
                    urn: None,
                    name: "emails".into(),
                    sub: Some("value".into())
                },
                AttrRef {
                    urn: Some(ENTERPRISE_USER_SCHEMA.into()),
                    name: "manager".into(),
                    sub: Some("value".into())
                },
                AttrRef::named(ENTERPRISE_USER_SCHEMA),
                AttrRef::named("schemas"),
            ]
        );
        assert!(list("", ResourceKind::User).is_empty());
        assert!(list("members", ResourceKind::User).is_empty());
        assert_eq!(
            list("Members", ResourceKind::Group),
            vec![AttrRef::named("members")]
        );
    }

    #[test]
    fn default_projection_drops_never_returned_attributes() {
        let out = project(ResourceKind::User, &user(), &[], &[]);
        assert!(out.get("password").is_none());
        let mut expected = user();
        expected.as_object_mut().unwrap().remove("password");
        assert_eq!(out, expected);
    }

    #[test]
    fn attributes_keeps_only_those_plus_id_and_schemas() {
        let out = project(
            ResourceKind::User,
            &user(),
            &list("userName", ResourceKind::User),
            &[],
        );
        assert_eq!(
            out,
            json!({"schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA], "id": "u1", "userName": "bjensen"})
        );
        // `id` cannot be asked away, `password` cannot be asked for.
        let out = project(
            ResourceKind::User,
            &user(),
            &list("password,active", ResourceKind::User),
            &[],
        );
        assert_eq!(keys(&out), ["active", "id", "schemas"]);
        // meta only when asked for.
        let out = project(
            ResourceKind::User,
            &user(),
            &list("meta.created", ResourceKind::User),
            &[],
        );
        assert_eq!(out["meta"], json!({"created": "2024-01-01T00:00:00Z"}));
    }

    #[test]
    fn attributes_at_sub_attribute_granularity() {
        let attrs = list("name.givenName,emails.value", ResourceKind::User);
        let out = project(ResourceKind::User, &user(), &attrs, &[]);
        assert_eq!(out["name"], json!({"givenName": "Barbara"}));
        assert_eq!(
            out["emails"],
            json!([{"value": "b@example.com"}, {"value": "b@home.org"}])
        );
        assert_eq!(keys(&out), ["emails", "id", "name", "schemas"]);
        // A sub-attribute plus the whole attribute is the whole attribute.
        let attrs = list("name.givenName,name", ResourceKind::User);
        let out = project(ResourceKind::User, &user(), &attrs, &[]);
        assert_eq!(out["name"], user()["name"]);
        // Nothing left of a complex value: the attribute is omitted.
        let attrs = list("name.middleName", ResourceKind::User);
        assert!(project(ResourceKind::User, &user(), &attrs, &[])
            .get("name")
            .is_none());
    }

    #[test]
    fn attributes_in_the_enterprise_extension() {
        let attrs = list(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            ResourceKind::User,
        );
        let out = project(ResourceKind::User, &user(), &attrs, &[]);
        assert_eq!(
            out[ENTERPRISE_USER_SCHEMA],
            json!({"manager": {"value": "m1"}})
        );
        let attrs = list(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            ResourceKind::User,
        );
        let out = project(ResourceKind::User, &user(), &attrs, &[]);
        assert_eq!(out[ENTERPRISE_USER_SCHEMA], user()[ENTERPRISE_USER_SCHEMA]);
        assert_eq!(keys(&out), ["id", "schemas", ENTERPRISE_USER_SCHEMA]);
        // Not asked for: the extension object disappears.
        let out = project(
            ResourceKind::User,
            &user(),
            &list("userName", ResourceKind::User),
            &[],
        );
        assert!(out.get(ENTERPRISE_USER_SCHEMA).is_none());
    }

    #[test]
    fn excluded_attributes() {
        let excl = list("emails,name.familyName,id,schemas,meta", ResourceKind::User);
        let out = project(ResourceKind::User, &user(), &[], &excl);
        assert!(out.get("emails").is_none());
        assert!(out.get("meta").is_none());
        assert_eq!(out["name"], json!({"givenName": "Barbara"}));
        // returned=always survives exclusion.
        assert_eq!(out["id"], "u1");
        assert!(out.get("schemas").is_some());
        assert_eq!(out["userName"], "bjensen");
        let excl = list(
            "emails.type,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
            ResourceKind::User,
        );
        let out = project(ResourceKind::User, &user(), &[], &excl);
        assert_eq!(
            out["emails"],
            json!([{"value": "b@example.com", "primary": true}, {"value": "b@home.org"}])
        );
        assert_eq!(
            out[ENTERPRISE_USER_SCHEMA],
            json!({"manager": {"value": "m1", "displayName": "Boss"}})
        );
        let excl = list(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            ResourceKind::User,
        );
        assert!(project(ResourceKind::User, &user(), &[], &excl)
            .get(ENTERPRISE_USER_SCHEMA)
            .is_none());
    }

    #[test]
    fn excluded_members_on_groups() {
        let excl = list("members", ResourceKind::Group);
        let out = project(ResourceKind::Group, &group(), &[], &excl);
        assert_eq!(
            out,
            json!({"schemas": [GROUP_SCHEMA], "id": "g1", "displayName": "Eng", "meta": {"resourceType": "Group"}})
        );
        assert!(!wants_attr(ResourceKind::Group, &[], &excl, "members"));
        assert!(wants_attr(ResourceKind::Group, &[], &excl, "displayName"));
        assert!(wants_attr(ResourceKind::Group, &[], &[], "members"));
        // Entra's spelling varies in case.
        let excl = list("Members", ResourceKind::Group);
        assert!(!wants_attr(ResourceKind::Group, &[], &excl, "members"));
        // Excluding a sub-attribute still needs the list.
        let excl = list("members.display", ResourceKind::Group);
        assert!(wants_attr(ResourceKind::Group, &[], &excl, "members"));
        let out = project(ResourceKind::Group, &group(), &[], &excl);
        assert_eq!(out["members"], json!([{"value": "u1"}, {"value": "u2"}]));
        // An empty member list is kept as an empty list.
        let mut g = group();
        g["members"] = json!([]);
        let out = project(
            ResourceKind::Group,
            &g,
            &list("members.value", ResourceKind::Group),
            &[],
        );
        assert_eq!(out["members"], json!([]));
    }

    #[test]
    fn wants_attr_follows_project() {
        let k = ResourceKind::User;
        assert!(wants_attr(k, &[], &[], "groups"));
        assert!(!wants_attr(k, &[], &list("groups", k), "groups"));
        assert!(!wants_attr(k, &list("userName", k), &[], "groups"));
        assert!(wants_attr(k, &list("groups.display", k), &[], "groups"));
        assert!(wants_attr(k, &list("userName", k), &[], "id"));
        assert!(wants_attr(k, &list("userName", k), &[], "schemas"));
        assert!(!wants_attr(k, &[], &[], "password"));
        assert!(!wants_attr(k, &list("password", k), &[], "password"));
        assert!(wants_attr(k, &[], &[], ENTERPRISE_USER_SCHEMA));
        assert!(!wants_attr(
            k,
            &list("userName", k),
            &[],
            ENTERPRISE_USER_SCHEMA
        ));
        assert!(wants_attr(
            k,
            &list(
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                k
            ),
            &[],
            ENTERPRISE_USER_SCHEMA
        ));
        assert!(!wants_attr(k, &[], &[], "nosuch"));
        // wants_attr agrees with project on every top-level key.
        for (attrs, excl) in [
            ("", "groups"),
            ("groups,userName", ""),
            ("", "name.givenName"),
            ("meta", ""),
        ] {
            let (a, e) = (list(attrs, k), list(excl, k));
            let out = project(k, &user(), &a, &e);
            for key in keys(&user()) {
                assert_eq!(
                    out.get(&key).is_some(),
                    wants_attr(k, &a, &e, &key),
                    "{key} with {attrs:?}/{excl:?}"
                );
            }
        }
    }

    #[test]
    fn unknown_keys_are_not_returned() {
        let mut u = user();
        u["internalNote"] = json!("x");
        assert!(project(ResourceKind::User, &u, &[], &[])
            .get("internalNote")
            .is_none());
    }
}
