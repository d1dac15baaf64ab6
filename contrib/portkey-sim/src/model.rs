//! The simulated control plane: users, invites, workspaces and members, with the
//! Admin API operations on them. No HTTP here; the server maps `ApiError` to envelopes.

use std::collections::{HashMap, HashSet};

use rand::Rng;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::query::{Page, Query};
use crate::{Quirks, Seed, SeedInviteWorkspace};

/// Invites expire after this long. A guess: the real lifetime is not documented.
pub(crate) const INVITE_TTL: Duration = Duration::days(7);

pub(crate) use crate::error::ApiError;

type ApiResult = Result<Value, ApiError>;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

fn missing(what: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("{what} '{id}' not found"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrgRole {
    Owner,
    Admin,
    Member,
}

impl OrgRole {
    /// Case-sensitive on purpose: whether the Admin API accepts `Admin` is not documented,
    /// and a strict simulator catches clients that send it.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Self::Owner),
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// Owners and admins are implicitly admin in every workspace.
    fn elevated(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WsRole {
    Admin,
    Manager,
    Member,
}

impl WsRole {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "manager" => Some(Self::Manager),
            "member" => Some(Self::Member),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Member => "member",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InviteStatus {
    Pending,
    Cancelled,
    Accepted,
    Expired,
}

impl InviteStatus {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "cancelled" => Some(Self::Cancelled),
            "accepted" => Some(Self::Accepted),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Cancelled => "cancelled",
            Self::Accepted => "accepted",
            Self::Expired => "expired",
        }
    }
}

pub(crate) fn ts(t: OffsetDateTime) -> String {
    // RFC 3339 fails only for years outside 0..=9999 or offsets with seconds; the simulator's
    // clocks are "now" plus days, so the fallback is the Unix timestamp rather than "".
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Milliseconds only, like the timestamps in the reference's newest examples.
pub(crate) fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t)
}

fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Whether a stored email passes an `email=` list filter. Candidates come from the
/// case-insensitive index, so by default they all match; with the
/// `email_filter_case_sensitive` quirk the stored spelling must equal the filter exactly.
fn email_filter_matches(stored: &str, filter: &str, case_sensitive: bool) -> bool {
    !case_sensitive || stored == filter
}

fn valid_email(email: &str) -> bool {
    let e = email.trim();
    matches!(e.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@'))
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    id: Uuid,
    email: String,
    first_name: Option<String>,
    last_name: Option<String>,
    role: OrgRole,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
struct InviteWorkspace {
    ws_id: Uuid,
    slug: String,
    role: WsRole,
}

#[derive(Debug, Clone)]
pub(crate) struct Invite {
    id: Uuid,
    email: String,
    role: OrgRole,
    workspaces: Vec<InviteWorkspace>,
    /// Never `Expired`: expiry is computed from `expires_at`.
    status: InviteStatus,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    accepted_at: Option<OffsetDateTime>,
}

impl Invite {
    fn status_at(&self, now: OffsetDateTime) -> InviteStatus {
        if self.status == InviteStatus::Pending && now >= self.expires_at {
            InviteStatus::Expired
        } else {
            self.status
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    role: WsRole,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
struct Workspace {
    id: Uuid,
    slug: String,
    name: String,
    description: Option<String>,
    defaults: Value,
    usage_limits: Value,
    rate_limits: Value,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    members: HashMap<Uuid, Member>,
    /// Insertion order of `members`, so pages are stable and O(page) to cut.
    member_order: Vec<Uuid>,
}

fn remove_from(order: &mut Vec<Uuid>, id: &Uuid) {
    if let Some(pos) = order.iter().position(|x| x == id) {
        order.remove(pos);
    }
}

fn list_envelope(total: usize, data: Vec<Value>) -> Value {
    json!({"object": "list", "total": total, "data": data})
}

/// The whole simulated organisation. Every map has an insertion-order vector beside it:
/// unfiltered pages are slices, lookups are hash hits.
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    users: HashMap<Uuid, User>,
    user_order: Vec<Uuid>,
    user_by_email: HashMap<String, Uuid>,
    /// Explicit workspace memberships per user.
    user_ws: HashMap<Uuid, HashSet<Uuid>>,
    /// Owners and admins, in the order they became one.
    elevated: Vec<Uuid>,
    invites: HashMap<Uuid, Invite>,
    invite_order: Vec<Uuid>,
    invites_by_email: HashMap<String, Vec<Uuid>>,
    workspaces: HashMap<Uuid, Workspace>,
    ws_order: Vec<Uuid>,
    ws_by_slug: HashMap<String, Uuid>,
    /// Stands for the admin API key's owner in `invited_by`.
    inviter: Uuid,
}

fn body_obj(body: &Value) -> Result<&serde_json::Map<String, Value>, ApiError> {
    body.as_object()
        .ok_or_else(|| bad("request body must be a JSON object"))
}

fn opt_str<'a>(
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("'{key}' must be a string"))),
    }
}

fn req_str<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    opt_str(obj, key)?.ok_or_else(|| bad(format!("'{key}' is required")))
}

fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "workspace".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Which invites a control request targets; neither list means "all pending".
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct InviteSelector {
    pub(crate) ids: Option<Vec<String>>,
    pub(crate) emails: Option<Vec<String>>,
}

impl State {
    pub(crate) fn new() -> Self {
        State {
            inviter: Uuid::new_v4(),
            ..Default::default()
        }
    }

    // ----- lookups -----

    fn user_by_path(&self, id: &str) -> Result<&User, ApiError> {
        Uuid::parse_str(id)
            .ok()
            .and_then(|u| self.users.get(&u))
            .ok_or_else(|| missing("user", id))
    }

    fn ws_id(&self, id_or_slug: &str) -> Option<Uuid> {
        match Uuid::parse_str(id_or_slug) {
            Ok(u) if self.workspaces.contains_key(&u) => Some(u),
            _ => self.ws_by_slug.get(id_or_slug).copied(),
        }
    }

    fn ws_by_path(&self, id: &str) -> Result<Uuid, ApiError> {
        self.ws_id(id).ok_or_else(|| missing("workspace", id))
    }

    fn invite_by_path(&self, id: &str) -> Result<Uuid, ApiError> {
        Uuid::parse_str(id)
            .ok()
            .filter(|u| self.invites.contains_key(u))
            .ok_or_else(|| missing("invite", id))
    }

    fn pending_invite_for(&self, email: &str, now: OffsetDateTime) -> Option<Uuid> {
        self.invites_by_email
            .get(&email_key(email))?
            .iter()
            .copied()
            .find(|id| {
                self.invites
                    .get(id)
                    .is_some_and(|i| i.status_at(now) == InviteStatus::Pending)
            })
    }

    // ----- JSON views -----

    /// A `User`. `with_workspace_ids` is false only for list rows under the
    /// `lists_omit_workspace_ids` quirk.
    fn user_json(&self, u: &User, with_workspace_ids: bool) -> Value {
        let mut v = json!({
            "object": "user",
            "id": u.id,
            "first_name": u.first_name,
            "last_name": u.last_name,
            "role": u.role.as_str(),
            "email": u.email,
            "created_at": ts(u.created_at),
            "last_updated_at": ts(u.updated_at),
        });
        if with_workspace_ids {
            if let Some(o) = v.as_object_mut() {
                o.insert("workspace_ids".into(), json!(self.workspace_ids(u)));
            }
        }
        v
    }

    fn workspace_ids(&self, u: &User) -> Vec<&str> {
        if u.role.elevated() {
            // CL v1.21.0: user details list every workspace for owners and admins.
            self.ws_order
                .iter()
                .filter_map(|w| self.workspaces.get(w))
                .map(|w| w.slug.as_str())
                .collect()
        } else {
            let mut v: Vec<&str> = self
                .user_ws
                .get(&u.id)
                .into_iter()
                .flatten()
                .filter_map(|w| self.workspaces.get(w))
                .map(|w| w.slug.as_str())
                .collect();
            v.sort_unstable();
            v
        }
    }

    fn invite_json(&self, i: &Invite, now: OffsetDateTime) -> Value {
        let workspaces: Vec<Value> = i
            .workspaces
            .iter()
            .map(|w| json!({"id": w.slug, "workspace_id": w.ws_id, "role": w.role.as_str()}))
            .collect();
        json!({
            "object": "invite",
            "id": i.id,
            "email": i.email,
            "role": i.role.as_str(),
            "status": i.status_at(now).as_str(),
            "created_at": ts(i.created_at),
            "expires_at": ts(i.expires_at),
            "accepted_at": i.accepted_at.map(ts),
            "invited_by": self.inviter,
            "workspaces": workspaces,
        })
    }

    fn ws_json(&self, w: &Workspace) -> Value {
        json!({
            "object": "workspace",
            "id": w.id,
            "slug": w.slug,
            "name": w.name,
            "description": w.description,
            "created_at": ts(w.created_at),
            "last_updated_at": ts(w.updated_at),
            "defaults": w.defaults,
            "is_default": false,
            "usage_limits": w.usage_limits,
            "rate_limits": w.rate_limits,
        })
    }

    /// A member row; `m` is `None` for an owner/admin who is only implicitly a member.
    fn member_json(&self, w: &Workspace, u: &User, m: Option<&Member>) -> Value {
        let role = if u.role.elevated() {
            WsRole::Admin
        } else {
            m.map_or(WsRole::Member, |m| m.role)
        };
        json!({
            "object": "workspace-user",
            "id": u.id,
            "first_name": u.first_name,
            "last_name": u.last_name,
            "email": u.email,
            "org_role": u.role.as_str(),
            "role": role.as_str(),
            "status": "active",
            "workspace_id": w.id,
            "created_at": ts(m.map_or(u.created_at, |m| m.created_at)),
            "last_updated_at": ts(m.map_or(u.updated_at, |m| m.updated_at)),
            "scopes": [],
            "settings": null,
        })
    }

    // ----- users -----

    pub(crate) fn list_users(&self, q: &Query, max: usize, quirks: &Quirks) -> ApiResult {
        let page = Page::from_query(q, max)?;
        let with_ws = !quirks.lists_omit_workspace_ids;
        let email = q.filter("email");
        let role = match q.filter("role") {
            None => None,
            Some(r) => Some(OrgRole::parse(r).ok_or_else(|| bad(format!("invalid role '{r}'")))?),
        };
        let ids: Vec<Uuid> = match email {
            Some(e) => self
                .user_by_email
                .get(&email_key(e))
                .copied()
                .into_iter()
                .collect(),
            None => match role {
                None => {
                    let (s, e) = page.bounds(self.user_order.len());
                    let data = self.user_order[s..e]
                        .iter()
                        .filter_map(|id| self.users.get(id))
                        .map(|u| self.user_json(u, with_ws))
                        .collect();
                    return Ok(list_envelope(self.user_order.len(), data));
                }
                Some(_) => self.user_order.clone(),
            },
        };
        let matching: Vec<&User> = ids
            .iter()
            .filter_map(|id| self.users.get(id))
            .filter(|u| role.is_none_or(|r| u.role == r))
            .filter(|u| {
                email.is_none_or(|e| {
                    email_filter_matches(&u.email, e, quirks.email_filter_case_sensitive)
                })
            })
            .collect();
        let (s, e) = page.bounds(matching.len());
        let data = matching[s..e]
            .iter()
            .map(|u| self.user_json(u, with_ws))
            .collect();
        Ok(list_envelope(matching.len(), data))
    }

    pub(crate) fn get_user(&self, id: &str) -> ApiResult {
        Ok(self.user_json(self.user_by_path(id)?, true))
    }

    pub(crate) fn update_user(&mut self, id: &str, body: &Value) -> ApiResult {
        let obj = body_obj(body)?;
        let role_s = req_str(obj, "role")?;
        let uid = self.user_by_path(id)?.id;
        let role = match OrgRole::parse(role_s) {
            Some(OrgRole::Owner) => return Err(bad("role 'owner' cannot be set")),
            Some(r) => r,
            None => return Err(bad(format!("invalid role '{role_s}'"))),
        };
        let current = self.users.get(&uid).map(|u| u.role);
        if current == Some(role) {
            // Documented (TF Known Issues): updating to the same role is rejected.
            return Err(bad(format!("user already has role '{role_s}'")));
        }
        if current == Some(OrgRole::Owner) && self.count_owners() <= 1 {
            return Err(bad("the last owner cannot be demoted"));
        }
        self.set_role(uid, role, now());
        Ok(json!({}))
    }

    fn count_owners(&self) -> usize {
        self.elevated
            .iter()
            .filter(|id| self.users.get(id).is_some_and(|u| u.role == OrgRole::Owner))
            .count()
    }

    fn set_role(&mut self, uid: Uuid, role: OrgRole, at: OffsetDateTime) {
        let Some(u) = self.users.get_mut(&uid) else {
            return;
        };
        let was = u.role.elevated();
        u.role = role;
        u.updated_at = at;
        match (was, role.elevated()) {
            (false, true) => self.elevated.push(uid),
            (true, false) => remove_from(&mut self.elevated, &uid),
            _ => {}
        }
    }

    pub(crate) fn delete_user(&mut self, id: &str) -> ApiResult {
        let uid = self.user_by_path(id)?.id;
        if self
            .users
            .get(&uid)
            .is_some_and(|u| u.role == OrgRole::Owner)
            && self.count_owners() <= 1
        {
            return Err(bad("the last owner cannot be removed"));
        }
        // A guess (open question 1): hard delete, and the memberships go with the user.
        if let Some(u) = self.users.remove(&uid) {
            self.user_by_email.remove(&email_key(&u.email));
        }
        remove_from(&mut self.user_order, &uid);
        remove_from(&mut self.elevated, &uid);
        for ws_id in self.user_ws.remove(&uid).unwrap_or_default() {
            if let Some(w) = self.workspaces.get_mut(&ws_id) {
                w.members.remove(&uid);
                remove_from(&mut w.member_order, &uid);
            }
        }
        Ok(json!({}))
    }

    pub(crate) fn create_user(
        &mut self,
        email: &str,
        role: OrgRole,
        first_name: Option<String>,
        last_name: Option<String>,
        at: OffsetDateTime,
    ) -> Result<Uuid, ApiError> {
        let key = email_key(email);
        if !valid_email(email) {
            return Err(bad(format!("invalid email '{email}'")));
        }
        if self.user_by_email.contains_key(&key) {
            return Err(ApiError::Conflict(format!("user '{email}' already exists")));
        }
        let id = Uuid::new_v4();
        self.users.insert(
            id,
            User {
                id,
                email: email.trim().to_string(),
                first_name,
                last_name,
                role,
                created_at: at,
                updated_at: at,
            },
        );
        self.user_order.push(id);
        self.user_by_email.insert(key, id);
        if role.elevated() {
            self.elevated.push(id);
        }
        Ok(id)
    }

    pub(crate) fn user_json_by_id(&self, id: Uuid) -> Value {
        self.users
            .get(&id)
            .map_or(Value::Null, |u| self.user_json(u, true))
    }

    // ----- invites -----

    pub(crate) fn list_invites(&self, q: &Query, max: usize, quirks: &Quirks) -> ApiResult {
        let page = Page::from_query(q, max)?;
        let now = now();
        let role = match q.filter("role") {
            None => None,
            Some(r) => match OrgRole::parse(r) {
                Some(OrgRole::Owner) | None => return Err(bad(format!("invalid role '{r}'"))),
                some => some,
            },
        };
        let status = match q.filter("status") {
            None => None,
            Some(s) => {
                Some(InviteStatus::parse(s).ok_or_else(|| bad(format!("invalid status '{s}'")))?)
            }
        };
        let email = q.filter("email");
        let candidates: &[Uuid] = match email {
            Some(e) => self
                .invites_by_email
                .get(&email_key(e))
                .map_or(&[], Vec::as_slice),
            None => &self.invite_order,
        };
        if role.is_none() && status.is_none() && email.is_none() {
            let (s, e) = page.bounds(candidates.len());
            let data = candidates[s..e]
                .iter()
                .filter_map(|id| self.invites.get(id))
                .map(|i| self.invite_json(i, now))
                .collect();
            return Ok(list_envelope(candidates.len(), data));
        }
        let matching: Vec<&Invite> = candidates
            .iter()
            .filter_map(|id| self.invites.get(id))
            .filter(|i| role.is_none_or(|r| i.role == r))
            .filter(|i| status.is_none_or(|s| i.status_at(now) == s))
            .filter(|i| {
                email.is_none_or(|e| {
                    email_filter_matches(&i.email, e, quirks.email_filter_case_sensitive)
                })
            })
            .collect();
        let (s, e) = page.bounds(matching.len());
        let data = matching[s..e]
            .iter()
            .map(|i| self.invite_json(i, now))
            .collect();
        Ok(list_envelope(matching.len(), data))
    }

    pub(crate) fn get_invite(&self, id: &str) -> ApiResult {
        let iid = self.invite_by_path(id)?;
        let i = self
            .invites
            .get(&iid)
            .ok_or_else(|| missing("invite", id))?;
        Ok(self.invite_json(i, now()))
    }

    fn parse_invite_workspaces(&self, v: &Value) -> Result<Vec<InviteWorkspace>, ApiError> {
        let arr = v
            .as_array()
            .ok_or_else(|| bad("'workspaces' must be an array"))?;
        let mut out: Vec<InviteWorkspace> = Vec::with_capacity(arr.len());
        for item in arr {
            let obj = item
                .as_object()
                .ok_or_else(|| bad("'workspaces' items must be objects"))?;
            let id = req_str(obj, "id")?;
            let role_s = req_str(obj, "role")?;
            let role = WsRole::parse(role_s)
                .ok_or_else(|| bad(format!("invalid workspace role '{role_s}'")))?;
            let ws_id = self.ws_by_path(id)?;
            let slug = self
                .workspaces
                .get(&ws_id)
                .map(|w| w.slug.clone())
                .unwrap_or_default();
            out.retain(|w| w.ws_id != ws_id);
            out.push(InviteWorkspace { ws_id, slug, role });
        }
        Ok(out)
    }

    /// Returns the response and the new invite's id.
    pub(crate) fn create_invite(&mut self, body: &Value) -> Result<(Value, Uuid), ApiError> {
        let obj = body_obj(body)?;
        let email = req_str(obj, "email")?;
        if !valid_email(email) {
            return Err(bad(format!("invalid email '{email}'")));
        }
        let role_s = req_str(obj, "role")?;
        let role = match OrgRole::parse(role_s) {
            Some(OrgRole::Owner) | None => {
                return Err(bad(format!("invalid invite role '{role_s}'")))
            }
            Some(r) => r,
        };
        // SPEC marks `workspaces` required; an empty array is accepted (a guess).
        let workspaces = match obj.get("workspaces") {
            None | Some(Value::Null) => return Err(bad("'workspaces' is required")),
            Some(v) => self.parse_invite_workspaces(v)?,
        };
        let now = now();
        if self.user_by_email.contains_key(&email_key(email)) {
            return Err(ApiError::Conflict(format!(
                "'{email}' is already a member of the organisation"
            )));
        }
        if self.pending_invite_for(email, now).is_some() {
            return Err(ApiError::Conflict(format!(
                "a pending invite for '{email}' already exists"
            )));
        }
        let id = self.insert_invite(
            email,
            role,
            workspaces,
            InviteStatus::Pending,
            now,
            now + INVITE_TTL,
        );
        Ok((json!({"id": id, "invite_link": invite_link()}), id))
    }

    fn insert_invite(
        &mut self,
        email: &str,
        role: OrgRole,
        workspaces: Vec<InviteWorkspace>,
        status: InviteStatus,
        created_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Uuid {
        let id = Uuid::new_v4();
        self.invites.insert(
            id,
            Invite {
                id,
                email: email.trim().to_string(),
                role,
                workspaces,
                status,
                created_at,
                expires_at,
                accepted_at: (status == InviteStatus::Accepted).then_some(created_at),
            },
        );
        self.invite_order.push(id);
        self.invites_by_email
            .entry(email_key(email))
            .or_default()
            .push(id);
        id
    }

    pub(crate) fn delete_invite(&mut self, id: &str) -> ApiResult {
        let iid = self.invite_by_path(id)?;
        let now = now();
        let Some(inv) = self.invites.get_mut(&iid) else {
            return Err(missing("invite", id));
        };
        // A guess (open question 5): revoking keeps the row as `cancelled`. Only
        // pending or expired invites can be revoked; anything else is already gone.
        match inv.status_at(now) {
            InviteStatus::Pending | InviteStatus::Expired => {
                inv.status = InviteStatus::Cancelled;
                Ok(json!({}))
            }
            InviteStatus::Cancelled | InviteStatus::Accepted => Err(missing("invite", id)),
        }
    }

    pub(crate) fn resend_invite(&mut self, id: &str) -> ApiResult {
        let iid = self.invite_by_path(id)?;
        let now = now();
        let Some(inv) = self.invites.get_mut(&iid) else {
            return Err(missing("invite", id));
        };
        // A guess (open question 5): resend keeps the id and restarts the expiry clock.
        match inv.status_at(now) {
            InviteStatus::Pending | InviteStatus::Expired => {
                inv.expires_at = now + INVITE_TTL;
                Ok(json!({"inviteLink": invite_link()}))
            }
            s => Err(bad(format!("invite is {}", s.as_str()))),
        }
    }

    /// Turns a pending invite into a user with the invite's org role and workspaces.
    /// Returns the user id, or `None` when the invite is not pending.
    pub(crate) fn accept_invite(&mut self, iid: Uuid, at: OffsetDateTime) -> Option<Uuid> {
        let inv = self.invites.get(&iid)?;
        if inv.status_at(at) != InviteStatus::Pending {
            return None;
        }
        let (email, role, workspaces) = (inv.email.clone(), inv.role, inv.workspaces.clone());
        let uid = match self.user_by_email.get(&email_key(&email)) {
            Some(u) => *u,
            None => self.create_user(&email, role, None, None, at).ok()?,
        };
        for w in workspaces {
            self.add_member(w.ws_id, uid, w.role, at);
        }
        if let Some(inv) = self.invites.get_mut(&iid) {
            inv.status = InviteStatus::Accepted;
            inv.accepted_at = Some(at);
        }
        Some(uid)
    }

    fn selected_invites(&self, sel: &InviteSelector, now: OffsetDateTime) -> Vec<Uuid> {
        let ids: Option<HashSet<&str>> = sel
            .ids
            .as_ref()
            .map(|v| v.iter().map(String::as_str).collect());
        let emails: Option<HashSet<String>> = sel
            .emails
            .as_ref()
            .map(|v| v.iter().map(|e| email_key(e)).collect());
        self.invite_order
            .iter()
            .filter_map(|id| self.invites.get(id))
            .filter(|i| i.status_at(now) == InviteStatus::Pending)
            .filter(|i| {
                ids.as_ref()
                    .is_none_or(|s| s.contains(i.id.to_string().as_str()))
            })
            .filter(|i| {
                emails
                    .as_ref()
                    .is_none_or(|s| s.contains(&email_key(&i.email)))
            })
            .map(|i| i.id)
            .collect()
    }

    pub(crate) fn accept_selected(&mut self, sel: &InviteSelector) -> Value {
        let now = now();
        let mut accepted = Vec::new();
        for iid in self.selected_invites(sel, now) {
            if let Some(uid) = self.accept_invite(iid, now) {
                let email = self.invites.get(&iid).map(|i| i.email.clone());
                accepted.push(json!({"invite_id": iid, "user_id": uid, "email": email}));
            }
        }
        json!({"accepted": accepted})
    }

    pub(crate) fn expire_selected(&mut self, sel: &InviteSelector) -> Value {
        let now = now();
        let ids = self.selected_invites(sel, now);
        for iid in &ids {
            if let Some(i) = self.invites.get_mut(iid) {
                i.expires_at = now - Duration::seconds(1);
            }
        }
        json!({"expired": ids})
    }

    // ----- workspaces -----

    pub(crate) fn list_workspaces(&self, q: &Query, max: usize) -> ApiResult {
        let page = Page::from_query(q, max)?;
        let mut active = true;
        if let Some(st) = q.filter("status") {
            let mut any_active = false;
            for s in st.split(',').map(str::trim) {
                match s {
                    "active" => any_active = true,
                    "archived" => {}
                    other => return Err(bad(format!("invalid status '{other}'"))),
                }
            }
            // Nothing is ever archived here.
            active = any_active;
        }
        let name = q.filter("name");
        let exact = q.filter("exact_name");
        if active && name.is_none() && exact.is_none() {
            let (s, e) = page.bounds(self.ws_order.len());
            let data = self.ws_order[s..e]
                .iter()
                .filter_map(|id| self.workspaces.get(id))
                .map(|w| self.ws_json(w))
                .collect();
            return Ok(list_envelope(self.ws_order.len(), data));
        }
        let matching: Vec<&Workspace> = if active {
            self.ws_order
                .iter()
                .filter_map(|id| self.workspaces.get(id))
                // A guess: `name` is a case-sensitive substring match ("case sensitive" filter).
                .filter(|w| name.is_none_or(|n| w.name.contains(n)))
                .filter(|w| exact.is_none_or(|n| w.name == n))
                .collect()
        } else {
            Vec::new()
        };
        let (s, e) = page.bounds(matching.len());
        let data = matching[s..e].iter().map(|w| self.ws_json(w)).collect();
        Ok(list_envelope(matching.len(), data))
    }

    pub(crate) fn get_workspace(&self, id: &str) -> ApiResult {
        let wid = self.ws_by_path(id)?;
        let rows = self.member_rows(wid, None, None, false);
        let Some(w) = self.workspaces.get(&wid) else {
            return Err(missing("workspace", id));
        };
        let mut v = self.ws_json(w);
        let users: Vec<Value> = rows
            .iter()
            .filter_map(|(uid, explicit)| {
                let u = self.users.get(uid)?;
                Some(self.member_json(w, u, explicit.then(|| w.members.get(uid)).flatten()))
            })
            .collect();
        if let Some(o) = v.as_object_mut() {
            o.insert("users".into(), Value::Array(users));
        }
        Ok(v)
    }

    fn new_slug(&self, name: &str, random_suffix: bool) -> String {
        let base = format!("ws-{}", slugify(name));
        if !random_suffix && !self.ws_by_slug.contains_key(&base) {
            return base;
        }
        let mut rng = rand::thread_rng();
        loop {
            let slug = format!("{base}-{:06x}", rng.gen::<u32>() & 0xff_ffff);
            if !self.ws_by_slug.contains_key(&slug) {
                return slug;
            }
        }
    }

    fn insert_workspace(&mut self, name: &str, slug: String, at: OffsetDateTime) -> Uuid {
        let id = Uuid::new_v4();
        self.ws_by_slug.insert(slug.clone(), id);
        self.workspaces.insert(
            id,
            Workspace {
                id,
                slug,
                name: name.to_string(),
                description: None,
                defaults: Value::Null,
                usage_limits: json!([]),
                rate_limits: json!([]),
                created_at: at,
                updated_at: at,
                members: HashMap::new(),
                member_order: Vec::new(),
            },
        );
        self.ws_order.push(id);
        id
    }

    pub(crate) fn create_workspace(&mut self, body: &Value) -> ApiResult {
        let obj = body_obj(body)?;
        let name = req_str(obj, "name")?;
        if name.trim().is_empty() {
            return Err(bad("'name' must not be empty"));
        }
        // A guess: duplicate names are allowed (each gets its own slug), so a client that
        // retries a create blindly ends up with two workspaces, as it might for real.
        let slug = self.new_slug(name, true);
        let id = self.insert_workspace(name, slug, now());
        self.apply_ws_fields(id, obj)?;
        let w = self
            .workspaces
            .get(&id)
            .ok_or_else(|| missing("workspace", &id.to_string()))?;
        Ok(self.ws_json(w))
    }

    fn apply_ws_fields(
        &mut self,
        id: Uuid,
        obj: &serde_json::Map<String, Value>,
    ) -> Result<(), ApiError> {
        let description = opt_str(obj, "description")?.map(str::to_string);
        let name = opt_str(obj, "name")?.map(str::to_string);
        let Some(w) = self.workspaces.get_mut(&id) else {
            return Ok(());
        };
        if let Some(n) = name {
            w.name = n;
        }
        if description.is_some() {
            w.description = description;
        }
        if let Some(d) = obj.get("defaults") {
            w.defaults = d.clone();
        }
        for (key, slot) in [
            ("usage_limits", &mut w.usage_limits),
            ("rate_limits", &mut w.rate_limits),
        ] {
            match obj.get(key) {
                None | Some(Value::Null) => {}
                Some(v @ Value::Array(_)) => *slot = v.clone(),
                Some(_) => return Err(bad(format!("'{key}' must be an array"))),
            }
        }
        Ok(())
    }

    pub(crate) fn update_workspace(&mut self, id: &str, body: &Value) -> ApiResult {
        let wid = self.ws_by_path(id)?;
        let obj = body_obj(body)?;
        if let Some(n) = opt_str(obj, "name")? {
            if n.trim().is_empty() {
                return Err(bad("'name' must not be empty"));
            }
        }
        self.apply_ws_fields(wid, obj)?;
        if let Some(w) = self.workspaces.get_mut(&wid) {
            w.updated_at = now();
        }
        Ok(json!({}))
    }

    pub(crate) fn delete_workspace(&mut self, id: &str) -> ApiResult {
        let wid = self.ws_by_path(id)?;
        if let Some(w) = self.workspaces.remove(&wid) {
            self.ws_by_slug.remove(&w.slug);
            for uid in w.member_order {
                if let Some(set) = self.user_ws.get_mut(&uid) {
                    set.remove(&wid);
                }
            }
        }
        remove_from(&mut self.ws_order, &wid);
        Ok(json!({}))
    }

    // ----- members -----

    /// Member rows in list order: explicit members first, then owners/admins who are only
    /// implicitly members. `true` marks an explicit row.
    /// `email_exact` is the `email_filter_case_sensitive` quirk.
    fn member_rows(
        &self,
        wid: Uuid,
        role: Option<WsRole>,
        email: Option<&str>,
        email_exact: bool,
    ) -> Vec<(Uuid, bool)> {
        let Some(w) = self.workspaces.get(&wid) else {
            return Vec::new();
        };
        if let Some(e) = email {
            let Some(uid) = self.user_by_email.get(&email_key(e)).copied() else {
                return Vec::new();
            };
            let Some(u) = self.users.get(&uid) else {
                return Vec::new();
            };
            if !email_filter_matches(&u.email, e, email_exact) {
                return Vec::new();
            }
            let explicit = w.members.get(&uid);
            if explicit.is_none() && !u.role.elevated() {
                return Vec::new();
            }
            let eff = if u.role.elevated() {
                WsRole::Admin
            } else {
                explicit.map_or(WsRole::Member, |m| m.role)
            };
            if role.is_some_and(|r| r != eff) {
                return Vec::new();
            }
            return vec![(uid, explicit.is_some())];
        }
        let explicit = w.member_order.iter().filter(|uid| match role {
            None => true,
            Some(r) => {
                let eff = match self.users.get(uid) {
                    Some(u) if u.role.elevated() => WsRole::Admin,
                    _ => w.members.get(uid).map_or(WsRole::Member, |m| m.role),
                };
                eff == r
            }
        });
        let implicit = self
            .elevated
            .iter()
            .filter(|uid| !w.members.contains_key(uid))
            .filter(|_| role.is_none_or(|r| r == WsRole::Admin));
        explicit
            .map(|u| (*u, true))
            .chain(implicit.map(|u| (*u, false)))
            .collect()
    }

    pub(crate) fn list_members(
        &self,
        ws: &str,
        q: &Query,
        max: usize,
        quirks: &Quirks,
    ) -> ApiResult {
        let wid = self.ws_by_path(ws)?;
        let page = Page::from_query(q, max)?;
        let role = match q.filter("role") {
            None => None,
            Some(r) => Some(WsRole::parse(r).ok_or_else(|| bad(format!("invalid role '{r}'")))?),
        };
        let Some(w) = self.workspaces.get(&wid) else {
            return Err(missing("workspace", ws));
        };
        let rows: Vec<(Uuid, bool)> = if role.is_none() && q.filter("email").is_none() {
            // Cut the page without materialising every row: 50k-member workspaces are a
            // target, and clients page through them 100 at a time.
            let n1 = w.member_order.len();
            let implicit: Vec<Uuid> = self
                .elevated
                .iter()
                .filter(|uid| !w.members.contains_key(uid))
                .copied()
                .collect();
            let total = n1 + implicit.len();
            let (s, e) = page.bounds(total);
            let mut rows = Vec::with_capacity(e - s);
            for i in s..e {
                if i < n1 {
                    rows.push((w.member_order[i], true));
                } else if let Some(u) = implicit.get(i - n1) {
                    rows.push((*u, false));
                }
            }
            let data = self.rows_json(w, &rows);
            return Ok(list_envelope(total, data));
        } else {
            self.member_rows(
                wid,
                role,
                q.filter("email"),
                quirks.email_filter_case_sensitive,
            )
        };
        let (s, e) = page.bounds(rows.len());
        let data = self.rows_json(w, &rows[s..e]);
        Ok(list_envelope(rows.len(), data))
    }

    fn rows_json(&self, w: &Workspace, rows: &[(Uuid, bool)]) -> Vec<Value> {
        rows.iter()
            .filter_map(|(uid, explicit)| {
                let u = self.users.get(uid)?;
                let m = if *explicit { w.members.get(uid) } else { None };
                Some(self.member_json(w, u, m))
            })
            .collect()
    }

    pub(crate) fn get_member(&self, ws: &str, user: &str) -> ApiResult {
        let wid = self.ws_by_path(ws)?;
        let u = self
            .user_by_path(user)
            .map_err(|_| missing("member", user))?;
        let w = self
            .workspaces
            .get(&wid)
            .ok_or_else(|| missing("workspace", ws))?;
        let m = w.members.get(&u.id);
        if m.is_none() && !u.role.elevated() {
            return Err(missing("member", user));
        }
        Ok(self.member_json(w, u, m))
    }

    /// Adds or keeps a membership. Owners and admins are stored as admin whatever was
    /// asked (observed by TF). Returns whether a row was added.
    fn add_member(&mut self, wid: Uuid, uid: Uuid, role: WsRole, at: OffsetDateTime) -> bool {
        let elevated = self.users.get(&uid).is_some_and(|u| u.role.elevated());
        let Some(w) = self.workspaces.get_mut(&wid) else {
            return false;
        };
        if w.members.contains_key(&uid) {
            return false;
        }
        let role = if elevated { WsRole::Admin } else { role };
        w.members.insert(
            uid,
            Member {
                role,
                created_at: at,
                updated_at: at,
            },
        );
        w.member_order.push(uid);
        self.user_ws.entry(uid).or_default().insert(wid);
        true
    }

    pub(crate) fn add_members(&mut self, ws: &str, body: &Value) -> ApiResult {
        let wid = self.ws_by_path(ws)?;
        let obj = body_obj(body)?;
        let arr = match obj.get("users") {
            Some(Value::Array(a)) => a,
            None | Some(Value::Null) => return Err(bad("'users' is required")),
            Some(_) => return Err(bad("'users' must be an array")),
        };
        // All or nothing (a guess, open question 4): validate every item before applying.
        let mut adds = Vec::with_capacity(arr.len());
        for item in arr {
            let o = item
                .as_object()
                .ok_or_else(|| bad("'users' items must be objects"))?;
            let id = req_str(o, "id")?;
            let role_s = req_str(o, "role")?;
            let role =
                WsRole::parse(role_s).ok_or_else(|| bad(format!("invalid role '{role_s}'")))?;
            // Pending invitees have no user id, so they land here too.
            let uid = self.user_by_path(id)?.id;
            adds.push((uid, role));
        }
        let at = now();
        for (uid, role) in adds {
            // A guess (open question 4): an existing member is left as is.
            self.add_member(wid, uid, role, at);
        }
        Ok(json!({}))
    }

    pub(crate) fn update_member(&mut self, ws: &str, user: &str, body: &Value) -> ApiResult {
        let wid = self.ws_by_path(ws)?;
        let obj = body_obj(body)?;
        let role_s = req_str(obj, "role")?;
        let role = WsRole::parse(role_s).ok_or_else(|| bad(format!("invalid role '{role_s}'")))?;
        let u = self
            .user_by_path(user)
            .map_err(|_| missing("member", user))?;
        let (uid, elevated) = (u.id, u.role.elevated());
        let Some(w) = self.workspaces.get_mut(&wid) else {
            return Err(missing("workspace", ws));
        };
        match w.members.get_mut(&uid) {
            // Owners and admins stay admin: the request succeeds and changes nothing,
            // which is what makes a naive reconciler loop forever.
            Some(_) if elevated => Ok(json!({})),
            Some(m) => {
                m.role = role;
                m.updated_at = now();
                Ok(json!({}))
            }
            None if elevated => Ok(json!({})),
            None => Err(missing("member", user)),
        }
    }

    pub(crate) fn remove_member(&mut self, ws: &str, user: &str) -> ApiResult {
        let wid = self.ws_by_path(ws)?;
        let uid = self
            .user_by_path(user)
            .map_err(|_| missing("member", user))?
            .id;
        let Some(w) = self.workspaces.get_mut(&wid) else {
            return Err(missing("workspace", ws));
        };
        // Owners and admins without an explicit row have nothing to remove (404), and
        // keep showing up as implicit admins after their explicit row is removed.
        if w.members.remove(&uid).is_none() {
            return Err(missing("member", user));
        }
        remove_from(&mut w.member_order, &uid);
        if let Some(set) = self.user_ws.get_mut(&uid) {
            set.remove(&wid);
        }
        Ok(json!({}))
    }

    // ----- control -----

    /// `/_sim/users`: someone joined by SSO or was added by hand. A pending invite for the
    /// same email is accepted, as SSO login does (CL v1.7.0), unless told otherwise.
    pub(crate) fn create_user_direct(&mut self, body: &Value) -> Result<Value, ApiError> {
        let obj = body_obj(body)?;
        let email = req_str(obj, "email")?;
        let role_s = req_str(obj, "role")?;
        let role = OrgRole::parse(role_s).ok_or_else(|| bad(format!("invalid role '{role_s}'")))?;
        let first = opt_str(obj, "first_name")?.map(str::to_string);
        let last = opt_str(obj, "last_name")?.map(str::to_string);
        let accept = obj
            .get("accept_pending_invite")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let workspaces = match obj.get("workspaces") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => self.parse_invite_workspaces(v)?,
        };
        let at = now();
        let uid = self.create_user(email, role, first, last, at)?;
        for w in workspaces {
            self.add_member(w.ws_id, uid, w.role, at);
        }
        if accept {
            if let Some(iid) = self.pending_invite_for(email, at) {
                self.accept_invite(iid, at);
            }
        }
        Ok(self.user_json_by_id(uid))
    }

    /// Loads a seed into this state; returns the ids of pending invites it created.
    pub(crate) fn load_seed(&mut self, seed: &Seed) -> Result<Vec<Uuid>, String> {
        let at = now();
        for u in &seed.users {
            let role = OrgRole::parse(&u.role)
                .ok_or_else(|| format!("user {}: invalid role '{}'", u.email, u.role))?;
            self.create_user(
                &u.email,
                role,
                u.first_name.clone(),
                u.last_name.clone(),
                at,
            )
            .map_err(|e| format!("user {}: {e:?}", u.email))?;
        }
        for w in &seed.workspaces {
            let slug = match &w.slug {
                Some(s) if self.ws_by_slug.contains_key(s) => {
                    return Err(format!("workspace slug '{s}' already exists"))
                }
                Some(s) => s.clone(),
                None => self.new_slug(&w.name, false),
            };
            let wid = self.insert_workspace(&w.name, slug, at);
            for m in &w.members {
                let role = WsRole::parse(&m.role)
                    .ok_or_else(|| format!("member {}: invalid role '{}'", m.email, m.role))?;
                let uid = self
                    .user_by_email
                    .get(&email_key(&m.email))
                    .copied()
                    .ok_or_else(|| format!("member {}: no such user", m.email))?;
                self.add_member(wid, uid, role, at);
            }
        }
        let mut pending = Vec::new();
        for i in &seed.invites {
            let role = match OrgRole::parse(&i.role) {
                Some(OrgRole::Owner) | None => {
                    return Err(format!("invite {}: invalid role '{}'", i.email, i.role))
                }
                Some(r) => r,
            };
            if !valid_email(&i.email) {
                return Err(format!("invite: invalid email '{}'", i.email));
            }
            let workspaces = i
                .workspaces
                .iter()
                .map(|w| self.seed_invite_ws(w))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("invite {}: {e}", i.email))?;
            let status = match i.status.as_deref() {
                None => InviteStatus::Pending,
                Some(s) => InviteStatus::parse(s)
                    .ok_or_else(|| format!("invite {}: invalid status '{s}'", i.email))?,
            };
            let mut expires_at = match &i.expires_at {
                None => at + INVITE_TTL,
                Some(s) => OffsetDateTime::parse(s, &Rfc3339)
                    .map_err(|e| format!("invite {}: expires_at: {e}", i.email))?,
            };
            let stored = if status == InviteStatus::Expired {
                if expires_at > at {
                    expires_at = at - Duration::seconds(1);
                }
                InviteStatus::Pending
            } else {
                status
            };
            let id = self.insert_invite(&i.email, role, workspaces, stored, at, expires_at);
            if status == InviteStatus::Pending && expires_at > at {
                pending.push(id);
            }
        }
        Ok(pending)
    }

    fn seed_invite_ws(&self, w: &SeedInviteWorkspace) -> Result<InviteWorkspace, String> {
        let role =
            WsRole::parse(&w.role).ok_or_else(|| format!("invalid workspace role '{}'", w.role))?;
        let ws_id = self
            .ws_id(&w.id)
            .or_else(|| {
                self.ws_order
                    .iter()
                    .copied()
                    .find(|id| self.workspaces.get(id).is_some_and(|x| x.name == w.id))
            })
            .ok_or_else(|| format!("no workspace '{}'", w.id))?;
        let slug = self
            .workspaces
            .get(&ws_id)
            .map(|x| x.slug.clone())
            .unwrap_or_default();
        Ok(InviteWorkspace { ws_id, slug, role })
    }

    /// Everything, for `/_sim/state`.
    pub(crate) fn snapshot(&self) -> Value {
        let now = now();
        let users: Vec<Value> = self
            .user_order
            .iter()
            .filter_map(|id| self.users.get(id))
            .map(|u| self.user_json(u, true))
            .collect();
        let invites: Vec<Value> = self
            .invite_order
            .iter()
            .filter_map(|id| self.invites.get(id))
            .map(|i| self.invite_json(i, now))
            .collect();
        let workspaces: Vec<Value> = self
            .ws_order
            .iter()
            .filter_map(|id| self.workspaces.get(id))
            .map(|w| {
                let members: Vec<Value> = self
                    .member_rows(w.id, None, None, false)
                    .into_iter()
                    .filter_map(|(uid, explicit)| {
                        let u = self.users.get(&uid)?;
                        let m = if explicit { w.members.get(&uid) } else { None };
                        Some(json!({
                            "user_id": uid,
                            "email": u.email,
                            "role": self.member_json(w, u, m)["role"],
                            "stored_role": m.map(|m| m.role.as_str()),
                            "implicit": !explicit,
                        }))
                    })
                    .collect();
                let mut v = self.ws_json(w);
                if let Some(o) = v.as_object_mut() {
                    o.insert("members".into(), Value::Array(members));
                }
                v
            })
            .collect();
        json!({"users": users, "invites": invites, "workspaces": workspaces})
    }
}

fn invite_link() -> String {
    format!("https://app.portkey.ai/invite/{}", Uuid::new_v4().simple())
}
