//! Query-string decoding and pagination.

use std::collections::HashMap;

use crate::error::ApiError;

/// Decoded query parameters; a repeated key keeps its last value.
#[derive(Debug, Default, Clone)]
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    pub(crate) fn parse(raw: &str) -> Self {
        let mut map = HashMap::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode(k), decode(v));
        }
        Query(map)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// First of several spellings that is present (the API mixes camelCase and snake_case).
    pub(crate) fn any(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|k| self.get(k))
    }

    /// A filter value; an empty value counts as absent, as most HTTP APIs treat `?email=`.
    pub(crate) fn filter(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// The 0-based page number, used by the `fail_page` fault.
    pub(crate) fn page_number(&self) -> Option<u64> {
        match self.any(&["current_page", "currentPage"]) {
            None => Some(0),
            Some(v) => v.trim().parse().ok(),
        }
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A 0-based page window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Page {
    pub(crate) size: usize,
    pub(crate) index: usize,
}

impl Page {
    /// Reads `pageSize`/`page_size` and `currentPage`/`current_page`. Sizes above `max` are
    /// clamped (a guess: the real maximum is not documented); 0 or garbage is a 400.
    pub(crate) fn from_query(q: &Query, max: usize) -> Result<Self, ApiError> {
        let size = match q.any(&["page_size", "pageSize"]) {
            None => max,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(0) | Err(_) => {
                    return Err(ApiError::BadRequest(format!("invalid page size '{v}'")))
                }
                Ok(n) => n.min(max),
            },
        };
        let index = match q.any(&["current_page", "currentPage"]) {
            None => 0,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| ApiError::BadRequest(format!("invalid current page '{v}'")))?,
        };
        Ok(Page {
            size: size.max(1),
            index,
        })
    }

    /// The `[start, end)` window into a list of `len` items.
    pub(crate) fn bounds(&self, len: usize) -> (usize, usize) {
        let start = self.index.saturating_mul(self.size).min(len);
        let end = start.saturating_add(self.size).min(len);
        (start, end)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_and_plus() {
        let q = Query::parse("email=a%2Bb%40x.io&name=Team+One&x&bad=%zz%4");
        assert_eq!(q.get("email"), Some("a+b@x.io"));
        assert_eq!(q.get("name"), Some("Team One"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.get("bad"), Some("%zz%4"));
    }

    #[test]
    fn page_bounds() {
        let p = Page { size: 10, index: 2 };
        assert_eq!(p.bounds(25), (20, 25));
        assert_eq!(p.bounds(5), (5, 5));
        let q = Query::parse("pageSize=1000&currentPage=1");
        let p = Page::from_query(&q, 100).unwrap();
        assert_eq!((p.size, p.index), (100, 1));
        assert!(Page::from_query(&Query::parse("page_size=0"), 100).is_err());
        assert!(Page::from_query(&Query::parse("current_page=-1"), 100).is_err());
    }
}
