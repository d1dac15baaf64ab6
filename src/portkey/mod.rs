//! Portkey Admin API client: typed calls, pagination, error classification, retries with
//! backoff, and bounds on concurrency and request rate toward the control plane.
//!
//! - [`Client`]: one per control plane; every call the reconciler needs.
//! - [`ClientConfig`] / [`RetryConfig`] / [`ApiKey`]: settings, built by the config module.
//! - [`Error`]: names the call and the cause; [`Error::is_transient`], [`Error::is_not_found`],
//!   [`Error::is_conflict`] classify it.
//! - Wire types: [`User`], [`Invite`], [`Workspace`], [`WorkspaceMember`], role enums.
//!
//! Lists are all or nothing: a list call returns every item or an error, never a partial list,
//! because the reconciler treats an absent item as "remove it".

mod client;
mod config;
mod error;
mod limit;
mod types;

pub use client::Client;
pub use config::{ApiKey, ClientConfig, RetryConfig};
pub use error::{Error, ErrorClass, ErrorKind, Result};
pub use types::{
    CreateInvite, CreateWorkspace, CreatedInvite, Invite, InviteFilter, InviteStatus,
    InviteWorkspace, InviteWorkspaceRef, MemberFilter, NewMember, OrgRole, User, UserFilter,
    Workspace, WorkspaceApiKeyDetails, WorkspaceFilter, WorkspaceMember, WorkspaceRole,
};
