//! scim-sync: a SCIM 2.0 service provider that keeps a Portkey control plane in line with what an
//! identity provider pushes.
//!
//! # Layout
//! From the bottom up; a module imports only from the layers below it.
//! - Domain vocabulary: [`email`] (one normalised email type), [`roles`] (org and workspace
//!   roles, by rank), [`token`] (hashed bearer tokens, constant-time checks), [`metrics`] (the
//!   process-wide Prometheus registry), [`net`] (a listener's limits and trusted proxies, as
//!   values).
//! - [`config`]: the TOML file, env secrets, validation before anything binds; [`envfile`]:
//!   systemd-style env files (`--env-file`).
//! - [`scim`]: the SCIM protocol (schemas, filters, PATCH, resource normalisation, list and
//!   discovery documents, errors). No HTTP, no storage, so it can be tested and fuzzed alone;
//!   [`fuzzing`]: the properties the fuzz targets (`fuzz/`) and `tests/it/fuzz_props.rs` check.
//! - [`store`]: redb tables, unique indexes, users by address, the user→groups reverse index,
//!   the change feed, the ledger of links; its own errors, which the HTTP layer maps to SCIM.
//! - [`portkey`]: the control-plane Admin API client.
//! - [`policy`]: the desired state, pure (who, with which roles, in which workspaces).
//! - [`reconcile`]: the desired state read from the store (of everyone, or of a few people through
//!   the store's indexes), the plan (pure diff), the fuse, applying ops, `explain`;
//!   [`scheduler`]: when runs happen.
//! - [`admin_api`]: the admin API's JSON documents, shared by the admin server and the CLI.
//! - [`http`]: warp servers (SCIM under the base path, admin and its console) on one HTTP/1.1
//!   accept loop ([`http::serve`]: connection cap, timeouts, client address behind a trusted
//!   proxy).
//! - [`app`]: wiring used by `main` (`serve`); `demo` (feature `simulator`, on by default): the
//!   same next to the bundled simulator.
//! - [`cli`]: the command line (arguments, admin client, rendering, store upkeep); [`init`]: a
//!   first config, env file and state directory; [`preflight`]: what the Admin API key may do
//!   (`check-config --online`).

// Library code must not panic: a panic in a request handler drops the connection without a
// SCIM answer, and one in the writer thread stops every write. Tests may.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::await_holding_lock,
        // Over 120 lines (clippy.toml) a function is split along its seams, or says why not.
        clippy::too_many_lines
    )
)]

/// `writeln!` into a `String`. Writing to a `String` cannot fail, so there is no `fmt::Result`
/// to discard: report text is built with this, and `let _ =` stays reserved for nothing.
macro_rules! push_line {
    ($s:expr) => {
        $s.push('\n')
    };
    ($s:expr, $($arg:tt)*) => {{
        $s.push_str(&format!($($arg)*));
        $s.push('\n');
    }};
}

pub mod admin_api;
pub mod app;
pub mod cli;
pub mod config;
#[cfg(feature = "simulator")]
pub mod demo;
pub mod email;
pub mod envfile;
pub mod fuzzing;
pub mod http;
pub mod init;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod portkey;
pub mod preflight;
pub mod reconcile;
pub mod roles;
pub mod scheduler;
pub mod scim;
pub mod store;
pub mod token;
