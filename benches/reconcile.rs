//! Reconciler cost at scale: the daemon (`scim_sync::app::start`, in this process) against the
//! control-plane simulator (in this process, no faults), with 10,000 SCIM users in 200
//! workspace groups `ws-W{i}-role-member` holding 50,000 memberships (250 per group, 5 per user).
//! Calls are counted from the simulator's request log, by method and path shape.
//!
//! Measures:
//! - (a) the initial sync (the startup run) against an empty organisation: calls and wall time;
//!   then, after every invite is accepted, the next full run; then the same SCIM state against an
//!   organisation whose users already exist and whose workspaces are empty (bulk member adds).
//! - (b) a no-op full resync of the converged state: time and calls (only GETs expected).
//! - (c) one SCIM change (one user added to one group over SCIM, default debounce): time from the
//!   SCIM write until the member add is answered by the control plane, and the calls of that
//!   change-driven run.
//!
//! Run with `cargo bench --bench reconcile`; `SCIM_SYNC_BENCH_QUICK=1` divides the sizes by 10.

// Tests and benches may take a default where a read fails: their assertions say what matters.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench fails loudly

use futures::StreamExt;
use portkey_sim::{SeedUser, SeedWorkspace, SimOptions, SimServer};
use scim_sync::config::{Config, ENV_ADMIN_TOKEN, ENV_PORTKEY_API_KEY, ENV_SCIM_TOKEN};
use scim_sync::reconcile::RunSummary;
use scim_sync::scheduler::Trigger;
use scim_sync::scim::resource::normalize;
use scim_sync::scim::schema::ResourceKind;
use scim_sync::store::{Store, StoreOptions};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "support/host.rs"]
mod host;
#[path = "support/seed.rs"]
mod seed;
#[path = "../tests/it/common/sim.rs"]
mod sim;
use sim::Control;

const API_KEY: &str = "bench-portkey-key";
const SCIM_TOKEN: &str = "bench-scim-token-0123456789";
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
/// Repetitions of (b) and (c).
const NOOP_RUNS: usize = 5;
const CHANGE_RUNS: usize = 3;

struct Scale {
    users: usize,
    workspaces: usize,
    /// Members per group; `users * 5 / workspaces` puts every user in 5 groups.
    per_group: usize,
}

impl Scale {
    /// 10,000 users and 200 workspaces, times `--scale N` (`-- --scale 10`: 100,000 users,
    /// 2,000 workspaces, 500,000 memberships), or divided by 10 with SCIM_SYNC_BENCH_QUICK=1.
    fn get() -> Scale {
        let quick = std::env::var("SCIM_SYNC_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
        let times = arg_value("--scale").unwrap_or(1).max(1);
        let (users, workspaces) = if quick {
            (1_000 * times, 20 * times)
        } else {
            (10_000 * times, 200 * times)
        };
        Scale {
            users,
            workspaces,
            per_group: 250,
        }
    }

    /// Group `g` holds users `g*step .. g*step + per_group` (mod users): every user is in
    /// `per_group * workspaces / users` groups.
    fn members(&self, g: usize) -> impl Iterator<Item = usize> + '_ {
        let step = self.users / self.workspaces;
        (0..self.per_group).map(move |k| (g * step + k) % self.users)
    }

    fn memberships(&self) -> usize {
        self.workspaces * self.per_group
    }
}

/// The number after `name` on the command line (`cargo bench --bench reconcile -- --scale 10`).
fn arg_value(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1)?.parse().ok()
}

fn arg_flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// This process's resident memory now and at its peak (daemon, simulator and bench together).
fn rss() -> String {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |f: &str| {
        text.lines()
            .find(|l| l.starts_with(f))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    format!(
        "VmRSS {:.0} MiB, peak VmHWM {:.0} MiB (daemon, simulator and bench in one process)",
        field("VmRSS:"),
        field("VmHWM:")
    )
}

fn email(i: usize) -> String {
    format!("user{i:05}@example.com")
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    format!(
        "nproc {}, CPU \"{cpu}\", RAM {:.1} GiB",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_kb as f64 / 1024.0 / 1024.0
    )
}

/// Writes the SCIM state straight into the store, the way the SCIM server would (normalize,
/// then create), with many writes in flight so that the writer commits them in groups.
async fn seed_store(path: &Path, scale: &Scale) -> (Vec<String>, Vec<String>, Duration) {
    let started = Instant::now();
    let store = Store::open(path, StoreOptions::default()).unwrap();
    let ids = seed::users(&store, scale.users, email).await;
    let groups: Vec<Value> = (0..scale.workspaces)
        .map(|g| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": format!("ws-W{g}-role-member"),
                "members": scale.members(g).map(|i| json!({"value": ids[i]})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let group_ids: Vec<String> = futures::stream::iter(groups)
        .map(|body| {
            let store = store.clone();
            async move {
                let n = normalize(ResourceKind::Group, &body).unwrap();
                let (rec, notes) = store.create(ResourceKind::Group, n).await.unwrap();
                assert!(notes.unknown_members.is_empty());
                rec.id
            }
        })
        .buffered(32)
        .collect()
        .await;
    store.close().await;
    drop(store);
    (ids, group_ids, started.elapsed())
}

async fn sim() -> SimServer {
    sim::spawn(SimOptions {
        api_key: API_KEY.into(),
        seed: Some(sim::owner()),
        ..SimOptions::default()
    })
    .await
}

fn config(store: &Path, sim: &SimServer) -> Config {
    let text = format!(
        "[scim]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
         [portkey]\nbase_url = \"{}\"\nrequests_per_second = 1000000.0\n\
         [sync]\nmax_deletions = 100000\nmax_deletion_percent = 100.0\nfull_resync_cron = \"0 0 0 1 1 *\"\n",
        store.display(),
        sim.base_url()
    );
    Config::from_toml(&text, Path::new("bench.toml"), &env()).unwrap()
}

fn env() -> HashMap<String, String> {
    [
        (ENV_SCIM_TOKEN, SCIM_TOKEN),
        (ENV_ADMIN_TOKEN, ADMIN_TOKEN),
        (ENV_PORTKEY_API_KEY, API_KEY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `GET /v1/admin/workspaces/ws-x/users` → `GET /workspaces/{ws}/users`.
fn shape(method: &str, path: &str) -> String {
    let segs: Vec<&str> = path
        .trim_start_matches("/v1/admin/")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let s = match segs.as_slice() {
        ["users"] => "/users",
        ["users", "invites"] => "/users/invites",
        ["users", "invites", _] => "/users/invites/{id}",
        ["users", _] => "/users/{id}",
        ["workspaces"] => "/workspaces",
        ["workspaces", _] => "/workspaces/{ws}",
        ["workspaces", _, "users"] => "/workspaces/{ws}/users",
        ["workspaces", _, "users", _] => "/workspaces/{ws}/users/{id}",
        _ => path,
    };
    format!("{method} {s}")
}

/// The request log since the last clear, counted by shape.
#[derive(Default)]
struct Calls {
    by_shape: BTreeMap<String, usize>,
    total: usize,
    writes: usize,
    non_200: usize,
}

impl Calls {
    fn of(log: &[Value]) -> Calls {
        let mut c = Calls::default();
        for e in log {
            let m = e["method"].as_str().unwrap_or("?");
            *c.by_shape
                .entry(shape(m, e["path"].as_str().unwrap_or("?")))
                .or_default() += 1;
            c.total += 1;
            if m != "GET" {
                c.writes += 1;
            }
            if e["status"] != 200 {
                c.non_200 += 1;
            }
        }
        c
    }

    fn line(&self) -> String {
        let parts: Vec<String> = self
            .by_shape
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!(
            "{} calls ({} writes, {} not 200): {}",
            self.total,
            self.writes,
            self.non_200,
            parts.join(", ")
        )
    }
}

struct Bench {
    http: reqwest::Client,
    control: Control,
    sim: SimServer,
}

impl Bench {
    async fn log(&self) -> Vec<Value> {
        self.control.requests().await
    }

    async fn clear(&self) {
        self.control.clear_requests().await;
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        self.control.post(path, &body).await
    }
}

async fn forced_run(running: &scim_sync::app::Running) -> (RunSummary, Duration) {
    let started = Instant::now();
    let (_, rx) = running
        .scheduler
        .resync(Trigger::Manual, true)
        .await
        .unwrap();
    let s = rx.unwrap().await.unwrap();
    (s, started.elapsed())
}

fn check(s: &RunSummary) {
    assert!(
        s.ok,
        "run {} failed: {:?} (failed ops {})",
        s.run_id, s.errors, s.failed
    );
}

/// Shuts a daemon down and drops every handle on its store, so the file can be opened again.
async fn stop(mut running: scim_sync::app::Running, tx: tokio::sync::oneshot::Sender<()>) {
    let _ = tx.send(());
    let _ = (&mut running.done).await;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (b): `NOOP_RUNS` forced full runs of a converged state; every one must write nothing.
async fn noop_resyncs(b: &Bench, running: &scim_sync::app::Running, what: &str) {
    println!("\n## (b) no-op full resync, {what}");
    let mut times = Vec::new();
    let mut last = Calls::default();
    for _ in 0..NOOP_RUNS {
        b.clear().await;
        let (s, t) = forced_run(running).await;
        check(&s);
        assert_eq!(s.planned.get("total"), Some(&0), "not converged: {s:?}");
        last = Calls::of(&b.log().await);
        assert_eq!(last.writes, 0, "a no-op run wrote: {}", last.line());
        times.push(t);
    }
    times.sort();
    println!(
        "{NOOP_RUNS} runs: min {:.0} ms, median {:.0} ms, max {:.0} ms (target < 2000 ms)",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
    println!("each: {}", last.line());
    // Where a run's time goes: the desired state from the store (synchronous, on a runtime
    // worker), and the plan (desired state + control-plane reads + diff).
    let mut desired = Vec::new();
    let mut plan = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let d = running.reconciler.desired().unwrap();
        desired.push(t.elapsed());
        assert!(!d.users.is_empty());
        let t = Instant::now();
        let (view, _) = running.reconciler.plan().await.unwrap();
        plan.push(t.elapsed());
        assert!(view.plan.ops.is_empty() && view.read_errors.is_empty());
    }
    desired.sort();
    plan.sort();
    println!(
        "breakdown (median of 3): desired state from the store {:.0} ms; plan() (desired + \
         control-plane reads + diff) {:.0} ms",
        ms(desired[1]),
        ms(plan[1])
    );
}

#[tokio::main]
async fn main() {
    let scale = Scale::get();
    println!(
        "machine: {}; load average at start {}",
        machine(),
        host::load_avg()
    );
    println!(
        "scenario: {} SCIM users, {} workspace groups ws-W{{i}}-role-member, {} memberships",
        scale.users,
        scale.workspaces,
        scale.memberships()
    );
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.redb");
    let (user_ids, group_ids, t) = seed_store(&store_path, &scale).await;
    println!("store seeded in {:.2} s; {}", t.as_secs_f64(), rss());

    // Request logs of 50,000 calls take a while to read.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let sim = sim().await;
    let b = Bench {
        control: Control::with_client(&sim, http.clone()),
        http,
        sim,
    };
    let config = config(&store_path, &b.sim);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();

    // (a) The startup run is the initial sync.
    let started = Instant::now();
    let running = scim_sync::app::start(&config, async move {
        let _ = stop_rx.await;
    })
    .await
    .unwrap();
    let first = loop {
        if let Some(s) = running.reconciler.status().last_run {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let wall = started.elapsed();
    check(&first);
    let calls = Calls::of(&b.log().await);
    println!("\n## (a) initial sync, empty organisation");
    println!(
        "run {}: {:.0} ms (run), {:.0} ms from app::start; planned {:?}",
        first.run_id,
        first.duration_ms,
        ms(wall),
        first.planned
    );
    println!("{}", calls.line());
    println!(
        "minimum writes: {} workspace creates + {} invites (each carrying its workspaces) = {}",
        scale.workspaces,
        scale.users,
        scale.workspaces + scale.users
    );
    println!("{}", rss());

    // After everyone accepts, the memberships came with the invites.
    let accepted = b.control("/invites/accept", json!({})).await;
    let n_accepted = accepted["accepted"].as_array().map_or(0, Vec::len);
    b.clear().await;
    let (s, t) = forced_run(&running).await;
    check(&s);
    let calls = Calls::of(&b.log().await);
    println!("\n## (a) full run after {n_accepted} invites were accepted");
    println!("run {}: {:.0} ms; planned {:?}", s.run_id, ms(t), s.planned);
    println!("{}", calls.line());

    // (b) on the organisation as the invites left it: every accepted invite is still listed.
    noop_resyncs(&b, &running, "after onboarding by invite").await;

    // The same SCIM state against an organisation where everyone is already a user and the
    // workspaces exist but are empty: the members must be bulk-added.
    b.control("/reset", json!({})).await;
    let mut seed = sim::owner();
    seed.users.extend((0..scale.users).map(|i| SeedUser {
        email: email(i),
        first_name: None,
        last_name: None,
        role: "member".into(),
    }));
    seed.workspaces = (0..scale.workspaces)
        .map(|g| SeedWorkspace {
            name: format!("W{g}"),
            slug: None,
            members: vec![],
        })
        .collect();
    b.control("/seed", serde_json::to_value(&seed).unwrap())
        .await;
    b.clear().await;
    let (s, t) = forced_run(&running).await;
    check(&s);
    let calls = Calls::of(&b.log().await);
    println!("\n## (a) full run, users exist, workspaces empty");
    println!("run {}: {:.0} ms; planned {:?}", s.run_id, ms(t), s.planned);
    println!("{}", calls.line());
    println!(
        "minimum writes: {} bulk adds (one per workspace)",
        scale.workspaces
    );

    noop_resyncs(&b, &running, "users exist, no invites").await;

    // (c) One SCIM change over HTTP, default debounce: a user not yet in group W{g} joins it.
    println!("\n## (c) one SCIM change (add one user to one group)");
    let scim = format!("http://{}{}", running.scim_addr, config.scim.base_path);
    // Control-plane user ids by email: the member add names the user by id.
    let state = b.control.state().await;
    let pk_ids: HashMap<String, String> = state["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["email"].as_str().unwrap().to_string(),
                u["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut to_applied = Vec::new();
    for rep in 0..CHANGE_RUNS {
        let g = rep;
        let newcomer = (0..scale.users)
            .rev()
            .find(|i| !scale.members(g).any(|m| m == *i))
            .unwrap();
        let (uid, gid) = (&user_ids[newcomer], &group_ids[g]);
        let pk_id = &pk_ids[&email(newcomer)];
        let runs_before = running
            .reconciler
            .status()
            .last_run
            .map(|r| r.run_id)
            .unwrap_or_default();
        b.clear().await;
        let started = Instant::now();
        let r = b
            .http
            .patch(format!("{scim}/Groups/{gid}"))
            .bearer_auth(SCIM_TOKEN)
            .header("content-type", "application/scim+json")
            .body(
                serde_json::to_vec(&json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "add", "path": "members", "value": [{"value": uid}]}],
                }))
                .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PATCH: {}", r.status());
        let acked = started.elapsed();
        // Applied: the control plane answered the member add.
        let applied = loop {
            let log = b.log().await;
            if log.iter().any(|e| {
                e["method"] == "POST"
                    && e["path"].as_str().is_some_and(|p| p.ends_with("/users"))
                    && e["body"].to_string().contains(pk_id.as_str())
                    && e["status"] == 200
            }) {
                break started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the change was not applied within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // The change-driven run's summary, once it has finished.
        let s = loop {
            let st = running.reconciler.status();
            if st.running.is_none() {
                if let Some(r) = st.last_run.filter(|r| r.run_id != runs_before) {
                    break r;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        check(&s);
        let calls = Calls::of(&b.log().await);
        println!(
            "rep {rep}: SCIM write acknowledged after {:.1} ms; member add answered after {:.0} ms; \
             run {} ({:?}, {:?}) took {} ms, planned {:?}",
            ms(acked),
            ms(applied),
            s.run_id,
            s.kind,
            s.trigger,
            s.duration_ms,
            s.planned
        );
        println!("rep {rep}: {}", calls.line());
        to_applied.push(applied);
    }
    to_applied.sort();
    println!(
        "SCIM write → applied: min {:.0} ms, median {:.0} ms, max {:.0} ms (debounce {} ms)",
        ms(to_applied[0]),
        ms(to_applied[to_applied.len() / 2]),
        ms(to_applied[to_applied.len() - 1]),
        config.sync.debounce_ms
    );
    stop(running, stop_tx).await;

    println!("\nafter (a)-(c): {}", rss());
    if scale.users > 10_000 && !arg_flag("--rate-limited") {
        println!(
            "\n(b) at the default rate limit: not run at this scale (add --rate-limited); a no-op \
             run's reads at 20 requests/s take their count / 20 seconds"
        );
        println!("\nload average at end {}", host::load_avg());
        b.sim.shutdown().await;
        return;
    }

    // The same converged state with the default `[portkey] requests_per_second` (the startup
    // run of a second daemon on the same store is the no-op full run).
    let text = format!(
        "[scim]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
         [portkey]\nbase_url = \"{}\"\n[sync]\nfull_resync_cron = \"0 0 0 1 1 *\"\n",
        store_path.display(),
        b.sim.base_url()
    );
    let defaults = Config::from_toml(&text, Path::new("bench.toml"), &env()).unwrap();
    b.clear().await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = scim_sync::app::start(&defaults, async move {
        let _ = stop_rx.await;
    })
    .await
    .unwrap();
    let s = loop {
        if let Some(s) = running.reconciler.status().last_run {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    check(&s);
    assert_eq!(s.planned.get("total"), Some(&0), "not converged: {s:?}");
    let calls = Calls::of(&b.log().await);
    println!(
        "\n## (b) no-op full run with the default rate limit ({} requests/s)",
        defaults.portkey.requests_per_second
    );
    println!("run {}: {} ms; {}", s.run_id, s.duration_ms, calls.line());
    stop(running, stop_tx).await;

    println!("\nload average at end {}", host::load_avg());
    b.sim.shutdown().await;
}
