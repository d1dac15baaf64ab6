//! Prometheus metrics (OpenMetrics text via `prometheus-client`), served on the admin listener at
//! `GET /metrics`. One process-wide registry: the SCIM server, the control-plane client and the
//! reconciler record into it without plumbing handles through every layer.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

/// SCIM request labels. Route and method are `&'static str` so that they can only come from the
/// closed sets below, never from request bytes: every distinct label set is kept in memory and
/// rendered on each scrape for the life of the process, and tokenless clients choose the path
/// and method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScimLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

/// Every value the SCIM `route` label takes (paths relative to the SCIM base path).
pub const SCIM_ROUTES: [&str; 13] = [
    "/Users",
    "/Users/{id}",
    "/Users/.search",
    "/Groups",
    "/Groups/{id}",
    "/Groups/.search",
    "/.search",
    "/ServiceProviderConfig",
    "/ResourceTypes",
    "/ResourceTypes/{id}",
    "/Schemas",
    "/Schemas/{id}",
    "other",
];

/// Every value the SCIM `method` label takes.
pub const SCIM_METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other",
];

/// The `method` label: methods are case-sensitive (RFC 9110 §9.1), so `get` is `other`, as it is
/// for routing.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Which SCIM rate limit answered a 429: one of [`RATE_LIMITS`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    pub limit: &'static str,
}

/// Every value the `limit` label takes: a token over `[scim] rate_limit_per_second`, or the
/// shared limit on requests without a valid token.
pub const RATE_LIMITS: [&str; 2] = ["token", "unauthenticated"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub kind: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub endpoint: String,
    pub status: String,
}

/// Which HTTP listener: `"scim"` or `"admin"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

/// Connections the server closed on its own. `reason` is one of [`CONN_CLOSE_REASONS`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnClosedLabels {
    pub listener: &'static str,
    pub reason: &'static str,
}

/// Every value the connection-close `reason` label takes: `evicted` (the longest-idle connection,
/// to make room at the cap), `refused` (at the cap with every connection busy), `header_timeout`,
/// `idle_timeout`, `write_timeout` (the client read none of its answer for the idle timeout).
pub const CONN_CLOSE_REASONS: [&str; 5] = [
    "evicted",
    "refused",
    "header_timeout",
    "idle_timeout",
    "write_timeout",
];

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub scim_requests: Family<ScimLabels, Counter>,
    pub scim_request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub scim_rate_limited: Family<RateLimitLabels, Counter>,
    pub store_resources: Family<ResourceLabels, Gauge>,
    /// Size of the store file, for growth alerts (the change feed and audit log are trimmed;
    /// a file that keeps growing means they are not).
    pub store_file_bytes: Gauge,
    pub reconcile_runs: Family<RunLabels, Counter>,
    pub reconcile_run_duration: Histogram,
    pub reconcile_ops: Family<OpLabels, Counter>,
    pub held_deletions: Gauge,
    pub failing_ops: Gauge,
    pub reconcile_progress_done: Gauge,
    pub reconcile_progress_total: Gauge,
    pub last_full_sync: Gauge<f64, AtomicU64>,
    pub portkey_calls: Family<CallLabels, Counter>,
    pub portkey_retries: Counter,
    pub http_connections: Family<ListenerLabels, Gauge>,
    pub http_connections_closed: Family<ConnClosedLabels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("scim_sync");
        let m = Metrics {
            scim_requests: Family::default(),
            scim_request_duration: Family::new_with_constructor(latency_histogram),
            scim_rate_limited: Family::default(),
            store_resources: Family::default(),
            store_file_bytes: Gauge::default(),
            reconcile_runs: Family::default(),
            reconcile_run_duration: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            reconcile_ops: Family::default(),
            held_deletions: Gauge::default(),
            failing_ops: Gauge::default(),
            reconcile_progress_done: Gauge::default(),
            reconcile_progress_total: Gauge::default(),
            last_full_sync: Gauge::default(),
            portkey_calls: Family::default(),
            portkey_retries: Counter::default(),
            http_connections: Family::default(),
            http_connections_closed: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "scim_requests",
            "SCIM requests by route, method and status",
            m.scim_requests.clone(),
        );
        registry.register(
            "scim_request_duration_seconds",
            "SCIM request latency by route",
            m.scim_request_duration.clone(),
        );
        registry.register(
            "scim_rate_limited",
            "SCIM requests answered 429 by a rate limit (token or unauthenticated)",
            m.scim_rate_limited.clone(),
        );
        registry.register(
            "store_resources",
            "Resources in the store by type",
            m.store_resources.clone(),
        );
        registry.register(
            "store_file_bytes",
            "Size of the store file in bytes",
            m.store_file_bytes.clone(),
        );
        registry.register(
            "reconcile_runs",
            "Reconciliation runs by kind and result",
            m.reconcile_runs.clone(),
        );
        registry.register(
            "reconcile_run_duration_seconds",
            "Duration of reconciliation runs",
            m.reconcile_run_duration.clone(),
        );
        registry.register(
            "reconcile_ops",
            "Control-plane operations by kind and result (ok, failed, held, dry_run)",
            m.reconcile_ops.clone(),
        );
        registry.register(
            "held_deletions",
            "Destructive operations held by the deletion fuse, waiting for approval",
            m.held_deletions.clone(),
        );
        registry.register(
            "failing_ops",
            "Operations that failed and are retried with a backoff (quarantined)",
            m.failing_ops.clone(),
        );
        registry.register(
            "reconcile_progress_done",
            "Operations applied so far in the current run",
            m.reconcile_progress_done.clone(),
        );
        registry.register(
            "reconcile_progress_total",
            "Operations to apply in the current run",
            m.reconcile_progress_total.clone(),
        );
        registry.register(
            "last_successful_full_sync_timestamp_seconds",
            "Unix time of the last full reconciliation that succeeded",
            m.last_full_sync.clone(),
        );
        registry.register(
            "portkey_requests",
            "Control-plane HTTP requests by endpoint and status (error kind when no status)",
            m.portkey_calls.clone(),
        );
        registry.register(
            "portkey_retries",
            "Control-plane request retries (attempts after the first)",
            m.portkey_retries.clone(),
        );
        // Both series exist from the start, so a dashboard or alert sees 0 rather than nothing.
        for limit in RATE_LIMITS {
            m.scim_rate_limited
                .get_or_create(&RateLimitLabels { limit })
                .inc_by(0);
        }
        registry.register(
            "http_connections",
            "Open HTTP connections by listener (scim, admin)",
            m.http_connections.clone(),
        );
        registry.register(
            "http_connections_closed",
            "HTTP connections the server closed on its own, by listener and reason \
             (evicted, refused, header_timeout, idle_timeout, write_timeout)",
            m.http_connections_closed.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// A low-cardinality label for a control-plane path: ids become `:id`.
pub fn endpoint_label(method: &str, path: &str) -> String {
    const LITERALS: [&str; 5] = ["admin", "users", "invites", "workspaces", "resend"];
    let template: Vec<&str> = path
        .split('?')
        .next()
        .unwrap_or_default()
        .split('/')
        .map(|s| {
            if s.is_empty() || LITERALS.contains(&s) {
                s
            } else {
                ":id"
            }
        })
        .collect();
    format!("{method} {}", template.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_labels_hide_ids() {
        assert_eq!(
            endpoint_label("DELETE", "/admin/workspaces/ws-x-12/users/1b2c"),
            "DELETE /admin/workspaces/:id/users/:id"
        );
        assert_eq!(endpoint_label("GET", "/admin/users"), "GET /admin/users");
        assert_eq!(
            endpoint_label("POST", "/admin/users/invites/9/resend"),
            "POST /admin/users/invites/:id/resend"
        );
    }

    #[test]
    fn method_labels_are_a_closed_set() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("OPTIONS"), "OPTIONS");
        assert_eq!(method_label("get"), "other");
        assert_eq!(method_label("FOO"), "other");
        assert_eq!(method_label("other"), "other");
        for m in SCIM_METHODS {
            assert_eq!(method_label(m), m);
        }
    }

    #[test]
    fn renders_registered_families() {
        metrics().held_deletions.set(3);
        let text = metrics().render();
        assert!(text.contains("scim_sync_held_deletions 3"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
