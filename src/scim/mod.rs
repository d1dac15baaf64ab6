//! The SCIM 2.0 protocol: what a request means, independent of transport and storage.

pub mod error;
pub mod filter;
pub mod patch;
pub mod projection;
pub mod resource;
pub mod schema;

pub use error::{ScimError, ScimType};
