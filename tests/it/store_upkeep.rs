//! The store looking after itself: backups (online and offline) and restore, compaction, the
//! schema version of a committed store file, and a disk that fills up under a running daemon.

use crate::common::cli::{assert_has_all, run_with, Out};
use crate::common::{test_env, user, Admin, Server, ADMIN_TOKEN, SCIM_TOKEN};
use crate::crash::Daemon;
use futures::StreamExt;
use scim_sync::scim::schema::ResourceKind;
use scim_sync::store::{
    AuditEntry, Link, Store, StoreError, StoreOptions, WorkspaceLink, SCHEMA_VERSION,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v1.redb");

// ---- helpers ---------------------------------------------------------------------------------

/// Runs the binary with none of the caller's scim-sync variables (they cannot leak in).
async fn run(args: &[&str], env: &[(&str, &str)]) -> Out {
    run_with(args, env, None).await
}

fn admin_env() -> Vec<(&'static str, &'static str)> {
    vec![("SCIM_SYNC_ADMIN_TOKEN", ADMIN_TOKEN)]
}

/// `check-store --json` on `path`, which must succeed: its report.
async fn check_store_json(path: &Path) -> Value {
    let o = run(&["check-store", path.to_str().unwrap(), "--json"], &[]).await;
    assert_eq!(o.code, 0, "{o:?}");
    serde_json::from_str(&o.stdout).unwrap()
}

/// Fails on the first field of a `check-store --json` report that is not as wanted.
#[track_caller]
fn assert_fields<V: std::fmt::Debug>(info: &Value, want: &[(&str, V)])
where
    Value: PartialEq<V>,
{
    for (k, v) in want {
        assert_eq!(info[*k], *v, "{k}: {info}");
    }
}

// ---- backup and restore ----------------------------------------------------------------------

#[tokio::test]
async fn help_lists_the_store_commands() {
    let o = run(&["--help"], &[]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert_has_all(
        &o.stdout,
        "--help",
        &["backup", "check-store", "compact", "Backup and restore"],
    );
    let o = run(&["backup", "--help"], &[]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert_has_all(
        &o.stdout,
        "backup --help",
        &[
            "--force",
            "--config",
            "--admin-url",
            "GET /admin/backup",
            "Exit codes",
        ],
    );
}

/// The procedure of docs/operations.md, "Backup and restore": `scim-sync backup` against a
/// running daemon taking writes, `check-store` on the file, copy it to a new `[store] path`,
/// start a daemon there: the users, groups and memberships are back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn online_backup_while_writing_restores_into_a_new_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let d = Server::start_in(dir.path(), &dir.path().join("store.redb"), "").await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(d.create_user(&format!("b{i}@example.com")).await);
    }
    let first: Vec<&str> = ids[..5].iter().map(String::as_str).collect();
    let gid = d.create_group("Engineering", &first).await;

    // Writes keep going during the backup; each one is acknowledged.
    let writer = {
        let (base, http) = (d.base.clone(), d.http.clone());
        tokio::spawn(async move {
            let mut acked = 0usize;
            for i in 0..60 {
                let r = http
                    .post(format!("{base}/Users"))
                    .bearer_auth(SCIM_TOKEN)
                    .header("content-type", "application/scim+json")
                    .body(serde_json::to_vec(&user(&format!("during{i}@example.com"))).unwrap())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
                acked += 1;
            }
            acked
        })
    };
    let file = dir.path().join("backups").join("scim-sync.redb");
    std::fs::create_dir(file.parent().unwrap()).unwrap();
    let f = file.to_str().unwrap();
    let o = run(&["backup", f, "--admin-url", &d.admin], &admin_env()).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("taken online"), "{o:?}");
    assert!(
        o.stdout
            .contains(&format!("Schema version  {SCHEMA_VERSION}")),
        "{o:?}"
    );
    assert_eq!(writer.await.unwrap(), 60);

    // Nothing is left beside the store or the backup.
    for d in [
        dir.path().to_path_buf(),
        file.parent().unwrap().to_path_buf(),
    ] {
        let tmp: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(
            tmp.is_empty(),
            "temporary files left in {}: {tmp:?}",
            d.display()
        );
    }

    // An existing file is kept unless --force.
    let before = std::fs::read(&file).unwrap();
    let o = run(&["backup", f, "--admin-url", &d.admin], &admin_env()).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("--force"), "{o:?}");
    assert!(
        std::fs::read(&file).unwrap() == before,
        "the backup was replaced"
    );
    // A wrong token gets nothing.
    let o = run(
        &["backup", f, "--force", "--admin-url", &d.admin],
        &[("SCIM_SYNC_ADMIN_TOKEN", "wrong-token-0123456789")],
    )
    .await;
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        std::fs::read(&file).unwrap() == before,
        "the backup was replaced"
    );

    // check-store reads the backup: at least what was there before the backup started, at most
    // everything acknowledged by the end.
    let info = check_store_json(&file).await;
    let users = info["users"].as_u64().unwrap();
    assert!((40..=100).contains(&users), "{info}");
    assert_eq!(info["groups"], 1, "{info}");
    assert_eq!(info["memberships"], 5, "{info}");
    assert_eq!(info["schema_version"], SCHEMA_VERSION, "{info}");
    d.stop().await;

    // Restore: a new daemon on a copy of the backup.
    let restored = tempfile::tempdir().unwrap();
    let store = restored.path().join("store.redb");
    std::fs::copy(&file, &store).unwrap();
    let r = Server::start_in(restored.path(), &store, "").await;
    assert_eq!(r.user_count().await, users);
    let mut expected: Vec<String> = ids[..5].to_vec();
    expected.sort();
    assert_eq!(r.member_ids(&gid).await, expected);
    let filter = crate::common::enc("userName eq \"b7@example.com\"");
    let found = r.get(&format!("/Users?filter={filter}")).await;
    let (status, body) = (found.status, found.json);
    assert_eq!(
        (status, body["Resources"][0]["id"].as_str()),
        (200, Some(ids[7].as_str()))
    );
    // And it takes writes.
    r.create_user("after-restore@example.com").await;
    r.stop().await;
}

/// With the daemon stopped, `backup --config` copies the store file directly (no token
/// needed); `compact` refuses while the daemon holds the store and shrinks it once stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offline_backup_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.redb");
    let d = Server::start_in(dir.path(), &store, "").await;
    let mut ids = Vec::new();
    for i in 0..300 {
        let mut body = user(&format!("c{i}@example.com"));
        body["title"] = json!("x".repeat(2000));
        let created = d.post("/Users", body).await;
        let (status, b) = (created.status, created.json);
        assert_eq!(status, 201, "{b}");
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    for id in &ids[10..] {
        let deleted = d.delete(&format!("/Users/{id}")).await;
        let (status, b) = (deleted.status, deleted.json);
        assert_eq!(status, 204, "{b}");
    }
    let cfg = d.config.to_str().unwrap().to_string();

    // The daemon holds the store: compaction refuses and says what to do.
    let o = run(&["compact", "--config", &cfg], &[]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("in use by a running scim-sync"), "{o:?}");
    assert!(o.stderr.contains("stop the daemon"), "{o:?}");
    // So does check-store on the live file.
    let o = run(&["check-store", store.to_str().unwrap()], &[]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("scim-sync backup"), "{o:?}");
    // backup --config finds the store locked and goes through the daemon.
    let online = dir.path().join("online.redb");
    let o = run(
        &["backup", online.to_str().unwrap(), "--config", &cfg],
        &admin_env(),
    )
    .await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("taken online"), "{o:?}");
    d.stop().await;

    // Stopped: the same command copies the file, without a token.
    let offline = dir.path().join("offline.redb");
    let o = run(
        &["backup", offline.to_str().unwrap(), "--config", &cfg],
        &[],
    )
    .await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("copied offline"), "{o:?}");
    let o = run(&["check-store", offline.to_str().unwrap()], &[]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("Users           10"), "{o:?}");

    let before = std::fs::metadata(&store).unwrap().len();
    let o = run(&["compact", "--config", &cfg], &[]).await;
    assert_eq!(o.code, 0, "{o:?}");
    let after = std::fs::metadata(&store).unwrap().len();
    println!("compaction: {before} bytes before, {after} after");
    assert!(
        o.stdout
            .contains(&format!("{before} bytes before, {after} bytes after")),
        "{o:?}"
    );
    assert!(after < before, "compaction did not shrink the file: {o:?}");

    // The compacted store serves what it held.
    let d = Server::start_in(dir.path(), &store, "").await;
    assert_eq!(d.user_count().await, 10);
    let status = d.get(&format!("/Users/{}", ids[3])).await.status;
    assert_eq!(status, 200);
    d.stop().await;
}

// ---- schema version --------------------------------------------------------------------------

/// What the fixture holds; [`generate_store_fixture`] writes it.
const FIXTURE_USERS: [&str; 3] = ["ada@example.com", "grace@example.com", "edsger@example.com"];

/// Writes `tests/fixtures/store-v{SCHEMA_VERSION}.redb` with this release's store code
/// (`store-v1.redb` was written by it at schema version 1). Run it only when the schema version
/// changes (then commit the new file beside the old ones and keep their tests):
///
/// ```text
/// cargo test --test it store_upkeep::generate_store_fixture -- --ignored
/// ```
#[tokio::test]
#[ignore = "writes the committed fixture; run by hand when the schema changes"]
async fn generate_store_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        let mut ids = Vec::new();
        for name in FIXTURE_USERS {
            let n = scim_sync::scim::resource::Normalized {
                resource: json!({
                    "userName": name,
                    "name": {"givenName": "Given", "familyName": "Family"},
                    "emails": [{"value": name, "primary": true, "type": "work"}],
                    "active": true,
                }),
                members: None,
            };
            let (r, _) = store.create(ResourceKind::User, n).await.unwrap();
            ids.push(r.id);
        }
        for (name, members) in [
            ("ws-Engineering-role-admin", &ids[..2]),
            ("ws-Research-role-member", &ids[1..]),
        ] {
            let n = scim_sync::scim::resource::Normalized {
                resource: json!({"displayName": name}),
                members: Some(
                    members
                        .iter()
                        .map(|id| scim_sync::scim::resource::MemberRef { value: id.clone() })
                        .collect(),
                ),
            };
            store.create(ResourceKind::Group, n).await.unwrap();
        }
        store
            .set_links(vec![(
                "ada@example.com".into(),
                Some(Link {
                    scim_id: Some(ids[0].clone()),
                    portkey_user_id: Some("pk-user-ada".into()),
                    invite_id: None,
                    updated: "2026-01-01T00:00:00Z".into(),
                }),
            )])
            .await
            .unwrap();
        store
            .append_audit(vec![AuditEntry {
                seq: 0,
                at: "2026-01-01T00:00:00Z".into(),
                run_id: "run-fixture".into(),
                op: json!({"op": "invite", "email": "ada@example.com", "role": "member"}),
                reason: "in ws-Engineering-role-admin".into(),
                result: "ok".into(),
            }])
            .await
            .unwrap();
        store.set_reconcile_cursor(3).await.unwrap();
        store
            .set_workspace_links(vec![(
                "Engineering".into(),
                Some(WorkspaceLink {
                    updated: "2026-01-02T00:00:00Z".into(),
                }),
            )])
            .await
            .unwrap();
        store.close().await;
    }
    scim_sync::store::compact(&path).unwrap();
    let dest = Path::new(FIXTURE).with_file_name(format!("store-v{SCHEMA_VERSION}.redb"));
    assert!(
        !dest.exists(),
        "{} is committed: a fixture is never rewritten",
        dest.display()
    );
    std::fs::copy(&path, dest).unwrap();
}

/// A copy of the committed fixture in a fresh directory (opening a store may write to it).
fn fixture_copy(dir: &Path) -> PathBuf {
    let path = dir.join("store.redb");
    std::fs::copy(FIXTURE, &path).unwrap();
    path
}

/// A store written by schema version 1 opens with this release and reads the same.
#[tokio::test]
async fn the_committed_v1_store_opens_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path());
    let info = check_store_json(&path).await;
    assert_fields(
        &info,
        &[
            ("schema_version", 1),
            ("users", 3),
            ("groups", 2),
            ("memberships", 4),
            ("links", 1),
            ("audit_entries", 1),
            ("last_change_seq", 5),
            ("reconcile_cursor", 3),
        ],
    );

    let store = Store::open(&path, StoreOptions::default()).unwrap();
    assert_eq!(store.count(ResourceKind::User).unwrap(), 3);
    assert_eq!(store.count(ResourceKind::Group).unwrap(), 2);
    let page = store
        .query(
            ResourceKind::User,
            &scim_sync::store::Query {
                filter: None,
                start_index: 1,
                count: 10,
                with_refs: true,
            },
        )
        .unwrap();
    let mut names: Vec<&str> = page
        .items
        .iter()
        .map(|r| r.record.data["userName"].as_str().unwrap())
        .collect();
    names.sort();
    let mut expected = FIXTURE_USERS.to_vec();
    expected.sort();
    assert_eq!(names, expected);
    let grace = page
        .items
        .iter()
        .find(|r| r.record.data["userName"] == "grace@example.com")
        .unwrap();
    assert_eq!(
        grace.refs.as_ref().unwrap().len(),
        2,
        "grace is in both groups"
    );
    let links = store.links().unwrap();
    assert_eq!(
        links["ada@example.com"].portkey_user_id.as_deref(),
        Some("pk-user-ada")
    );
    let audit = store.audit(10, None).unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].run_id, "run-fixture");
    assert_eq!(store.reconcile_cursor().unwrap(), 3);
    assert_eq!(store.last_seq().unwrap(), 5);
    assert_eq!(store.changes_since(3, 10).unwrap().len(), 2);
    // And it takes writes, numbered on from where it was.
    let n = scim_sync::scim::resource::Normalized {
        resource: json!({"userName": "new@example.com"}),
        members: None,
    };
    store.create(ResourceKind::User, n).await.unwrap();
    assert_eq!(store.last_seq().unwrap(), 6);
    store.close().await;
}

/// A schema-v1 store with workspace links (`store-v1-workspaces.redb`: `store-v1.redb` plus the
/// rows the v1 reconciler wrote for two managed workspaces, `workspace:engineering` and
/// `workspace:research` in the links table, and an invite link for grace; written through the
/// v1 ledger code at commit 42fddd4). check-store reads it as it is; opening it migrates it in
/// one transaction: the workspace rows move to their own table, the people's links stay, and
/// check-store and backups see the new layout.
#[tokio::test]
async fn a_v1_store_migrates_its_workspace_links_to_their_own_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    std::fs::copy(
        Path::new(FIXTURE).with_file_name("store-v1-workspaces.redb"),
        &path,
    )
    .unwrap();
    let info = check_store_json(&path).await;
    assert_fields(
        &info,
        &[
            ("schema_version", 1),
            ("users", 3),
            ("links", 2),
            ("workspace_links", 2),
        ],
    );

    let store = Store::open(&path, StoreOptions::default()).unwrap();
    let ws = store.workspace_links().unwrap();
    assert_eq!(
        ws.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["engineering", "research"]
    );
    assert_eq!(ws["engineering"].updated, "2026-01-02T00:00:00Z");
    assert_eq!(ws["research"].updated, "2026-01-03T00:00:00Z");
    let links = store.links().unwrap();
    assert_eq!(
        links.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["ada@example.com", "grace@example.com"]
    );
    assert_eq!(
        links["ada@example.com"].portkey_user_id.as_deref(),
        Some("pk-user-ada")
    );
    assert_eq!(
        links["grace@example.com"].invite_id.as_deref(),
        Some("pk-invite-grace")
    );
    // The rest reads as before, and the ledger takes writes in the new layout.
    assert_eq!(store.count(ResourceKind::User).unwrap(), 3);
    assert_eq!(store.reconcile_cursor().unwrap(), 3);
    assert_eq!(store.audit(10, None).unwrap().len(), 1);
    store
        .set_workspace_links(vec![("Ops".into(), Some(WorkspaceLink::default()))])
        .await
        .unwrap();
    assert_eq!(store.workspace_links().unwrap().len(), 3);
    store.close().await;
    drop(store);

    let info = check_store_json(&path).await;
    assert_fields(
        &info,
        &[
            ("schema_version", SCHEMA_VERSION),
            ("links", 2),
            ("workspace_links", 3),
        ],
    );
    // The old table holds no workspace rows any more.
    {
        let db = redb::Database::open(&path).unwrap();
        let rtx = redb::ReadableDatabase::begin_read(&db).unwrap();
        let t = rtx
            .open_table(redb::TableDefinition::<&str, &[u8]>::new("links"))
            .unwrap();
        for row in redb::ReadableTable::iter(&t).unwrap() {
            let (k, _) = row.unwrap();
            assert!(!k.value().starts_with("workspace:"), "{}", k.value());
        }
    }
    // A backup carries the new table, and opening it again migrates nothing twice.
    let cfg = config_for(dir.path(), &path);
    let copy = dir.path().join("copy.redb");
    let o = run(&["backup", copy.to_str().unwrap(), "--config", &cfg], &[]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(check_store_json(&copy).await["workspace_links"], 3);
    let store = Store::open(&copy, StoreOptions::default()).unwrap();
    assert_eq!(store.workspace_links().unwrap().len(), 3);
    assert_eq!(store.links().unwrap().len(), 2);
    store.close().await;
}

/// The v1 store without workspace links migrates too, keeping its one link.
#[tokio::test]
async fn the_committed_v1_store_migrates_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path());
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    assert!(store.workspace_links().unwrap().is_empty());
    assert_eq!(store.links().unwrap().len(), 1);
    store.close().await;
    drop(store);
    let info = scim_sync::store::inspect(&path).unwrap();
    assert_eq!(
        (info.schema_version, info.links, info.workspace_links),
        (SCHEMA_VERSION, 1, 0)
    );
}

/// A store written by schema version 2 (`store-v2.redb`, from [`generate_store_fixture`]) opens
/// and reads, its workspace link in the new table.
#[tokio::test]
async fn the_committed_v2_store_opens_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    std::fs::copy(Path::new(FIXTURE).with_file_name("store-v2.redb"), &path).unwrap();
    let info = scim_sync::store::inspect(&path).unwrap();
    assert_eq!(
        (
            info.schema_version,
            info.users,
            info.links,
            info.workspace_links
        ),
        (2, 3, 1, 1)
    );
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    let ws = store.workspace_links().unwrap();
    assert_eq!(ws["engineering"].updated, "2026-01-02T00:00:00Z");
    assert_eq!(
        store.links().unwrap()["ada@example.com"]
            .portkey_user_id
            .as_deref(),
        Some("pk-user-ada")
    );
    assert_eq!(store.last_seq().unwrap(), 5);
    // Opening it indexed its users by address and its links by SCIM id (schema version 3).
    for name in FIXTURE_USERS {
        let found = store.users_by_email(name).unwrap();
        assert_eq!(found.len(), 1, "{name}");
        assert_eq!(found[0].record.data["userName"], name);
    }
    let ada = store.users_by_email("ada@example.com").unwrap()[0]
        .record
        .id
        .clone();
    assert_eq!(
        store.emails_linked_to(&ada).unwrap(),
        vec!["ada@example.com"]
    );
    store.close().await;
    drop(store);
    assert_eq!(
        scim_sync::store::inspect(&path).unwrap().schema_version,
        SCHEMA_VERSION
    );
}

/// A store written by schema version 3 (`store-v3.redb`): users indexed by address, and the
/// index follows the writes made after it was opened again.
#[tokio::test]
async fn the_committed_v3_store_opens_and_its_address_index_follows_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    std::fs::copy(Path::new(FIXTURE).with_file_name("store-v3.redb"), &path).unwrap();
    assert_eq!(scim_sync::store::inspect(&path).unwrap().schema_version, 3);
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    let ada = store.users_by_email("ada@example.com").unwrap();
    assert_eq!(ada.len(), 1);
    let id = ada[0].record.id.clone();
    assert_eq!(
        store.emails_linked_to(&id).unwrap(),
        vec!["ada@example.com"]
    );
    // A new address moves the row; a second record with the same address sits beside it.
    let n = |name: &str, email: &str| scim_sync::scim::resource::Normalized {
        resource: json!({"userName": name, "emails": [{"value": email, "primary": true}]}),
        members: None,
    };
    store
        .replace(
            ResourceKind::User,
            id.clone(),
            n("ada@example.com", "Ada.L@Example.com"),
            None,
        )
        .await
        .unwrap();
    assert!(store.users_by_email("ada@example.com").unwrap().is_empty());
    let (twin, _) = store
        .create(ResourceKind::User, n("twin", "ada.l@example.com"))
        .await
        .unwrap();
    let mut both: Vec<String> = store
        .users_by_email("ada.l@example.com")
        .unwrap()
        .into_iter()
        .map(|r| r.record.id)
        .collect();
    both.sort();
    let mut expected = vec![id.clone(), twin.id.clone()];
    expected.sort();
    assert_eq!(both, expected);
    store
        .delete(ResourceKind::User, twin.id, None)
        .await
        .unwrap();
    assert_eq!(store.users_by_email("ada.l@example.com").unwrap().len(), 1);
    store.close().await;
}

/// A store from a later release, and files that are not stores at all, are refused with the
/// versions (or what the file is) and the fix, by the store, the daemon and check-store alike.
#[tokio::test]
async fn a_newer_schema_and_foreign_files_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path());
    let newer = SCHEMA_VERSION + 1;
    {
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut meta = tx
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("schema_version", newer).unwrap();
        }
        tx.commit().unwrap();
    }
    let e = Store::open(&path, StoreOptions::default()).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::TooNew { found, supported } if found == newer && supported == SCHEMA_VERSION
        ),
        "{e}"
    );
    let msg = e.to_string();
    for part in [
        format!("schema version {newer}"),
        format!("(schema version {SCHEMA_VERSION})"),
        "release that wrote it".into(),
        "restore a backup".into(),
    ] {
        assert!(msg.contains(&part), "{part}: {msg}");
    }
    // Refused before anything was written to its tables (redb itself may touch its header).
    {
        let db = redb::Database::open(&path).unwrap();
        let rtx = redb::ReadableDatabase::begin_read(&db).unwrap();
        let meta = rtx
            .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap();
        assert_eq!(meta.get("schema_version").unwrap().unwrap().value(), newer);
        let users = rtx
            .open_table(redb::TableDefinition::<&str, &[u8]>::new("users"))
            .unwrap();
        assert_eq!(redb::ReadableTableMetadata::len(&users).unwrap(), 3);
    }
    let p = path.to_str().unwrap();
    let o = run(&["check-store", p], &[]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains(&format!(
            "Schema version  {newer} (this release reads up to {SCHEMA_VERSION})"
        )),
        "{o:?}"
    );
    assert!(o.stdout.contains("restore a backup"), "{o:?}");
    let o = run(
        &["compact", "--config", &config_for(dir.path(), &path)],
        &[],
    )
    .await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains(&format!("schema version {newer}")),
        "{o:?}"
    );
    let o = serve_once(dir.path(), &path).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("[store] path"), "{o:?}");
    assert!(
        o.stderr.contains(&format!("schema version {newer}")),
        "{o:?}"
    );

    // Not a redb file at all.
    let junk = dir.path().join("junk.redb");
    std::fs::write(&junk, b"this is a text file, not a database\n".repeat(200)).unwrap();
    let e = Store::open(&junk, StoreOptions::default()).unwrap_err();
    assert!(matches!(e, StoreError::NotAStore { .. }), "{e}");
    assert!(e.to_string().contains("not a scim-sync store"), "{e}");
    let o = serve_once(dir.path(), &junk).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("not a scim-sync store"), "{o:?}");
    let o = run(&["check-store", junk.to_str().unwrap()], &[]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("not a scim-sync store"), "{o:?}");

    // A redb database that belongs to something else is left alone.
    let other = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&other).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::TableDefinition::<u64, u64>::new("things"))
            .unwrap()
            .insert(1, 2)
            .unwrap();
        tx.commit().unwrap();
    }
    let e = Store::open(&other, StoreOptions::default()).unwrap_err();
    assert!(matches!(e, StoreError::NotAStore { .. }), "{e}");
    let o = run(&["check-store", other.to_str().unwrap()], &[]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("no scim-sync schema version"), "{o:?}");
}

fn config_for(dir: &Path, store: &Path) -> String {
    let config = dir.join("refused.toml");
    std::fs::write(
        &config,
        format!(
            "[scim]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
             [portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\n",
            store.display()
        ),
    )
    .unwrap();
    config.to_str().unwrap().to_string()
}

/// `scim-sync serve` on `store`, expected to exit at once.
async fn serve_once(dir: &Path, store: &Path) -> Out {
    let config = config_for(dir, store);
    let env: Vec<(String, String)> = test_env().into_iter().collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run(&["serve", "--config", &config], &env).await
}

// ---- disk full -------------------------------------------------------------------------------

/// Sets the soft file-size limit of a running process; the hard limit stays unlimited, so
/// raising the soft one again needs no privilege.
fn set_fsize_limit(pid: u32, bytes: Option<u64>) {
    let lim = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit reads `lim` and writes nothing (the old-limit pointer is null).
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// The disk fills up under a running daemon. A file-size limit stands in for the full disk
/// (no root or loop device needed): with SIGXFSZ ignored, a write past the limit fails with
/// EFBIG as one on a full disk fails with ENOSPC, and redb sees an I/O error either way. Writes
/// get 503 with a SCIM error and `Retry-After`; health shows the store degraded; once the limit
/// is lifted the daemon takes writes again by itself; after a restart every create that got a
/// 201 is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_answers_503_and_the_daemon_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.redb");
    let mut d = Daemon::start_with(dir.path(), &store, 0, |cmd| {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe calls between fork and exec. An ignored signal stays
        // ignored across exec, so the daemon gets EFBIG instead of being killed by SIGXFSZ.
        unsafe {
            cmd.pre_exec(|| {
                if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
    .await;
    let admin = format!("http://127.0.0.1:{}", d.admin_port);
    let http = d.api.http.clone();
    let create = |name: String| {
        let api = d.api.clone();
        async move {
            let r = api
                .http
                .post(format!("{}/Users", api.base))
                .bearer_auth(SCIM_TOKEN)
                .header("content-type", "application/scim+json")
                .body(serde_json::to_vec(&user(&name)).unwrap())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body: Value =
                serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null);
            (name, status, retry_after, body)
        }
    };

    let mut acked: Vec<String> = Vec::new();
    for i in 0..20 {
        let (name, status, _, body) = create(format!("before{i}@example.com")).await;
        assert_eq!(status, 201, "{body}");
        acked.push(name);
    }
    let size = std::fs::metadata(&store).unwrap().len();
    set_fsize_limit(d.child.id(), Some(size));

    // Creates, 8 at a time, until the store refuses some.
    let started = Instant::now();
    let mut refused = 0usize;
    let mut other: Vec<String> = Vec::new();
    let mut i = 0usize;
    while refused < 20 && started.elapsed() < Duration::from_secs(30) {
        let names: Vec<String> = (0..8)
            .map(|k| format!("full{}@example.com", i + k))
            .collect();
        i += 8;
        let answers: Vec<_> = futures::stream::iter(names.into_iter().map(&create))
            .buffer_unordered(8)
            .collect()
            .await;
        for (name, status, retry_after, body) in answers {
            match status {
                201 => acked.push(name),
                503 => {
                    refused += 1;
                    assert_eq!(retry_after.as_deref(), Some("5"), "{body}");
                    assert_eq!(
                        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
                        "{body}"
                    );
                    assert_eq!(body["status"], "503", "{body}");
                }
                s => other.push(format!("{name}: {s} {body}")),
            }
        }
    }
    println!(
        "disk full: file limit {size} bytes; {} creates acknowledged, {refused} refused with 503 \
         within {:.1} s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(other.is_empty(), "answers other than 201 or 503: {other:?}");
    assert!(
        refused >= 20,
        "the store never refused a write under a {size}-byte file limit\n{}",
        d.log_text()
    );

    // Health reports the store as degraded while the limit holds. A reopen whose commit fits in
    // the file's free pages succeeds and clears the state until the next write that needs more
    // space fails, so the three views are read together after a write that fails, until they
    // agree (each on its own may catch the moment in between).
    let deadline = Instant::now() + Duration::from_secs(20);
    let healthz = || async {
        let r = http.get(format!("{admin}/healthz")).send().await.unwrap();
        r.json::<Value>().await.unwrap()
    };
    let mut k = 0usize;
    let (health, ready, status) = loop {
        let (_, status_code, _, _) = create(format!("probe{k}@example.com")).await;
        k += 1;
        let health = healthz().await;
        let ready = http
            .get(format!("{admin}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        let status = Admin::new(&admin, &http).status().await;
        let agree = health["status"] == "degraded"
            && ready == 503
            && status["store"]["ok"] == false
            && !status["store"]["degraded"].is_null();
        if (status_code == 503 && agree) || Instant::now() > deadline {
            break (health, ready, status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(health["status"], "degraded", "{health}\n{}", d.log_text());
    assert_eq!(ready, 503);
    assert_eq!(status["store"]["ok"], false, "{status}");
    assert!(!status["store"]["degraded"].is_null(), "{status}");

    // Space comes back: the daemon takes writes again without being touched.
    set_fsize_limit(d.child.id(), None);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut j = 0usize;
    loop {
        j += 1;
        let (name, status, _, body) = create(format!("after{j}@example.com")).await;
        if status == 201 {
            acked.push(name);
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            Instant::now() < deadline,
            "no write accepted within 20 s of the space coming back\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = started.elapsed();
    for k in 0..20 {
        let (name, status, _, body) = create(format!("later{k}@example.com")).await;
        assert_eq!(status, 201, "{body}");
        acked.push(name);
    }
    let health = healthz().await;
    assert_eq!(health["status"], "ok", "{health}");
    println!(
        "disk full: writes accepted again; test at {:.1} s",
        recovered.as_secs_f64()
    );

    // Every acknowledged create survives a restart (SIGKILL: no clean shutdown to help).
    d.kill();
    let d = Daemon::start(dir.path(), &store, 1).await;
    let missing: Vec<String> = futures::stream::iter(acked.iter().cloned())
        .map(|name| {
            let api = d.api.clone();
            async move {
                let filter = crate::common::enc(&format!("userName eq \"{name}\""));
                let (status, body) = api.get(&format!("/Users?filter={filter}")).await;
                (status != 200 || body["totalResults"] != 1).then_some(name)
            }
        })
        .buffer_unordered(16)
        .filter_map(|m| async move { m })
        .collect()
        .await;
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged creates lost: {missing:?}",
        missing.len(),
        acked.len()
    );
}
