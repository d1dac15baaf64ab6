//! Desired state: what the control plane should look like, computed from the SCIM store and the
//! configuration alone. Pure: no I/O, so the rules below are tested in isolation and `explain`
//! can answer for any user without touching the control plane.
//!
//! # Rules
//! - **Who.** Every active SCIM user with an email: the primary email, else the first email, else
//!   `userName` when it looks like an email ([`read_email`], [`Email`]: compared lower-cased,
//!   refused when it holds whitespace, invisible characters or look-alikes). Inactive users are
//!   not desired (the reconciler removes them); users without a usable email cannot be matched to
//!   a control-plane user at all and are reported as warnings.
//! - **One address, one record.** Two active SCIM users that claim one address are a conflict,
//!   never merged: the record the ledger linked to the address decides (even when inactive), and
//!   without one the address is frozen (nothing granted or removed) and reported.
//! - **Org role.** From `roles[].value`, case-insensitively: `owner`, `admin`, `member`. Entra app
//!   roles arrive as the app-role `value` (the SCIM layer unpacks Entra's stringified JSON; a
//!   value still in that form is unpacked here too). The Portkey guide's `group` app role only
//!   lets the user in, so it carries no org-role opinion. With several recognised values the
//!   `primary` one wins, else the highest (Entra's multi-role mappings mark none primary, and
//!   which of several it sends first is undefined). Nothing recognised → `sync.default_org_role`.
//! - **Owner.** The Admin API cannot grant `owner` (invites and `PUT /admin/users/{id}` accept
//!   `admin`/`member` only), so a desired `owner` means "admin at least": invite as admin, promote
//!   a member to admin, leave an admin or an owner as they are. Whatever the IdP says, an existing
//!   owner is never demoted (the reconciler enforces that).
//! - **Workspaces.** A group named `ws-{Workspace}-role-{admin|manager|member}` (prefix and role
//!   case-insensitive, the workspace name keeps its case; the *last* `-role-` separates, so
//!   workspace names may contain dashes and even `-role-`), plus every `[[mapping.groups]]` whose
//!   group equals the group's name case-insensitively. Workspace names are compared
//!   case-insensitively, as a person would; the first spelling met (mappings, then groups by name)
//!   is kept. Several roles for one workspace → the highest (admin > manager > member) wins and a
//!   [`Conflict`] is reported.
//! - **Managed workspaces.** Every workspace named by a convention group that exists in SCIM or by
//!   a mapping, even without members: the reconciler removes members only from these.

use crate::config::{GroupMapping, SyncConfig};
use crate::email::Email;
use crate::roles::{OrgRole, WorkspaceRole};
use crate::scim::address::is_true;
pub use crate::scim::address::{read_email, user_email};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A SCIM user as stored: the id and the canonical JSON.
#[derive(Debug, Clone)]
pub struct ScimUser {
    pub id: String,
    pub data: Value,
}

/// A SCIM group: its name and the ids of its member users.
#[derive(Debug, Clone)]
pub struct ScimGroup {
    pub id: String,
    pub display_name: String,
    pub members: Vec<String>,
}

/// The org role the IdP asks for: the domain's [`OrgRole`], which can say `owner` (the API
/// cannot set it, but it still protects the person from demotion).
pub type DesiredOrgRole = OrgRole;

/// Why a group gives a workspace role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Via {
    /// The `ws-{name}-role-{role}` naming convention.
    Convention,
    /// `[[mapping.groups]]` entry number `index` (1-based, as the config errors count).
    Mapping { index: usize },
}

/// One group that gives one workspace role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub group: String,
    #[serde(flatten)]
    pub via: Via,
    pub role: WorkspaceRole,
}

impl Source {
    pub fn describe(&self) -> String {
        match &self.via {
            Via::Convention => format!("in group {}", self.group),
            Via::Mapping { index } => format!(
                "in group {} ([[mapping.groups]] #{index}: {})",
                self.group,
                self.role.as_str()
            ),
        }
    }
}

/// A desired workspace membership and every group that asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredMembership {
    pub role: WorkspaceRole,
    pub sources: Vec<Source>,
}

impl DesiredMembership {
    /// Names of the groups that give the winning role, for op reasons.
    pub fn reason(&self) -> String {
        let winning: Vec<String> = self
            .sources
            .iter()
            .filter(|s| s.role == self.role)
            .map(Source::describe)
            .collect();
        winning.join("; ")
    }

    /// The groups behind this membership, each once, in source order.
    pub fn source_groups(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.sources
            .iter()
            .filter(|s| seen.insert(s.group.as_str()))
            .map(|s| s.group.clone())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredUser {
    pub scim_id: String,
    pub user_name: String,
    /// Lower-cased.
    pub email: String,
    /// As the IdP spelled it, for lookups against a control plane that matches exactly.
    pub email_original: String,
    pub org_role: DesiredOrgRole,
    /// Why the org role is what it is, for `explain`.
    pub org_role_reason: String,
    /// Workspace name (as spelled in the first mapping or group naming it) → membership.
    pub workspaces: BTreeMap<String, DesiredMembership>,
}

/// A user who asks for several roles in one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub email: String,
    pub workspace: String,
    pub roles: Vec<WorkspaceRole>,
    pub groups: Vec<String>,
    pub chosen: WorkspaceRole,
}

/// A SCIM user who is not desired, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excluded {
    pub scim_id: String,
    pub user_name: String,
    /// Lower-cased, when the user has one: an inactive user with an email is removed from the
    /// control plane.
    pub email: Option<String>,
    pub active: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DesiredState {
    /// Lower-cased email → user.
    pub users: BTreeMap<String, DesiredUser>,
    pub managed_workspaces: BTreeSet<String>,
    pub conflicts: Vec<Conflict>,
    pub warnings: Vec<String>,
    /// SCIM users who are not desired (inactive, or without an email), by SCIM id.
    pub excluded: BTreeMap<String, Excluded>,
    /// Every active SCIM user, desired or not: a control-plane user linked to one of them is
    /// never taken for someone who left (an address lost or changed is not a departure).
    pub active_scim_ids: BTreeSet<String>,
    /// Addresses claimed by several active SCIM users with no owner among them: left as they are.
    pub frozen: BTreeSet<String>,
}

/// Everything `explain` knows about one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub scim_id: String,
    pub user_name: String,
    pub email: Option<String>,
    pub desired: bool,
    /// Why the user is not desired, when not.
    pub excluded_because: Option<String>,
    pub org_role: Option<DesiredOrgRole>,
    pub org_role_reason: Option<String>,
    pub workspaces: Vec<ExplainedMembership>,
    pub conflicts: Vec<Conflict>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainedMembership {
    pub workspace: String,
    pub role: WorkspaceRole,
    pub because: Vec<String>,
}

impl DesiredState {
    /// Every lower-cased email the IdP knows, desired or not: the reconciler's scope.
    pub fn known_emails(&self) -> BTreeSet<String> {
        self.users
            .keys()
            .cloned()
            .chain(self.excluded.values().filter_map(|e| e.email.clone()))
            .collect()
    }

    /// Lower-cased emails of SCIM users that exist but are inactive (and not also desired through
    /// another active record with the same email).
    pub fn inactive_emails(&self) -> BTreeSet<String> {
        self.excluded
            .values()
            .filter(|e| !e.active)
            .filter_map(|e| e.email.clone())
            .filter(|e| !self.users.contains_key(e))
            .collect()
    }

    /// Explains one user, found by email, `userName` (both case-insensitive) or SCIM id.
    pub fn explain(&self, who: &str) -> Option<Explanation> {
        let key = who.trim().to_lowercase();
        let desired = self.users.get(&key).or_else(|| {
            self.users
                .values()
                .find(|u| u.scim_id == who || u.user_name.to_lowercase() == key)
        });
        if let Some(u) = desired {
            let workspaces = u
                .workspaces
                .iter()
                .map(|(ws, m)| ExplainedMembership {
                    workspace: ws.clone(),
                    role: m.role,
                    because: m
                        .sources
                        .iter()
                        .map(|s| {
                            let mut d = s.describe();
                            if s.role != m.role {
                                d.push_str(&format!(
                                    " asks for {}, outranked by {}",
                                    s.role.as_str(),
                                    m.role.as_str()
                                ));
                            } else if matches!(s.via, Via::Convention) {
                                d.push_str(&format!(" → {}", s.role.as_str()));
                            }
                            d
                        })
                        .collect(),
                })
                .collect();
            return Some(Explanation {
                scim_id: u.scim_id.clone(),
                user_name: u.user_name.clone(),
                email: Some(u.email.clone()),
                desired: true,
                excluded_because: None,
                org_role: Some(u.org_role),
                org_role_reason: Some(u.org_role_reason.clone()),
                workspaces,
                conflicts: self
                    .conflicts
                    .iter()
                    .filter(|c| c.email == u.email)
                    .cloned()
                    .collect(),
            });
        }
        let e = self.excluded.get(who).or_else(|| {
            self.excluded.values().find(|e| {
                e.user_name.to_lowercase() == key || e.email.as_deref() == Some(key.as_str())
            })
        })?;
        Some(Explanation {
            scim_id: e.scim_id.clone(),
            user_name: e.user_name.clone(),
            email: e.email.clone(),
            desired: false,
            excluded_because: Some(e.reason.clone()),
            org_role: None,
            org_role_reason: None,
            workspaces: Vec::new(),
            conflicts: Vec::new(),
        })
    }
}

// ---- reading a user ------------------------------------------------------------------------

/// A missing `active` means active: SCIM does not require the attribute, and a user the IdP
/// bothered to provision is meant to get in.
pub fn user_active(data: &Value) -> bool {
    match data.get("active") {
        None | Some(Value::Null) => true,
        other => is_true(other),
    }
}

fn user_name(data: &Value) -> String {
    data.get("userName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

enum RoleValue {
    Org(DesiredOrgRole),
    /// The guide's `group` app role: access without an org-role opinion.
    NoOpinion,
    Unknown,
}

fn classify_role(raw: &str) -> (String, RoleValue) {
    let mut v = raw.trim().to_string();
    // Normalisation unpacks Entra's stringified role objects on the way in; a record written
    // before that rule existed may still hold one.
    if v.starts_with('{') {
        if let Ok(Value::Object(inner)) = serde_json::from_str::<Value>(&v) {
            if let Some(s) = inner
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("value"))
                .and_then(|(_, x)| x.as_str())
            {
                v = s.trim().to_string();
            }
        }
    }
    let class = match v.to_ascii_lowercase().as_str() {
        "owner" => RoleValue::Org(DesiredOrgRole::Owner),
        "admin" => RoleValue::Org(DesiredOrgRole::Admin),
        "member" => RoleValue::Org(DesiredOrgRole::Member),
        "group" => RoleValue::NoOpinion,
        _ => RoleValue::Unknown,
    };
    (v, class)
}

/// The org role and a sentence saying why.
pub fn org_role(data: &Value, default: OrgRole) -> (DesiredOrgRole, String) {
    let roles = data
        .get("roles")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut primary: Option<(DesiredOrgRole, String)> = None;
    let mut recognised: Vec<(DesiredOrgRole, String)> = Vec::new();
    let mut ignored: Vec<String> = Vec::new();
    for r in &roles {
        let Some(raw) = r.get("value").and_then(Value::as_str) else {
            continue;
        };
        let (v, class) = classify_role(raw);
        match class {
            RoleValue::Org(role) => {
                if is_true(r.get("primary")) && primary.is_none() {
                    primary = Some((role, v.clone()));
                }
                recognised.push((role, v));
            }
            RoleValue::NoOpinion => ignored.push(format!("'{v}' (access only, no org role)")),
            RoleValue::Unknown => ignored.push(format!("'{v}' (not an org role)")),
        }
    }
    let default_role = default;
    let ignored_note = if ignored.is_empty() {
        String::new()
    } else {
        format!("; ignored roles: {}", ignored.join(", "))
    };
    let owner_note = |r: DesiredOrgRole| {
        if r == DesiredOrgRole::Owner {
            " (owner cannot be granted through the API: admin at least, an owner is never demoted)"
        } else {
            ""
        }
    };
    if let Some((role, v)) = primary {
        let others = recognised.iter().filter(|(r, _)| *r != role).count();
        let extra = if others > 0 {
            ", the primary one of several"
        } else {
            ""
        };
        return (
            role,
            format!("role value '{v}'{extra}{}{ignored_note}", owner_note(role)),
        );
    }
    if let Some((role, v)) = recognised.iter().max_by_key(|(r, _)| *r).cloned() {
        let several = recognised.iter().any(|(r, _)| *r != role);
        let extra = if several {
            ", the highest of several (none is primary)"
        } else {
            ""
        };
        return (
            role,
            format!("role value '{v}'{extra}{}{ignored_note}", owner_note(role)),
        );
    }
    (
        default_role,
        format!(
            "no owner/admin/member role value: sync.default_org_role ({}){ignored_note}",
            default_role.as_str()
        ),
    )
}

/// `ws-{workspace}-role-{role}` → (workspace, role). The last `-role-` separates, so the
/// workspace part may contain dashes.
pub fn parse_convention(group: &str) -> Option<(String, WorkspaceRole)> {
    let name = group.trim();
    // ASCII lower-casing keeps byte offsets, so indexes found in `lower` slice `name`.
    let lower = name.to_ascii_lowercase();
    if !lower.starts_with("ws-") {
        return None;
    }
    let sep = lower.rfind("-role-")?;
    if sep < 3 {
        return None;
    }
    let role = WorkspaceRole::parse(name.get(sep + "-role-".len()..)?)?;
    let workspace = name.get(3..sep)?.trim();
    if workspace.is_empty() {
        return None;
    }
    Some((workspace.to_string(), role))
}

// ---- the whole state -----------------------------------------------------------------------

/// Builds the desired state. Deterministic: the same inputs in any order give the same output.
pub fn desired_state(
    users: &[ScimUser],
    groups: &[ScimGroup],
    sync: &SyncConfig,
    mappings: &[GroupMapping],
) -> DesiredState {
    desired_state_with_owners(users, groups, sync, mappings, &BTreeMap::new())
}

/// [`desired_state`] with the ledger's owners: email → the SCIM id the daemon provisioned that
/// address for. When several SCIM users claim one address, the owner's record decides.
pub fn desired_state_with_owners(
    users: &[ScimUser],
    groups: &[ScimGroup],
    sync: &SyncConfig,
    mappings: &[GroupMapping],
    owners: &BTreeMap<String, String>,
) -> DesiredState {
    let mut out = DesiredState::default();
    // Roles: which workspace roles each group gives, and so each SCIM user.
    let grants = group_grants(groups, mappings, &mut out);
    let user_grants = user_grants(groups, &grants);
    // Who: the active users with a usable address, one owner per address.
    let mut sorted_users: Vec<&ScimUser> = users.iter().collect();
    sorted_users.sort_by(|a, b| a.id.cmp(&b.id));
    let all_ids: BTreeSet<&str> = sorted_users.iter().map(|u| u.id.as_str()).collect();
    let claims = claim_addresses(&sorted_users, &mut out);
    let owned = one_owner_per_address(claims, owners, &all_ids, &mut out);
    // Workspaces: each person's role per workspace, the highest of the groups that give one.
    let collected = collect_sources(owned, &user_grants, sync);
    resolve_workspaces(collected, &mut out);
    out
}

/// Canonical workspace spelling, keyed lower-cased: the first spelling met wins, and every other
/// one is a warning.
#[derive(Default)]
struct WorkspaceNames(BTreeMap<String, String>);

impl WorkspaceNames {
    fn canonical(&mut self, name: &str, warnings: &mut Vec<String>) -> String {
        let key = name.to_lowercase();
        match self.0.get(&key) {
            Some(existing) => {
                if existing != name {
                    let w = format!(
                        "workspace '{name}' is also spelled '{existing}'; both mean '{existing}'"
                    );
                    if !warnings.contains(&w) {
                        warnings.push(w);
                    }
                }
                existing.clone()
            }
            None => {
                self.0.insert(key, name.to_string());
                name.to_string()
            }
        }
    }
}

type Grant = (String, Source);

/// Groups sorted by name then id, so warnings and sources come out in a stable order.
fn sorted_groups(groups: &[ScimGroup]) -> Vec<&ScimGroup> {
    let mut sorted: Vec<&ScimGroup> = groups.iter().collect();
    sorted.sort_by(|a, b| {
        a.display_name
            .cmp(&b.display_name)
            .then_with(|| a.id.cmp(&b.id))
    });
    sorted
}

/// Group id → the workspace roles it gives (mappings first, then the naming convention).
fn group_grants<'g>(
    groups: &'g [ScimGroup],
    mappings: &[GroupMapping],
    out: &mut DesiredState,
) -> BTreeMap<&'g str, Vec<Grant>> {
    let mut names = WorkspaceNames::default();
    for m in mappings {
        let ws = names.canonical(m.workspace.trim(), &mut out.warnings);
        out.managed_workspaces.insert(ws);
    }

    // Group id → the workspace roles it gives.
    let mut grants: BTreeMap<&str, Vec<(String, Source)>> = BTreeMap::new();
    for g in sorted_groups(groups) {
        let mut list = Vec::new();
        for (i, m) in mappings.iter().enumerate() {
            if m.group.trim().eq_ignore_ascii_case(g.display_name.trim()) {
                let ws = names.canonical(m.workspace.trim(), &mut out.warnings);
                list.push((
                    ws,
                    Source {
                        group: g.display_name.clone(),
                        via: Via::Mapping { index: i + 1 },
                        role: m.role,
                    },
                ));
            }
        }
        if let Some((ws, role)) = parse_convention(&g.display_name) {
            let ws = names.canonical(&ws, &mut out.warnings);
            out.managed_workspaces.insert(ws.clone());
            list.push((
                ws,
                Source {
                    group: g.display_name.clone(),
                    via: Via::Convention,
                    role,
                },
            ));
        } else if g
            .display_name
            .trim()
            .to_ascii_lowercase()
            .starts_with("ws-")
            && list.is_empty()
        {
            out.warnings.push(format!(
                "group '{}' starts with ws- but is not ws-{{workspace}}-role-{{admin|manager|member}}; it gives no workspace role",
                g.display_name
            ));
        }
        if !list.is_empty() {
            grants.insert(g.id.as_str(), list);
        }
    }

    grants
}

/// User id → the grants of every group the user is in.
fn user_grants<'g>(
    groups: &'g [ScimGroup],
    grants: &'g BTreeMap<&'g str, Vec<Grant>>,
) -> BTreeMap<&'g str, Vec<&'g Grant>> {
    let mut user_grants: BTreeMap<&str, Vec<&(String, Source)>> = BTreeMap::new();
    for g in sorted_groups(groups) {
        let Some(list) = grants.get(g.id.as_str()) else {
            continue;
        };
        let mut seen = BTreeSet::new();
        for member in &g.members {
            if seen.insert(member.as_str()) {
                user_grants
                    .entry(member.as_str())
                    .or_default()
                    .extend(list.iter());
            }
        }
    }

    user_grants
}

/// Email key → the active SCIM users that claim it. Inactive users and users without a usable
/// address are recorded as excluded, with the reason.
fn claim_addresses<'u>(
    sorted_users: &[&'u ScimUser],
    out: &mut DesiredState,
) -> BTreeMap<String, Vec<(&'u ScimUser, Email)>> {
    let mut claims: BTreeMap<String, Vec<(&ScimUser, Email)>> = BTreeMap::new();
    for &u in sorted_users {
        let name = user_name(&u.data);
        let active = user_active(&u.data);
        if !active {
            out.excluded.insert(
                u.id.clone(),
                Excluded {
                    scim_id: u.id.clone(),
                    user_name: name,
                    email: user_email(&u.data),
                    active,
                    reason: "deactivated in the IdP".into(),
                },
            );
            continue;
        }
        out.active_scim_ids.insert(u.id.clone());
        match read_email(&u.data) {
            Ok(Some(email)) => claims
                .entry(email.as_str().to_string())
                .or_default()
                .push((u, email)),
            unusable => {
                let (warning, reason) = match unusable {
                    Err(e) => (
                        format!(
                            "SCIM user '{name}' ({}): email {e}; it is not provisioned, and nothing it was given before is taken away until the IdP sends a clean address",
                            u.id
                        ),
                        format!("email refused: {e}"),
                    ),
                    _ => (
                        format!(
                            "SCIM user '{name}' ({}) has no email and a userName that is not one; it cannot be matched to a control-plane user",
                            u.id
                        ),
                        "no email (no emails[] value, and userName is not an email)".to_string(),
                    ),
                };
                out.warnings.push(warning);
                out.excluded.insert(
                    u.id.clone(),
                    Excluded {
                        scim_id: u.id.clone(),
                        user_name: name,
                        email: None,
                        active,
                        reason,
                    },
                );
            }
        }
    }

    claims
}

/// One owner per address. Two records claiming one address never add up: the record the
/// ledger links to the address wins; without one, nothing is decided for it.
fn one_owner_per_address<'u>(
    claims: BTreeMap<String, Vec<(&'u ScimUser, Email)>>,
    owners: &BTreeMap<String, String>,
    all_ids: &BTreeSet<&str>,
    out: &mut DesiredState,
) -> Vec<(&'u ScimUser, Email)> {
    let mut owned: Vec<(&ScimUser, Email)> = Vec::new();
    for (key, list) in claims {
        let linked = owners.get(&key).map(String::as_str);
        let owner: Option<usize> = if let Some(id) = linked.filter(|id| all_ids.contains(id)) {
            // The linked record still exists: it decides, active or not.
            list.iter().position(|(u, _)| u.id == id)
        } else if list.len() == 1 {
            Some(0)
        } else {
            None
        };
        let ids: Vec<&str> = list.iter().map(|(u, _)| u.id.as_str()).collect();
        if list.len() > 1 || owner.is_none() {
            let why = match (owner, linked) {
                (Some(i), _) => format!(
                    "SCIM users {} claim the email {key}; only {} (linked to it) counts, the others are ignored",
                    ids.join(", "),
                    ids.get(i).copied().unwrap_or_default()
                ),
                (None, Some(id)) if all_ids.contains(id) => format!(
                    "SCIM user(s) {} claim the email {key}, which belongs to SCIM user {id}; they are ignored",
                    ids.join(", ")
                ),
                (None, _) => {
                    out.frozen.insert(key.clone());
                    format!(
                        "SCIM users {} claim the same email {key}; nothing is granted or removed for this address until only one does",
                        ids.join(", ")
                    )
                }
            };
            out.warnings.push(why.clone());
            for (i, (u, _)) in list.iter().enumerate() {
                if Some(i) != owner {
                    out.excluded.insert(
                        u.id.clone(),
                        Excluded {
                            scim_id: u.id.clone(),
                            user_name: user_name(&u.data),
                            email: Some(key.clone()),
                            active: true,
                            reason: why.clone(),
                        },
                    );
                }
            }
        }
        if let Some(i) = owner {
            if let Some(pair) = list.into_iter().nth(i) {
                owned.push(pair);
            }
        }
    }

    owned
}

type Collected = BTreeMap<String, (DesiredUser, BTreeMap<String, Vec<Source>>)>;

/// Email → (user, the sources of each workspace role).
fn collect_sources(
    owned: Vec<(&ScimUser, Email)>,
    user_grants: &BTreeMap<&str, Vec<&Grant>>,
    sync: &SyncConfig,
) -> Collected {
    let mut collected = Collected::new();
    for (u, email) in owned {
        let name = user_name(&u.data);
        let (role, why) = org_role(&u.data, sync.default_org_role);
        let entry = collected
            .entry(email.as_str().to_string())
            .or_insert_with(|| {
                (
                    DesiredUser {
                        scim_id: u.id.clone(),
                        user_name: name.clone(),
                        email: email.as_str().to_string(),
                        email_original: email.original().to_string(),
                        org_role: role,
                        org_role_reason: why.clone(),
                        workspaces: BTreeMap::new(),
                    },
                    BTreeMap::new(),
                )
            });
        for (ws, src) in user_grants.get(u.id.as_str()).into_iter().flatten() {
            let list = entry.1.entry(ws.clone()).or_default();
            if !list.contains(src) {
                list.push(src.clone());
            }
        }
    }

    collected
}

/// The role in each workspace is the highest any source gives; more than one is a conflict to
/// report.
fn resolve_workspaces(collected: Collected, out: &mut DesiredState) {
    for (email, (mut user, per_ws)) in collected {
        for (ws, sources) in per_ws {
            let Some(role) = sources.iter().map(|s| s.role).max() else {
                continue;
            };
            let mut roles: Vec<WorkspaceRole> = sources.iter().map(|s| s.role).collect();
            roles.sort_unstable_by(|a, b| b.cmp(a));
            roles.dedup();
            if roles.len() > 1 {
                let mut groups: Vec<String> = sources.iter().map(|s| s.group.clone()).collect();
                groups.dedup();
                out.conflicts.push(Conflict {
                    email: email.clone(),
                    workspace: ws.clone(),
                    roles,
                    groups,
                    chosen: role,
                });
            }
            user.workspaces
                .insert(ws, DesiredMembership { role, sources });
        }
        out.users.insert(email, user);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn sync() -> SyncConfig {
        SyncConfig {
            debounce_ms: 500,
            debounce_max_ms: 10_000,
            fuse_floor: 5,
            fuse_window_minutes: 60,
            full_resync_cron: "0 */15 * * * *".into(),
            max_deletions: 10,
            max_deletion_percent: 10.0,
            dry_run: false,
            protected_emails: vec![],
            create_workspaces: true,
            default_org_role: OrgRole::Member,
        }
    }

    fn user(id: &str, data: Value) -> ScimUser {
        ScimUser {
            id: id.into(),
            data,
        }
    }

    fn group(id: &str, name: &str, members: &[&str]) -> ScimGroup {
        ScimGroup {
            id: id.into(),
            display_name: name.into(),
            members: members.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn mapping(group: &str, ws: &str, role: WorkspaceRole) -> GroupMapping {
        GroupMapping {
            group: group.into(),
            workspace: ws.into(),
            role,
        }
    }

    fn role_of(roles: Value) -> DesiredOrgRole {
        org_role(&json!({ "roles": roles }), OrgRole::Member).0
    }

    #[test]
    fn email_choice() {
        let d = json!({"userName": "x", "emails": [
            {"value": "Second@Example.com"},
            {"value": "Prime@Example.COM", "primary": true}
        ]});
        assert_eq!(user_email(&d).as_deref(), Some("prime@example.com"));
        let d = json!({"userName": "x", "emails": [{"value": "A@b.io", "type": "work"}, {"value": "c@d.io"}]});
        assert_eq!(user_email(&d).as_deref(), Some("a@b.io"));
        let d = json!({"userName": "Bob@Example.com"});
        assert_eq!(user_email(&d).as_deref(), Some("bob@example.com"));
        assert_eq!(user_email(&json!({"userName": "bob"})), None);
        assert_eq!(user_email(&json!({"userName": "bob@localhost"})), None);
        let d = json!({"userName": "x", "emails": [{"value": "p@q.io", "primary": "True"}, ]});
        assert_eq!(user_email(&d).as_deref(), Some("p@q.io"));
    }

    #[test]
    fn org_roles() {
        assert_eq!(role_of(json!([{"value": "admin"}])), DesiredOrgRole::Admin);
        assert_eq!(role_of(json!([{"value": "OWNER"}])), DesiredOrgRole::Owner);
        assert_eq!(
            role_of(json!([{"value": "Member"}])),
            DesiredOrgRole::Member
        );
        // Entra app-role value, as stored after normalisation and as still stringified.
        assert_eq!(
            role_of(
                json!([{"primary": true, "type": "WindowsAzureActiveDirectoryRole", "value": "Admin"}])
            ),
            DesiredOrgRole::Admin
        );
        assert_eq!(
            role_of(
                json!([{"value": "{\"id\":\"06b0\",\"value\":\"Admin\",\"displayName\":\"Admins\"}"}])
            ),
            DesiredOrgRole::Admin
        );
        // `group` means no opinion; an unknown value too: the default applies.
        let (r, why) = org_role(&json!({"roles": [{"value": "group"}]}), OrgRole::Admin);
        assert_eq!(r, DesiredOrgRole::Admin);
        assert!(why.contains("default_org_role"), "{why}");
        assert!(why.contains("'group'"), "{why}");
        assert_eq!(
            role_of(json!([{"value": "viewer"}])),
            DesiredOrgRole::Member
        );
        assert_eq!(role_of(json!([])), DesiredOrgRole::Member);
        assert_eq!(
            org_role(&json!({}), OrgRole::Admin).0,
            DesiredOrgRole::Admin
        );
        // Primary wins over higher; otherwise the highest.
        assert_eq!(
            role_of(json!([{"value": "admin"}, {"value": "member", "primary": true}])),
            DesiredOrgRole::Member
        );
        let (r, why) = org_role(
            &json!({"roles": [{"value": "member"}, {"value": "admin"}, {"value": "group"}]}),
            OrgRole::Member,
        );
        assert_eq!(r, DesiredOrgRole::Admin);
        assert!(why.contains("highest"), "{why}");
        assert_eq!(DesiredOrgRole::Owner.settable(), OrgRole::Admin);
        let (_, why) = org_role(&json!({"roles": [{"value": "owner"}]}), OrgRole::Member);
        assert!(why.contains("never demoted"), "{why}");
    }

    #[test]
    fn convention_names() {
        assert_eq!(
            parse_convention("ws-Eng-role-admin"),
            Some(("Eng".into(), WorkspaceRole::Admin))
        );
        assert_eq!(
            parse_convention("WS-Data-Science-Team-ROLE-Manager"),
            Some(("Data-Science-Team".into(), WorkspaceRole::Manager))
        );
        // The last `-role-` separates.
        assert_eq!(
            parse_convention("ws-my-role-play-role-member"),
            Some(("my-role-play".into(), WorkspaceRole::Member))
        );
        assert_eq!(parse_convention("ws--role-admin"), None);
        assert_eq!(parse_convention("ws-Eng-role-owner"), None);
        assert_eq!(parse_convention("ws-Eng"), None);
        assert_eq!(parse_convention("Eng-role-admin"), None);
        assert_eq!(parse_convention("ws-role-admin"), None);
    }

    #[test]
    fn who_is_desired() {
        let users = vec![
            user("1", json!({"userName": "a@x.io", "active": true})),
            user("2", json!({"userName": "b@x.io", "active": false})),
            user("3", json!({"userName": "carol", "active": true})),
            user(
                "4",
                json!({"userName": "d", "emails": [{"value": "D@X.io"}]}),
            ),
        ];
        let d = desired_state(&users, &[], &sync(), &[]);
        assert_eq!(d.users.keys().collect::<Vec<_>>(), vec!["a@x.io", "d@x.io"]);
        assert_eq!(d.inactive_emails(), BTreeSet::from(["b@x.io".to_string()]));
        assert_eq!(d.warnings.len(), 1);
        assert!(d.warnings[0].contains("carol"));
        assert!(d.known_emails().contains("b@x.io"));
        let e = d.explain("carol").unwrap();
        assert!(!e.desired);
        assert!(e.excluded_because.unwrap().contains("no email"));
        let e = d.explain("B@x.io").unwrap();
        assert_eq!(
            e.excluded_because.as_deref(),
            Some("deactivated in the IdP")
        );
    }

    #[test]
    fn memberships_and_conflicts() {
        let users = vec![
            user("u1", json!({"userName": "a@x.io"})),
            user("u2", json!({"userName": "b@x.io"})),
        ];
        let groups = vec![
            group("g1", "ws-Eng-Core-role-member", &["u1", "u2"]),
            group("g2", "ws-eng-core-role-ADMIN", &["u1"]),
            group("g3", "Platform", &["u2"]),
            group("g4", "ws-Empty-role-member", &[]),
            group("g5", "ws-oops", &["u1"]),
        ];
        let maps = vec![
            mapping("platform", "Infra", WorkspaceRole::Manager),
            mapping("Unused", "Ghost", WorkspaceRole::Member),
        ];
        let d = desired_state(&users, &groups, &sync(), &maps);
        // Mappings first, then groups by name: "Eng-Core" is spelled as the first group met.
        assert_eq!(
            d.managed_workspaces,
            BTreeSet::from([
                "Empty".to_string(),
                "Eng-Core".to_string(),
                "Ghost".to_string(),
                "Infra".to_string()
            ])
        );
        let a = &d.users["a@x.io"];
        assert_eq!(a.workspaces.len(), 1);
        assert_eq!(a.workspaces["Eng-Core"].role, WorkspaceRole::Admin);
        let b = &d.users["b@x.io"];
        assert_eq!(b.workspaces["Eng-Core"].role, WorkspaceRole::Member);
        assert_eq!(b.workspaces["Infra"].role, WorkspaceRole::Manager);
        assert_eq!(d.conflicts.len(), 1);
        let c = &d.conflicts[0];
        assert_eq!(c.email, "a@x.io");
        assert_eq!(c.workspace, "Eng-Core");
        assert_eq!(c.roles, vec![WorkspaceRole::Admin, WorkspaceRole::Member]);
        assert_eq!(c.chosen, WorkspaceRole::Admin);
        assert_eq!(c.groups.len(), 2);
        assert!(d.warnings.iter().any(|w| w.contains("ws-oops")));
        assert!(d.warnings.iter().any(|w| w.contains("also spelled")));

        let e = d.explain("a@x.io").unwrap();
        assert_eq!(e.workspaces.len(), 1);
        assert!(e.workspaces[0]
            .because
            .iter()
            .any(|b| b.contains("outranked")));
        assert_eq!(e.conflicts.len(), 1);
        let e = d.explain("b@x.io").unwrap();
        let infra = e
            .workspaces
            .iter()
            .find(|w| w.workspace == "Infra")
            .unwrap();
        assert!(infra.because[0].contains("[[mapping.groups]] #1"));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["workspaces"][1]["role"], "manager");
    }

    #[test]
    fn mapping_and_convention_on_one_group() {
        let users = vec![user("u1", json!({"userName": "a@x.io"}))];
        let groups = vec![group("g1", "ws-Eng-role-member", &["u1"])];
        let maps = vec![mapping("WS-ENG-ROLE-MEMBER", "Eng", WorkspaceRole::Member)];
        let d = desired_state(&users, &groups, &sync(), &maps);
        let m = &d.users["a@x.io"].workspaces["Eng"];
        assert_eq!(m.sources.len(), 2);
        assert_eq!(m.source_groups(), vec!["ws-Eng-role-member".to_string()]);
        assert!(d.conflicts.is_empty(), "same role twice is no conflict");
    }

    #[test]
    fn one_address_claimed_twice_is_a_conflict_never_a_merge() {
        let users = vec![
            user(
                "u1",
                json!({"userName": "a@x.io", "roles": [{"value": "member"}]}),
            ),
            user(
                "u2",
                json!({"userName": "alt", "emails": [{"value": "A@x.io"}], "roles": [{"value": "owner"}]}),
            ),
            user(
                "u3",
                json!({"userName": "gone", "emails": [{"value": "a@x.io"}], "active": false}),
            ),
        ];
        let groups = vec![group("g", "ws-W-role-member", &["u2"])];
        // No owner known: the address is frozen, neither record raises the other.
        let d = desired_state(&users, &groups, &sync(), &[]);
        assert!(!d.users.contains_key("a@x.io"));
        assert!(d.frozen.contains("a@x.io"));
        assert!(d
            .warnings
            .iter()
            .any(|w| w.contains("claim the same email")));
        assert!(
            d.inactive_emails().contains("a@x.io"),
            "the plan must not read the inactive record as a departure: it checks `frozen`"
        );
        // The ledger's owner decides; the other record is ignored, its role and groups too.
        let owners = BTreeMap::from([("a@x.io".to_string(), "u1".to_string())]);
        let d = desired_state_with_owners(&users, &groups, &sync(), &[], &owners);
        let a = &d.users["a@x.io"];
        assert_eq!(a.scim_id, "u1");
        assert_eq!(a.org_role, DesiredOrgRole::Member);
        assert!(a.workspaces.is_empty());
        assert!(d.excluded["u2"].reason.contains("only u1"));
        // The owner is deactivated: the other record does not keep the address provisioned.
        let mut users2 = users.clone();
        users2[0] = user("u1", json!({"userName": "a@x.io", "active": false}));
        let d = desired_state_with_owners(&users2, &groups, &sync(), &[], &owners);
        assert!(!d.users.contains_key("a@x.io"));
        assert!(d.inactive_emails().contains("a@x.io"));
    }

    #[test]
    fn refused_addresses_are_reported_not_trimmed() {
        let users = vec![
            user("k1", json!({"userName": "kate@corp.io"})),
            user(
                "k2",
                json!({"userName": "KATE@corp.io ", "roles": [{"value": "owner"}]}),
            ),
            user("k3", json!({"userName": "k\u{200B}ate@corp.io"})),
        ];
        let d = desired_state(&users, &[], &sync(), &[]);
        assert_eq!(d.users.len(), 1);
        assert_eq!(d.users["kate@corp.io"].org_role, DesiredOrgRole::Member);
        assert!(d.excluded["k2"].reason.contains("whitespace"));
        assert!(d.excluded["k3"].reason.contains("invisible"));
        assert!(d.active_scim_ids.contains("k2"));
    }

    #[test]
    fn order_does_not_matter() {
        let users = vec![
            user("u1", json!({"userName": "a@x.io"})),
            user("u2", json!({"userName": "b@x.io"})),
        ];
        let groups = vec![
            group("g1", "ws-Eng-role-member", &["u1", "u2"]),
            group("g2", "ws-Eng-role-manager", &["u2"]),
        ];
        let d1 = desired_state(&users, &groups, &sync(), &[]);
        let mut ru = users.clone();
        ru.reverse();
        let mut rg = groups.clone();
        rg.reverse();
        let d2 = desired_state(&ru, &rg, &sync(), &[]);
        assert_eq!(d1, d2);
    }
}
