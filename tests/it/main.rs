//! The one integration-test binary; each area is a module.

mod cli;
mod common;
mod crash;
mod deprovisioning;
mod e2e;
mod fuzz_props;
mod hardening;
mod lifecycle;
mod limits;
mod portkey;
mod property;
mod reconcile;
mod reconcile_crash;
mod scim_checklist;
mod scim_http;
