//! Listing cost of the Portkey client against the in-process simulator: requests sent (from the
//! simulator's request log) and wall time, for 10,000 users and a 50,000-member workspace.
//!
//! Run with `cargo bench --bench portkey_client`. The simulator only accepts workspace members
//! that are org users, so the 50,000-member workspace is seeded with 50,000 users.

// Tests and benches may take a default where a read fails: their assertions say what matters.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench fails loudly

use std::time::{Duration, Instant};

#[path = "../tests/it/common/sim.rs"]
mod sim;
use sim::Control;

use portkey_sim::{Seed, SeedMember, SeedUser, SeedWorkspace, SimOptions, SimServer};
use scim_sync::portkey::{ApiKey, Client, ClientConfig, MemberFilter, UserFilter};

const RUNS: usize = 5;

fn users(n: usize) -> Vec<SeedUser> {
    (0..n)
        .map(|i| SeedUser {
            email: format!("user{i:06}@example.com"),
            first_name: Some("Bench".into()),
            last_name: Some(format!("User {i}")),
            role: "member".into(),
        })
        .collect()
}

async fn sim(seed: Seed, max_page_size: usize) -> SimServer {
    sim::spawn(SimOptions {
        seed: Some(seed),
        max_page_size,
        ..SimOptions::default()
    })
    .await
}

fn client(sim: &SimServer, page_size: usize, rps: f64) -> Client {
    Client::new(ClientConfig {
        base_url: sim.base_url(),
        api_key: ApiKey::new("sim-key"),
        page_size,
        requests_per_second: rps,
        ..ClientConfig::default()
    })
    .unwrap()
}

struct Sample {
    items: usize,
    requests: usize,
    times: Vec<Duration>,
}

impl Sample {
    fn report(&self, what: &str) {
        let mut t = self.times.clone();
        t.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let median = t[t.len() / 2];
        println!(
            "| {what} | {} | {} | {:.1} | {:.1} | {:.1} | {} |",
            self.items,
            self.requests,
            ms(t[0]),
            ms(median),
            ms(t[t.len() - 1]),
            t.len()
        );
    }
}

async fn measure<F, Fut>(control: &Control, runs: usize, f: F) -> Sample
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    // One warm-up run opens the connections.
    f().await;
    let mut times = Vec::new();
    let mut items = 0;
    let mut requests = 0;
    for _ in 0..runs {
        control.clear_requests().await;
        let start = Instant::now();
        items = f().await;
        times.push(start.elapsed());
        requests = control.requests().await.len();
    }
    Sample {
        items,
        requests,
        times,
    }
}

#[tokio::main]
async fn main() {
    let http = reqwest::Client::new();
    println!("| listing | items | requests | min ms | median ms | max ms | runs |");
    println!("|---|---:|---:|---:|---:|---:|---:|");

    // 10,000 users; the simulator's default page cap (100) and a raised one (1,000).
    let seed = Seed {
        users: users(10_000),
        ..Seed::default()
    };
    for (page, cap) in [(100, 100), (1_000, 1_000)] {
        let s = sim(seed.clone(), cap).await;
        let control = Control::with_client(&s, http.clone());
        let c = client(&s, page, f64::INFINITY);
        let sample = measure(&control, RUNS, || async {
            c.list_users(&UserFilter::default()).await.unwrap().len()
        })
        .await;
        assert_eq!(sample.items, 10_000);
        sample.report(&format!("users, page {page}, no rate limit"));
        if page == 100 {
            // The production default: 10 requests per second.
            let c = client(&s, page, ClientConfig::default().requests_per_second);
            let sample = measure(&control, 1, || async {
                c.list_users(&UserFilter::default()).await.unwrap().len()
            })
            .await;
            sample.report("users, page 100, default 10 req/s");
        }
        s.shutdown().await;
    }

    // One workspace with 50,000 members (all org users; the simulator requires it).
    let all = users(50_000);
    let members = all
        .iter()
        .map(|u| SeedMember {
            email: u.email.clone(),
            role: "member".into(),
        })
        .collect();
    let seed = Seed {
        users: all,
        workspaces: vec![SeedWorkspace {
            name: "Everyone".into(),
            slug: Some("ws-everyone".into()),
            members,
        }],
        invites: vec![],
    };
    for (page, cap) in [(100, 100), (1_000, 1_000)] {
        let s = sim(seed.clone(), cap).await;
        let control = Control::with_client(&s, http.clone());
        let c = client(&s, page, f64::INFINITY);
        let sample = measure(&control, RUNS, || async {
            c.list_members("ws-everyone", &MemberFilter::default())
                .await
                .unwrap()
                .len()
        })
        .await;
        assert_eq!(sample.items, 50_000);
        sample.report(&format!(
            "members of one workspace, page {page}, no rate limit"
        ));
        s.shutdown().await;
    }
}
