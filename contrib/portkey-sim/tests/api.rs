//! Admin API shapes and quirks, over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use portkey_sim::SimOptions;
use reqwest::Method;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn users_seed(n: usize) -> Value {
    let users: Vec<Value> = (0..n)
        .map(|i| json!({"email": format!("u{i:03}@example.com"), "role": "member"}))
        .collect();
    json!({ "users": users })
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| OffsetDateTime::parse(s, &Rfc3339).is_ok())
}

#[tokio::test]
async fn auth_is_required_on_v1_only() {
    let sim = start_default().await;
    let url = format!("{}/admin/users", sim.server.base_url());
    for key in [None, Some("wrong")] {
        let mut req = sim.http.get(&url);
        if let Some(k) = key {
            req = req.header("x-portkey-api-key", k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_err(&(status, body), 401, "AB05");
    }
    let (s, _) = sim.ctl(Method::GET, "/state", None).await;
    assert_eq!(s, 200);
    assert!(sim.server.base_url().ends_with("/v1"));
    assert!(sim.server.control_url().ends_with("/_sim"));
    sim.shutdown().await;
}

#[tokio::test]
async fn users_pagination_edges() {
    // 0, 1, page size and page size + 1 items, with both spellings of the parameters.
    for n in [0usize, 1, 5, 6] {
        let sim = start(SimOptions {
            max_page_size: 5,
            ..Default::default()
        })
        .await;
        sim.seed(users_seed(n)).await;
        for (size_key, page_key) in [("pageSize", "currentPage"), ("page_size", "current_page")] {
            let mut seen = Vec::new();
            let mut page = 0;
            loop {
                let (s, v) = sim
                    .get(&format!("/admin/users?{size_key}=5&{page_key}={page}"))
                    .await;
                assert_eq!(s, 200);
                assert_eq!(v["object"], "list");
                assert_eq!(v["total"], json!(n));
                let got = emails(&v);
                let short = got.len() < 5;
                seen.extend(got);
                if short {
                    break;
                }
                page += 1;
            }
            let want: Vec<String> = (0..n).map(|i| format!("u{i:03}@example.com")).collect();
            assert_eq!(seen, want, "n={n} {size_key}");
            // Pages are 0-based: the page after the last is empty, with the same total.
            let (_, v) = sim
                .get(&format!(
                    "/admin/users?{size_key}=5&{page_key}={}",
                    page + 1
                ))
                .await;
            assert_eq!(emails(&v).len(), 0);
            assert_eq!(v["total"], json!(n));
        }
        // Without parameters the default page is the maximum; larger sizes are clamped.
        let (_, v) = sim.get("/admin/users").await;
        assert_eq!(emails(&v).len(), n.min(5));
        let (_, v) = sim.get("/admin/users?pageSize=1000").await;
        assert_eq!(emails(&v).len(), n.min(5));
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn bad_pagination_is_400() {
    let sim = start_default().await;
    assert_err(&sim.get("/admin/users?pageSize=0").await, 400, "AB01");
    assert_err(&sim.get("/admin/users?currentPage=-1").await, 400, "AB01");
    assert_err(&sim.get("/admin/workspaces?page_size=x").await, 400, "AB01");
    sim.shutdown().await;
}

#[tokio::test]
async fn user_shape_and_filters() {
    let sim = start_default().await;
    sim.seed(json!({
        "users": [
            {"email": "Owner@Example.com", "role": "owner", "first_name": "O", "last_name": "W"},
            {"email": "a+1@example.com", "role": "admin"},
            {"email": "m@example.com", "role": "member"}
        ],
        "workspaces": [{"name": "Team A", "members": [{"email": "m@example.com", "role": "manager"}]}]
    }))
    .await;
    let (s, v) = sim.get("/admin/users").await;
    assert_eq!(s, 200);
    let u = &v["data"][0];
    for key in [
        "object",
        "id",
        "first_name",
        "last_name",
        "role",
        "email",
        "created_at",
        "last_updated_at",
        "workspace_ids",
    ] {
        assert!(u.get(key).is_some(), "missing {key} in {u}");
    }
    assert_eq!(u["object"], "user");
    assert!(is_rfc3339(&u["created_at"]));
    assert!(uuid::Uuid::parse_str(u["id"].as_str().unwrap()).is_ok());

    let (_, v) = sim.get("/admin/users?role=admin").await;
    assert_eq!(emails(&v), vec!["a+1@example.com"]);
    let (_, v) = sim.get("/admin/users?role=owner").await;
    assert_eq!(v["total"], 1);
    // Emails match case-insensitively and survive URL encoding.
    let (_, v) = sim.get("/admin/users?email=owner%40example.com").await;
    assert_eq!(emails(&v), vec!["Owner@Example.com"]);
    let (_, v) = sim
        .get(&format!("/admin/users?email={}", enc("a+1@example.com")))
        .await;
    assert_eq!(v["total"], 1);
    let (_, v) = sim.get("/admin/users?email=nobody%40example.com").await;
    assert_eq!(v["total"], 0);
    assert_err(&sim.get("/admin/users?role=boss").await, 400, "AB01");

    // workspace_ids: slugs of explicit memberships; every workspace for owners/admins.
    let m = sim.user_id("m@example.com").await;
    let (s, v) = sim.get(&format!("/admin/users/{m}")).await;
    assert_eq!(s, 200);
    assert_eq!(v["workspace_ids"], json!(["ws-team-a"]));
    let a = sim.user_id("a+1@example.com").await;
    let (_, v) = sim.get(&format!("/admin/users/{a}")).await;
    assert_eq!(v["workspace_ids"], json!(["ws-team-a"]));
    sim.shutdown().await;
}

#[tokio::test]
async fn user_update_quirks() {
    let sim = start_default().await;
    sim.seed(json!({"users": [
        {"email": "o@example.com", "role": "owner"},
        {"email": "m@example.com", "role": "member"}
    ]}))
    .await;
    let m = sim.user_id("m@example.com").await;
    let o = sim.user_id("o@example.com").await;
    let path = format!("/admin/users/{m}");
    // Same role: rejected (documented, TF Known Issues).
    assert_err(
        &sim.put(&path, json!({"role": "member"})).await,
        400,
        "AB01",
    );
    // Owner is not settable.
    assert_err(&sim.put(&path, json!({"role": "owner"})).await, 400, "AB01");
    assert_err(&sim.put(&path, json!({"role": "Admin"})).await, 400, "AB01");
    assert_err(&sim.put(&path, json!({})).await, 400, "AB01");
    let (s, v) = sim.put(&path, json!({"role": "admin"})).await;
    assert_eq!((s, v), (200, json!({})));
    let (_, v) = sim.get(&path).await;
    assert_eq!(v["role"], "admin");
    // The last owner cannot be demoted.
    assert_err(
        &sim.put(&format!("/admin/users/{o}"), json!({"role": "admin"}))
            .await,
        400,
        "AB01",
    );
    assert_err(
        &sim.put(
            "/admin/users/00000000-0000-0000-0000-000000000000",
            json!({"role": "admin"}),
        )
        .await,
        404,
        "AB08",
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn user_delete_and_missing() {
    for missing_is_403 in [false, true] {
        let sim = start(SimOptions {
            missing_is_403,
            ..Default::default()
        })
        .await;
        sim.seed(json!({
            "users": [{"email": "m@example.com", "role": "member"}],
            "workspaces": [{"name": "W", "members": [{"email": "m@example.com", "role": "member"}]}]
        }))
        .await;
        let m = sim.user_id("m@example.com").await;
        let (s, v) = sim.delete(&format!("/admin/users/{m}")).await;
        assert_eq!((s, v), (200, json!({})));
        let (status, code) = if missing_is_403 {
            (403, "AB03")
        } else {
            (404, "AB08")
        };
        assert_err(
            &sim.delete(&format!("/admin/users/{m}")).await,
            status,
            code,
        );
        assert_err(&sim.get(&format!("/admin/users/{m}")).await, status, code);
        assert_err(&sim.get("/admin/users/not-a-uuid").await, status, code);
        // Memberships go with the user.
        let (_, v) = sim.get("/admin/workspaces/ws-w/users").await;
        assert_eq!(v["total"], 0);
        if missing_is_403 {
            let (_, v) = sim.get(&format!("/admin/users/{m}")).await;
            assert_eq!(
                v["data"]["message"],
                "You do not have enough permissions to execute this request"
            );
        }
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn unknown_route_is_404() {
    let sim = start_default().await;
    assert_err(
        &sim.post("/admin/users", json!({"email": "x@y.z"})).await,
        404,
        "AB02",
    );
    assert_err(&sim.get("/nope").await, 404, "AB02");
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_json_body_is_400() {
    let sim = start_default().await;
    let resp = sim
        .http
        .post(format!("{}/admin/workspaces", sim.server.base_url()))
        .header("x-portkey-api-key", "sim-key")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_err(&(status, resp.json().await.unwrap()), 400, "AB01");
    sim.shutdown().await;
}

#[tokio::test]
async fn invite_lifecycle() {
    let sim = start_default().await;
    sim.seed(json!({"users": [{"email": "m@example.com", "role": "member"}]}))
        .await;
    let ws = sim.create_workspace("Team A").await;
    let ws_id = ws["id"].as_str().unwrap().to_string();
    let slug = ws["slug"].as_str().unwrap().to_string();
    let ws2 = sim.create_workspace("Team B").await;

    // Workspaces by slug and by UUID both work; the response is exactly {id, invite_link}.
    let (s, v) = sim
        .post(
            "/admin/users/invites",
            json!({"email": "new@example.com", "role": "member",
                   "workspaces": [{"id": slug, "role": "manager"}, {"id": ws2["id"], "role": "member"}],
                   "workspace_api_key_details": {"scopes": ["logs.list"]}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 2, "{v}");
    let invite_id = v["id"].as_str().unwrap().to_string();
    assert!(v["invite_link"].as_str().unwrap().starts_with("https://"));

    // Duplicates and existing members: 409 AB07.
    assert_err(
        &sim.post(
            "/admin/users/invites",
            json!({"email": "NEW@example.com", "role": "admin", "workspaces": []}),
        )
        .await,
        409,
        "AB07",
    );
    assert_err(
        &sim.post(
            "/admin/users/invites",
            json!({"email": "m@example.com", "role": "member", "workspaces": []}),
        )
        .await,
        409,
        "AB07",
    );
    // Validation.
    for bad in [
        json!({"email": "x@example.com", "role": "owner", "workspaces": []}),
        json!({"email": "x@example.com", "role": "member"}),
        json!({"email": "not-an-email", "role": "member", "workspaces": []}),
        json!({"email": "x@example.com", "role": "member", "workspaces": [{"id": slug, "role": "boss"}]}),
    ] {
        assert_err(&sim.post("/admin/users/invites", bad).await, 400, "AB01");
    }
    assert_err(
        &sim.post("/admin/users/invites", json!({"email": "x@example.com", "role": "member", "workspaces": [{"id": "ws-nope", "role": "member"}]})).await,
        404,
        "AB08",
    );

    // Shape of one invite.
    let (s, v) = sim.get(&format!("/admin/users/invites/{invite_id}")).await;
    assert_eq!(s, 200);
    assert_eq!(v["object"], "invite");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["role"], "member");
    assert!(v["accepted_at"].is_null());
    assert!(is_rfc3339(&v["created_at"]) && is_rfc3339(&v["expires_at"]));
    let created = OffsetDateTime::parse(v["created_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let expires = OffsetDateTime::parse(v["expires_at"].as_str().unwrap(), &Rfc3339).unwrap();
    assert_eq!(expires - created, time::Duration::days(7));
    assert_eq!(v["workspaces"][0]["id"], json!(slug));
    assert_eq!(v["workspaces"][0]["workspace_id"], json!(ws_id));
    assert_eq!(v["workspaces"][0]["role"], "manager");
    assert_eq!(v["workspaces"][1]["id"], ws2["slug"]);

    // Filters.
    let (_, v) = sim.get("/admin/users/invites?status=pending").await;
    assert_eq!(v["total"], 1);
    let (_, v) = sim.get("/admin/users/invites?role=admin").await;
    assert_eq!(v["total"], 0);
    let (_, v) = sim
        .get("/admin/users/invites?email=new%40example.com&role=member")
        .await;
    assert_eq!(v["total"], 1);
    assert_err(
        &sim.get("/admin/users/invites?status=gone").await,
        400,
        "AB01",
    );

    // A pending invitee has no user id: the invite id is not a user.
    assert_err(
        &sim.post(
            &format!("/admin/workspaces/{slug}/users"),
            json!({"users": [{"id": invite_id, "role": "member"}]}),
        )
        .await,
        404,
        "AB08",
    );

    // Resend: camelCase inviteLink.
    let (s, v) = sim
        .post(
            &format!("/admin/users/invites/{invite_id}/resend"),
            json!(null),
        )
        .await;
    assert_eq!(s, 200);
    assert!(v["inviteLink"].is_string());

    // Delete: the invite stays listable as cancelled; deleting again is 404.
    let (s, v) = sim
        .delete(&format!("/admin/users/invites/{invite_id}"))
        .await;
    assert_eq!((s, v), (200, json!({})));
    let (_, v) = sim.get(&format!("/admin/users/invites/{invite_id}")).await;
    assert_eq!(v["status"], "cancelled");
    assert_err(
        &sim.delete(&format!("/admin/users/invites/{invite_id}"))
            .await,
        404,
        "AB08",
    );
    assert_err(
        &sim.post(
            &format!("/admin/users/invites/{invite_id}/resend"),
            json!(null),
        )
        .await,
        400,
        "AB01",
    );
    let (_, v) = sim.get("/admin/users/invites?status=cancelled").await;
    assert_eq!(v["total"], 1);
    // Re-inviting after cancellation is fine.
    let (s, _) = sim
        .post(
            "/admin/users/invites",
            json!({"email": "new@example.com", "role": "admin", "workspaces": []}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = sim
        .get("/admin/users/invites?email=new%40example.com")
        .await;
    assert_eq!(v["total"], 2);
    assert_err(
        &sim.get("/admin/users/invites/00000000-0000-0000-0000-000000000000")
            .await,
        404,
        "AB08",
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn invites_pagination_edges() {
    for n in [0usize, 1, 3, 4] {
        let sim = start(SimOptions {
            max_page_size: 3,
            ..Default::default()
        })
        .await;
        for i in 0..n {
            let (s, _) = sim
                .post("/admin/users/invites", json!({"email": format!("i{i}@example.com"), "role": "member", "workspaces": []}))
                .await;
            assert_eq!(s, 200);
        }
        let (_, p0) = sim
            .get("/admin/users/invites?pageSize=3&currentPage=0")
            .await;
        let (_, p1) = sim
            .get("/admin/users/invites?page_size=3&current_page=1")
            .await;
        assert_eq!(p0["total"], json!(n));
        assert_eq!(emails(&p0).len() + emails(&p1).len(), n);
        assert_eq!(emails(&p0).len(), n.min(3));
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn accept_and_expire_through_control_routes() {
    let sim = start_default().await;
    let ws = sim.create_workspace("Eng").await;
    let slug = ws["slug"].as_str().unwrap();
    for (email, role) in [
        ("a@example.com", "admin"),
        ("b@example.com", "member"),
        ("c@example.com", "member"),
    ] {
        let (s, _) = sim
            .post("/admin/users/invites", json!({"email": email, "role": role, "workspaces": [{"id": slug, "role": "manager"}]}))
            .await;
        assert_eq!(s, 200);
    }
    // Accept by email.
    let (s, v) = sim
        .ctl(
            Method::POST,
            "/invites/accept",
            Some(json!({"emails": ["B@example.com"]})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["accepted"].as_array().unwrap().len(), 1);
    let b = sim.user_id("b@example.com").await;
    let (_, v) = sim.get(&format!("/admin/users/{b}")).await;
    assert_eq!(v["role"], "member");
    let (s, v) = sim
        .get(&format!("/admin/workspaces/{slug}/users/{b}"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["role"], "manager");
    let (_, v) = sim.get("/admin/users/invites?email=b%40example.com").await;
    assert_eq!(v["data"][0]["status"], "accepted");
    assert!(is_rfc3339(&v["data"][0]["accepted_at"]));
    // Accepted: a new invite is a conflict (existing member).
    assert_err(
        &sim.post(
            "/admin/users/invites",
            json!({"email": "b@example.com", "role": "member", "workspaces": []}),
        )
        .await,
        409,
        "AB07",
    );

    // Expire c; it shows as expired, cannot be accepted, and can be re-invited.
    let (s, v) = sim
        .ctl(
            Method::POST,
            "/invites/expire",
            Some(json!({"emails": ["c@example.com"]})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["expired"].as_array().unwrap().len(), 1);
    let (_, v) = sim.get("/admin/users/invites?status=expired").await;
    assert_eq!(emails(&v), vec!["c@example.com"]);
    let expired_id = v["data"][0]["id"].as_str().unwrap().to_string();

    // Accept all remaining pending: only a.
    let (_, v) = sim.ctl(Method::POST, "/invites/accept", None).await;
    assert_eq!(v["accepted"].as_array().unwrap().len(), 1);
    assert_eq!(v["accepted"][0]["email"], "a@example.com");
    // An org admin joins every workspace as admin, whatever the invite said.
    let a = sim.user_id("a@example.com").await;
    let (_, v) = sim
        .get(&format!("/admin/workspaces/{slug}/users/{a}"))
        .await;
    assert_eq!(v["role"], "admin");
    assert_eq!(v["org_role"], "admin");

    // Resending the expired invite revives it with a fresh expiry.
    let (s, _) = sim
        .post(
            &format!("/admin/users/invites/{expired_id}/resend"),
            json!(null),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = sim.get(&format!("/admin/users/invites/{expired_id}")).await;
    assert_eq!(v["status"], "pending");
    sim.shutdown().await;
}

#[tokio::test]
async fn control_users_and_seeded_invites() {
    let sim = start_default().await;
    sim.seed(json!({
        "users": [{"email": "o@example.com", "role": "owner"}],
        "workspaces": [{"name": "Shared", "slug": "ws-shared"}],
        "invites": [
            {"email": "p@example.com", "role": "member", "workspaces": [{"id": "ws-shared", "role": "member"}]},
            {"email": "e@example.com", "role": "member", "workspaces": [], "status": "expired"},
            {"email": "x@example.com", "role": "admin", "workspaces": [{"id": "Shared", "role": "admin"}], "status": "cancelled"}
        ]
    }))
    .await;
    let (_, v) = sim.get("/admin/users/invites").await;
    let statuses: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["pending", "expired", "cancelled"]);

    // Someone joins by SSO: the pending invite is accepted on the way.
    let (s, u) = sim
        .ctl(
            Method::POST,
            "/users",
            Some(json!({"email": "p@example.com", "role": "member", "first_name": "P"})),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["first_name"], "P");
    let (_, v) = sim.get("/admin/users/invites?email=p%40example.com").await;
    assert_eq!(v["data"][0]["status"], "accepted");
    let (_, v) = sim
        .get("/admin/workspaces/ws-shared/users?email=p%40example.com")
        .await;
    assert_eq!(v["total"], 1);
    // Duplicate direct user: 409.
    let (s, _) = sim.add_member("p@example.com").await;
    assert_eq!(s, 409);
    // Direct users may come with workspaces (drift by hand).
    let (s, _) = sim
        .ctl(Method::POST, "/users", Some(json!({"email": "d@example.com", "role": "member", "workspaces": [{"id": "ws-shared", "role": "manager"}]})))
        .await;
    assert_eq!(s, 200);
    let (_, v) = sim
        .get("/admin/workspaces/ws-shared/users?role=manager")
        .await;
    assert_eq!(emails(&v), vec!["d@example.com"]);

    // A bad seed is rejected whole.
    let (s, _) = sim
        .ctl(Method::POST, "/seed", Some(json!({"users": [{"email": "z@example.com", "role": "member"}, {"email": "y@example.com", "role": "boss"}]})))
        .await;
    assert_eq!(s, 400);
    let (_, v) = sim.get("/admin/users?email=z%40example.com").await;
    assert_eq!(v["total"], 0);

    // State and reset.
    let (_, st) = sim.ctl(Method::GET, "/state", None).await;
    assert_eq!(st["users"].as_array().unwrap().len(), 3);
    assert_eq!(st["invites"].as_array().unwrap().len(), 3);
    assert_eq!(st["workspaces"][0]["members"].as_array().unwrap().len(), 3);
    let (s, _) = sim.ctl(Method::POST, "/reset", None).await;
    assert_eq!(s, 200);
    let (_, st) = sim.ctl(Method::GET, "/state", None).await;
    assert_eq!(st, json!({"users": [], "invites": [], "workspaces": []}));
    sim.shutdown().await;
}

#[tokio::test]
async fn workspaces_create_get_list() {
    let sim = start(SimOptions {
        max_page_size: 2,
        ..Default::default()
    })
    .await;
    let (_, v) = sim.get("/admin/workspaces").await;
    assert_eq!(v, json!({"object": "list", "total": 0, "data": []}));
    let w = sim.create_workspace("Team Alpha").await;
    for key in [
        "id",
        "slug",
        "name",
        "description",
        "created_at",
        "last_updated_at",
        "defaults",
        "usage_limits",
        "rate_limits",
    ] {
        assert!(w.get(key).is_some(), "missing {key}");
    }
    assert!(uuid::Uuid::parse_str(w["id"].as_str().unwrap()).is_ok());
    assert!(w["slug"].as_str().unwrap().starts_with("ws-team-alpha-"));
    sim.create_workspace("Team Beta").await;
    sim.create_workspace("alpha lower").await;
    assert_err(
        &sim.post("/admin/workspaces", json!({"description": "no name"}))
            .await,
        400,
        "AB01",
    );

    // By UUID and by slug.
    for key in [&w["id"], &w["slug"]] {
        let (s, v) = sim
            .get(&format!("/admin/workspaces/{}", key.as_str().unwrap()))
            .await;
        assert_eq!(s, 200);
        assert_eq!(v["id"], w["id"]);
        assert_eq!(v["users"], json!([]));
    }
    assert_err(&sim.get("/admin/workspaces/ws-nope").await, 404, "AB08");

    // Pagination, both spellings.
    let (_, p0) = sim
        .get("/admin/workspaces?page_size=2&current_page=0")
        .await;
    let (_, p1) = sim.get("/admin/workspaces?pageSize=2&currentPage=1").await;
    assert_eq!(p0["total"], 3);
    assert_eq!(p0["data"].as_array().unwrap().len(), 2);
    assert_eq!(p1["data"].as_array().unwrap().len(), 1);
    assert_eq!(p1["data"][0]["name"], "alpha lower");

    // name: case-sensitive substring; exact_name: strict.
    let (_, v) = sim.get("/admin/workspaces?name=Team").await;
    assert_eq!(v["total"], 2);
    let (_, v) = sim.get("/admin/workspaces?name=alpha").await;
    assert_eq!(v["total"], 1);
    let (_, v) = sim.get("/admin/workspaces?exact_name=Team%20Alpha").await;
    assert_eq!(v["total"], 1);
    let (_, v) = sim.get("/admin/workspaces?exact_name=Team").await;
    assert_eq!(v["total"], 0);
    let (_, v) = sim.get("/admin/workspaces?status=archived").await;
    assert_eq!(v["total"], 0);

    // Update and delete (extras beyond what the client needs).
    let slug = w["slug"].as_str().unwrap();
    let (s, v) = sim
        .put(
            &format!("/admin/workspaces/{slug}"),
            json!({"description": "d"}),
        )
        .await;
    assert_eq!((s, v), (200, json!({})));
    let (s, v) = sim.delete(&format!("/admin/workspaces/{slug}")).await;
    assert_eq!((s, v), (200, json!({})));
    assert_err(
        &sim.delete(&format!("/admin/workspaces/{slug}")).await,
        404,
        "AB08",
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn members_quirks() {
    let sim = start_default().await;
    sim.seed(json!({
        "users": [
            {"email": "o@example.com", "role": "owner"},
            {"email": "a@example.com", "role": "admin"},
            {"email": "m1@example.com", "role": "member"},
            {"email": "m2@example.com", "role": "member"}
        ],
        "workspaces": [{"name": "W", "slug": "ws-w"}]
    }))
    .await;
    let a = sim.user_id("a@example.com").await;
    let m1 = sim.user_id("m1@example.com").await;
    let m2 = sim.user_id("m2@example.com").await;
    let ws = sim.get("/admin/workspaces/ws-w").await.1;
    let ws_uuid = ws["id"].as_str().unwrap().to_string();

    // Owners and admins are implicit admins of every workspace.
    let (_, v) = sim.get("/admin/workspaces/ws-w/users").await;
    assert_eq!(v["total"], 2);
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["role"] == "admin"));

    // Add by slug; the response is {}.
    let (s, v) = sim
        .post(
            "/admin/workspaces/ws-w/users",
            json!({"users": [{"id": m1, "role": "member"}, {"id": a, "role": "member"}]}),
        )
        .await;
    assert_eq!((s, v), (200, json!({})));
    // Adding an existing member is a no-op (guess): the role stays.
    let (s, _) = sim
        .post(
            &format!("/admin/workspaces/{ws_uuid}/users"),
            json!({"users": [{"id": m1, "role": "manager"}]}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = sim.get(&format!("/admin/workspaces/ws-w/users/{m1}")).await;
    assert_eq!(v["object"], "workspace-user");
    assert_eq!(v["role"], "member");
    assert_eq!(v["org_role"], "member");
    assert_eq!(v["status"], "active");
    assert_eq!(v["workspace_id"], json!(ws_uuid));
    assert!(is_rfc3339(&v["created_at"]));
    // The admin asked for member and got admin.
    let (_, v) = sim.get(&format!("/admin/workspaces/ws-w/users/{a}")).await;
    assert_eq!(v["role"], "admin");
    // PUT on an org admin succeeds and changes nothing.
    let (s, _) = sim
        .put(
            &format!("/admin/workspaces/ws-w/users/{a}"),
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = sim.get(&format!("/admin/workspaces/ws-w/users/{a}")).await;
    assert_eq!(v["role"], "admin");

    // Listing: explicit members then implicit ones; totals and filters.
    let (_, v) = sim.get("/admin/workspaces/ws-w/users").await;
    assert_eq!(
        emails(&v),
        vec!["m1@example.com", "a@example.com", "o@example.com"]
    );
    let (_, v) = sim.get("/admin/workspaces/ws-w/users?role=admin").await;
    assert_eq!(emails(&v), vec!["a@example.com", "o@example.com"]);
    let (_, v) = sim.get("/admin/workspaces/ws-w/users?role=member").await;
    assert_eq!(emails(&v), vec!["m1@example.com"]);
    let (_, v) = sim
        .get("/admin/workspaces/ws-w/users?email=o%40example.com")
        .await;
    assert_eq!(emails(&v), vec!["o@example.com"]);
    let (_, v) = sim
        .get("/admin/workspaces/ws-w/users?email=m2%40example.com")
        .await;
    assert_eq!(v["total"], 0);
    let (_, v) = sim
        .get("/admin/workspaces/ws-w/users?page_size=2&current_page=1")
        .await;
    assert_eq!(v["total"], 3);
    assert_eq!(emails(&v), vec!["o@example.com"]);
    assert_err(
        &sim.get("/admin/workspaces/ws-w/users?role=owner").await,
        400,
        "AB01",
    );

    // PUT a member's role.
    let (s, v) = sim
        .put(
            &format!("/admin/workspaces/ws-w/users/{m1}"),
            json!({"role": "manager"}),
        )
        .await;
    assert_eq!((s, v), (200, json!({})));
    let (_, v) = sim.get(&format!("/admin/workspaces/ws-w/users/{m1}")).await;
    assert_eq!(v["role"], "manager");
    assert_err(
        &sim.put(
            &format!("/admin/workspaces/ws-w/users/{m1}"),
            json!({"role": "owner"}),
        )
        .await,
        400,
        "AB01",
    );
    assert_err(
        &sim.put(
            &format!("/admin/workspaces/ws-w/users/{m2}"),
            json!({"role": "member"}),
        )
        .await,
        404,
        "AB08",
    );

    // Validation is all-or-nothing: one unknown id, nothing added.
    assert_err(
        &sim.post("/admin/workspaces/ws-w/users", json!({"users": [{"id": m2, "role": "member"}, {"id": "00000000-0000-0000-0000-000000000000", "role": "member"}]})).await,
        404,
        "AB08",
    );
    assert_err(
        &sim.get(&format!("/admin/workspaces/ws-w/users/{m2}")).await,
        404,
        "AB08",
    );
    assert_err(
        &sim.post(
            "/admin/workspaces/ws-w/users",
            json!({"users": [{"id": m2, "role": "owner"}]}),
        )
        .await,
        400,
        "AB01",
    );
    assert_err(
        &sim.post("/admin/workspaces/ws-w/users", json!({})).await,
        400,
        "AB01",
    );
    assert_err(
        &sim.post("/admin/workspaces/ws-x/users", json!({"users": []}))
            .await,
        404,
        "AB08",
    );

    // Remove, then remove again.
    let (s, v) = sim
        .delete(&format!("/admin/workspaces/ws-w/users/{m1}"))
        .await;
    assert_eq!((s, v), (200, json!({})));
    assert_err(
        &sim.delete(&format!("/admin/workspaces/ws-w/users/{m1}"))
            .await,
        404,
        "AB08",
    );
    // An org admin's explicit row can go; they stay an implicit admin. No row: 404.
    let (s, _) = sim
        .delete(&format!("/admin/workspaces/ws-w/users/{a}"))
        .await;
    assert_eq!(s, 200);
    let (_, v) = sim.get(&format!("/admin/workspaces/ws-w/users/{a}")).await;
    assert_eq!(v["role"], "admin");
    assert_err(
        &sim.delete(&format!("/admin/workspaces/ws-w/users/{a}"))
            .await,
        404,
        "AB08",
    );

    // Demoting an org admin ends the implicit membership.
    let (s, _) = sim
        .put(&format!("/admin/users/{a}"), json!({"role": "member"}))
        .await;
    assert_eq!(s, 200);
    let (_, v) = sim.get("/admin/workspaces/ws-w/users").await;
    assert_eq!(emails(&v), vec!["o@example.com"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn members_pagination_edges() {
    for n in [0usize, 1, 4, 5] {
        let sim = start(SimOptions {
            max_page_size: 4,
            ..Default::default()
        })
        .await;
        let users: Vec<Value> = (0..n)
            .map(|i| json!({"email": format!("m{i}@example.com"), "role": "member"}))
            .collect();
        let members: Vec<Value> = (0..n)
            .map(|i| json!({"email": format!("m{i}@example.com"), "role": "member"}))
            .collect();
        sim.seed(json!({"users": users, "workspaces": [{"name": "W", "members": members}]}))
            .await;
        let mut seen = Vec::new();
        for page in 0..3 {
            let (s, v) = sim
                .get(&format!(
                    "/admin/workspaces/ws-w/users?page_size=4&current_page={page}"
                ))
                .await;
            assert_eq!(s, 200);
            assert_eq!(v["total"], json!(n));
            seen.extend(emails(&v));
        }
        let want: Vec<String> = (0..n).map(|i| format!("m{i}@example.com")).collect();
        assert_eq!(seen, want);
        sim.shutdown().await;
    }
}
