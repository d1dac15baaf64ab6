//! In-memory simulator of the Portkey control-plane Admin API.
