//! Requests for the schemes' unit tests: a header map and a view of it at a given time.

use crate::receiver::auth::RequestView;
use axum::http::HeaderMap;

pub fn view(h: &HeaderMap, now: i64) -> RequestView<'_> {
    RequestView {
        headers: h,
        query: &[],
        now,
    }
}

pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}
