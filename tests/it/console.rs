//! The console's side of the admin listener: its assets need no token and carry the policy;
//! the documents it reads (audit search, recent runs) answer over HTTP. The browser tests are
//! in tests/console/ (headless Chromium, `bash tests/console/run.sh`).

use crate::e2e::{self, owner};
use portkey_sim::Quirks;
use serde_json::Value;

#[tokio::test]
async fn assets_need_no_token_and_the_audit_search_and_recent_runs_answer() {
    let e = e2e::start(owner(), Quirks::default(), "").await;
    // Without a token, as a browser first asks.
    let bare = |path: &str| e.http.get(format!("{}{path}", e.admin)).send();
    let page = bare("/console").await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(page.headers().get("set-cookie").is_none());
    assert!(page.text().await.unwrap().contains("console/console.js"));
    // The API behind it still needs the token.
    let denied = bare("/admin/audit").await.unwrap();
    assert_eq!(denied.status(), 401);

    e.create_user("alice@example.com").await;
    e.create_user("jimbob@example.com").await;
    e.create_user("bob@example.com").await;
    e.resync().await;
    e.resync().await;

    let admin = e.admin();
    let emails = |doc: &Value| -> Vec<String> {
        doc["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["op"]["email"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let all = admin.get("/admin/audit").await;
    assert!(emails(&all).len() >= 3, "{all}");
    // Any case; what is asked for, and what contains it.
    let bob = admin.get("/admin/audit?q=%20BOB@Example.com%20").await;
    let mut got = emails(&bob);
    got.sort();
    assert_eq!(got, vec!["bob@example.com", "jimbob@example.com"], "{bob}");
    let first = admin.get("/admin/audit?q=bob@example.com&limit=1").await;
    assert_eq!(emails(&first).len(), 1, "{first}");
    let next = first["next_before"].as_u64().expect("a next page");
    let rest = admin
        .get(&format!(
            "/admin/audit?q=bob@example.com&limit=1&before={next}"
        ))
        .await;
    assert_eq!(emails(&rest).len(), 1, "{rest}");
    assert_ne!(emails(&first), emails(&rest));
    let none = admin.get("/admin/audit?q=nobody-at-all").await;
    assert!(
        emails(&none).is_empty() && none.get("next_before").is_none(),
        "{none}"
    );

    // The last runs, newest first, the last one first of all.
    let st = e.status().await;
    let runs = st["recent_runs"].as_array().unwrap();
    assert!(runs.len() >= 3, "{st}");
    assert_eq!(runs[0], st["last_run"]);
    assert!(runs[0]["finished_at"].as_str() >= runs[1]["finished_at"].as_str());
    assert!(runs.iter().all(|r| r.get("results").is_none()));
}
