//! `plan = diff(desired, actual)`: the typed operations that make the control plane match the
//! desired state, and the safety rules around them.
//!
//! # Rules
//! - **Scope.** Only people whose email belongs to a SCIM user (active or not) or is in the link
//!   ledger (the daemon managed them before; a SCIM user deleted since is still removed) are
//!   touched. Protected emails (`sync.protected_emails`) are never touched. Only managed
//!   workspaces (named by a convention group or a mapping) have members added or removed.
//! - **Owners.** Never removed, never demoted. Org owners and admins are implicit admins of every
//!   workspace (the control plane reports them as `admin` whatever was asked), so their workspace
//!   memberships are never added, changed or removed: "fixing" them would never converge.
//! - **Invitees.** A pending invitee is not a user and has no id for workspace calls; the invite
//!   carries the workspaces. When the desired role or workspaces differ from the pending invite's,
//!   nothing is done until acceptance: revoking and re-inviting would invalidate a link the person
//!   may be about to click, and after acceptance the ordinary diff fixes role and memberships. An
//!   expired invite (status `expired`, or `pending` past `expires_at`) is replaced by a new
//!   [`OpKind::Invite`]; revoking a dead invite buys nothing. `resend` is not used: whether it
//!   revives an expired invite is undocumented, a new invite is.
//! - **Idempotence.** No op is planned that the actual state shows is already true, so a converged
//!   state yields an empty plan (and no `PUT` of the current org role, which the API rejects).
//! - **Missing workspaces.** Created when `sync.create_workspaces`; otherwise every op that needs
//!   one is skipped with a warning (an invite is still sent, without that workspace: the member
//!   diff adds it once the workspace exists and the invite is accepted).
//! - **Incomplete reads.** When any part of the actual state was not read completely, a missing
//!   row may just be unread, so the plan holds no destructive op at all (and says why), and no
//!   workspace is created (a duplicate workspace is not undone by a later run).
//! - **Deletion fuse.** [`apply_fuse`]: too many destructive ops in one run → all of them are held
//!   for approval, not a prefix (a prefix would apply an arbitrary part of a mass deletion).

use crate::policy::{Conflict, DesiredMembership, DesiredOrgRole, DesiredState, DesiredUser};
use crate::portkey::{
    Invite, InviteStatus, OrgRole, User, Workspace, WorkspaceMember, WorkspaceRole,
};
use crate::roles;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;

// ---- inputs --------------------------------------------------------------------------------

/// The members of one workspace as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberList {
    pub members: Vec<WorkspaceMember>,
    /// False when the read failed part-way: the list may lack members.
    pub complete: bool,
}

/// A snapshot of the control plane. Each `*_complete` flag is false when that read failed or
/// stopped early; `Default` is "nothing read", the safe assumption.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActualState {
    pub users: Vec<User>,
    pub users_complete: bool,
    pub invites: Vec<Invite>,
    pub invites_complete: bool,
    pub workspaces: Vec<Workspace>,
    pub workspaces_complete: bool,
    /// Workspace id → members, for the managed workspaces that exist. A managed workspace without
    /// an entry counts as not read.
    pub members: BTreeMap<String, MemberList>,
}

#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Never touched (compared lower-cased).
    pub protected_emails: BTreeSet<String>,
    /// Emails the daemon has managed before (link ledger), with the SCIM user each was
    /// provisioned for: removed once that SCIM user is deactivated or gone, even if its record
    /// is deleted; kept while that SCIM user is active under another address or none.
    pub linked: BTreeMap<String, Option<String>>,
    pub create_workspaces: bool,
    /// For invite expiry.
    pub now: OffsetDateTime,
}

impl PlanOptions {
    pub fn new(
        protected_emails: &[String],
        linked: BTreeMap<String, Option<String>>,
        create_workspaces: bool,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            protected_emails: protected_emails
                .iter()
                .map(|e| e.trim().to_lowercase())
                .collect(),
            linked: linked
                .into_iter()
                .map(|(e, id)| (e.trim().to_lowercase(), id))
                .collect(),
            create_workspaces,
            now,
        }
    }
}

// ---- the plan ------------------------------------------------------------------------------

/// Apply order: a workspace must exist before anyone joins it, a person must be in the org
/// before joining a workspace, and removals come last so a failed run leaves access granted
/// rather than taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    CreateWorkspaces,
    OrgMembership,
    AddOrChangeMembers,
    RemoveMembers,
    RemoveFromOrg,
}

/// A workspace an invite will add the invitee to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteTarget {
    pub workspace: String,
    /// `None` when the workspace is created earlier in the same plan.
    pub workspace_id: Option<String>,
    pub role: WorkspaceRole,
}

/// One entry of a bulk member add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAdd {
    pub user_id: String,
    pub email: String,
    pub role: WorkspaceRole,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpKind {
    CreateWorkspace {
        name: String,
    },
    Invite {
        email: String,
        role: OrgRole,
        workspaces: Vec<InviteTarget>,
        /// The expired invite this one replaces.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces_expired: Option<String>,
    },
    UpdateOrgRole {
        user_id: String,
        email: String,
        from: OrgRole,
        to: OrgRole,
    },
    AddMembers {
        workspace: String,
        /// `None` when the workspace is created earlier in the same plan.
        workspace_id: Option<String>,
        members: Vec<MemberAdd>,
    },
    UpdateMemberRole {
        workspace: String,
        workspace_id: String,
        user_id: String,
        email: String,
        from: WorkspaceRole,
        to: WorkspaceRole,
    },
    RemoveMember {
        workspace: String,
        workspace_id: String,
        user_id: String,
        email: String,
    },
    RevokeInvite {
        invite_id: String,
        email: String,
    },
    RemoveUser {
        user_id: String,
        email: String,
    },
}

impl OpKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::CreateWorkspace { .. } => "create_workspace",
            Self::Invite { .. } => "invite",
            Self::UpdateOrgRole { .. } => "update_org_role",
            Self::AddMembers { .. } => "add_members",
            Self::UpdateMemberRole { .. } => "update_member_role",
            Self::RemoveMember { .. } => "remove_member",
            Self::RevokeInvite { .. } => "revoke_invite",
            Self::RemoveUser { .. } => "remove_user",
        }
    }

    pub fn phase(&self) -> Phase {
        match self {
            Self::CreateWorkspace { .. } => Phase::CreateWorkspaces,
            Self::Invite { .. } | Self::UpdateOrgRole { .. } => Phase::OrgMembership,
            Self::AddMembers { .. } | Self::UpdateMemberRole { .. } => Phase::AddOrChangeMembers,
            Self::RemoveMember { .. } => Phase::RemoveMembers,
            Self::RevokeInvite { .. } | Self::RemoveUser { .. } => Phase::RemoveFromOrg,
        }
    }

    /// Takes access away: removals, revocations and demotions (org or workspace role down).
    /// Subject to the incomplete-read rule and the deletion fuse.
    pub fn is_destructive(&self) -> bool {
        match self {
            Self::RemoveMember { .. } | Self::RevokeInvite { .. } | Self::RemoveUser { .. } => true,
            Self::UpdateOrgRole { from, to, .. } => !is_raise(org_rank(from), org_rank(to)),
            Self::UpdateMemberRole { from, to, .. } => !is_raise(ws_rank(from), ws_rank(to)),
            Self::CreateWorkspace { .. } | Self::Invite { .. } | Self::AddMembers { .. } => false,
        }
    }

    /// The person this op is about (lower-cased email), if any.
    pub fn email(&self) -> Option<&str> {
        match self {
            Self::CreateWorkspace { .. } | Self::AddMembers { .. } => None,
            Self::Invite { email, .. }
            | Self::UpdateOrgRole { email, .. }
            | Self::UpdateMemberRole { email, .. }
            | Self::RemoveMember { email, .. }
            | Self::RevokeInvite { email, .. }
            | Self::RemoveUser { email, .. } => Some(email),
        }
    }

    /// A stable identity of the op, for the held set, approvals and quarantine.
    pub fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        // An op is strings and numbers, so it always serialises; the Debug text is a fallback
        // that still tells ops apart (an empty string would give every op one key).
        let text = serde_json::to_string(self).unwrap_or_else(|_| format!("{self:?}"));
        hex::encode(&Sha256::digest(text.as_bytes())[..12])
    }
}

/// Rank of an org role; `None` for a role this client does not know.
pub fn org_rank(r: &OrgRole) -> Option<u8> {
    domain_org_role(r).map(|d| d as u8)
}

/// Rank of a workspace role; `None` for a role this client does not know.
pub fn ws_rank(r: &WorkspaceRole) -> Option<u8> {
    domain_ws_role(r).map(|d| d as u8)
}

/// Only a change between two known roles, upwards, is harmless; anything else is treated as
/// taking access away.
fn is_raise(from: Option<u8>, to: Option<u8>) -> bool {
    matches!((from, to), (Some(f), Some(t)) if t > f)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    #[serde(flatten)]
    pub kind: OpKind,
    /// Why, in words an operator reads in the plan and the audit log.
    pub reason: String,
}

impl Op {
    pub(crate) fn new(kind: OpKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }

    pub fn is_destructive(&self) -> bool {
        self.kind.is_destructive()
    }

    /// See [`OpKind::key`]: the reason is not part of it.
    pub fn key(&self) -> String {
        self.kind.key()
    }

    pub fn phase(&self) -> Phase {
        self.kind.phase()
    }
}

/// Destructive ops left out because the actual state was not read completely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Withheld {
    /// The parts not read completely.
    pub incomplete: Vec<String>,
    /// How many destructive ops the partial state would have produced.
    pub dropped: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// In phase order.
    pub ops: Vec<Op>,
    pub withheld: Option<Withheld>,
    pub conflicts: Vec<Conflict>,
    /// Something an operator should fix (config, IdP data).
    pub warnings: Vec<String>,
    /// Things deliberately left alone (owners, protected emails, pending invites).
    pub notes: Vec<String>,
    /// Control-plane users and live invites in scope: the denominator of the fuse's percentage.
    pub managed_users: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Op counts per kind (bulk adds count once per member), plus `destructive` and `total`.
    pub fn summary(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for op in &self.ops {
            let n = match &op.kind {
                OpKind::AddMembers { members, .. } => members.len(),
                _ => 1,
            };
            *out.entry(op.kind.name()).or_insert(0) += n;
        }
        out.insert(
            "destructive",
            self.ops.iter().filter(|o| o.is_destructive()).count(),
        );
        out.insert("total", self.ops.len());
        out
    }

    pub fn destructive(&self) -> impl Iterator<Item = &Op> {
        self.ops.iter().filter(|o| o.is_destructive())
    }
}

// ---- the diff ------------------------------------------------------------------------------

fn implicit_workspace_admin(r: &OrgRole) -> bool {
    domain_org_role(r).is_some_and(roles::OrgRole::is_implicit_workspace_admin)
}

/// The control plane uses at least three timestamp formats (spec §1); one that cannot be read
/// leaves the decision to `status`.
fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    use time::PrimitiveDateTime;
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let plain = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let frac = format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
    let naive = s.replace('T', " ");
    let naive = naive.trim_end_matches('Z');
    PrimitiveDateTime::parse(naive, &plain)
        .or_else(|_| PrimitiveDateTime::parse(naive, &frac))
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteLife {
    /// Pending and not past its expiry: the person can still accept.
    Live,
    Expired,
    /// Accepted, cancelled or unknown: no longer an invitation.
    Dead,
}

fn invite_life(inv: &Invite, now: OffsetDateTime) -> InviteLife {
    match inv.status {
        InviteStatus::Pending => {
            let past = inv
                .expires_at
                .as_deref()
                .and_then(parse_timestamp)
                .is_some_and(|t| t <= now);
            if past {
                InviteLife::Expired
            } else {
                InviteLife::Live
            }
        }
        InviteStatus::Expired => InviteLife::Expired,
        _ => InviteLife::Dead,
    }
}

/// A managed workspace as the plan sees it.
#[derive(Debug, Clone)]
enum WsState<'a> {
    Present(&'a Workspace),
    /// Created in this plan's first phase.
    ToCreate,
    /// Missing and not created, or ambiguous: ops needing it are skipped.
    Unusable,
}

/// Exact name, then case-insensitive name, then slug, then id: the config names workspaces as a
/// person would, and an operator may paste a slug.
fn find_workspace<'a>(all: &'a [Workspace], name: &str) -> Result<Option<&'a Workspace>, usize> {
    let exact: Vec<&Workspace> = all.iter().filter(|w| w.name == name).collect();
    if exact.len() == 1 {
        return Ok(exact.first().copied());
    }
    if exact.len() > 1 {
        return Err(exact.len());
    }
    let ci: Vec<&Workspace> = all
        .iter()
        .filter(|w| w.name.to_lowercase() == name.to_lowercase())
        .collect();
    match ci.len() {
        1 => return Ok(ci.first().copied()),
        0 => {}
        n => return Err(n),
    }
    Ok(all
        .iter()
        .find(|w| w.slug.as_deref() == Some(name))
        .or_else(|| all.iter().find(|w| w.id == name)))
}

/// Computes the plan. Pure and deterministic.
pub fn diff(desired: &DesiredState, actual: &ActualState, opts: &PlanOptions) -> Plan {
    let mut p = Planner::new(desired, actual, opts);
    let managed_users = p.managed_users();
    p.workspaces();
    p.org_roles_and_invites();
    p.find_leaving();
    p.removals();
    p.members();
    p.finish(managed_users)
}

/// One plan being computed. Each phase is a method; what a later phase needs from an earlier
/// one (workspace states, org roles after this plan, who leaves) is kept here.
struct Planner<'a> {
    desired: &'a DesiredState,
    actual: &'a ActualState,
    opts: &'a PlanOptions,
    known: BTreeSet<String>,
    inactive: BTreeSet<String>,
    users_by_email: BTreeMap<String, &'a User>,
    users_by_id: BTreeMap<&'a str, &'a User>,
    invites_by_email: BTreeMap<String, Vec<&'a Invite>>,
    ws_state: BTreeMap<&'a str, WsState<'a>>,
    /// Who the groups put in each workspace, by workspace name: built once, so that planning
    /// a workspace's members costs its own members, not every person in the IdP.
    wanted_by_ws: BTreeMap<&'a str, Vec<(&'a String, &'a DesiredMembership)>>,
    /// Each managed user's org role once this plan is applied, which decides whether workspace
    /// roles are implicit.
    role_after: BTreeMap<&'a str, OrgRole>,
    leaving: BTreeSet<String>,
    removed_users: BTreeSet<&'a str>,
    /// Phase 5 ops, kept apart until the end.
    removals: Vec<Op>,
    ops: Vec<Op>,
    warnings: Vec<String>,
    notes: Vec<String>,
    incomplete: Vec<String>,
}

impl<'a> Planner<'a> {
    fn new(desired: &'a DesiredState, actual: &'a ActualState, opts: &'a PlanOptions) -> Self {
        let mut warnings: Vec<String> = desired.warnings.clone();
        let mut incomplete: Vec<String> = Vec::new();
        if !actual.users_complete {
            incomplete.push("users".into());
        }
        if !actual.invites_complete {
            incomplete.push("invites".into());
        }
        if !actual.workspaces_complete {
            incomplete.push("workspaces".into());
        }
        let mut users_by_email: BTreeMap<String, &User> = BTreeMap::new();
        for u in &actual.users {
            let email = u.email.trim().to_lowercase();
            if let Some(first) = users_by_email.get(&email) {
                warnings.push(format!(
                    "control-plane users {} and {} share the email {email}; only {} is managed",
                    first.id, u.id, first.id
                ));
                continue;
            }
            users_by_email.insert(email, u);
        }
        let users_by_id = actual.users.iter().map(|u| (u.id.as_str(), u)).collect();
        let mut invites_by_email: BTreeMap<String, Vec<&Invite>> = BTreeMap::new();
        for inv in &actual.invites {
            invites_by_email
                .entry(inv.email.trim().to_lowercase())
                .or_default()
                .push(inv);
        }
        let mut wanted_by_ws: BTreeMap<&str, Vec<(&String, &DesiredMembership)>> = BTreeMap::new();
        for (email, du) in &desired.users {
            for (ws, m) in &du.workspaces {
                wanted_by_ws
                    .entry(ws.as_str())
                    .or_default()
                    .push((email, m));
            }
        }
        Planner {
            desired,
            actual,
            opts,
            known: desired.known_emails(),
            inactive: desired.inactive_emails(),
            users_by_email,
            users_by_id,
            invites_by_email,
            ws_state: BTreeMap::new(),
            wanted_by_ws,
            role_after: BTreeMap::new(),
            leaving: BTreeSet::new(),
            removed_users: BTreeSet::new(),
            removals: Vec::new(),
            ops: Vec::new(),
            warnings,
            notes: Vec::new(),
            incomplete,
        }
    }

    fn protected(&self, email: &str) -> bool {
        self.opts.protected_emails.contains(email)
    }

    fn in_scope(&self, email: &str) -> bool {
        !self.protected(email)
            && (self.known.contains(email) || self.opts.linked.contains_key(email))
    }

    fn has_account_or_invite(&self, email: &str) -> bool {
        self.users_by_email.contains_key(email) || self.invites_by_email.contains_key(email)
    }

    /// Control-plane users and live invites in scope: the denominator of the fuse's percentage.
    fn managed_users(&self) -> usize {
        self.users_by_email
            .keys()
            .filter(|e| self.in_scope(e))
            .count()
            + self
                .invites_by_email
                .iter()
                .filter(|(e, _)| !self.users_by_email.contains_key(*e) && self.in_scope(e))
                .filter(|(_, invs)| {
                    invs.iter()
                        .any(|i| invite_life(i, self.opts.now) == InviteLife::Live)
                })
                .count()
    }

    /// Phase 1: each managed workspace found, to be created, or unusable.
    fn workspaces(&mut self) {
        let (desired, actual) = (self.desired, self.actual);
        for name in &desired.managed_workspaces {
            let state = match find_workspace(&actual.workspaces, name) {
                Ok(Some(w)) => WsState::Present(w),
                Err(n) => {
                    self.warnings.push(format!(
                        "{n} control-plane workspaces are named '{name}'; its memberships are skipped until only one is"
                    ));
                    WsState::Unusable
                }
                Ok(None) if !actual.workspaces_complete => {
                    self.warnings.push(format!(
                        "workspace '{name}' was not found, but the workspace list was not read completely; it is not created and its memberships wait for a complete read"
                    ));
                    WsState::Unusable
                }
                Ok(None) if self.opts.create_workspaces => {
                    self.ops.push(Op::new(
                        OpKind::CreateWorkspace { name: name.clone() },
                        format!(
                            "workspace '{name}' is named by a group or [[mapping.groups]] and does not exist"
                        ),
                    ));
                    WsState::ToCreate
                }
                Ok(None) => {
                    self.warnings.push(format!(
                        "workspace '{name}' does not exist and sync.create_workspaces is false; its memberships are skipped"
                    ));
                    WsState::Unusable
                }
            };
            self.ws_state.insert(name.as_str(), state);
        }
    }

    /// Phase 2: org roles of people in the organisation, invites for the others.
    fn org_roles_and_invites(&mut self) {
        let desired = self.desired;
        for (email, du) in &desired.users {
            if self.protected(email) {
                self.notes.push(format!(
                    "{email} is protected (sync.protected_emails): left alone"
                ));
                continue;
            }
            match self.users_by_email.get(email).copied() {
                Some(u) => self.org_role(email, du, u),
                None => self.invite(email, du),
            }
        }
    }

    fn org_role(&mut self, email: &str, du: &DesiredUser, u: &'a User) {
        let settable: OrgRole = du.org_role.settable().into();
        let after = match (&u.role, du.org_role) {
            (OrgRole::Owner, wanted) => {
                if wanted != DesiredOrgRole::Owner {
                    self.notes.push(format!(
                        "{email} is an org owner: never demoted (the IdP says {})",
                        wanted.as_str()
                    ));
                }
                OrgRole::Owner
            }
            (OrgRole::Admin, DesiredOrgRole::Owner) => OrgRole::Admin,
            (current, _) if *current == settable => current.clone(),
            (OrgRole::Other(r), wanted) => {
                self.notes.push(format!(
                    "{email} has the org role '{r}', which this daemon does not know: left as it is (the IdP says {})",
                    wanted.as_str()
                ));
                u.role.clone()
            }
            (current, _) => {
                self.ops.push(Op::new(
                    OpKind::UpdateOrgRole {
                        user_id: u.id.clone(),
                        email: email.to_string(),
                        from: current.clone(),
                        to: settable.clone(),
                    },
                    format!("org role {}: {}", du.org_role.as_str(), du.org_role_reason),
                ));
                settable
            }
        };
        self.role_after.insert(u.id.as_str(), after);
    }

    fn invite(&mut self, email: &str, du: &DesiredUser) {
        let settable: OrgRole = du.org_role.settable().into();
        let invites = self
            .invites_by_email
            .get(email)
            .cloned()
            .unwrap_or_default();
        let targets: Vec<InviteTarget> = du
            .workspaces
            .iter()
            .filter_map(|(ws, m)| {
                let role: WorkspaceRole = m.role.into();
                match self.ws_state.get(ws.as_str()) {
                    Some(WsState::Present(w)) => Some(InviteTarget {
                        workspace: ws.clone(),
                        workspace_id: Some(w.id.clone()),
                        role,
                    }),
                    Some(WsState::ToCreate) => Some(InviteTarget {
                        workspace: ws.clone(),
                        workspace_id: None,
                        role,
                    }),
                    _ => None,
                }
            })
            .collect();

        let now = self.opts.now;
        if let Some(live) = invites
            .iter()
            .find(|i| invite_life(i, now) == InviteLife::Live)
        {
            if !invite_matches(live, &settable, &targets, &self.ws_state) {
                self.notes.push(format!(
                    "{email} has a pending invite ({}) whose role or workspaces differ from the desired ones; they are corrected after acceptance",
                    live.id
                ));
            }
            return;
        }
        let expired = invites
            .iter()
            .find(|i| invite_life(i, now) == InviteLife::Expired);
        let reason = match (expired, invites.first()) {
            (Some(e), _) => format!("invite {} expired; active in the IdP", e.id),
            (None, Some(prev)) => format!(
                "active in the IdP and not in the organisation (previous invite {})",
                prev.status
            ),
            (None, None) => "active in the IdP and not in the organisation".to_string(),
        };
        let skipped: Vec<&str> = du
            .workspaces
            .keys()
            .filter(|ws| !targets.iter().any(|t| &t.workspace == *ws))
            .map(String::as_str)
            .collect();
        if !skipped.is_empty() {
            self.warnings.push(format!(
                "invite for {email} leaves out workspaces that cannot be used now: {}",
                skipped.join(", ")
            ));
        }
        self.ops.push(Op::new(
            OpKind::Invite {
                email: email.to_string(),
                role: settable,
                workspaces: targets,
                replaces_expired: expired.map(|e| e.id.clone()),
            },
            format!(
                "{reason}; org role {} ({})",
                du.org_role.as_str(),
                du.org_role_reason
            ),
        ));
    }

    /// People leaving the org: not desired, in scope, and either inactive in SCIM or gone from
    /// it after the daemon managed them. An inactive record leaves only with an address that is
    /// not provisioned for a SCIM user still active (an old deactivated duplicate must not take
    /// a current employee's access).
    fn find_leaving(&mut self) {
        let (desired, opts) = (self.desired, self.opts);
        let linked_to_active = |email: &str| {
            opts.linked
                .get(email)
                .and_then(Option::as_ref)
                .is_some_and(|id| desired.active_scim_ids.contains(id))
        };
        self.leaving = self
            .inactive
            .iter()
            .filter(|e| {
                !desired.users.contains_key(*e)
                    && !desired.frozen.contains(*e)
                    && !linked_to_active(e.as_str())
            })
            .cloned()
            .collect();
        for (email, scim_id) in &opts.linked {
            if desired.users.contains_key(email)
                || desired.frozen.contains(email)
                || self.leaving.contains(email)
            {
                continue;
            }
            match scim_id {
                // Provisioned for a SCIM user who is still active: the address was changed or
                // lost, which is not a departure. The API cannot rename a user, so the old
                // account stays until that SCIM user leaves.
                Some(id) if desired.active_scim_ids.contains(id) => {
                    if self.has_account_or_invite(email) {
                        let now = desired
                            .users
                            .values()
                            .find(|d| &d.scim_id == id)
                            .map(|d| format!("now has the address {}", d.email))
                            .unwrap_or_else(|| "has no usable address now".to_string());
                        self.warnings.push(format!(
                            "{email} was provisioned for SCIM user {id}, who is still active and {now}: {email} is kept (not removed) until that SCIM user is deactivated or deleted; remove it by hand if it is no longer used"
                        ));
                    }
                }
                _ => {
                    self.leaving.insert(email.clone());
                }
            }
        }
    }

    fn leave_reason(&self, email: &str) -> String {
        if self.inactive.contains(email) {
            "deactivated in the IdP".to_string()
        } else {
            "no longer provisioned by the IdP (deleted or unassigned)".to_string()
        }
    }

    /// Phase 5, computed before the member phases so they know who is removed anyway.
    fn removals(&mut self) {
        let leaving = std::mem::take(&mut self.leaving);
        for email in &leaving {
            let email = email.as_str();
            if self.protected(email) {
                if self.has_account_or_invite(email) {
                    self.notes.push(format!(
                        "{email} is protected (sync.protected_emails): not removed although {}",
                        self.leave_reason(email)
                    ));
                }
                continue;
            }
            if let Some(u) = self.users_by_email.get(email).copied() {
                if u.role == OrgRole::Owner {
                    self.notes.push(format!(
                        "{email} is an org owner: never removed although {}",
                        self.leave_reason(email)
                    ));
                } else {
                    self.removed_users.insert(u.id.as_str());
                    self.removals.push(Op::new(
                        OpKind::RemoveUser {
                            user_id: u.id.clone(),
                            email: email.to_string(),
                        },
                        self.leave_reason(email),
                    ));
                }
            }
            let live: Vec<&Invite> = self
                .invites_by_email
                .get(email)
                .into_iter()
                .flatten()
                .copied()
                .filter(|inv| invite_life(inv, self.opts.now) == InviteLife::Live)
                .collect();
            for inv in live {
                self.removals.push(Op::new(
                    OpKind::RevokeInvite {
                        invite_id: inv.id.clone(),
                        email: email.to_string(),
                    },
                    self.leave_reason(email),
                ));
            }
        }
        self.leaving = leaving;
    }

    /// Phases 3 and 4: workspace members added, re-roled and removed.
    fn members(&mut self) {
        let states: Vec<(&'a str, WsState<'a>)> =
            self.ws_state.iter().map(|(k, v)| (*k, v.clone())).collect();
        for (ws, state) in states {
            let (workspace_id, list) = match state {
                WsState::Unusable => continue,
                WsState::ToCreate => (None, None),
                WsState::Present(w) => match self.actual.members.get(&w.id) {
                    Some(list) => {
                        if !list.complete {
                            self.incomplete.push(format!("members of workspace '{ws}'"));
                        }
                        (Some(w.id.clone()), Some(list))
                    }
                    None => {
                        self.incomplete.push(format!("members of workspace '{ws}'"));
                        self.warnings.push(format!(
                            "members of workspace '{ws}' were not read; its member changes wait for the next run"
                        ));
                        continue;
                    }
                },
            };
            self.wanted_members(ws, workspace_id.as_ref(), list);
            if let (Some(list), Some(id)) = (list, &workspace_id) {
                self.unwanted_members(ws, id, list);
            }
        }
    }

    /// Adds and role changes for the people the groups put in `ws`.
    fn wanted_members(
        &mut self,
        ws: &str,
        workspace_id: Option<&String>,
        list: Option<&'a MemberList>,
    ) {
        let wanted: Vec<(&String, WorkspaceRole, String)> = self
            .wanted_by_ws
            .get(ws)
            .into_iter()
            .flatten()
            .filter(|(e, _)| !self.protected(e))
            .map(|(e, m)| (*e, WorkspaceRole::from(m.role), m.reason()))
            .collect();
        let present: BTreeMap<&str, &WorkspaceMember> = list
            .map(|l| l.members.iter().map(|m| (m.id.as_str(), m)).collect())
            .unwrap_or_default();

        let mut adds = Vec::new();
        for (email, role, reason) in wanted {
            // Invitees get workspaces through their invite.
            let Some(u) = self.users_by_email.get(email).copied() else {
                continue;
            };
            if self
                .role_after
                .get(u.id.as_str())
                .is_some_and(implicit_workspace_admin)
            {
                continue;
            }
            match present.get(u.id.as_str()) {
                // The org role after this plan decides: someone demoted in this same run is no
                // longer an implicit admin, whatever the member list read before said.
                Some(m)
                    if !self.role_after.contains_key(u.id.as_str())
                        && m.org_role.as_ref().is_some_and(implicit_workspace_admin) => {}
                Some(m) if m.role == role => {}
                Some(m) if ws_rank(&m.role).is_none() => {
                    self.notes.push(format!(
                        "{email} has the role '{}' in workspace {ws}, which this daemon does not know: left as it is",
                        m.role
                    ));
                }
                Some(m) => {
                    if let Some(id) = workspace_id {
                        self.ops.push(Op::new(
                            OpKind::UpdateMemberRole {
                                workspace: ws.to_string(),
                                workspace_id: id.clone(),
                                user_id: u.id.clone(),
                                email: email.to_string(),
                                from: m.role.clone(),
                                to: role.clone(),
                            },
                            reason,
                        ));
                    }
                }
                None => adds.push(MemberAdd {
                    user_id: u.id.clone(),
                    email: email.to_string(),
                    role,
                    reason,
                }),
            }
        }
        if !adds.is_empty() {
            let n = adds.len();
            self.ops.push(Op::new(
                OpKind::AddMembers {
                    workspace: ws.to_string(),
                    workspace_id: workspace_id.cloned(),
                    members: adds,
                },
                format!("{n} user(s) in groups mapping to workspace {ws}"),
            ));
        }
    }

    /// Removals of members of `ws` the groups no longer put there.
    fn unwanted_members(&mut self, ws: &str, id: &str, list: &'a MemberList) {
        for m in &list.members {
            let user = self.users_by_id.get(m.id.as_str()).copied();
            let Some(email): Option<String> = user
                .map(|u| u.email.trim().to_lowercase())
                .or_else(|| m.email.as_ref().map(|e| e.trim().to_lowercase()))
            else {
                continue;
            };
            if !self.in_scope(&email) || self.removed_users.contains(m.id.as_str()) {
                continue;
            }
            let org_role = self
                .role_after
                .get(m.id.as_str())
                .or(user.map(|u| &u.role))
                .or(m.org_role.as_ref());
            if org_role.is_some_and(implicit_workspace_admin) {
                continue;
            }
            let reason = match self.desired.users.get(&email) {
                Some(du) if du.workspaces.contains_key(ws) => continue,
                Some(_) => format!("no longer in any group mapping to workspace {ws}"),
                None if self.leaving.contains(&email) => self.leave_reason(&email),
                // Known to the IdP only as a user without access (no desired record and not
                // leaving cannot happen for an in-scope email, but staying put is the safe
                // answer if it ever does).
                None => continue,
            };
            self.ops.push(Op::new(
                OpKind::RemoveMember {
                    workspace: ws.to_string(),
                    workspace_id: id.to_string(),
                    user_id: m.id.clone(),
                    email,
                },
                reason,
            ));
        }
    }

    /// Phase order, and what an incomplete read withholds.
    fn finish(self, managed_users: usize) -> Plan {
        let Planner {
            desired,
            actual,
            mut ops,
            removals,
            warnings,
            notes,
            incomplete,
            ..
        } = self;
        ops.extend(removals);
        ops.sort_by_key(Op::phase);

        // An unread user or invite row would make an invite a duplicate.
        let invites_unsafe = !actual.users_complete || !actual.invites_complete;
        let withheld = if incomplete.is_empty() {
            None
        } else {
            let before = ops.len();
            ops.retain(|o| {
                let unsafe_invite = invites_unsafe && matches!(o.kind, OpKind::Invite { .. });
                !(o.is_destructive() || unsafe_invite)
            });
            let dropped = before - ops.len();
            let also = if invites_unsafe {
                ", demoted or invited"
            } else {
                " or demoted"
            };
            Some(Withheld {
                reason: format!(
                    "not read completely: {}. A missing row may only be unread, so no member, invite or user is removed{also} this run",
                    incomplete.join(", ")
                ),
                incomplete,
                dropped,
            })
        };

        Plan {
            ops,
            withheld,
            conflicts: desired.conflicts.clone(),
            warnings,
            notes,
            managed_users,
        }
    }
}

/// Whether a pending invite already asks for what is desired.
fn invite_matches(
    inv: &Invite,
    role: &OrgRole,
    targets: &[InviteTarget],
    ws_state: &BTreeMap<&str, WsState>,
) -> bool {
    if inv.role != *role || inv.workspaces.len() != targets.len() {
        return false;
    }
    targets.iter().all(|t| {
        let Some(WsState::Present(w)) = ws_state.get(t.workspace.as_str()) else {
            return false;
        };
        inv.workspaces.iter().any(|iw| {
            (iw.id == w.id || w.slug.as_deref() == Some(iw.id.as_str()))
                && iw.role.as_ref() == Some(&t.role)
        })
    })
}

// ---- the edge between the domain's roles and the wire's -------------------------------------

impl From<roles::OrgRole> for OrgRole {
    fn from(r: roles::OrgRole) -> Self {
        match r {
            roles::OrgRole::Member => OrgRole::Member,
            roles::OrgRole::Admin => OrgRole::Admin,
            roles::OrgRole::Owner => OrgRole::Owner,
        }
    }
}

impl From<roles::WorkspaceRole> for WorkspaceRole {
    fn from(r: roles::WorkspaceRole) -> Self {
        match r {
            roles::WorkspaceRole::Member => WorkspaceRole::Member,
            roles::WorkspaceRole::Manager => WorkspaceRole::Manager,
            roles::WorkspaceRole::Admin => WorkspaceRole::Admin,
        }
    }
}

/// A wire org role in the domain's terms; `None` for a role this daemon does not know.
pub fn domain_org_role(r: &OrgRole) -> Option<roles::OrgRole> {
    match r {
        OrgRole::Member => Some(roles::OrgRole::Member),
        OrgRole::Admin => Some(roles::OrgRole::Admin),
        OrgRole::Owner => Some(roles::OrgRole::Owner),
        OrgRole::Other(_) => None,
    }
}

/// A wire workspace role in the domain's terms; `None` for a role this daemon does not know.
pub fn domain_ws_role(r: &WorkspaceRole) -> Option<roles::WorkspaceRole> {
    match r {
        WorkspaceRole::Member => Some(roles::WorkspaceRole::Member),
        WorkspaceRole::Manager => Some(roles::WorkspaceRole::Manager),
        WorkspaceRole::Admin => Some(roles::WorkspaceRole::Admin),
        WorkspaceRole::Other(_) => None,
    }
}

// ---- the deletion fuse ---------------------------------------------------------------------

/// The fuse's limits (`[sync]` keys).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FuseLimits {
    /// More destructive ops than this in one window are always held.
    pub max_deletions: u64,
    /// More than this share of the managed people in one window is held...
    pub max_deletion_percent: f64,
    /// ...once the window holds more than this many ops: a few are never held by the share.
    pub floor: u64,
}

impl FuseLimits {
    /// Whether `n` destructive ops in one window, in an org of `managed` people, is too many.
    pub fn over(&self, n: usize, managed: usize) -> bool {
        let n64 = n as u64;
        n64 > self.max_deletions
            || (n64 > self.floor
                && (n as f64) * 100.0 > self.max_deletion_percent * managed.max(1) as f64)
    }

    /// The most destructive ops a window may hold in an org of `managed` people.
    pub fn allowance(&self, managed: usize) -> usize {
        let by_share = (self.max_deletion_percent * managed as f64 / 100.0).floor() as u64;
        self.max_deletions.min(self.floor.max(by_share)) as usize
    }
}

/// What the fuse knows from earlier runs.
#[derive(Debug, Clone, Default)]
pub struct FuseState {
    /// Destructive ops applied in the window (approved ones not counted: they were reviewed).
    pub recent: usize,
    /// Keys of ops held now, and whether an operator approved each.
    pub held: BTreeMap<String, bool>,
    /// People the daemon has managed before (the ledger). A demotion of anyone else is a first
    /// contact: the IdP's first word about someone who already had that access, typically a
    /// deployment whose IdP sends no `roles` yet. It is held whatever the count.
    pub managed_before: Option<BTreeSet<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FuseOutcome {
    /// Ops to apply now, in phase order (approved held ops included).
    pub allowed: Vec<Op>,
    /// Destructive ops of this plan that are held: already held before, or held now.
    pub held: Vec<Op>,
    /// The part of `held` held by this plan for the first time.
    pub newly_held: Vec<Op>,
    /// Held ops an operator approved, released by this plan.
    pub approved: Vec<Op>,
    /// Why ops are held, when some are.
    pub reason: Option<String>,
}

/// The deletion fuse. Destructive ops (removals, revocations, demotions) are counted over a
/// rolling window across all runs: those applied recently, those held and not approved yet, and
/// this plan's new ones. When the total is over the limits, every new destructive op is held,
/// not a prefix (a prefix would apply an arbitrary part of a mass mistake). An op held once
/// stays held until approved or no longer planned; an approved one is applied. Non-destructive
/// ops always flow.
pub fn apply_fuse(
    plan: &Plan,
    limits: &FuseLimits,
    managed: usize,
    state: &FuseState,
    window_minutes: u64,
) -> FuseOutcome {
    let mut out = FuseOutcome::default();
    let mut fresh: Vec<&Op> = Vec::new();
    let mut held_keys: BTreeSet<String> = BTreeSet::new();
    let mut first_contact = 0usize;
    for op in plan.destructive() {
        match state.held.get(&op.key()) {
            Some(true) => out.approved.push(op.clone()),
            Some(false) => {
                held_keys.insert(op.key());
                out.held.push(op.clone());
            }
            None if is_first_contact_demotion(op, state) => {
                first_contact += 1;
                held_keys.insert(op.key());
                out.held.push(op.clone());
                out.newly_held.push(op.clone());
            }
            None => fresh.push(op),
        }
    }
    let waiting = state.held.values().filter(|approved| !**approved).count();
    let total = state.recent + waiting + fresh.len();
    if !fresh.is_empty() && limits.over(total, managed) {
        for op in fresh {
            held_keys.insert(op.key());
            out.held.push(op.clone());
            out.newly_held.push(op.clone());
        }
    }
    if !out.held.is_empty() {
        let mut why = Vec::new();
        if first_contact > 0 {
            why.push(format!(
                "{first_contact} demotion(s) of people scim-sync has not managed before (first contact: check that the IdP sends roles)"
            ));
        }
        if total as u64 > limits.max_deletions {
            why.push(format!(
                "more than sync.max_deletions ({})",
                limits.max_deletions
            ));
        }
        if limits.over(total, managed) && total as u64 > limits.floor {
            why.push(format!(
                "{:.1}% of {managed} managed people, more than sync.max_deletion_percent ({}%)",
                total as f64 * 100.0 / managed.max(1) as f64,
                limits.max_deletion_percent
            ));
        }
        if why.is_empty() {
            why.push("held earlier and not approved yet".to_string());
        }
        let total = total + first_contact;
        out.reason = Some(format!(
            "{total} destructive ops in {window_minutes} min ({} applied, {waiting} already held, {} new): {}. Review with `scim-sync plan`, approve with `scim-sync approve-deletions`",
            state.recent,
            total - state.recent - waiting,
            why.join("; ")
        ));
    }
    out.allowed = plan
        .ops
        .iter()
        .filter(|o| !held_keys.contains(&o.key()))
        .cloned()
        .collect();
    out
}

fn is_first_contact_demotion(op: &Op, state: &FuseState) -> bool {
    let demotion = matches!(
        op.kind,
        OpKind::UpdateOrgRole { .. } | OpKind::UpdateMemberRole { .. }
    );
    match (&state.managed_before, op.kind.email()) {
        (Some(known), Some(email)) => demotion && !known.contains(email),
        _ => false,
    }
}

/// A short digest naming a set of held ops: an approval carries it, so it approves what the
/// operator reviewed and nothing that was held after.
pub fn held_digest<'a>(keys: impl IntoIterator<Item = &'a str>) -> String {
    use sha2::{Digest, Sha256};
    let mut keys: Vec<&str> = keys.into_iter().collect();
    keys.sort_unstable();
    keys.dedup();
    let mut h = Sha256::new();
    for k in keys {
        h.update(k.as_bytes());
        h.update(b"\n");
    }
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::{GroupMapping, WorkspaceRole as CfgRole};
    use crate::policy::{desired_state, ScimGroup, ScimUser};
    use crate::portkey::InviteWorkspaceRef;
    use serde_json::{json, Value};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    use crate::policy::tests::sync;

    /// A SCIM world: users (id, data) and groups (name, member ids).
    #[derive(Default, Clone)]
    struct Idp {
        users: Vec<ScimUser>,
        groups: Vec<ScimGroup>,
        mappings: Vec<GroupMapping>,
    }

    impl Idp {
        fn user(mut self, id: &str, email: &str, extra: Value) -> Self {
            let mut data = json!({"userName": email, "active": true});
            if let (Some(d), Value::Object(e)) = (data.as_object_mut(), extra) {
                d.extend(e);
            }
            self.users.push(ScimUser {
                id: id.into(),
                data,
            });
            self
        }
        fn group(mut self, name: &str, members: &[&str]) -> Self {
            self.groups.push(ScimGroup {
                id: format!("g-{name}"),
                display_name: name.into(),
                members: members.iter().map(|s| s.to_string()).collect(),
            });
            self
        }
        fn desired(&self) -> DesiredState {
            desired_state(&self.users, &self.groups, &sync(), &self.mappings)
        }
    }

    fn user(id: &str, email: &str, role: OrgRole) -> User {
        User {
            id: id.into(),
            email: email.into(),
            role,
            first_name: None,
            last_name: None,
            workspace_ids: None,
            status: None,
            created_at: None,
            last_updated_at: None,
        }
    }

    fn invite(id: &str, email: &str, status: InviteStatus, expires_at: &str) -> Invite {
        Invite {
            id: id.into(),
            email: email.into(),
            role: OrgRole::Member,
            status,
            workspaces: vec![],
            created_at: None,
            expires_at: Some(expires_at.into()),
            accepted_at: None,
            invited_by: None,
        }
    }

    fn workspace(id: &str, name: &str) -> Workspace {
        Workspace {
            id: id.into(),
            name: name.into(),
            slug: Some(format!("ws-{}", name.to_lowercase())),
            description: None,
            status: None,
            created_at: None,
            last_updated_at: None,
        }
    }

    fn member(id: &str, role: WorkspaceRole, org_role: OrgRole) -> WorkspaceMember {
        WorkspaceMember {
            id: id.into(),
            email: None,
            role,
            org_role: Some(org_role),
            first_name: None,
            last_name: None,
            status: None,
            workspace_id: None,
        }
    }

    fn complete() -> ActualState {
        ActualState {
            users_complete: true,
            invites_complete: true,
            workspaces_complete: true,
            ..Default::default()
        }
    }

    fn opts() -> PlanOptions {
        PlanOptions::new(&[], BTreeMap::new(), true, NOW)
    }

    fn kinds(plan: &Plan) -> Vec<&'static str> {
        plan.ops.iter().map(|o| o.kind.name()).collect()
    }

    /// Applies a plan the way the control plane would, for convergence checks.
    fn apply(actual: &mut ActualState, ops: &[Op]) {
        let mut next_id = actual.users.len() + actual.workspaces.len() + 100;
        for op in ops {
            next_id += 1;
            match &op.kind {
                OpKind::CreateWorkspace { name } => {
                    let id = format!("w{next_id}");
                    actual.workspaces.push(workspace(&id, name));
                    actual.members.insert(
                        id,
                        MemberList {
                            members: vec![],
                            complete: true,
                        },
                    );
                }
                OpKind::Invite {
                    email,
                    role,
                    workspaces,
                    ..
                } => {
                    // Accepted at once: the person becomes a user in the listed workspaces.
                    let id = format!("u{next_id}");
                    actual.users.push(user(&id, email, role.clone()));
                    for t in workspaces {
                        let w = actual
                            .workspaces
                            .iter()
                            .find(|w| w.name == t.workspace)
                            .unwrap();
                        let r = if implicit_workspace_admin(role) {
                            WorkspaceRole::Admin
                        } else {
                            t.role.clone()
                        };
                        actual.members.get_mut(&w.id).unwrap().members.push(member(
                            &id,
                            r,
                            role.clone(),
                        ));
                    }
                }
                OpKind::UpdateOrgRole { user_id, to, .. } => {
                    let u = actual.users.iter_mut().find(|u| &u.id == user_id).unwrap();
                    u.role = to.clone();
                    for l in actual.members.values_mut() {
                        for m in l.members.iter_mut().filter(|m| &m.id == user_id) {
                            m.org_role = Some(to.clone());
                        }
                    }
                }
                OpKind::AddMembers {
                    workspace, members, ..
                } => {
                    let w = actual
                        .workspaces
                        .iter()
                        .find(|w| &w.name == workspace)
                        .unwrap();
                    let list = actual.members.get_mut(&w.id).unwrap();
                    for m in members {
                        let org = actual
                            .users
                            .iter()
                            .find(|u| u.id == m.user_id)
                            .unwrap()
                            .role
                            .clone();
                        list.members.push(member(&m.user_id, m.role.clone(), org));
                    }
                }
                OpKind::UpdateMemberRole {
                    workspace_id,
                    user_id,
                    to,
                    ..
                } => {
                    let list = actual.members.get_mut(workspace_id).unwrap();
                    list.members
                        .iter_mut()
                        .find(|m| &m.id == user_id)
                        .unwrap()
                        .role = to.clone();
                }
                OpKind::RemoveMember {
                    workspace_id,
                    user_id,
                    ..
                } => {
                    let list = actual.members.get_mut(workspace_id).unwrap();
                    list.members.retain(|m| &m.id != user_id);
                }
                OpKind::RevokeInvite { invite_id, .. } => {
                    actual.invites.retain(|i| &i.id != invite_id);
                }
                OpKind::RemoveUser { user_id, .. } => {
                    actual.users.retain(|u| &u.id != user_id);
                    for l in actual.members.values_mut() {
                        l.members.retain(|m| &m.id != user_id);
                    }
                }
            }
        }
    }

    /// Eng: alice admin (group), bob member; carol is an org admin in ws-Eng-role-member;
    /// olga is the owner.
    fn eng_world() -> (Idp, ActualState) {
        let idp = Idp::default()
            .user("s-alice", "alice@x.io", json!({}))
            .user("s-bob", "bob@x.io", json!({}))
            .user(
                "s-carol",
                "carol@x.io",
                json!({"roles": [{"value": "admin"}]}),
            )
            .user(
                "s-olga",
                "olga@x.io",
                json!({"roles": [{"value": "owner"}]}),
            )
            .group("ws-Eng-role-admin", &["s-alice"])
            .group("ws-Eng-role-member", &["s-bob", "s-carol", "s-olga"]);
        let mut actual = complete();
        actual.users = vec![
            user("u-alice", "Alice@X.io", OrgRole::Member),
            user("u-bob", "bob@x.io", OrgRole::Member),
            user("u-carol", "carol@x.io", OrgRole::Admin),
            user("u-olga", "olga@x.io", OrgRole::Owner),
            user("u-stranger", "stranger@x.io", OrgRole::Member),
        ];
        actual.workspaces = vec![workspace("w-eng", "Eng"), workspace("w-other", "Other")];
        actual.members.insert(
            "w-eng".into(),
            MemberList {
                members: vec![
                    member("u-alice", WorkspaceRole::Admin, OrgRole::Member),
                    member("u-bob", WorkspaceRole::Member, OrgRole::Member),
                    member("u-olga", WorkspaceRole::Admin, OrgRole::Owner),
                    member("u-stranger", WorkspaceRole::Member, OrgRole::Member),
                ],
                complete: true,
            },
        );
        (idp, actual)
    }

    #[test]
    fn converged_state_gives_an_empty_plan() {
        let (idp, actual) = eng_world();
        let plan = diff(&idp.desired(), &actual, &opts());
        assert!(plan.is_empty(), "{:#?}", plan.ops);
        assert!(plan.withheld.is_none());
        assert_eq!(plan.summary()["total"], 0);
        // Carol (org admin) is not a listed member of Eng and is not added; Olga (owner) is
        // listed as admin against the group's member role and is not changed.
        assert_eq!(plan.managed_users, 4);
    }

    #[test]
    fn from_nothing_then_converged() {
        let idp = Idp::default()
            .user("s-a", "a@x.io", json!({}))
            .user("s-b", "b@x.io", json!({"roles": [{"value": "admin"}]}))
            .group("ws-Data-Science-role-manager", &["s-a", "s-b"])
            .group("ws-Empty-role-member", &[]);
        let desired = idp.desired();
        let mut actual = complete();
        let plan = diff(&desired, &actual, &opts());
        assert_eq!(
            kinds(&plan),
            vec!["create_workspace", "create_workspace", "invite", "invite"]
        );
        let OpKind::Invite {
            role, workspaces, ..
        } = &plan.ops[2].kind
        else {
            panic!()
        };
        assert_eq!(role, &OrgRole::Member);
        assert_eq!(workspaces[0].workspace, "Data-Science");
        assert_eq!(workspaces[0].workspace_id, None);
        assert_eq!(workspaces[0].role, WorkspaceRole::Manager);
        assert!(plan.ops[2].reason.contains("not in the organisation"));
        apply(&mut actual, &plan.ops);
        let again = diff(&desired, &actual, &opts());
        assert!(again.is_empty(), "{:#?}", again.ops);
    }

    #[test]
    fn phases_are_in_order() {
        let (idp, mut actual) = eng_world();
        let idp = idp
            .user("s-new", "new@x.io", json!({}))
            .user("s-gone", "gone@x.io", json!({"active": false}))
            .group("ws-Fresh-role-member", &["s-bob"]);
        actual
            .users
            .push(user("u-gone", "gone@x.io", OrgRole::Member));
        // Bob leaves the Eng groups: a removal in phase 4.
        let mut idp = idp;
        idp.groups[1].members.retain(|m| m != "s-bob");
        let plan = diff(&idp.desired(), &actual, &opts());
        let phases: Vec<Phase> = plan.ops.iter().map(Op::phase).collect();
        let mut sorted = phases.clone();
        sorted.sort();
        assert_eq!(phases, sorted);
        assert_eq!(
            kinds(&plan),
            vec![
                "create_workspace",
                "invite",
                "add_members",
                "remove_member",
                "remove_user"
            ]
        );
    }

    #[test]
    fn org_roles_change_but_owners_are_never_demoted() {
        let idp = Idp::default()
            .user("s1", "promote@x.io", json!({"roles": [{"primary": true, "type": "WindowsAzureActiveDirectoryRole", "value": "Admin"}]}))
            .user("s2", "demote@x.io", json!({"roles": [{"value": "member"}]}))
            .user("s3", "owner@x.io", json!({"roles": [{"value": "member"}]}))
            .user("s4", "wantsowner@x.io", json!({"roles": [{"value": "Owner"}]}))
            .user("s5", "adminowner@x.io", json!({"roles": [{"value": "owner"}]}))
            .user("s6", "group@x.io", json!({"roles": [{"value": "{\"id\":\"1\",\"value\":\"group\"}"}]}));
        let mut actual = complete();
        actual.users = vec![
            user("u1", "promote@x.io", OrgRole::Member),
            user("u2", "demote@x.io", OrgRole::Admin),
            user("u3", "owner@x.io", OrgRole::Owner),
            user("u4", "wantsowner@x.io", OrgRole::Member),
            user("u5", "adminowner@x.io", OrgRole::Admin),
            user("u6", "group@x.io", OrgRole::Member),
        ];
        let plan = diff(&idp.desired(), &actual, &opts());
        let changes: Vec<(&str, &OrgRole, &OrgRole)> = plan
            .ops
            .iter()
            .map(|o| match &o.kind {
                OpKind::UpdateOrgRole {
                    email, from, to, ..
                } => (email.as_str(), from, to),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            changes,
            vec![
                ("demote@x.io", &OrgRole::Admin, &OrgRole::Member),
                ("promote@x.io", &OrgRole::Member, &OrgRole::Admin),
                ("wantsowner@x.io", &OrgRole::Member, &OrgRole::Admin),
            ]
        );
        assert!(plan
            .notes
            .iter()
            .any(|n| n.contains("owner@x.io is an org owner: never demoted")));
    }

    #[test]
    fn workspace_members_add_change_remove() {
        let (mut idp, mut actual) = eng_world();
        idp = idp
            .user("s-dan", "dan@x.io", json!({}))
            .user("s-eve", "eve@x.io", json!({}));
        idp.groups[0].members = vec!["s-bob".into()]; // alice leaves admin, bob becomes admin
        idp.groups[1].members.push("s-dan".into());
        idp.groups[1].members.push("s-eve".into());
        actual
            .users
            .push(user("u-dan", "dan@x.io", OrgRole::Member));
        actual
            .users
            .push(user("u-eve", "eve@x.io", OrgRole::Member));
        let desired = idp.desired();
        let plan = diff(&desired, &actual, &opts());
        assert_eq!(
            kinds(&plan),
            vec!["update_member_role", "add_members", "remove_member"]
        );
        let OpKind::AddMembers {
            workspace,
            workspace_id,
            members,
        } = &plan.ops[1].kind
        else {
            panic!()
        };
        assert_eq!(workspace, "Eng");
        assert_eq!(workspace_id.as_deref(), Some("w-eng"));
        assert_eq!(members.len(), 2, "one bulk add for the workspace");
        assert_eq!(members[0].reason, "in group ws-Eng-role-member");
        let OpKind::UpdateMemberRole {
            user_id, from, to, ..
        } = &plan.ops[0].kind
        else {
            panic!()
        };
        assert_eq!(
            (user_id.as_str(), from, to),
            ("u-bob", &WorkspaceRole::Member, &WorkspaceRole::Admin)
        );
        assert_eq!(plan.ops[0].reason, "in group ws-Eng-role-admin");
        let OpKind::RemoveMember { user_id, .. } = &plan.ops[2].kind else {
            panic!()
        };
        assert_eq!(user_id, "u-alice");
        assert_eq!(
            plan.ops[2].reason,
            "no longer in any group mapping to workspace Eng"
        );
        // The stranger (no SCIM user) and the owner stay.
        apply(&mut actual, &plan.ops);
        assert!(diff(&desired, &actual, &opts()).is_empty());
    }

    #[test]
    fn org_admins_are_implicit_workspace_admins() {
        let (idp, mut actual) = eng_world();
        // Carol is listed as a plain member, and the group would say member: left alone.
        actual
            .members
            .get_mut("w-eng")
            .unwrap()
            .members
            .push(member("u-carol", WorkspaceRole::Member, OrgRole::Admin));
        let mut idp2 = idp.clone();
        assert!(diff(&idp.desired(), &actual, &opts()).is_empty());
        // Out of every Eng group: still not removed.
        idp2.groups[1]
            .members
            .retain(|m| m != "s-carol" && m != "s-olga");
        assert!(diff(&idp2.desired(), &actual, &opts()).is_empty());
        // Demoted to member in the same plan: workspace rules then apply to her.
        idp2.users[2].data["roles"] = json!([{"value": "member"}]);
        let mut idp3 = idp2.clone();
        let plan = diff(&idp2.desired(), &actual, &opts());
        assert_eq!(kinds(&plan), vec!["update_org_role", "remove_member"]);
        idp3.groups[1].members.push("s-carol".into());
        let plan = diff(&idp3.desired(), &actual, &opts());
        assert_eq!(kinds(&plan), vec!["update_org_role"]);
    }

    #[test]
    fn deactivated_user_is_removed_and_invite_revoked() {
        let (mut idp, mut actual) = eng_world();
        idp.users[1].data["active"] = json!(false); // bob
        idp = idp.user("s-pending", "pending@x.io", json!({"active": false}));
        idp = idp.user("s-dead", "dead@x.io", json!({"active": false}));
        actual.invites = vec![
            invite(
                "i-p",
                "pending@x.io",
                InviteStatus::Pending,
                "2026-07-01 00:00:00",
            ),
            invite(
                "i-d",
                "dead@x.io",
                InviteStatus::Expired,
                "2026-05-01 00:00:00",
            ),
        ];
        let plan = diff(&idp.desired(), &actual, &opts());
        assert_eq!(kinds(&plan), vec!["remove_user", "revoke_invite"]);
        for op in &plan.ops {
            assert_eq!(op.reason, "deactivated in the IdP");
        }
        let OpKind::RemoveUser { user_id, .. } = &plan.ops[0].kind else {
            panic!()
        };
        assert_eq!(
            user_id, "u-bob",
            "no separate RemoveMember for a removed user"
        );
        apply(&mut actual, &plan.ops);
        assert!(diff(&idp.desired(), &actual, &opts()).is_empty());
    }

    #[test]
    fn deleted_scim_user_is_removed_only_when_linked() {
        let (mut idp, actual) = eng_world();
        idp.users.retain(|u| u.id != "s-bob");
        for g in &mut idp.groups {
            g.members.retain(|m| m != "s-bob");
        }
        let plan = diff(&idp.desired(), &actual, &opts());
        assert!(plan.is_empty(), "an unknown person is left alone");
        let linked = BTreeMap::from([
            ("BOB@x.io".to_string(), None),
            ("olga@x.io".to_string(), None),
        ]);
        let o = PlanOptions::new(&[], linked, true, NOW);
        let plan = diff(&idp.desired(), &actual, &o);
        assert_eq!(kinds(&plan), vec!["remove_user"]);
        assert!(plan.ops[0].reason.contains("no longer provisioned"));
    }

    #[test]
    fn owners_and_protected_survive_everything() {
        let (mut idp, mut actual) = eng_world();
        for u in &mut idp.users {
            u.data["active"] = json!(false);
        }
        actual.invites.push(invite(
            "i-prot",
            "prot@x.io",
            InviteStatus::Pending,
            "2030-01-01 00:00:00",
        ));
        idp = idp.user("s-prot", "prot@x.io", json!({"active": false}));
        let linked: BTreeMap<String, Option<String>> =
            ["alice@x.io", "bob@x.io", "olga@x.io", "prot@x.io"]
                .iter()
                .map(|s| (s.to_string(), None))
                .collect();
        let o = PlanOptions::new(
            &["Alice@x.io".into(), "prot@x.io".into()],
            linked,
            true,
            NOW,
        );
        let plan = diff(&idp.desired(), &actual, &o);
        let touched: Vec<String> = plan
            .ops
            .iter()
            .map(|op| {
                serde_json::to_value(op).unwrap()["email"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(touched, vec!["bob@x.io", "carol@x.io"]);
        assert!(plan
            .notes
            .iter()
            .any(|n| n.contains("olga@x.io is an org owner: never removed")));
        assert!(plan
            .notes
            .iter()
            .any(|n| n.contains("alice@x.io is protected")));
        assert!(plan
            .notes
            .iter()
            .any(|n| n.contains("prot@x.io is protected")));

        // Protected and active: no role change, no membership change either.
        let (mut idp, actual) = eng_world();
        idp.users[0].data["roles"] = json!([{"value": "admin"}]);
        idp.groups[0].members.clear();
        let o = PlanOptions::new(&["alice@x.io".into()], BTreeMap::new(), true, NOW);
        assert!(diff(&idp.desired(), &actual, &o).is_empty());
    }

    #[test]
    fn partial_read_plans_no_destructive_op() {
        let (mut idp, actual) = eng_world();
        idp.users[1].data["active"] = json!(false); // bob → remove_user
        idp.groups[0].members.clear(); // alice → remove from Eng (admin role)... and re-add as nothing
        idp = idp
            .user("s-new", "new@x.io", json!({}))
            .group("ws-Missing-role-member", &["s-alice"]);
        let full = diff(&idp.desired(), &actual, &opts());
        assert!(full.destructive().count() >= 2, "{:#?}", full.ops);
        assert!(kinds(&full).contains(&"create_workspace"));

        for breaker in 0..5 {
            let mut partial = actual.clone();
            match breaker {
                0 => partial.users_complete = false,
                1 => partial.invites_complete = false,
                2 => partial.workspaces_complete = false,
                3 => partial.members.get_mut("w-eng").unwrap().complete = false,
                _ => {
                    partial.members.clear();
                }
            }
            let plan = diff(&idp.desired(), &partial, &opts());
            assert_eq!(
                plan.destructive().count(),
                0,
                "case {breaker}: {:#?}",
                plan.ops
            );
            let w = plan.withheld.as_ref().expect("says why");
            assert!(w.dropped >= 1 || breaker == 4, "case {breaker}");
            assert!(w.reason.contains("not read completely"));
            assert_eq!(
                kinds(&plan).contains(&"invite"),
                breaker > 1,
                "non-destructive ops still flow, except invites when users or invites are unread (case {breaker})"
            );
            assert_eq!(
                kinds(&plan).contains(&"create_workspace"),
                breaker != 2,
                "no workspace is created from an incomplete list (case {breaker})"
            );
        }
    }

    #[test]
    fn fuse_holds_every_destructive_op() {
        // Ten people in Eng; nine of them lose the group at once.
        let mut idp = Idp::default();
        let mut actual = complete();
        actual.workspaces = vec![workspace("w-eng", "Eng")];
        let mut members = Vec::new();
        let mut ids = Vec::new();
        for i in 0..10 {
            let email = format!("p{i}@x.io");
            idp = idp.user(&format!("s{i}"), &email, json!({}));
            actual
                .users
                .push(user(&format!("u{i}"), &email, OrgRole::Member));
            members.push(member(
                &format!("u{i}"),
                WorkspaceRole::Member,
                OrgRole::Member,
            ));
            ids.push(format!("s{i}"));
        }
        actual.members.insert(
            "w-eng".into(),
            MemberList {
                members,
                complete: true,
            },
        );
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        idp = idp
            .group("ws-Eng-role-member", &refs[..1])
            .group("ws-Ops-role-member", &refs);
        let plan = diff(&idp.desired(), &actual, &opts());
        assert_eq!(plan.destructive().count(), 9);
        let limits = |max, pct, floor| FuseLimits {
            max_deletions: max,
            max_deletion_percent: pct,
            floor,
        };
        let none = FuseState::default();
        let out = apply_fuse(&plan, &limits(10, 10.0, 5), plan.managed_users, &none, 60);
        assert_eq!(out.held.len(), 9, "all of them, not a prefix");
        assert_eq!(out.newly_held.len(), 9);
        assert!(out.allowed.iter().all(|o| !o.is_destructive()));
        assert_eq!(
            kinds(&plan)
                .iter()
                .filter(|k| **k == "create_workspace")
                .count(),
            1
        );
        assert_eq!(out.allowed.len(), plan.ops.len() - 9);
        assert!(out.reason.unwrap().contains("90.0% of 10"));

        // Count limit alone.
        let out = apply_fuse(&plan, &limits(5, 100.0, 5), 10, &none, 60);
        assert_eq!(out.held.len(), 9);
        assert!(out.reason.unwrap().contains("max_deletions (5)"));
        // Within both limits.
        let out = apply_fuse(&plan, &limits(9, 90.0, 5), 10, &none, 60);
        assert!(out.held.is_empty() && out.reason.is_none());
        assert_eq!(out.allowed, plan.ops);
        // Within the limits for this plan, but the window already holds earlier removals.
        let busy = FuseState {
            recent: 1,
            ..FuseState::default()
        };
        let out = apply_fuse(&plan, &limits(9, 100.0, 5), 10, &busy, 60);
        assert_eq!(out.held.len(), 9, "1 earlier + 9 now is over 9");
        // Held before and approved: released; held before and not approved: still held.
        let keys: Vec<String> = plan.destructive().map(Op::key).collect();
        let mut held = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            held.insert(k.clone(), i % 2 == 0);
        }
        let st = FuseState {
            held,
            ..FuseState::default()
        };
        let out = apply_fuse(&plan, &limits(1000, 100.0, 5), 10, &st, 60);
        assert_eq!(out.approved.len(), 5);
        assert_eq!(
            out.held.len(),
            4,
            "approval is per op, not for the whole plan"
        );
        assert!(out.newly_held.is_empty());
        // Nothing destructive: nothing held, whatever the limits.
        let calm = Plan::default();
        assert!(apply_fuse(&calm, &limits(0, 0.0, 0), 0, &none, 60)
            .reason
            .is_none());
    }

    #[test]
    fn fuse_defaults_never_hold_routine_offboarding_and_always_hold_a_mass_event() {
        let d = FuseLimits {
            max_deletions: crate::config::DEFAULT_MAX_DELETIONS,
            max_deletion_percent: 10.0,
            floor: crate::config::DEFAULT_FUSE_FLOOR,
        };
        for org in [1usize, 5, 20, 200, 5_000, 50_000] {
            // One to three people leaving within the hour: never held.
            for n in 1..=3 {
                assert!(!d.over(n, org), "{n} of {org} held");
            }
            // Half the org (or 1,000 people) in one hour: always held.
            let mass = (org / 2).clamp(6, 1000);
            if mass <= org {
                assert!(d.over(mass, org), "{mass} of {org} not held");
            }
        }
        assert!(!d.over(5, 5), "a five-person pilot can offboard itself");
        assert!(
            d.over(26, 100_000),
            "no org loses more than max_deletions an hour unseen"
        );
        assert_eq!(d.allowance(20), 5);
        assert_eq!(d.allowance(100), 10);
        assert_eq!(d.allowance(50_000), 25);
    }

    #[test]
    fn demotions_are_destructive_and_unknown_roles_are_left_alone() {
        let (mut idp, mut actual) = eng_world();
        // Bob is an org admin in the control plane; the IdP sends no roles.
        for u in &mut actual.users {
            if u.email == "bob@x.io" {
                u.role = OrgRole::Admin;
            }
        }
        let plan = diff(&idp.desired(), &actual, &opts());
        let demote: Vec<&Op> = plan
            .ops
            .iter()
            .filter(|o| matches!(o.kind, OpKind::UpdateOrgRole { .. }))
            .collect();
        assert_eq!(demote.len(), 1);
        assert!(
            demote[0].is_destructive(),
            "admin → member takes access away"
        );
        // An incomplete read withholds it like a removal.
        let mut partial = actual.clone();
        partial.invites_complete = false;
        let plan = diff(&idp.desired(), &partial, &opts());
        assert!(plan
            .ops
            .iter()
            .all(|o| !matches!(o.kind, OpKind::UpdateOrgRole { .. })));
        // A promotion is not destructive.
        idp.users[0].data["roles"] = json!([{"value": "admin"}]);
        let plan = diff(&idp.desired(), &actual, &opts());
        for op in &plan.ops {
            if let OpKind::UpdateOrgRole { from, to, .. } = &op.kind {
                assert_eq!(op.is_destructive(), org_rank(to) < org_rank(from));
            }
        }
        // A role the client does not know is never changed.
        for u in &mut actual.users {
            u.role = OrgRole::Other("billing_admin".into());
        }
        let plan = diff(&idp.desired(), &actual, &opts());
        assert!(plan
            .ops
            .iter()
            .all(|o| !matches!(o.kind, OpKind::UpdateOrgRole { .. })));
        assert!(plan.notes.iter().any(|n| n.contains("billing_admin")));
    }

    #[test]
    fn a_demotion_at_first_contact_is_held_whatever_the_count() {
        let (idp, mut actual) = eng_world();
        for u in &mut actual.users {
            if u.email == "bob@x.io" {
                u.role = OrgRole::Admin;
            }
        }
        let plan = diff(&idp.desired(), &actual, &opts());
        let limits = FuseLimits {
            max_deletions: 25,
            max_deletion_percent: 10.0,
            floor: 5,
        };
        // Never managed before: held, although one demotion is far below every limit.
        let state = FuseState {
            managed_before: Some(BTreeSet::new()),
            ..FuseState::default()
        };
        let out = apply_fuse(&plan, &limits, 100, &state, 60);
        assert_eq!(out.held.len(), 1);
        assert!(out.reason.unwrap().contains("first contact"));
        // Managed before: an ordinary demotion, within the limits.
        let state = FuseState {
            managed_before: Some(BTreeSet::from(["bob@x.io".to_string()])),
            ..FuseState::default()
        };
        let out = apply_fuse(&plan, &limits, 100, &state, 60);
        assert!(out.held.is_empty());
    }

    #[test]
    fn an_incomplete_users_or_invites_read_sends_no_invite() {
        let idp = Idp::default().user("s-new", "new@x.io", json!({}));
        let mut actual = complete();
        let plan = diff(&idp.desired(), &actual, &opts());
        assert_eq!(kinds(&plan), vec!["invite"]);
        for which in ["users", "invites"] {
            actual.users_complete = which != "users";
            actual.invites_complete = which != "invites";
            let plan = diff(&idp.desired(), &actual, &opts());
            assert!(plan.is_empty(), "{which}: {:?}", kinds(&plan));
            let w = plan.withheld.unwrap();
            assert_eq!(w.dropped, 1);
            assert!(w.reason.contains("invited"));
        }
    }

    #[test]
    fn an_inactive_duplicate_does_not_remove_the_linked_active_owner() {
        let (mut idp, actual) = eng_world();
        // Bob's own record (linked) loses its address; an old deactivated duplicate claims it.
        for u in &mut idp.users {
            if u.id == "s-bob" {
                u.data = json!({"userName": "bob", "active": true});
            }
        }
        idp = idp.user("s-dup", "bob@x.io", json!({"active": false}));
        let linked = BTreeMap::from([("bob@x.io".to_string(), Some("s-bob".to_string()))]);
        let o = PlanOptions::new(&[], linked, true, NOW);
        let plan = diff(&idp.desired(), &actual, &o);
        assert!(
            plan.ops.iter().all(|op| !op.is_destructive()),
            "{:?}",
            kinds(&plan)
        );
    }

    #[test]
    fn a_changed_or_lost_address_is_not_a_departure() {
        let (mut idp, actual) = eng_world();
        let linked = BTreeMap::from([("bob@x.io".to_string(), Some("s-bob".to_string()))]);
        let o = PlanOptions::new(&[], linked.clone(), true, NOW);
        // Bob's email is cleared and his userName is not an address.
        for u in &mut idp.users {
            if u.id == "s-bob" {
                u.data = json!({"userName": "bob", "active": true, "emails": [{"value": ""}]});
            }
        }
        let plan = diff(&idp.desired(), &actual, &o);
        assert!(
            plan.ops.iter().all(|op| !op.is_destructive()),
            "{:?}",
            kinds(&plan)
        );
        assert!(plan.warnings.iter().any(|w| w.contains("bob@x.io is kept")));
        // Bob's address changes: the new one is invited, the old account is kept.
        for u in &mut idp.users {
            if u.id == "s-bob" {
                u.data = json!({"userName": "robert@x.io", "active": true});
            }
        }
        let plan = diff(&idp.desired(), &actual, &o);
        assert!(plan.ops.iter().all(|op| !op.is_destructive()));
        assert!(kinds(&plan).contains(&"invite"));
        // Bob is deactivated: now the old address goes.
        for u in &mut idp.users {
            if u.id == "s-bob" {
                u.data["active"] = json!(false);
            }
        }
        let plan = diff(&idp.desired(), &actual, &o);
        assert!(plan
            .ops
            .iter()
            .any(|op| matches!(&op.kind, OpKind::RemoveUser { email, .. } if email == "bob@x.io")));
    }

    #[test]
    fn dashes_in_workspace_names_and_mappings() {
        let mut idp = Idp::default()
            .user("s1", "a@x.io", json!({}))
            .user("s2", "b@x.io", json!({}))
            .group("WS-ml-platform-team-ROLE-Manager", &["s1"])
            .group("Contractors", &["s2"]);
        idp.mappings.push(GroupMapping {
            group: "contractors".into(),
            workspace: "ml-platform-team".into(),
            role: CfgRole::Member,
        });
        let mut actual = complete();
        actual.users = vec![
            user("u1", "a@x.io", OrgRole::Member),
            user("u2", "b@x.io", OrgRole::Member),
        ];
        // Named differently in case, found case-insensitively.
        actual.workspaces = vec![workspace("w1", "ML-Platform-Team")];
        actual.members.insert(
            "w1".into(),
            MemberList {
                members: vec![],
                complete: true,
            },
        );
        let plan = diff(&idp.desired(), &actual, &opts());
        assert_eq!(kinds(&plan), vec!["add_members"]);
        let OpKind::AddMembers {
            members,
            workspace_id,
            ..
        } = &plan.ops[0].kind
        else {
            panic!()
        };
        assert_eq!(workspace_id.as_deref(), Some("w1"));
        let roles: Vec<(&str, &WorkspaceRole)> = members
            .iter()
            .map(|m| (m.email.as_str(), &m.role))
            .collect();
        assert_eq!(
            roles,
            vec![
                ("a@x.io", &WorkspaceRole::Manager),
                ("b@x.io", &WorkspaceRole::Member)
            ]
        );
        assert!(members[1].reason.contains("[[mapping.groups]] #1"));
    }

    #[test]
    fn conflicts_are_reported_and_highest_wins() {
        let idp = Idp::default()
            .user("s1", "a@x.io", json!({}))
            .group("ws-Eng-role-member", &["s1"])
            .group("ws-Eng-role-manager", &["s1"]);
        let actual = complete();
        let plan = diff(&idp.desired(), &actual, &opts());
        assert_eq!(plan.conflicts.len(), 1);
        let OpKind::Invite { workspaces, .. } = &plan.ops[1].kind else {
            panic!()
        };
        assert_eq!(workspaces[0].role, WorkspaceRole::Manager);
        let v = serde_json::to_value(&plan).unwrap();
        assert_eq!(v["conflicts"][0]["roles"], json!(["manager", "member"]));
        assert_eq!(v["conflicts"][0]["chosen"], "manager");
    }

    #[test]
    fn reactivated_user_is_invited_again() {
        let (mut idp, mut actual) = eng_world();
        idp.users[1].data["active"] = json!(false);
        let desired_off = idp.desired();
        let plan = diff(&desired_off, &actual, &opts());
        apply(&mut actual, &plan.ops);
        actual.invites.push(invite(
            "i-old",
            "bob@x.io",
            InviteStatus::Accepted,
            "2026-01-01 00:00:00",
        ));
        assert!(diff(&desired_off, &actual, &opts()).is_empty());
        idp.users[1].data["active"] = json!(true);
        let plan = diff(&idp.desired(), &actual, &opts());
        assert_eq!(kinds(&plan), vec!["invite"]);
        let OpKind::Invite {
            workspaces,
            replaces_expired,
            ..
        } = &plan.ops[0].kind
        else {
            panic!()
        };
        assert_eq!(replaces_expired, &None);
        assert_eq!(workspaces.len(), 1);
        assert_eq!(workspaces[0].workspace_id.as_deref(), Some("w-eng"));
        assert!(plan.ops[0].reason.contains("previous invite accepted"));
        apply(&mut actual, &plan.ops);
        assert!(diff(&idp.desired(), &actual, &opts()).is_empty());
    }

    #[test]
    fn expired_invites_are_replaced() {
        let idp = Idp::default()
            .user("s1", "a@x.io", json!({}))
            .user("s2", "b@x.io", json!({}))
            .user("s3", "c@x.io", json!({}))
            .user("s4", "d@x.io", json!({}));
        let mut actual = complete();
        actual.invites = vec![
            invite(
                "i-a",
                "a@x.io",
                InviteStatus::Expired,
                "2026-05-01 00:00:00",
            ),
            // Still `pending` but past its expiry, in another timestamp format.
            invite(
                "i-b",
                "b@x.io",
                InviteStatus::Pending,
                "2026-05-31T23:59:59.000Z",
            ),
            invite(
                "i-c",
                "c@x.io",
                InviteStatus::Pending,
                "2026-06-02T00:00:00Z",
            ),
            // Unreadable expiry: the status decides.
            invite("i-d", "d@x.io", InviteStatus::Pending, "soon"),
        ];
        let plan = diff(&idp.desired(), &actual, &opts());
        let replaced: Vec<(&str, Option<&str>)> = plan
            .ops
            .iter()
            .map(|o| match &o.kind {
                OpKind::Invite {
                    email,
                    replaces_expired,
                    ..
                } => (email.as_str(), replaces_expired.as_deref()),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            replaced,
            vec![("a@x.io", Some("i-a")), ("b@x.io", Some("i-b"))]
        );
        assert!(plan.ops[0].reason.contains("invite i-a expired"));
    }

    #[test]
    fn pending_invitee_gets_no_workspace_ops() {
        let (mut idp, mut actual) = eng_world();
        idp = idp.user("s-pat", "pat@x.io", json!({}));
        idp.groups[1].members.push("s-pat".into());
        let mut inv = invite(
            "i-pat",
            "pat@x.io",
            InviteStatus::Pending,
            "2030-01-01 00:00:00",
        );
        actual.invites.push(inv.clone());
        // The invite lacks Eng: nothing until acceptance, and a note says so.
        let plan = diff(&idp.desired(), &actual, &opts());
        assert!(plan.is_empty(), "{:#?}", plan.ops);
        assert!(plan
            .notes
            .iter()
            .any(|n| n.contains("pat@x.io has a pending invite")));
        // The invite matches (by slug): nothing, and no note.
        inv.workspaces = vec![InviteWorkspaceRef {
            id: "ws-eng".into(),
            role: Some(WorkspaceRole::Member),
        }];
        actual.invites = vec![inv];
        let plan = diff(&idp.desired(), &actual, &opts());
        assert!(plan.is_empty());
        assert!(!plan.notes.iter().any(|n| n.contains("pat@x.io")));
        // The invitee leaves the group: still nothing (no RemoveMember for a non-user).
        idp.groups[1].members.retain(|m| m != "s-pat");
        assert!(diff(&idp.desired(), &actual, &opts()).is_empty());
    }

    #[test]
    fn missing_workspace_without_create() {
        let idp = Idp::default()
            .user("s1", "a@x.io", json!({}))
            .user("s2", "b@x.io", json!({}))
            .group("ws-Nope-role-member", &["s1", "s2"]);
        let mut actual = complete();
        actual.users = vec![user("u1", "a@x.io", OrgRole::Member)];
        let o = PlanOptions::new(&[], BTreeMap::new(), false, NOW);
        let plan = diff(&idp.desired(), &actual, &o);
        assert_eq!(kinds(&plan), vec!["invite"]);
        let OpKind::Invite { workspaces, .. } = &plan.ops[0].kind else {
            panic!()
        };
        assert!(workspaces.is_empty());
        assert!(plan
            .warnings
            .iter()
            .any(|w| w.contains("create_workspaces is false")));
        assert!(plan
            .warnings
            .iter()
            .any(|w| w.contains("leaves out workspaces")));
    }

    #[test]
    fn plan_serialises_with_summary() {
        let (mut idp, actual) = eng_world();
        idp = idp.user("s-new", "new@x.io", json!({}));
        idp.groups[1].members.push("s-new".into());
        idp.users[1].data["active"] = json!(false);
        let plan = diff(&idp.desired(), &actual, &opts());
        let v = serde_json::to_value(&plan).unwrap();
        assert_eq!(v["ops"][0]["op"], "invite");
        assert_eq!(v["ops"][0]["email"], "new@x.io");
        assert_eq!(v["ops"][0]["role"], "member");
        assert_eq!(
            v["ops"][0]["workspaces"],
            json!([{"workspace": "Eng", "workspace_id": "w-eng", "role": "member"}])
        );
        assert_eq!(v["ops"][1]["op"], "remove_user");
        assert_eq!(v["ops"][1]["reason"], "deactivated in the IdP");
        let back: Op = serde_json::from_value(v["ops"][1].clone()).unwrap();
        assert_eq!(back, plan.ops[1]);
        let s = plan.summary();
        assert_eq!(s["invite"], 1);
        assert_eq!(s["remove_user"], 1);
        assert_eq!(s["destructive"], 1);
        assert_eq!(s["total"], 2);
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp("2023-12-12 13:56:32"),
            Some(datetime!(2023-12-12 13:56:32 UTC))
        );
        assert!(parse_timestamp("2026-05-27T05:36:01.987Z").is_some());
        assert!(parse_timestamp("2026-05-27 05:36:01.5").is_some());
        assert_eq!(parse_timestamp("tomorrow"), None);
    }
}
