//! Token hashing and constant-time comparison.
