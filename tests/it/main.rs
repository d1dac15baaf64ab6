//! The one integration-test binary; each area is a module.

// Tests and benches may take a default where a read fails: their assertions say what matters.
#![allow(clippy::disallowed_methods)]

mod cli;
mod common;
mod connections;
mod console;
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
mod observability;
mod portkey;
mod property;
mod ratelimit;
mod reconcile;
mod reconcile_crash;
mod scim_checklist;
mod scim_http;
mod soak;
mod source_rules;
mod store_upkeep;
mod walkthrough;
