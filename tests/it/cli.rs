//! The `scim-sync` binary as an operator runs it: a child process per command, checked on its
//! exit code, stdout and stderr, against daemons started in this process.

use crate::common::{patch_body, Server, ADMIN_TOKEN, SCIM_TOKEN};
use portkey_sim::Quirks;
use serde_json::{json, Value};
use std::path::Path;

use crate::common::cli::{assert_has_all, run_with, Out};

async fn run(args: &[&str]) -> Out {
    run_with(args, &[], None).await
}

/// An admin command against `admin` with the right token.
async fn admin(admin: &str, args: &[&str]) -> Out {
    let mut all = args.to_vec();
    all.extend(["--admin-url", admin]);
    run_with(&all, &[("SCIM_SYNC_ADMIN_TOKEN", ADMIN_TOKEN)], None).await
}

// ---- local commands --------------------------------------------------------------------------

#[tokio::test]
async fn version_prints_the_package_version() {
    let o = run(&["--version"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        o.stdout.trim(),
        format!("scim-sync {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn help_lists_every_command_and_the_exit_codes() {
    let o = run(&["--help"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert_has_all(
        &o.stdout,
        "--help",
        &[
            "serve",
            "demo",
            "check-config",
            "hash-token",
            "status",
            "resync",
            "plan",
            "explain",
            "approve-deletions",
            "Exit codes",
            "SCIM_SYNC_ADMIN_TOKEN",
            "SCIM_SYNC_CONFIG",
        ],
    );
    let o = run(&["explain", "--help"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert_has_all(
        &o.stdout,
        "explain --help",
        &[
            "USERNAME",
            "--admin-url",
            "--config",
            "--admin-token",
            "--json",
            "Exit codes",
        ],
    );
    let o = run(&["resync", "--help"]).await;
    assert!(o.stdout.contains("--wait"), "{}", o.stdout);
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let o = run(&["no-such-command"]).await;
    assert_eq!(o.code, 2, "{o:?}");
    let o = run(&["explain"]).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("USERNAME"), "{}", o.stderr);
    // An admin command without anywhere to go says how to fix it.
    let o = run_with(&["status"], &[("SCIM_SYNC_ADMIN_TOKEN", "t")], None).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("--admin-url"), "{}", o.stderr);
    assert!(o.stderr.contains("--config"), "{}", o.stderr);
    // ... or without a token.
    let o = run(&["status", "--admin-url", "http://127.0.0.1:9"]).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("SCIM_SYNC_ADMIN_TOKEN"), "{}", o.stderr);
    let o = run_with(
        &["status", "--admin-url", "127.0.0.1:9"],
        &[("SCIM_SYNC_ADMIN_TOKEN", "t")],
        None,
    )
    .await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("--admin-url"), "{}", o.stderr);
}

fn good_config(dir: &Path) -> String {
    format!(
        "[scim]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
         [portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\n",
        dir.join("store.redb").display()
    )
}

fn secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SCIM_SYNC_SCIM_TOKEN", SCIM_TOKEN),
        ("SCIM_SYNC_ADMIN_TOKEN", ADMIN_TOKEN),
        ("PORTKEY_API_KEY", "k"),
    ]
}

#[tokio::test]
async fn check_config_accepts_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, good_config(dir.path())).unwrap();
    let p = path.to_str().unwrap();
    let o = run_with(&["check-config", "--config", p], &secrets(), None).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.starts_with("config OK"), "{}", o.stdout);
    assert!(o.stdout.contains("http://127.0.0.1:9/v1"), "{}", o.stdout);
    // The file may also come from SCIM_SYNC_CONFIG.
    let mut env = secrets();
    env.push(("SCIM_SYNC_CONFIG", p));
    let o = run_with(&["check-config"], &env, None).await;
    assert_eq!(o.code, 0, "{o:?}");
}

#[tokio::test]
async fn check_config_names_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = good_config(dir.path()).replace("[store]\n", "[store]\nfile_name = \"x\"\n");
    std::fs::write(&path, text).unwrap();
    let o = run_with(
        &["check-config", "--config", path.to_str().unwrap()],
        &secrets(),
        None,
    )
    .await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("file_name"), "{}", o.stderr);
    assert!(o.stdout.is_empty(), "{}", o.stdout);
}

#[tokio::test]
async fn check_config_names_a_missing_secret_and_a_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, good_config(dir.path())).unwrap();
    let p = path.to_str().unwrap();
    let env: Vec<_> = secrets()
        .into_iter()
        .filter(|(k, _)| *k != "SCIM_SYNC_SCIM_TOKEN")
        .collect();
    let o = run_with(&["check-config", "--config", p], &env, None).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("SCIM_SYNC_SCIM_TOKEN"), "{}", o.stderr);

    let text = format!("{}max_in_flight = 0\n", good_config(dir.path()));
    std::fs::write(&path, text).unwrap();
    let o = run_with(&["check-config", "--config", p], &secrets(), None).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("[portkey] max_in_flight"), "{}", o.stderr);

    let o = run_with(
        &["check-config", "--config", "/nonexistent/scim-sync.toml"],
        &secrets(),
        None,
    )
    .await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("/nonexistent/scim-sync.toml"),
        "{}",
        o.stderr
    );
}

#[tokio::test]
async fn serve_refuses_an_invalid_config_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, good_config(dir.path())).unwrap();
    let o = run_with(
        &["serve", "--config", path.to_str().unwrap()],
        &[("SCIM_SYNC_SCIM_TOKEN", SCIM_TOKEN)],
        None,
    )
    .await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("SCIM_SYNC_ADMIN_TOKEN"), "{}", o.stderr);
}

#[tokio::test]
async fn hash_token_from_the_argument_and_from_stdin() {
    let expected = scim_sync::token::hash_token("s3cret-token");
    let o = run(&["hash-token", "s3cret-token"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout.trim(), expected);
    let o = run_with(&["hash-token"], &[], Some("s3cret-token\n")).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout.trim(), expected);
    let o = run_with(&["hash-token"], &[], Some("\n")).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("empty token"), "{}", o.stderr);
}

// ---- a daemon whose control plane is down ----------------------------------------------------

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn an_unreachable_daemon_exits_3() {
    let url = format!("http://127.0.0.1:{}", closed_port().await);
    for cmd in [
        &["status"][..],
        &["resync", "--wait"],
        &["plan"],
        &["explain", "a@example.com"],
        &["approve-deletions"],
    ] {
        let o = admin(&url, cmd).await;
        assert_eq!(o.code, 3, "{cmd:?}: {o:?}");
        assert!(o.stderr.contains(&url), "{}", o.stderr);
        assert!(o.stderr.contains("Is the daemon running"), "{}", o.stderr);
    }
}

#[tokio::test]
async fn a_daemon_that_does_not_answer_in_time_exits_3() {
    // Accepts connections and never answers.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            open.push(s);
        }
    });
    let started = std::time::Instant::now();
    let o = admin(&url, &["resync", "--wait", "--timeout", "1"]).await;
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stderr.contains("no answer within 1 s"), "{}", o.stderr);
    assert!(o.stderr.contains("scim-sync status"), "{}", o.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    hold.abort();
}

#[tokio::test]
async fn a_refused_token_exits_3() {
    let s = Server::start().await;
    for cmd in [
        &["status"][..],
        &["resync"],
        &["plan", "--json"],
        &["explain", "a@example.com"],
        &["approve-deletions"],
    ] {
        let mut args = cmd.to_vec();
        args.extend(["--admin-url", &s.admin]);
        let o = run_with(&args, &[("SCIM_SYNC_ADMIN_TOKEN", "wrong-token")], None).await;
        assert_eq!(o.code, 3, "{cmd:?}: {o:?}");
        assert!(o.stderr.contains("refused the token"), "{}", o.stderr);
        assert!(o.stdout.is_empty(), "{}", o.stdout);
    }
    // The SCIM listener is not the admin API; it says so through its own 401.
    let scim = format!("http://{}", s.scim_addr);
    let o = admin(&scim, &["status"]).await;
    assert_eq!(o.code, 3, "{o:?}");
}

#[tokio::test]
async fn a_failing_control_plane_shows_as_exit_1() {
    let s = Server::start().await;
    s.create_user("alice@example.com").await;
    // The run cannot read the control plane: not ok.
    let o = admin(&s.admin, &["resync", "--wait"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("NOT OK"), "{}", o.stdout);
    assert!(o.stdout.contains("Errors"), "{}", o.stdout);
    // Status reports it and asks for attention.
    let o = admin(&s.admin, &["status"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("1 users, 0 groups"), "{}", o.stdout);
    assert!(o.stdout.contains("FAILING"), "{}", o.stdout);
    assert!(o.stdout.contains("Needs attention"), "{}", o.stdout);
    // The plan cannot be trusted.
    let o = admin(&s.admin, &["plan"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    // A user nobody knows.
    let o = admin(&s.admin, &["explain", "nobody@example.com"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("Not found"), "{}", o.stdout);
    assert!(o.stdout.contains("nobody@example.com"), "{}", o.stdout);
    let o = admin(&s.admin, &["explain", "nobody@example.com", "--json"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(v["error"].as_str().unwrap().contains("nobody@example.com"));
}

#[tokio::test]
async fn the_admin_url_comes_from_the_config_file_without_other_secrets() {
    let s = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scim-sync.toml");
    let listen = s.admin.trim_start_matches("http://");
    // A full config, whose other secrets are not in the environment: only [admin] listen is read.
    let text = format!(
        "[scim]\nlisten = \"127.0.0.1:1\"\n[admin]\nlisten = \"{listen}\"\n[store]\npath = \"x.redb\"\n\
         [portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\n"
    );
    std::fs::write(&path, text).unwrap();
    let p = path.to_str().unwrap();
    let token = [("SCIM_SYNC_ADMIN_TOKEN", ADMIN_TOKEN)];
    let o = run_with(&["status", "--json", "--config", p], &token, None).await;
    assert!(o.code == 0 || o.code == 1, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let env = [
        ("SCIM_SYNC_ADMIN_TOKEN", ADMIN_TOKEN),
        ("SCIM_SYNC_CONFIG", p),
    ];
    let o = run_with(&["status"], &env, None).await;
    assert!(o.stdout.contains("Store"), "{o:?}");
    assert!(o.stdout.contains(&s.admin), "{o:?}");
    // The token may be given as a flag.
    let o = run(&[
        "status",
        "--json",
        "--config",
        p,
        "--admin-token",
        ADMIN_TOKEN,
    ])
    .await;
    assert!(o.code == 0 || o.code == 1, "{o:?}");
    // A bad [admin] listen is named.
    std::fs::write(&path, "[admin]\nlisten = \"localhost\"\n").unwrap();
    let o = run_with(&["status", "--config", p], &token, None).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("[admin] listen"), "{}", o.stderr);
    // So is a file that is not TOML.
    std::fs::write(&path, "[admin\n").unwrap();
    let o = run_with(&["status", "--config", p], &token, None).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains(p), "{}", o.stderr);
}

// ---- a daemon next to the control-plane simulator --------------------------------------------

/// The shared simulator-and-daemon fixture, with the control-plane client's give-up time the
/// CLI tests were written for.
type Env = crate::e2e::Env;

async fn start(sync: &str) -> Env {
    crate::e2e::start_with(crate::common::sim::owner(), Quirks::default(), sync, 20).await
}

/// The CLI against a fixture's daemon.
trait Cli {
    async fn cli(&self, args: &[&str]) -> Out;
    async fn accept_all_invites(&self);
}

impl Cli for Env {
    async fn cli(&self, args: &[&str]) -> Out {
        admin(&self.admin, args).await
    }

    async fn accept_all_invites(&self) {
        self.accept_all().await;
    }
}

#[tokio::test]
async fn plan_explain_resync_and_status_against_a_live_daemon() {
    let e = start("max_deletions = 1000\nmax_deletion_percent = 100.0\n").await;
    assert_eq!(e.cli(&["resync", "--wait"]).await.code, 0);
    let alice = e.create_user("alice@example.com").await;
    e.create_group("ws-Eng-role-member", &[alice.as_str()])
        .await;

    // The plan, readable: phases, ops, targets, reasons.
    let o = e.cli(&["plan"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    for word in [
        "Plan (dry run",
        "PHASE",
        "REASON",
        "create_workspace",
        "workspace Eng",
        "invite",
        "alice@example.com as org member; Eng: member",
    ] {
        assert!(o.stdout.contains(word), "plan lacks {word}:\n{}", o.stdout);
    }
    // ... and as JSON.
    let o = e.cli(&["plan", "--json"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["dry_run_only"], true);
    assert!(!v["plan"]["ops"].as_array().unwrap().is_empty(), "{v}");

    // Explain: desired (with the group that grants it), actual, planned.
    let o = e.cli(&["explain", "ALICE@example.com"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert_has_all(
        &o.stdout,
        "explain",
        &[
            "alice@example.com",
            "Desired",
            "ws-Eng-role-member",
            "Actual",
            "not in the organisation",
            "Planned ops",
            "invite",
        ],
    );
    let o = e.cli(&["explain", "alice@example.com", "--json"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["email"], "alice@example.com");
    assert_eq!(v["desired"]["workspaces"][0]["workspace"], "Eng", "{v}");

    // Run it and wait.
    let o = e.cli(&["resync", "--wait"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains(": ok"), "{}", o.stdout);
    assert!(o.stdout.contains("applied"), "{}", o.stdout);
    let o = e.cli(&["resync", "--wait", "--json"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["summary"]["ok"], true, "{v}");

    // Started in the background.
    let o = e.cli(&["resync"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("started"), "{}", o.stdout);

    // Status, once that run is over.
    let mut o = e.cli(&["status"]).await;
    for _ in 0..100 {
        if o.stdout.contains("idle") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        o = e.cli(&["status"]).await;
    }
    assert_eq!(o.code, 0, "{o:?}");
    assert_has_all(
        &o.stdout,
        "status",
        &[
            "1 users, 1 groups",
            "Control plane   ok",
            "Last run        ok",
            "Held deletions  0",
        ],
    );
    // Nothing held: approving is a no-op success.
    let o = e.cli(&["approve-deletions"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("nothing to approve"), "{}", o.stdout);
    // The plan is now empty.
    let o = e.cli(&["plan"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("already matches"), "{}", o.stdout);
}

/// `explain bob@x.io` is about bob alone: not jimbob@x.io, whose address contains his, and not
/// jimbob's row of an `add_members` op they share.
#[tokio::test]
async fn explain_shows_one_person_and_not_an_address_that_contains_theirs() {
    let e = start("max_deletions = 1000\nmax_deletion_percent = 100.0\n").await;
    let bob = e.create_user("bob@x.io").await;
    let jimbob = e.create_user("jimbob@x.io").await;
    assert_eq!(e.cli(&["resync", "--wait"]).await.code, 0);
    e.accept_all_invites().await;
    assert_eq!(e.cli(&["resync", "--wait"]).await.code, 0);
    // Both are in the organisation; one group now puts both in a new workspace: one bulk add.
    e.create_group("ws-Eng-role-member", &[bob.as_str(), jimbob.as_str()])
        .await;
    let v: Value = serde_json::from_str(&e.cli(&["plan", "--json"]).await.stdout).unwrap();
    let bulk = v["plan"]["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["op"] == "add_members")
        .unwrap_or_else(|| panic!("no add_members in the plan: {v}"));
    assert_eq!(bulk["members"].as_array().unwrap().len(), 2, "{v}");

    let o = e.cli(&["explain", "bob@x.io", "--json"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["email"], "bob@x.io");
    assert_eq!(v["actual"]["user"]["email"], "bob@x.io", "{v}");
    let ops = v["planned_ops"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "{v}");
    assert_eq!(ops[0]["op"], "add_members", "{v}");
    assert_eq!(ops[0]["members"][0]["email"], "bob@x.io", "{v}");
    assert!(!o.stdout.contains("jimbob"), "{}", o.stdout);
    let o = e.cli(&["explain", "bob@x.io"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("bob@x.io to Eng as member"),
        "{}",
        o.stdout
    );
    assert!(!o.stdout.contains("jimbob"), "{}", o.stdout);

    let o = e.cli(&["explain", "JimBob@x.io", "--json"]).await;
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["email"], "jimbob@x.io", "{v}");
    assert_eq!(
        v["planned_ops"][0]["members"][0]["email"], "jimbob@x.io",
        "{v}"
    );
    assert_eq!(
        v["planned_ops"][0]["members"].as_array().unwrap().len(),
        1,
        "{v}"
    );
    // Part of an address is nobody.
    assert_eq!(e.cli(&["explain", "bob@x"]).await.code, 1);
}

#[tokio::test]
async fn held_deletions_exit_1_until_approved() {
    let e = start("max_deletions = 2\nmax_deletion_percent = 100.0\n").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(e.create_user(&format!("u{i}@example.com")).await);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let g = e.create_group("ws-Fuse-role-member", &refs).await;
    assert_eq!(e.cli(&["resync", "--wait"]).await.code, 0);
    e.accept_all_invites().await;
    assert_eq!(e.cli(&["resync", "--wait"]).await.code, 0);
    // Three of four unassigned at once: more than max_deletions.
    let gone: Vec<Value> = ids[1..].iter().map(|i| json!({"value": i})).collect();
    e.scim(
        reqwest::Method::PATCH,
        &format!("/Groups/{g}"),
        Some(patch_body(
            json!([{"op": "remove", "path": "members", "value": gone}]),
        )),
    )
    .await;

    let o = e.cli(&["resync", "--wait"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains("3 destructive op(s) held"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("approve-deletions"), "{}", o.stdout);

    let o = e.cli(&["status"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("Held deletions  3"), "{}", o.stdout);

    // The plan shows them, marked; it is a preview, so it exits 0.
    let o = e.cli(&["plan"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        o.stdout.matches("remove_member (HELD)").count(),
        3,
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("u1@example.com from Fuse"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("Held by the deletion fuse (3)"),
        "{}",
        o.stdout
    );

    // A digest that names another set approves nothing.
    let o = e.cli(&["approve-deletions", "--digest", "0000"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("Nothing approved"), "{}", o.stdout);

    // Without --digest, it shows the held set and approves exactly that.
    let o = e.cli(&["approve-deletions"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("Approving these 3 held op(s)"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("Approved 3 held deletion(s)"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains(": ok"), "{}", o.stdout);

    let o = e.cli(&["status"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("Held deletions  0"), "{}", o.stdout);
}

/// The admin routes' statuses and bodies: probes open, everything else behind the token (even
/// a path that does not exist), unknown admin paths listing the endpoints.
#[tokio::test]
async fn admin_routes_answer_with_the_statuses_and_bodies_admins_script_against() {
    let e = start("").await;
    let call = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let mut r = e.http.request(method, format!("{}{path}", e.admin));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            let auth = resp.headers().contains_key("www-authenticate");
            let text = resp.text().await.unwrap();
            (
                status,
                auth,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };
    use reqwest::Method as M;
    let token = Some(ADMIN_TOKEN);
    let (s, _, v) = call(M::GET, "/healthz", None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    let (s, _, v) = call(M::GET, "/readyz", None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ready")), "{v}");
    for (m, path) in [
        (M::GET, "/admin/status"),
        (M::GET, "/nowhere"),
        (M::POST, "/healthz"),
    ] {
        let (s, auth, v) = call(m.clone(), path, None).await;
        assert_eq!(s, 401, "{m} {path}: {v}");
        assert!(auth, "{m} {path}");
        assert!(v["error"].as_str().unwrap().contains("bearer token"), "{v}");
    }
    let (s, _, v) = call(M::GET, "/admin/status/", token).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["store"]["ok"], true, "{v}");
    let (s, _, v) = call(M::DELETE, "/admin/status", token).await;
    assert_eq!(s, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no admin endpoint DELETE /admin/status"),
        "{v}"
    );
    let (s, _, v) = call(M::POST, "/healthz", token).await;
    assert_eq!(s, 404, "{v}");
    let (s, _, v) = call(M::GET, "/nowhere", token).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (404, Some("no such endpoint")),
        "{v}"
    );
    let (s, _, v) = call(M::POST, "/admin/approve-deletions", token).await;
    assert_eq!(s, 400, "{v}");
    assert!(v.get("held_digest").is_some() && v["held"] == 0, "{v}");
    let (s, _, v) = call(M::GET, "/admin/explain/nobody%40x.io", token).await;
    assert_eq!(s, 404, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("'nobody@x.io'"),
        "{v}"
    );
    let (s, _, v) = call(M::GET, "/admin/audit?LIMIT=2&before=oops", token).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["entries"].as_array().unwrap().len() <= 2, "{v}");
}

/// `resync --wait` shows how far the run is on stderr (plain lines when stderr is not a
/// terminal), and stdout keeps only the result.
#[tokio::test]
async fn resync_wait_shows_progress_on_stderr() {
    let e = start("").await;
    assert_eq!(e.cli(&["resync", "--wait"]).await.code, 0);
    for i in 0..6 {
        e.create_user(&format!("progress{i}@example.com")).await;
    }
    // A slow control plane, so that the run lasts several progress reads.
    let r = e
        .http
        .put(format!("{}/faults", e.sim.control_url()))
        .json(&json!({"latency_ms": 400}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let o = e.cli(&["resync", "--wait"]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr
            .contains(": reading the control plane and planning")
            || o.stderr.contains(" ops applied"),
        "no progress on stderr:\n{}",
        o.stderr
    );
    assert!(!o.stderr.contains('\r'), "a bar was drawn into a pipe");
    assert!(
        !o.stdout.contains("ops applied"),
        "progress leaked into stdout"
    );
    assert!(o.stdout.contains("invite"), "{}", o.stdout);
}
