//! Throughput and latency of the SCIM server over loopback HTTP, with the daemon started in this
//! process by `scim_sync::app::start` on a redb file (durable commits, group commit):
//!
//! - (a) user creates/s with 16 clients, and how many commits the writer needed for them;
//! - (b) `userName eq` lookup latency p50/p99 with 100,000 users stored;
//! - (c) member adds/s (PATCH adding one member) into one group at ~1,000 and ~50,000 members;
//! - (d) resident memory of this process (server and clients) with 100,000 users stored.
//!
//! The measured requests come from the lean generator (benches/support/wire.rs: one HTTP/1.1
//! connection per client, answers read as bytes); the set-up requests (the group's create, PUTs
//! and GETs) go through the tests' reqwest client.
//!
//! Run with `cargo bench --bench scim_server`; `SCIM_SYNC_BENCH_QUICK=1` makes every size 10×
//! smaller for a smoke run. The store lives in a temporary directory on the same filesystem as
//! `std::env::temp_dir()`; set TMPDIR to measure another disk.

// Tests and benches may take a default where a read fails: their assertions say what matters.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench fails loudly

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scim_sync::store::WriteStats;

#[path = "support/host.rs"]
mod host;
#[path = "../tests/it/common/scim.rs"]
mod scim;
#[path = "support/wire.rs"]
mod wire;
use wire::{drive, Req, Target};

const CLIENTS: usize = 16;
const TOKEN: &str = "bench-scim-token-0123456789";

struct Sizes {
    creates: usize,
    users: usize,
    lookups: usize,
    small_group: usize,
    large_group: usize,
    member_adds: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        let d = if quick { 10 } else { 1 };
        Sizes {
            creates: 20_000 / d,
            users: 100_000 / d,
            lookups: 50_000 / d,
            small_group: 1_000 / d,
            large_group: 50_000 / d,
            member_adds: 2_000 / d,
        }
    }
}

use scim::Client as Api;

fn user_name(i: usize) -> String {
    format!("bench.user{i:07}@example.com")
}

/// An Okta-shaped create body, so that stored documents have a realistic size.
fn user_body(i: usize) -> Value {
    let name = user_name(i);
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": "Bench", "familyName": format!("User {i}")},
        "emails": [{"primary": true, "value": name, "type": "work"}],
        "displayName": format!("Bench User {i}"),
        "active": true,
    })
}

fn member_patch(ids: &[String]) -> Value {
    scim::patch_body(json!([{
        "op": "add",
        "path": "members",
        "value": ids.iter().map(|id| json!({"value": id})).collect::<Vec<_>>(),
    }]))
}

/// Creates users `from..to`; returns their ids in order and the wall time.
async fn create_users(target: &Target, from: usize, to: usize) -> (Duration, Vec<String>) {
    let (wall, out) = drive(
        target,
        CLIENTS,
        to - from,
        move |i| Req::with_json(reqwest::Method::POST, "/Users".into(), &user_body(from + i)),
        |_, status, body| wire::created_id(status, body),
    )
    .await;
    (wall, out.into_iter().map(|(_, id)| id).collect())
}

/// Adds `ids` to the group `gid`, one member per PATCH, `CLIENTS` requests at a time.
async fn add_members(target: &Target, gid: &str, ids: &[String]) -> Duration {
    let ids: Arc<Vec<String>> = Arc::new(ids.to_vec());
    let path = format!("/Groups/{gid}");
    let (wall, _) = drive(
        target,
        CLIENTS,
        ids.len(),
        move |i| {
            Req::with_json(
                reqwest::Method::PATCH,
                path.clone(),
                &member_patch(&ids[i..=i]),
            )
        },
        |_, status, body| assert_eq!(status, 204, "{}", String::from_utf8_lossy(body)),
    )
    .await;
    wall
}

/// Sets the group's members to `ids` in one PUT, which diffs against the stored list once;
/// filling by PATCH would time the fill rather than the adds being measured.
async fn set_members(api: &Api, gid: &str, ids: &[String]) -> Duration {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "bench-group",
        "members": ids.iter().map(|id| json!({"value": id})).collect::<Vec<_>>(),
    });
    let t = Instant::now();
    let (status, resp) = api
        .send(reqwest::Method::PUT, &format!("/Groups/{gid}"), Some(&body))
        .await;
    assert_eq!(status, 200, "{resp}");
    t.elapsed()
}

/// `n` lookups of existing userNames; returns the wall time and each request's latency.
async fn lookups(
    target: &Target,
    users: usize,
    n: usize,
    clients: usize,
) -> (Duration, Vec<Duration>) {
    let (wall, lat) = drive(
        target,
        clients,
        n,
        move |i| {
            // A stride coprime to the user count visits names all over the index rather than a
            // hot range.
            let name = user_name((i * 7919) % users);
            let q = scim::enc(&format!("userName eq \"{name}\""));
            Req::get(format!("/Users?filter={q}"))
        },
        |_, status, body| assert_eq!(wire::total_results(status, body), 1),
    )
    .await;
    (wall, lat.into_iter().map(|(d, _)| d).collect())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn proc_status(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim_start_matches(':').trim().to_string())
        .unwrap_or_else(|| "n/a".into())
}

/// User plus system CPU seconds of this process so far, and the host's CPU counters (for the
/// share the hypervisor took). /proc counts in USER_HZ, which is 100 on every Linux the kernel's
/// ABI allows.
fn cpu_secs() -> (f64, Option<host::CpuTicks>) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name, which may itself hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    ((ticks(11) + ticks(12)) / 100.0, host::cpu_ticks())
}

/// How busy the process kept the CPUs during a phase: a figure near the core count means the
/// phase was CPU-bound, a low one that it waited (on fsync, mostly). The steal figure is the
/// share of the machine's CPU time the hypervisor gave to others while the phase ran: a run with
/// a high one measured a slower machine.
fn cores_busy(before: (f64, Option<host::CpuTicks>), wall: Duration) -> String {
    let (cpu, ticks) = cpu_secs();
    let used = cpu - before.0;
    let steal = match (before.1, ticks) {
        (Some(a), Some(b)) => format!("; host steal {:.1}%", b.steal_pct_since(a)),
        _ => String::new(),
    };
    format!(
        "cpu {used:.2} s = {:.2} cores busy{steal}",
        used / wall.as_secs_f64()
    )
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn file_mb(path: &Path) -> f64 {
    file_bytes(path) as f64 / 1e6
}

async fn member_count(api: &Api, gid: &str) -> usize {
    let (status, body) = api
        .send(reqwest::Method::GET, &format!("/Groups/{gid}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["members"].as_array().map(Vec::len).unwrap_or(0)
}

/// A daemon in this process with its store at `store_path`, and a SCIM client for it.
struct Server {
    running: scim_sync::app::Running,
    api: Api,
    target: Target,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn start_server(store_path: &Path, write_ahead_log: bool) -> Server {
    let toml = format!(
        "[scim]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = {}\nrate_limit_per_second = 0\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\nwrite_ahead_log = {write_ahead_log}\n\
         [portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\n",
        // The rate limit is off: the bench measures the server flat out, far above any IdP's pace.
        // The 50,000-member PUT that fills the large group is about 2.5 MB.
        16 * 1024 * 1024,
        store_path.display()
    );
    let env: HashMap<String, String> = [
        (scim_sync::config::ENV_SCIM_TOKEN, TOKEN),
        (
            scim_sync::config::ENV_ADMIN_TOKEN,
            "bench-admin-token-0123456789",
        ),
        (scim_sync::config::ENV_PORTKEY_API_KEY, "bench-portkey-key"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config =
        scim_sync::config::Config::from_toml(&toml, Path::new("bench.toml"), &env).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = scim_sync::app::start(&config, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let api = Api::new(
        &format!("http://{}{}", running.scim_addr, config.scim.base_path),
        TOKEN,
        &reqwest::Client::builder()
            .pool_max_idle_per_host(CLIENTS)
            .build()
            .unwrap(),
    );
    let target = Target::new(
        &format!("http://{}{}", running.scim_addr, config.scim.base_path),
        TOKEN,
    );
    Server {
        running,
        api,
        target,
        stop,
    }
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.running.done.await.unwrap();
    }
}

/// Where the store writer's time went during the durable creates, next to the disk on its own:
/// the pages each commit wrote (the kernel's count of bytes this process wrote towards storage,
/// per commit), and `fdatasync` after one page and after that many scattered pages, timed on a
/// file in the store's directory. A writer busy nearly all the time, mostly in commits, means
/// creates/s is the commit rate times the writes per commit.
async fn writer_and_disk(
    dir: &Path,
    bytes: Option<u64>,
    before: WriteStats,
    after: WriteStats,
    wall: Duration,
    store_bytes: u64,
) {
    let commits = (after.commits - before.commits).max(1);
    let applying = after.applying - before.applying;
    let committing = after.committing - before.committing;
    println!(
        "(a) the store writer: {:.2} ms applying + {:.2} ms committing per commit; busy {:.0}% of \
         the time ({:.0}% in commits)",
        ms(applying) / commits as f64,
        ms(committing) / commits as f64,
        100.0 * (applying + committing).as_secs_f64() / wall.as_secs_f64(),
        100.0 * committing.as_secs_f64() / wall.as_secs_f64(),
    );
    let Some(bytes) = bytes else {
        println!("(a) the disk alone: not measured (no /proc/self/io)");
        return;
    };
    let pages_per_commit = bytes as f64 / 4096.0 / commits as f64;
    let pages = pages_per_commit.round().max(1.0) as usize;
    let dir = dir.to_path_buf();
    let (one, many) = tokio::task::spawn_blocking(move || {
        (
            host::disk_commit(&dir, 1, store_bytes, 1000),
            host::disk_commit(&dir, pages, store_bytes, 1000),
        )
    })
    .await
    .unwrap();
    println!(
        "(a) the disk alone: the creates wrote {pages_per_commit:.1} pages of 4 KiB per commit; \
         fdatasync after 1 page {:.2} ms, after {pages} scattered pages {:.2} ms (medians of \
         1000, in the store's directory)",
        ms(one),
        ms(many),
    );
}

/// The same creates against a store on tmpfs, where fsync costs next to nothing: how far the
/// durable figure is from what the rest of the request path allows. `None` without /dev/shm.
async fn creates_without_fsync_cost(n: usize) -> Option<(f64, f64)> {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return None;
    }
    Some(creates_in(shm, true, n).await)
}

/// `n` creates into a new store in a new directory under `dir`: creates/s and writes per commit.
async fn creates_in(dir: &Path, write_ahead_log: bool, n: usize) -> (f64, f64) {
    let dir = tempfile::tempdir_in(dir).unwrap();
    let server = start_server(&dir.path().join("bench.redb"), write_ahead_log).await;
    let before = server.running.store.write_stats();
    let (wall, _) = create_users(&server.target, 0, n).await;
    let after = server.running.store.write_stats();
    server.stop().await;
    let per_commit =
        (after.writes - before.writes) as f64 / (after.commits - before.commits).max(1) as f64;
    (n as f64 / wall.as_secs_f64(), per_commit)
}

#[tokio::main]
async fn main() {
    let quick = std::env::var("SCIM_SYNC_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let sizes = Sizes::new(quick);
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("bench.redb");
    let server = start_server(&store_path, true).await;
    let store = server.running.store.clone();
    let api = server.api.clone();
    let target = server.target.clone();
    println!(
        "scim_server bench{}: {CLIENTS} clients over loopback HTTP, store {}; load average {}",
        if quick { " (QUICK: sizes / 10)" } else { "" },
        store_path.display(),
        host::load_avg()
    );

    // (a) durable creates
    let before = store.write_stats();
    let cpu = cpu_secs();
    let written = host::storage_written();
    let (wall, mut ids) = create_users(&target, 0, sizes.creates).await;
    let busy = cores_busy(cpu, wall);
    let after = store.write_stats();
    let written = written.zip(host::storage_written()).map(|(a, b)| b - a);
    let (commits, writes) = (after.commits - before.commits, after.writes - before.writes);
    println!(
        "(a) user creates: {} in {:.2} s = {:.0} creates/s; {commits} commits for {writes} writes \
         ({:.1} writes per commit, {:.2} ms per commit; {} made durable by the write-ahead log, \
         {} checkpoints); {busy}",
        sizes.creates,
        wall.as_secs_f64(),
        sizes.creates as f64 / wall.as_secs_f64(),
        writes as f64 / commits.max(1) as f64,
        ms(wall) / commits.max(1) as f64,
        after.logged_commits - before.logged_commits,
        after.checkpoints - before.checkpoints,
    );

    let durable_rate = sizes.creates as f64 / wall.as_secs_f64();
    writer_and_disk(
        dir.path(),
        written,
        before,
        after,
        wall,
        file_bytes(&store_path),
    )
    .await;
    match creates_without_fsync_cost(sizes.creates).await {
        Some((rate, per_commit)) => println!(
            "(a) same creates with the store on tmpfs (/dev/shm, fsync nearly free): {rate:.0} \
             creates/s, {per_commit:.1} writes per commit; durable / tmpfs = {:.2}",
            durable_rate / rate
        ),
        None => println!("(a) no /dev/shm: the tmpfs comparison was not run"),
    }
    // The same disk with `[store] write_ahead_log = false`: every commit waits for redb's flush
    // of the store file's pages.
    let (rate, per_commit) = creates_in(dir.path(), false, sizes.creates).await;
    println!(
        "(a) same creates on the same disk with write_ahead_log = false (redb flushes the store \
         file's pages per commit): {rate:.0} creates/s, {per_commit:.1} writes per commit; with \
         the log / without = {:.2}",
        durable_rate / rate
    );

    // Fill to the lookup size; the fill rate is one more creates/s figure, at a larger store.
    let cpu = cpu_secs();
    let before = store.write_stats();
    let (wall, more) = create_users(&target, sizes.creates, sizes.users).await;
    let busy = cores_busy(cpu, wall);
    ids.extend(more);
    let stats = store.write_stats();
    let commits = stats.commits - before.commits;
    println!(
        "    fill to {} users: {} more in {:.2} s = {:.0} creates/s, {:.1} writes per commit, \
         {:.2} ms per commit; {busy}; totals {} commits for {} writes; store file {:.0} MB",
        sizes.users,
        sizes.users - sizes.creates,
        wall.as_secs_f64(),
        (sizes.users - sizes.creates) as f64 / wall.as_secs_f64(),
        (stats.writes - before.writes) as f64 / commits.max(1) as f64,
        ms(wall) / commits.max(1) as f64,
        stats.commits,
        stats.writes,
        file_mb(&store_path)
    );

    // (d) memory with every user stored, before the lookups touch the pages again.
    println!(
        "(d) RSS at {} users: VmRSS {} (peak VmHWM {}); server and load clients share this process",
        sizes.users,
        proc_status("VmRSS"),
        proc_status("VmHWM")
    );

    // (b) lookups by userName: under the 16-client load, then one client alone, whose latency is
    // the service time without queueing for the CPUs.
    for clients in [CLIENTS, 1] {
        let n = if clients == 1 {
            sizes.lookups / 5
        } else {
            sizes.lookups
        };
        let cpu = cpu_secs();
        let checkpoints = store.write_stats().checkpoints;
        let (wall, mut d) = lookups(&target, sizes.users, n, clients).await;
        let busy = cores_busy(cpu, wall);
        // A checkpoint of the write-ahead log (the writer idle after the fill) may fall into
        // the lookups: its flush of the store file shares the machine with them.
        let checkpoints = store.write_stats().checkpoints - checkpoints;
        // The p99 of each successive tenth of the lookups: whether the tail is the first
        // lookups' (a cache still cold after the fill?) or spread over the whole run.
        let tenths: Vec<String> = d
            .chunks(n.div_ceil(10).max(1))
            .map(|c| {
                let mut c = c.to_vec();
                c.sort();
                format!("{:.2}", ms(percentile(&c, 0.99)))
            })
            .collect();
        d.sort();
        println!(
            "(b) userName eq lookups at {} users, {clients} client(s): {n} in {:.2} s = {:.0}/s; \
             p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {busy}; {checkpoints} checkpoint(s) \
             during them; p99 of each tenth in order (ms): {}",
            sizes.users,
            wall.as_secs_f64(),
            n as f64 / wall.as_secs_f64(),
            ms(percentile(&d, 0.50)),
            ms(percentile(&d, 0.99)),
            ms(*d.last().unwrap()),
            tenths.join(" / ")
        );
    }

    // (c) member adds, one member per PATCH, at two group sizes.
    let (status, body) = api
        .send(
            reqwest::Method::POST,
            "/Groups",
            Some(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "bench-group",
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let gid = body["id"].as_str().unwrap().to_string();
    // Members so far are a prefix of `ids`: the fill takes the group to `at`, then the
    // measured adds use the next users.
    let mut members = 0usize;
    for at in [sizes.small_group, sizes.large_group] {
        let fill_wall = set_members(&api, &gid, &ids[..at]).await;
        let rss_after_fill = proc_status("VmRSS");
        let have = member_count(&api, &gid).await;
        assert_eq!(have, at);
        let single = &ids[at..at + sizes.member_adds];
        let before = store.write_stats();
        let cpu = cpu_secs();
        let wall = add_members(&target, &gid, single).await;
        let busy = cores_busy(cpu, wall);
        let after = store.write_stats();
        members = member_count(&api, &gid).await;
        assert_eq!(members, have + single.len());
        println!(
            "(c) member adds at {have} members: {} single-member PATCHes in {:.2} s = {:.0} adds/s \
             ({} commits, {:.1} writes per commit); {busy}; PUT to {at} members took {:.2} s, VmRSS after it \
             {rss_after_fill}",
            single.len(),
            wall.as_secs_f64(),
            single.len() as f64 / wall.as_secs_f64(),
            after.commits - before.commits,
            (after.writes - before.writes) as f64 / (after.commits - before.commits).max(1) as f64,
            fill_wall.as_secs_f64()
        );
    }
    println!(
        "    after all phases ({members}-member group): VmRSS {} (peak VmHWM {}); store file \
         {:.0} MB",
        proc_status("VmRSS"),
        proc_status("VmHWM"),
        file_mb(&store_path)
    );

    println!("    load average at the end: {}", host::load_avg());
    server.stop().await;
}
