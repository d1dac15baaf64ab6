//! The one integration-test binary; each area is a module.

mod common;
mod portkey;
mod scim_checklist;
