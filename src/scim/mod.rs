//! The SCIM 2.0 protocol: what a request means, independent of transport and storage.

pub mod address;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod list;
pub mod patch;
pub mod projection;
pub mod render;
pub mod resource;
pub mod schema;

pub use error::{ScimError, ScimType};
