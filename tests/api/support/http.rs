//! A small HTTP client over hyper-util, answering with status, headers and parsed JSON.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub type Body = Full<Bytes>;

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: ::http::HeaderMap,
    /// The body parsed as JSON, or `Null` when empty or not JSON.
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the response is a JSON error body (never HTML, plain text or empty).
    pub fn assert_json_error(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "content-type of a {status}: {:?}",
            self.header("content-type")
        );
        assert!(self.body["errors"].is_object(), "error body: {}", self.text);
        &self.body["errors"]
    }
}

pub struct Client(hyper_util::client::legacy::Client<HttpConnector, Body>);

impl Client {
    pub fn new() -> Self {
        Self(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http())
    }

    /// A client whose connections leave from `source` (a local address, e.g. 127.0.0.2).
    pub fn bound_to(source: std::net::IpAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(source));
        Self(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector))
    }

    pub async fn send(&self, request: ::http::Request<Body>) -> Resp {
        let response = self.0.request(request).await.expect("HTTP request");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("response body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        }
    }
}
