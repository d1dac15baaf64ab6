//! Soak: hours of mixed Okta- and Entra-shaped SCIM traffic against a `scim-sync serve` child
//! process that reconciles the simulator with changing faults and is killed at random moments.
//! Samples RSS, store size, latency and error counts; checks that no acknowledged write is lost
//! and that the control plane converges at the end. See `benches/support/soak.rs`.
//!
//! ```text
//! cargo bench --bench soak -- --minutes 120
//! ```

// Tests and benches may take a default where a read fails: their assertions say what matters.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench fails loudly

#[path = "../tests/it/common/daemon.rs"]
mod daemon;
#[path = "../tests/it/common/scim.rs"]
mod scim;
#[path = "support/soak.rs"]
mod soak;

use clap::Parser;
use std::time::Duration;

#[derive(Debug, Parser)]
struct Args {
    /// How long the traffic runs.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// IdP clients, each with its own users.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// SCIM requests per second over all clients.
    #[arg(long, default_value_t = 40.0)]
    rate: f64,
    /// Users each client keeps at most (churn: past it, it deletes instead of creating).
    #[arg(long, default_value_t = 250)]
    users_per_client: usize,
    /// Seconds between samples.
    #[arg(long, default_value_t = 60)]
    sample_secs: u64,
    /// Kills come every this many seconds, drawn uniformly between the two bounds.
    #[arg(long, default_value_t = 60)]
    kill_min_secs: u64,
    #[arg(long, default_value_t = 300)]
    kill_max_secs: u64,
    /// Seconds between fault changes in the simulator.
    #[arg(long, default_value_t = 120)]
    fault_secs: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Ignored: `cargo bench` passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let opts = soak::Options {
        bin: env!("CARGO_BIN_EXE_scim-sync").into(),
        duration: Duration::from_secs_f64(a.minutes * 60.0),
        clients: a.clients,
        rate: a.rate,
        users_per_client: a.users_per_client,
        sample_every: Duration::from_secs(a.sample_secs),
        kill_every: (
            Duration::from_secs(a.kill_min_secs),
            Duration::from_secs(a.kill_max_secs),
        ),
        fault_every: Duration::from_secs(a.fault_secs),
        seed: a.seed,
        verbose: true,
    };
    println!("soak: {opts:?}");
    let report = soak::run(opts).await;
    println!("{}", report.summary());
    let ok = report.acked_lost == 0 && report.violations.is_empty() && report.converged;
    if !ok {
        std::process::exit(1);
    }
}
