//! The domain's role vocabulary: one org role and one workspace role type, ordered by rank.
//!
//! Config parses into these; the control-plane client has its own wire types, which keep roles
//! it does not know (`Other`), and the plan converts between the two at the edge
//! ([`crate::reconcile::plan`]).

use serde::Serialize;
use std::fmt;

/// Organisation role, lowest first. `Owner` can be asked for by the IdP and read from the
/// control plane, but never set through the Admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgRole {
    Member,
    Admin,
    Owner,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    /// Case-insensitive; surrounding blanks ignored.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }

    /// The role an invite or a role change sends: `owner` cannot be sent, admin is the nearest.
    pub fn settable(self) -> OrgRole {
        match self {
            Self::Member => Self::Member,
            Self::Admin | Self::Owner => Self::Admin,
        }
    }

    /// Owners and admins are admins of every workspace without being added.
    pub fn is_implicit_workspace_admin(self) -> bool {
        self >= Self::Admin
    }
}

impl fmt::Display for OrgRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Workspace role, lowest first (`member` < `manager` < `admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceRole {
    Member,
    Manager,
    Admin,
}

impl WorkspaceRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Manager => "manager",
            Self::Admin => "admin",
        }
    }

    /// Case-insensitive; surrounding blanks ignored.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Self::Admin),
            "manager" => Some(Self::Manager),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

impl fmt::Display for WorkspaceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_parsing() {
        assert!(OrgRole::Member < OrgRole::Admin && OrgRole::Admin < OrgRole::Owner);
        assert!(WorkspaceRole::Member < WorkspaceRole::Manager);
        assert!(WorkspaceRole::Manager < WorkspaceRole::Admin);
        assert_eq!(OrgRole::parse(" OWNER "), Some(OrgRole::Owner));
        assert_eq!(OrgRole::parse("billing"), None);
        assert_eq!(
            WorkspaceRole::parse("Manager"),
            Some(WorkspaceRole::Manager)
        );
        assert_eq!(OrgRole::Owner.settable(), OrgRole::Admin);
        assert!(OrgRole::Owner.is_implicit_workspace_admin());
        assert!(!OrgRole::Member.is_implicit_workspace_admin());
        assert_eq!(
            serde_json::to_value(WorkspaceRole::Manager).ok(),
            Some(serde_json::json!("manager"))
        );
    }
}
