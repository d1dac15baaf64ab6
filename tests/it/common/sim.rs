//! The control-plane simulator from the outside: started on a loopback port, seeded, and read
//! and driven through its control API (state, request log, faults, quirks, invites). The
//! benches include this file by path, so it uses nothing of the test crate.
// Each includer uses a part of it.
#![allow(dead_code)]

use portkey_sim::{Faults, Seed, SeedUser, SimOptions, SimServer};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Starts a simulator on a free loopback port.
pub async fn spawn(opts: SimOptions) -> SimServer {
    portkey_sim::spawn(([127, 0, 0, 1], 0).into(), opts)
        .await
        .unwrap()
}

/// Organisation users as (email, role), without names.
pub fn seed(users: &[(&str, &str)]) -> Seed {
    Seed {
        users: users
            .iter()
            .map(|(email, role)| SeedUser {
                email: email.to_string(),
                first_name: None,
                last_name: None,
                role: role.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

/// An organisation with its owner only: the usual start.
pub fn owner() -> Seed {
    seed(&[("owner@example.com", "owner")])
}

/// The rows of one table of a [`Control::state`] document (`"users"`, `"workspaces"`,
/// `"invites"`) whose `field` is `value`.
pub fn rows<'a>(state: &'a Value, table: &str, field: &str, value: &str) -> Vec<&'a Value> {
    state[table]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[field] == value)
        .collect()
}

/// The simulator's control API.
#[derive(Clone)]
pub struct Control {
    url: String,
    http: reqwest::Client,
}

impl Control {
    pub fn new(sim: &SimServer) -> Control {
        Self::with_client(sim, reqwest::Client::new())
    }

    pub fn with_client(sim: &SimServer, http: reqwest::Client) -> Control {
        Control {
            url: sim.control_url(),
            http,
        }
    }

    /// Any control call: status and body (`Null` when there is none or it is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut rb = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A control call that must succeed; its body.
    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    /// Users, workspaces with members, and invites, as the simulator holds them.
    pub async fn state(&self) -> Value {
        self.ok(reqwest::Method::GET, "/state", None).await
    }

    /// The request log since the last clear, oldest first.
    pub async fn requests(&self) -> Vec<Value> {
        self.requests_as().await
    }

    pub async fn requests_as<T: DeserializeOwned>(&self) -> T {
        let v = self.ok(reqwest::Method::GET, "/requests", None).await;
        serde_json::from_value(v).unwrap()
    }

    pub async fn clear_requests(&self) {
        self.ok(reqwest::Method::DELETE, "/requests", None).await;
    }

    pub async fn set_faults(&self, faults: &Faults) {
        let body = serde_json::to_value(faults).unwrap();
        self.ok(reqwest::Method::PUT, "/faults", Some(&body)).await;
    }

    /// Changes some quirks; the simulator answers 200 with the quirks in force.
    pub async fn patch_quirks(&self, quirks: &Value) -> Value {
        let (status, v) = self
            .call(reqwest::Method::PATCH, "/quirks", Some(quirks))
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// Accepts every pending invite, as the invited people would.
    pub async fn accept_invites(&self) -> Value {
        self.ok(
            reqwest::Method::POST,
            "/invites/accept",
            Some(&Value::Object(Default::default())),
        )
        .await
    }

    /// A POST to any control path, which must succeed.
    pub async fn post(&self, path: &str, body: &Value) -> Value {
        self.ok(reqwest::Method::POST, path, Some(body)).await
    }
}
