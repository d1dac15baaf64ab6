//! A real daemon on loopback ports for the tests, and a small HTTP client for it.

use scim_sync::config::{Config, ENV_ADMIN_TOKEN, ENV_PORTKEY_API_KEY, ENV_SCIM_TOKEN};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const SCIM_TOKEN: &str = "test-scim-token-0123456789";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub struct Server {
    pub base: String,
    pub base_path: String,
    pub scim_addr: std::net::SocketAddr,
    pub admin: String,
    pub http: reqwest::Client,
    pub store: scim_sync::store::Store,
    /// Dropping the server drops this sender, which shuts the daemon down.
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

pub fn test_env() -> HashMap<String, String> {
    let mut env = HashMap::new();
    env.insert(ENV_SCIM_TOKEN.into(), SCIM_TOKEN.into());
    env.insert(ENV_ADMIN_TOKEN.into(), ADMIN_TOKEN.into());
    env.insert(ENV_PORTKEY_API_KEY.into(), "test-portkey-key".into());
    env
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with("").await
    }

    /// Starts a daemon with extra TOML appended to a minimal config.
    pub async fn start_with(extra: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store.redb");
        let text = format!(
            "[scim]\nlisten = \"127.0.0.1:0\"\n{extra}\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n[portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\nretry_give_up_secs = 1\nretry_initial_ms = 50\n",
            store.display()
        );
        let config = Config::from_toml(&text, Path::new("test.toml"), &test_env()).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = scim_sync::app::start(&config, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
        Server {
            base: format!("http://{}{}", running.scim_addr, config.scim.base_path),
            base_path: config.scim.base_path.clone(),
            scim_addr: running.scim_addr,
            admin: format!("http://{}", running.admin_addr),
            http: reqwest::Client::new(),
            store: running.store,
            _stop: tx,
            _dir: dir,
        }
    }

    pub async fn req(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .http
            .request(m, format!("{}{}", self.base, path))
            .bearer_auth(SCIM_TOKEN);
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/scim+json")
                .body(serde_json::to_vec(&b).unwrap());
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            json,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.req("POST", path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.req("PUT", path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.req("PATCH", path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.req("DELETE", path, None).await
    }

    /// Sends bytes as written (for requests a client library would normalise) and returns the
    /// status and the body.
    pub async fn raw(&self, request: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(self.scim_addr)
            .await
            .unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    pub async fn create_user(&self, user_name: &str) -> String {
        let r = self.post("/Users", user(user_name)).await;
        assert_eq!(r.status, 201, "{}", r.json);
        r.json["id"].as_str().unwrap().to_string()
    }

    pub async fn create_group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members
            .iter()
            .map(|m| serde_json::json!({"value": m}))
            .collect();
        let r = self
            .post(
                "/Groups",
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": name,
                    "members": members,
                }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        r.json["id"].as_str().unwrap().to_string()
    }

    pub async fn member_ids(&self, gid: &str) -> Vec<String> {
        let r = self.get(&format!("/Groups/{gid}")).await;
        assert_eq!(r.status, 200, "{}", r.json);
        let mut ids: Vec<String> = r.json["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["value"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

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

pub fn patch_body(ops: Value) -> Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": ops,
    })
}

pub fn enc(s: &str) -> String {
    percent_encode(s)
}

fn percent_encode(s: &str) -> String {
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

/// A log sink for a test's tracing subscriber: everything written, kept for assertions.
#[derive(Clone, Default)]
pub struct LogBuffer(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
