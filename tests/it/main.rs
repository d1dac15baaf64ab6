//! The one integration-test binary; each area is a module.

mod cli;
mod common;
mod connections;
mod crash;
mod deprovisioning;
mod doc_snippets;
mod e2e;
mod fuzz_props;
mod hardening;
mod init;
mod lifecycle;
mod limits;
mod logs;
mod portkey;
mod property;
mod ratelimit;
mod reconcile;
mod reconcile_crash;
mod scim_checklist;
mod scim_http;
mod soak;
mod store_upkeep;
