//! Crash safety of the reconciler: a `scim-sync serve` child process applies a plan against the
//! control-plane simulator, gets SIGKILL in the middle of the apply (after its first invite went
//! out), and is restarted on the same store. Forced resyncs must then converge, every desired
//! person must have been invited exactly once (no duplicate invite, whatever the kill cut off),
//! the memberships must match the groups, and a final run must write nothing.
//!
//! CI runs 3 rounds, each with a fresh simulator and store. For a longer run:
//!
//! ```text
//! SCIM_SYNC_RECONCILE_CRASH_ROUNDS=20 cargo test --test it reconcile_crash -- --nocapture
//! ```

use crate::common::daemon::{Daemon, Ports};
use crate::common::sim::{self, Control};
use crate::common::{count_from_env, group, serve, user, Admin, PORTKEY_KEY, SCIM_TOKEN};
use portkey_sim::{Faults, SimOptions, SimServer};
use rand::Rng;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
const DEFAULT_ROUNDS: usize = 3;
/// People in the IdP; the last two are in no group (org membership only).
const USERS: usize = 42;
/// Added to every control-plane request, so that applying 42 invites, four at a time
/// (`max_in_flight = 4` below), takes about 1.3 s and a kill lands inside the apply.
const LATENCY_MS: u64 = 120;
/// The kill comes this long after the first invite request reached the simulator.
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 0..=900;
/// Upper bounds; a round normally takes 3–4 s in all, and the waits end as soon as the
/// condition holds, so a busy machine gets room without slowing a quiet one.
const READY_WITHIN: Duration = Duration::from_secs(30);
const FIRST_INVITE_WITHIN: Duration = Duration::from_secs(30);
const CONVERGE_WITHIN: Duration = Duration::from_secs(20);

const INVITES: &str = "/v1/admin/users/invites";

fn rounds() -> usize {
    count_from_env("SCIM_SYNC_RECONCILE_CRASH_ROUNDS", DEFAULT_ROUNDS)
}

/// The groups of a round: (workspace, role, member indexes). Alpha's admins are also in its
/// member group, so the highest role must win.
fn groups() -> Vec<(&'static str, &'static str, std::ops::Range<usize>)> {
    vec![
        ("Alpha", "member", 0..30),
        ("Alpha", "admin", 0..5),
        ("Beta", "manager", 20..40),
        ("Gamma", "member", 10..25),
    ]
}

/// Workspace → email → role, as the groups say.
fn expected_members(emails: &[String]) -> BTreeMap<String, BTreeMap<String, String>> {
    let rank = |r: &str| match r {
        "admin" => 3,
        "manager" => 2,
        _ => 1,
    };
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (ws, role, range) in groups() {
        let m = out.entry(ws.to_string()).or_default();
        for i in range {
            let e = m
                .entry(emails[i].clone())
                .or_insert_with(|| role.to_string());
            if rank(role) > rank(e) {
                *e = role.to_string();
            }
        }
    }
    out
}

/// Starts the binary on `store` against the simulator and waits until it serves. Fresh ports
/// on every start, so sockets of the killed process cannot get in the way.
async fn start_daemon(dir: &Path, store: &Path, sim: &SimServer) -> Daemon {
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let ports = Ports::free();
    let config = dir.join(format!("config-{n}.toml"));
    let text = ports.config("", store)
        + &format!(
            "[portkey]\nbase_url = \"{}\"\nretry_initial_ms = 20\n\
             retry_max_interval_ms = 200\nretry_give_up_secs = 5\nrequests_per_second = 1000.0\nmax_in_flight = 4\n\
             [sync]\nmax_deletions = 1000\nmax_deletion_percent = 100.0\ndebounce_ms = 100\n\
             full_resync_cron = \"0 0 0 1 1 *\"\n",
            sim.base_url()
        );
    std::fs::write(&config, text).unwrap();
    let mut cmd = serve(&config);
    cmd.env("SCIM_SYNC_LOG", "info");
    let log = dir.join(format!("daemon-{n}.log"));
    Daemon::start(cmd, ports, Some(&log), READY_WITHIN).await
}

async fn scim_post(http: &reqwest::Client, d: &Daemon, path: &str, body: Value) -> Value {
    let r = http
        .post(format!("{}{path}", d.scim))
        .bearer_auth(SCIM_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "POST {path}");
    r.json().await.unwrap()
}

/// Asks for a full run; with `wait`, returns its summary.
async fn resync(http: &reqwest::Client, d: &Daemon, wait: bool) -> Value {
    let (status, v) = Admin::new(&d.admin, http).resync(wait).await;
    assert!((200..300).contains(&status), "resync: {status}");
    v["summary"].clone()
}

fn is_invite_post(e: &Value) -> bool {
    e["method"] == "POST" && e["path"] == INVITES
}

async fn pending_invites(sim: &Control) -> usize {
    sim.state().await["invites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "pending")
        .count()
}

/// What a round saw, for the summary line.
struct RoundReport {
    delay_ms: u64,
    invites_ok_at_kill: usize,
    in_flight_at_kill: usize,
    runs_to_converge: usize,
    audited_invites: usize,
    elapsed: Duration,
}

async fn round(http: &reqwest::Client, r: usize) -> RoundReport {
    let started = Instant::now();
    let sim = sim::spawn(SimOptions {
        api_key: PORTKEY_KEY.into(),
        seed: Some(sim::owner()),
        faults: Faults {
            latency_ms: LATENCY_MS,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let control = Control::with_client(&sim, http.clone());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.redb");
    let mut daemon = start_daemon(dir.path(), &store, &sim).await;

    // The IdP pushes everyone at once, then the groups.
    let emails: Vec<String> = (0..USERS)
        .map(|i| format!("rc{r}-u{i:02}@example.com"))
        .collect();
    let ids: Vec<String> = futures::future::join_all(
        emails
            .iter()
            .map(|e| scim_post(http, &daemon, "/Users", user(e))),
    )
    .await
    .into_iter()
    .map(|v| v["id"].as_str().unwrap().to_string())
    .collect();
    futures::future::join_all(groups().into_iter().map(|(ws, role, range)| {
        let body = group(&format!("ws-{ws}-role-{role}"), &ids[range]);
        scim_post(http, &daemon, "/Groups", body)
    }))
    .await;

    // A full run, without waiting; kill it a random moment after its first invite went out.
    resync(http, &daemon, false).await;
    let deadline = Instant::now() + FIRST_INVITE_WITHIN;
    while !control.requests().await.iter().any(is_invite_post) {
        assert!(
            Instant::now() < deadline,
            "no invite was sent within {FIRST_INVITE_WITHIN:?}\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delay_ms = rand::thread_rng().gen_range(KILL_AFTER_MS);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    daemon.kill();
    let at_kill = control.requests().await;
    let invites_ok_at_kill = at_kill
        .iter()
        .filter(|e| is_invite_post(e) && e["status"] == 200)
        .count();
    let in_flight_at_kill = at_kill.iter().filter(|e| e["status"].is_null()).count();

    // Restart on the same store; force runs and accept invites until nothing is left to do.
    let daemon = start_daemon(dir.path(), &store, &sim).await;
    let deadline = Instant::now() + CONVERGE_WITHIN;
    let mut runs_to_converge = 0;
    loop {
        let s = resync(http, &daemon, true).await;
        runs_to_converge += 1;
        let pending = pending_invites(&control).await;
        if s["ok"] == true && s["planned"]["total"] == 0 && pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "round {r}: not converged within {CONVERGE_WITHIN:?}; last run {s}\n{}",
            daemon.log_text()
        );
        if pending > 0 {
            control.accept_invites().await;
        }
    }

    // Every desired person was invited exactly once, and nobody else was.
    let log = control.requests().await;
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    for e in log
        .iter()
        .filter(|e| is_invite_post(e) && e["status"] == 200)
    {
        *created
            .entry(e["body"]["email"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    let twice: Vec<(&String, &usize)> = created.iter().filter(|(_, &n)| n != 1).collect();
    assert!(
        twice.is_empty(),
        "round {r} (kill {delay_ms} ms after the first invite): invited more than once: {twice:?}"
    );
    let invited: BTreeSet<&String> = created.keys().collect();
    let wanted: BTreeSet<&String> = emails.iter().collect();
    assert_eq!(invited, wanted, "round {r}: the invited people");

    // The organisation and the memberships match the IdP.
    let state = control.state().await;
    let mut org: Vec<(String, String)> = state["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["email"].as_str().unwrap().to_string(),
                u["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    org.sort();
    let mut want_org: Vec<(String, String)> = emails
        .iter()
        .map(|e| (e.clone(), "member".to_string()))
        .chain([("owner@example.com".to_string(), "owner".to_string())])
        .collect();
    want_org.sort();
    assert_eq!(org, want_org, "round {r}: organisation users");
    let workspaces = state["workspaces"].as_array().unwrap();
    let names: Vec<&str> = workspaces
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        names.iter().collect::<BTreeSet<_>>().len(),
        "round {r}: a workspace was created twice: {names:?}"
    );
    for (ws, want) in expected_members(&emails) {
        let w = workspaces
            .iter()
            .find(|w| w["name"] == ws.as_str())
            .unwrap_or_else(|| panic!("round {r}: workspace {ws} missing"));
        let have: BTreeMap<String, String> = w["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["implicit"] != true)
            .map(|m| {
                (
                    m["email"].as_str().unwrap().to_string(),
                    m["role"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(have, want, "round {r}: members of {ws}");
    }

    // A converged run writes nothing.
    control.clear_requests().await;
    let s = resync(http, &daemon, true).await;
    assert_eq!(s["planned"]["total"], 0, "round {r}: {s}");
    let writes: Vec<String> = control
        .requests()
        .await
        .iter()
        .filter(|e| e["method"] != "GET")
        .map(|e| format!("{} {}", e["method"], e["path"]))
        .collect();
    assert!(
        writes.is_empty(),
        "round {r}: a converged run wrote {writes:?}"
    );

    // Observed, not asserted: invites applied by the killed run that reached the audit log.
    let audited_invites = Admin::new(&daemon.admin, http)
        .get("/admin/audit?limit=10000")
        .await["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["op"]["op"] == "invite" && e["result"] == "ok")
        .count();
    drop(daemon);
    sim.shutdown().await;
    RoundReport {
        delay_ms,
        invites_ok_at_kill,
        in_flight_at_kill,
        runs_to_converge,
        audited_invites,
        elapsed: started.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_apply_then_restart_converges_without_duplicate_invites() {
    let rounds = rounds();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut cut = 0;
    for r in 1..=rounds {
        let rep = round(&http, r).await;
        if rep.invites_ok_at_kill < USERS {
            cut += 1;
        }
        println!(
            "reconcile crash round {r}/{rounds}: SIGKILL {} ms after the first invite; {} of {USERS} \
             invites answered before the kill, {} requests in flight; converged in {} forced runs; \
             {} of {USERS} invites in the audit log; round took {:.2} s",
            rep.delay_ms,
            rep.invites_ok_at_kill,
            rep.in_flight_at_kill,
            rep.runs_to_converge,
            rep.audited_invites,
            rep.elapsed.as_secs_f64()
        );
    }
    println!("reconcile crash test: {rounds} rounds, {cut} killed before all invites were out");
}
