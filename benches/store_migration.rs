//! How long the first start after an upgrade takes: a store at schema version 2 with N users
//! (and a ledger link for each) opened by this release, which builds the version-3 indexes (users
//! by address, links by SCIM id) in one transaction before it serves anything.
//!
//! `cargo bench --bench store_migration [-- --users 100000]`. The version-2 store is this
//! release's store with the two index tables dropped and the version set back to 2, which is
//! what a version-2 release wrote (the other tables did not change).

// A bench may take a default where a read fails: what it prints says what it measured.
#![allow(clippy::disallowed_methods)]

#[path = "support/host.rs"]
mod host;
#[path = "support/seed.rs"]
mod seed;

fn email(i: usize) -> String {
    format!("user{i}@example.com")
}

use redb::{MultimapTableDefinition, ReadableDatabase, TableDefinition};
use scim_sync::store::{Link, Store, StoreOptions};
use std::time::Instant;

fn users_arg() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--users")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

#[tokio::main]
async fn main() {
    let users = users_arg();
    println!(
        "store_migration bench: {users} users and links; load average {}",
        host::load_avg()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let started = Instant::now();
    {
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        let ids = seed::users(&store, users, email).await;
        for (c, ids) in ids.chunks(10_000).enumerate() {
            let links = ids
                .iter()
                .enumerate()
                .map(|(k, id)| {
                    let link = Link {
                        scim_id: Some(id.clone()),
                        portkey_user_id: Some(format!("pk-{id}")),
                        ..Link::default()
                    };
                    (email(c * 10_000 + k), Some(link))
                })
                .collect();
            store.set_links(links).await.unwrap();
        }
        store.close().await;
    }
    println!("seeded in {:.1} s", started.elapsed().as_secs_f64());
    {
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_write().unwrap();
        for name in ["idx_user_email", "idx_link_scim_id"] {
            tx.delete_multimap_table(MultimapTableDefinition::<&str, &str>::new(name))
                .unwrap();
        }
        tx.open_table(TableDefinition::<&str, u64>::new("meta"))
            .unwrap()
            .insert("schema_version", 2)
            .unwrap();
        tx.commit().unwrap();
        let rtx = db.begin_read().unwrap();
        let meta = rtx
            .open_table(TableDefinition::<&str, u64>::new("meta"))
            .unwrap();
        assert_eq!(meta.get("schema_version").unwrap().unwrap().value(), 2);
    }
    let bytes = std::fs::metadata(&path).unwrap().len();
    let started = Instant::now();
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    let opened = started.elapsed();
    // The indexes answer for the last user and its link.
    let last = email(users - 1);
    let found = store.users_by_email(&last).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        store.emails_linked_to(&found[0].record.id).unwrap(),
        vec![last]
    );
    println!(
        "opened a version-2 store of {:.0} MiB and migrated it to version {} in {:.2} s",
        bytes as f64 / 1_048_576.0,
        scim_sync::store::SCHEMA_VERSION,
        opened.as_secs_f64()
    );
    store.close().await;
    drop(store);
    let started = Instant::now();
    let again = Store::open(&path, StoreOptions::default()).unwrap();
    println!(
        "opened again (nothing to migrate) in {:.3} s",
        started.elapsed().as_secs_f64()
    );
    again.close().await;
    println!("load average at the end {}", host::load_avg());
}
