//! The soak run, short: 40 s of mixed Okta- and Entra-shaped traffic, faults changing every 5 s,
//! at least two SIGKILLs. The long run is `cargo bench --bench soak -- --minutes 120` (figures
//! in BENCHMARKS.md).

#[path = "../../benches/support/soak.rs"]
mod driver;

use crate::common::{daemon, scim};

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_soak_loses_nothing_and_converges() {
    let report = driver::run(driver::Options {
        bin: env!("CARGO_BIN_EXE_scim-sync").into(),
        duration: Duration::from_secs(40),
        clients: 4,
        rate: 60.0,
        users_per_client: 40,
        sample_every: Duration::from_secs(5),
        kill_every: (Duration::from_secs(8), Duration::from_secs(14)),
        fault_every: Duration::from_secs(5),
        seed: 42,
        verbose: false,
    })
    .await;
    let summary = report.summary();
    eprintln!("{summary}");
    assert!(report.kills >= 2, "{summary}");
    assert!(report.requests > 500, "{summary}");
    assert!(report.acked_checked > 100, "{summary}");
    assert_eq!(report.acked_lost, 0, "{summary}");
    assert!(report.violations.is_empty(), "{summary}");
    assert!(report.converged, "{summary}");
}
