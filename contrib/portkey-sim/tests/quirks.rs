//! The quirk switches (`Quirks`, `/_sim/quirks`, the binary's flags), each ON and OFF,
//! over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use portkey_sim::{Quirks, SimError, SimOptions, ADMIN_API_SCOPES};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The documented AB03 body (AB03 help page): a denied scope and, with `missing_is_403`,
/// a missing resource must both answer exactly this.
fn ab03() -> Value {
    json!({"success": false, "data": {
        "message": "You do not have enough permissions to execute this request",
        "errorCode": "AB03"
    }})
}

fn all_off() -> Value {
    json!({
        "missing_is_403": false,
        "lists_omit_workspace_ids": false,
        "email_filter_case_sensitive": false,
        "denied_scopes": []
    })
}

async fn quirks(sim: &Sim) -> Value {
    let (s, v) = sim.ctl(Method::GET, "/quirks", None).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn put_quirks(sim: &Sim, body: Value) -> Value {
    let (s, v) = sim.ctl(Method::PUT, "/quirks", Some(body)).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn patch_quirks(sim: &Sim, body: Value) -> Value {
    let (s, v) = sim.ctl(Method::PATCH, "/quirks", Some(body)).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn last_logged(sim: &Sim) -> Value {
    let (_, log) = sim.ctl(Method::GET, "/requests", None).await;
    log.as_array().unwrap().last().cloned().unwrap()
}

#[tokio::test]
async fn control_route_reads_replaces_and_patches() {
    let sim = start_default().await;
    assert_eq!(quirks(&sim).await, all_off());

    let all_on = json!({
        "missing_is_403": true,
        "lists_omit_workspace_ids": true,
        "email_filter_case_sensitive": true,
        "denied_scopes": ["workspaces.delete", "organisation_users.update"]
    });
    assert_eq!(put_quirks(&sim, all_on.clone()).await, all_on);
    assert_eq!(quirks(&sim).await, all_on);

    // PATCH changes only the keys it names.
    let v = patch_quirks(&sim, json!({"email_filter_case_sensitive": false})).await;
    assert_eq!(v["email_filter_case_sensitive"], false);
    assert_eq!(v["missing_is_403"], true);
    assert_eq!(v["denied_scopes"], all_on["denied_scopes"]);
    let v = patch_quirks(&sim, json!({"denied_scopes": []})).await;
    assert_eq!(v["denied_scopes"], json!([]));
    assert_eq!(v["lists_omit_workspace_ids"], true);

    // PUT replaces the whole set: missing keys are off; an empty body is all off.
    let v = put_quirks(&sim, json!({"lists_omit_workspace_ids": true})).await;
    assert_eq!(v["missing_is_403"], false);
    assert_eq!(v["lists_omit_workspace_ids"], true);
    let (s, v) = sim.ctl(Method::PUT, "/quirks", None).await;
    assert_eq!((s, v), (200, all_off()));

    // Typos are rejected and leave the quirks as they were.
    put_quirks(&sim, json!({"missing_is_403": true})).await;
    for (method, body) in [
        (Method::PUT, json!({"missing_is_404": true})),
        (
            Method::PUT,
            json!({"denied_scopes": ["workspaces.destroy"]}),
        ),
        (Method::PUT, json!({"missing_is_403": "yes"})),
        (Method::PATCH, json!({"denied_scopes": ["logs.list"]})),
        (Method::PATCH, json!({"lists_omit_workspace_ids": 1})),
        (Method::PATCH, json!({"bogus": true})),
        (Method::PATCH, json!(["missing_is_403"])),
    ] {
        let (s, v) = sim.ctl(method.clone(), "/quirks", Some(body.clone())).await;
        assert_eq!(s, 400, "{method} {body}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    let mut want = all_off();
    want["missing_is_403"] = json!(true);
    assert_eq!(quirks(&sim).await, want);

    // Every documented scope is accepted.
    let v = put_quirks(&sim, json!({"denied_scopes": ADMIN_API_SCOPES})).await;
    assert_eq!(v["denied_scopes"], json!(ADMIN_API_SCOPES));

    // A reset empties the state but keeps the quirks, like the faults.
    let (s, _) = sim.ctl(Method::POST, "/reset", None).await;
    assert_eq!(s, 200);
    assert_eq!(quirks(&sim).await["denied_scopes"], json!(ADMIN_API_SCOPES));
    sim.shutdown().await;
}

#[tokio::test]
async fn options_set_the_initial_quirks() {
    // The old field still works, alone or next to `quirks`.
    let sim = start(SimOptions {
        missing_is_403: true,
        ..Default::default()
    })
    .await;
    let mut want = all_off();
    want["missing_is_403"] = json!(true);
    assert_eq!(quirks(&sim).await, want);
    sim.shutdown().await;

    let q = Quirks {
        missing_is_403: true,
        lists_omit_workspace_ids: true,
        email_filter_case_sensitive: true,
        denied_scopes: vec!["workspace_users.create".into()],
    };
    let sim = start(SimOptions {
        quirks: q.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(quirks(&sim).await, serde_json::to_value(&q).unwrap());
    sim.shutdown().await;

    // An unknown scope is refused at spawn.
    let res = portkey_sim::spawn(
        ([127, 0, 0, 1], 0).into(),
        SimOptions {
            quirks: Quirks {
                denied_scopes: vec!["workspace_users.write".into()],
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    match res {
        Err(SimError::Quirks(m)) => assert!(m.contains("workspace_users.write"), "{m}"),
        other => panic!("expected SimError::Quirks, got {other:?}"),
    }

    // The JSON form accepts partial objects (`#[serde(default)]`).
    let q: Quirks = serde_json::from_value(json!({"denied_scopes": ["workspaces.list"]})).unwrap();
    assert_eq!(
        q,
        Quirks {
            denied_scopes: vec!["workspaces.list".into()],
            ..Default::default()
        }
    );
    assert_eq!(SimOptions::default().quirks, Quirks::default());
    assert!(!SimOptions::default().missing_is_403);
}

#[tokio::test]
async fn lists_omit_workspace_ids_on_and_off() {
    let sim = start(SimOptions {
        quirks: Quirks {
            lists_omit_workspace_ids: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    sim.seed(json!({
        "users": [
            {"email": "o@example.com", "role": "owner"},
            {"email": "m@example.com", "role": "member"}
        ],
        "workspaces": [{"name": "W", "members": [{"email": "m@example.com", "role": "member"}]}]
    }))
    .await;
    let m = sim.user_id("m@example.com").await;
    // Every way of listing: plain, paged, filtered by role, filtered by email.
    let lists = [
        "/admin/users",
        "/admin/users?pageSize=1&currentPage=1",
        "/admin/users?role=member",
        "/admin/users?email=m%40example.com",
    ];
    for on in [true, false] {
        for path in lists {
            let (s, v) = sim.get(path).await;
            assert_eq!(s, 200);
            let rows = v["data"].as_array().unwrap();
            assert!(!rows.is_empty(), "{path}: {v}");
            for row in rows {
                assert_eq!(row.get("workspace_ids").is_some(), !on, "{path}: {row}");
                // The rest of the row is untouched.
                for key in ["object", "id", "email", "role", "created_at"] {
                    assert!(row.get(key).is_some(), "{path}: {row}");
                }
            }
        }
        // The single-user GET always carries it.
        let (s, v) = sim.get(&format!("/admin/users/{m}")).await;
        assert_eq!(s, 200);
        assert_eq!(v["workspace_ids"], json!(["ws-w"]));
        // Flip at run time.
        patch_quirks(&sim, json!({"lists_omit_workspace_ids": false})).await;
    }
    // And back on.
    put_quirks(&sim, json!({"lists_omit_workspace_ids": true})).await;
    let (_, v) = sim.get("/admin/users").await;
    assert!(v["data"][0].get("workspace_ids").is_none(), "{v}");
    sim.shutdown().await;
}

#[tokio::test]
async fn stored_emails_keep_their_case() {
    let sim = start_default().await;
    sim.seed(json!({
        "users": [{"email": "John.Doe@corp.com", "role": "member", "first_name": "John"}],
        "workspaces": [{"name": "W", "members": [{"email": "john.doe@corp.com", "role": "member"}]}],
        "invites": [{"email": "Jane.Roe@Corp.com", "role": "member"}]
    }))
    .await;
    let (_, v) = sim.get("/admin/users").await;
    assert_eq!(emails(&v), vec!["John.Doe@corp.com"]);
    let id = v["data"][0]["id"].as_str().unwrap().to_string();
    let (_, v) = sim.get(&format!("/admin/users/{id}")).await;
    assert_eq!(v["email"], "John.Doe@corp.com");
    let (_, v) = sim.get("/admin/workspaces/ws-w/users").await;
    assert_eq!(emails(&v), vec!["John.Doe@corp.com"]);
    let (_, v) = sim.get(&format!("/admin/workspaces/ws-w/users/{id}")).await;
    assert_eq!(v["email"], "John.Doe@corp.com");
    let (_, v) = sim.get("/admin/workspaces/ws-w").await;
    assert_eq!(v["users"][0]["email"], "John.Doe@corp.com");
    let (_, v) = sim.get("/admin/users/invites").await;
    assert_eq!(emails(&v), vec!["Jane.Roe@Corp.com"]);

    // Invites created over the API, and the users made by accepting them, too.
    let (s, v) = sim
        .post(
            "/admin/users/invites",
            json!({"email": "Mixed.Case@Corp.com", "role": "member", "workspaces": []}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = sim
        .get(&format!(
            "/admin/users/invites/{}",
            v["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(v["email"], "Mixed.Case@Corp.com");
    let (s, _) = sim.ctl(Method::POST, "/invites/accept", None).await;
    assert_eq!(s, 200);
    let (_, v) = sim.get("/admin/users").await;
    let mut got = emails(&v);
    got.sort();
    assert_eq!(
        got,
        vec![
            "Jane.Roe@Corp.com",
            "John.Doe@corp.com",
            "Mixed.Case@Corp.com"
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn email_filter_case_sensitive_on_and_off() {
    let sim = start_default().await;
    sim.seed(json!({
        "users": [
            {"email": "John.Doe@corp.com", "role": "member"},
            {"email": "Ann.Admin@corp.com", "role": "admin"}
        ],
        "workspaces": [{"name": "W", "members": [{"email": "John.Doe@corp.com", "role": "manager"}]}],
        "invites": [{"email": "Jane.Roe@corp.com", "role": "member"}]
    }))
    .await;
    // (list, email as stored, role filter matching that row)
    let cases = [
        ("/admin/users", "John.Doe@corp.com", "member"),
        ("/admin/users/invites", "Jane.Roe@corp.com", "member"),
        (
            "/admin/workspaces/ws-w/users",
            "John.Doe@corp.com",
            "manager",
        ),
        // An org admin shows up as an implicit workspace admin.
        (
            "/admin/workspaces/ws-w/users",
            "Ann.Admin@corp.com",
            "admin",
        ),
    ];
    let count = |v: &Value| v["total"].as_u64().unwrap();
    for on in [false, true, false] {
        if on {
            put_quirks(&sim, json!({"email_filter_case_sensitive": true})).await;
        } else {
            patch_quirks(&sim, json!({"email_filter_case_sensitive": false})).await;
        }
        for (list, stored, role) in cases {
            let lower = stored.to_lowercase();
            let upper = stored.to_uppercase();
            for (q, want_on) in [(stored.to_string(), 1), (lower, 0), (upper, 0)] {
                let want = if on { want_on } else { 1 };
                let (s, v) = sim.get(&format!("{list}?email={}", enc(&q))).await;
                assert_eq!(s, 200, "{v}");
                assert_eq!(count(&v), want, "on={on} {list}?email={q}: {v}");
                if want == 1 {
                    assert_eq!(emails(&v), vec![stored.to_string()]);
                }
                // Combined with the role filter and pagination.
                let (_, v) = sim
                    .get(&format!("{list}?email={}&role={role}&page_size=1", enc(&q)))
                    .await;
                assert_eq!(count(&v), want, "on={on} {list}?email={q}&role={role}: {v}");
            }
        }
    }
    // The quirk concerns the filter only: lookups by id and uniqueness are unchanged.
    put_quirks(&sim, json!({"email_filter_case_sensitive": true})).await;
    let (s, _) = sim.add_member("john.doe@CORP.com").await;
    assert_eq!(s, 409);
    sim.shutdown().await;
}

#[tokio::test]
async fn missing_is_403_gives_the_ab03_body() {
    let sim = start_default().await;
    sim.seed(json!({"workspaces": [{"name": "W"}]})).await;
    let ghost = "00000000-0000-0000-0000-000000000000";
    let missing = [
        (Method::GET, format!("/admin/users/{ghost}"), None),
        (Method::DELETE, format!("/admin/users/{ghost}"), None),
        (Method::GET, format!("/admin/users/invites/{ghost}"), None),
        (Method::GET, "/admin/workspaces/ws-gone".to_string(), None),
        (
            Method::DELETE,
            "/admin/workspaces/ws-gone/users/x".to_string(),
            None,
        ),
        (
            Method::POST,
            "/admin/workspaces/ws-w/users".to_string(),
            Some(json!({"users": [{"id": ghost, "role": "member"}]})),
        ),
    ];
    for on in [false, true, false] {
        patch_quirks(&sim, json!({"missing_is_403": on})).await;
        for (m, path, body) in &missing {
            let (s, v) = sim.api(m.clone(), path, body.clone()).await;
            if on {
                assert_eq!((s, &v), (403, &ab03()), "{m} {path}");
            } else {
                assert_err(&(s, v), 404, "AB08");
            }
            let e = last_logged(&sim).await;
            assert_eq!(e["status"], if on { 403 } else { 404 });
        }
        // Other errors keep their codes.
        assert_err(&sim.get("/admin/nope").await, 404, "AB02");
        assert_err(&sim.get("/admin/users?role=boss").await, 400, "AB01");
    }
    // "Gone" and "forbidden" are indistinguishable on the wire.
    put_quirks(&sim, json!({"missing_is_403": true})).await;
    let gone = sim.get(&format!("/admin/users/{ghost}")).await;
    put_quirks(&sim, json!({"denied_scopes": ["workspaces.list"]})).await;
    let forbidden = sim.get("/admin/workspaces").await;
    assert_eq!(gone, forbidden);
    assert_eq!(gone, (403, ab03()));
    sim.shutdown().await;
}

/// One request per Admin API operation, with the scope it needs.
fn operations(
    member: &str,
    to_update: &str,
    to_delete: &str,
    invite: &str,
) -> Vec<(Method, String, Option<Value>, &'static str)> {
    vec![
        (
            Method::GET,
            "/admin/users".into(),
            None,
            "organisation_users.list",
        ),
        (
            Method::GET,
            format!("/admin/users/{member}"),
            None,
            "organisation_users.read",
        ),
        (
            Method::PUT,
            format!("/admin/users/{to_update}"),
            Some(json!({"role": "admin"})),
            "organisation_users.update",
        ),
        (
            Method::DELETE,
            format!("/admin/users/{to_delete}"),
            None,
            "organisation_users.delete",
        ),
        (
            Method::GET,
            "/admin/users/invites".into(),
            None,
            "organisation_users.list",
        ),
        (
            Method::POST,
            "/admin/users/invites".into(),
            Some(json!({"email": "new@example.com", "role": "member", "workspaces": []})),
            "organisation_users.create",
        ),
        (
            Method::GET,
            format!("/admin/users/invites/{invite}"),
            None,
            "organisation_users.read",
        ),
        (
            Method::POST,
            format!("/admin/users/invites/{invite}/resend"),
            None,
            "organisation_users.create",
        ),
        (
            Method::DELETE,
            format!("/admin/users/invites/{invite}"),
            None,
            "organisation_users.delete",
        ),
        (
            Method::GET,
            "/admin/workspaces".into(),
            None,
            "workspaces.list",
        ),
        (
            Method::POST,
            "/admin/workspaces".into(),
            Some(json!({"name": "New"})),
            "workspaces.create",
        ),
        (
            Method::GET,
            "/admin/workspaces/ws-a".into(),
            None,
            "workspaces.read",
        ),
        (
            Method::PUT,
            "/admin/workspaces/ws-a".into(),
            Some(json!({"description": "changed"})),
            "workspaces.update",
        ),
        (
            Method::GET,
            "/admin/workspaces/ws-a/users".into(),
            None,
            "workspace_users.list",
        ),
        (
            Method::POST,
            "/admin/workspaces/ws-a/users".into(),
            Some(json!({"users": [{"id": member, "role": "member"}]})),
            "workspace_users.create",
        ),
        (
            Method::GET,
            format!("/admin/workspaces/ws-a/users/{member}"),
            None,
            "workspace_users.read",
        ),
        (
            Method::GET,
            format!("/admin/workspaces/ws-a/members/{member}"),
            None,
            "workspace_users.read",
        ),
        (
            Method::PUT,
            format!("/admin/workspaces/ws-a/users/{member}"),
            Some(json!({"role": "manager"})),
            "workspace_users.update",
        ),
        (
            Method::DELETE,
            format!("/admin/workspaces/ws-a/users/{member}"),
            None,
            "workspace_users.delete",
        ),
        (
            Method::DELETE,
            "/admin/workspaces/ws-b".into(),
            None,
            "workspaces.delete",
        ),
    ]
}

#[tokio::test]
async fn denied_scopes_block_each_operation() {
    let sim = start_default().await;
    sim.seed(json!({
        "users": [
            {"email": "o@example.com", "role": "owner"},
            {"email": "m@example.com", "role": "member"},
            {"email": "up@example.com", "role": "member"},
            {"email": "del@example.com", "role": "member"}
        ],
        "workspaces": [{"name": "A"}, {"name": "B"}],
        "invites": [{"email": "i@example.com", "role": "member"}]
    }))
    .await;
    let member = sim.user_id("m@example.com").await;
    let to_update = sim.user_id("up@example.com").await;
    let to_delete = sim.user_id("del@example.com").await;
    let (_, v) = sim.get("/admin/users/invites").await;
    let invite = v["data"][0]["id"].as_str().unwrap().to_string();
    let ops = operations(&member, &to_update, &to_delete, &invite);

    for (method, path, body, scope) in ops {
        let what = format!("{method} {path}");
        // Denied: 403 with the AB03 body, nothing applied, still logged.
        put_quirks(&sim, json!({"denied_scopes": [scope]})).await;
        let (_, before) = sim.ctl(Method::GET, "/state", None).await;
        let resp = sim.api(method.clone(), &path, body.clone()).await;
        assert_eq!(resp, (403, ab03()), "{what} without {scope}");
        let (_, after) = sim.ctl(Method::GET, "/state", None).await;
        assert_eq!(before, after, "{what} was applied without {scope}");
        let e = last_logged(&sim).await;
        assert_eq!(e["method"], method.as_str());
        assert_eq!(e["path"], format!("/v1{path}"));
        assert_eq!(e["status"], 403);
        assert_eq!(e["body"], body.clone().unwrap_or(Value::Null));

        // Every other scope denied: this one still goes through.
        let others: Vec<&str> = ADMIN_API_SCOPES
            .iter()
            .copied()
            .filter(|s| *s != scope)
            .collect();
        put_quirks(&sim, json!({"denied_scopes": others})).await;
        let (s, v) = sim.api(method.clone(), &path, body).await;
        assert_eq!(s, 200, "{what} with only {scope}: {v}");
        assert_eq!(last_logged(&sim).await["status"], 200);
    }

    // The writes above really happened once allowed.
    put_quirks(&sim, json!({})).await;
    let (_, v) = sim.get(&format!("/admin/users/{to_update}")).await;
    assert_eq!(v["role"], "admin");
    let (_, v) = sim.get("/admin/workspaces?page_size=10").await;
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["A", "New"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn denied_scopes_order_against_other_checks() {
    let sim = start(SimOptions {
        quirks: Quirks {
            denied_scopes: ADMIN_API_SCOPES.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    // A wrong key is still 401: the key is checked before its scopes.
    let resp = sim
        .http
        .get(format!("{}/admin/users", sim.server.base_url()))
        .header("x-portkey-api-key", "wrong")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_err(&(status, resp.json().await.unwrap()), 401, "AB05");
    // Scopes come before validation and before existence.
    assert_eq!(
        sim.post("/admin/users/invites", json!({"email": "bad"}))
            .await,
        (403, ab03())
    );
    assert_eq!(
        sim.get("/admin/users/00000000-0000-0000-0000-000000000000")
            .await,
        (403, ab03())
    );
    let url = format!("{}/admin/workspaces", sim.server.base_url());
    let resp = sim
        .http
        .post(url)
        .header("x-portkey-api-key", &sim.key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    // A path that is no route needs no scope.
    assert_err(&sim.get("/admin/nope").await, 404, "AB02");
    assert_err(
        &sim.post("/admin/users", json!({"email": "x@y.z"})).await,
        404,
        "AB02",
    );
    // Control routes are never scoped.
    let (s, _) = sim.add_member("a@example.com").await;
    assert_eq!(s, 200);
    // Lifting the denial at run time restores access.
    patch_quirks(&sim, json!({"denied_scopes": []})).await;
    let (s, v) = sim.get("/admin/users").await;
    assert_eq!((s, v["total"].clone()), (200, json!(1)));
    sim.shutdown().await;
}

/// Starts the `portkey-sim` binary on a free port; returns it and its control URL.
async fn run_binary(args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portkey-sim"))
        .args(["--listen", "127.0.0.1:0", "--api-key", "bin-key"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn portkey-sim");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("portkey-sim printed its URL in time")
    .expect("read stdout");
    let base = line.trim().to_string();
    assert!(base.ends_with("/v1"), "{base:?}");
    let control = format!("{}/_sim", base.trim_end_matches("/v1"));
    (child, control)
}

#[tokio::test]
async fn binary_flags_set_the_quirks() {
    let http = reqwest::Client::new();
    let (mut child, control) = run_binary(&[
        "--missing-is-403",
        "--lists-omit-workspace-ids",
        "--email-filter-case-sensitive",
        "--deny-scope",
        "workspaces.delete",
        "--deny-scope",
        "organisation_users.update,workspace_users.list",
    ])
    .await;
    let v: Value = http
        .get(format!("{control}/quirks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({
            "missing_is_403": true,
            "lists_omit_workspace_ids": true,
            "email_filter_case_sensitive": true,
            "denied_scopes": ["workspaces.delete", "organisation_users.update", "workspace_users.list"]
        })
    );
    // The denial is in force on the wire.
    let base = control.trim_end_matches("/_sim").to_string();
    let resp = http
        .get(format!("{base}/v1/admin/workspaces/ws-x/users"))
        .header("x-portkey-api-key", "bin-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(resp.json::<Value>().await.unwrap(), ab03());
    child.kill().await.unwrap();

    // No flags: everything off.
    let (mut child, control) = run_binary(&[]).await;
    let v: Value = http
        .get(format!("{control}/quirks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, all_off());
    child.kill().await.unwrap();

    // An unknown scope is refused before anything is served.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portkey-sim"))
        .args(["--listen", "127.0.0.1:0", "--deny-scope", "logs.list"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("logs.list"), "{err}");
}
