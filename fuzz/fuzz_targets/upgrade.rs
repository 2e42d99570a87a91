//! Target 5: the WebSocket upgrade checks (method, origin, subprotocols and the auth token,
//! `vsn`, the upgrade headers), everything but `connect`, through
//! `fawkes::runtime::fuzzing::upgrade_request`.
//!
//! Built with the `upgrade` feature (on by default).
//!
//! The input is read as a request head: the first line is `METHOD URI`, each further line a
//! `name: value` header (a line without `:` is skipped). Parts `http` refuses are dropped, so
//! most inputs still reach the checks. Properties: never panics; allocates at most linearly
//! in the input; a refusal is a client error (4xx).

#![no_main]

use fawkes_fuzz::bounded;
use libfuzzer_sys::fuzz_target;

fn request(data: &[u8]) -> Option<http::Request<()>> {
    let mut lines = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next()?;
    let (method, uri) = match first.iter().position(|&b| b == b' ') {
        Some(at) => (&first[..at], &first[at + 1..]),
        None => (&b"GET"[..], first),
    };
    let mut builder = http::Request::builder()
        .method(http::Method::from_bytes(method).ok()?)
        .uri(http::Uri::try_from(uri).ok()?);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = http::HeaderName::from_bytes(&line[..colon]);
        let value = http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (name, value) {
            builder = builder.header(name, value);
        }
    }
    builder.body(()).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(request) = request(data) else {
        return;
    };
    let checked = bounded("upgrade_request", data.len(), || {
        fawkes::runtime::fuzzing::upgrade_request(&request)
    });
    if let Err(status) = checked {
        assert!(status.is_client_error(), "upgrade refused with {status}");
    }
});
