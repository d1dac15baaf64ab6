//! The Prometheus alert rules (contrib/prometheus) and the Grafana dashboard (contrib/grafana)
//! name only metrics the daemon exports. `promtool check rules` runs in CI when installed; this
//! test runs everywhere.

use crate::common::wait_for;
use crate::e2e;
use portkey_sim::Quirks;
use std::collections::BTreeSet;
use std::time::Duration;

const RULES: &str = include_str!("../../contrib/prometheus/scim-sync-alerts.yml");
const DASHBOARD: &str = include_str!("../../contrib/grafana/scim-sync-dashboard.json");

/// Every `scim_sync_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("scim_sync_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// The sample names a scrape can hold: each `# TYPE` family with the suffixes of its type.
fn exported(scrape: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            _ => &[""],
        };
        for s in suffixes {
            out.insert(format!("{name}{s}"));
        }
    }
    out
}

#[tokio::test]
async fn alert_rules_and_the_dashboard_name_only_exported_metrics() {
    // A daemon that has done a little of everything, so that every labelled family has a
    // sample (an empty family is not rendered at all): a SCIM write, a run that invites someone
    // through the simulator, and an idle connection the server closed.
    let mut e = e2e::start(crate::common::sim::owner(), Quirks::default(), "").await;
    e.scim_extra = "idle_timeout_ms = 300\n".into();
    e.restart("").await;
    e.create_user("metrics@example.com").await;
    e.resync().await;
    let addr = e
        .scim
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let _idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let metrics_url = format!("{}/metrics", e.admin);
    let scrape = wait_for(Duration::from_secs(10), "an idle connection closed", || {
        let (http, url) = (e.http.clone(), metrics_url.clone());
        async move {
            let text = http.get(url).send().await.ok()?.text().await.ok()?;
            text.contains("scim_sync_http_connections_closed_total{")
                .then_some(text)
        }
    })
    .await;
    let have = exported(&scrape);
    assert!(have.contains("scim_sync_store_file_bytes"), "{scrape}");

    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut exprs = String::new();
    for p in dashboard["panels"].as_array().unwrap() {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let e = t["expr"].as_str().unwrap();
            assert!(!e.trim().is_empty(), "empty query in {}", p["title"]);
            exprs.push_str(e);
            exprs.push('\n');
        }
    }

    let alerts = RULES.matches("- alert: ").count();
    assert_eq!(
        alerts,
        RULES.matches("expr: ").count(),
        "an alert without expr"
    );
    assert!(alerts >= 6, "{alerts} alerts");
    for (what, names) in [
        ("alert rules", metric_names(RULES)),
        ("dashboard", metric_names(&exprs)),
    ] {
        assert!(!names.is_empty());
        let missing: Vec<&String> = names.iter().filter(|n| !have.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "the {what} name metrics /metrics does not export: {missing:?}\n{scrape}"
        );
    }
    // Each area the operators asked for has an alert.
    for alert in [
        "ScimSyncControlPlaneFailing",
        "ScimSyncRunsFailing",
        "ScimSyncDeletionsHeld",
        "ScimSyncNoSuccessfulFullSync",
        "ScimSyncScimServerErrors",
        "ScimSyncStoreGrowing",
    ] {
        assert!(RULES.contains(&format!("- alert: {alert}\n")), "{alert}");
    }
}
