//! Rate limits on the SCIM listener: a bucket per token (429 with `Retry-After` and a SCIM error
//! body), a shared bucket and a log budget for requests without a valid token, and neither the
//! reconciler nor the admin API slowed by a throttled token.

use crate::common::{user, LogCapture, Server, SCIM_TOKEN};
use crate::e2e::{self, owner};
use portkey_sim::Quirks;
use scim_sync::http::ratelimit::REFUSAL_LOG_LINES_PER_MINUTE;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECOND_TOKEN: &str = "second-scim-token-0123456789";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

struct Answer {
    status: u16,
    retry_after: Option<String>,
    content_type: Option<String>,
    json: Value,
}

async fn call(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    method: reqwest::Method,
    body: Option<Vec<u8>>,
) -> Answer {
    let mut rb = http.request(method, url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.header("content-type", "application/scim+json").body(b);
    }
    let r = rb.send().await.unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (retry_after, content_type) = (header("retry-after"), header("content-type"));
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    Answer {
        status,
        retry_after,
        content_type,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// The whole seconds of a 429's `Retry-After` (it must be there, and at least 1).
fn retry_after(a: &Answer) -> u64 {
    let v = a.retry_after.as_deref().expect("a 429 carries Retry-After");
    let secs: u64 = v
        .parse()
        .unwrap_or_else(|e| panic!("Retry-After {v:?}: {e}"));
    assert!(secs >= 1, "Retry-After {secs}");
    secs
}

fn assert_scim_429(a: &Answer, config_key: &str) {
    assert_eq!(a.status, 429, "{}", a.json);
    assert_eq!(a.content_type.as_deref(), Some("application/scim+json"));
    assert_eq!(a.json["schemas"][0], ERROR_SCHEMA, "{}", a.json);
    assert_eq!(a.json["status"], "429", "{}", a.json);
    let detail = a.json["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(config_key), "{detail}");
    retry_after(a);
}

async fn metric(s: &Server, series: &str) -> f64 {
    let (_, text) = crate::common::metrics(&s.http, &s.admin).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not in {text}"))
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_and_another_token_does_not() {
    let s = Server::start_with(&format!(
        "rate_limit_per_second = 1\nrate_limit_burst = 5\nmax_body_bytes = 1024\ntoken_hashes = [\"{}\"]\n",
        scim_sync::token::hash_token(SECOND_TOKEN)
    ))
    .await;
    let users = format!("{}/Users", s.base);
    let before = metric(&s, "scim_sync_scim_rate_limited_total{limit=\"token\"}").await;

    // Creates until the bucket is empty: the burst goes through, then a 429, whose user is not
    // stored (the limit comes before the body is read and before the store).
    let mut created = 0;
    let refused = loop {
        let name = format!("u{created}@example.com");
        let body = serde_json::to_vec(&user(&name)).unwrap();
        let a = call(
            &s.http,
            &users,
            Some(SCIM_TOKEN),
            reqwest::Method::POST,
            Some(body),
        )
        .await;
        if a.status != 201 {
            break (name, a);
        }
        created += 1;
        assert!(
            created <= 30,
            "no 429 after {created} creates at 1/s, burst 5"
        );
    };
    let (refused_name, a) = refused;
    assert!(created >= 5, "the burst of 5 was not honoured: {created}");
    assert_scim_429(&a, "[scim] rate_limit_per_second");
    assert!(
        metric(&s, "scim_sync_scim_rate_limited_total{limit=\"token\"}").await > before,
        "429s are counted"
    );

    // Another token has its own bucket.
    for _ in 0..5 {
        let a = call(
            &s.http,
            &users,
            Some(SECOND_TOKEN),
            reqwest::Method::GET,
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.json);
    }

    // After Retry-After, the first token is served again.
    tokio::time::sleep(Duration::from_secs(retry_after(&a))).await;
    let filter = format!(
        "{users}?filter={}",
        crate::common::enc(&format!("userName eq \"{refused_name}\""))
    );
    let a = call(
        &s.http,
        &filter,
        Some(SCIM_TOKEN),
        reqwest::Method::GET,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["totalResults"], 0, "a refused create was stored");

    // A body over max_body_bytes is answered 413 while the token has budget, and 429 (not 413)
    // once it has none: the body of a throttled request is never read.
    let big = vec![b' '; 4096];
    let mut too_large = 0;
    let a = loop {
        let a = call(
            &s.http,
            &users,
            Some(SCIM_TOKEN),
            reqwest::Method::POST,
            Some(big.clone()),
        )
        .await;
        if a.status != 413 {
            break a;
        }
        too_large += 1;
        assert!(too_large <= 30, "no 429 after {too_large} requests");
    };
    assert_scim_429(&a, "[scim] rate_limit_burst");
}

#[tokio::test]
async fn a_tokenless_flood_is_cut_in_bounded_log_lines_and_a_token_is_still_served() {
    let capture = LogCapture::start(tracing::Level::INFO);

    // Default limits.
    let s = Arc::new(Server::start().await);
    let started = Instant::now();
    const FLOOD: usize = 2_000;
    const WORKERS: usize = 16;
    let sent = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    for w in 0..WORKERS {
        let (s, sent) = (s.clone(), sent.clone());
        flood.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while sent.fetch_add(1, Ordering::Relaxed) < FLOOD {
                // Half without a token, half with a wrong one.
                let token = (w % 2 == 0).then_some("wrong-token-0123456789");
                let url = format!("{}/Users/flood-{w}", s.base);
                let a = call(&s.http, &url, token, reqwest::Method::GET, None).await;
                if a.status == 429 {
                    assert_scim_429(&a, "without a valid bearer token");
                }
                statuses.push(a.status);
            }
            statuses
        }));
    }
    // A token's requests in the middle of the flood are served.
    while sent.load(Ordering::Relaxed) < FLOOD / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = s.post("/Users", user("during-flood@example.com")).await;
    assert_eq!(r.status, 201, "{}", r.json);
    assert!(
        sent.load(Ordering::Relaxed) < FLOOD,
        "the flood ended before the token's request: it proves nothing"
    );
    let r = s.get("/Users?count=1").await;
    assert_eq!(r.status, 200, "{}", r.json);

    let mut statuses = Vec::new();
    for f in flood {
        let done = tokio::time::timeout(Duration::from_secs(60), f).await;
        statuses.extend(done.expect("the flood is answered").unwrap());
    }
    let elapsed = started.elapsed();
    assert_eq!(statuses.len(), FLOOD);
    assert!(
        statuses.iter().all(|&c| c == 401 || c == 429),
        "{statuses:?}"
    );
    let throttled = statuses.iter().filter(|&&c| c == 429).count();
    assert!(throttled > 0, "no request of the flood was cut");

    // Every refusal is counted in the metrics, but the log gets a few lines a minute.
    let logs = capture.text();
    let flood_lines = logs.lines().filter(|l| l.contains("/Users/flood-")).count();
    let budget = REFUSAL_LOG_LINES_PER_MINUTE.get() as usize;
    let allowed = budget + (elapsed.as_secs() as usize / 60 + 1) * budget;
    assert!(
        flood_lines <= allowed,
        "{flood_lines} log lines for {FLOOD} refused requests in {elapsed:?} (allowed {allowed})"
    );
    assert!(flood_lines > 0, "refusals are still logged: {logs:.2000}");
    let summaries = logs.lines().filter(|l| l.contains("unlogged=")).count();
    assert!(summaries <= allowed, "{summaries} summary lines");
    assert!(
        logs.lines()
            .any(|l| l.contains("status=201") && l.contains("scim request")),
        "the token's request is logged as usual"
    );
}

#[tokio::test]
async fn a_throttled_token_does_not_hold_up_the_reconciler_or_the_admin_api() {
    let relaxed = "max_deletions = 1000\nmax_deletion_percent = 100.0\n";
    let mut e = e2e::start(owner(), Quirks::default(), relaxed).await;
    e.scim_extra = "rate_limit_per_second = 1\nrate_limit_burst = 10\n".into();
    e.restart(relaxed).await;
    let alice = e.create_user("alice@example.com").await;
    e.create_group("ws-Eng-role-member", &[&alice]).await;

    // Four clients hammer SCIM with the token until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let throttled = Arc::new(AtomicUsize::new(0));
    let mut hammers = Vec::new();
    for _ in 0..4 {
        let (http, url) = (e.http.clone(), format!("{}/Users", e.scim));
        let (stop, throttled) = (stop.clone(), throttled.clone());
        hammers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let a = call(&http, &url, Some(SCIM_TOKEN), reqwest::Method::GET, None).await;
                if a.status == 429 {
                    throttled.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while throttled.load(Ordering::Relaxed) < 50 {
        assert!(Instant::now() < deadline, "the token was never throttled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // While the token is throttled: a forced full run completes and applies the SCIM state,
    // and the admin API answers.
    let summary = e.resync().await;
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(e.pending_invites().await, vec!["alice@example.com"]);
    let status = e.status_doc().await;
    assert!(
        status["reconciler"]["last_run"]["run_id"].is_string(),
        "{status}"
    );
    let before = throttled.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        throttled.load(Ordering::Relaxed) > before,
        "the token was not throttled all along"
    );

    stop.store(true, Ordering::Relaxed);
    for h in hammers {
        h.await.unwrap();
    }
}
