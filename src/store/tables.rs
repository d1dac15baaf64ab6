//! Table definitions. Names are part of the on-disk format: renaming one needs a migration.

use crate::scim::schema::ResourceKind;
use redb::{MultimapTableDefinition, TableDefinition};

pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const META_SCHEMA_VERSION: &str = "schema_version";
/// The newest change-feed and audit sequence numbers ever assigned. Kept apart from the tables'
/// last keys because trimming may empty a table, and numbering must never start over: the
/// reconciler's cursor and audit paging (`before=<seq>`) rely on numbers only growing.
pub const META_CHANGES_LAST_SEQ: &str = "changes_last_seq";
pub const META_AUDIT_LAST_SEQ: &str = "audit_last_seq";
/// How far the write-ahead log is in the store: its epoch, and how many of that epoch's records
/// the last commit holds (written with every logged commit, so replay applies each once).
pub const META_WAL_EPOCH: &str = "wal_epoch";
pub const META_WAL_RECORDS: &str = "wal_records";

/// id → JSON-encoded [`super::Record`].
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
pub const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");

/// Lower-cased `userName` → user id (unique).
pub const USERNAME_IDX: TableDefinition<&str, &str> = TableDefinition::new("idx_user_name");
/// Lower-cased group `displayName` → group id (unique).
pub const GROUPNAME_IDX: TableDefinition<&str, &str> = TableDefinition::new("idx_group_name");
/// `externalId` → ids (not unique: RFC 7643 leaves it to the client).
pub const USER_EXTERNAL_IDX: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("idx_user_external");
pub const GROUP_EXTERNAL_IDX: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("idx_group_external");

/// A user's address ([`crate::scim::address::user_email`]) → the ids of every user, active or
/// not, known by it (schema version 3). Not unique: two records may claim one address, and the
/// policy must see them all to refuse to choose.
pub const USER_EMAIL_IDX: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("idx_user_email");

/// group id → member user ids.
pub const MEMBERS: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("members");
/// user id → group ids (the reverse index).
pub const USER_GROUPS: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("user_groups");

/// seq → JSON-encoded [`super::Change`].
pub const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");

/// Lower-cased email → JSON-encoded [`super::ledger::Link`].
pub const LINKS: TableDefinition<&str, &[u8]> = TableDefinition::new("links");
/// SCIM id → the lower-cased emails whose [`LINKS`] row names it (schema version 3): every
/// address the daemon provisioned for one SCIM user, without reading the whole ledger.
pub const LINKS_BY_SCIM_ID: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("idx_link_scim_id");
/// Lower-cased workspace name → JSON-encoded [`super::ledger::WorkspaceLink`] (schema version
/// 2; version 1 kept these in [`LINKS`] under [`V1_WORKSPACE_LINK_PREFIX`]).
pub const WORKSPACE_LINKS: TableDefinition<&str, &[u8]> = TableDefinition::new("workspace_links");
/// How schema version 1 told a workspace's row in [`LINKS`] from a person's (emails never
/// start with it).
pub const V1_WORKSPACE_LINK_PREFIX: &str = "workspace:";
/// seq → JSON-encoded [`super::ledger::AuditEntry`].
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// seq → JSON `{at, key}`: destructive ops applied, for the fuse's rolling window.
pub const FUSE_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("fuse_log");
/// op key → JSON-encoded [`super::safety::HeldOp`].
pub const HELD: TableDefinition<&str, &[u8]> = TableDefinition::new("held_ops");
/// op key → JSON-encoded [`super::safety::FailingOp`].
pub const FAILING: TableDefinition<&str, &[u8]> = TableDefinition::new("failing_ops");

pub fn resource_table(kind: ResourceKind) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match kind {
        ResourceKind::User => USERS,
        ResourceKind::Group => GROUPS,
    }
}

pub fn name_idx(kind: ResourceKind) -> TableDefinition<'static, &'static str, &'static str> {
    match kind {
        ResourceKind::User => USERNAME_IDX,
        ResourceKind::Group => GROUPNAME_IDX,
    }
}

pub fn external_idx(
    kind: ResourceKind,
) -> MultimapTableDefinition<'static, &'static str, &'static str> {
    match kind {
        ResourceKind::User => USER_EXTERNAL_IDX,
        ResourceKind::Group => GROUP_EXTERNAL_IDX,
    }
}

/// The attribute that is unique per resource type.
pub fn name_attr(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    }
}
