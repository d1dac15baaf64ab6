//! Wire types of the Admin API (spec §3). Responses ignore unknown fields, and every optional or
//! under-documented field defaults, because one odd record must not fail a whole list read (reads
//! are all or nothing). Timestamps stay strings: the API uses at least three formats (spec §1).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Role enums keep unknown values in `Other` instead of failing: the control plane has added roles
/// before (`manager`, spec §6.2) and a read must not break on the next one. Matching is
/// case-insensitive, and a `ws-`/`ws_` prefix is dropped where the caller allows it, because the
/// Terraform provider has seen member roles such as `ws-admin` (spec §2).
macro_rules! role_enum {
    ($(#[$meta:meta])* $name:ident, strip_ws_prefix = $strip:expr, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value this client does not know, kept as received (lower-cased).
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(s) => s,
                }
            }

            /// Lenient parse: case-insensitive, surrounding blanks ignored.
            pub fn parse(s: &str) -> Self {
                let lower = s.trim().to_ascii_lowercase();
                let bare = if $strip {
                    lower
                        .strip_prefix("ws-")
                        .or_else(|| lower.strip_prefix("ws_"))
                        .unwrap_or(&lower)
                } else {
                    &lower
                };
                match bare {
                    $($text => Self::$variant,)+
                    _ => Self::Other(lower.clone()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok(Self::parse(&s))
            }
        }
    };
}

role_enum!(
    /// Organisation role. `owner` is read-only through the Admin API: invites and `PUT
    /// /admin/users/{id}` accept only `admin` and `member` (spec §2).
    OrgRole, strip_ws_prefix = false, { Owner => "owner", Admin => "admin", Member => "member" }
);

role_enum!(
    /// Workspace role (`admin` > `manager` > `member`).
    WorkspaceRole, strip_ws_prefix = true, { Admin => "admin", Manager => "manager", Member => "member" }
);

role_enum!(
    /// Invite lifecycle (spec §4).
    InviteStatus, strip_ws_prefix = false, {
        Pending => "pending", Cancelled => "cancelled", Accepted => "accepted", Expired => "expired"
    }
);

/// `null` and a missing field both mean "empty", which is how the SDKs treat these arrays.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The invite example carries `"role": ""` (spec §3.2); an empty role is no role.
fn empty_role_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<WorkspaceRole>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.trim().is_empty())
        .map(|s| WorkspaceRole::parse(&s)))
}

/// `{"object":"list","total":N,"data":[…]}`, shared by users, invites, workspaces and members.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ListPage<T> {
    /// Optional so that a server which leaves it out still pages (until a short page).
    pub total: Option<u64>,
    /// `None` for a missing or `null` array, read as empty. (A missing `Option` field is
    /// `None` without `#[serde(default)]`, which would add a `T: Default` bound.)
    pub data: Option<Vec<T>>,
}

/// An organisation member (`GET /admin/users`, `GET /admin/users/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub role: OrgRole,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    /// Workspace ids or slugs. Documented on `GET /admin/users/{id}` only: `None` when a
    /// response leaves it out (or sends `null`), which is not "in no workspace".
    #[serde(default)]
    pub workspace_ids: Option<Vec<String>>,
    /// Undocumented; the Terraform provider reads it.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub last_updated_at: Option<String>,
}

/// A workspace an invite will add the invitee to once accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawInviteWorkspace")]
pub struct InviteWorkspaceRef {
    /// Workspace id or slug, as the server reports it.
    pub id: String,
    pub role: Option<WorkspaceRole>,
}

/// Create sends `id`; the list example shows `workspace_id` (spec §6.4). Both are read, and two
/// separate fields avoid serde's duplicate-field error when a server sends both.
#[derive(Deserialize)]
struct RawInviteWorkspace {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    workspace_id: Option<String>,
    #[serde(default, deserialize_with = "empty_role_as_none")]
    role: Option<WorkspaceRole>,
}

impl From<RawInviteWorkspace> for InviteWorkspaceRef {
    fn from(raw: RawInviteWorkspace) -> Self {
        let id = raw
            .id
            .filter(|s| !s.is_empty())
            .or(raw.workspace_id)
            .unwrap_or_default();
        Self { id, role: raw.role }
    }
}

/// An organisation invite (`GET /admin/users/invites`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub id: String,
    pub email: String,
    pub role: OrgRole,
    pub status: InviteStatus,
    #[serde(default, deserialize_with = "null_as_default")]
    pub workspaces: Vec<InviteWorkspaceRef>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub accepted_at: Option<String>,
    #[serde(default)]
    pub invited_by: Option<String>,
}

/// A workspace (`GET /admin/workspaces`, `POST /admin/workspaces`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// UUID; endpoints also accept the slug.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// `active` or `archived` when present.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub last_updated_at: Option<String>,
}

/// A workspace member (`GET /admin/workspaces/{ws}/users`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawMember")]
pub struct WorkspaceMember {
    /// The member's user id (the same id as in `GET /admin/users`).
    pub id: String,
    pub email: Option<String>,
    pub role: WorkspaceRole,
    pub org_role: Option<OrgRole>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub status: Option<String>,
    pub workspace_id: Option<String>,
}

/// SPEC's flat shape (`id`, `email`, …) and OLD's nested one (`user_id`, `user: {…}`) (spec §6.11).
#[derive(Deserialize)]
struct RawMember {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    user: Option<RawMemberUser>,
    #[serde(default)]
    email: Option<String>,
    role: WorkspaceRole,
    #[serde(default)]
    org_role: Option<OrgRole>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    workspace_id: Option<String>,
}

#[derive(Deserialize)]
struct RawMemberUser {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
}

impl TryFrom<RawMember> for WorkspaceMember {
    type Error = String;

    fn try_from(raw: RawMember) -> Result<Self, String> {
        let (user_id, user_email, user_first, user_last) = match raw.user {
            Some(u) => (u.id, u.email, u.first_name, u.last_name),
            None => (None, None, None, None),
        };
        let id = raw
            .user_id
            .or(raw.id)
            .or(user_id)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| "workspace member without a user id".to_owned())?;
        Ok(Self {
            id,
            email: raw.email.or(user_email),
            role: raw.role,
            org_role: raw.org_role,
            first_name: raw.first_name.or(user_first),
            last_name: raw.last_name.or(user_last),
            status: raw.status,
            workspace_id: raw.workspace_id,
        })
    }
}

/// A workspace and role in an invite body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteWorkspace {
    /// Workspace slug (spec §3.2 `WorkspaceInvite.id`); the id is accepted too.
    pub id: String,
    pub role: WorkspaceRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceApiKeyDetails {
    pub scopes: Vec<String>,
}

/// Body of `POST /admin/users/invites`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateInvite {
    pub email: String,
    /// `admin` or `member`; an owner cannot be invited.
    pub role: OrgRole,
    /// Always sent, possibly empty: SPEC marks it required (spec §8.6).
    pub workspaces: Vec<InviteWorkspace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_api_key_details: Option<WorkspaceApiKeyDetails>,
}

/// Result of [`super::Client::create_invite`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedInvite {
    pub id: String,
    /// `None` when the invite was found by a check read after an uncertain create: lists do not
    /// carry the link.
    #[serde(default)]
    pub invite_link: Option<String>,
}

/// Body of `POST /admin/workspaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateWorkspace {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One entry of a bulk member add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMember {
    /// User id (an org member; invitees cannot be added).
    pub id: String,
    pub role: WorkspaceRole,
}

/// Filters of `GET /admin/users`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    pub email: Option<String>,
    pub role: Option<OrgRole>,
}

/// Filters of `GET /admin/users/invites`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InviteFilter {
    pub email: Option<String>,
    pub role: Option<OrgRole>,
    pub status: Option<InviteStatus>,
}

/// Filters of `GET /admin/workspaces`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceFilter {
    /// Case-sensitive partial match.
    pub name: Option<String>,
    /// Exact match (CL v1.3.0). The client also filters the result, so a server that ignores the
    /// parameter still yields exact matches only.
    pub exact_name: Option<String>,
}

/// Filters of `GET /admin/workspaces/{ws}/users`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberFilter {
    pub email: Option<String>,
    pub role: Option<WorkspaceRole>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly by design
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_are_lenient() {
        assert_eq!(OrgRole::parse("Admin"), OrgRole::Admin);
        assert_eq!(OrgRole::parse(" OWNER "), OrgRole::Owner);
        assert_eq!(
            OrgRole::parse("ws-admin"),
            OrgRole::Other("ws-admin".into())
        );
        assert_eq!(WorkspaceRole::parse("ws-admin"), WorkspaceRole::Admin);
        assert_eq!(WorkspaceRole::parse("WS_Manager"), WorkspaceRole::Manager);
        assert_eq!(
            WorkspaceRole::parse("viewer"),
            WorkspaceRole::Other("viewer".into())
        );
        let r: WorkspaceRole = serde_json::from_value(json!("ws-member")).unwrap();
        assert_eq!(r, WorkspaceRole::Member);
        assert_eq!(
            serde_json::to_value(WorkspaceRole::Manager).unwrap(),
            json!("manager")
        );
        assert_eq!(
            serde_json::to_value(OrgRole::Admin).unwrap(),
            json!("admin")
        );
        assert_eq!(InviteStatus::parse("PENDING"), InviteStatus::Pending);
    }

    #[test]
    fn spec_examples_parse() {
        let users: ListPage<User> = serde_json::from_value(json!({"total":2,"object":"list","data":[{"object":"user","id":"61e08f60-4822-465e-ba23-39f85cd741cb","first_name":"horace",
   "last_name":"slughorn","role":"member","email":"horace.slughorn@example.com","created_at":"2024-01-25 11:35:07","last_updated_at":"2024-01-25 11:35:07", "workspace_ids": null, "shiny_new_field": 1}]})).unwrap();
        assert_eq!(users.total, Some(2));
        let users = users.data.unwrap();
        assert_eq!(users[0].role, OrgRole::Member);
        assert_eq!(
            users[0].workspace_ids, None,
            "null is 'not sent', not 'in no workspace'"
        );

        let invites: ListPage<Invite> = serde_json::from_value(json!({"object":"list","total":2,"data":[{"object":"invite","id":"419641fb-1458-47d6-94d0-e308159b3ec2","email":"horace.slughorn@example.com",
   "role":"member","created_at":"2023-12-12 13:56:32","expires_at":"2023-12-12 13:56:32","accepted_at":null,
   "status":"pending","invited_by":"a90e74fb-269e-457b-8b59-9426cdd8907e","workspaces":[{"workspace_id":"","role":""}, {"id":"ws-a","workspace_id":"ws-a","role":"ws-admin"}]}]}))
        .unwrap();
        let inv = &invites.data.unwrap()[0];
        assert_eq!(inv.status, InviteStatus::Pending);
        assert_eq!(inv.workspaces[0].role, None);
        assert_eq!(inv.workspaces[1].id, "ws-a");
        assert_eq!(inv.workspaces[1].role, Some(WorkspaceRole::Admin));

        let ws: Workspace = serde_json::from_value(json!({"id":"2f4f5b8f-6d12-447a-b4b2-e3e5f28380a7","slug":"ws-workspace-name-0909","name":"WORKSPACE_NAME_0909","description":null,
  "created_at":"2026-05-27T05:36:01.987Z","last_updated_at":"2026-05-27T05:36:01.987Z","defaults":{"metadata":{"environment":"production","foo":"bar"}}, "usage_limits": [], "is_default": 0}))
        .unwrap();
        assert_eq!(ws.slug.as_deref(), Some("ws-workspace-name-0909"));

        let m: WorkspaceMember = serde_json::from_value(json!({"object":"workspace-user","id":"66dc015d-0270-11f1-8eec-0e27d7367989","first_name":"John","last_name":"Doe","org_role":"admin","role":"admin",
 "created_at":"2026-03-09T07:55:25.000Z","last_updated_at":"2026-03-09T07:55:25.000Z","status":"active",
 "workspace_id":"bf276bb9-4cef-4d87-b69b-b23a6ed6b1dd","email":"john.doe@example.com","scopes":["organisations.read"],"settings":null}))
        .unwrap();
        assert_eq!(m.id, "66dc015d-0270-11f1-8eec-0e27d7367989");
        assert_eq!(m.org_role, Some(OrgRole::Admin));

        let old: WorkspaceMember = serde_json::from_value(json!({"object":"workspace_member","user_id":"u1","user":{"object":"user","id":"u1","first_name":"a","last_name":"b","email":"a@b.c"},"role":"ws-manager"}))
        .unwrap();
        assert_eq!(old.id, "u1");
        assert_eq!(old.email.as_deref(), Some("a@b.c"));
        assert_eq!(old.role, WorkspaceRole::Manager);

        assert!(serde_json::from_value::<WorkspaceMember>(json!({"role":"admin"})).is_err());
    }

    #[test]
    fn request_bodies() {
        let body = CreateInvite {
            email: "a@example.com".into(),
            role: OrgRole::Member,
            workspaces: vec![],
            workspace_api_key_details: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"email":"a@example.com","role":"member","workspaces":[]})
        );
        let ws = CreateWorkspace {
            name: "eng".into(),
            description: None,
        };
        assert_eq!(serde_json::to_value(&ws).unwrap(), json!({"name":"eng"}));
    }
}
