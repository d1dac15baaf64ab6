//! HTTP behaviour beyond the IdP checklist: hostile input, limits, discovery, search, tokens,
//! durability across restarts and the change feed.

use crate::common::{enc, patch_body, test_env, user, Server, SCIM_TOKEN};
use scim_sync::config::Config;
use scim_sync::store::{ChangeAction, ChangeKind};
use serde_json::{json, Value};
use std::path::Path;

#[tokio::test]
async fn thousand_nested_parentheses_is_invalid_filter() {
    let s = Server::start().await;
    let f = format!("{}userName eq \"a\"{}", "(".repeat(1000), ")".repeat(1000));
    let r = s.get(&format!("/Users?filter={}", enc(&f))).await;
    assert_eq!(r.status, 400, "{}", r.json);
    assert_eq!(r.json["scimType"], "invalidFilter");
    let r = s.post("/Users/.search", json!({"filter": f})).await;
    assert_eq!(r.status, 400, "{}", r.json);
    assert_eq!(r.json["scimType"], "invalidFilter");
}

#[tokio::test]
async fn one_megabyte_filter_is_invalid_filter() {
    let s = Server::start_with("max_body_bytes = 2000000").await;
    let f = format!("userName eq \"{}\"", "a".repeat(1_000_000));
    let r = s.post("/Users/.search", json!({"filter": f})).await;
    assert_eq!(r.status, 400, "{}", r.json);
    assert_eq!(r.json["scimType"], "invalidFilter");
    // In a URL it cannot reach the SCIM layer: the HTTP parser caps request targets at 64 KiB
    // (tests/conformance/known-issues.md). A long but legal one still gets a SCIM answer.
    let f = format!("userName eq \"{}\"", "a".repeat(40_000));
    let r = s.get(&format!("/Users?filter={}", enc(&f))).await;
    assert_eq!(r.status, 400, "{}", r.json);
    assert_eq!(r.json["scimType"], "invalidFilter");
}

#[tokio::test]
async fn deeply_nested_json_is_invalid_syntax() {
    let s = Server::start().await;
    let deep = format!(
        "{{\"userName\":{}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let r = s
        .http
        .post(format!("{}/Users", s.base))
        .bearer_auth(SCIM_TOKEN)
        .header("content-type", "application/scim+json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["scimType"], "invalidSyntax");
    let deep_obj = format!("{}{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    let r = s
        .http
        .patch(format!("{}/Users/x", s.base))
        .bearer_auth(SCIM_TOKEN)
        .body(deep_obj)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn malformed_bodies_get_scim_errors() {
    let s = Server::start().await;
    for (body, scim_type) in [
        ("{not json", "invalidSyntax"),
        ("[1,2,3]", "invalidSyntax"),
        ("", "invalidSyntax"),
        ("{\"schemas\":[]}", "invalidValue"),
        ("{\"userName\": 5, \"active\": \"perhaps\"}", "invalidValue"),
    ] {
        let r = s
            .http
            .post(format!("{}/Users", s.base))
            .bearer_auth(SCIM_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(r.headers()["content-type"], "application/scim+json");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["scimType"], scim_type, "{body}: {v}");
        assert_eq!(v["status"], "400");
    }
    let id = s.create_user("mal@example.com").await;
    for (ops, scim_type) in [
        (
            json!({"Operations": [{"op": "explode", "path": "title", "value": "x"}]}),
            "invalidSyntax",
        ),
        (json!({"Operations": "nope"}), "invalidSyntax"),
        (
            patch_body(json!([{"op": "add", "path": "title"}])),
            "invalidValue",
        ),
        (
            patch_body(json!([{"op": "remove", "path": "userName"}])),
            "invalidValue",
        ),
    ] {
        let r = s.patch(&format!("/Users/{id}"), ops.clone()).await;
        assert_eq!(r.status, 400, "{ops}: {}", r.json);
        assert_eq!(r.json["scimType"], scim_type, "{ops}: {}", r.json);
    }
    // A failed PATCH changes nothing.
    let r = s
        .patch(
            &format!("/Users/{id}"),
            patch_body(json!([
                {"op": "replace", "path": "title", "value": "Changed"},
                {"op": "remove"}
            ])),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(s
        .get(&format!("/Users/{id}"))
        .await
        .json
        .get("title")
        .is_none());
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let s = Server::start_with("max_body_bytes = 2048").await;
    let big = json!({"userName": "big@example.com", "title": "x".repeat(4096)});
    let r = s.post("/Users", big.clone()).await;
    assert_eq!(r.status, 413, "{}", r.json);
    assert_eq!(r.json["status"], "413");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/scim+json")
    );
    // Chunked, without Content-Length: the same limit.
    let bytes = serde_json::to_vec(&big).unwrap();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(500).map(|c| Ok(c.to_vec())).collect();
    let r = s
        .http
        .post(format!("{}/Users", s.base))
        .bearer_auth(SCIM_TOKEN)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(s.get("/Users?count=0").await.json["totalResults"], 0);
}

#[tokio::test]
async fn unknown_endpoints_and_methods_get_scim_errors() {
    let s = Server::start().await;
    let r = s.get("/Widgets").await;
    assert_eq!((r.status, r.json["status"].as_str()), (404, Some("404")));
    let r = s.delete("/Users").await;
    assert_eq!((r.status, r.json["status"].as_str()), (405, Some("405")));
    let r = s.post("/Bulk", json!({})).await;
    assert_eq!((r.status, r.json["status"].as_str()), (501, Some("501")));
    // Outside the base path entirely.
    let r = s
        .http
        .get(format!("http://{}/other", s.scim_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/scim+json");
}

#[tokio::test]
async fn discovery_documents_tell_the_truth() {
    let s = Server::start_with("max_results = 77").await;
    let r = s.get("/ServiceProviderConfig").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["patch"]["supported"], true);
    assert_eq!(r.json["bulk"]["supported"], false);
    assert_eq!(r.json["filter"]["supported"], true);
    assert_eq!(r.json["filter"]["maxResults"], 77);
    assert_eq!(r.json["sort"]["supported"], false);
    assert_eq!(r.json["etag"]["supported"], true);
    assert_eq!(r.json["changePassword"]["supported"], false);
    assert_eq!(
        r.json["authenticationSchemes"][0]["type"],
        "oauthbearertoken"
    );
    let r = s.get("/ResourceTypes").await;
    assert_eq!(r.json["totalResults"], 2);
    let r = s.get("/ResourceTypes/User").await;
    assert_eq!(
        r.json["schemaExtensions"][0]["schema"],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    );
    let r = s.get("/Schemas").await;
    assert_eq!(r.json["totalResults"], 3);
    let r = s
        .get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")
        .await;
    assert_eq!(r.status, 200);
    let attrs = r.json["attributes"].as_array().unwrap();
    let user_name = attrs.iter().find(|a| a["name"] == "userName").unwrap();
    assert_eq!(user_name["uniqueness"], "server");
    assert_eq!(user_name["caseExact"], false);
    let password = attrs.iter().find(|a| a["name"] == "password").unwrap();
    assert_eq!(password["returned"], "never");
    let r = s.get("/Schemas/urn:nope").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn search_endpoint_matches_get() {
    let s = Server::start().await;
    for i in 0..5 {
        s.create_user(&format!("s{i}@example.com")).await;
    }
    let r = s
        .post(
            "/Users/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                   "filter": "userName sw \"s\"", "startIndex": 2, "count": 2, "attributes": ["userName"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["totalResults"], 5);
    assert_eq!(r.json["itemsPerPage"], 2);
    assert!(r.json["Resources"][0].get("emails").is_none());
    // At the root: users then groups, paged over both; a filter on an attribute only groups
    // have matches no user.
    s.create_group("searchable", &[]).await;
    let r = s
        .post("/.search", json!({"startIndex": 5, "count": 10}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["totalResults"], 6);
    let kinds: Vec<&str> = r.json["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["meta"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["User", "Group"]);
    let r = s
        .post(
            "/.search",
            json!({"filter": "displayName eq \"searchable\""}),
        )
        .await;
    assert_eq!(r.json["totalResults"], 1, "{}", r.json);
    let r = s.post("/.search", json!({"filter": "members pr"})).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let r = s
        .post("/.search", json!({"filter": "nosuchattr eq \"x\""}))
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn several_tokens_are_valid_at_once_and_bare_tokens_work() {
    let hash = scim_sync::token::hash_token("rotated-token-abcdefgh");
    let s = Server::start_with(&format!("token_hashes = [\"{hash}\"]")).await;
    for token in [SCIM_TOKEN, "rotated-token-abcdefgh"] {
        let r = s
            .http
            .get(format!("{}/Users", s.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{token}");
    }
    let r = s
        .http
        .get(format!("{}/Users", s.base))
        .header("authorization", "rotated-token-abcdefgh")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "Okta may send the token without the Bearer scheme"
    );
    let r = s
        .http
        .get(format!("{}/Users", s.base))
        .bearer_auth("rotated-token-abcdefgX")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn concurrent_duplicate_creates_yield_exactly_one_user() {
    let s = Server::start().await;
    let futs = (0..16).map(|_| s.post("/Users", user("race@example.com")));
    let results = futures::future::join_all(futs).await;
    let created = results.iter().filter(|r| r.status == 201).count();
    let conflicts = results.iter().filter(|r| r.status == 409).count();
    assert_eq!((created, conflicts), (1, 15));
    assert_eq!(s.get("/Users?count=0").await.json["totalResults"], 1);
}

#[tokio::test]
async fn writes_survive_a_restart_and_feed_the_change_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.redb");
    let text = format!(
        "[scim]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n[portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\nretry_give_up_secs = 1\nretry_initial_ms = 50\n",
        store.display()
    );
    let config = Config::from_toml(&text, Path::new("t.toml"), &test_env()).unwrap();
    let (uid, gid) = {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = scim_sync::app::start(&config, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
        let base = format!("http://{}/scim/v2", running.scim_addr);
        let http = reqwest::Client::new();
        let u: Value = http
            .post(format!("{base}/Users"))
            .bearer_auth(SCIM_TOKEN)
            .json(&user("persist@example.com"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let uid = u["id"].as_str().unwrap().to_string();
        let g: Value = http
            .post(format!("{base}/Groups"))
            .bearer_auth(SCIM_TOKEN)
            .json(&json!({"displayName": "ws-Demo-role-member", "members": [{"value": uid}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let gid = g["id"].as_str().unwrap().to_string();
        // A second daemon on the same store file must refuse to start.
        let mut second = config.clone();
        second.scim.listen = "127.0.0.1:0".parse().unwrap();
        second.admin.listen = "127.0.0.1:0".parse().unwrap();
        let err = scim_sync::app::start(&second, futures::future::pending())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("already open"), "{err}");
        tx.send(()).unwrap();
        running.done.await.unwrap();
        (uid, gid)
    };
    let s = {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = scim_sync::app::start(&config, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
        (running, tx)
    };
    let base = format!("http://{}/scim/v2", s.0.scim_addr);
    let http = reqwest::Client::new();
    let r: Value = http
        .get(format!("{base}/Groups/{gid}"))
        .bearer_auth(SCIM_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["members"][0]["value"], uid.as_str());
    assert_eq!(s.0.store.groups_of(&uid).unwrap(), vec![gid.clone()]);
    let changes = s.0.store.changes_since(0, 100).unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        (changes[0].seq, changes[0].kind, changes[0].action),
        (1, ChangeKind::User, ChangeAction::Created)
    );
    assert_eq!((changes[1].seq, changes[1].kind), (2, ChangeKind::Group));
    assert_eq!(changes[1].users, vec![uid.clone()]);
    assert!(s.0.store.changes_since(2, 100).unwrap().is_empty());
    s.1.send(()).unwrap();
    s.0.done.await.unwrap();
}

#[tokio::test]
async fn membership_changes_are_recorded_per_changed_member() {
    let s = Server::start().await;
    let a = s.create_user("fa@example.com").await;
    let b = s.create_user("fb@example.com").await;
    let gid = s.create_group("feed", &[&a]).await;
    let before = s.store.last_seq().unwrap();
    s.patch(
        &format!("/Groups/{gid}"),
        patch_body(
            json!([{"op": "add", "path": "members", "value": [{"value": a}, {"value": b}]}]),
        ),
    )
    .await;
    let changes = s.store.changes_since(before, 10).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].action, ChangeAction::Members);
    assert_eq!(
        changes[0].users,
        vec![b.clone()],
        "only the member that changed"
    );
    // A PATCH that changes nothing is not a change.
    s.patch(
        &format!("/Groups/{gid}"),
        patch_body(json!([{"op": "add", "path": "members", "value": [{"value": b}]}])),
    )
    .await;
    assert_eq!(s.store.changes_since(before, 10).unwrap().len(), 1);
    // Renaming a group changes what membership means for every member.
    s.patch(
        &format!("/Groups/{gid}"),
        patch_body(json!([{"op": "replace", "path": "displayName", "value": "feed2"}])),
    )
    .await;
    let last = s.store.changes_since(before + 1, 10).unwrap();
    let mut users = last[0].users.clone();
    users.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(users, want);
}

#[tokio::test]
async fn admin_health_and_status() {
    let s = Server::start().await;
    s.create_user("adm@example.com").await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/healthz", s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/readyz", s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/admin/status", s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/admin/status", s.admin))
        .bearer_auth(crate::common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["store"]["users"], 1);
    assert_eq!(v["store"]["ok"], true);
    // The SCIM token is not an admin token.
    let r = http
        .get(format!("{}/admin/status", s.admin))
        .bearer_auth(SCIM_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// A create answers from the record it wrote, without reading it back; what it answers must be
/// what a GET of the new resource says, with the same query, down to the ETag and Location.
#[tokio::test]
async fn a_create_answers_what_a_get_then_reads() {
    let s = Server::start().await;
    let member = s.create_user("member@example.com").await;
    let group = |name: &str, members: &[&str]| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": name,
            "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>(),
        })
    };
    let cases = [
        ("/Users", "", user("new1@example.com")),
        (
            "/Users",
            "?attributes=userName,groups",
            user("new2@example.com"),
        ),
        (
            "/Users",
            "?excludedAttributes=emails",
            user("new3@example.com"),
        ),
        ("/Groups", "", group("no-members", &[])),
        ("/Groups", "", group("one-member", &[&member])),
        (
            "/Groups",
            "?excludedAttributes=members",
            group("hidden", &[&member]),
        ),
    ];
    for (endpoint, query, body) in cases {
        let created = s.post(&format!("{endpoint}{query}"), body).await;
        assert_eq!(created.status, 201, "{}", created.json);
        let id = created.json["id"].as_str().unwrap();
        let read = s.get(&format!("{endpoint}/{id}{query}")).await;
        assert_eq!(read.status, 200, "{}", read.json);
        assert_eq!(created.json, read.json, "{endpoint}{query}");
        assert_eq!(created.header("etag"), read.header("etag"));
        let location = created.header("location").unwrap();
        assert!(
            location.ends_with(&format!("{endpoint}/{id}")),
            "{location}"
        );
        if let Some(meta) = read.json["meta"]["location"].as_str() {
            assert_eq!(location, meta);
        }
    }
}
