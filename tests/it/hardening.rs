//! Hardening: what an unauthenticated client controls stays bounded (labels, logs, Location).

use crate::common::{metrics, user, LogCapture, Server, SCIM_TOKEN};
use scim_sync::metrics::{SCIM_METHODS, SCIM_ROUTES};
use serde_json::Value;
use std::collections::BTreeSet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends bytes as written and returns the status, the response head and the body.
async fn raw_full(s: &Server, request: &str) -> (u16, String, String) {
    let mut conn = tokio::net::TcpStream::connect(s.scim_addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Every value of `label="…"` in an exposition.
fn label_values(text: &str, label: &str) -> BTreeSet<String> {
    let needle = format!("{label}=\"");
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut rest = line;
        while let Some(i) = rest.find(&needle) {
            let after = &rest[i + needle.len()..];
            let end = after.find('"').unwrap_or(after.len());
            out.insert(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

/// A tokenless request with a ~40 KB path, under the HTTP parser's 64 KiB request-target cap.
fn long_tokenless_request(s: &Server, i: usize, method: &str) -> String {
    // Each path has another length and another spelling of a known word, which used to make one
    // route label per request.
    let words = [
        "Users", "USERS", "uSeRs", "Groups", "gRoUpS", "Schemas", "nowhere",
    ];
    let path = format!(
        "{}/{}{}",
        s.base_path,
        words[i % words.len()],
        "/a".repeat(20_000 - i)
    );
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(req.len() < 64 * 1024);
    req
}

#[tokio::test]
async fn tokenless_long_paths_and_odd_methods_add_no_metric_series() {
    let s = Server::start().await;
    let methods = ["FOO", "get", "PROPFIND", "GET", "DELETE", "PoSt"];
    for i in 0..100 {
        // Every fourth method is unique to its request: any method name used to become a label.
        let unique = format!("M{i}");
        let method = if i % 4 == 0 {
            unique.as_str()
        } else {
            methods[i % methods.len()]
        };
        let (status, body) = s.raw(&long_tokenless_request(&s, i, method)).await;
        assert_eq!(status, 401, "{method}: {body}");
    }
    // Case variants of a real route share its canonical label.
    for path in ["/uSeRs/abc", "/USERS/def", "/users/.SEARCH"] {
        let (status, _) = s
            .raw(&format!(
                "GET {}{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                s.base_path
            ))
            .await;
        assert_eq!(status, 401);
    }

    let (status, text) = metrics(&s.http, &s.admin).await;
    assert_eq!(status, 200);
    // The registry is process-wide, so sibling tests add series too; all of them together stay
    // within the closed label sets.
    assert!(text.len() < 200_000, "/metrics is {} bytes", text.len());
    let routes = label_values(&text, "route");
    let bad: Vec<_> = routes
        .iter()
        .filter(|r| !SCIM_ROUTES.contains(&r.as_str()))
        .collect();
    assert!(
        bad.is_empty(),
        "route labels outside the closed set: {bad:.200?}"
    );
    let scim_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("scim_sync_scim_requests_total{"))
        .collect();
    let methods_seen = label_values(&scim_lines.join("\n"), "method");
    assert!(
        methods_seen
            .iter()
            .all(|m| SCIM_METHODS.contains(&m.as_str())),
        "{methods_seen:?}"
    );
    let series: BTreeSet<&str> = scim_lines
        .iter()
        .filter_map(|l| l.split_once(' ').map(|(k, _)| k))
        .collect();
    assert!(
        series.len() <= 100,
        "{} scim_requests series: {series:#?}",
        series.len()
    );
    for want in [
        r#"route="other",method="other",status="401""#,
        r#"route="other",method="GET",status="401""#,
        r#"route="/Users/{id}",method="GET",status="401""#,
        r#"route="/Users/.search",method="GET",status="401""#,
    ] {
        assert!(
            series.iter().any(|s| s.contains(want)),
            "{want} missing: {series:#?}"
        );
    }
    assert!(!text.contains("/a/a") && !text.contains("FOO") && !text.contains("uSeRs"));
}

#[tokio::test]
async fn auth_failures_log_one_bounded_line_with_the_peer() {
    let capture = LogCapture::start(tracing::Level::INFO);

    let s = Server::start().await;
    let long_method = "X".repeat(5_000);
    let mut sent = 0;
    for (i, method) in ["FOO", "get", long_method.as_str()].into_iter().enumerate() {
        let req = long_tokenless_request(&s, i, method);
        // A query string an unauthenticated client sends never reaches the log.
        let req = req.replacen(
            " HTTP/1.1",
            "?filter=userName+eq+%22secret-canary%40example.com%22 HTTP/1.1",
            1,
        );
        let (status, _) = s.raw(&req).await;
        assert_eq!(status, 401);
        sent += 1;
    }

    let logs = capture.text();
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("scim request refused"))
        .collect();
    assert_eq!(refused.len(), sent, "{logs:.2000}");
    for line in &refused {
        assert!(line.len() < 800, "{} bytes: {line:.1000}", line.len());
        assert!(line.contains("peer=127.0.0.1:"), "{line}");
        assert!(line.contains("status=401"), "{line}");
        assert!(line.contains("more bytes]"), "{line}");
    }
    assert!(refused.iter().any(|l| l.contains("method=FOO")));
    assert!(!logs.contains("secret-canary"), "query string logged");
    assert!(
        logs.lines().all(|l| l.len() < 800),
        "a log line is unbounded"
    );
    // One line per request: the refusal is the request's log line, not an extra one.
    assert!(!logs
        .lines()
        .any(|l| l.contains("status=401") && !l.contains("refused")));
}

fn create_request(s: &Server, host: &str, user_name: &str) -> String {
    let body = serde_json::to_string(&user(user_name)).unwrap();
    format!(
        "POST {}/Users HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {SCIM_TOKEN}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.base_path,
        body.len()
    )
}

fn get_request(s: &Server, host: &str, path: &str) -> String {
    format!(
        "GET {}{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {SCIM_TOKEN}\r\nConnection: close\r\n\r\n",
        s.base_path
    )
}

#[tokio::test]
async fn location_never_comes_from_the_host_header() {
    let s = Server::start().await;
    let (status, head, body) =
        raw_full(&s, &create_request(&s, "evil.example", "h1@example.com")).await;
    assert_eq!(status, 201, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    let id = json["id"].as_str().unwrap();
    let location = header(&head, "location").unwrap();
    // No public_url: the listener's own address (s.base is http://127.0.0.1:PORT/scim/v2).
    assert_eq!(location, format!("{}/Users/{id}", s.base));
    assert_eq!(json["meta"]["location"], location.as_str());

    let gid = s.create_group("h1", &[id]).await;
    for path in [
        format!("/Users/{id}"),
        format!("/Groups/{gid}"),
        "/Users".to_string(),
        "/ServiceProviderConfig".to_string(),
        "/ResourceTypes".to_string(),
        "/Schemas".to_string(),
    ] {
        let (status, _, body) = raw_full(&s, &get_request(&s, "evil.example", &path)).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(!body.contains("evil.example"), "{path}: {body}");
        assert!(body.contains(&s.base), "{path}: {body}");
    }
}

#[tokio::test]
async fn location_uses_public_url_when_set() {
    const PUBLIC: &str = "https://scim.example.com/scim/v2";
    let s = Server::start_with(&format!("public_url = \"{PUBLIC}\"")).await;
    let (status, head, body) =
        raw_full(&s, &create_request(&s, "evil.example", "h2@example.com")).await;
    assert_eq!(status, 201, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    let id = json["id"].as_str().unwrap();
    let location = header(&head, "location").unwrap();
    assert_eq!(location, format!("{PUBLIC}/Users/{id}"));
    assert_eq!(json["meta"]["location"], location.as_str());
    let (_, _, body) = raw_full(
        &s,
        &get_request(&s, "evil.example", &format!("/Users/{id}")),
    )
    .await;
    assert!(!body.contains("evil.example"), "{body}");
    assert!(body.contains(&format!("{PUBLIC}/Users/{id}")), "{body}");
}
