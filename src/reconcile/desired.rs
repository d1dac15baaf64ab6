//! The desired state, read from the store: of everyone (a full run), or of a few people (a
//! change-driven run, `explain`), read through the store's indexes instead of in full.
//!
//! The policy ([`policy::desired_state_with_owners`]) is the same in both: a few people's state
//! is the policy run on every record that can bear on their addresses, which makes it what the
//! whole state says of them (a test holds the two side by side).

use super::run::ReconcileError;
use crate::config::{GroupMapping, SyncConfig};
use crate::policy::{self, DesiredState, ScimGroup, ScimUser};
use crate::scim::address::user_email;
use crate::scim::schema::ResourceKind;
use crate::store::{Link, Query, Record, Store};
use std::collections::{BTreeMap, BTreeSet};

/// Where the SCIM records and the ledger are, and the policy's settings.
pub struct Inputs<'a> {
    pub store: &'a Store,
    pub sync: &'a SyncConfig,
    pub mappings: &'a [GroupMapping],
}

/// Email → the SCIM user the daemon provisioned that address for.
pub fn owners_of(links: &BTreeMap<String, Link>) -> BTreeMap<String, String> {
    links
        .iter()
        .filter_map(|(k, l)| l.scim_id.clone().map(|id| (k.clone(), id)))
        .collect()
}

/// Every record of a type, without member or group lists (the policy reads member ids apart).
fn all() -> Query {
    Query {
        filter: None,
        start_index: 1,
        count: usize::MAX,
        with_refs: false,
    }
}

/// Everyone's desired state: every SCIM user and group. `owners` is [`owners_of`] the whole
/// ledger, as the caller read it.
pub fn everyone(
    inp: &Inputs<'_>,
    owners: &BTreeMap<String, String>,
) -> Result<DesiredState, ReconcileError> {
    let users = inp.store.query(ResourceKind::User, &all())?;
    let users: Vec<_> = users
        .items
        .iter()
        .map(|r| super::scim_user(&r.record))
        .collect();
    let groups: Vec<_> = inp
        .store
        .groups_with_member_ids()?
        .into_iter()
        .map(|(record, members)| super::scim_group(&record, members))
        .collect();
    Ok(decide(inp, &users, &groups, owners))
}

/// The policy on these records, with the ledger's owners.
fn decide(
    inp: &Inputs<'_>,
    users: &[ScimUser],
    groups: &[ScimGroup],
    owners: &BTreeMap<String, String>,
) -> DesiredState {
    policy::desired_state_with_owners(users, groups, inp.sync, inp.mappings, owners)
}

/// The desired state of the people known by `emails` (lower-cased) and of the SCIM users `ids`:
/// for each of their addresses, the same as [`everyone`]'s. Reads, besides every group's name
/// (which decides the managed workspaces and the groups' warnings): every user known by one of
/// the addresses, the user the ledger provisioned each for, the groups each of them is in; and
/// the same once more for the addresses those users have now, so that an address that moved
/// between records is decided as the whole state decides it. Other people's warnings are left
/// out.
pub fn people(
    inp: &Inputs<'_>,
    emails: &BTreeSet<String>,
    ids: &BTreeSet<String>,
) -> Result<DesiredState, ReconcileError> {
    let mut users: BTreeMap<String, Record> = BTreeMap::new();
    for id in ids {
        if let Some(r) = inp.store.get(ResourceKind::User, id, false)? {
            users.insert(r.record.id.clone(), r.record);
        }
    }
    let mut addresses = emails.clone();
    let mut links: BTreeMap<String, Link> = BTreeMap::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    // Two rounds: the addresses asked for, then those the records found have now.
    for _ in 0..2 {
        let new: Vec<&String> = addresses.difference(&done).collect();
        links.extend(inp.store.links_of(new.iter().map(|e| e.as_str()))?);
        for email in new {
            for r in inp.store.users_by_email(email)? {
                users.insert(r.record.id.clone(), r.record);
            }
            let linked = links.get(email).and_then(|l| l.scim_id.as_deref());
            if let Some(r) = linked
                .map(|id| inp.store.get(ResourceKind::User, id, false))
                .transpose()?
                .flatten()
            {
                users.insert(r.record.id.clone(), r.record);
            }
        }
        done.extend(addresses.iter().cloned());
        addresses.extend(users.values().filter_map(|r| user_email(&r.data)));
    }
    let mut member_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in users.keys() {
        for gid in inp.store.groups_of(id)? {
            member_of.entry(gid).or_default().push(id.clone());
        }
    }
    let groups: Vec<_> = inp
        .store
        .query(ResourceKind::Group, &all())?
        .items
        .iter()
        .map(|r| {
            let members = member_of.remove(&r.record.id).unwrap_or_default();
            super::scim_group(&r.record, members)
        })
        .collect();
    let users: Vec<ScimUser> = users.values().map(super::scim_user).collect();
    Ok(decide(inp, &users, &groups, &owners_of(&links)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::roles::WorkspaceRole;
    use crate::scim::resource::{MemberRef, Normalized};
    use crate::store::StoreOptions;
    use serde_json::{json, Value};

    /// A small deterministic generator (the test must say which seed failed).
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    const ADDRESSES: [&str; 8] = [
        "ada@x.io", "bob@x.io", "cy@x.io", "di@x.io", "ed@x.io", "fay@x.io", "gus@x.io", "hal@x.io",
    ];
    const GROUPS: [&str; 7] = [
        "ws-Eng-role-admin",
        "ws-Eng-role-member",
        "ws-eng-role-manager",
        "ws-Ops-role-member",
        "Research",
        "ws-nonsense",
        "Everyone",
    ];

    /// One user record: an address from the pool (as emails[] or as userName only, sometimes in
    /// capitals), one that is refused, or none; active or not.
    fn user_body(rng: &mut Lcg, n: usize) -> Value {
        let addr = ADDRESSES[rng.below(ADDRESSES.len() as u64) as usize];
        let active = rng.below(5) != 0;
        match rng.below(6) {
            0 => json!({"userName": addr.to_uppercase(), "active": active}),
            1 => json!({"userName": format!("login{n}"), "active": active,
                        "emails": [{"value": "not an address", "primary": true}]}),
            2 => json!({"userName": format!("login{n}"), "active": active}),
            _ => json!({"userName": format!("u{n}@corp.io"), "active": active,
                        "emails": [{"value": "old@x.io"}, {"value": addr, "primary": "True"}]}),
        }
    }

    async fn population(seed: u64) -> (tempfile::TempDir, Store, BTreeMap<String, Link>) {
        let mut rng = Lcg(seed);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreOptions::default()).unwrap();
        let mut ids = Vec::new();
        for n in 0..24 {
            let resource = user_body(&mut rng, n);
            let n = Normalized {
                resource,
                members: None,
            };
            // Two records may not share a userName: the second is refused, as the IdP would be.
            match store.create(ResourceKind::User, n).await {
                Ok((r, _)) => ids.push(r.id),
                Err(crate::store::StoreError::Conflict { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        // Some change address after creation, and a few are deleted: the index follows.
        for (k, id) in ids.clone().iter().enumerate() {
            match rng.below(6) {
                0 => {
                    let resource = user_body(&mut rng, 100 + k);
                    let n = Normalized {
                        resource,
                        members: None,
                    };
                    match store.replace(ResourceKind::User, id.clone(), n, None).await {
                        Ok(_) | Err(crate::store::StoreError::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                1 => {
                    store
                        .delete(ResourceKind::User, id.clone(), None)
                        .await
                        .unwrap();
                    ids.retain(|i| i != id);
                }
                _ => {}
            }
        }
        for name in GROUPS {
            let members = ids
                .iter()
                .filter(|_| rng.below(3) == 0)
                .map(|id| MemberRef { value: id.clone() })
                .collect();
            let n = Normalized {
                resource: json!({ "displayName": name }),
                members: Some(members),
            };
            store.create(ResourceKind::Group, n).await.unwrap();
        }
        // The ledger: some addresses provisioned for a record that still exists (with that
        // address or another now), some for one that is gone.
        let mut links = Vec::new();
        for addr in ADDRESSES {
            let scim_id = match rng.below(4) {
                0 => None,
                1 => Some("deleted-long-ago".to_string()),
                _ => Some(ids[rng.below(ids.len() as u64) as usize].clone()),
            };
            let link = Link {
                scim_id,
                portkey_user_id: Some(format!("pk-{addr}")),
                invite_id: None,
                updated: String::new(),
            };
            links.push((addr.to_string(), Some(link)));
        }
        store.set_links(links).await.unwrap();
        let links = store.links().unwrap();
        (dir, store, links)
    }

    /// Everything a plan for one address reads of the desired state.
    fn about(d: &DesiredState, email: &str, linked: Option<&str>) -> String {
        let excluded: Vec<_> = d
            .excluded
            .values()
            .filter(|x| x.email.as_deref() == Some(email) || Some(x.scim_id.as_str()) == linked)
            .collect();
        let linked_now = linked.and_then(|id| d.users.values().find(|u| u.scim_id == id));
        format!(
            "user {:?}\nfrozen {}\nexcluded {excluded:?}\nlinked active {:?}\nlinked now {linked_now:?}\nconflicts {:?}\nknown {} inactive {}\nmanaged {:?}",
            d.users.get(email),
            d.frozen.contains(email),
            linked.map(|id| d.active_scim_ids.contains(id)),
            d.conflicts.iter().filter(|c| c.email == email).collect::<Vec<_>>(),
            d.known_emails().contains(email),
            d.inactive_emails().contains(email),
            d.managed_workspaces,
        )
    }

    #[tokio::test]
    async fn a_few_peoples_state_is_what_everyones_says_of_them() {
        let sync = crate::policy::tests::sync();
        let mappings = vec![GroupMapping {
            group: "Research".into(),
            workspace: "Lab".into(),
            role: WorkspaceRole::Manager,
        }];
        for seed in 0..40 {
            let (_dir, store, links) = population(seed).await;
            let inp = Inputs {
                store: &store,
                sync: &sync,
                mappings: &mappings,
            };
            let whole = everyone(&inp, &owners_of(&links)).unwrap();
            let mut addresses: BTreeSet<String> = ADDRESSES.iter().map(|a| a.to_string()).collect();
            addresses.extend(whole.known_emails());
            for email in &addresses {
                let linked = links.get(email).and_then(|l| l.scim_id.as_deref());
                let few = people(&inp, &BTreeSet::from([email.clone()]), &BTreeSet::new()).unwrap();
                assert_eq!(
                    about(&few, email, linked),
                    about(&whole, email, linked),
                    "seed {seed}, {email}"
                );
            }
            // By SCIM id, as `explain` asks.
            for r in store.query(ResourceKind::User, &all()).unwrap().items {
                let id = r.record.id;
                let few = people(&inp, &BTreeSet::new(), &BTreeSet::from([id.clone()])).unwrap();
                assert_eq!(few.explain(&id), whole.explain(&id), "seed {seed}, {id}");
            }
        }
    }
}
