//! HTTP servers.
