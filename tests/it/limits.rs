//! Limits on PATCH operations, list lengths, attribute sizes and filter cost.
