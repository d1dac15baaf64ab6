//! One resource as SCIM shows it (RFC 7643 §3.1: `schemas`, `id`, the attributes, the member or
//! group list, `meta`), written straight to JSON bytes.
//!
//! A group may have 50,000 members. Building its answer as a `serde_json::Value` and then
//! serialising it would hold every member twice, once as a map of four strings; [`View`]
//! serialises the list as it goes instead, so an answer costs about its own size in memory.

use crate::scim::schema::ResourceKind;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What is shown of a stored resource; `refs` is the member list of a group (user id, display)
/// or the groups of a user (group id, display name), when they were read.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub kind: ResourceKind,
    pub id: &'a str,
    /// The stored attributes (normalised SCIM, without the server-maintained lists).
    pub data: &'a Value,
    pub created: &'a str,
    pub last_modified: &'a str,
    /// The record's version; `meta.version` is the weak ETag `W/"{version}"`.
    pub version: u64,
    pub refs: Option<&'a [(String, String)]>,
    /// The SCIM base URL, for `$ref` and `meta.location`.
    pub base_url: &'a str,
}

impl View<'_> {
    /// The same document as a tree, for projections (`attributes=`, `excludedAttributes=`),
    /// which work on one.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    fn refs_key(&self) -> &'static str {
        match self.kind {
            ResourceKind::User => "groups",
            ResourceKind::Group => "members",
        }
    }

    /// An empty member list is shown as `[]`, so that a client reading it back sees "no members"
    /// rather than "not returned"; an empty group list is left out, as RFC 7643 treats
    /// unassigned attributes.
    fn shown_refs(&self) -> Option<&[(String, String)]> {
        self.refs
            .filter(|r| !(r.is_empty() && self.kind == ResourceKind::User))
    }
}

/// A value of the top-level object, in the order the keys are written (sorted, as a
/// `serde_json::Map` would have them).
enum Field<'a> {
    Json(&'a Value),
    Owned(Value),
    Str(&'a str),
    Refs(RefList<'a>),
    Meta(&'a View<'a>),
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Json(v) => v.serialize(s),
            Field::Owned(v) => v.serialize(s),
            Field::Str(v) => s.serialize_str(v),
            Field::Refs(r) => r.serialize(s),
            Field::Meta(v) => {
                let mut m = s.serialize_map(Some(5))?;
                m.serialize_entry("created", v.created)?;
                m.serialize_entry("lastModified", v.last_modified)?;
                m.serialize_entry(
                    "location",
                    &format_args!("{}{}/{}", v.base_url, v.kind.endpoint(), v.id),
                )?;
                m.serialize_entry("resourceType", v.kind.name())?;
                m.serialize_entry("version", &format_args!("W/\"{}\"", v.version))?;
                m.end()
            }
        }
    }
}

impl Serialize for View<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Later entries replace earlier ones with the same key, as inserts into a map would:
        // the stored attributes first, then what the server maintains.
        let mut fields: BTreeMap<&str, Field<'_>> = BTreeMap::new();
        if let Some(obj) = self.data.as_object() {
            for (k, v) in obj {
                fields.insert(k.as_str(), Field::Json(v));
            }
        }
        if self.data.get("schemas").is_none() {
            fields.insert("schemas", Field::Owned(json!([self.kind.core().id])));
        }
        fields.insert("id", Field::Str(self.id));
        if let Some(refs) = self.shown_refs() {
            fields.insert(
                self.refs_key(),
                Field::Refs(RefList {
                    refs,
                    kind: self.kind,
                    base_url: self.base_url,
                }),
            );
        }
        fields.insert("meta", Field::Meta(self));
        let mut map = s.serialize_map(Some(fields.len()))?;
        for (k, v) in &fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A group's members or a user's groups, written one entry at a time.
struct RefList<'a> {
    refs: &'a [(String, String)],
    kind: ResourceKind,
    base_url: &'a str,
}

impl Serialize for RefList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (endpoint, ty) = match self.kind {
            ResourceKind::User => ("/Groups", "direct"),
            ResourceKind::Group => ("/Users", "User"),
        };
        let mut seq = s.serialize_seq(Some(self.refs.len()))?;
        for (id, display) in self.refs {
            seq.serialize_element(&RefEntry {
                id,
                display,
                ty,
                base_url: self.base_url,
                endpoint,
            })?;
        }
        seq.end()
    }
}

struct RefEntry<'a> {
    id: &'a str,
    display: &'a str,
    ty: &'static str,
    base_url: &'a str,
    endpoint: &'static str,
}

impl Serialize for RefEntry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry(
            "$ref",
            &format_args!("{}{}/{}", self.base_url, self.endpoint, self.id),
        )?;
        m.serialize_entry("display", self.display)?;
        m.serialize_entry("type", self.ty)?;
        m.serialize_entry("value", self.id)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(
        kind: ResourceKind,
        data: &'a Value,
        refs: Option<&'a [(String, String)]>,
    ) -> View<'a> {
        View {
            kind,
            id: "g1",
            data,
            created: "2026-01-01T00:00:00Z",
            last_modified: "2026-01-02T00:00:00Z",
            version: 3,
            refs,
            base_url: "https://scim.example/scim/v2",
        }
    }

    #[test]
    fn a_group_with_members_is_the_document_rfc_7643_describes() {
        let data = json!({"displayName": "Eng", "externalId": "x1",
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]});
        let refs = vec![
            ("u1".to_string(), "Alice".to_string()),
            ("u2".into(), "Bob".into()),
        ];
        let v = view(ResourceKind::Group, &data, Some(&refs));
        let bytes = serde_json::to_vec(&v).unwrap();
        let expected = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "g1",
            "displayName": "Eng",
            "externalId": "x1",
            "members": [
                {"value": "u1", "$ref": "https://scim.example/scim/v2/Users/u1", "display": "Alice", "type": "User"},
                {"value": "u2", "$ref": "https://scim.example/scim/v2/Users/u2", "display": "Bob", "type": "User"},
            ],
            "meta": {"resourceType": "Group", "created": "2026-01-01T00:00:00Z",
                "lastModified": "2026-01-02T00:00:00Z",
                "location": "https://scim.example/scim/v2/Groups/g1", "version": "W/\"3\""},
        });
        // Byte for byte what serialising the same tree gives: keys in the same order.
        assert_eq!(bytes, serde_json::to_vec(&expected).unwrap());
        assert_eq!(v.to_value().unwrap(), expected);
    }

    #[test]
    fn lists_are_shown_as_the_server_keeps_them() {
        let data = json!({"userName": "a@x.io", "groups": ["stale"], "id": "other"});
        // A user's groups were not read: whatever `data` holds stays; the id is the record's.
        let v = view(ResourceKind::User, &data, None).to_value().unwrap();
        assert_eq!(v["groups"], json!(["stale"]));
        assert_eq!(v["id"], "g1");
        assert_eq!(v["schemas"], json!([ResourceKind::User.core().id]));
        // No groups: left out, unless `data` had some of its own.
        let empty: Vec<(String, String)> = Vec::new();
        let bare = json!({"userName": "a@x.io"});
        let v = view(ResourceKind::User, &bare, Some(&empty))
            .to_value()
            .unwrap();
        assert!(v.get("groups").is_none(), "{v}");
        // A group without members shows [].
        let g = json!({"displayName": "Eng"});
        let v = view(ResourceKind::Group, &g, Some(&empty))
            .to_value()
            .unwrap();
        assert_eq!(v["members"], json!([]));
        let u = vec![("g9".to_string(), "Eng".to_string())];
        let v = view(ResourceKind::User, &bare, Some(&u))
            .to_value()
            .unwrap();
        assert_eq!(
            v["groups"],
            json!([{"value": "g9", "$ref": "https://scim.example/scim/v2/Groups/g9", "display": "Eng", "type": "direct"}])
        );
    }
}
