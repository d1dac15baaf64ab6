//! The `ListResponse` message (RFC 7644 §3.4.2): one page of query results, or every entry of
//! a discovery endpoint.

use crate::scim::schema::LIST_RESPONSE_SCHEMA;
use serde_json::{json, Value};

/// A page of `resources` out of `total` matches, the first being match number `start_index`
/// (1-based).
pub fn list_response(total: usize, start_index: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// Every entry of a discovery endpoint on one page.
pub fn complete(resources: Vec<Value>) -> Value {
    list_response(resources.len(), 1, resources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_counts_what_it_carries() {
        let page = list_response(7, 3, vec![json!({"id": "a"}), json!({"id": "b"})]);
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
        assert_eq!(complete(vec![]), list_response(0, 1, vec![]));
    }
}
