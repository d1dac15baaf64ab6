//! The soak driver, shared by `benches/soak.rs` (long runs, figures for BENCHMARKS.md) and the
//! short run in the integration tests.
//!
//! One `scim-sync serve` child process on a store in a temp dir, reconciling against the
//! simulator (in this process), while:
//! - IdP clients send Okta- and Entra-shaped traffic (creates, PUTs, deactivations with real
//!   and string booleans, reactivations, deletions, group member adds and removes in both
//!   PATCH dialects, `userName eq` lookups), each client owning its own users so every answer
//!   can be checked against a model of what was acknowledged;
//! - the simulator's faults change every few minutes (5xx, 429 with `Retry-After`, latency);
//! - the daemon is killed with SIGKILL at random moments and restarted on the same store.
//!
//! After every restart, and at the end, every acknowledged write is read back (a write cut off
//! by the kill is "uncertain" until the next acknowledged one). At the end the faults are
//! cleared and forced resyncs run until one finds nothing to do; the control plane is then
//! compared with the model. RSS, store size, latency and error counts are sampled throughout.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

// The includer provides the process fixture and the SCIM bodies, `tests/it/common/daemon.rs`
// and `scim.rs`: the test crate has them already, and a file may be a module only once per
// crate.
use super::daemon::{Daemon, Ports};
use super::scim;

pub const SCIM_TOKEN: &str = "soak-scim-token-0123456789abcdef";
pub const ADMIN_TOKEN: &str = "soak-admin-token-0123456789abcdef";
const SIM_KEY: &str = "soak-sim-key";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const WORKSPACES: usize = 6;
const ROLES: [&str; 3] = ["admin", "manager", "member"];

#[derive(Debug, Clone)]
pub struct Options {
    pub bin: PathBuf,
    pub duration: Duration,
    pub clients: usize,
    /// Requests per second over all clients.
    pub rate: f64,
    /// Users each client keeps at most; past it, it deletes instead of creating.
    pub users_per_client: usize,
    pub sample_every: Duration,
    /// Time between kills is drawn from this range.
    pub kill_every: (Duration, Duration),
    /// Time between fault changes.
    pub fault_every: Duration,
    pub seed: u64,
    /// Print a line per sample.
    pub verbose: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub at_s: f64,
    pub rss_kib: u64,
    pub store_bytes: u64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub fault: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub samples: Vec<Sample>,
    pub requests: u64,
    /// Answer classes that are not plain success, by name.
    pub counts: BTreeMap<String, u64>,
    /// Problems: an acknowledged write not found, an answer the model says is wrong.
    pub violations: Vec<String>,
    pub kills: usize,
    /// The longest time from a kill to the restarted daemon answering `/readyz`.
    pub max_restart: Duration,
    /// Held deletions approved, as an operator would, at each sample.
    pub approved: u64,
    pub acked_checked: u64,
    pub acked_lost: u64,
    pub converged: bool,
    pub resyncs_to_converge: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub users_at_end: usize,
    pub elapsed: Duration,
}

impl Report {
    pub fn summary(&self) -> String {
        let first = self.samples.first().cloned().unwrap_or_default();
        let last = self.samples.last().cloned().unwrap_or_default();
        let mut s = String::new();
        s.push_str(&format!(
            "elapsed {:.1} min, {} requests, {} kills survived (longest restart to ready {:.1} s), {} held deletions approved, users at end {}\n",
            self.elapsed.as_secs_f64() / 60.0,
            self.requests,
            self.kills,
            self.max_restart.as_secs_f64(),
            self.approved,
            self.users_at_end
        ));
        s.push_str(&format!(
            "RSS start {:.1} MiB, end {:.1} MiB, max {:.1} MiB; store start {:.2} MiB, end {:.2} MiB, max {:.2} MiB\n",
            first.rss_kib as f64 / 1024.0,
            last.rss_kib as f64 / 1024.0,
            self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0,
            first.store_bytes as f64 / 1048576.0,
            last.store_bytes as f64 / 1048576.0,
            self.samples.iter().map(|s| s.store_bytes).max().unwrap_or(0) as f64 / 1048576.0,
        ));
        s.push_str(&format!(
            "latency (answered requests) p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms\n",
            self.p50_ms, self.p99_ms, self.max_ms
        ));
        s.push_str(&format!("answers other than success: {:?}\n", self.counts));
        s.push_str(&format!(
            "acknowledged writes checked {} (over all checks), lost {}; violations {}; converged {} after {} forced resync(s)\n",
            self.acked_checked,
            self.acked_lost,
            self.violations.len(),
            self.converged,
            self.resyncs_to_converge
        ));
        for v in self.violations.iter().take(20) {
            s.push_str(&format!("  violation: {v}\n"));
        }
        s
    }
}

fn config_text(store: &Path, sim_base: &str, ports: Ports) -> String {
    ports.config("rate_limit_per_second = 0\n", store)
        + &format!(
            "[portkey]\nbase_url = \"{sim_base}\"\nretry_initial_ms = 100\nretry_give_up_secs = 5\n\
             [sync]\ndebounce_ms = 500\nfull_resync_cron = \"0 */2 * * * *\"\n"
        )
}

/// Starts the daemon on fresh ports; a port taken in between shows up as a failed start, and
/// another attempt follows.
async fn start_daemon(bin: &Path, dir: &Path, store: &Path, sim_base: &str, n: usize) -> Daemon {
    for attempt in 0..5 {
        let ports = Ports::free();
        let config = dir.join(format!("config-{n}-{attempt}.toml"));
        let mut text = config_text(store, sim_base, ports);
        if !config_accepts_rate_limit_key(bin) {
            text = text.replace("rate_limit_per_second = 0\n", "");
        }
        std::fs::write(&config, text).expect("write config");
        let mut cmd = Daemon::command(bin, &config);
        cmd.env("SCIM_SYNC_SCIM_TOKEN", SCIM_TOKEN)
            .env("SCIM_SYNC_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("PORTKEY_API_KEY", SIM_KEY)
            .env("SCIM_SYNC_LOG", "warn");
        let log = dir.join(format!("daemon-{n}.log"));
        // Generous: on a machine busy with other work, redb's recovery after a kill waits for
        // the disk; a slow start is reported (`max_restart`), only a start that never comes fails.
        match Daemon::try_start(cmd, ports, Some(&log), Duration::from_secs(120)).await {
            Ok(d) => return d,
            Err(e) => eprintln!("{e} (attempt {attempt})"),
        }
    }
    panic!("scim-sync did not start in 5 attempts");
}

/// The `[scim] rate_limit_per_second` key exists from the build that added the per-token limit;
/// a soak of an older build leaves it out.
fn config_accepts_rate_limit_key(bin: &Path) -> bool {
    static CHECKED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CHECKED.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("soak-keycheck-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let config = dir.join("c.toml");
        let ports = Ports { scim: 1, admin: 2 };
        let text = config_text(&dir.join("s.redb"), "http://127.0.0.1:9/v1", ports);
        if std::fs::write(&config, text).is_err() {
            return false;
        }
        let out = Command::new(bin)
            .arg("check-config")
            .arg("--config")
            .arg(&config)
            .env("SCIM_SYNC_SCIM_TOKEN", SCIM_TOKEN)
            .env("SCIM_SYNC_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("PORTKEY_API_KEY", SIM_KEY)
            .output();
        let _ = std::fs::remove_dir_all(&dir);
        match out {
            Ok(o) => !String::from_utf8_lossy(&o.stderr).contains("rate_limit_per_second"),
            Err(_) => false,
        }
    })
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// What the IdP was told, per user. `None` in a field: a write was cut off, its outcome unknown.
#[derive(Debug, Clone)]
struct ModelUser {
    user_name: String,
    id: Option<String>,
    active: Option<bool>,
    deleted: Option<bool>,
    /// Group index → member?
    groups: BTreeMap<usize, Option<bool>>,
    entra: bool,
}

#[derive(Default)]
struct Model {
    users: Vec<ModelUser>,
}

struct Shared {
    scim: std::sync::RwLock<String>,
    admin: std::sync::RwLock<String>,
    http: reqwest::Client,
    /// Traffic holds it shared; verification takes it alone so nothing moves while it reads.
    gate: RwLock<()>,
    groups: Vec<(String, String)>,
    models: Vec<Mutex<Model>>,
    counts: Mutex<BTreeMap<String, u64>>,
    violations: Mutex<Vec<String>>,
    latencies_us: Mutex<Vec<u32>>,
    all_latencies_us: Mutex<Vec<u32>>,
    requests: std::sync::atomic::AtomicU64,
    stop: AtomicBool,
}

enum Outcome {
    /// An answer came back.
    Answered(u16, Value),
    /// Nothing was sent (connection refused): the write did not happen.
    NotSent,
    /// Sent, then the connection broke: the write may or may not have happened.
    Uncertain,
}

impl Shared {
    fn count(&self, what: &str) {
        *self
            .counts
            .lock()
            .expect("counts")
            .entry(what.to_string())
            .or_default() += 1;
    }

    fn violation(&self, v: String) {
        let mut vs = self.violations.lock().expect("violations");
        if vs.len() < 1000 {
            vs.push(v);
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Outcome {
        let base = self.scim.read().expect("scim").clone();
        let mut rb = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(SCIM_TOKEN);
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/scim+json")
                .body(serde_json::to_vec(&b).unwrap_or_default());
        }
        let started = Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        match rb.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let bytes = r.bytes().await;
                let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
                self.latencies_us.lock().expect("lat").push(us);
                self.all_latencies_us.lock().expect("lat").push(us);
                match bytes {
                    Ok(b) => {
                        Outcome::Answered(status, serde_json::from_slice(&b).unwrap_or(Value::Null))
                    }
                    Err(_) => {
                        self.count("cut_off");
                        Outcome::Uncertain
                    }
                }
            }
            Err(e) if e.is_connect() => {
                self.count("refused_while_down");
                Outcome::NotSent
            }
            Err(_) => {
                self.count("cut_off");
                Outcome::Uncertain
            }
        }
    }
}

fn group_name(g: usize) -> String {
    format!("ws-S{}-role-{}", g / ROLES.len(), ROLES[g % ROLES.len()])
}

fn create_body(user_name: &str, entra: bool, ext: &str) -> Value {
    if entra {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "externalId": ext,
            "userName": user_name,
            "active": true,
            "displayName": "Soak User",
            "emails": [{"primary": true, "type": "work", "value": user_name}],
            "name": {"formatted": "Soak User", "familyName": "User", "givenName": "Soak"},
            ENTERPRISE: {"department": "Load"}
        })
    } else {
        json!({
            "schemas": [USER_SCHEMA],
            "userName": user_name,
            "name": {"givenName": "Soak", "familyName": "User"},
            "emails": [{"primary": true, "value": user_name, "type": "work"}],
            "displayName": "Soak User",
            "locale": "en-US",
            "externalId": ext,
            "groups": [],
            "active": true
        })
    }
}

/// One IdP client: picks an action, sends it, and updates its model from the answer.
async fn client(shared: Arc<Shared>, c: usize, opts: Options) {
    let mut rng = StdRng::seed_from_u64(opts.seed ^ (c as u64).wrapping_mul(0x9E37_79B9));
    let interval = Duration::from_secs_f64(opts.clients as f64 / opts.rate.max(0.1));
    let mut next = Instant::now();
    let mut n = 0usize;
    while !shared.stop.load(Ordering::Relaxed) {
        next += interval;
        let now = Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        } else {
            next = now;
        }
        let _g = shared.gate.read().await;
        n += 1;
        step(&shared, c, &mut rng, n, &opts).await;
    }
}

async fn step(shared: &Shared, c: usize, rng: &mut StdRng, n: usize, opts: &Options) {
    let (live, len) = {
        let m = shared.models[c].lock().expect("model");
        let live = m
            .users
            .iter()
            .filter(|u| u.id.is_some() && u.deleted != Some(true))
            .count();
        (live, m.users.len())
    };
    let roll: u32 = rng.gen_range(0..100);
    if live == 0 || (roll < 20 && live < opts.users_per_client) {
        return create(shared, c, rng, n).await;
    }
    // A user of this client's with a known id, not known to be deleted.
    let pick = {
        let m = shared.models[c].lock().expect("model");
        let candidates: Vec<usize> = (0..len)
            .filter(|&i| m.users[i].id.is_some() && m.users[i].deleted != Some(true))
            .collect();
        candidates[rng.gen_range(0..candidates.len())]
    };
    match roll {
        // Below 20 only when at the cap (otherwise that roll creates).
        0..=27 => delete(shared, c, pick).await,
        28..=39 => set_active(shared, c, pick, false).await,
        40..=51 => set_active(shared, c, pick, true).await,
        52..=59 => put_user(shared, c, pick).await,
        60..=74 => membership(shared, c, pick, rng.gen_range(0..WORKSPACES * 3), true).await,
        75..=84 => membership(shared, c, pick, rng.gen_range(0..WORKSPACES * 3), false).await,
        _ => lookup(shared, c, pick).await,
    }
}

fn classify(shared: &Shared, what: &str, status: u16) {
    match status {
        200..=299 => {}
        429 => shared.count("scim_429"),
        500..=599 => shared.count(&format!("{what}_{status}")),
        _ => shared.count(&format!("{what}_{status}")),
    }
}

async fn create(shared: &Shared, c: usize, rng: &mut StdRng, n: usize) {
    let entra = rng.gen_bool(0.5);
    let user_name = format!("soak-c{c}-{n}@soak.example");
    let body = create_body(&user_name, entra, &format!("ext-{c}-{n}"));
    let idx = {
        let mut m = shared.models[c].lock().expect("model");
        m.users.push(ModelUser {
            user_name: user_name.clone(),
            id: None,
            active: None,
            deleted: None,
            groups: BTreeMap::new(),
            entra,
        });
        m.users.len() - 1
    };
    match shared
        .send(reqwest::Method::POST, "/Users", Some(body))
        .await
    {
        Outcome::Answered(201, v) => {
            let mut m = shared.models[c].lock().expect("model");
            let u = &mut m.users[idx];
            u.id = v["id"].as_str().map(str::to_string);
            u.active = Some(true);
            u.deleted = Some(false);
        }
        Outcome::Answered(s, _) => {
            classify(shared, "create", s);
            // A refused create leaves nothing behind (a 409 would mean a cut-off earlier try
            // landed, but each name is tried once).
            let mut m = shared.models[c].lock().expect("model");
            m.users[idx].deleted = Some(true);
        }
        Outcome::NotSent => {
            let mut m = shared.models[c].lock().expect("model");
            m.users[idx].deleted = Some(true);
        }
        Outcome::Uncertain => {
            // Like an IdP: look it up by name and adopt it if it landed.
            let filter = format!("/Users?filter=userName%20eq%20%22{user_name}%22");
            if let Outcome::Answered(200, v) =
                shared.send(reqwest::Method::GET, &filter, None).await
            {
                let mut m = shared.models[c].lock().expect("model");
                let u = &mut m.users[idx];
                match v["Resources"].get(0) {
                    Some(r) => {
                        u.id = r["id"].as_str().map(str::to_string);
                        u.active = Some(true);
                        u.deleted = Some(false);
                    }
                    None => u.deleted = Some(true),
                }
            }
        }
    }
}

fn id_of(shared: &Shared, c: usize, i: usize) -> (String, bool) {
    let m = shared.models[c].lock().expect("model");
    (m.users[i].id.clone().unwrap_or_default(), m.users[i].entra)
}

async fn delete(shared: &Shared, c: usize, i: usize) {
    let (id, _) = id_of(shared, c, i);
    let out = shared
        .send(reqwest::Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    let mut m = shared.models[c].lock().expect("model");
    let u = &mut m.users[i];
    match out {
        Outcome::Answered(204, _) => u.deleted = Some(true),
        Outcome::Answered(404, _) if u.deleted.is_none() => u.deleted = Some(true),
        Outcome::Answered(s, _) => classify(shared, "delete", s),
        Outcome::NotSent => {}
        Outcome::Uncertain => u.deleted = None,
    }
}

async fn set_active(shared: &Shared, c: usize, i: usize, active: bool) {
    let (id, entra) = id_of(shared, c, i);
    // Entra sends string booleans with a capitalised op and a path; Okta a value object.
    let body = if entra {
        scim::patch_body(
            json!([{"op": "Replace", "path": "active", "value": if active { "True" } else { "False" }}]),
        )
    } else {
        scim::patch_body(json!([{"op": "replace", "value": {"active": active}}]))
    };
    let out = shared
        .send(reqwest::Method::PATCH, &format!("/Users/{id}"), Some(body))
        .await;
    answer_user_write(shared, c, i, out, "patch_active", |u| {
        u.active = Some(active)
    });
}

fn answer_user_write(
    shared: &Shared,
    c: usize,
    i: usize,
    out: Outcome,
    what: &str,
    ok: impl FnOnce(&mut ModelUser),
) {
    let mut m = shared.models[c].lock().expect("model");
    let u = &mut m.users[i];
    match out {
        Outcome::Answered(200 | 204, _) => {
            ok(u);
            u.deleted = Some(false);
        }
        Outcome::Answered(404, _) if u.deleted.is_none() => u.deleted = Some(true),
        Outcome::Answered(s, _) => {
            if s == 404 {
                shared.violation(format!(
                    "{what} {}: 404 for a user whose create was acknowledged",
                    u.user_name
                ));
            }
            classify(shared, what, s)
        }
        Outcome::NotSent => {}
        Outcome::Uncertain => u.active = None,
    }
}

async fn put_user(shared: &Shared, c: usize, i: usize) {
    let (id, entra) = id_of(shared, c, i);
    let (user_name, active) = {
        let m = shared.models[c].lock().expect("model");
        (
            m.users[i].user_name.clone(),
            m.users[i].active.unwrap_or(true),
        )
    };
    let mut body = create_body(&user_name, entra, &format!("ext-{id}"));
    body["active"] = json!(active);
    body["id"] = json!(id);
    let out = shared
        .send(reqwest::Method::PUT, &format!("/Users/{id}"), Some(body))
        .await;
    answer_user_write(shared, c, i, out, "put", |u| u.active = Some(active));
}

async fn membership(shared: &Shared, c: usize, i: usize, g: usize, add: bool) {
    let (id, entra) = id_of(shared, c, i);
    let gid = shared.groups[g].1.clone();
    let ops = match (entra, add) {
        (true, true) => json!([{"op": "Add", "path": "members", "value": [{"value": id}]}]),
        (true, false) => json!([{"op": "Remove", "path": "members", "value": [{"value": id}]}]),
        (false, true) => {
            json!([{"op": "add", "path": "members", "value": [{"value": id, "display": "Soak User"}]}])
        }
        (false, false) => json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]),
    };
    let out = shared
        .send(
            reqwest::Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(scim::patch_body(ops)),
        )
        .await;
    let mut m = shared.models[c].lock().expect("model");
    let u = &mut m.users[i];
    match out {
        Outcome::Answered(200 | 204, _) => {
            u.groups.insert(g, Some(add));
        }
        Outcome::Answered(s, _) => {
            // Adding a user that a cut-off delete removed is refused; anything else is counted.
            classify(shared, "patch_group", s)
        }
        Outcome::NotSent => {}
        Outcome::Uncertain => {
            u.groups.insert(g, None);
        }
    }
}

async fn lookup(shared: &Shared, c: usize, i: usize) {
    let (user_name, certain_exists) = {
        let m = shared.models[c].lock().expect("model");
        (
            m.users[i].user_name.clone(),
            m.users[i].deleted == Some(false),
        )
    };
    let filter = format!("/Users?filter=userName%20eq%20%22{user_name}%22&startIndex=1&count=100");
    match shared.send(reqwest::Method::GET, &filter, None).await {
        Outcome::Answered(200, v) => {
            let hits = v["totalResults"].as_u64().unwrap_or(0);
            if certain_exists && hits != 1 {
                shared.violation(format!("lookup {user_name}: {hits} results, expected 1"));
            }
        }
        Outcome::Answered(s, _) => classify(shared, "lookup", s),
        _ => {}
    }
}

/// Reads every user and group back and compares with what was acknowledged.
async fn verify(shared: &Shared, when: &str) -> (u64, u64) {
    let base = shared.scim.read().expect("scim").clone();
    let mut present: BTreeMap<String, (String, bool)> = BTreeMap::new();
    let mut start = 1u64;
    loop {
        let url = format!("{base}/Users?startIndex={start}&count=500&attributes=userName,active");
        let v: Value = match shared.http.get(&url).bearer_auth(SCIM_TOKEN).send().await {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
            other => {
                shared.violation(format!("{when}: listing users failed: {other:?}"));
                return (0, 0);
            }
        };
        let page = v["Resources"].as_array().cloned().unwrap_or_default();
        for r in &page {
            let id = r["id"].as_str().unwrap_or_default().to_string();
            let name = r["userName"].as_str().unwrap_or_default().to_string();
            let active = r["active"].as_bool().unwrap_or(true);
            present.insert(id, (name, active));
        }
        let total = v["totalResults"].as_u64().unwrap_or(0);
        start += page.len() as u64;
        if page.is_empty() || start > total {
            break;
        }
    }
    let mut members: BTreeMap<usize, std::collections::BTreeSet<String>> = BTreeMap::new();
    for (g, (_, gid)) in shared.groups.iter().enumerate() {
        let url = format!("{base}/Groups/{gid}");
        let v: Value = match shared.http.get(&url).bearer_auth(SCIM_TOKEN).send().await {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
            other => {
                shared.violation(format!("{when}: reading group {gid} failed: {other:?}"));
                return (0, 0);
            }
        };
        members.insert(g, scim::member_ids(&v).into_iter().collect());
    }
    let (mut checked, mut lost) = (0u64, 0u64);
    for model in &shared.models {
        let m = model.lock().expect("model");
        for u in &m.users {
            let Some(id) = &u.id else { continue };
            match u.deleted {
                Some(true) => {
                    checked += 1;
                    if present.contains_key(id) {
                        lost += 1;
                        shared.violation(format!("{when}: deleted user {} is back", u.user_name));
                    }
                }
                Some(false) => {
                    checked += 1;
                    match present.get(id) {
                        None => {
                            lost += 1;
                            shared.violation(format!("{when}: user {} is gone", u.user_name));
                        }
                        Some((name, active)) => {
                            if name != &u.user_name {
                                shared.violation(format!("{when}: user {id} renamed to {name}"));
                            }
                            if let Some(want) = u.active {
                                checked += 1;
                                if *active != want {
                                    lost += 1;
                                    shared.violation(format!(
                                        "{when}: user {} active {active}, acknowledged {want}",
                                        u.user_name
                                    ));
                                }
                            }
                            for (g, want) in &u.groups {
                                let Some(want) = want else { continue };
                                checked += 1;
                                let is = members.get(g).is_some_and(|s| s.contains(id));
                                if is != *want {
                                    lost += 1;
                                    shared.violation(format!(
                                        "{when}: user {} in {}: {is}, acknowledged {want}",
                                        u.user_name,
                                        group_name(*g)
                                    ));
                                }
                            }
                        }
                    }
                }
                None => {}
            }
        }
    }
    (checked, lost)
}

async fn admin_post(shared: &Shared, path: &str) -> Option<Value> {
    let admin = shared.admin.read().expect("admin").clone();
    let r = shared
        .http
        .post(format!("{admin}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// What an operator does with the deletion fuse's held set: read its digest from the status,
/// approve that set. Returns how many were approved.
async fn approve_held(shared: &Shared) -> u64 {
    let admin = shared.admin.read().expect("admin").clone();
    let Ok(r) = shared
        .http
        .get(format!("{admin}/admin/status"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
    else {
        return 0;
    };
    let st: Value = r.json().await.unwrap_or(Value::Null);
    let Some(digest) = st["reconciler"]["held_digest"]
        .as_str()
        .filter(|d| !d.is_empty())
    else {
        return 0;
    };
    let v = admin_post(shared, &format!("/admin/approve-deletions?digest={digest}")).await;
    v.and_then(|v| v["approved"].as_u64()).unwrap_or(0)
}

/// After the faults are cleared: forced resyncs until one plans and applies nothing, then the
/// simulator's users and invites are compared with the model.
async fn converge(shared: &Shared, sim_control: &str) -> (bool, usize) {
    let mut last = Value::Null;
    for attempt in 1..=20 {
        let Some(s) = admin_post(shared, "/admin/resync?wait=true").await else {
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        };
        let s = s.get("summary").cloned().unwrap_or(s);
        if std::env::var("SOAK_DEBUG").is_ok() {
            eprintln!(
                "resync {attempt}: ok {} planned {} held {} withheld {} quarantined {} errors {}",
                s["ok"], s["planned"], s["held"], s["withheld"], s["quarantined"], s["errors"]
            );
        }
        if s["held"].as_u64().unwrap_or(0) > 0 {
            approve_held(shared).await;
            continue;
        }
        let planned: u64 = s["planned"]
            .as_object()
            .map(|o| o.values().filter_map(Value::as_u64).sum())
            .unwrap_or(u64::MAX);
        let idle = s["ok"].as_bool() == Some(true)
            && planned == 0
            && s["held"].as_u64() == Some(0)
            && s["quarantined"].as_u64() == Some(0);
        if idle {
            return (check_control_plane(shared, sim_control).await, attempt);
        }
        last = s;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if let Some(o) = last.as_object_mut() {
        // The per-op results make the message long; the first few say enough.
        if let Some(r) = o.get_mut("results").and_then(Value::as_array_mut) {
            r.truncate(5);
        }
    }
    shared.violation(format!("no idle resync in 20; the last: {last}"));
    (false, 20)
}

async fn check_control_plane(shared: &Shared, sim_control: &str) -> bool {
    let state: Value = match shared.http.get(format!("{sim_control}/state")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(e) => {
            shared.violation(format!("reading the simulator state: {e}"));
            return false;
        }
    };
    let lower = |v: &Value| v["email"].as_str().unwrap_or_default().to_lowercase();
    let users: std::collections::BTreeSet<String> = state["users"]
        .as_array()
        .map(|a| a.iter().map(lower).collect())
        .unwrap_or_default();
    let invited: std::collections::BTreeSet<String> = state["invites"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["status"] == "pending")
                .map(lower)
                .collect()
        })
        .unwrap_or_default();
    let mut ok = true;
    for model in &shared.models {
        let m = model.lock().expect("model");
        for u in &m.users {
            if u.id.is_none() {
                continue;
            }
            let email = u.user_name.to_lowercase();
            let there = users.contains(&email) || invited.contains(&email);
            let want = match (u.deleted, u.active) {
                (Some(true), _) | (Some(false), Some(false)) => Some(false),
                (Some(false), Some(true)) => Some(true),
                _ => None,
            };
            if let Some(want) = want {
                if there != want {
                    ok = false;
                    shared.violation(format!(
                        "control plane: {email} present {there}, wanted {want}"
                    ));
                }
            }
        }
    }
    ok
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

const FAULTS: [(&str, &str); 4] = [
    ("none", r#"{}"#),
    ("5xx 20%", r#"{"seed": 7, "rate_5xx": 0.2}"#),
    (
        "429 30% Retry-After 1",
        r#"{"seed": 8, "rate_429": 0.3, "retry_after_secs": 1}"#,
    ),
    ("latency 300 ms", r#"{"latency_ms": 300}"#),
];

pub async fn run(opts: Options) -> Report {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store.redb");
    let mut seed = portkey_sim::Seed::default();
    seed.users.push(portkey_sim::SeedUser {
        email: "owner@soak.example".into(),
        role: "owner".into(),
        ..Default::default()
    });
    for w in 0..WORKSPACES {
        seed.workspaces.push(portkey_sim::SeedWorkspace {
            name: format!("S{w}"),
            ..Default::default()
        });
    }
    let sim = portkey_sim::spawn(
        ([127, 0, 0, 1], 0).into(),
        portkey_sim::SimOptions {
            api_key: SIM_KEY.into(),
            seed: Some(seed),
            auto_accept: Some(Duration::from_secs(2)),
            ..Default::default()
        },
    )
    .await
    .expect("simulator");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(opts.clients * 2)
        .build()
        .expect("client");
    let mut n_start = 0usize;
    let mut daemon = start_daemon(&opts.bin, dir.path(), &store, &sim.base_url(), n_start).await;

    // Groups first, as an IdP's group push would (one per workspace and role).
    let mut groups = Vec::new();
    for g in 0..WORKSPACES * ROLES.len() {
        let name = group_name(g);
        let r = http
            .post(format!("{}/Groups", daemon.scim))
            .bearer_auth(SCIM_TOKEN)
            .json(&json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": []}))
            .send()
            .await
            .expect("create group");
        let v: Value = r.json().await.expect("group json");
        groups.push((name, v["id"].as_str().expect("group id").to_string()));
    }
    let shared = Arc::new(Shared {
        scim: std::sync::RwLock::new(daemon.scim.clone()),
        admin: std::sync::RwLock::new(daemon.admin.clone()),
        http: http.clone(),
        gate: RwLock::new(()),
        groups,
        models: (0..opts.clients)
            .map(|_| Mutex::new(Model::default()))
            .collect(),
        counts: Mutex::new(BTreeMap::new()),
        violations: Mutex::new(Vec::new()),
        latencies_us: Mutex::new(Vec::new()),
        all_latencies_us: Mutex::new(Vec::new()),
        requests: Default::default(),
        stop: AtomicBool::new(false),
    });
    let clients: Vec<_> = (0..opts.clients)
        .map(|c| tokio::spawn(client(shared.clone(), c, opts.clone())))
        .collect();

    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut report = Report::default();
    let deadline = started + opts.duration;
    let draw_kill = |rng: &mut StdRng| {
        let (lo, hi) = opts.kill_every;
        Instant::now() + Duration::from_secs_f64(rng.gen_range(lo.as_secs_f64()..=hi.as_secs_f64()))
    };
    let mut next_kill = draw_kill(&mut rng);
    let mut next_sample = Instant::now();
    let mut next_fault = Instant::now() + opts.fault_every;
    let mut fault = 0usize;
    while Instant::now() < deadline {
        let now = Instant::now();
        if now >= next_sample {
            let mut lat = std::mem::take(&mut *shared.latencies_us.lock().expect("lat"));
            lat.sort_unstable();
            let s = Sample {
                at_s: started.elapsed().as_secs_f64(),
                rss_kib: rss_kib(daemon.child.id()),
                store_bytes: std::fs::metadata(&store).map(|m| m.len()).unwrap_or(0),
                requests: shared.requests.load(Ordering::Relaxed),
                p50_ms: percentile(&lat, 0.5),
                p99_ms: percentile(&lat, 0.99),
                max_ms: lat.last().copied().unwrap_or(0) as f64 / 1000.0,
                fault: FAULTS[fault].0.to_string(),
            };
            if opts.verbose {
                // A full disk (the log is a file) must not end the soak: the line is dropped.
                let _ = writeln!(
                    std::io::stdout(),
                    "t={:>7.0}s rss={:>7.1}MiB store={:>7.2}MiB requests={:>8} p50={:>6.2}ms p99={:>7.2}ms max={:>8.1}ms kills={} fault={}",
                    s.at_s,
                    s.rss_kib as f64 / 1024.0,
                    s.store_bytes as f64 / 1048576.0,
                    s.requests,
                    s.p50_ms,
                    s.p99_ms,
                    s.max_ms,
                    report.kills,
                    s.fault
                );
            }
            report.samples.push(s);
            report.approved += approve_held(&shared).await;
            next_sample = now + opts.sample_every;
        }
        if now >= next_fault {
            fault = rng.gen_range(0..FAULTS.len());
            let _ = http
                .put(format!("{}/faults", sim.control_url()))
                .body(FAULTS[fault].1)
                .send()
                .await;
            next_fault = now + opts.fault_every;
        }
        if now >= next_kill && now + Duration::from_secs(5) < deadline {
            // SIGKILL while clients are mid-request and the reconciler mid-run.
            daemon.child.kill().expect("kill");
            daemon.child.wait().expect("reap");
            report.kills += 1;
            n_start += 1;
            let restart = Instant::now();
            let d = start_daemon(&opts.bin, dir.path(), &store, &sim.base_url(), n_start).await;
            report.max_restart = report.max_restart.max(restart.elapsed());
            *shared.scim.write().expect("scim") = d.scim.clone();
            *shared.admin.write().expect("admin") = d.admin.clone();
            daemon = d;
            let _quiet = shared.gate.write().await;
            let (checked, lost) = verify(&shared, &format!("after kill {}", report.kills)).await;
            report.acked_checked += checked;
            report.acked_lost += lost;
            next_kill = draw_kill(&mut rng);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shared.stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let _ = http
        .put(format!("{}/faults", sim.control_url()))
        .body("{}")
        .send()
        .await;
    let (checked, lost) = verify(&shared, "at the end").await;
    report.acked_checked += checked;
    report.acked_lost += lost;
    let (converged, resyncs) = converge(&shared, &sim.control_url()).await;
    report.converged = converged;
    report.resyncs_to_converge = resyncs;
    // A last sample after convergence.
    report.samples.push(Sample {
        at_s: started.elapsed().as_secs_f64(),
        rss_kib: rss_kib(daemon.child.id()),
        store_bytes: std::fs::metadata(&store).map(|m| m.len()).unwrap_or(0),
        requests: shared.requests.load(Ordering::Relaxed),
        fault: "none (end)".into(),
        ..Default::default()
    });
    let mut all = std::mem::take(&mut *shared.all_latencies_us.lock().expect("lat"));
    all.sort_unstable();
    report.p50_ms = percentile(&all, 0.5);
    report.p99_ms = percentile(&all, 0.99);
    report.max_ms = all.last().copied().unwrap_or(0) as f64 / 1000.0;
    report.requests = shared.requests.load(Ordering::Relaxed);
    report.counts = shared.counts.lock().expect("counts").clone();
    report.violations = shared.violations.lock().expect("violations").clone();
    report.users_at_end = shared
        .models
        .iter()
        .map(|m| {
            m.lock()
                .expect("model")
                .users
                .iter()
                .filter(|u| u.deleted == Some(false))
                .count()
        })
        .sum();
    report.elapsed = started.elapsed();
    drop(daemon);
    sim.shutdown().await;
    report
}
