//! OpenTelemetry traces: the real binary (a global subscriber is one per process) exports to
//! an OTLP/HTTP receiver run by the test, which decodes the protobuf batches. A request that
//! carries a W3C `traceparent` continues the caller's trace, its statements are its
//! children, the socket's connect, join and `handle_in` have spans of their own, and the
//! resource names the service and the node. With `otel.endpoint` unset nothing is sent.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::json;

use crate::support::process::{Process, serve_binary};
use crate::support::{TestDb, TestServer};

/// What the receiver got: every POST's path, and the batches decoded from `/v1/traces`.
#[derive(Default)]
struct Received {
    posts: Vec<String>,
    batches: Vec<ExportTraceServiceRequest>,
}

/// An OTLP/HTTP receiver on port 0 (protobuf, `POST /v1/traces`).
struct Receiver {
    url: String,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let received = Arc::new(Mutex::new(Received::default()));
        let store = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let store = store.clone();
                        async move { Ok::<_, Infallible>(receive(&store, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url,
            received,
            task,
        }
    }

    fn posts(&self) -> Vec<String> {
        self.received.lock().expect("lock").posts.clone()
    }

    /// Every span received, with the resource attributes of its batch.
    fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let received = self.received.lock().expect("lock");
        let mut spans = Vec::new();
        for batch in &received.batches {
            for resource_spans in &batch.resource_spans {
                let resource = resource_spans
                    .resource
                    .as_ref()
                    .map(|r| r.attributes.clone())
                    .unwrap_or_default();
                for scope in &resource_spans.scope_spans {
                    for span in &scope.spans {
                        spans.push((resource.clone(), span.clone()));
                    }
                }
            }
        }
        spans
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    store: &Mutex<Received>,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let decoded = ExportTraceServiceRequest::decode(body);
    let mut received = store.lock().expect("lock");
    received.posts.push(path.clone());
    let status = match decoded {
        Ok(batch) if path == "/v1/traces" => {
            received.batches.push(batch);
            200
        }
        _ => 400,
    };
    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
    response.headers_mut().insert(
        "content-type",
        "application/x-protobuf".parse().expect("type"),
    );
    response
}

/// An attribute's value as text (integers in decimal).
fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The binary over `db`, with `env` added; port 0.
async fn serve(dir: &std::path::Path, env: &[(&str, &str)]) -> (Process, TestServer) {
    serve_binary(dir, TestDb::new().await, &[], env)
}

/// SIGTERM (the exit path flushes the batched spans), then waits for the exit.
async fn terminate(mut process: Process) -> Vec<String> {
    process.terminate();
    tokio::task::spawn_blocking(move || {
        let status = process.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "exit status {status:?}");
        while process.next_line(Duration::from_millis(200)).is_some() {}
        process.log.clone()
    })
    .await
    .expect("exit")
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn requests_statements_and_socket_messages_reach_the_collector_with_their_links() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("dir");
    // Exports only at exit: what arrives was flushed on the way out.
    let (process, t) = serve(
        dir.path(),
        &[
            ("FAWKES_OTEL__ENDPOINT", receiver.url.as_str()),
            ("FAWKES_OTEL__BATCH_DELAY_MS", "600000"),
            ("FAWKES_NODE_NAME", "trace-node-1"),
        ],
    )
    .await;
    assert!(
        process
            .log
            .iter()
            .any(|l| l.contains("traces: exporting spans over OTLP/HTTP")),
        "{:#?}",
        process.log
    );
    let (id, token) = t.user("ann@example.com").await;

    let mut request = t.request("GET", &format!("/api/v1/users/{id}"), Some(&token), None);
    request.headers_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_ID}-01")
            .parse()
            .expect("header"),
    );
    let resp = t.send(request).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let request_id = resp.header("x-request-id").expect("request id").to_owned();

    let mut socket = t.socket(&token).await;
    let (join_ref, reply) = socket.join("room:lobby", json!({})).await;
    assert_eq!(reply.status(), Some("ok"), "{reply:?}");
    let msg_ref = socket
        .push(&join_ref, "room:lobby", "ping", json!({"n": 1}))
        .await;
    assert_eq!(socket.reply(&msg_ref).await.status(), Some("ok"));
    drop(socket);
    assert!(receiver.spans().is_empty(), "nothing before the flush");

    let log = terminate(process).await;
    let spans = receiver.spans();
    assert!(!spans.is_empty(), "spans flushed at exit; log: {log:#?}");
    for (resource, _) in &spans {
        assert_eq!(attr(resource, "service.name").as_deref(), Some("fawkes"));
        assert_eq!(
            attr(resource, "service.instance.id").as_deref(),
            Some("trace-node-1")
        );
    }
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();

    // The request continues the caller's trace, under the caller's span.
    let (_, request) = spans
        .iter()
        .find(|(_, s)| s.name == "GET /api/v1/users/{id}")
        .unwrap_or_else(|| panic!("no request span among {names:?}"));
    assert_eq!(hex(&request.trace_id), TRACE_ID);
    assert_eq!(hex(&request.parent_span_id), PARENT_ID);
    assert_eq!(request.kind, SpanKind::Server as i32);
    let a = &request.attributes;
    assert_eq!(attr(a, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(a, "http.route").as_deref(), Some("/api/v1/users/{id}"));
    assert_eq!(attr(a, "route").as_deref(), Some("/api/v1/users/{id}"));
    assert_eq!(attr(a, "url.path"), Some(format!("/api/v1/users/{id}")));
    assert_eq!(attr(a, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(a, "request_id"), Some(request_id));
    assert_eq!(attr(a, "user_id"), Some(id.to_string()));

    // Its statements are its descendants, in the same trace.
    let by_id = |span_id: &[u8]| spans.iter().map(|(_, s)| s).find(|s| s.span_id == span_id);
    let statement = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.trace_id == request.trace_id && attr(&s.attributes, "db.system").is_some())
        .find(|s| {
            let mut parent = by_id(&s.parent_span_id);
            while let Some(p) = parent {
                if p.span_id == request.span_id {
                    return true;
                }
                parent = by_id(&p.parent_span_id);
            }
            false
        })
        .unwrap_or_else(|| panic!("no statement under the request among {names:?}"));
    assert!(statement.name.starts_with("sea_orm."), "{}", statement.name);
    let system = attr(&statement.attributes, "db.system").expect("db.system");
    assert!(
        ["sqlite", "postgresql"].contains(&system.as_str()),
        "{system}"
    );
    assert!(attr(&statement.attributes, "db.operation").is_some());
    assert_eq!(statement.kind, SpanKind::Client as i32);

    // Statements outside any exported span (the migrations at start) make no trace.
    for (_, span) in &spans {
        if span.name.starts_with("sea_orm.") {
            assert!(!span.parent_span_id.is_empty(), "orphan {}", span.name);
        }
    }

    // A request with no traceparent starts a trace of its own.
    let (_, register) = spans
        .iter()
        .find(|(_, s)| s.name == "POST /api/v1/users")
        .unwrap_or_else(|| panic!("no register span among {names:?}"));
    assert!(register.parent_span_id.is_empty());
    assert_ne!(hex(&register.trace_id), TRACE_ID);
    assert_eq!(
        attr(&register.attributes, "http.response.status_code").as_deref(),
        Some("201")
    );

    // The socket: its connect, the join and the message, each with its topic and pattern.
    let find = |name: &str| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span among {names:?}"))
    };
    let connect = find("socket.connect");
    assert_eq!(
        attr(&connect.attributes, "http.response.status_code").as_deref(),
        Some("101")
    );
    for span in [find("channel.join"), find("channel.handle_in")] {
        let a = &span.attributes;
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert!(span.parent_span_id.is_empty(), "a trace per message");
        assert_eq!(
            attr(a, "messaging.destination.name").as_deref(),
            Some("room:lobby")
        );
        assert_eq!(
            attr(a, "messaging.destination.template").as_deref(),
            Some("room:*")
        );
    }
    assert_eq!(
        attr(
            &find("channel.handle_in").attributes,
            "messaging.operation.name"
        )
        .as_deref(),
        Some("ping")
    );
    assert!(
        receiver.posts().iter().all(|p| p == "/v1/traces"),
        "{:?}",
        receiver.posts()
    );
}

#[tokio::test]
async fn with_no_endpoint_nothing_is_exported_and_the_log_is_as_before() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("dir");
    // The standard OpenTelemetry variable alone does not turn traces on.
    let (process, t) = serve(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.as_str())],
    )
    .await;
    let (id, token) = t.user("bo@example.com").await;
    let mut request = t.request("GET", &format!("/api/v1/users/{id}"), Some(&token), None);
    request.headers_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_ID}-01")
            .parse()
            .expect("header"),
    );
    assert_eq!(t.send(request).await.status, 200);
    let mut socket = t.socket(&token).await;
    let (_, reply) = socket.join("room:lobby", json!({})).await;
    assert_eq!(reply.status(), Some("ok"));
    drop(socket);

    let log = terminate(process).await;
    assert!(receiver.posts().is_empty(), "{:?}", receiver.posts());
    assert!(!log.iter().any(|l| l.contains("traces:")), "{log:#?}");
    // The request's log line: its span's fields as they always were, nothing of OpenTelemetry.
    let line = log
        .iter()
        .find(|l| l.contains("finished processing request") && l.contains("/api/v1/users/{id}"))
        .unwrap_or_else(|| panic!("no request line in {log:#?}"));
    assert!(
        line.contains(&format!(
            "request{{method=GET path=/api/v1/users/{id} route=\"/api/v1/users/{{id}}\" request_id="
        )),
        "{line}"
    );
    assert!(line.contains(&format!("user_id={id}")), "{line}");
    assert!(!line.contains("otel") && !line.contains("http."), "{line}");
}

#[tokio::test]
async fn an_https_endpoint_is_reached_over_tls() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("https://{}", listener.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("dir");
    let (process, t) = serve(
        dir.path(),
        &[
            ("FAWKES_OTEL__ENDPOINT", endpoint.as_str()),
            ("FAWKES_OTEL__BATCH_DELAY_MS", "50"),
        ],
    )
    .await;
    assert_eq!(t.get("/health", None).await.status, 200);
    // The exporter's first bytes: a TLS handshake record (22), version 3.x.
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = [0u8; 2];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut head)
            .await
            .expect("read");
        head
    })
    .await
    .expect("the exporter connects within 20 s");
    assert_eq!(first, [0x16, 0x03]);
    drop(process);
}

#[tokio::test]
async fn a_collector_that_cannot_be_reached_is_logged_and_changes_nothing_else() {
    // A port nothing listens on: bound, then closed.
    let endpoint = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let dir = tempfile::tempdir().expect("dir");
    let (process, t) = serve(
        dir.path(),
        &[
            ("FAWKES_OTEL__ENDPOINT", endpoint.as_str()),
            ("FAWKES_OTEL__BATCH_DELAY_MS", "600000"),
        ],
    )
    .await;
    let (id, token) = t.user("cy@example.com").await;
    let resp = t.get(&format!("/api/v1/users/{id}"), Some(&token)).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let log = terminate(process).await;
    assert!(
        log.iter()
            .any(|l| l.contains("ERROR") && l.contains("BatchSpanProcessor.ExportError")),
        "{log:#?}"
    );
}

#[tokio::test]
async fn a_collector_that_never_answers_does_not_hold_the_exit() {
    // Accepts connections and reads, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let accepted = Arc::new(Mutex::new(0usize));
    let count = accepted.clone();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            *count.lock().expect("lock") += 1;
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().expect("dir");
    let (process, t) = serve(
        dir.path(),
        &[
            ("FAWKES_OTEL__ENDPOINT", endpoint.as_str()),
            ("FAWKES_OTEL__BATCH_DELAY_MS", "600000"),
            ("FAWKES_OTEL__EXPORT_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    assert_eq!(t.get("/health", None).await.status, 200);
    // Exits (within the helper's deadline) although the flush never completes.
    terminate(process).await;
    assert!(*accepted.lock().expect("lock") >= 1, "the flush was tried");
    silent.abort();
}
