//! Property test: random SCIM writes, IdP mistakes and control-plane faults against the simulator.
//!
//! Each case starts a simulator seeded with an owner, a protected admin and an outsider the IdP
//! does not know (an explicit member of workspace `A`), and a daemon whose only runs are forced
//! full runs (debounce 60 s, yearly cron). A seeded generator then plays 6–12 steps: SCIM users
//! created from a small address pool (so claims collide; case variants, a trailing space,
//! look-alikes, the owner's and the protected address; some with `admin`/`owner` roles),
//! deactivations, reactivations, deletions, role changes, group joins and leaves, renames, IdP
//! mistakes (clearing or deleting a group, clearing a user's emails or turning the address into a
//! trailing-space variant, deactivating everyone), invite acceptance, and a control-plane fault
//! for one run (20 % 5xx, or a failing first page of the users list or of a member list).
//!
//! # Invariants, checked after every run
//! - (a) The owner, the protected admin and the outsider get no write (no path with their id, no
//!   invite for their address, no member add) and keep their role; the outsider keeps its
//!   explicit membership of `A`.
//! - (b) Nobody who must keep access loses it: no removal or revocation for an address that is
//!   owned by an active SCIM user, frozen, or provisioned for a SCIM user who is still active
//!   ("an address lost or changed is not a departure"); no removal of an owner from a workspace
//!   its groups name; every org or workspace role written is the one the IdP asks for (so no
//!   demotion of a wanted admin); nothing is granted to an address nobody owns. Mass removals are
//!   held, not sent: the destructive writes applied in a case never exceed what the default fuse
//!   allows at this size (5), a held op is never sent, and a run that did not read everything
//!   sends no destructive write.
//! - (c) At most one pending invite per address, case-insensitively.
//! - (d) After each step (the fault cleared), the next run writes nothing and the held count is
//!   stable. One extra run is allowed when a run removed an address's linked owner and so handed
//!   the address to another record (its invite can only go out once the old account is gone).
//!   Then the control plane matches the model, except for ops the fuse holds or that wait in
//!   quarantine: every owned address is a user or invited, with the wanted org role; org members
//!   have exactly the wanted memberships of the managed workspaces; addresses nobody keeps are
//!   gone.
//!
//! # The model
//! Ownership follows the module docs of `src/policy.rs` and `src/reconcile/plan.rs`, with the
//! test's own copy of the link ledger: the record the ledger links to an address owns it while
//! that record exists (active or not: an inactive owner means nobody is wanted); otherwise the
//! only active record with a clean address owns it, and several make it frozen. Clean means
//! printable ASCII shaped `local@domain.tld` (`src/email.rs` refuses whitespace, invisible,
//! fullwidth and mixed-script addresses).
//!
//! Reproduce one case with `SCIM_SYNC_PROPERTY_SEED=<seed> cargo test --test it property`; run
//! more cases with `SCIM_SYNC_PROPERTY_CASES=<n>`; print every case's steps with
//! `SCIM_SYNC_PROPERTY_VERBOSE=1`. Steps replay exactly; with 5xx faults, which calls fail
//! depends on the order of concurrent calls.

use crate::common::patch_body;
use crate::e2e;
use portkey_sim::{FailPage, Faults, Quirks, Seed, SeedMember, SeedUser, SeedWorkspace};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

const OWNER: &str = "owner@example.com";
const PROTECTED: &str = "admin@example.com";
const OUTSIDER: &str = "outsider@example.com";
/// With the default fuse (floor 5, 10 %, 25, a 60-minute window) and fewer than 50 managed
/// people, a window holds at most `fuse_floor` applied destructive ops; a case runs in one window.
const FUSE_ALLOWANCE: usize = 5;
/// (address, clean, weight): clean addresses are claimable, the others must be refused.
const POOL: &[(&str, bool, u32)] = &[
    ("alice@example.com", true, 5),
    ("bob@example.com", true, 5),
    ("carol@example.com", true, 5),
    ("dave@example.com", true, 5),
    ("erin@example.com", true, 4),
    ("frank@example.com", true, 4),
    ("grace@example.com", true, 3),
    ("heidi@example.com", true, 3),
    ("ivan@example.com", true, 3),
    ("Alice@Example.com", true, 2),
    ("BOB@example.com", true, 2),
    (OWNER, true, 1),
    (PROTECTED, true, 1),
    ("alice@example.com ", false, 1),
    ("\u{430}lice@example.com", false, 1),
    ("bob\u{200b}@example.com", false, 1),
    ("\u{ff43}arol@example.com", false, 1),
];
const GROUPS: &[&str] = &[
    "ws-A-role-member",
    "ws-A-role-admin",
    "ws-B-role-manager",
    "ws-C-role-member",
];

// ---- harness (after reconcile.rs) ------------------------------------------------------------

/// The shared harness, with this test's own helpers (which answer with status codes instead of
/// asserting success) in front of it.
struct Env(e2e::Env);

impl std::ops::Deref for Env {
    type Target = e2e::Env;
    fn deref(&self) -> &e2e::Env {
        &self.0
    }
}

async fn start() -> Env {
    let member = |email: &str, role: &str| SeedUser {
        email: email.into(),
        first_name: None,
        last_name: None,
        role: role.into(),
    };
    let seed = Seed {
        users: vec![
            member(OWNER, "owner"),
            member(PROTECTED, "admin"),
            member(OUTSIDER, "member"),
        ],
        workspaces: vec![SeedWorkspace {
            name: "A".into(),
            slug: None,
            members: vec![SeedMember {
                email: OUTSIDER.into(),
                role: "member".into(),
            }],
        }],
        ..Default::default()
    };
    let sync = "protected_emails = [\"Admin@Example.com\"]\n";
    Env(e2e::start_with(seed, Quirks::default(), sync, 1).await)
}

impl Env {
    /// A SCIM call: status and body (`Null` when empty).
    async fn scim(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.0.scim_call(method, path, body).await
    }

    async fn patch(&self, path: &str, ops: Value) -> u16 {
        let (status, body) = self
            .scim(reqwest::Method::PATCH, path, Some(patch_body(ops)))
            .await;
        assert!(status < 300, "PATCH {path}: {status} {body}");
        status
    }

    /// `GET /admin/status`, whole document.
    async fn status(&self) -> Value {
        self.status_doc().await
    }

    async fn sim(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.control.call(method, path, body.as_ref()).await.1
    }

    async fn state(&self) -> Value {
        self.control.state().await
    }

    async fn log(&self) -> Vec<Value> {
        self.control.requests().await
    }

    async fn set_faults(&self, f: &Faults) {
        self.control.set_faults(f).await;
    }
}

// ---- reading the IdP side back ---------------------------------------------------------------

fn org_rank(r: &str) -> u8 {
    match r {
        "owner" => 3,
        "admin" => 2,
        _ => 1,
    }
}

fn ws_rank(r: &str) -> u8 {
    match r {
        "admin" => 3,
        "manager" => 2,
        _ => 1,
    }
}

fn ws_role_name(rank: u8) -> &'static str {
    ["member", "manager", "admin"][rank as usize - 1]
}

/// What the test, independently of the daemon, calls a clean address.
fn clean(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.chars().all(|c| c.is_ascii_graphic())
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

fn truthy(v: &Value) -> bool {
    v == &json!(true) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

/// The address a stored SCIM user is known by (primary, first, else an `@` userName), lower-cased
/// when clean; `Err` with the raw value when refused.
fn address(u: &Value) -> Option<Result<String, String>> {
    let emails = u["emails"].as_array().cloned().unwrap_or_default();
    let value = |e: &Value| {
        e["value"]
            .as_str()
            .filter(|v| !v.trim().is_empty())
            .map(str::to_string)
    };
    let raw = emails
        .iter()
        .find(|e| truthy(&e["primary"]))
        .and_then(value)
        .or_else(|| emails.iter().find_map(value))
        .or_else(|| {
            u["userName"]
                .as_str()
                .filter(|n| n.contains('@'))
                .map(str::to_string)
        })?;
    Some(if clean(&raw) {
        Ok(raw.to_lowercase())
    } else {
        Err(raw)
    })
}

/// `ws-{Name}-role-{role}` → (lower-cased workspace name, role rank).
fn convention(group: &str) -> Option<(String, u8)> {
    let (head, role) = group.rsplit_once("-role-")?;
    head.get(..3).filter(|p| p.eq_ignore_ascii_case("ws-"))?;
    let role = role.to_lowercase();
    ["admin", "manager", "member"]
        .contains(&role.as_str())
        .then(|| (head[3..].to_lowercase(), ws_rank(&role)))
}

/// A person the IdP wants: the one SCIM user that owns a clean address (see [`read_model`]).
#[derive(Debug)]
struct Person {
    scim_id: String,
    /// 1 member, 2 admin, 3 owner.
    role: u8,
    /// Lower-cased workspace → role rank.
    ws: BTreeMap<String, u8>,
}

/// The IdP side as the SCIM server stores it, and what follows from it.
#[derive(Debug, Default)]
struct Model {
    /// Address → its owner: the record the ledger links to the address when that record still
    /// exists (active or not: an inactive one owns it and nobody is wanted), else the only active
    /// record claiming it.
    people: BTreeMap<String, Person>,
    /// Addresses claimed by several active records and owned by none: nothing granted or removed.
    frozen: BTreeSet<String>,
    /// Every stored SCIM user id, active or not.
    exists: BTreeSet<String>,
    /// Active SCIM user id → its clean address, if any.
    active: BTreeMap<String, Option<String>>,
    /// Workspaces named by a convention group.
    group_ws: BTreeSet<String>,
}

impl Model {
    /// Why `k` must keep its access, if it must: it is wanted, frozen, or provisioned for a SCIM
    /// user who is still active (under another address, a refused one, or none: "an address
    /// lost or changed is not a departure").
    fn keeps(&self, k: &str, linked: &BTreeMap<String, String>) -> Option<String> {
        if let Some(p) = self.people.get(k) {
            return Some(format!("owned by active SCIM user {}", p.scim_id));
        }
        if self.frozen.contains(k) {
            return Some("frozen: claimed by several active records, none linked".into());
        }
        linked
            .get(k)
            .filter(|id| self.active.contains_key(*id))
            .map(|id| {
                format!(
                    "provisioned for SCIM user {id}, still active with address {:?}",
                    self.active[id]
                )
            })
    }
}

/// Reads the SCIM users and groups back and applies the documented rules (`src/policy.rs`) with
/// the test's own model of the link ledger (`linked`: address → SCIM id).
async fn read_model(e: &Env, linked: &BTreeMap<String, String>) -> Model {
    let (st, users) = e
        .scim(reqwest::Method::GET, "/Users?startIndex=1&count=500", None)
        .await;
    assert_eq!(st, 200, "{users}");
    let (st, groups) = e
        .scim(reqwest::Method::GET, "/Groups?startIndex=1&count=500", None)
        .await;
    assert_eq!(st, 200, "{groups}");
    let mut m = Model::default();
    let mut claimants: BTreeMap<String, Vec<(String, u8)>> = BTreeMap::new();
    for u in users["Resources"].as_array().cloned().unwrap_or_default() {
        let id = u["id"].as_str().unwrap().to_string();
        m.exists.insert(id.clone());
        let active = u.get("active").is_none_or(|a| a.is_null() || truthy(a));
        if !active {
            continue;
        }
        let key = address(&u).and_then(Result::ok);
        m.active.insert(id.clone(), key.clone());
        let roles: Vec<&Value> = u["roles"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let rank = |r: &Value| {
            r["value"]
                .as_str()
                .map(|v| v.trim().to_lowercase())
                .filter(|v| ["owner", "admin", "member"].contains(&v.as_str()))
                .map(|v| org_rank(&v))
        };
        let role = roles
            .iter()
            .find(|r| truthy(&r["primary"]))
            .and_then(|r| rank(r))
            .or_else(|| roles.iter().filter_map(|r| rank(r)).max())
            .unwrap_or(1);
        if let Some(k) = key {
            claimants.entry(k).or_default().push((id, role));
        }
    }
    let mut in_groups: BTreeMap<String, Vec<(String, u8)>> = BTreeMap::new();
    for g in groups["Resources"].as_array().cloned().unwrap_or_default() {
        let id = g["id"].as_str().unwrap();
        // Lists may leave members out: read each group.
        let (st, g) = e
            .scim(reqwest::Method::GET, &format!("/Groups/{id}"), None)
            .await;
        assert_eq!(st, 200, "{g}");
        let Some((ws, rank)) = convention(g["displayName"].as_str().unwrap_or("")) else {
            continue;
        };
        m.group_ws.insert(ws.clone());
        for member in g["members"].as_array().cloned().unwrap_or_default() {
            if let Some(uid) = member["value"].as_str() {
                in_groups
                    .entry(uid.to_string())
                    .or_default()
                    .push((ws.clone(), rank));
            }
        }
    }
    for (k, c) in claimants {
        let owner = match linked.get(&k).filter(|id| m.exists.contains(*id)) {
            Some(id) => c.iter().find(|(cid, _)| cid == id),
            None if c.len() == 1 => c.first(),
            None => {
                m.frozen.insert(k.clone());
                None
            }
        };
        let Some((id, role)) = owner else {
            continue;
        };
        let mut ws = BTreeMap::new();
        for (w, r) in in_groups.get(id).cloned().unwrap_or_default() {
            let cur = ws.entry(w).or_insert(r);
            *cur = (*cur).max(r);
        }
        m.people.insert(
            k,
            Person {
                scim_id: id.clone(),
                role: *role,
                ws,
            },
        );
    }
    m
}

// ---- reading the control-plane side ----------------------------------------------------------

fn arr<'a>(v: &'a Value, key: &str) -> Vec<&'a Value> {
    v[key]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn lc(v: &Value) -> String {
    v.as_str().unwrap_or("").to_lowercase()
}

fn user_by_id<'a>(st: &'a Value, id: &str) -> Option<&'a Value> {
    arr(st, "users").into_iter().find(|u| u["id"] == id)
}

fn user_by_email<'a>(st: &'a Value, k: &str) -> Option<&'a Value> {
    arr(st, "users").into_iter().find(|u| lc(&u["email"]) == k)
}

fn pending(st: &Value) -> Vec<&Value> {
    arr(st, "invites")
        .into_iter()
        .filter(|i| i["status"] == "pending")
        .collect()
}

fn ws_by_ref<'a>(st: &'a Value, r: &str) -> Option<&'a Value> {
    arr(st, "workspaces")
        .into_iter()
        .find(|w| w["id"] == r || w["slug"] == r)
}

fn ws_by_name<'a>(st: &'a Value, name: &str) -> Option<&'a Value> {
    arr(st, "workspaces")
        .into_iter()
        .find(|w| lc(&w["name"]) == name)
}

/// The explicit (non-implicit) role of a user in a workspace.
fn explicit_role(ws: &Value, user_id: &str) -> Option<String> {
    arr(ws, "members")
        .into_iter()
        .find(|m| m["user_id"] == user_id && m["implicit"] != true)
        .map(|m| m["role"].as_str().unwrap_or("").to_string())
}

/// One write the daemon sent, as the check understands it.
#[derive(Debug)]
enum Write {
    Invite {
        email: String,
        role: String,
        ws: Vec<(String, String)>,
    },
    Revoke(String),
    RemoveUser(String),
    SetOrgRole(String, String),
    CreateWs,
    AddMembers(String, Vec<(String, String)>),
    SetMemberRole(String, String, String),
    RemoveMember(String, String),
    Other,
}

fn parse_write(entry: &Value) -> Write {
    let method = entry["method"].as_str().unwrap_or("");
    let path = entry["path"].as_str().unwrap_or("");
    let body = &entry["body"];
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    match (method, &seg[..]) {
        ("POST", ["v1", "admin", "users", "invites"]) => Write::Invite {
            email: s(&body["email"]),
            role: s(&body["role"]),
            ws: arr(body, "workspaces")
                .iter()
                .map(|w| (s(&w["id"]), s(&w["role"])))
                .collect(),
        },
        ("DELETE", ["v1", "admin", "users", "invites", id]) => Write::Revoke(id.to_string()),
        ("DELETE", ["v1", "admin", "users", id]) => Write::RemoveUser(id.to_string()),
        ("PUT", ["v1", "admin", "users", id]) => {
            Write::SetOrgRole(id.to_string(), s(&body["role"]))
        }
        ("POST", ["v1", "admin", "workspaces"]) => Write::CreateWs,
        ("POST", ["v1", "admin", "workspaces", ws, "users" | "members"]) => Write::AddMembers(
            ws.to_string(),
            arr(body, "users")
                .iter()
                .map(|u| (s(&u["id"]), s(&u["role"])))
                .collect(),
        ),
        ("PUT", ["v1", "admin", "workspaces", ws, "users" | "members", uid]) => {
            Write::SetMemberRole(ws.to_string(), uid.to_string(), s(&body["role"]))
        }
        ("DELETE", ["v1", "admin", "workspaces", ws, "users" | "members", uid]) => {
            Write::RemoveMember(ws.to_string(), uid.to_string())
        }
        _ => Write::Other,
    }
}

// ---- the case -----------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum FaultKind {
    Rate5xx(u64),
    /// (what, path): page 0 of that list answers 500.
    FailPage(String, String),
}

#[derive(Debug, Clone)]
enum Action {
    /// (email, userName is the email, role), one or a small batch.
    Create(Vec<(&'static str, bool, Option<&'static str>)>),
    SetActive(usize, bool),
    Delete(usize),
    Join(Vec<usize>, &'static str),
    Leave(usize, String),
    Rename(String, &'static str),
    DeleteGroup(String),
    ClearGroup(String),
    /// Clear the user's emails, or (true) replace the address with a trailing-space variant.
    ClearEmails(usize, bool),
    SetRole(usize, Option<&'static str>),
    DeactivateAll,
    Accept(Option<Vec<String>>),
    Fault(FaultKind, Box<Action>),
}

struct Handle {
    id: String,
    email: &'static str,
    label: String,
    active: bool,
    deleted: bool,
}

#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    steps: usize,
    runs: usize,
    fault_runs: usize,
    destructive: usize,
    held_runs: usize,
    max_held: u64,
    invites: usize,
    handovers: usize,
    max_org: usize,
}

struct Case {
    e: Env,
    rng: StdRng,
    users: Vec<Handle>,
    /// Display name → (id, member SCIM ids).
    groups: BTreeMap<String, (String, BTreeSet<String>)>,
    steps: Arc<Mutex<Vec<String>>>,
    /// The three seeded people nobody may touch: (email, id, role).
    fixed: Vec<(String, String, String)>,
    /// Address → the SCIM user it was provisioned for, as the ledger should have it.
    linked: BTreeMap<String, String>,
    /// Workspaces managed at some point (they stay managed while they exist).
    managed: BTreeSet<String>,
    last_log: Vec<Value>,
    stats: Stats,
}

fn note(steps: &Arc<Mutex<Vec<String>>>, s: String) {
    steps.lock().unwrap().push(s);
}

impl Case {
    fn live(&self, pred: impl Fn(&Handle) -> bool) -> Vec<usize> {
        (0..self.users.len())
            .filter(|&i| !self.users[i].deleted && pred(&self.users[i]))
            .collect()
    }

    fn pick<T: Clone>(&mut self, v: &[T]) -> Option<T> {
        if v.is_empty() {
            None
        } else {
            Some(v[self.rng.gen_range(0..v.len())].clone())
        }
    }

    async fn gen(&mut self, allow_fault: bool) -> Action {
        loop {
            let mut roll = self.rng.gen_range(0..100);
            if self.live(|h| h.active).len() < 3 && self.rng.gen_bool(0.7) {
                roll = 0;
            } else if self.stats.steps >= 4 && self.rng.gen_bool(0.15) {
                // Later in a case, mass mistakes are likelier: there is something to lose.
                roll = if self.rng.gen_bool(0.6) { 74 } else { 62 };
            }
            let group_names: Vec<String> = self.groups.keys().cloned().collect();
            let a = match roll {
                0..=21 => {
                    let total: u32 = POOL.iter().map(|p| p.2).sum();
                    let mut batch = Vec::new();
                    for _ in 0..self.rng.gen_range(1..=4) {
                        let mut at = self.rng.gen_range(0..total);
                        let &(email, is_clean, _) = POOL
                            .iter()
                            .find(|p| {
                                let hit = at < p.2;
                                at = at.saturating_sub(p.2);
                                hit
                            })
                            .unwrap();
                        let role = match self.rng.gen_range(0..20) {
                            0..=12 => None,
                            13..=17 => Some("admin"),
                            _ => Some("owner"),
                        };
                        batch.push((email, is_clean && self.rng.gen_bool(0.4), role));
                    }
                    Some(Action::Create(batch))
                }
                22..=29 => {
                    let v = self.live(|h| h.active);
                    self.pick(&v).map(|i| Action::SetActive(i, false))
                }
                30..=34 => {
                    let v = self.live(|h| !h.active);
                    self.pick(&v).map(|i| Action::SetActive(i, true))
                }
                35..=38 => {
                    let v = self.live(|_| true);
                    self.pick(&v).map(Action::Delete)
                }
                39..=52 => {
                    let v = self.live(|_| true);
                    let g = GROUPS[self.rng.gen_range(0..GROUPS.len())];
                    let n = self.rng.gen_range(1..=3);
                    let who: BTreeSet<usize> = (0..n).filter_map(|_| self.pick(&v)).collect();
                    (!who.is_empty()).then(|| Action::Join(who.into_iter().collect(), g))
                }
                53..=57 => {
                    // Ordered by user index, not by (random) SCIM id, so a seed replays.
                    let mut pairs: Vec<(usize, String)> = self
                        .groups
                        .iter()
                        .flat_map(|(name, (_, members))| {
                            members.iter().filter_map(|m| {
                                self.users
                                    .iter()
                                    .position(|h| &h.id == m)
                                    .map(|i| (i, name.clone()))
                            })
                        })
                        .collect();
                    pairs.sort();
                    self.pick(&pairs).map(|(i, g)| Action::Leave(i, g))
                }
                58..=60 => {
                    let free: Vec<&'static str> = GROUPS
                        .iter()
                        .copied()
                        .filter(|g| !self.groups.contains_key(*g))
                        .collect();
                    match (self.pick(&group_names), self.pick(&free)) {
                        (Some(from), Some(to)) => Some(Action::Rename(from, to)),
                        _ => None,
                    }
                }
                61 => self.pick(&group_names).map(Action::DeleteGroup),
                62..=65 => {
                    let full: Vec<String> = self
                        .groups
                        .iter()
                        .filter(|(_, (_, m))| !m.is_empty())
                        .map(|(n, _)| n.clone())
                        .collect();
                    self.pick(&full).map(Action::ClearGroup)
                }
                66..=68 => {
                    let v = self.live(|_| true);
                    let dirty = self.rng.gen_bool(0.5);
                    self.pick(&v).map(|i| Action::ClearEmails(i, dirty))
                }
                69..=73 => {
                    let v = self.live(|_| true);
                    let role = self.pick(&[None, Some("admin"), Some("member"), Some("owner")]);
                    self.pick(&v).map(|i| Action::SetRole(i, role.flatten()))
                }
                74..=77 if self.live(|h| h.active).len() >= 2 => Some(Action::DeactivateAll),
                78..=89 => {
                    let st = self.e.state().await;
                    let mut emails: Vec<String> = pending(&st)
                        .iter()
                        .map(|i| i["email"].as_str().unwrap().to_string())
                        .collect();
                    emails.sort();
                    if emails.is_empty() {
                        None
                    } else if self.rng.gen_bool(0.5) {
                        Some(Action::Accept(None))
                    } else {
                        let some: Vec<String> = emails
                            .into_iter()
                            .filter(|_| self.rng.gen_bool(0.5))
                            .collect();
                        Some(Action::Accept(Some(some)))
                    }
                }
                90..=99 if allow_fault => {
                    // A member list the last run read, chosen by workspace name.
                    let st = self.e.state().await;
                    let mut members: Vec<(String, String)> = arr(&st, "workspaces")
                        .into_iter()
                        .filter_map(|w| {
                            let id = w["id"].as_str()?;
                            let slug = w["slug"].as_str().unwrap_or(id);
                            self.last_log
                                .iter()
                                .filter(|x| x["method"] == "GET")
                                .filter_map(|x| x["path"].as_str())
                                .find(|p| {
                                    *p == format!("/v1/admin/workspaces/{id}/users")
                                        || *p == format!("/v1/admin/workspaces/{slug}/users")
                                })
                                .map(|p| (format!("members of {}", w["name"]), p.to_string()))
                        })
                        .collect();
                    members.sort();
                    let users = || ("users".to_string(), "/v1/admin/users".to_string());
                    let kind = match self.rng.gen_range(0..3) {
                        0 => FaultKind::Rate5xx(self.rng.gen()),
                        1 => {
                            let (what, path) = users();
                            FaultKind::FailPage(what, path)
                        }
                        _ => {
                            let (what, path) = self.pick(&members).unwrap_or_else(users);
                            FaultKind::FailPage(what, path)
                        }
                    };
                    let inner = Box::pin(self.gen(false)).await;
                    Some(Action::Fault(kind, Box::new(inner)))
                }
                _ => None,
            };
            if let Some(a) = a {
                return a;
            }
        }
    }

    fn label(&self, i: usize) -> String {
        self.users[i].label.clone()
    }

    fn user_path(&self, i: usize) -> String {
        format!("/Users/{}", self.users[i].id)
    }

    /// Applies one action to the IdP side (or the simulator) and describes it.
    async fn apply(&mut self, a: &Action) -> String {
        use reqwest::Method;
        match a {
            Action::Create(batch) => {
                let mut out = Vec::new();
                for &(email, user_name_is_email, role) in batch {
                    let n = self.users.len();
                    let user_name = if user_name_is_email {
                        email.to_string()
                    } else {
                        format!("u{n}")
                    };
                    let mut body = json!({
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": user_name,
                        "name": {"givenName": "Given", "familyName": format!("F{n}")},
                        "emails": [{"primary": true, "value": email, "type": "work"}],
                        "active": true,
                    });
                    if let Some(r) = role {
                        body["roles"] = json!([{"value": r, "primary": true}]);
                    }
                    let label = format!("u{n}<{}>", email.escape_debug());
                    let (st, v) = self.e.scim(Method::POST, "/Users", Some(body)).await;
                    let role = role.map(|r| format!(" role={r}")).unwrap_or_default();
                    if st == 201 {
                        self.users.push(Handle {
                            id: v["id"].as_str().unwrap().to_string(),
                            email,
                            label: label.clone(),
                            active: true,
                            deleted: false,
                        });
                        out.push(format!("{label} userName={user_name}{role}"));
                    } else {
                        out.push(format!("{label} userName={user_name}{role} (refused {st})"));
                    }
                }
                format!("create {}", out.join(", "))
            }
            Action::SetActive(i, on) => {
                let (i, on) = (*i, *on);
                self.e
                    .patch(
                        &self.user_path(i),
                        json!([{"op": "replace", "value": {"active": on}}]),
                    )
                    .await;
                self.users[i].active = on;
                format!(
                    "{} {}",
                    if on { "reactivate" } else { "deactivate" },
                    self.label(i)
                )
            }
            Action::Delete(i) => {
                let (st, v) = self.e.scim(Method::DELETE, &self.user_path(*i), None).await;
                assert_eq!(st, 204, "{v}");
                self.users[*i].deleted = true;
                let id = self.users[*i].id.clone();
                for (_, m) in self.groups.values_mut() {
                    m.remove(&id);
                }
                format!("delete {}", self.label(*i))
            }
            Action::Join(who, g) => {
                let ids: Vec<String> = who.iter().map(|&i| self.users[i].id.clone()).collect();
                let value: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
                if let Some((gid, members)) = self.groups.get_mut(*g) {
                    members.extend(ids);
                    let gid = gid.clone();
                    self.e
                        .patch(
                            &format!("/Groups/{gid}"),
                            json!([{"op": "add", "path": "members", "value": value}]),
                        )
                        .await;
                } else {
                    let (st, v) = self
                        .e
                        .scim(
                            Method::POST,
                            "/Groups",
                            Some(json!({
                                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                "displayName": g, "members": value})),
                        )
                        .await;
                    assert_eq!(st, 201, "{v}");
                    let gid = v["id"].as_str().unwrap().to_string();
                    self.groups
                        .insert(g.to_string(), (gid, ids.into_iter().collect()));
                }
                let names: Vec<String> = who.iter().map(|&i| self.label(i)).collect();
                format!("add {} to {g}", names.join(", "))
            }
            Action::Leave(i, g) => {
                let id = self.users[*i].id.clone();
                let (gid, members) = self.groups.get_mut(g).unwrap();
                members.remove(&id);
                let gid = gid.clone();
                self.e
                    .patch(
                        &format!("/Groups/{gid}"),
                        json!([{"op": "remove", "path": "members", "value": [{"value": id}]}]),
                    )
                    .await;
                format!("remove {} from {g}", self.label(*i))
            }
            Action::Rename(from, to) => {
                let g = self.groups.remove(from).unwrap();
                self.e
                    .patch(
                        &format!("/Groups/{}", g.0),
                        json!([{"op": "replace", "path": "displayName", "value": to}]),
                    )
                    .await;
                self.groups.insert(to.to_string(), g);
                format!("rename group {from} to {to}")
            }
            Action::DeleteGroup(name) => {
                let (gid, _) = self.groups.remove(name).unwrap();
                let (st, v) = self
                    .e
                    .scim(Method::DELETE, &format!("/Groups/{gid}"), None)
                    .await;
                assert_eq!(st, 204, "{v}");
                format!("IdP mistake: delete group {name}")
            }
            Action::ClearGroup(name) => {
                let (gid, members) = self.groups.get_mut(name).unwrap();
                let n = members.len();
                members.clear();
                let gid = gid.clone();
                self.e
                    .patch(
                        &format!("/Groups/{gid}"),
                        json!([{"op": "remove", "path": "members"}]),
                    )
                    .await;
                format!("IdP mistake: remove all {n} members of {name}")
            }
            Action::ClearEmails(i, false) => {
                self.e
                    .patch(
                        &self.user_path(*i),
                        json!([{"op": "remove", "path": "emails"}]),
                    )
                    .await;
                format!("IdP mistake: clear the emails of {}", self.label(*i))
            }
            Action::ClearEmails(i, true) => {
                let variant = format!("{} ", self.users[*i].email.trim_end());
                self.e
                    .patch(
                        &self.user_path(*i),
                        json!([{"op": "replace", "path": "emails",
                                "value": [{"primary": true, "value": variant, "type": "work"}]}]),
                    )
                    .await;
                format!(
                    "IdP mistake: the address of {} becomes {:?}",
                    self.label(*i),
                    variant
                )
            }
            Action::SetRole(i, role) => {
                let value = match role {
                    Some(r) => json!([{"value": r, "primary": true}]),
                    None => json!([]),
                };
                self.e
                    .patch(
                        &self.user_path(*i),
                        json!([{"op": "replace", "path": "roles", "value": value}]),
                    )
                    .await;
                format!("set roles of {} to {role:?}", self.label(*i))
            }
            Action::DeactivateAll => {
                let v = self.live(|h| h.active);
                for &i in &v {
                    self.e
                        .patch(
                            &self.user_path(i),
                            json!([{"op": "replace", "value": {"active": false}}]),
                        )
                        .await;
                    self.users[i].active = false;
                }
                format!("IdP mistake: deactivate all {} active users", v.len())
            }
            Action::Accept(which) => {
                let body = match which {
                    None => json!({}),
                    Some(emails) => json!({ "emails": emails }),
                };
                let r = self
                    .e
                    .sim(Method::POST, "/invites/accept", Some(body))
                    .await;
                let mut got: Vec<&str> = arr(&r, "accepted")
                    .iter()
                    .filter_map(|a| a["email"].as_str())
                    .collect();
                got.sort();
                format!("accept invites {got:?}")
            }
            Action::Fault(kind, _) => {
                let f = match kind {
                    FaultKind::Rate5xx(seed) => Faults {
                        seed: *seed,
                        rate_5xx: 0.2,
                        ..Default::default()
                    },
                    FaultKind::FailPage(_, path) => Faults {
                        fail_page: Some(FailPage {
                            path: path.clone(),
                            page: 0,
                        }),
                        ..Default::default()
                    },
                };
                self.e.set_faults(&f).await;
                match kind {
                    FaultKind::Rate5xx(_) => "fault for one run: 20% of calls answer 500".into(),
                    FaultKind::FailPage(what, _) => {
                        format!("fault for one run: the first page of {what} answers 500")
                    }
                }
            }
        }
    }

    /// Forces a full run and checks the invariants that hold after every run.
    async fn run(&mut self, m: &Model, faulty: bool) -> Result<(Value, Vec<Value>), String> {
        let before = self.e.state().await;
        self.e.sim(reqwest::Method::DELETE, "/requests", None).await;
        let s = self.e.resync().await;
        let log = self.e.log().await;
        let after = self.e.state().await;
        self.stats.runs += 1;
        if faulty {
            self.stats.fault_runs += 1;
        }
        let held = s["held"].as_u64().unwrap_or(0);
        if held > 0 {
            self.stats.held_runs += 1;
            self.stats.max_held = self.stats.max_held.max(held);
        }
        let mut bad = Vec::new();
        if held > 0 {
            // A held op is not sent.
            let status = self.e.status().await;
            for h in arr(&status["reconciler"], "held_deletions") {
                let id = |k: &str| h[k].as_str().unwrap_or("-").to_string();
                let (method, tail) = match h["op"].as_str().unwrap_or("") {
                    "remove_user" => ("DELETE", format!("/users/{}", id("user_id"))),
                    "revoke_invite" => ("DELETE", format!("/invites/{}", id("invite_id"))),
                    "remove_member" => ("DELETE", format!("/users/{}", id("user_id"))),
                    "update_org_role" => ("PUT", format!("/users/{}", id("user_id"))),
                    "update_member_role" => ("PUT", format!("/users/{}", id("user_id"))),
                    other => {
                        bad.push(format!("(b) unknown held op {other}: {h}"));
                        continue;
                    }
                };
                let in_ws = h.get("workspace_id").is_some();
                let sent = log.iter().any(|x| {
                    let path = x["path"].as_str().unwrap_or("");
                    x["method"] == method
                        && path.ends_with(&tail)
                        && path.contains("/workspaces/") == in_ws
                });
                if sent {
                    bad.push(format!("(b) held op was sent: {h}"));
                }
            }
        }
        if !faulty && (s["ok"] != true || s["failed"] != 0) {
            bad.push(format!("a run without faults failed: {s}"));
        }
        let fixed_ids: BTreeSet<&str> = self.fixed.iter().map(|f| f.1.as_str()).collect();
        let fixed_emails: BTreeSet<&str> = self.fixed.iter().map(|f| f.0.as_str()).collect();
        let incomplete = log.iter().any(|x| x["fault"] == "fail_page")
            || s["withheld"].as_u64().unwrap_or(0) > 0;
        let email_of = |uid: &str| user_by_id(&before, uid).map(|u| lc(&u["email"]));
        let ws_name = |r: &str| {
            ws_by_ref(&before, r)
                .or_else(|| ws_by_ref(&after, r))
                .map(|w| lc(&w["name"]))
                .unwrap_or_default()
        };
        let mut destructive = 0;
        for x in log.iter().filter(|x| x["method"] != "GET") {
            let w = parse_write(x);
            let ok = x["status"] == 200;
            let what = format!("{} {} {}", x["method"], x["path"], x["body"]);
            // (a) the owner, the protected admin and the outsider are never written to.
            let touches_fixed = fixed_ids
                .iter()
                .any(|id| x["path"].as_str().unwrap_or("").contains(id))
                || match &w {
                    Write::Invite { email, .. } => {
                        fixed_emails.contains(email.to_lowercase().as_str())
                    }
                    Write::AddMembers(_, users) => {
                        users.iter().any(|(id, _)| fixed_ids.contains(id.as_str()))
                    }
                    _ => false,
                };
            if touches_fixed {
                bad.push(format!("(a) write to a seeded person: {what}"));
            }
            let is_destructive = match &w {
                Write::Revoke(_) | Write::RemoveUser(_) | Write::RemoveMember(..) => true,
                Write::SetOrgRole(uid, to) => user_by_id(&before, uid)
                    .is_some_and(|u| org_rank(u["role"].as_str().unwrap_or("")) > org_rank(to)),
                Write::SetMemberRole(ws, uid, to) => ws_by_ref(&before, ws)
                    .and_then(|w| explicit_role(w, uid))
                    .is_some_and(|r| ws_rank(&r) > ws_rank(to)),
                _ => false,
            };
            if is_destructive && incomplete {
                bad.push(format!(
                    "(b) destructive write in a run that did not read everything: {what}"
                ));
            }
            if is_destructive && ok {
                destructive += 1;
            }
            // (b) nobody the IdP clearly wants loses access or gets a role it did not ask for;
            // nothing is granted to an address no active record claims.
            match &w {
                Write::Revoke(iid) => {
                    let k = arr(&before, "invites")
                        .into_iter()
                        .find(|i| i["id"] == iid.as_str())
                        .map(|i| lc(&i["email"]))
                        .unwrap_or_default();
                    if let Some(why) = m.keeps(&k, &self.linked) {
                        bad.push(format!(
                            "(b) invite of {k} revoked, but it is {why}: {what}"
                        ));
                    }
                }
                Write::RemoveUser(uid) => {
                    let k = email_of(uid).unwrap_or_default();
                    if let Some(why) = m.keeps(&k, &self.linked) {
                        bad.push(format!(
                            "(b) {k} removed from the org, but it is {why}: {what}"
                        ));
                    }
                }
                Write::SetOrgRole(uid, to) => {
                    let k = email_of(uid).unwrap_or_default();
                    if let Some(p) = m.people.get(&k) {
                        let want = if p.role >= 2 { "admin" } else { "member" };
                        if to != want {
                            bad.push(format!("(b) {k} wants {want}, got: {what}"));
                        }
                    } else if org_rank(to) > 1 {
                        bad.push(format!(
                            "(b) promotion of {k}, whom the IdP does not want: {what}"
                        ));
                    }
                }
                Write::RemoveMember(ws, uid) => {
                    let k = email_of(uid).unwrap_or_default();
                    let w = ws_name(ws);
                    if let Some(p) = m.people.get(&k) {
                        if p.role == 1 && p.ws.contains_key(&w) {
                            bad.push(format!("(b) {k} removed from wanted workspace {w}: {what}"));
                        }
                    }
                }
                Write::SetMemberRole(ws, uid, to) => {
                    let k = email_of(uid).unwrap_or_default();
                    let w = ws_name(ws);
                    if let Some(want) = m.people.get(&k).and_then(|p| p.ws.get(&w)) {
                        if ws_rank(to) != *want {
                            bad.push(format!(
                                "(b) {k} wants {} in {w}, got: {what}",
                                ws_role_name(*want)
                            ));
                        }
                    }
                }
                Write::Invite { email, role, ws } => {
                    self.stats.invites += ok as usize;
                    let k = email.to_lowercase();
                    if !clean(email) || !m.people.contains_key(&k) {
                        bad.push(format!(
                            "(b) invite for an address the IdP does not want: {what}"
                        ));
                    } else if let Some(p) = m.people.get(&k) {
                        let want = if p.role >= 2 { "admin" } else { "member" };
                        if role != want {
                            bad.push(format!("(b) {k} wants org role {want}, invited as: {what}"));
                        }
                        for (r, wrole) in ws {
                            let w = ws_name(r);
                            if p.ws.get(&w).map(|x| ws_role_name(*x)) != Some(wrole.as_str()) {
                                bad.push(format!(
                                    "(b) invite of {k} grants {wrole} in {w}: {what}"
                                ));
                            }
                        }
                    }
                }
                Write::AddMembers(ws, users) => {
                    let w = ws_name(ws);
                    for (uid, role) in users {
                        let k = email_of(uid).unwrap_or_default();
                        if !m.people.contains_key(&k) {
                            bad.push(format!(
                                "(b) {k}, whom the IdP does not want, added to {w}: {what}"
                            ));
                        } else if let Some(p) = m.people.get(&k).filter(|p| p.role == 1) {
                            if p.ws.get(&w).map(|x| ws_role_name(*x)) != Some(role.as_str()) {
                                bad.push(format!("(b) {k} added to {w} as {role}: {what}"));
                            }
                        }
                    }
                }
                Write::CreateWs => {}
                Write::Other => bad.push(format!("unexpected write: {what}")),
            }
        }
        self.stats.destructive += destructive;
        if self.stats.destructive > FUSE_ALLOWANCE {
            bad.push(format!(
                "(b) {} destructive writes applied in one fuse window (allowance {FUSE_ALLOWANCE}); mass removals must be held",
                self.stats.destructive
            ));
        }
        // (a) the seeded people are still there as seeded.
        for (email, id, role) in &self.fixed {
            match user_by_id(&after, id) {
                Some(u) if u["role"] == role.as_str() && lc(&u["email"]) == *email => {}
                other => bad.push(format!("(a) {email} changed: {other:?}")),
            }
        }
        let outsider = &self.fixed[2].1;
        if ws_by_name(&after, "a").and_then(|w| explicit_role(w, outsider)) != Some("member".into())
        {
            bad.push("(a) the outsider lost their explicit membership of A".into());
        }
        self.stats.max_org = self.stats.max_org.max(arr(&after, "users").len() - 3);
        // (c) one pending invite per address.
        let mut seen = BTreeSet::new();
        for i in pending(&after) {
            if !seen.insert(lc(&i["email"])) {
                bad.push(format!("(c) two pending invites for {}", i["email"]));
            }
        }
        // Ledger model: who each address was provisioned for.
        for (k, p) in &m.people {
            if user_by_email(&after, k).is_some() {
                self.linked.insert(k.clone(), p.scim_id.clone());
            } else if pending(&after).iter().any(|i| lc(&i["email"]) == *k) {
                self.linked
                    .entry(k.clone())
                    .or_insert_with(|| p.scim_id.clone());
            }
        }
        self.linked.retain(|k, _| {
            user_by_email(&after, k).is_some()
                || pending(&after).iter().any(|i| lc(&i["email"]) == *k)
        });
        for w in &m.group_ws {
            if ws_by_name(&after, w).is_some() {
                self.managed.insert(w.clone());
            }
        }
        if bad.is_empty() {
            Ok((s, log))
        } else {
            Err(format!("{}\nsummary: {s}", bad.join("\n")))
        }
    }

    /// After a second run without faults: the control plane is what the IdP asks for, except
    /// for ops the fuse holds (or that failed and wait in quarantine).
    async fn check_converged(&self, m: &Model) -> Result<(), String> {
        let st = self.e.state().await;
        let status = self.e.status().await;
        let r = &status["reconciler"];
        let waiting: BTreeSet<String> = arr(r, "held_deletions")
            .into_iter()
            .map(|o| lc(&o["email"]))
            .chain(
                arr(r, "failing_ops")
                    .into_iter()
                    .map(|f| lc(&f["op"]["email"])),
            )
            .collect();
        let fixed: BTreeSet<&str> = self.fixed.iter().map(|f| f.0.as_str()).collect();
        let invited: BTreeSet<String> = pending(&st).iter().map(|i| lc(&i["email"])).collect();
        let mut bad = Vec::new();
        for (k, p) in m.people.iter().filter(|(k, _)| !fixed.contains(k.as_str())) {
            let Some(u) = user_by_email(&st, k) else {
                if !invited.contains(k) {
                    bad.push(format!("{k} is wanted but neither a user nor invited"));
                }
                continue;
            };
            let role = u["role"].as_str().unwrap_or("");
            if role == "owner" || waiting.contains(k) {
                continue;
            }
            let want = if p.role >= 2 { "admin" } else { "member" };
            if role != want {
                bad.push(format!("{k} is {role}, the IdP asks for {want}"));
                continue;
            }
            if role != "member" {
                continue;
            }
            let uid = u["id"].as_str().unwrap_or("");
            for w in m.group_ws.iter().chain(&self.managed) {
                let Some(ws) = ws_by_name(&st, w) else {
                    continue;
                };
                let have = explicit_role(ws, uid);
                let want = p.ws.get(w).map(|r| ws_role_name(*r).to_string());
                if have != want {
                    bad.push(format!("{k} in workspace {w}: {have:?}, wanted {want:?}"));
                }
            }
        }
        let present = arr(&st, "users")
            .into_iter()
            .map(|u| lc(&u["email"]))
            .chain(invited.iter().cloned());
        for k in present {
            if fixed.contains(k.as_str())
                || m.keeps(&k, &self.linked).is_some()
                || waiting.contains(&k)
            {
                continue;
            }
            bad.push(format!(
                "{k}: the IdP no longer wants it (no owner, not frozen, not kept for an active SCIM user), yet it still has access"
            ));
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "(d) not converged:\n{}\nheld/failing: {waiting:?}",
                bad.join("\n")
            ))
        }
    }

    /// One step: act, run (with the fault if any; then clear it and run again), then a run that
    /// must write nothing. One more run is allowed when the previous one handed an address to
    /// another record (the owner was removed, which drops the link; the new owner is invited
    /// next run: it cannot be invited while the old account exists).
    async fn step(&mut self) -> Result<(), String> {
        let a = self.gen(true).await;
        let mut desc = self.apply(&a).await;
        let faulty = if let Action::Fault(_, inner) = &a {
            let d = self.apply(inner).await;
            desc = format!("{desc} + {d}");
            true
        } else {
            false
        };
        note(&self.steps, desc);
        self.stats.steps += 1;
        let mut m = read_model(&self.e, &self.linked).await;
        let (mut s1, _) = self.run(&m, faulty).await?;
        if faulty {
            self.e.set_faults(&Faults::default()).await;
            m = read_model(&self.e, &self.linked).await;
            s1 = self.run(&m, false).await?.0;
        }
        let owners = |m: &Model| -> Vec<(String, String)> {
            m.people
                .iter()
                .map(|(k, p)| (k.clone(), p.scim_id.clone()))
                .collect()
        };
        let mut handed_over = false;
        loop {
            let next = read_model(&self.e, &self.linked).await;
            let changed = owners(&next) != owners(&m);
            m = next;
            let (s2, log) = self.run(&m, false).await?;
            let writes: Vec<String> = log
                .iter()
                .filter(|x| x["method"] != "GET")
                .map(|x| format!("{} {} {}", x["method"], x["path"], x["body"]))
                .collect();
            self.last_log = log;
            if writes.is_empty() {
                if s1["held"] != s2["held"] && !handed_over {
                    return Err(format!(
                        "(d) held count not stable: {} then {}",
                        s1["held"], s2["held"]
                    ));
                }
                break;
            }
            if !changed || handed_over {
                return Err(format!(
                    "(d) the run after a converging run still writes: {writes:?}\nsummary: {s2}"
                ));
            }
            handed_over = true;
            self.stats.handovers += 1;
        }
        self.check_converged(&m).await
    }
}

async fn run_case(seed: u64, steps: Arc<Mutex<Vec<String>>>) -> (Stats, Result<(), String>) {
    let e = start().await;
    let st = e.state().await;
    let fixed = [OWNER, PROTECTED, OUTSIDER]
        .iter()
        .map(|email| {
            let u = user_by_email(&st, email).unwrap();
            (
                email.to_string(),
                u["id"].as_str().unwrap().to_string(),
                u["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut c = Case {
        e,
        rng: StdRng::seed_from_u64(seed),
        users: Vec::new(),
        groups: BTreeMap::new(),
        steps,
        fixed,
        linked: BTreeMap::new(),
        managed: BTreeSet::new(),
        last_log: Vec::new(),
        stats: Stats::default(),
    };
    let outcome = async {
        let m = read_model(&c.e, &c.linked).await;
        c.last_log = c.run(&m, false).await?.1;
        let n = c.rng.gen_range(6..=12);
        for _ in 0..n {
            c.step().await?;
        }
        Ok(())
    }
    .await;
    (c.stats, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_idp_flows_keep_the_invariants() {
    let t0 = std::time::Instant::now();
    for (email, is_clean, _) in POOL {
        assert_eq!(
            clean(email),
            *is_clean,
            "the test's own email rule: {email:?}"
        );
    }
    let seeds: Vec<u64> = match std::env::var("SCIM_SYNC_PROPERTY_SEED") {
        Ok(s) => vec![s.parse().expect("SCIM_SYNC_PROPERTY_SEED is a u64")],
        Err(_) => {
            let n = std::env::var("SCIM_SYNC_PROPERTY_CASES")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(12);
            (0..n).map(|i| 0x5c1e_5eed + i).collect()
        }
    };
    let mut total = Stats::default();
    let mut failures = Vec::new();
    for &seed in &seeds {
        let steps = Arc::new(Mutex::new(Vec::new()));
        let outcome = tokio::spawn(run_case(seed, steps.clone())).await;
        let list = steps
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, s)| format!("  {}. {s}", i + 1))
            .collect::<Vec<_>>()
            .join("\n");
        let n_steps = steps.lock().unwrap().len();
        let err = match outcome {
            Ok((s, result)) => {
                if std::env::var("SCIM_SYNC_PROPERTY_VERBOSE").is_ok() {
                    eprintln!("seed {seed}: {s:?}\n{list}");
                }
                total.steps += n_steps;
                total.runs += s.runs;
                total.fault_runs += s.fault_runs;
                total.destructive += s.destructive;
                total.held_runs += s.held_runs;
                total.max_held = total.max_held.max(s.max_held);
                total.invites += s.invites;
                total.handovers += s.handovers;
                match result {
                    Ok(()) => continue,
                    Err(msg) => msg,
                }
            }
            Err(j) => {
                total.steps += n_steps;
                let p = j.into_panic();
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into())
            }
        };
        failures.push(format!(
            "seed {seed} (SCIM_SYNC_PROPERTY_SEED={seed}), steps:\n{list}\nfailure after the last step: {err}"
        ));
    }
    eprintln!(
        "property: {} cases, {} steps, {} runs ({} with faults), {}; {} invites, {} destructive writes, {} runs with held ops (at most {}), {} address handovers; {:.1} s",
        seeds.len(),
        total.steps,
        total.runs,
        total.fault_runs,
        if failures.is_empty() {
            "invariants held".to_string()
        } else {
            format!("{} cases FAILED", failures.len())
        },
        total.invites,
        total.destructive,
        total.held_runs,
        total.max_held,
        total.handovers,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "property: {} of {} cases failed\n\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n\n")
    );
}
