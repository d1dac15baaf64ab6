//! Portkey Admin API client.
