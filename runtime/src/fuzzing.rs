//! Entry points for fuzz targets: pure functions over untrusted input. Not a stable API.

use super::transport::{self, TransportConfig};

/// Every check the WebSocket upgrade makes on a request, except `connect`, with the default
/// transport settings. Never panics.
///
/// The checks run in Phoenix's order (method, origin, subprotocols and the auth token they
/// carry, query parameters and `vsn`, then the upgrade headers); the first that fails gives
/// the status the upgrade would answer with.
pub fn upgrade_request(request: &http::Request<()>) -> Result<(), http::StatusCode> {
    let config = TransportConfig::default();
    transport::request_checks(request, &config).map_err(|refusal| refusal.status)?;
    transport::upgrade_headers(request.headers())
        .map(|_| ())
        .map_err(|refusal| refusal.status)
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use proptest::prelude::*;

    use super::upgrade_request;

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::Request<()> {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a valid request")
    }

    const UPGRADE: [(&str, &str); 5] = [
        ("host", "example.com"),
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        UPGRADE.iter().chain(extra).copied().collect()
    }

    #[test]
    fn each_check_answers_with_its_status_in_phoenix_order() {
        let ok = "/socket/websocket?vsn=2.0.0";
        assert_eq!(upgrade_request(&request("GET", ok, &UPGRADE)), Ok(()));
        let token = "phoenix, base64url.bearer.phx.dG9rZW4";
        assert_eq!(
            upgrade_request(&request(
                "GET",
                ok,
                &with(&[("sec-websocket-protocol", token)])
            )),
            Ok(())
        );
        type Case = (
            &'static str,
            &'static str,
            Vec<(&'static str, &'static str)>,
            StatusCode,
        );
        let cases: [Case; 7] = [
            ("POST", ok, UPGRADE.to_vec(), StatusCode::BAD_REQUEST),
            (
                "GET",
                ok,
                with(&[("origin", "https://evil.example")]),
                StatusCode::FORBIDDEN,
            ),
            (
                "GET",
                ok,
                with(&[("sec-websocket-protocol", "phoenix, base64url.bearer.phx.!!")]),
                StatusCode::FORBIDDEN,
            ),
            (
                "GET",
                ok,
                with(&[("sec-websocket-protocol", "graphql-ws")]),
                StatusCode::FORBIDDEN,
            ),
            (
                "GET",
                "/socket/websocket?vsn=3.0.0",
                UPGRADE.to_vec(),
                StatusCode::FORBIDDEN,
            ),
            (
                "GET",
                "/socket/websocket?vsn[]=2.0.0",
                UPGRADE.to_vec(),
                StatusCode::FORBIDDEN,
            ),
            (
                "GET",
                ok,
                vec![("host", "example.com")],
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (method, uri, headers, status) in cases {
            assert_eq!(
                upgrade_request(&request(method, uri, &headers)),
                Err(status),
                "{method} {uri} {headers:?}"
            );
        }
        // The origin is checked before the upgrade headers, as Phoenix does.
        let both = request(
            "GET",
            ok,
            &[("host", "example.com"), ("origin", "https://evil.example")],
        );
        assert_eq!(upgrade_request(&both), Err(StatusCode::FORBIDDEN));
    }

    proptest! {
        #[test]
        fn arbitrary_requests_never_panic(
            method in "[A-Z]{1,8}",
            query in "[ -~]{0,40}",
            values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 7),
        ) {
            let names = [
                "host", "origin", "sec-websocket-protocol", "connection", "upgrade",
                "sec-websocket-version", "sec-websocket-key",
            ];
            let mut builder = http::Request::builder().method(method.as_str());
            let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
            builder = builder.uri(format!("/socket/websocket?{encoded}&{query}").as_str());
            for (name, value) in names.iter().zip(&values) {
                if let Ok(value) = http::HeaderValue::from_bytes(value) {
                    builder = builder.header(*name, value);
                }
            }
            if let Ok(request) = builder.body(()) {
                let _ = upgrade_request(&request);
            }
        }
    }
}
