//! The `ListResponse` message (RFC 7644 §3.4.2): one page of query results, or every entry of
//! a discovery endpoint.

use crate::scim::schema::LIST_RESPONSE_SCHEMA;
use serde::Serialize;
use serde_json::Value;

/// A page of `resources` out of `total` matches, the first being match number `start_index`
/// (1-based). Resources of any serialisable kind: those of [`crate::scim::render`] are written
/// as they are read.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    #[serde(rename = "Resources")]
    resources: Vec<T>,
    #[serde(rename = "itemsPerPage")]
    items_per_page: usize,
    schemas: [&'static str; 1],
    #[serde(rename = "startIndex")]
    start_index: usize,
    #[serde(rename = "totalResults")]
    total_results: usize,
}

pub fn page<T: Serialize>(total: usize, start_index: usize, resources: Vec<T>) -> Page<T> {
    Page {
        items_per_page: resources.len(),
        resources,
        schemas: [LIST_RESPONSE_SCHEMA],
        start_index,
        total_results: total,
    }
}

/// Every entry of a discovery endpoint on one page.
pub fn complete(resources: Vec<Value>) -> Page<Value> {
    page(resources.len(), 1, resources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_counts_what_it_carries() {
        let page =
            serde_json::to_value(page(7, 3, vec![json!({"id": "a"}), json!({"id": "b"})])).unwrap();
        assert_eq!(
            page,
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": 7,
                "startIndex": 3,
                "itemsPerPage": 2,
                "Resources": [{"id": "a"}, {"id": "b"}],
            })
        );
        assert_eq!(
            serde_json::to_value(complete(vec![])).unwrap(),
            serde_json::to_value(super::page::<Value>(0, 1, vec![])).unwrap()
        );
    }
}
