//! A closed-loop load driver: a fixed number of clients, each sending its next request when the
//! last one is answered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `n` requests from `clients` concurrent clients; `op(i)` makes request `i`. Returns the
/// wall time and every request's latency and result, in request order.
pub async fn load_with<F, Fut, T>(clients: usize, n: usize, op: F) -> (Duration, Vec<(Duration, T)>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let t = Instant::now();
                    let v = op(i).await;
                    out.push((i, t.elapsed(), v));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let wall = started.elapsed();
    all.sort_by_key(|(i, _, _)| *i);
    (wall, all.into_iter().map(|(_, d, v)| (d, v)).collect())
}
