//! The discovery documents (RFC 7644 §4): `/ServiceProviderConfig`, `/ResourceTypes` and
//! `/Schemas`, each with `meta.location` under the server's SCIM base URL.

use crate::scim::schema::{self, ALL_SCHEMAS};
use serde_json::{json, Value};

/// What this server supports. `max_results` is the most resources one list answer carries.
pub fn service_provider_config(base_url: &str, max_results: usize) -> Value {
    json!({
        "schemas": [schema::SP_CONFIG_SCHEMA],
        "documentationUri": "https://github.com/scim-sync/scim-sync#readme",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a static bearer token configured in scim-sync",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base_url}/ServiceProviderConfig"),
        }
    })
}

/// Every resource type (User with the enterprise extension, Group).
pub fn resource_types(base_url: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": [schema::RESOURCE_TYPE_SCHEMA],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "User Account",
            "schema": schema::USER_SCHEMA,
            "schemaExtensions": [{"schema": schema::ENTERPRISE_USER_SCHEMA, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/User")}
        }),
        json!({
            "schemas": [schema::RESOURCE_TYPE_SCHEMA],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Group",
            "schema": schema::GROUP_SCHEMA,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/Group")}
        }),
    ]
}

/// One resource type by id, compared case-insensitively.
pub fn resource_type(base_url: &str, id: &str) -> Option<Value> {
    resource_types(base_url).into_iter().find(|rt| {
        rt["id"]
            .as_str()
            .is_some_and(|rid| rid.eq_ignore_ascii_case(id))
    })
}

/// Every schema document.
pub fn schemas(base_url: &str) -> Vec<Value> {
    ALL_SCHEMAS
        .iter()
        .map(|s| schema::schema_json(s, base_url))
        .collect()
}

/// One schema document by its URN, compared case-insensitively.
pub fn schema(base_url: &str, id: &str) -> Option<Value> {
    ALL_SCHEMAS
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(id))
        .map(|s| schema::schema_json(s, base_url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_point_under_the_base_url_and_are_found_case_insensitively() {
        let base = "http://h/scim/v2";
        let spc = service_provider_config(base, 50);
        assert_eq!(spc["filter"]["maxResults"], 50);
        assert_eq!(
            spc["meta"]["location"],
            "http://h/scim/v2/ServiceProviderConfig"
        );
        assert_eq!(
            resource_type(base, "group").unwrap()["meta"]["location"],
            "http://h/scim/v2/ResourceTypes/Group"
        );
        assert!(resource_type(base, "Device").is_none());
        assert_eq!(schemas(base).len(), ALL_SCHEMAS.len());
        let user = schema(base, &schema::USER_SCHEMA.to_uppercase()).unwrap();
        assert_eq!(user["id"], schema::USER_SCHEMA);
        assert!(schema(base, "urn:nothing").is_none());
    }
}
