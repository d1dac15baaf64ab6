//! Limits on PATCH operations, list lengths, attribute sizes and filter cost.
//!
//! Every request over a limit gets a 400 with the SCIM type and a detail that names the limit and
//! the value, and is refused before the store's writer sees it, so writes from other clients are
//! not held up. Requests right at a limit go through.

use crate::common::{enc, patch_body, user, Resp, Server};
use scim_sync::scim::filter::{MAX_FILTER_COMPARISONS, MAX_SUBSTRING_COMPARISONS};
use scim_sync::scim::patch::{MAX_OPERATIONS, MAX_VALUES_PER_REQUEST};
use scim_sync::scim::resource::{MAX_MULTI_VALUES, MAX_STRING_BYTES};
use serde_json::{json, Value};

fn assert_refused(r: &Resp, scim_type: &str, detail: &str) {
    assert_eq!(r.status, 400, "{}", r.json);
    assert_eq!(r.json["status"], "400", "{}", r.json);
    assert_eq!(r.json["scimType"], scim_type, "{}", r.json);
    assert_eq!(r.json["detail"], detail, "{}", r.json);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/scim+json")
    );
}

fn title_ops(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"op": "replace", "path": "title", "value": format!("t{i}")}))
            .collect(),
    )
}

fn member_values(ids: impl Iterator<Item = String>) -> Value {
    Value::Array(ids.map(|id| json!({"value": id})).collect())
}

async fn total(s: &Server, path: &str, filter: &str) -> u64 {
    let r = s.get(&format!("{path}?filter={}", enc(filter))).await;
    assert_eq!(r.status, 200, "{}", r.json);
    r.json["totalResults"].as_u64().unwrap()
}

#[tokio::test]
async fn fifteen_thousand_operations_are_refused_while_a_create_goes_through() {
    let s = Server::start().await;
    let id = s.create_user("many-ops@example.com").await;
    let before = s.get(&format!("/Users/{id}")).await.json;

    // The issue's shape: the PATCH used to hold the writer for 18.7 s, and this POST waited.
    let path = format!("/Users/{id}");
    let (patched, created) = tokio::join!(
        s.patch(&path, patch_body(title_ops(15_000))),
        s.post("/Users", user("concurrent@example.com")),
    );
    assert_refused(
        &patched,
        "invalidValue",
        "the request has 15000 operations; the limit is 1000 per PATCH",
    );
    assert_eq!(created.status, 201, "{}", created.json);
    assert_eq!(created.json["userName"], "concurrent@example.com");
    assert_eq!(s.get(&format!("/Users/{id}")).await.json, before);

    // One over the limit, on a group with member operations (Okta's shape), is refused too.
    let gid = s.create_group("many-ops", &[&id]).await;
    let ops: Vec<Value> = (0..=MAX_OPERATIONS)
        .map(|i| json!({"op": "add", "path": "members", "value": [{"value": format!("u{i}")}]}))
        .collect();
    let r = s
        .patch(&format!("/Groups/{gid}"), patch_body(Value::Array(ops)))
        .await;
    assert_refused(
        &r,
        "invalidValue",
        "the request has 1001 operations; the limit is 1000 per PATCH",
    );
    assert_eq!(s.member_ids(&gid).await, vec![id]);
}

#[tokio::test]
async fn one_megabyte_display_name_is_refused_on_post_put_and_patch() {
    let s = Server::start().await;
    let big = "x".repeat(1_000_000);
    let detail = "displayName is 1000000 bytes long; the limit is 4096 bytes";

    let mut body = user("big@example.com");
    body["displayName"] = json!(big);
    let r = s.post("/Users", body.clone()).await;
    assert_refused(&r, "invalidValue", detail);
    assert_eq!(
        total(&s, "/Users", r#"userName eq "big@example.com""#).await,
        0
    );
    let r = s
        .post("/Groups", json!({"displayName": big, "members": []}))
        .await;
    assert_refused(&r, "invalidValue", detail);
    assert_eq!(s.get("/Groups?count=0").await.json["totalResults"], 0);

    let id = s.create_user("big@example.com").await;
    let path = format!("/Users/{id}");
    let stored = s.get(&path).await.json;
    let r = s.put(&path, body).await;
    assert_refused(&r, "invalidValue", detail);
    let r = s
        .patch(
            &path,
            patch_body(json!([{"op": "replace", "path": "displayName", "value": big}])),
        )
        .await;
    assert_refused(&r, "invalidValue", &format!("Operations[0]: {detail}"));
    // Entra's path-less form, behind a harmless first operation.
    let r = s
        .patch(
            &path,
            patch_body(json!([
                {"op": "replace", "path": "active", "value": "False"},
                {"op": "replace", "value": {"displayName": big, "name.givenName": "B"}}
            ])),
        )
        .await;
    assert_refused(&r, "invalidValue", &format!("Operations[1]: {detail}"));
    assert_eq!(s.get(&path).await.json, stored);
}

#[tokio::test]
async fn six_hundred_term_co_filter_is_too_many() {
    let s = Server::start().await;
    s.create_user("filter@example.com").await;
    let co = |n: usize| {
        (0..n)
            .map(|i| format!(r#"displayName co "x{i}""#))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let f = co(600);
    let detail = "the filter makes 600 co/sw/ew comparisons; the limit is 50";
    let r = s.get(&format!("/Users?filter={}", enc(&f))).await;
    assert_refused(&r, "tooMany", detail);
    let r = s.post("/Users/.search", json!({"filter": f})).await;
    assert_refused(&r, "tooMany", detail);
    let r = s.post("/.search", json!({"filter": f})).await;
    assert_refused(&r, "tooMany", detail);

    let eq = |n: usize| {
        (0..n)
            .map(|i| format!(r#"userName eq "u{i}""#))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc(&eq(MAX_FILTER_COMPARISONS + 1))
        ))
        .await;
    assert_refused(
        &r,
        "tooMany",
        "the filter makes 101 comparisons; the limit is 100",
    );

    // Right at the limits the query runs.
    let at = format!(
        r#"{} or displayName co "Family""#,
        co(MAX_SUBSTRING_COMPARISONS - 1)
    );
    assert_eq!(total(&s, "/Users", &at).await, 1);
    let at = format!(
        r#"{} or userName eq "filter@example.com""#,
        eq(MAX_FILTER_COMPARISONS - 1)
    );
    assert_eq!(total(&s, "/Users", &at).await, 1);
}

#[tokio::test]
async fn patches_right_at_each_limit_are_accepted() {
    let s = Server::start().await;
    let id = s.create_user("at-limit@example.com").await;
    let path = format!("/Users/{id}");

    let r = s.patch(&path, patch_body(title_ops(MAX_OPERATIONS))).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["title"], format!("t{}", MAX_OPERATIONS - 1));

    let at = "d".repeat(MAX_STRING_BYTES);
    let r = s
        .patch(
            &path,
            patch_body(json!([{"op": "replace", "path": "displayName", "value": at}])),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["displayName"], at.as_str());
    let r = s
        .patch(
            &path,
            patch_body(
                json!([{"op": "replace", "path": "displayName", "value": format!("{at}d")}]),
            ),
        )
        .await;
    assert_refused(
        &r,
        "invalidValue",
        "Operations[0]: displayName is 4097 bytes long; the limit is 4096 bytes",
    );

    // The created user has one email; 99 more take it to the limit, one more is refused.
    let emails = |from: usize, n: usize| {
        Value::Array(
            (from..from + n)
                .map(|i| json!({"value": format!("e{i}@example.com"), "type": "other"}))
                .collect(),
        )
    };
    let r = s
        .patch(
            &path,
            patch_body(
                json!([{"op": "add", "path": "emails", "value": emails(0, MAX_MULTI_VALUES - 1)}]),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        r.json["emails"].as_array().map(Vec::len),
        Some(MAX_MULTI_VALUES)
    );
    let r = s
        .patch(
            &path,
            patch_body(json!([{"op": "add", "path": "emails", "value": emails(1000, 1)}])),
        )
        .await;
    assert_refused(
        &r,
        "invalidValue",
        "Operations[0]: emails would have 101 values; the limit is 100",
    );
    // A deprovisioning PATCH on the full user still goes through.
    let r = s
        .patch(
            &path,
            patch_body(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["active"], false);
}

#[tokio::test]
async fn a_group_patch_with_the_most_member_values_is_accepted() {
    let s = Server::start().await;
    let mut real = Vec::new();
    for i in 0..5 {
        real.push(s.create_user(&format!("m{i}@example.com")).await);
    }
    let gid = s.create_group("big-batch", &[]).await;
    let path = format!("/Groups/{gid}");
    // Ids the store does not know are skipped, so the batch needs no 10,000 users to be real.
    let ids = |n: usize| {
        real.clone()
            .into_iter()
            .chain((real.len()..n).map(|i| format!("unknown-{i}")))
    };

    // Entra's batch shape, split over operations, exactly at the request limit.
    let half = MAX_VALUES_PER_REQUEST / 2;
    let all: Vec<String> = ids(MAX_VALUES_PER_REQUEST).collect();
    let r = s
        .patch(
            &path,
            patch_body(json!([
                {"op": "Add", "path": "members", "value": member_values(all[..half].iter().cloned())},
                {"op": "Add", "path": "members", "value": member_values(all[half..].iter().cloned())}
            ])),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.json);
    let mut want = real.clone();
    want.sort();
    assert_eq!(s.member_ids(&gid).await, want);

    // Okta's full push as one replace, at the limit, then one value over it.
    let r = s
        .patch(
            &path,
            patch_body(json!([{"op": "replace", "path": "members", "value": member_values(ids(MAX_VALUES_PER_REQUEST))}])),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.json);
    let r = s
        .patch(
            &path,
            patch_body(json!([
                {"op": "replace", "path": "members", "value": member_values(ids(MAX_VALUES_PER_REQUEST))},
                {"op": "remove", "path": format!("members[value eq \"{}\"]", real[0])}
            ])),
        )
        .await;
    assert_refused(
        &r,
        "invalidValue",
        "the request has 10001 list values (group members and values of multi-valued attributes); the limit is 10000 per PATCH",
    );
    assert_eq!(s.member_ids(&gid).await, want);
}
