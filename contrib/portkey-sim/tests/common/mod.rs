//! Shared helpers: a simulator on port 0 and a thin JSON client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portkey_sim::{SimOptions, SimServer};
use reqwest::Method;
use serde_json::{json, Value};

pub struct Sim {
    pub server: SimServer,
    pub http: reqwest::Client,
    pub key: String,
}

pub async fn start(opts: SimOptions) -> Sim {
    let key = opts.api_key.clone();
    let server = portkey_sim::spawn(([127, 0, 0, 1], 0).into(), opts)
        .await
        .expect("spawn");
    Sim {
        server,
        http: reqwest::Client::new(),
        key,
    }
}

pub async fn start_default() -> Sim {
    start(SimOptions::default()).await
}

impl Sim {
    /// `/v1` request with the right key. Returns status and JSON body (Null if empty).
    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{}", self.server.base_url(), path);
        let mut req = self
            .http
            .request(method, url)
            .header("x-portkey-api-key", &self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("json body")
        };
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.api(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.api(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.api(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.api(Method::DELETE, path, None).await
    }

    /// `/_sim` request, no key.
    pub async fn ctl(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{}", self.server.control_url(), path);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("json"))
    }

    pub async fn seed(&self, seed: Value) {
        let (s, v) = self.ctl(Method::POST, "/seed", Some(seed)).await;
        assert_eq!(s, 200, "{v}");
    }

    /// A member of the organisation added through the control API, as one who joins by SSO.
    pub async fn add_member(&self, email: &str) -> (u16, Value) {
        self.ctl(
            Method::POST,
            "/users",
            Some(json!({"email": email, "role": "member"})),
        )
        .await
    }

    pub async fn user_id(&self, email: &str) -> String {
        let (s, v) = self
            .get(&format!("/admin/users?email={}", enc(email)))
            .await;
        assert_eq!(s, 200);
        v["data"][0]["id"].as_str().expect("user id").to_string()
    }

    pub async fn create_workspace(&self, name: &str) -> Value {
        let (s, v) = self.post("/admin/workspaces", json!({"name": name})).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

pub fn enc(s: &str) -> String {
    s.replace('%', "%25")
        .replace('+', "%2B")
        .replace('@', "%40")
}

pub fn assert_err(resp: &(u16, Value), status: u16, code: &str) {
    assert_eq!(resp.0, status, "{}", resp.1);
    assert_eq!(resp.1["success"], json!(false), "{}", resp.1);
    assert_eq!(resp.1["data"]["errorCode"], json!(code), "{}", resp.1);
    assert!(resp.1["data"]["message"].is_string(), "{}", resp.1);
}

pub fn emails(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|u| u["email"].as_str().unwrap_or_default().to_string())
        .collect()
}
