//! Target 4b: the list endpoints' query-string helpers (`PageQuery::new`, `cursor`, `limit`,
//! `finish`) on a request whose query string the fuzzer writes.
//!
//! Properties: never panics; allocates at most linearly in the query; a cursor is never
//! negative; the limit is always in `1..=max`; `finish` fails exactly when some value was
//! refused.

#![no_main]

use fawkes::web::request::{DEFAULT_PAGE, PageQuery, query};
use fawkes_fuzz::{bounded, query_from_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the endpoint's maximum page size (0 is not a real maximum).
    let Some((&max, rest)) = data.split_first() else {
        return;
    };
    let max = u64::from(max.max(1));
    let uri = format!("/api/conversations?{}", query_from_bytes(rest));
    if uri.len() >= usize::from(u16::MAX) - 1 {
        return; // `http` refuses URIs this long; hyper answers 414 before any handler runs.
    }
    let request = http::Request::get(uri)
        .body(())
        .expect("an escaped query is a valid URI");

    let (after, before, limit, finished) = bounded("PageQuery", rest.len(), || {
        let mut page = PageQuery::new(&request);
        let after = page.cursor("after");
        let before = page.cursor("before");
        let limit = page.limit(max);
        (after, before, limit, page.finish())
    });

    assert!(after.is_none_or(|n| n >= 0) && before.is_none_or(|n| n >= 0));
    assert!(
        (1..=max).contains(&limit),
        "limit {limit} outside 1..={max}"
    );

    // Recompute which values were refused, from the parsed parameters.
    let params = query(&request);
    let given = |name: &str| params.get(name).filter(|v| !v.is_empty());
    let bad_cursor =
        |name: &str| given(name).is_some_and(|v| v.parse::<i64>().map_or(true, |n| n < 0));
    let bad_limit =
        given("limit").is_some_and(|v| v.parse::<u64>().map_or(true, |n| !(1..=max).contains(&n)));
    let refused = bad_cursor("after") || bad_cursor("before") || bad_limit;
    assert_eq!(
        finished.is_err(),
        refused,
        "finish disagrees for {params:?}"
    );
    if !refused && given("limit").is_none() {
        assert_eq!(limit, DEFAULT_PAGE.min(max));
    }
});
