//! SCIM users written straight into a store, the way the SCIM server would (normalize, then
//! create), with 256 creates in flight so that the writer commits them in groups.

use futures::StreamExt;
use scim_sync::scim::resource::normalize;
use scim_sync::scim::schema::ResourceKind;
use scim_sync::store::Store;
use serde_json::json;

/// Creates `n` active users, user `i` with the address `email(i)` as `userName` and primary
/// work email; returns their ids in order.
pub async fn users(store: &Store, n: usize, email: fn(usize) -> String) -> Vec<String> {
    futures::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            async move {
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": email(i),
                    "name": {"givenName": "Bench", "familyName": format!("User {i}")},
                    "emails": [{"primary": true, "value": email(i), "type": "work"}],
                    "active": true,
                });
                let n = normalize(ResourceKind::User, &body).unwrap();
                store.create(ResourceKind::User, n).await.unwrap().0.id
            }
        })
        .buffered(256)
        .collect()
        .await
}
