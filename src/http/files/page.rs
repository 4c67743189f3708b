//! One page of a version's file list: `?limit` files after `?cursor`, in path order. The cursor
//! is the last path of the previous page, base64url-encoded so it is opaque and URL-safe.
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::ApiError;

/// The most files one answer lists, and the default.
pub const MAX_PAGE: usize = 1000;

pub struct PageRequest {
    after: Option<String>,
    limit: usize,
}

impl PageRequest {
    pub fn from_query(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let limit = match query.get("limit") {
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("limit must be an integer from 1 to {MAX_PAGE}, got {raw:?}"),
                    )
                })?,
            None => MAX_PAGE,
        };
        let after = match query.get("cursor").filter(|c| !c.is_empty()) {
            Some(raw) => Some(decode(raw).ok_or_else(|| {
                ApiError::bad_request("invalid_query", "cursor is not one this API gave out")
            })?),
            None => None,
        };
        Ok(Self { after, limit })
    }

    /// This page's entries, and the cursor of the next page when more follow.
    pub fn select<'a, V>(
        &self,
        entries: &'a BTreeMap<String, V>,
    ) -> (Vec<(&'a String, &'a V)>, Option<String>) {
        let start = match &self.after {
            Some(after) => Bound::Excluded(after.as_str()),
            None => Bound::Unbounded,
        };
        let mut page: Vec<_> = entries
            .range::<str, _>((start, Bound::Unbounded))
            .take(self.limit + 1)
            .collect();
        let next = if page.len() > self.limit {
            page.truncate(self.limit);
            page.last()
                .map(|(path, _)| URL_SAFE_NO_PAD.encode(path.as_bytes()))
        } else {
            None
        };
        (page, next)
    }
}

fn decode(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pages_walk_every_entry_once_in_order() {
        let entries: BTreeMap<String, u32> = (0..7).map(|i| (format!("f{i}"), i)).collect();
        let mut seen = Vec::new();
        let mut cursor = String::new();
        loop {
            let request = PageRequest::from_query(&query(&[("limit", "3"), ("cursor", &cursor)]))
                .expect("valid");
            let (page, next) = request.select(&entries);
            seen.extend(page.into_iter().map(|(_, v)| *v));
            match next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn bad_limits_and_cursors_are_refused() {
        for pairs in [
            vec![("limit", "0")],
            vec![("limit", "1001")],
            vec![("limit", "x")],
            vec![("cursor", "!!")],
        ] {
            assert!(
                PageRequest::from_query(&query(&pairs)).is_err(),
                "{pairs:?}"
            );
        }
        let request = PageRequest::from_query(&query(&[])).expect("defaults");
        assert_eq!(request.limit, MAX_PAGE);
    }
}
