//! Hardening: what an unauthenticated client controls stays bounded (labels, logs, Location).
