//! The daemon as a process: graceful SIGTERM, secrets kept out of logs, and the README's
//! quickstart run as written.

use crate::common::{test_env, user, ADMIN_TOKEN, SCIM_TOKEN};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_scim-sync");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc {
    child: Child,
    scim: String,
    admin: String,
}

fn spawn(config: &std::path::Path, scim: u16, admin: u16, log: Stdio) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .env_remove("SCIM_SYNC_LOG");
    for (k, v) in test_env() {
        cmd.env(k, v);
    }
    let child = cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap();
    Proc {
        child,
        scim: format!("http://127.0.0.1:{scim}/scim/v2"),
        admin: format!("http://127.0.0.1:{admin}"),
    }
}

async fn wait_ready(http: &reqwest::Client, admin: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{admin}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("daemon did not become ready");
}

fn write_config(dir: &std::path::Path, scim: u16, admin: u16, extra: &str) -> std::path::PathBuf {
    let path = dir.join("scim-sync.toml");
    std::fs::write(
        &path,
        format!(
            "[scim]\nlisten = \"127.0.0.1:{scim}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[store]\npath = \"{}\"\n\
             [portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\nretry_give_up_secs = 1\nretry_initial_ms = 50\n{extra}",
            dir.join("store.redb").display()
        ),
    )
    .unwrap();
    path
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_during_a_burst_exits_0_and_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let (scim, admin) = (free_port(), free_port());
    let config = write_config(dir.path(), scim, admin, "");
    let mut p = spawn(&config, scim, admin, Stdio::null());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    wait_ready(&http, &p.admin).await;

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (http, base, acked) = (http.clone(), p.scim.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{w}-{i}@example.com");
                match http
                    .post(format!("{base}/Users"))
                    .bearer_auth(SCIM_TOKEN)
                    .json(&user(&name))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 201 => acked.lock().unwrap().push(name),
                    // Refused or cut off by the shutdown: not acknowledged, nothing to check.
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    sigterm(&p.child);
    let status = tokio::task::spawn_blocking(move || {
        let s = p.child.wait().unwrap();
        (s, p)
    })
    .await
    .unwrap();
    assert_eq!(status.0.code(), Some(0), "graceful shutdown exits 0");
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "the burst was too small to mean anything: {}",
        acked.len()
    );

    let mut p = spawn(&config, scim, admin, Stdio::null());
    wait_ready(&http, &p.admin).await;
    let r: Value = http
        .get(format!("{}/Users?count=0", p.scim))
        .bearer_auth(SCIM_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["totalResults"].as_u64().unwrap() >= acked.len() as u64);
    for name in acked.iter().step_by(7) {
        let r: Value = http
            .get(format!("{}/Users", p.scim))
            .query(&[("filter", format!("userName eq \"{name}\""))])
            .bearer_auth(SCIM_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            r["totalResults"], 1,
            "{name} was acknowledged but is missing"
        );
    }
    let _ = p.child.kill();
    let _ = p.child.wait();
}

#[tokio::test]
async fn no_secret_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (scim, admin) = (free_port(), free_port());
    let config = write_config(dir.path(), scim, admin, "[log]\nlevel = \"debug\"\n");
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut p = spawn(&config, scim, admin, Stdio::from(log));
    let http = reqwest::Client::new();
    wait_ready(&http, &p.admin).await;
    // Right and wrong tokens, on both listeners, and a run that fails against the control plane.
    for token in [SCIM_TOKEN, "wrong-token-value-123456"] {
        let _ = http
            .get(format!("{}/Users", p.scim))
            .bearer_auth(token)
            .send()
            .await;
        let _ = http
            .post(format!("{}/Users", p.scim))
            .bearer_auth(token)
            .json(&json!({"userName": "log@example.com", "password": "Pa55word-secret"}))
            .send()
            .await;
    }
    for token in [ADMIN_TOKEN, "wrong-admin-token-1234"] {
        let _ = http
            .get(format!("{}/admin/status", p.admin))
            .bearer_auth(token)
            .send()
            .await;
    }
    let _ = http
        .post(format!("{}/admin/resync?wait=true", p.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await;
    sigterm(&p.child);
    let _ = tokio::task::spawn_blocking(move || p.child.wait()).await;
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.contains("scim request"),
        "the log should have request lines: {text}"
    );
    assert!(text.contains("portkey"), "and control-plane lines: {text}");
    let env = test_env();
    for secret in [
        SCIM_TOKEN,
        ADMIN_TOKEN,
        env["PORTKEY_API_KEY"].as_str(),
        "wrong-token-value-123456",
        "wrong-admin-token-1234",
        "Pa55word-secret",
    ] {
        assert!(!text.contains(secret), "secret {secret} found in the log");
    }
}

/// The README's run command, as written, brings up the daemon next to the simulator; a user and
/// group created over SCIM as the printed instructions say reach the simulator.
#[tokio::test]
async fn the_readme_quickstart_works_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let run_line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("cargo run") && l.contains(" demo"))
        .expect("README names a `cargo run … demo` command");
    // `cargo run [--release] -- demo ARGS`: run the same binary with the same arguments.
    let args: Vec<&str> = run_line
        .split(" -- ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(&args)
        .current_dir(dir.path())
        .env_remove("SCIM_SYNC_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("Every SCIM request is logged");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    })
    .await
    .unwrap();
    let field = |label: &str| {
        banner
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .map(|l| {
                l.trim_start()[label.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_string()
            })
            .unwrap_or_else(|| panic!("no '{label}' in the banner: {banner:?}"))
    };
    let scim = field("SCIM base URL");
    let token = field("SCIM token");
    let control = banner
        .iter()
        .find_map(|l| l.split("state at ").nth(1))
        .map(|s| s.trim_end_matches(')').to_string())
        .unwrap();
    let http = reqwest::Client::new();
    let alice: Value = http
        .post(format!("{scim}/Users"))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .body(r#"{"userName":"alice@example.com","name":{"givenName":"Alice","familyName":"Example"},"emails":[{"value":"alice@example.com","primary":true}],"active":true}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = alice["id"].as_str().unwrap();
    let r = http
        .post(format!("{scim}/Groups"))
        .bearer_auth(&token)
        .json(&json!({"displayName": "ws-Demo-role-member", "members": [{"value": id}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Debounce, invite, auto-accept (2 s), the next run adds nothing more: alice ends up a user
    // of the organisation and a member of workspace Demo.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reached = false;
    while Instant::now() < deadline {
        let st: Value = http
            .get(&control)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let is_user = st["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["email"] == "alice@example.com");
        let in_demo = st["workspaces"].as_array().unwrap().iter().any(|w| {
            w["name"] == "Demo"
                && w["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["email"] == "alice@example.com")
        });
        if is_user && in_demo {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(reached, "alice did not reach the simulator");
}

/// Store upkeep across restarts: after a forced run the change feed keeps only what is above
/// the reconciler's cursor plus `[store] keep_changes`, and numbering goes on from where it
/// was, also after a restart.
#[tokio::test]
async fn the_change_feed_is_trimmed_behind_the_cursor_and_numbering_goes_on() {
    let sim = portkey_sim::spawn(
        ([127, 0, 0, 1], 0).into(),
        portkey_sim::SimOptions {
            api_key: crate::e2e::API_KEY.into(),
            seed: Some(crate::e2e::owner()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.redb");
    let (scim, admin) = (free_port(), free_port());
    let config = dir.path().join("scim-sync.toml");
    // Runs only when forced, so the test decides where the cursor is.
    std::fs::write(
        &config,
        format!(
            "[scim]\nlisten = \"127.0.0.1:{scim}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [store]\npath = \"{}\"\nkeep_changes = 3\n\
             [portkey]\nbase_url = \"{}\"\nretry_give_up_secs = 1\nretry_initial_ms = 50\n\
             [sync]\ndebounce_ms = 600000\nfull_resync_cron = \"0 0 0 1 1 *\"\n",
            store_path.display(),
            sim.base_url(),
        ),
    )
    .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let create = |p: &Proc, name: String| {
        let req = http
            .post(format!("{}/Users", p.scim))
            .bearer_auth(SCIM_TOKEN)
            .json(&user(&name));
        async move { assert_eq!(req.send().await.unwrap().status(), 201) }
    };
    let resync = |p: &Proc| {
        let req = http
            .post(format!("{}/admin/resync?wait=true", p.admin))
            .bearer_auth(ADMIN_TOKEN);
        async move {
            let r: Value = req.send().await.unwrap().json().await.unwrap();
            assert_eq!(r["summary"]["ok"], true, "{r}");
        }
    };
    let stop = |mut p: Proc| async move {
        sigterm(&p.child);
        let status = tokio::task::spawn_blocking(move || p.child.wait().unwrap())
            .await
            .unwrap();
        assert_eq!(status.code(), Some(0));
    };
    // Read with the daemon stopped, and released before it starts again.
    let feed = || async {
        let store = scim_sync::store::Store::open(&store_path, Default::default()).unwrap();
        let seqs: Vec<u64> = store
            .changes_since(0, usize::MAX)
            .unwrap()
            .iter()
            .map(|c| c.seq)
            .collect();
        let out = (
            seqs,
            store.reconcile_cursor().unwrap(),
            store.last_seq().unwrap(),
        );
        store.close().await;
        out
    };

    let p = spawn(&config, scim, admin, Stdio::null());
    wait_ready(&http, &p.admin).await;
    for i in 0..10 {
        create(&p, format!("feed{i}@example.com")).await;
    }
    resync(&p).await;
    stop(p).await;
    assert_eq!(feed().await, (vec![8, 9, 10], 10, 10));

    let p = spawn(&config, scim, admin, Stdio::null());
    wait_ready(&http, &p.admin).await;
    for i in 10..12 {
        create(&p, format!("feed{i}@example.com")).await;
    }
    let st: Value = http
        .get(format!("{}/admin/status", p.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["store"]["last_change_seq"], 12, "{st}");
    resync(&p).await;
    stop(p).await;
    assert_eq!(feed().await, (vec![10, 11, 12], 12, 12));
}
