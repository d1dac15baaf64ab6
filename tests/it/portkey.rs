//! Contract tests of the Portkey client against the simulator, over HTTP: the exact requests each
//! call sends (from the simulator's request log), pagination edges, and behaviour under faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use crate::common::sim::{self, Control};
use crate::common::LogCapture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use portkey_sim::{
    FailPage, Faults, Seed, SeedInvite, SeedInviteWorkspace, SeedMember, SeedUser, SeedWorkspace,
    SimOptions, SimServer,
};
use scim_sync::portkey::{
    ApiKey, Client, ClientConfig, CreateInvite, CreateWorkspace, ErrorKind, InviteFilter,
    InviteStatus, InviteWorkspace, MemberFilter, NewMember, OrgRole, RetryConfig, UserFilter,
    WorkspaceFilter, WorkspaceRole,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// One entry of `GET /_sim/requests`.
#[derive(Debug, Clone, Deserialize)]
struct Logged {
    method: String,
    path: String,
    query: String,
    body: Value,
    status: Option<u16>,
    #[serde(default)]
    fault: Option<String>,
}

impl Logged {
    fn line(&self) -> String {
        if self.query.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {}?{}", self.method, self.path, self.query)
        }
    }
}

struct Env {
    sim: SimServer,
    control: Control,
    client: Client,
    http: reqwest::Client,
}

fn fast_retry() -> RetryConfig {
    RetryConfig {
        initial_interval: Duration::from_millis(2),
        max_interval: Duration::from_millis(20),
        multiplier: 2.0,
        max_elapsed: Duration::from_secs(30),
        randomization_factor: 0.5,
    }
}

fn config(base_url: String) -> ClientConfig {
    ClientConfig {
        base_url,
        api_key: ApiKey::new("sim-key"),
        request_timeout: Duration::from_secs(10),
        retry: fast_retry(),
        max_in_flight: 8,
        requests_per_second: f64::INFINITY,
        page_size: 100,
    }
}

async fn env(opts: SimOptions) -> Env {
    env_with(opts, |_| {}).await
}

async fn env_with(opts: SimOptions, tweak: impl FnOnce(&mut ClientConfig)) -> Env {
    let sim = sim::spawn(opts).await;
    let mut cfg = config(sim.base_url());
    tweak(&mut cfg);
    let client = Client::new(cfg).unwrap();
    Env {
        control: Control::new(&sim),
        sim,
        client,
        http: reqwest::Client::new(),
    }
}

impl Env {
    async fn requests(&self) -> Vec<Logged> {
        self.control.requests_as().await
    }

    async fn lines(&self) -> Vec<String> {
        self.requests().await.iter().map(Logged::line).collect()
    }

    async fn clear(&self) {
        self.control.clear_requests().await;
    }

    async fn state(&self) -> Value {
        self.control.state().await
    }

    async fn faults(&self, faults: &Faults) {
        self.control.set_faults(faults).await;
    }

    /// The only request logged since the last `clear`.
    async fn single(&self) -> Logged {
        let reqs = self.requests().await;
        assert_eq!(reqs.len(), 1, "{reqs:#?}");
        reqs.into_iter().next().unwrap()
    }

    async fn user_id(&self, email: &str) -> String {
        let users = self
            .client
            .list_users(&UserFilter {
                email: Some(email.into()),
                role: None,
            })
            .await
            .unwrap();
        users[0].id.clone()
    }

    async fn workspace_id(&self, name: &str) -> String {
        self.client
            .find_workspace_by_name(name)
            .await
            .unwrap()
            .unwrap()
            .id
    }
}

fn seed_user(email: &str, role: &str) -> SeedUser {
    SeedUser {
        email: email.into(),
        first_name: None,
        last_name: None,
        role: role.into(),
    }
}

fn many_users(n: usize) -> Vec<SeedUser> {
    (0..n)
        .map(|i| seed_user(&format!("user{i:05}@example.com"), "member"))
        .collect()
}

/// A simulator holding `n` members and nothing else.
fn with_users(n: usize) -> SimOptions {
    SimOptions {
        seed: Some(Seed {
            users: many_users(n),
            ..Seed::default()
        }),
        ..SimOptions::default()
    }
}

/// Alice (member), Bob (admin), a workspace "Eng" (slug ws-eng) with Alice as member, a pending
/// invite for Carol into Eng.
fn small_seed() -> Seed {
    Seed {
        users: vec![
            seed_user("alice@example.com", "member"),
            seed_user("bob@example.com", "admin"),
        ],
        workspaces: vec![SeedWorkspace {
            name: "Eng".into(),
            slug: Some("ws-eng".into()),
            members: vec![SeedMember {
                email: "alice@example.com".into(),
                role: "member".into(),
            }],
        }],
        invites: vec![SeedInvite {
            email: "carol@example.com".into(),
            role: "member".into(),
            workspaces: vec![SeedInviteWorkspace {
                id: "ws-eng".into(),
                role: "manager".into(),
            }],
            status: None,
            expires_at: None,
        }],
    }
}

fn small() -> SimOptions {
    SimOptions {
        seed: Some(small_seed()),
        ..SimOptions::default()
    }
}

fn invite(email: &str) -> CreateInvite {
    CreateInvite {
        email: email.into(),
        role: OrgRole::Member,
        workspaces: vec![InviteWorkspace {
            id: "ws-eng".into(),
            role: WorkspaceRole::Manager,
        }],
        workspace_api_key_details: None,
    }
}

// ---- contract: the exact request of every call ------------------------------------------------

#[tokio::test]
async fn list_users_contract() {
    let e = env(small()).await;
    let users = e.client.list_users(&UserFilter::default()).await.unwrap();
    let emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
    assert_eq!(emails, ["alice@example.com", "bob@example.com"]);
    assert_eq!(users[1].role, OrgRole::Admin);
    let r = e.single().await;
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.query.as_str()),
        ("GET", "/v1/admin/users", "pageSize=100&currentPage=0")
    );
    assert_eq!(r.body, Value::Null);

    e.clear().await;
    let found = e
        .client
        .list_users(&UserFilter {
            email: Some("Bob@Example.com".into()),
            role: Some(OrgRole::Admin),
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].email, "bob@example.com");
    assert_eq!(
        e.lines().await,
        ["GET /v1/admin/users?email=Bob%40Example.com&role=admin&pageSize=100&currentPage=0"]
    );
}

#[tokio::test]
async fn user_get_update_delete_contract() {
    let e = env(small()).await;
    let alice = e.user_id("alice@example.com").await;
    e.clear().await;

    let u = e.client.get_user(&alice).await.unwrap();
    assert_eq!(u.email, "alice@example.com");
    assert_eq!(e.lines().await, [format!("GET /v1/admin/users/{alice}")]);

    e.clear().await;
    e.client
        .update_user_role(&alice, &OrgRole::Admin)
        .await
        .unwrap();
    let r = e.single().await;
    assert_eq!(
        (r.method.as_str(), r.path.clone(), r.query.as_str()),
        ("PUT", format!("/v1/admin/users/{alice}"), "")
    );
    assert_eq!(r.body, json!({"role": "admin"}));
    assert_eq!(
        e.client.get_user(&alice).await.unwrap().role,
        OrgRole::Admin
    );

    // The API rejects a PUT of the current role; with no uncertain attempt before it, the
    // client reports it.
    let err = e
        .client
        .update_user_role(&alice, &OrgRole::Admin)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.is_permanent());

    e.clear().await;
    e.client.delete_user(&alice).await.unwrap();
    let r = e.single().await;
    assert_eq!(
        (r.method.as_str(), r.path.clone(), r.body.clone()),
        ("DELETE", format!("/v1/admin/users/{alice}"), Value::Null)
    );
    let err = e.client.get_user(&alice).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = e.client.delete_user(&alice).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.call(), format!("DELETE /admin/users/{alice}"));
}

#[tokio::test]
async fn invites_contract() {
    let e = env(small()).await;

    let pending = e
        .client
        .list_invites(&InviteFilter {
            email: None,
            role: None,
            status: Some(InviteStatus::Pending),
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].email, "carol@example.com");
    assert_eq!(pending[0].workspaces.len(), 1);
    assert_eq!(pending[0].workspaces[0].role, Some(WorkspaceRole::Manager));
    assert_eq!(
        e.lines().await,
        ["GET /v1/admin/users/invites?status=pending&pageSize=100&currentPage=0"]
    );

    e.clear().await;
    let created = e
        .client
        .create_invite(&invite("dave@example.com"))
        .await
        .unwrap();
    assert!(created.invite_link.is_some());
    let r = e.single().await;
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.query.as_str()),
        ("POST", "/v1/admin/users/invites", "")
    );
    assert_eq!(
        r.body,
        json!({"email": "dave@example.com", "role": "member", "workspaces": [{"id": "ws-eng", "role": "manager"}]})
    );

    e.clear().await;
    let found = e
        .client
        .find_pending_invite("DAVE@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, created.id);
    assert_eq!(
        e.lines().await,
        ["GET /v1/admin/users/invites?email=DAVE%40example.com&status=pending&pageSize=100&currentPage=0"]
    );

    e.clear().await;
    let link = e.client.resend_invite(&created.id).await.unwrap();
    assert!(link.is_some());
    let r = e.single().await;
    assert_eq!(
        (r.method.as_str(), r.path.clone(), r.body.clone()),
        (
            "POST",
            format!("/v1/admin/users/invites/{}/resend", created.id),
            Value::Null
        )
    );

    e.clear().await;
    e.client.delete_invite(&created.id).await.unwrap();
    let r = e.single().await;
    assert_eq!(
        (r.method.as_str(), r.path.clone()),
        ("DELETE", format!("/v1/admin/users/invites/{}", created.id))
    );
    assert!(e
        .client
        .find_pending_invite("dave@example.com")
        .await
        .unwrap()
        .is_none());

    // A second invite for a pending email is a conflict the caller can recognise.
    let err = e
        .client
        .create_invite(&invite("carol@example.com"))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(err.call(), "POST /admin/users/invites");
}

#[tokio::test]
async fn workspaces_contract() {
    let e = env(small()).await;

    let all = e
        .client
        .list_workspaces(&WorkspaceFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].slug.as_deref(), Some("ws-eng"));
    assert_eq!(
        e.lines().await,
        ["GET /v1/admin/workspaces?page_size=100&current_page=0"]
    );

    e.clear().await;
    assert!(e
        .client
        .find_workspace_by_name("Engineering Team")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        e.lines().await,
        ["GET /v1/admin/workspaces?exact_name=Engineering+Team&page_size=100&current_page=0"]
    );

    e.clear().await;
    let ws = e
        .client
        .create_workspace(&CreateWorkspace {
            name: "Engineering Team".into(),
            description: Some("platform".into()),
        })
        .await
        .unwrap();
    assert_eq!(ws.name, "Engineering Team");
    let r = e.single().await;
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/admin/workspaces")
    );
    assert_eq!(
        r.body,
        json!({"name": "Engineering Team", "description": "platform"})
    );

    e.clear().await;
    let got = e.client.get_workspace(&ws.id).await.unwrap();
    assert_eq!(got.id, ws.id);
    assert_eq!(
        e.lines().await,
        [format!("GET /v1/admin/workspaces/{}", ws.id)]
    );
    // The slug addresses it too.
    let slug = ws.slug.clone().unwrap();
    assert_eq!(e.client.get_workspace(&slug).await.unwrap().id, ws.id);
    let err = e.client.get_workspace("ws-nope").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn members_contract() {
    let e = env(small()).await;
    let ws = e.workspace_id("Eng").await;
    let alice = e.user_id("alice@example.com").await;
    let dave = portkey_sim_user(&e, "dave@example.com", "member").await;
    e.clear().await;

    let members = e
        .client
        .list_members(&ws, &MemberFilter::default())
        .await
        .unwrap();
    // Alice explicitly; Bob (org admin) implicitly, as admin.
    let mut rows: Vec<(String, WorkspaceRole)> = members
        .iter()
        .map(|m| (m.email.clone().unwrap(), m.role.clone()))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        rows,
        [
            ("alice@example.com".to_owned(), WorkspaceRole::Member),
            ("bob@example.com".to_owned(), WorkspaceRole::Admin)
        ]
    );
    assert_eq!(
        e.lines().await,
        [format!(
            "GET /v1/admin/workspaces/{ws}/users?page_size=100&current_page=0"
        )]
    );

    e.clear().await;
    let filtered = e
        .client
        .list_members(
            &ws,
            &MemberFilter {
                email: Some("alice@example.com".into()),
                role: Some(WorkspaceRole::Member),
            },
        )
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].id, alice);
    assert_eq!(
        e.lines().await,
        [format!(
            "GET /v1/admin/workspaces/{ws}/users?email=alice%40example.com&role=member&page_size=100&current_page=0"
        )]
    );

    e.clear().await;
    e.client
        .add_members(
            &ws,
            &[NewMember {
                id: dave.clone(),
                role: WorkspaceRole::Manager,
            }],
        )
        .await
        .unwrap();
    let r = e.single().await;
    assert_eq!(
        (r.method.as_str(), r.path.clone()),
        ("POST", format!("/v1/admin/workspaces/{ws}/users"))
    );
    assert_eq!(r.body, json!({"users": [{"id": dave, "role": "manager"}]}));

    e.clear().await;
    e.client.add_members(&ws, &[]).await.unwrap();
    assert!(e.requests().await.is_empty(), "an empty add sends nothing");

    e.client
        .update_member_role(&ws, &dave, &WorkspaceRole::Admin)
        .await
        .unwrap();
    let r = e.single().await;
    assert_eq!(
        (r.method.as_str(), r.path.clone()),
        ("PUT", format!("/v1/admin/workspaces/{ws}/users/{dave}"))
    );
    assert_eq!(r.body, json!({"role": "admin"}));

    e.clear().await;
    e.client.remove_member(&ws, &dave).await.unwrap();
    let r = e.single().await;
    assert_eq!(
        (r.method.as_str(), r.path.clone(), r.body.clone()),
        (
            "DELETE",
            format!("/v1/admin/workspaces/{ws}/users/{dave}"),
            Value::Null
        )
    );
    let err = e.client.remove_member(&ws, &dave).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

/// Creates an org user through the simulator's control route; returns its id.
async fn portkey_sim_user(e: &Env, email: &str, role: &str) -> String {
    let v: Value = e
        .http
        .post(format!("{}/users", e.sim.control_url()))
        .json(&json!({"email": email, "role": role}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn missing_as_403_is_not_found_too() {
    let e = env(SimOptions {
        missing_is_403: true,
        ..small()
    })
    .await;
    let err = e
        .client
        .delete_user("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(err.error_code(), Some("AB03"));
    assert!(err.is_not_found());
}

#[tokio::test]
async fn wrong_key_is_a_permanent_401() {
    let e = env_with(small(), |cfg| cfg.api_key = ApiKey::new("not-the-key")).await;
    let err = e
        .client
        .list_users(&UserFilter::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(err.is_permanent());
    assert_eq!(e.requests().await.len(), 1, "a 401 is not retried");
}

// ---- pagination ----------------------------------------------------------------------------------

#[tokio::test]
async fn user_pagination_edges() {
    for (n, pages) in [(0, 1), (1, 1), (100, 1), (101, 2), (10_000, 100)] {
        let e = env(with_users(n)).await;
        let users = e.client.list_users(&UserFilter::default()).await.unwrap();
        assert_eq!(users.len(), n, "{n} users");
        let mut emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
        emails.dedup();
        assert_eq!(emails.len(), n);
        let lines = e.lines().await;
        assert_eq!(lines.len(), pages, "{n} users: {lines:?}");
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(
                l,
                &format!("GET /v1/admin/users?pageSize=100&currentPage={i}")
            );
        }
    }
}

#[tokio::test]
async fn member_and_invite_pagination_edges() {
    for (n, pages) in [(0, 1), (1, 1), (100, 1), (101, 2), (10_000, 100)] {
        let users = many_users(n);
        let members = users
            .iter()
            .map(|u| SeedMember {
                email: u.email.clone(),
                role: "member".into(),
            })
            .collect();
        let invites = (0..n)
            .map(|i| SeedInvite {
                email: format!("invitee{i:05}@example.com"),
                role: "member".into(),
                workspaces: vec![],
                status: None,
                expires_at: None,
            })
            .collect();
        let e = env(SimOptions {
            seed: Some(Seed {
                users,
                workspaces: vec![SeedWorkspace {
                    name: "Big".into(),
                    slug: Some("ws-big".into()),
                    members,
                }],
                invites,
            }),
            ..SimOptions::default()
        })
        .await;
        e.clear().await;
        let got = e
            .client
            .list_members("ws-big", &MemberFilter::default())
            .await
            .unwrap();
        assert_eq!(got.len(), n);
        let lines = e.lines().await;
        assert_eq!(lines.len(), pages, "{n} members");
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(
                l,
                &format!("GET /v1/admin/workspaces/ws-big/users?page_size=100&current_page={i}")
            );
        }

        e.clear().await;
        let got = e
            .client
            .list_invites(&InviteFilter::default())
            .await
            .unwrap();
        assert_eq!(got.len(), n);
        assert_eq!(e.requests().await.len(), pages, "{n} invites");
    }
}

#[tokio::test]
async fn workspace_pagination_edges() {
    for (n, pages) in [(0, 1), (1, 1), (100, 1), (101, 2), (1_000, 10)] {
        let e = env(SimOptions {
            seed: Some(Seed {
                workspaces: (0..n)
                    .map(|i| SeedWorkspace {
                        name: format!("ws {i}"),
                        slug: None,
                        members: vec![],
                    })
                    .collect(),
                ..Seed::default()
            }),
            ..SimOptions::default()
        })
        .await;
        let got = e
            .client
            .list_workspaces(&WorkspaceFilter::default())
            .await
            .unwrap();
        assert_eq!(got.len(), n);
        let lines = e.lines().await;
        assert_eq!(lines.len(), pages);
        assert_eq!(
            lines.last().unwrap(),
            &format!(
                "GET /v1/admin/workspaces?page_size=100&current_page={}",
                pages - 1
            )
        );
    }
}

#[tokio::test]
async fn server_page_cap_below_the_asked_size() {
    let e = env_with(
        SimOptions {
            max_page_size: 30,
            ..with_users(101)
        },
        |cfg| cfg.page_size = 100,
    )
    .await;
    let users = e.client.list_users(&UserFilter::default()).await.unwrap();
    assert_eq!(users.len(), 101);
    assert_eq!(e.requests().await.len(), 4);
}

#[tokio::test]
async fn a_failing_middle_page_fails_the_whole_list() {
    let e = env_with(
        SimOptions {
            faults: Faults {
                fail_page: Some(FailPage {
                    path: "/v1/admin/users".into(),
                    page: 1,
                }),
                ..Faults::default()
            },
            ..with_users(250)
        },
        |cfg| cfg.retry.max_elapsed = Duration::from_millis(300),
    )
    .await;
    let err = e
        .client
        .list_users(&UserFilter::default())
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.call(), "GET /admin/users");
    let reqs = e.requests().await;
    assert!(
        reqs.iter().all(|r| !r.query.ends_with("currentPage=2")),
        "stops at the failing page"
    );
    assert!(
        reqs.iter()
            .filter(|r| r.fault.as_deref() == Some("fail_page"))
            .count()
            > 1,
        "the page was retried"
    );
}

// ---- faults --------------------------------------------------------------------------------------

#[tokio::test]
async fn every_call_succeeds_through_5xx_and_429() {
    let (mut n5xx, mut n429) = (0, 0);
    for seed in [7, 11, 23, 42] {
        let (a, b) = chaos_run(seed).await;
        n5xx += a;
        n429 += b;
    }
    assert!(
        n5xx >= 10 && n429 >= 2,
        "{n5xx} 5xx and {n429} 429 injected"
    );
}

/// Runs every call once under faults; returns how many 5xx and 429 were injected.
async fn chaos_run(fault_seed: u64) -> (usize, usize) {
    let e = env_with(
        SimOptions {
            seed: Some({
                let mut seed = small_seed();
                seed.users.extend(many_users(250));
                seed
            }),
            faults: Faults {
                seed: fault_seed,
                rate_5xx: 0.3,
                rate_429: 0.1,
                ..Faults::default()
            },
            ..SimOptions::default()
        },
        |cfg| cfg.page_size = 50,
    )
    .await;
    let c = &e.client;
    let users = c.list_users(&UserFilter::default()).await.unwrap();
    assert_eq!(users.len(), 252);
    let alice = users
        .iter()
        .find(|u| u.email == "alice@example.com")
        .unwrap()
        .id
        .clone();
    let other = users
        .iter()
        .find(|u| u.email == "user00001@example.com")
        .unwrap()
        .id
        .clone();
    c.get_user(&alice).await.unwrap();
    c.update_user_role(&alice, &OrgRole::Admin).await.unwrap();
    let created = c.create_invite(&invite("dave@example.com")).await.unwrap();
    c.resend_invite(&created.id).await.unwrap();
    let invites = c.list_invites(&InviteFilter::default()).await.unwrap();
    assert_eq!(invites.len(), 2);
    c.delete_invite(&created.id).await.unwrap();
    let ws = c
        .create_workspace(&CreateWorkspace {
            name: "Chaos".into(),
            description: None,
        })
        .await
        .unwrap();
    c.get_workspace(&ws.id).await.unwrap();
    assert_eq!(
        c.list_workspaces(&WorkspaceFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );
    let adds: Vec<NewMember> = users
        .iter()
        .filter(|u| u.role == OrgRole::Member && u.id != alice)
        .take(120)
        .map(|u| NewMember {
            id: u.id.clone(),
            role: WorkspaceRole::Member,
        })
        .collect();
    c.add_members(&ws.id, &adds).await.unwrap();
    c.update_member_role(&ws.id, &other, &WorkspaceRole::Manager)
        .await
        .unwrap();
    let members = c
        .list_members(&ws.id, &MemberFilter::default())
        .await
        .unwrap();
    // 120 added, plus the org admins (Bob, and Alice since her promotion) implicitly.
    assert_eq!(members.len(), 122);
    c.remove_member(&ws.id, &other).await.unwrap();
    c.delete_user(&other).await.unwrap();

    let reqs = e.requests().await;
    let count = |f: &str| {
        reqs.iter()
            .filter(|r| r.fault.as_deref() == Some(f))
            .count()
    };
    assert!(
        count("5xx") + count("429") >= 3,
        "faults were injected: {} 5xx and {} 429 of {} requests",
        count("5xx"),
        count("429"),
        reqs.len()
    );
    let injected = (count("5xx"), count("429"));
    // Retries never created anything twice.
    let state = e.state().await;
    let chaos = sim::rows(&state, "workspaces", "name", "Chaos").len();
    assert_eq!(chaos, 1);
    let dave = sim::rows(&state, "invites", "email", "dave@example.com").len();
    assert_eq!(dave, 1);
    injected
}

#[tokio::test]
async fn hanging_requests_time_out_and_are_retried() {
    let e = env_with(
        SimOptions {
            faults: Faults {
                seed: 3,
                hang_rate: 0.2,
                ..Faults::default()
            },
            ..with_users(300)
        },
        |cfg| cfg.request_timeout = Duration::from_millis(200),
    )
    .await;
    let users = e.client.list_users(&UserFilter::default()).await.unwrap();
    assert_eq!(users.len(), 300);
    let body = CreateInvite {
        workspaces: vec![],
        ..invite("hang@example.com")
    };
    e.client.create_invite(&body).await.unwrap();
    let state = e.state().await;
    let n = sim::rows(&state, "invites", "email", "hang@example.com").len();
    assert_eq!(n, 1);
}

/// The small organisation on a simulator that carries out each `route` request and then
/// answers it with a 500.
async fn applied_then_500(route: &str) -> Env {
    env(SimOptions {
        faults: Faults {
            apply_then_500: vec![route.into()],
            ..Faults::default()
        },
        ..small()
    })
    .await
}

#[tokio::test]
async fn invite_applied_then_500_exists_once() {
    let e = applied_then_500("POST /v1/admin/users/invites").await;
    let created = e
        .client
        .create_invite(&invite("erin@example.com"))
        .await
        .unwrap();
    assert_eq!(created.invite_link, None, "found by the check read");
    let state = e.state().await;
    let erin = sim::rows(&state, "invites", "email", "erin@example.com");
    assert_eq!(erin.len(), 1);
    assert_eq!(erin[0]["id"], created.id);
    let lines = e.lines().await;
    assert_eq!(
        lines,
        [
            "POST /v1/admin/users/invites".to_owned(),
            "GET /v1/admin/users/invites?email=erin%40example.com&status=pending&pageSize=100&currentPage=0"
                .to_owned()
        ]
    );
}

#[tokio::test]
async fn workspace_applied_then_500_exists_once() {
    let e = applied_then_500("POST /v1/admin/workspaces").await;
    let ws = e
        .client
        .create_workspace(&CreateWorkspace {
            name: "Once".into(),
            description: None,
        })
        .await
        .unwrap();
    let state = e.state().await;
    let once = sim::rows(&state, "workspaces", "name", "Once");
    assert_eq!(once.len(), 1);
    assert_eq!(once[0]["id"], ws.id);
}

#[tokio::test]
async fn writes_applied_then_500_are_done_not_repeated() {
    let e = env(small()).await;
    let ws = e.workspace_id("Eng").await;
    let alice = e.user_id("alice@example.com").await;
    let dave = portkey_sim_user(&e, "dave@example.com", "member").await;
    e.faults(&Faults {
        apply_then_500: vec![
            "PUT /v1/admin/users/*".into(),
            "POST /v1/admin/workspaces/*/users".into(),
            "PUT /v1/admin/workspaces/*/users/*".into(),
            "DELETE /v1/admin/workspaces/*/users/*".into(),
            "DELETE /v1/admin/users/*".into(),
            "DELETE /v1/admin/users/invites/*".into(),
        ],
        ..Faults::default()
    })
    .await;

    // PUT role: the retry is rejected as "same role"; the re-read shows it is done.
    e.client
        .update_user_role(&alice, &OrgRole::Admin)
        .await
        .unwrap();
    assert_eq!(
        e.client.get_user(&alice).await.unwrap().role,
        OrgRole::Admin
    );

    // Bulk add: the re-read shows Dave is in, nothing is re-sent.
    e.clear().await;
    e.client
        .add_members(
            &ws,
            &[NewMember {
                id: dave.clone(),
                role: WorkspaceRole::Member,
            }],
        )
        .await
        .unwrap();
    let posts = e
        .requests()
        .await
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 1);

    e.client
        .update_member_role(&ws, &dave, &WorkspaceRole::Manager)
        .await
        .unwrap();
    e.client.remove_member(&ws, &dave).await.unwrap();
    let members = e
        .client
        .list_members(&ws, &MemberFilter::default())
        .await
        .unwrap();
    assert!(members.iter().all(|m| m.id != dave));

    let carol = e
        .client
        .find_pending_invite("carol@example.com")
        .await
        .unwrap()
        .unwrap();
    e.client.delete_invite(&carol.id).await.unwrap();
    e.client.delete_user(&dave).await.unwrap();
    let err = e.client.get_user(&dave).await.unwrap_err();
    assert!(err.is_not_found());
}

#[tokio::test]
async fn retry_after_is_honoured() {
    // Every request is refused with Retry-After: 1 until the faults are lifted 200 ms in; the
    // client's own backoff is milliseconds, so a wait of a second can only come from the header.
    let e = env(SimOptions {
        faults: Faults {
            rate_429: 1.0,
            retry_after_secs: Some(1),
            ..Faults::default()
        },
        ..small()
    })
    .await;
    let http = e.http.clone();
    let control = e.sim.control_url();
    let lift = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        http.put(format!("{control}/faults"))
            .json(&Faults::default())
            .send()
            .await
            .unwrap();
    });
    let start = tokio::time::Instant::now();
    let users = e.client.list_users(&UserFilter::default()).await.unwrap();
    let waited = start.elapsed();
    lift.await.unwrap();
    assert_eq!(users.len(), 2);
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let reqs = e.requests().await;
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(reqs[0].status, Some(429));
    assert_eq!(reqs[1].status, Some(200));
}

#[tokio::test]
async fn rate_limit_paces_requests() {
    let e = env_with(
        SimOptions {
            max_page_size: 50,
            ..with_users(1_000)
        },
        |cfg| {
            cfg.page_size = 50;
            cfg.requests_per_second = 20.0;
        },
    )
    .await;
    let start = tokio::time::Instant::now();
    let users = e.client.list_users(&UserFilter::default()).await.unwrap();
    assert_eq!(users.len(), 1_000);
    // 20 pages at 20/s with a burst of 20: no wait needed; 20 more must take about a second.
    let again = e.client.list_users(&UserFilter::default()).await.unwrap();
    assert_eq!(again.len(), 1_000);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

// ---- logging -------------------------------------------------------------------------------------

#[tokio::test]
async fn logs_of_a_failing_run_never_hold_the_key() {
    const SECRET: &str = "pk-live-0123456789abcdef-SECRET";
    let capture = LogCapture::start(tracing::Level::TRACE);

    // Wrong key (every call 401), then the right key under heavy faults with an early give-up.
    let e = env_with(small(), |cfg| cfg.api_key = ApiKey::new(SECRET)).await;
    let err = e
        .client
        .list_users(&UserFilter::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    let err_text = format!("{err} {err:?} {:?} {:?}", e.client, e.client.config());
    assert!(!err_text.contains(SECRET), "{err_text}");

    let mut cfg = e.client.config().clone();
    cfg.api_key = ApiKey::new(SECRET);
    cfg.retry.max_elapsed = Duration::from_millis(100);
    e.faults(&Faults {
        seed: 1,
        rate_5xx: 1.0,
        ..Faults::default()
    })
    .await;
    let failing = Client::new(cfg).unwrap();
    assert!(failing
        .create_invite(&invite("x@example.com"))
        .await
        .is_err());
    assert!(failing.delete_user("u-1").await.is_err());

    let logs = capture.text();
    assert!(logs.contains("portkey call failed"), "{logs}");
    assert!(logs.contains("status=401"), "{logs}");
    assert!(logs.contains("attempt="), "{logs}");
    assert!(logs.contains("duration_ms="), "{logs}");
    assert!(logs.contains(r#"path="/admin/users/invites""#), "{logs}");
    assert!(!logs.contains(SECRET), "the API key leaked into the logs");
    assert!(
        !logs.contains("0123456789abcdef"),
        "part of the API key leaked"
    );
}

// ---- hand-written HTTP servers, for answers the simulator never gives ------------------------

/// What a [`raw_server`] sends once it has read a request's head.
#[derive(Clone)]
enum Raw {
    /// These bytes, then the connection is closed.
    Fixed(Vec<u8>),
    /// This status with a chunked body that never ends: only a client that stops reading
    /// finishes the exchange before its timeout.
    Endless(u16),
}

struct RawServer {
    addr: std::net::SocketAddr,
    /// Counted on accept, before anything is read: a client that so much as connects shows.
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl RawServer {
    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

async fn raw_server(answer: Raw) -> RawServer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (conns, reqs) = (Arc::clone(&connections), Arc::clone(&requests));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            conns.fetch_add(1, Ordering::SeqCst);
            let reqs = Arc::clone(&reqs);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                reqs.fetch_add(1, Ordering::SeqCst);
                match answer {
                    Raw::Fixed(bytes) => {
                        let _ = stream.write_all(&bytes).await;
                        let _ = stream.shutdown().await;
                    }
                    Raw::Endless(status) => {
                        let head = format!(
                            "HTTP/1.1 {status} Whatever\r\ncontent-type: application/json\r\n\
                             transfer-encoding: chunked\r\n\r\n"
                        );
                        if stream.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let mut chunk = b"400\r\n".to_vec();
                        chunk.extend_from_slice(&[b' '; 1024]);
                        chunk.extend_from_slice(b"\r\n");
                        // Bounded only so a broken client cannot keep the test running forever.
                        for _ in 0..256 * 1024 {
                            if stream.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    RawServer {
        addr,
        connections,
        requests,
    }
}

fn http_response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn redirects_are_refused_and_never_followed() {
    let elsewhere = raw_server(Raw::Fixed(http_response(
        "200 OK",
        &[("content-type", "application/json")],
        br#"{"id":"u1","email":"u1@example.com","role":"member"}"#,
    )))
    .await;
    let location = format!(
        "http://{}/v1/admin/users/u1?email=alice%40example.com",
        elsewhere.addr
    );
    for status in [
        "301 Moved Permanently",
        "302 Found",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ] {
        let origin = raw_server(Raw::Fixed(http_response(
            status,
            &[("location", &location)],
            b"",
        )))
        .await;
        let client = Client::new(config(origin.base_url())).unwrap();

        let err = client.get_user("u1").await.unwrap_err();
        let code: u16 = status[..3].parse().unwrap();
        assert_eq!(err.status(), Some(code), "{err}");
        assert!(err.is_permanent(), "{err}");
        assert_eq!(err.attempts(), 1, "{err}");
        assert_eq!(err.metric_label(), "redirect");
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "HTTP {code} redirect to http://{}/v1/admin/users/u1 not followed",
                elsewhere.addr
            )),
            "{text}"
        );
        assert!(
            !text.contains("alice"),
            "the Location's query leaked: {text}"
        );

        // A create is not retried or re-checked into following it either.
        let err = client
            .create_invite(&invite("new@example.com"))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(code), "{err}");
        assert!(err.is_permanent(), "{err}");
        let err = client.delete_user("u1").await.unwrap_err();
        assert_eq!(err.status(), Some(code), "{err}");
        assert_eq!(origin.requests.load(Ordering::SeqCst), 3, "{status}");
    }
    assert_eq!(
        elsewhere.connections.load(Ordering::SeqCst),
        0,
        "the redirect target was contacted (and would have seen the API key)"
    );
}

#[tokio::test]
async fn a_redirect_without_location_is_refused_too() {
    let origin = raw_server(Raw::Fixed(http_response("302 Found", &[], b""))).await;
    let client = Client::new(config(origin.base_url())).unwrap();
    let err = client.list_users(&UserFilter::default()).await.unwrap_err();
    assert_eq!(err.status(), Some(302));
    assert!(err.is_permanent());
    assert!(
        err.to_string().contains("HTTP 302 redirect not followed"),
        "{err}"
    );
}

#[tokio::test]
async fn response_bodies_are_capped() {
    assert_eq!(
        Client::new(config("http://127.0.0.1:9/v1".into()))
            .unwrap()
            .max_response_bytes(),
        16 * 1024 * 1024
    );
    let user = br#"{"id":"u1","email":"u1@example.com","role":"member"}"#;
    let capped =
        |base: String, cap: usize| Client::with_max_response_bytes(config(base), cap).unwrap();

    // Exactly at the cap: read.
    let server = raw_server(Raw::Fixed(http_response(
        "200 OK",
        &[("content-type", "application/json")],
        user,
    )))
    .await;
    let got = capped(server.base_url(), user.len())
        .get_user("u1")
        .await
        .unwrap();
    assert_eq!(got.id, "u1");

    // One byte over, announced by Content-Length: refused, not retried.
    let err = capped(server.base_url(), user.len() - 1)
        .get_user("u1")
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::TooLarge { status: 200, limit } if *limit == user.len() - 1),
        "{err}"
    );
    assert!(err.is_permanent());
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.metric_label(), "too_large");
    assert!(err.to_string().contains("exceeds the"), "{err}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);

    // No length announced and no end: reading stops at the cap instead of running into the
    // timeout (or out of memory).
    let endless = raw_server(Raw::Endless(200)).await;
    let client = capped(endless.base_url(), 64 * 1024);
    let started = std::time::Instant::now();
    let err = client.list_users(&UserFilter::default()).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::TooLarge { .. }), "{err}");
    assert!(err.is_permanent());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(endless.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_huge_error_body_keeps_its_status() {
    // A proxy's endless 503 page is cut, not refused: the status still says "retry".
    let server = raw_server(Raw::Endless(503)).await;
    let mut cfg = config(server.base_url());
    cfg.retry.max_elapsed = Duration::from_millis(100);
    let err = Client::new(cfg).unwrap().get_user("u1").await.unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    assert!(err.is_transient());
    assert!(err.attempts() >= 2, "{err}");
}
