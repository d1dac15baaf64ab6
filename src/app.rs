//! Wiring used by `main`.
