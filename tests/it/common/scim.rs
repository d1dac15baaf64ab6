//! SCIM request bodies as an IdP sends them. The benches include this file by path, so it uses
//! nothing of the test crate.
// Each includer uses a part of it.
#![allow(dead_code)]

use serde_json::Value;

/// An Okta-style create body.
pub fn user(user_name: &str) -> Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": "Given Family",
        "active": true,
    })
}

/// A group create body with these member ids.
pub fn group<S: AsRef<str>>(display_name: &str, members: &[S]) -> Value {
    let members: Vec<Value> = members
        .iter()
        .map(|m| serde_json::json!({"value": m.as_ref()}))
        .collect();
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": display_name,
        "members": members,
    })
}

/// The member ids of a group as the server answered it, in its order.
pub fn member_ids(group: &Value) -> Vec<String> {
    group["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A PATCH body with these operations.
pub fn patch_body(ops: Value) -> Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": ops,
    })
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A SCIM client with a bearer token, sending `application/scim+json` as IdPs do.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Client {
    /// `base` is the SCIM base URL, e.g. `http://127.0.0.1:8080/scim/v2`.
    pub fn new(base: &str, token: &str, http: &reqwest::Client) -> Client {
        Client {
            base: base.to_string(),
            token: token.to_string(),
            http: http.clone(),
        }
    }

    /// Status and body (`Null` when empty or not JSON); a transport error as it came, for
    /// callers that expect the server to go away.
    pub async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/scim+json")
                .body(serde_json::to_vec(b).unwrap());
        }
        let r = rb.send().await?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.try_send(method, path, body).await.unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
}
