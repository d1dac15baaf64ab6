//! End to end: the daemon (SCIM server, store, reconciler, admin API) against the control-plane
//! simulator, both over real HTTP, replaying IdP flows and asserting on the simulator's state and
//! request log.

use crate::common::{eventually, metrics, sim};
use crate::e2e::{self, owner, pair, Env, API_KEY};
use portkey_sim::{Faults, Quirks, Seed, SeedUser};
use serde_json::{json, Value};

const TEN_S: std::time::Duration = std::time::Duration::from_secs(10);

/// Sync settings that let flows run without the fuse getting in the way; fuse tests pass their own.
const RELAXED: &str = "max_deletions = 1000\nmax_deletion_percent = 100.0\n";

/// The simulator with `seed`, the daemon with `sync`; the client retries for up to 20 s (the
/// fault tests need it), and the startup run has happened.
async fn start(seed: Seed, sync: &str) -> Env {
    e2e::start_with(seed, Quirks::default(), sync, 20).await
}

fn seed_owner() -> Seed {
    owner()
}

impl Env {
    async fn admin_get(&self, path: &str) -> Value {
        self.admin().get(path).await
    }
}

#[tokio::test]
async fn okta_flow_converges_and_a_second_run_writes_nothing() {
    let e = start(seed_owner(), RELAXED).await;
    let alice = e.create_user("alice@example.com").await;
    let bob = e.create_user("bob@example.com").await;
    e.create_group("ws-Eng-Platform-role-member", &[&alice, &bob])
        .await;
    e.create_group("ws-Eng-Platform-role-admin", &[&alice])
        .await;
    let s = e.resync().await;
    assert_eq!(s["ok"], true, "{s}");
    assert_eq!(
        e.pending_invites().await,
        vec!["alice@example.com", "bob@example.com"]
    );
    e.accept_all().await;
    let s = e.resync().await;
    assert_eq!(s["ok"], true, "{s}");
    assert_eq!(
        e.members("Eng-Platform").await,
        vec![
            pair("alice@example.com", "admin"),
            pair("bob@example.com", "member")
        ],
        "the highest role wins"
    );
    e.clear_log().await;
    let s = e.resync().await;
    assert_eq!(s["planned"]["total"], 0, "{s}");
    assert_eq!(
        e.writes().await,
        Vec::<String>::new(),
        "a converged run makes no write calls"
    );
    let audit = e.admin_get("/admin/audit").await;
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["op"]["op"] == "invite"));
}

#[tokio::test]
async fn lifecycle_role_change_move_deactivate_reactivate_delete() {
    let e = start(seed_owner(), RELAXED).await;
    let alice = e.create_user("alice@example.com").await;
    let bob = e.create_user("bob@example.com").await;
    let a = e.create_group("ws-A-role-member", &[&alice, &bob]).await;
    let b = e.create_group("ws-B-role-manager", &[]).await;
    e.resync().await;
    e.accept_all().await;
    e.resync().await;
    assert_eq!(e.members("A").await.len(), 2);

    // Move bob from A to B.
    e.patch(
        &format!("/Groups/{a}"),
        json!([{"op": "Remove", "path": "members", "value": [{"value": bob}]}]),
    )
    .await;
    e.patch(
        &format!("/Groups/{b}"),
        json!([{"op": "Add", "path": "members", "value": [{"value": bob}]}]),
    )
    .await;
    let s = e.resync().await;
    assert_eq!(s["ok"], true, "{s}");
    assert_eq!(
        e.members("A").await,
        vec![pair("alice@example.com", "member")]
    );
    assert_eq!(
        e.members("B").await,
        vec![pair("bob@example.com", "manager")]
    );

    // Deactivate (Okta), then reactivate: removed, then invited again.
    e.patch(
        &format!("/Users/{bob}"),
        json!([{"op": "replace", "value": {"active": false}}]),
    )
    .await;
    e.resync().await;
    assert!(!e.users().await.iter().any(|u| u.0 == "bob@example.com"));
    e.patch(
        &format!("/Users/{bob}"),
        json!([{"op": "replace", "value": {"active": true}}]),
    )
    .await;
    e.resync().await;
    assert_eq!(e.pending_invites().await, vec!["bob@example.com"]);
    e.accept_all().await;
    e.resync().await;
    assert_eq!(
        e.members("B").await,
        vec![pair("bob@example.com", "manager")]
    );

    // Delete (Entra hard delete): the linked user leaves the organisation.
    e.scim(reqwest::Method::DELETE, &format!("/Users/{bob}"), None)
        .await;
    e.resync().await;
    assert!(!e.users().await.iter().any(|u| u.0 == "bob@example.com"));

    // Group rename: alice leaves A and joins C. Group delete: she leaves C.
    e.patch(
        &format!("/Groups/{a}"),
        json!([{"op": "replace", "path": "displayName", "value": "ws-C-role-member"}]),
    )
    .await;
    e.resync().await;
    assert!(e.members("A").await.is_empty());
    assert_eq!(
        e.members("C").await,
        vec![pair("alice@example.com", "member")]
    );
    e.scim(reqwest::Method::DELETE, &format!("/Groups/{a}"), None)
        .await;
    let s = e.resync().await;
    assert_eq!(s["ok"], true, "{s}");
    assert!(e.members("C").await.is_empty());

    // Entra app role, stringified as Entra sends it without the compatibility flag.
    e.patch(
        &format!("/Users/{alice}"),
        json!([{"op": "Add", "path": "roles", "value": [{"value": "{\"id\":\"1\",\"value\":\"Admin\",\"displayName\":\"Admin\"}"}]}]),
    )
    .await;
    e.resync().await;
    assert!(e
        .users()
        .await
        .contains(&pair("alice@example.com", "admin")));
    e.clear_log().await;
    let s = e.resync().await;
    assert_eq!(s["planned"]["total"], 0, "{s}");
    assert_eq!(e.writes().await, Vec::<String>::new());
}

#[tokio::test]
async fn drift_made_by_hand_is_repaired_by_a_full_resync() {
    let e = start(seed_owner(), RELAXED).await;
    let alice = e.create_user("alice@example.com").await;
    e.create_group("ws-Drift-role-manager", &[&alice]).await;
    e.resync().await;
    e.accept_all().await;
    e.resync().await;
    assert_eq!(
        e.members("Drift").await,
        vec![pair("alice@example.com", "manager")]
    );
    // Someone changes alice's role and removes her by hand, through the Admin API.
    let st = e.sim_state().await;
    let id = |table, field, value| {
        sim::rows(&st, table, field, value)[0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let ws = id("workspaces", "name", "Drift");
    let uid = id("users", "email", "alice@example.com");
    let r = e
        .http
        .delete(format!(
            "{}/admin/workspaces/{ws}/users/{uid}",
            e.sim.base_url()
        ))
        .header("x-portkey-api-key", API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(e.members("Drift").await.is_empty());
    let s = e.resync().await;
    assert_eq!(s["ok"], true, "{s}");
    assert_eq!(
        e.members("Drift").await,
        vec![pair("alice@example.com", "manager")]
    );
}

#[tokio::test]
async fn a_failed_page_read_makes_no_destructive_call() {
    let e = start(seed_owner(), RELAXED).await;
    let alice = e.create_user("alice@example.com").await;
    let bob = e.create_user("bob@example.com").await;
    e.create_group("ws-P-role-member", &[&alice, &bob]).await;
    e.resync().await;
    e.accept_all().await;
    e.resync().await;
    for id in [&alice, &bob] {
        e.patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    }
    e.set_faults(Faults {
        fail_page: Some(portkey_sim::FailPage {
            path: "/v1/admin/users".into(),
            page: 0,
        }),
        ..Default::default()
    })
    .await;
    e.clear_log().await;
    let s = e.resync().await;
    assert_eq!(s["ok"], false, "{s}");
    assert!(
        s["withheld"].as_u64().unwrap() > 0 || s["planned"]["destructive"] == 0,
        "{s}"
    );
    assert!(
        e.writes().await.iter().all(|w| !w.starts_with("DELETE")),
        "no destructive call after a failed read: {:?}",
        e.writes().await
    );
    assert_eq!(e.users().await.len(), 3);
    let status = e.admin_get("/admin/status").await;
    assert_eq!(status["control_plane"]["ok"], false, "{status}");
    // Once reads work again, the removals go through.
    e.set_faults(Faults::default()).await;
    let s = e.resync().await;
    assert_eq!(s["ok"], true, "{s}");
    assert_eq!(e.users().await, vec![pair("owner@example.com", "owner")]);
}

#[tokio::test]
async fn the_fuse_holds_a_mass_unassignment_until_approved() {
    let e = start(
        seed_owner(),
        "max_deletions = 3\nmax_deletion_percent = 50.0\n",
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(e.create_user(&format!("u{i}@example.com")).await);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let g = e.create_group("ws-Fuse-role-member", &refs).await;
    e.resync().await;
    e.accept_all().await;
    e.resync().await;
    assert_eq!(e.members("Fuse").await.len(), 10);
    // 90% unassigned at once.
    let gone: Vec<Value> = ids[1..].iter().map(|i| json!({"value": i})).collect();
    e.patch(
        &format!("/Groups/{g}"),
        json!([{"op": "remove", "path": "members", "value": gone}]),
    )
    .await;
    e.clear_log().await;
    let s = e.resync().await;
    assert_eq!(s["held"], 9, "{s}");
    assert_eq!(
        e.writes().await,
        Vec::<String>::new(),
        "nothing destructive was sent"
    );
    assert_eq!(e.members("Fuse").await.len(), 10);
    let status = e.admin_get("/admin/status").await;
    assert_eq!(
        status["reconciler"]["held_deletions"]
            .as_array()
            .unwrap()
            .len(),
        9
    );
    let plan = e.admin_get("/admin/plan").await;
    assert_eq!(plan["held_by_fuse"].as_array().unwrap().len(), 9);
    // Approval must name the held set that was reviewed.
    let digest = status["reconciler"]["held_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(plan["held_digest"], digest.as_str());
    let (bare, _) = e.admin().post("/admin/approve-deletions").await;
    assert_eq!(bare, 400, "an approval without a digest is refused");
    let (wrong, _) = e.approve("0000").await;
    assert_eq!(wrong, 409, "an approval of another set is refused");
    assert_eq!(e.members("Fuse").await.len(), 10);
    let (_, r) = e.approve(&digest).await;
    assert_eq!(r["approved"], 9, "{r}");
    assert_eq!(
        e.members("Fuse").await,
        vec![pair("u0@example.com", "member")]
    );
    // What was applied after approval says so.
    let audit = e.admin_get("/admin/audit?limit=1000").await;
    let approved = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["reason"].as_str().unwrap().contains("then approved"))
        .count();
    assert_eq!(approved, 9, "{audit}");
}

#[tokio::test]
async fn owners_and_protected_emails_survive_everything() {
    let mut seed = seed_owner();
    seed.users.push(SeedUser {
        email: "keep@example.com".into(),
        first_name: None,
        last_name: None,
        role: "admin".into(),
    });
    let e = start(
        seed,
        &format!("{RELAXED}protected_emails = [\"KEEP@example.com\"]\n"),
    )
    .await;
    // The IdP knows both, says "member", then deactivates them.
    let owner = e.create_user("owner@example.com").await;
    let keep = e.create_user("keep@example.com").await;
    e.resync().await;
    assert!(
        e.users()
            .await
            .contains(&pair("owner@example.com", "owner")),
        "owners are never demoted"
    );
    assert!(
        e.users().await.contains(&pair("keep@example.com", "admin")),
        "protected emails are never changed"
    );
    for id in [&owner, &keep] {
        e.patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    }
    e.clear_log().await;
    let s = e.resync().await;
    assert_eq!(s["ok"], true, "{s}");
    assert_eq!(e.writes().await, Vec::<String>::new());
    assert_eq!(
        e.users().await,
        vec![
            pair("keep@example.com", "admin"),
            pair("owner@example.com", "owner")
        ]
    );
}

#[tokio::test]
async fn with_5xx_and_429_it_converges_and_invites_each_person_once() {
    let e = start(seed_owner(), RELAXED).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(e.create_user(&format!("f{i}@example.com")).await);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    e.create_group("ws-Faulty-role-member", &refs).await;
    e.clear_log().await;
    e.set_faults(Faults {
        seed: 11,
        rate_5xx: 0.3,
        rate_429: 0.1,
        ..Default::default()
    })
    .await;
    let mut converged = false;
    for _ in 0..8 {
        let s = e.resync().await;
        if s["ok"] == true && e.pending_invites().await.len() == 12 {
            converged = true;
            break;
        }
    }
    assert!(converged, "did not converge within 8 runs");
    let log: Vec<Value> = e.log().await;
    for i in 0..12 {
        let email = format!("f{i}@example.com");
        let created = log
            .iter()
            .filter(|x| {
                x["method"] == "POST"
                    && x["path"] == "/v1/admin/users/invites"
                    && x["status"] == 200
            })
            .filter(|x| x["body"]["email"] == email.as_str())
            .count();
        assert_eq!(created, 1, "{email} invited exactly once");
    }
    e.set_faults(Faults::default()).await;
    e.accept_all().await;
    e.resync().await;
    assert_eq!(e.members("Faulty").await.len(), 12);
}

/// Parses Prometheus/OpenMetrics text: every sample line is `name[{labels}] value`, every
/// family has a TYPE, and the exposition ends with `# EOF`. Returns the family names.
fn parse_exposition(text: &str) -> std::collections::BTreeSet<String> {
    let mut families = std::collections::BTreeSet::new();
    assert!(text.ends_with("# EOF\n"), "missing # EOF");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "info", "unknown"].contains(&kind),
                "{line}"
            );
            families.insert(name.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
        }
        assert!(
            families.iter().any(|f| name.starts_with(f.as_str())),
            "sample {name} before its TYPE line"
        );
    }
    families
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_the_expected_families() {
    let e = start(seed_owner(), RELAXED).await;
    let alice = e.create_user("alice@example.com").await;
    e.create_group("ws-M-role-member", &[&alice]).await;
    e.resync().await;
    let (status, text) = metrics(&e.http, &e.admin).await;
    assert_eq!(status, 200);
    let families = parse_exposition(&text);
    for f in [
        "scim_sync_scim_requests",
        "scim_sync_scim_request_duration_seconds",
        "scim_sync_store_resources",
        "scim_sync_reconcile_runs",
        "scim_sync_reconcile_run_duration_seconds",
        "scim_sync_reconcile_ops",
        "scim_sync_held_deletions",
        "scim_sync_portkey_requests",
        "scim_sync_portkey_retries",
        "scim_sync_last_successful_full_sync_timestamp_seconds",
    ] {
        assert!(families.contains(f), "{f} missing from {families:?}");
    }
    assert!(text.contains("route=\"/Users\""), "{text}");
    assert!(
        text.contains("scim_sync_store_resources{resource=\"user\"}"),
        "{text}"
    );
    assert!(text.contains("op=\"invite\""), "{text}");
    assert!(
        text.contains("endpoint=\"POST /admin/users/invites\""),
        "{text}"
    );
}

/// Entra's provisioning flow as `shared/idp-scim-behaviors.md` §2 records it: PATCH-only updates
/// with capitalised ops and string booleans, groups created empty with members added by PATCH,
/// member removal by value list, app roles as stringified JSON, soft delete then hard delete.
#[tokio::test]
async fn entra_flow_converges() {
    let e = start(seed_owner(), RELAXED).await;
    let create = |upn: &str, nick: &str| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": nick, "userName": upn, "active": true,
            "emails": [{"primary": true, "type": "work", "value": upn}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": nick, "familyName": nick, "givenName": nick},
            "roles": []
        })
    };
    let carol = e
        .scim(
            reqwest::Method::POST,
            "/Users",
            Some(create("carol@example.com", "carol")),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dave = e
        .scim(
            reqwest::Method::POST,
            "/Users",
            Some(create("dave@example.com", "dave")),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Group created empty, with Entra's extra schema URN; members added by PATCH.
    let g = e
        .scim(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group",
                "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                "externalId": "g-1", "displayName": "ws-Research-role-member", "meta": {"resourceType": "Group"}})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    e.patch(
        &format!("/Groups/{g}"),
        json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": carol}, {"$ref": null, "value": dave}]}]),
    )
    .await;
    // App role: Admin for carol, stringified as Entra sends it in PATCH.
    e.patch(
        &format!("/Users/{carol}"),
        json!([{"op": "Add", "path": "roles", "value": [{"value": "{\"id\":\"06b0\",\"value\":\"Admin\",\"displayName\":\"Admin\"}"}]}]),
    )
    .await;
    e.resync().await;
    e.accept_all().await;
    let s = e.resync().await;
    assert_eq!(s["ok"], true, "{s}");
    assert!(e
        .users()
        .await
        .contains(&pair("carol@example.com", "admin")));
    assert_eq!(
        e.members("Research").await,
        vec![
            pair("carol@example.com", "admin"),
            pair("dave@example.com", "member")
        ],
        "carol joined through her invite and, as an org admin, shows as workspace admin"
    );
    // Legacy member removal: path `members` with a value list removes only dave.
    e.patch(
        &format!("/Groups/{g}"),
        json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": dave}]}]),
    )
    .await;
    e.resync().await;
    assert_eq!(
        e.members("Research").await,
        vec![pair("carol@example.com", "admin")]
    );
    assert!(
        e.users()
            .await
            .contains(&pair("dave@example.com", "member")),
        "still in the organisation"
    );
    // Soft delete (disable) with the string boolean, then hard delete.
    e.patch(
        &format!("/Users/{dave}"),
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    )
    .await;
    e.resync().await;
    assert!(!e.users().await.iter().any(|u| u.0 == "dave@example.com"));
    e.scim(reqwest::Method::DELETE, &format!("/Users/{dave}"), None)
        .await;
    // Role removed with the flag's replace dialect: carol goes back to member.
    e.patch(
        &format!("/Users/{carol}"),
        json!([{"op": "replace", "path": "roles", "value": []}]),
    )
    .await;
    let s = e.resync().await;
    assert_eq!(s["ok"], true, "{s}");
    assert!(e
        .users()
        .await
        .contains(&pair("carol@example.com", "member")));
    assert_eq!(
        e.members("Research").await,
        vec![pair("carol@example.com", "member")],
        "demoted in the same run: her workspace role is fixed too"
    );
    e.clear_log().await;
    let s = e.resync().await;
    assert_eq!(s["planned"]["total"], 0, "{s}");
    assert_eq!(e.writes().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_user_deleted_before_accepting_has_the_invite_revoked() {
    let e = start(seed_owner(), RELAXED).await;
    let erin = e.create_user("erin@example.com").await;
    e.resync().await;
    assert_eq!(e.pending_invites().await, vec!["erin@example.com"]);
    // The ledger knows the invite is ours, so a hard delete in the IdP revokes it.
    let audit = e.admin_get("/admin/audit").await;
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["op"]["email"] == "erin@example.com"));
    e.scim(reqwest::Method::DELETE, &format!("/Users/{erin}"), None)
        .await;
    let s = e.resync().await;
    assert_eq!(s["ok"], true, "{s}");
    assert!(e.pending_invites().await.is_empty(), "{s}");
}

#[tokio::test]
async fn a_scim_change_is_applied_by_a_targeted_run() {
    let e = start(seed_owner(), &format!("{RELAXED}debounce_ms = 200\n")).await;
    let alice = e.create_user("alice@example.com").await;
    let bob = e.create_user("bob@example.com").await;
    let g = e.create_group("ws-Targeted-role-member", &[&alice]).await;
    // The change-driven run after these writes invites both.
    eventually(TEN_S, || async { e.pending_invites().await.len() >= 2 }).await;
    assert_eq!(
        e.pending_invites().await,
        vec!["alice@example.com", "bob@example.com"]
    );
    e.accept_all().await;
    e.resync().await;
    assert_eq!(
        e.members("Targeted").await,
        vec![pair("alice@example.com", "member")]
    );

    e.clear_log().await;
    e.patch(
        &format!("/Groups/{g}"),
        json!([{"op": "add", "path": "members", "value": [{"value": bob}]}]),
    )
    .await;
    eventually(TEN_S, || async { e.members("Targeted").await.len() >= 2 }).await;
    assert_eq!(
        e.members("Targeted").await,
        vec![
            pair("alice@example.com", "member"),
            pair("bob@example.com", "member")
        ]
    );
    // The run records its summary just after its last call: wait for it.
    let run = e.admin().wait_run(TEN_S, |r| r["kind"] == "changes").await;
    assert_eq!(run["kind"], "changes", "{run}");
    let log: Vec<Value> = e.log().await;
    let writes: Vec<&Value> = log.iter().filter(|x| x["method"] != "GET").collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(
        log.len() <= 6,
        "a one-person change reads only that person: {} calls",
        log.len()
    );
    assert!(
        log.iter().all(|x| x["path"] != "/v1/admin/users"
            || x["query"].as_str().unwrap_or("").contains("email")),
        "no full user listing: {log:?}"
    );
}

#[tokio::test]
async fn dry_run_plans_through_the_same_path_and_writes_nothing() {
    let e = start(seed_owner(), &format!("{RELAXED}dry_run = true\n")).await;
    let alice = e.create_user("alice@example.com").await;
    e.create_group("ws-Dry-role-member", &[&alice]).await;
    e.clear_log().await;
    let s = e.resync().await;
    assert_eq!(s["dry_run"], true, "{s}");
    assert_eq!(s["planned"]["invite"], 1, "{s}");
    assert_eq!(s["planned"]["create_workspace"], 1, "{s}");
    assert!(s["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["result"] == "dry-run"));
    assert_eq!(e.writes().await, Vec::<String>::new());
    let plan = e.admin_get("/admin/plan").await;
    assert_eq!(plan["summary"]["total"], 2, "{plan}");
}

impl Env {
    /// Waits for a change-driven run other than `before` (a run id) and returns the
    /// control-plane calls logged since the last clear.
    async fn calls_of_next_change_run(&self, before: &str) -> Vec<Value> {
        self.admin()
            .wait_run(TEN_S, |r| r["run_id"] != before && r["kind"] == "changes")
            .await;
        self.log().await
    }
}

/// The budget: a change that touches one person costs at most 3 control-plane calls,
/// whether or not the API's user list carries `workspace_ids`. Prints the measured counts
/// (BENCHMARKS.md quotes them).
#[tokio::test]
async fn a_one_person_change_costs_at_most_three_calls() {
    for omit in [false, true] {
        let e = start(seed_owner(), &format!("{RELAXED}debounce_ms = 100\n")).await;
        e.patch_quirks(json!({"lists_omit_workspace_ids": omit}))
            .await;
        let alice = e.create_user("alice@example.com").await;
        let bob = e.create_user("bob@example.com").await;
        let g = e.create_group("ws-Calls-role-member", &[&alice]).await;
        e.resync().await;
        e.accept_all().await;
        e.resync().await;
        let mut measured = Vec::new();

        // A new hire.
        e.clear_log().await;
        let before = e.last_run_id().await;
        e.create_user("carol@example.com").await;
        measured.push(("new hire", e.calls_of_next_change_run(&before).await));

        // Added to a group.
        e.clear_log().await;
        let before = e.last_run_id().await;
        e.patch(
            &format!("/Groups/{g}"),
            json!([{"op": "add", "path": "members", "value": [{"value": bob}]}]),
        )
        .await;
        measured.push((
            "added to a group",
            e.calls_of_next_change_run(&before).await,
        ));

        // Removed from a group.
        e.clear_log().await;
        let before = e.last_run_id().await;
        e.patch(
            &format!("/Groups/{g}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]),
        )
        .await;
        measured.push((
            "removed from a group",
            e.calls_of_next_change_run(&before).await,
        ));

        // Deactivated.
        e.clear_log().await;
        let before = e.last_run_id().await;
        e.patch(
            &format!("/Users/{bob}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
        measured.push(("deactivated", e.calls_of_next_change_run(&before).await));

        for (what, calls) in &measured {
            let shown: Vec<String> = calls
                .iter()
                .map(|c| {
                    format!(
                        "{} {}",
                        c["method"].as_str().unwrap_or(""),
                        c["path"].as_str().unwrap_or("")
                    )
                })
                .collect();
            eprintln!(
                "calls per one-person change (lists_omit_workspace_ids={omit}): {what}: {} {shown:?}",
                calls.len()
            );
            assert!(
                calls.len() <= 3,
                "{what} (lists_omit_workspace_ids={omit}): {} calls: {shown:?}",
                calls.len()
            );
            assert!(
                calls.iter().any(|c| c["method"] != "GET"),
                "{what}: the change was applied: {shown:?}"
            );
        }
        assert_eq!(
            e.members("Calls").await,
            Vec::<(String, String)>::new(),
            "alice was removed, bob deactivated"
        );
    }
}
