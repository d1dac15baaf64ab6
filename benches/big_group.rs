//! One very large group, as a big IdP pushes it: the daemon runs as its own process (the release
//! binary, as deployed), so that its memory is its own and not the load generator's.
//!
//! 50,000 users are created (16 clients), then one group gets all of them: by one PUT, read back
//! without and with its members, emptied by PATCH, and filled again by one PATCH `add` of all
//! 50,000. Each step prints its wall time and the daemon's resident memory after it and at its
//! peak during the step (VmHWM, reset before each step through /proc/PID/clear_refs).
//!
//! Run: `cargo bench --bench big_group` (`-- --members N` for another size, `-- --no-wal` for
//! the daemon with `[store] write_ahead_log = false`).

// Tests and benches may take a default where a read fails: their assertions say what matters.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench fails loudly

use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[path = "support/scim_bench.rs"]
mod kit;
use kit::child::{self, status_mib};
use kit::{host, scim};

const TOKEN: &str = child::SCIM_TOKEN;

/// Resets the peak resident size, so that the next VmHWM is the peak of the next step.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

struct Step<'a> {
    pid: u32,
    name: &'a str,
}

impl Step<'_> {
    fn report(&self, wall: Duration, extra: &str) {
        println!(
            "{:<48} {:>8.3} s   RSS after {:>6.1} MiB   peak during {:>6.1} MiB{extra}",
            self.name,
            wall.as_secs_f64(),
            status_mib(self.pid, "VmRSS:"),
            status_mib(self.pid, "VmHWM:"),
        );
    }
}

async fn timed<F: std::future::Future<Output = (u16, Value)>>(
    pid: u32,
    name: &str,
    expect: u16,
    f: F,
) -> Value {
    reset_peak(pid);
    let t = Instant::now();
    let (status, body) = f.await;
    let wall = t.elapsed();
    assert_eq!(status, expect, "{name}: {body:.300}");
    let members = body["members"].as_array().map(Vec::len);
    Step { pid, name }.report(
        wall,
        &members.map_or(String::new(), |n| format!("   {n} members in the answer")),
    );
    body
}

#[tokio::main]
async fn main() {
    let members = kit::arg("--members", 50_000);
    // `--no-wal`: the daemon with `[store] write_ahead_log = false`, for comparing the two.
    let wal = !std::env::args().any(|a| a == "--no-wal");
    let daemon =
        child::Daemon::start_with_store_keys(if wal { "" } else { "write_ahead_log = false\n" });
    let pid = daemon.child.id();
    let http = kit::http();
    let api = scim::Client::new(&daemon.scim_url(), TOKEN, &http);
    child::wait_listening(daemon.scim_port).await;
    println!(
        "big_group bench: {members} members, daemon pid {pid} (release binary, write-ahead log \
         {}), load average {}",
        if wal { "on" } else { "off" },
        host::load_avg()
    );
    println!(
        "{:<48} {:>8}     daemon memory (VmRSS / VmHWM)",
        "step", "wall"
    );
    println!(
        "{:<48} {:>10}   RSS after {:>6.1} MiB",
        "started, empty store",
        "",
        status_mib(pid, "VmRSS:")
    );

    reset_peak(pid);
    let (wall, ids) =
        kit::create_users(&api, members, |i| format!("big.member{i:07}@example.com")).await;
    Step {
        pid,
        name: &format!("create {members} users (16 clients)"),
    }
    .report(wall, "");

    let (_, group) = api
        .send(
            reqwest::Method::POST,
            "/Groups",
            Some(&scim::group::<&str>("ws-Big-role-member", &[])),
        )
        .await;
    let gid = group["id"].as_str().unwrap().to_string();
    let path = format!("/Groups/{gid}");
    let all: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();

    let put = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "ws-Big-role-member",
        "members": all,
    });
    timed(
        pid,
        &format!("PUT with {members} members"),
        200,
        api.send(reqwest::Method::PUT, &path, Some(&put)),
    )
    .await;
    timed(
        pid,
        "GET ?excludedAttributes=members",
        200,
        api.get(&format!("{path}?excludedAttributes=members")),
    )
    .await;
    timed(pid, "GET (every member)", 200, api.get(&path)).await;
    timed(
        pid,
        "PATCH remove every member",
        204,
        api.send(
            reqwest::Method::PATCH,
            &path,
            Some(&scim::patch_body(
                json!([{"op": "remove", "path": "members"}]),
            )),
        ),
    )
    .await;
    // A PATCH carries at most 10,000 list values (the PATCH engine's per-request bound), so the
    // same members go back in batches of that size, as an IdP pushing a large group does.
    reset_peak(pid);
    let t = Instant::now();
    for chunk in all.chunks(10_000) {
        let (status, body) = api
            .send(
                reqwest::Method::PATCH,
                &path,
                Some(&scim::patch_body(
                    json!([{"op": "add", "path": "members", "value": chunk}]),
                )),
            )
            .await;
        assert_eq!(status, 204, "{body:.300}");
    }
    Step {
        pid,
        name: &format!("PATCH add {members} members (10,000 a PATCH)"),
    }
    .report(t.elapsed(), "");
    // Entra's membership check (idp-scim-behaviors.md): whether one user is in the group,
    // asked of the whole group list. Half the checks ask about a member, half about an id that
    // is not one.
    let checks = 200;
    reset_peak(pid);
    let t = Instant::now();
    for i in 0..checks {
        let (uid, want) = if i % 2 == 0 {
            (ids[i * 97 % ids.len()].clone(), 1)
        } else {
            (format!("not-a-member-{i}"), 0)
        };
        let filter = scim::enc(&format!("id eq \"{gid}\" and members[value eq \"{uid}\"]"));
        let (status, body) = api
            .get(&format!(
                "/Groups?excludedAttributes=members&filter={filter}"
            ))
            .await;
        assert_eq!(status, 200, "{body:.300}");
        assert_eq!(body["totalResults"], want, "{uid}: {body:.300}");
    }
    let wall = t.elapsed();
    Step {
        pid,
        name: &format!("{checks} membership checks (id eq … and members[value eq …])"),
    }
    .report(
        wall,
        &format!(
            "   {:.2} ms a check",
            wall.as_secs_f64() * 1000.0 / checks as f64
        ),
    );
    let (_, back) = api.get(&format!("{path}?excludedAttributes=members")).await;
    assert!(back["members"].is_null(), "{back:.300}");
    let (_, full) = api.get(&path).await;
    assert_eq!(scim::member_ids(&full).len(), members);
    println!(
        "end: daemon VmRSS {:.1} MiB; load average {}",
        status_mib(pid, "VmRSS:"),
        host::load_avg()
    );
    drop(daemon);
}
