//! Fault injection, the request log, auto-accept and scale, over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use portkey_sim::{FailPage, Faults, Seed, SeedMember, SeedUser, SeedWorkspace, SimOptions};
use reqwest::Method;
use serde_json::{json, Value};

async fn statuses(sim: &Sim, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(sim.get("/admin/users").await.0);
    }
    out
}

#[tokio::test]
async fn same_seed_same_fault_sequence() {
    let faults = Faults {
        seed: 42,
        rate_5xx: 0.25,
        rate_429: 0.25,
        retry_after_secs: Some(3),
        ..Default::default()
    };
    let sim = start(SimOptions {
        faults: faults.clone(),
        ..Default::default()
    })
    .await;
    let first = statuses(&sim, 60).await;
    assert!(
        first.contains(&500) && first.contains(&429) && first.contains(&200),
        "{first:?}"
    );

    // Re-installing the same faults restarts the sequence.
    let (s, _) = sim
        .ctl(
            Method::PUT,
            "/faults",
            Some(serde_json::to_value(&faults).unwrap()),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(statuses(&sim, 60).await, first);

    // A second simulator with the same seed meets the same faults.
    let other = start(SimOptions {
        faults: faults.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(statuses(&other, 60).await, first);
    other.shutdown().await;

    // Another seed, another sequence.
    let (_, v) = sim
        .ctl(
            Method::PUT,
            "/faults",
            Some(json!({"seed": 7, "rate_5xx": 0.25, "rate_429": 0.25})),
        )
        .await;
    assert_eq!(v["seed"], 7);
    assert_ne!(statuses(&sim, 60).await, first);

    // 429 carries AB06 and Retry-After when configured.
    sim.ctl(
        Method::PUT,
        "/faults",
        Some(json!({"rate_429": 1.0, "retry_after_secs": 3})),
    )
    .await;
    let resp = sim
        .http
        .get(format!("{}/admin/users", sim.server.base_url()))
        .header("x-portkey-api-key", "sim-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"]["errorCode"], "AB06");
    // 5xx carries AB04; control routes are never faulted.
    sim.ctl(Method::PUT, "/faults", Some(json!({"rate_5xx": 1.0})))
        .await;
    assert_err(&sim.get("/admin/users").await, 500, "AB04");
    let (s, f) = sim.ctl(Method::GET, "/faults", None).await;
    assert_eq!(s, 200);
    assert_eq!(f["rate_5xx"], 1.0);
    // Faulted writes are not applied.
    let (s, _) = sim.post("/admin/workspaces", json!({"name": "X"})).await;
    assert_eq!(s, 500);
    sim.ctl(Method::PUT, "/faults", None).await;
    let (_, v) = sim.get("/admin/workspaces").await;
    assert_eq!(v["total"], 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn fail_page_answers_500_on_that_page_only() {
    let users: Vec<SeedUser> = (0..5)
        .map(|i| SeedUser {
            email: format!("u{i}@example.com"),
            role: "member".into(),
            ..Default::default()
        })
        .collect();
    let sim = start(SimOptions {
        seed: Some(Seed {
            users,
            ..Default::default()
        }),
        faults: Faults {
            fail_page: Some(FailPage {
                path: "/v1/admin/users".into(),
                page: 1,
            }),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (s, _) = sim.get("/admin/users?pageSize=2&currentPage=0").await;
    assert_eq!(s, 200);
    assert_err(
        &sim.get("/admin/users?pageSize=2&currentPage=1").await,
        500,
        "AB04",
    );
    assert_err(
        &sim.get("/admin/users?page_size=2&current_page=1").await,
        500,
        "AB04",
    );
    let (s, _) = sim.get("/admin/users?pageSize=2&currentPage=2").await;
    assert_eq!(s, 200);
    // Other paths are unaffected.
    let (s, _) = sim.get("/admin/users/invites?currentPage=1").await;
    assert_eq!(s, 200);
    // Page 0 by default when no page is given.
    sim.ctl(
        Method::PUT,
        "/faults",
        Some(json!({"fail_page": {"path": "/v1/admin/workspaces", "page": 0}})),
    )
    .await;
    assert_err(&sim.get("/admin/workspaces").await, 500, "AB04");
    sim.shutdown().await;
}

#[tokio::test]
async fn apply_then_500_applies_the_write() {
    let sim = start(SimOptions {
        faults: Faults {
            apply_then_500: vec![
                "POST /v1/admin/users/invites".into(),
                "POST /v1/admin/workspaces/{ws}/users".into(),
                "PUT /admin/users/*".into(),
            ],
            ..Default::default()
        },
        seed: Some(Seed {
            users: vec![SeedUser {
                email: "m@example.com".into(),
                role: "member".into(),
                ..Default::default()
            }],
            workspaces: vec![SeedWorkspace {
                name: "W".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    assert_err(
        &sim.post(
            "/admin/users/invites",
            json!({"email": "i@example.com", "role": "member", "workspaces": []}),
        )
        .await,
        500,
        "AB04",
    );
    let (_, v) = sim.get("/admin/users/invites?email=i%40example.com").await;
    assert_eq!(v["total"], 1);
    // The retry then meets the real answer to a repeat: 409.
    let r = sim
        .post(
            "/admin/users/invites",
            json!({"email": "i@example.com", "role": "member", "workspaces": []}),
        )
        .await;
    assert_err(&r, 409, "AB07");

    let m = sim.user_id("m@example.com").await;
    assert_err(
        &sim.post(
            "/admin/workspaces/ws-w/users",
            json!({"users": [{"id": m, "role": "member"}]}),
        )
        .await,
        500,
        "AB04",
    );
    let (_, v) = sim.get("/admin/workspaces/ws-w/users").await;
    assert_eq!(v["total"], 1);
    // An identical retry gets the real answer (adding a member again is a no-op 200).
    let (s, _) = sim
        .post(
            "/admin/workspaces/ws-w/users",
            json!({"users": [{"id": m, "role": "member"}]}),
        )
        .await;
    assert_eq!(s, 200);
    // A different write to the same route is hit again.
    sim.add_member("n@example.com").await;
    let n = sim.user_id("n@example.com").await;
    assert_err(
        &sim.post(
            "/admin/workspaces/ws-w/users",
            json!({"users": [{"id": n, "role": "member"}]}),
        )
        .await,
        500,
        "AB04",
    );
    assert_err(
        &sim.put(&format!("/admin/users/{m}"), json!({"role": "admin"}))
            .await,
        500,
        "AB04",
    );
    let (_, v) = sim.get(&format!("/admin/users/{m}")).await;
    assert_eq!(v["role"], "admin");
    // Same-role retry: the API's own 400.
    assert_err(
        &sim.put(&format!("/admin/users/{m}"), json!({"role": "admin"}))
            .await,
        400,
        "AB01",
    );

    let (_, log) = sim.ctl(Method::GET, "/requests", None).await;
    let first = &log[0];
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/v1/admin/users/invites");
    assert_eq!(first["status"], 500);
    assert_eq!(first["fault"], "apply_then_500");
    assert_eq!(first["body"]["email"], "i@example.com");
    sim.shutdown().await;
}

#[tokio::test]
async fn request_log_records_and_clears() {
    let sim = start_default().await;
    sim.get("/admin/users?pageSize=10&currentPage=0").await;
    sim.post("/admin/workspaces", json!({"name": "A"})).await;
    let bad = sim
        .http
        .get(format!("{}/admin/users", sim.server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    let (s, log) = sim.ctl(Method::GET, "/requests", None).await;
    assert_eq!(s, 200);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0]["seq"], 1);
    assert_eq!(log[0]["method"], "GET");
    assert_eq!(log[0]["path"], "/v1/admin/users");
    assert_eq!(log[0]["query"], "pageSize=10&currentPage=0");
    assert!(log[0]["body"].is_null());
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[1]["body"], json!({"name": "A"}));
    assert_eq!(log[2]["status"], 401);
    let (s, _) = sim.ctl(Method::DELETE, "/requests", None).await;
    assert_eq!(s, 200);
    let (_, log) = sim.ctl(Method::GET, "/requests", None).await;
    assert_eq!(log, json!([]));
    sim.get("/admin/users").await;
    let (_, log) = sim.ctl(Method::GET, "/requests", None).await;
    assert_eq!(
        log[0]["seq"], 4,
        "sequence numbers keep counting after a clear"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn auto_accept_after_delay() {
    let sim = start(SimOptions {
        auto_accept: Some(Duration::from_millis(150)),
        seed: Some(Seed {
            workspaces: vec![SeedWorkspace {
                name: "W".into(),
                ..Default::default()
            }],
            invites: vec![portkey_sim::SeedInvite {
                email: "seeded@example.com".into(),
                role: "member".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    let (s, _) = sim
        .post("/admin/users/invites", json!({"email": "i@example.com", "role": "admin", "workspaces": [{"id": "ws-w", "role": "member"}]}))
        .await;
    assert_eq!(s, 200);
    let (_, v) = sim.get("/admin/users/invites?status=pending").await;
    assert_eq!(v["total"], 2, "not accepted before the delay");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, v) = sim.get("/admin/users").await;
        if v["total"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "auto-accept did not happen: {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let i = sim.user_id("i@example.com").await;
    let (_, v) = sim.get(&format!("/admin/users/{i}")).await;
    assert_eq!(v["role"], "admin");
    let (_, v) = sim.get(&format!("/admin/workspaces/ws-w/users/{i}")).await;
    assert_eq!(v["role"], "admin");
    let (_, v) = sim.get("/admin/users/invites?status=accepted").await;
    assert_eq!(v["total"], 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn hang_and_latency() {
    let sim = start(SimOptions {
        faults: Faults {
            latency_ms: 120,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let t = Instant::now();
    let (s, _) = sim.get("/admin/users").await;
    assert_eq!(s, 200);
    assert!(t.elapsed() >= Duration::from_millis(120));

    sim.ctl(Method::PUT, "/faults", Some(json!({"hang_rate": 1.0})))
        .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .get(format!("{}/admin/users", sim.server.base_url()))
        .header("x-portkey-api-key", "sim-key")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // The held request shows in the log without a status.
    let (_, log) = sim.ctl(Method::GET, "/requests", None).await;
    assert!(log[1]["status"].is_null());
    assert_eq!(log[1]["fault"], Value::Null);
    // Shutdown does not wait an hour for the held request.
    let t = Instant::now();
    sim.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn ten_thousand_users_fifty_thousand_members() {
    let users: Vec<SeedUser> = (0..10_000)
        .map(|i| SeedUser {
            email: format!("user{i:05}@example.com"),
            role: if i < 3 { "admin" } else { "member" }.into(),
            ..Default::default()
        })
        .collect();
    // Five workspaces with all 10,000 users each: 50,000 memberships.
    let workspaces: Vec<SeedWorkspace> = (0..5)
        .map(|w| SeedWorkspace {
            name: format!("W{w}"),
            members: (0..10_000)
                .map(|i| SeedMember {
                    email: format!("user{i:05}@example.com"),
                    role: "member".into(),
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let sim = start(SimOptions {
        seed: Some(Seed {
            users,
            workspaces,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    let t = Instant::now();
    let mut n = 0;
    for page in 0.. {
        let (s, v) = sim
            .get(&format!("/admin/users?pageSize=100&currentPage={page}"))
            .await;
        assert_eq!(s, 200);
        let got = v["data"].as_array().unwrap().len();
        n += got;
        if got < 100 {
            break;
        }
    }
    assert_eq!(n, 10_000);
    let mut members = 0;
    for w in 0..5 {
        for page in 0.. {
            let (s, v) = sim
                .get(&format!(
                    "/admin/workspaces/ws-w{w}/users?page_size=100&current_page={page}"
                ))
                .await;
            assert_eq!(s, 200);
            let got = v["data"].as_array().unwrap().len();
            members += got;
            if got < 100 {
                break;
            }
        }
    }
    assert_eq!(members, 50_000);
    let elapsed = t.elapsed();
    eprintln!("listed 10,000 users and 50,000 members in {elapsed:?}");
    // Generous for debug builds on a busy machine; O(n²) listing would take far longer.
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    // Targeted reads stay fast.
    let (_, v) = sim.get("/admin/users?email=user09999%40example.com").await;
    assert_eq!(v["total"], 1);
    sim.shutdown().await;
}
