//! scim-sync's SCIM server side by side with an in-memory peer, SCIMMY
//! (benches/peers/scimmy/server.mjs), in one run: the same load generator (16 clients in this
//! process, each on its own HTTP/1.1 connection: benches/support/wire.rs), the same bodies, each
//! server its own process on loopback.
//!
//! For each server: (a) user creates/s, (b) `userName eq` lookups with every user stored (/s,
//! p50, p99), (c) member adds/s (one member per PATCH) into a group that already has members,
//! and the server's resident memory at the end. scim-sync keeps its store durable (each answered
//! batch flushed in its write-ahead log, or with `--no-wal` in the redb file); the peer keeps
//! everything in memory.
//!
//! Run: `(cd benches/peers/scimmy && npm ci) && cargo bench --bench scim_peers`
//! (`-- --users N --lookups N --group N --adds N` for other sizes; `--peer-scan` has the peer
//! match filters by scanning every user, SCIMMY's documented way, instead of an index;
//! `--no-wal` runs scim-sync with `[store] write_ahead_log = false`).

// Tests and benches may take a default where a read fails: their assertions say what matters.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench fails loudly

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "support/scim_bench.rs"]
mod kit;
use kit::{arg, child, host, scim, wire, CLIENTS};

struct Sizes {
    users: usize,
    lookups: usize,
    group: usize,
    adds: usize,
}

/// What one server did.
#[derive(Default)]
struct Figures {
    creates_per_s: f64,
    lookups_per_s: f64,
    lookup_p50_ms: f64,
    lookup_p99_ms: f64,
    adds_per_s: f64,
    members_after: usize,
    rss_mib: f64,
}

/// The SCIMMY peer, killed on drop.
struct Peer {
    child: std::process::Child,
    port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PEER_TOKEN: &str = "bench-peer-token";

fn start_peer(scan: bool) -> Peer {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/scimmy");
    assert!(
        dir.join("node_modules/scimmy").is_dir(),
        "the SCIMMY peer is not installed: run `npm ci` in {}",
        dir.display()
    );
    let port = child::free_port();
    let child = Command::new("node")
        .arg("server.mjs")
        .args(["--port", &port.to_string(), "--token", PEER_TOKEN])
        .args(if scan { &["--scan"][..] } else { &[] })
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node (Node.js) is needed for the SCIMMY peer");
    Peer { child, port }
}

fn user_name(i: usize) -> String {
    format!("peer.bench{i:07}@example.com")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(api: &scim::Client, pid: u32, sizes: &Sizes) -> Figures {
    let mut f = Figures::default();

    let (wall, ids) = kit::create_users(api, sizes.users, user_name).await;
    f.creates_per_s = sizes.users as f64 / wall.as_secs_f64();

    let users = sizes.users;
    let (wall, lat) = wire::drive(
        &kit::target(api),
        CLIENTS,
        sizes.lookups,
        move |i| {
            // A stride coprime to the user count visits names all over the index.
            let name = user_name((i * 7919) % users);
            wire::Req::get(format!(
                "/Users?filter={}",
                scim::enc(&format!("userName eq \"{name}\""))
            ))
        },
        |_, status, body| assert_eq!(wire::total_results(status, body), 1),
    )
    .await;
    let mut d: Vec<Duration> = lat.into_iter().map(|(d, ())| d).collect();
    d.sort();
    f.lookups_per_s = sizes.lookups as f64 / wall.as_secs_f64();
    f.lookup_p50_ms = ms(percentile(&d, 0.50));
    f.lookup_p99_ms = ms(percentile(&d, 0.99));

    let (status, group) = api
        .send(
            reqwest::Method::POST,
            "/Groups",
            Some(&scim::group("peer-bench-group", &ids[..sizes.group])),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let path = format!("/Groups/{}", group["id"].as_str().unwrap());
    let adding: Vec<String> = ids[sizes.group..sizes.group + sizes.adds].to_vec();
    let p = path.clone();
    let (wall, _) = wire::drive(
        &kit::target(api),
        CLIENTS,
        sizes.adds,
        move |i| {
            wire::Req::with_json(
                reqwest::Method::PATCH,
                p.clone(),
                &scim::patch_body(
                    json!([{"op": "add", "path": "members", "value": [{"value": adding[i]}]}]),
                ),
            )
        },
        |_, status, body| {
            assert!(
                status == 200 || status == 204,
                "{status} {}",
                String::from_utf8_lossy(body)
            )
        },
    )
    .await;
    f.adds_per_s = sizes.adds as f64 / wall.as_secs_f64();
    let (_, back): (u16, Value) = api.get(&path).await;
    f.members_after = scim::member_ids(&back).len();
    f.rss_mib = child::status_mib(pid, "VmRSS:");
    f
}

#[tokio::main]
async fn main() {
    let sizes = Sizes {
        users: arg("--users", 20_000),
        lookups: arg("--lookups", 5_000),
        group: arg("--group", 1_000),
        adds: arg("--adds", 500),
    };
    assert!(
        sizes.group + sizes.adds <= sizes.users,
        "--group + --adds > --users"
    );
    let http = kit::http();
    println!(
        "scim_peers bench: {} users, {} lookups, {} member adds into a {}-member group, {CLIENTS} \
         clients; load average {}",
        sizes.users,
        sizes.lookups,
        sizes.adds,
        sizes.group,
        host::load_avg()
    );

    // `--no-wal`: the daemon with `[store] write_ahead_log = false`, for comparing the two.
    let wal = !std::env::args().any(|a| a == "--no-wal");
    let daemon =
        child::Daemon::start_with_store_keys(if wal { "" } else { "write_ahead_log = false\n" });
    let ours = scim::Client::new(&daemon.scim_url(), child::SCIM_TOKEN, &http);
    child::wait_listening(daemon.scim_port).await;
    println!(
        "scim-sync at {} (write-ahead log {})",
        ours.base,
        if wal { "on" } else { "off" }
    );
    let a = measure(&ours, daemon.child.id(), &sizes).await;
    drop(daemon);

    let scan = std::env::args().any(|a| a == "--peer-scan");
    let peer = start_peer(scan);
    let theirs = scim::Client::new(
        &format!("http://127.0.0.1:{}/scim/v2", peer.port),
        PEER_TOKEN,
        &http,
    );
    child::wait_listening(peer.port).await;
    println!("SCIMMY at {}", theirs.base);
    let b = measure(&theirs, peer.child.id(), &sizes).await;
    drop(peer);

    let expected = sizes.group + sizes.adds;
    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "measure",
        "scim-sync",
        if scan {
            "SCIMMY (scan)"
        } else {
            "SCIMMY (index)"
        },
        "ratio"
    );
    let row = |name: &str, x: f64, y: f64, unit: &str, higher_is_better: bool| {
        let ratio = if higher_is_better { x / y } else { y / x };
        println!("{name:<44} {x:>11.2}{unit:<3} {y:>11.2}{unit:<3} {ratio:>7.1}x");
    };
    row(
        "(a) user creates/s",
        a.creates_per_s,
        b.creates_per_s,
        "",
        true,
    );
    row(
        "(b) userName eq lookups/s",
        a.lookups_per_s,
        b.lookups_per_s,
        "",
        true,
    );
    row(
        "(b) lookup p50",
        a.lookup_p50_ms,
        b.lookup_p50_ms,
        " ms",
        false,
    );
    row(
        "(b) lookup p99",
        a.lookup_p99_ms,
        b.lookup_p99_ms,
        " ms",
        false,
    );
    row("(c) member adds/s", a.adds_per_s, b.adds_per_s, "", true);
    row(
        "resident memory at the end",
        a.rss_mib,
        b.rss_mib,
        " MiB",
        false,
    );
    println!(
        "members after the adds (expected {expected}): scim-sync {}, SCIMMY {}",
        a.members_after, b.members_after
    );
    println!("load average at the end: {}", host::load_avg());
}
