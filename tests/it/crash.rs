//! Crash safety: a `scim-sync serve` child process takes writes from 16 concurrent clients, gets
//! SIGKILL at a random moment, and is restarted on the same store. Every write that was answered
//! 2xx must be there afterwards and findable through its unique-name filter.
//!
//! CI runs 3 rounds. For a longer run:
//!
//! ```text
//! SCIM_SYNC_CRASH_ROUNDS=20 cargo test --test it crash -- --nocapture
//! ```

use crate::common::daemon::{self, Ports};
use crate::common::{
    count_from_env, enc, group, member_ids, patch_body, scim, serve, user, SCIM_TOKEN,
};
use futures::StreamExt;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WRITERS: usize = 16;
const DEFAULT_ROUNDS: usize = 3;
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 100..=800;

fn rounds() -> usize {
    count_from_env("SCIM_SYNC_CRASH_ROUNDS", DEFAULT_ROUNDS)
}

/// A child daemon on `store` with no control plane, and a SCIM client for it.
pub(crate) struct Daemon {
    process: daemon::Daemon,
    pub(crate) api: Api,
    pub(crate) admin_port: u16,
}

/// The SCIM side of a daemon, shared by the writer tasks while the test holds the child.
pub(crate) type Api = scim::Client;

impl Daemon {
    /// Starts the binary on `store` and waits until it serves, on fresh ports.
    pub(crate) async fn start(dir: &Path, store: &Path, n: usize) -> Daemon {
        Self::start_with(dir, store, n, |_| {}).await
    }

    /// [`Daemon::start`], with a last say on the command (limits, signals) before it is spawned.
    pub(crate) async fn start_with(
        dir: &Path,
        store: &Path,
        n: usize,
        prepare: impl FnOnce(&mut Command),
    ) -> Daemon {
        let ports = Ports::free();
        let config = dir.join(format!("config-{n}.toml"));
        // The rate limit is off: this test writes as fast as the store commits, and a 429 is
        // not what it is about.
        let text = ports.config("rate_limit_per_second = 0\n", store)
            + "[portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\n";
        std::fs::write(&config, text).unwrap();
        let mut cmd = serve(&config);
        cmd.env("SCIM_SYNC_LOG", "warn");
        prepare(&mut cmd);
        let log = dir.join(format!("daemon-{n}.log"));
        let process = daemon::Daemon::start(cmd, ports, Some(&log), Duration::from_secs(10)).await;
        Daemon {
            api: Api::new(
                &process.scim,
                SCIM_TOKEN,
                &reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap(),
            ),
            admin_port: ports.admin,
            process,
        }
    }
}

/// The process side: `child`, `log_text`, `kill`.
impl std::ops::Deref for Daemon {
    type Target = daemon::Daemon;
    fn deref(&self) -> &daemon::Daemon {
        &self.process
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut daemon::Daemon {
        &mut self.process
    }
}

/// What the clients were told was written, across all rounds.
#[derive(Default, Clone)]
struct Acked {
    /// userName → id from the 201.
    users: BTreeMap<String, String>,
    /// displayName → group.
    groups: BTreeMap<String, AckedGroup>,
    /// Non-2xx answers received before the kill: none are expected.
    rejected: Vec<String>,
}

#[derive(Default, Clone)]
struct AckedGroup {
    id: String,
    /// Members in the 201 or in a PATCH answered 204.
    members: BTreeSet<String>,
    /// Every member ever sent: a PATCH cut off by the kill may or may not have committed.
    attempted: BTreeSet<String>,
}

#[derive(Default, Debug, Clone, Copy)]
struct RoundCounts {
    users: usize,
    groups: usize,
    member_adds: usize,
}

/// One client: creates users; every fifth user also makes a group with the last two users as
/// members, then adds the newest user to that group by PATCH. Stops at the first transport
/// error (the server is gone) or when told to.
async fn writer(
    d: Api,
    round: usize,
    w: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
) -> RoundCounts {
    let mut counts = RoundCounts::default();
    let mut mine: Vec<String> = Vec::new();
    let mut i = 0usize;
    let reject = |what: String| acked.lock().unwrap().rejected.push(what);
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let name = format!("crash-r{round}-w{w}-{i}@example.com");
        let Ok((status, body)) = d
            .try_send(reqwest::Method::POST, "/Users", Some(&user(&name)))
            .await
        else {
            break;
        };
        if status != 201 {
            reject(format!("POST /Users {name}: {status} {body}"));
            continue;
        }
        let id = body["id"].as_str().unwrap().to_string();
        acked.lock().unwrap().users.insert(name, id.clone());
        counts.users += 1;
        mine.push(id);

        if !i.is_multiple_of(5) || mine.len() < 3 {
            continue;
        }
        let gname = format!("crash-r{round}-g{w}-{i}");
        let initial: Vec<String> = mine[mine.len() - 3..mine.len() - 1].to_vec();
        let newest = mine[mine.len() - 1].clone();
        let group_body = group(&gname, &initial);
        let Ok((status, body)) = d
            .try_send(reqwest::Method::POST, "/Groups", Some(&group_body))
            .await
        else {
            break;
        };
        if status != 201 {
            reject(format!("POST /Groups {gname}: {status} {body}"));
            continue;
        }
        let gid = body["id"].as_str().unwrap().to_string();
        {
            let mut a = acked.lock().unwrap();
            let g = a.groups.entry(gname.clone()).or_default();
            g.id = gid.clone();
            g.members.extend(initial.iter().cloned());
            g.attempted.extend(initial.iter().cloned());
            g.attempted.insert(newest.clone());
        }
        counts.groups += 1;
        let add =
            patch_body(json!([{"op": "add", "path": "members", "value": [{"value": newest}]}]));
        let Ok((status, body)) = d
            .try_send(
                reqwest::Method::PATCH,
                &format!("/Groups/{gid}"),
                Some(&add),
            )
            .await
        else {
            break;
        };
        if !(200..300).contains(&status) {
            reject(format!("PATCH /Groups/{gid}: {status} {body}"));
            continue;
        }
        let mut a = acked.lock().unwrap();
        a.groups.get_mut(&gname).unwrap().members.insert(newest);
        counts.member_adds += 1;
    }
    counts
}

/// Checks every acknowledged user and group whose name passes `only`; returns the failures.
async fn verify(d: &Api, acked: &Acked, only: &dyn Fn(&str) -> bool) -> (usize, Vec<String>) {
    let users: Vec<(String, String)> = acked
        .users
        .iter()
        .filter(|(n, _)| only(n))
        .map(|(n, id)| (n.clone(), id.clone()))
        .collect();
    let groups: Vec<(String, AckedGroup)> = acked
        .groups
        .iter()
        .filter(|(n, _)| only(n))
        .map(|(n, g)| (n.clone(), g.clone()))
        .collect();
    let checked = users.len() + groups.len();

    let mut failures: Vec<String> = futures::stream::iter(users)
        .map(|(name, id)| async move {
            let filter = enc(&format!("userName eq \"{name}\""));
            let (status, body) = d.get(&format!("/Users?filter={filter}")).await;
            let found: Vec<&str> = body["Resources"]
                .as_array()
                .map(|a| a.iter().filter_map(|r| r["id"].as_str()).collect())
                .unwrap_or_default();
            (status != 200 || found != [id.as_str()] || body["totalResults"] != 1).then(|| {
                format!("user {name} (acknowledged as {id}): status {status}, found {found:?}")
            })
        })
        .buffer_unordered(WRITERS)
        .filter_map(|f| async move { f })
        .collect()
        .await;

    let group_failures: Vec<String> = futures::stream::iter(groups)
        .map(|(name, g)| async move {
            let filter = enc(&format!("displayName eq \"{name}\""));
            let (status, body) = d.get(&format!("/Groups?filter={filter}")).await;
            let found: Vec<&Value> = body["Resources"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
            if status != 200 || found.len() != 1 || found[0]["id"] != g.id.as_str() {
                return Some(format!(
                    "group {name} (acknowledged as {}): status {status}, {} found",
                    g.id,
                    found.len()
                ));
            }
            let members: BTreeSet<String> = member_ids(found[0]).into_iter().collect();
            let missing: Vec<&String> = g.members.difference(&members).collect();
            let phantom: Vec<&String> = members.difference(&g.attempted).collect();
            (!missing.is_empty() || !phantom.is_empty()).then(|| {
                format!("group {name}: acknowledged members missing {missing:?}, never-sent members {phantom:?}")
            })
        })
        .buffer_unordered(WRITERS)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    failures.extend(group_failures);
    (checked, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let rounds = rounds();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.redb");
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut starts = 0usize;
    let mut daemon = Daemon::start(dir.path(), &store, starts).await;
    let mut total_checked = 0usize;
    let mut totals = RoundCounts::default();
    let mut all_failures: Vec<String> = Vec::new();
    let mut replayed = 0usize;

    for round in 1..=rounds {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let api = daemon.api.clone();
                tokio::spawn(writer(api, round, w, stop.clone(), acked.clone()))
            })
            .collect();
        let delay = rand::thread_rng().gen_range(KILL_AFTER_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        // Kill first, then stop the writers: requests in flight at the kill are the point.
        daemon.kill();
        stop.store(true, Ordering::Relaxed);
        let mut counts = RoundCounts::default();
        for t in tasks {
            let c = t.await.unwrap();
            counts.users += c.users;
            counts.groups += c.groups;
            counts.member_adds += c.member_adds;
        }

        starts += 1;
        daemon = Daemon::start(dir.path(), &store, starts).await;
        // The writes answered just before the kill are in the write-ahead log, not yet in the
        // store file: the restart must have applied it (checked over all rounds below).
        let log = std::fs::read_to_string(dir.path().join(format!("daemon-{starts}.log")))
            .unwrap_or_default();
        if log.contains("applied the write-ahead log") {
            replayed += 1;
        }
        let prefix_user = format!("crash-r{round}-w");
        let prefix_group = format!("crash-r{round}-g");
        let snapshot = acked.lock().unwrap().clone();
        let (checked, failures) = verify(&daemon.api, &snapshot, &|n| {
            n.starts_with(&prefix_user) || n.starts_with(&prefix_group)
        })
        .await;
        total_checked += checked;
        totals.users += counts.users;
        totals.groups += counts.groups;
        totals.member_adds += counts.member_adds;
        println!(
            "crash round {round}/{rounds}: SIGKILL after {delay} ms; acknowledged {} user creates, \
             {} group creates, {} member adds; {checked} resources checked after restart, {} missing; \
             round took {:.2} s",
            counts.users,
            counts.groups,
            counts.member_adds,
            failures.len(),
            started.elapsed().as_secs_f64()
        );
        all_failures.extend(failures.into_iter().map(|f| format!("round {round}: {f}")));
    }

    println!("crash test: {replayed} of {rounds} restarts applied the write-ahead log");
    assert!(
        replayed >= 1,
        "no restart applied the write-ahead log: the kills did not test it"
    );
    // Earlier rounds' writes must also survive the later kills.
    let snapshot = acked.lock().unwrap().clone();
    let (checked, failures) = verify(&daemon.api, &snapshot, &|_| true).await;
    let (_, users_total) = daemon.api.get("/Users?count=0").await;
    println!(
        "crash test: {rounds} rounds; acknowledged {} user creates, {} group creates, {} member \
         adds; {total_checked} checked right after their round's restart and all {checked} users and \
         groups re-checked at the end, {} missing; the store holds {} users (writes in flight at a \
         kill may have committed unacknowledged)",
        totals.users,
        totals.groups,
        totals.member_adds,
        failures.len(),
        users_total["totalResults"]
    );
    all_failures.extend(failures.into_iter().map(|f| format!("final: {f}")));
    daemon.kill();

    let rejected = std::mem::take(&mut acked.lock().unwrap().rejected);
    assert!(
        rejected.is_empty(),
        "writes were refused while the server was up:\n{}",
        rejected.join("\n")
    );
    assert!(
        all_failures.is_empty(),
        "{} acknowledged writes were lost or wrong after SIGKILL:\n{}",
        all_failures.len(),
        all_failures
            .iter()
            .take(50)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
