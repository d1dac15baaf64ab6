//! The end-to-end harness: the simulator and a real daemon on loopback ports, in this process,
//! with helpers to drive SCIM, force runs, read the admin API and inspect the simulator.
//!
//! Forced full runs go through `POST /admin/resync?wait=true`; change-driven (targeted) runs are
//! awaited with [`Env::wait_run`].

use crate::common::sim::{self, Control};
use crate::common::{group, patch_body, scim, test_env, user, Admin, SCIM_TOKEN};
use portkey_sim::{Faults, Quirks, Seed, SimOptions, SimServer};
use scim_sync::config::Config;
use scim_sync::store::Store;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

pub use crate::common::sim::{owner, seed};
pub use crate::common::PORTKEY_KEY as API_KEY;

pub struct Env {
    pub sim: SimServer,
    /// The simulator's control API.
    pub control: Control,
    pub scim: String,
    pub admin: String,
    pub http: reqwest::Client,
    /// The daemon's store (shared with it, same process): for the cursor and the quarantine.
    store: Option<Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
    dir: tempfile::TempDir,
    give_up_secs: u64,
    /// Extra `[scim]` keys for the next [`Env::boot`] (e.g. a rate limit).
    pub scim_extra: String,
}

/// Starts the simulator (with `quirks`) and the daemon; `sync` is appended to `[sync]`. The
/// control-plane client gives up retrying after 2 s.
pub async fn start(seed: Seed, quirks: Quirks, sync: &str) -> Env {
    start_with(seed, quirks, sync, 2).await
}

/// [`start`] with the client's `[portkey] retry_give_up_secs`.
pub async fn start_with(seed: Seed, quirks: Quirks, sync: &str, give_up_secs: u64) -> Env {
    let sim = sim::spawn(SimOptions {
        api_key: API_KEY.into(),
        seed: Some(seed),
        quirks,
        ..Default::default()
    })
    .await;
    let mut e = Env {
        control: Control::new(&sim),
        sim,
        scim: String::new(),
        admin: String::new(),
        http: reqwest::Client::new(),
        store: None,
        stop: None,
        done: None,
        dir: tempfile::tempdir().unwrap(),
        give_up_secs,
        scim_extra: String::new(),
    };
    e.boot(sync).await;
    e
}

impl Env {
    pub async fn boot(&mut self, sync: &str) {
        let text = format!(
            "[scim]\nlisten = \"127.0.0.1:0\"\n{scim_extra}[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
             [portkey]\nbase_url = \"{}\"\nretry_initial_ms = 20\nretry_max_interval_ms = 200\nretry_give_up_secs = {give_up}\n\
             requests_per_second = 1000.0\n[sync]\nfull_resync_cron = \"0 0 0 1 1 *\"\n{debounce}{sync}",
            self.dir.path().join("store.redb").display(),
            self.sim.base_url(),
            give_up = self.give_up_secs,
            scim_extra = self.scim_extra,
            debounce = if sync.contains("debounce_ms") { "" } else { "debounce_ms = 60000\n" },
        );
        let env = test_env();
        let config = Config::from_toml(&text, Path::new("e2e.toml"), &env).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = scim_sync::app::start(&config, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
        self.scim = format!("http://{}/scim/v2", running.scim_addr);
        self.admin = format!("http://{}", running.admin_addr);
        self.store = Some(running.store);
        self.stop = Some(tx);
        self.done = Some(running.done);
        self.resync().await;
    }

    /// Stops the daemon, waits until its store is released, and starts it again on the same
    /// store and simulator with another `[sync]`.
    pub async fn restart(&mut self, sync: &str) {
        self.stop.take();
        if let Some(done) = self.done.take() {
            done.await.unwrap();
        }
        self.store.take();
        self.boot(sync).await;
    }

    pub fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    /// A SCIM call: status and body (`Null` when empty).
    pub async fn scim_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        scim::Client::new(&self.scim, SCIM_TOKEN, &self.http)
            .send(method, path, body.as_ref())
            .await
    }

    /// A SCIM call that must succeed; its body.
    pub async fn scim(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.scim_call(method, path, body).await;
        assert!((200..300).contains(&status), "{path}: {status} {v}");
        v
    }

    pub async fn create(&self, body: Value) -> String {
        let v = self.scim(reqwest::Method::POST, "/Users", Some(body)).await;
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn create_user(&self, name: &str) -> String {
        self.create(user(name)).await
    }

    pub async fn create_group(&self, name: &str, members: &[&str]) -> String {
        let body = group(name, members);
        let v = self
            .scim(reqwest::Method::POST, "/Groups", Some(body))
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn patch(&self, path: &str, ops: Value) {
        self.scim(reqwest::Method::PATCH, path, Some(patch_body(ops)))
            .await;
    }

    pub async fn deactivate(&self, id: &str) {
        let ops = json!([{"op": "replace", "value": {"active": false}}]);
        self.patch(&format!("/Users/{id}"), ops).await;
    }

    pub async fn delete_user(&self, id: &str) {
        self.scim(reqwest::Method::DELETE, &format!("/Users/{id}"), None)
            .await;
    }

    pub fn admin(&self) -> Admin {
        Admin::new(&self.admin, &self.http)
    }

    /// Forces a full run and returns its summary.
    pub async fn resync(&self) -> Value {
        self.admin().run().await
    }

    pub async fn approve(&self, digest: &str) -> (u16, Value) {
        self.admin()
            .post(&format!("/admin/approve-deletions?digest={digest}"))
            .await
    }

    /// `GET /admin/status`, whole document.
    pub async fn status_doc(&self) -> Value {
        self.admin().status().await
    }

    /// `GET /admin/status` → `reconciler`.
    pub async fn status(&self) -> Value {
        self.status_doc().await["reconciler"].clone()
    }

    pub async fn last_run_id(&self) -> String {
        self.status().await["last_run"]["run_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (at most 5 s) for a run other than `prev` to finish; returns its status summary.
    pub async fn wait_run(&self, prev: &str) -> Value {
        let st = self
            .admin()
            .wait_status(Duration::from_secs(5), |r| {
                r["last_run"]["run_id"] != prev && r["running"].is_null()
            })
            .await;
        st["last_run"].clone()
    }

    /// `(op, email)` of the held ops listed by the status.
    pub async fn held(&self) -> Vec<(String, String)> {
        let st = self.status().await;
        let mut v: Vec<(String, String)> = st["held_deletions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (s(&o["op"]), s(&o["email"])))
            .collect();
        v.sort();
        v
    }

    pub async fn sim(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        self.control.call(method, path, Some(&body)).await
    }

    pub async fn sim_state(&self) -> Value {
        self.control.state().await
    }

    pub async fn accept_all(&self) {
        self.control.accept_invites().await;
    }

    pub async fn set_faults(&self, f: Faults) {
        self.control.set_faults(&f).await;
    }

    pub async fn patch_quirks(&self, q: Value) {
        self.control.patch_quirks(&q).await;
    }

    pub async fn clear_log(&self) {
        self.control.clear_requests().await;
    }

    pub async fn log(&self) -> Vec<Value> {
        self.control.requests().await
    }

    /// The writes the control plane received since the last clear, as "METHOD path".
    pub async fn writes(&self) -> Vec<String> {
        self.log()
            .await
            .iter()
            .filter(|e| e["method"] != "GET")
            .map(|e| format!("{} {}", s(&e["method"]), s(&e["path"])))
            .collect()
    }

    /// Email → org role of the control plane's users.
    pub async fn users(&self) -> Vec<(String, String)> {
        let st = self.sim_state().await;
        let mut v: Vec<(String, String)> = st["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| (s(&u["email"]), s(&u["role"])))
            .collect();
        v.sort();
        v
    }

    pub async fn has_user(&self, email: &str) -> bool {
        self.users().await.iter().any(|u| u.0 == email)
    }

    pub async fn user_id(&self, email: &str) -> String {
        let st = self.sim_state().await;
        s(&sim::rows(&st, "users", "email", email)[0]["id"])
    }

    /// Explicit (non-implicit) members of a workspace by name: (email, role).
    pub async fn members(&self, workspace: &str) -> Vec<(String, String)> {
        let st = self.sim_state().await;
        let Some(ws) = sim::rows(&st, "workspaces", "name", workspace)
            .first()
            .copied()
        else {
            return Vec::new();
        };
        let mut v: Vec<(String, String)> = ws["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["implicit"] != true)
            .map(|m| (s(&m["email"]), s(&m["role"])))
            .collect();
        v.sort();
        v
    }

    /// Every invite the control plane has: (email, status).
    pub async fn invites(&self) -> Vec<(String, String)> {
        let st = self.sim_state().await;
        let mut v: Vec<(String, String)> = st["invites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (s(&i["email"]), s(&i["status"])))
            .collect();
        v.sort();
        v
    }

    pub async fn pending_invites(&self) -> Vec<String> {
        let all = self.invites().await;
        all.into_iter()
            .filter(|i| i.1 == "pending")
            .map(|i| i.0)
            .collect()
    }
}

pub fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

pub fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}
