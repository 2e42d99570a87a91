//! `GET /metrics` of the real binary after real traffic: REST requests, logins and a phoenix.js
//! client. The binary runs as a child process because the Prometheus recorder is
//! process-wide: in this test binary other servers would add to the counts.

// `interop.rs` includes it too; only `run_script` is used here.
#[allow(clippy::duplicate_mod, dead_code)]
#[path = "../js/node.rs"]
mod node;

use std::collections::BTreeMap;
use std::time::Duration;

use fawkes::config::Environment;
use serde_json::json;

use crate::support::process::{Process, serve_binary};
use crate::support::{TestDb, TestServer, eventually};

/// One scrape, parsed: every sample by metric name, with its labels.
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    text: String,
}

impl Scrape {
    /// Parses the Prometheus text format (comments skipped; a line it cannot read fails the test).
    fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| parse_sample(line).unwrap_or_else(|| panic!("unreadable sample: {line}")))
            .collect();
        Self {
            samples,
            text: text.to_owned(),
        }
    }

    /// The sum of the samples of `name` whose labels include `labels` (0 if none).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|(_, value)| value).sum()
    }

    /// Whether some sample of `name` has (at least) `labels`.
    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.matching(name, labels).next().is_some()
    }

    /// The value of the one sample of `name` with `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = self.matching(name, labels).collect();
        assert_eq!(found.len(), 1, "one {name}{labels:?} in:\n{}", self.text);
        found[0].1
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a BTreeMap<String, String>, f64)> + 'a {
        self.samples
            .iter()
            .filter(move |(n, have, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.get(*k).is_some_and(|have| have == v))
            })
            .map(|(_, labels, value)| (labels, *value))
    }
}

/// `name{k="v",…} value` (labels optional; values may hold escaped quotes).
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series.to_owned(), BTreeMap::new(), value));
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.strip_suffix('}')?.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => value.push(chars.next()?),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some((name.to_owned(), labels, value))
}

/// `GET url`, asserting a Prometheus text answer.
async fn scrape(t: &TestServer, url: &str) -> Scrape {
    let response = t
        .send(
            ::http::Request::get(url)
                .body(Default::default())
                .expect("request"),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(&response.text)
}

/// The binary on a fresh database (the test's: SQLite, or PostgreSQL with
/// `TEST_DATABASE_URL`), with `env` and `extra` settings; a client of it.
fn serve(
    dir: &std::path::Path,
    db: TestDb,
    env: &str,
    extra: &[(&str, &str)],
) -> (Process, TestServer) {
    serve_binary(dir, db, &["--env", env], extra)
}

const HTTP: &str = "fawkes_http_requests_total";

#[tokio::test]
async fn a_scrape_counts_real_http_traffic_and_logins() {
    let dir = tempfile::tempdir().expect("dir");
    // Two attempts per (address, e-mail) and per e-mail from all addresses (an address that
    // logged in is exempt from the latter).
    let limits = [
        ("FAWKES_RATE_LIMIT__LOGIN_PER_EMAIL_PER_MINUTE", "2"),
        (
            "FAWKES_RATE_LIMIT__LOGIN_PER_EMAIL_ALL_ADDRESSES_PER_MINUTE",
            "2",
        ),
    ];
    let (_process, t) = serve(dir.path(), TestDb::new().await, "dev", &limits);
    let metrics_url = format!("{}/metrics", t.url);
    let before = scrape(&t, &metrics_url).await;

    // REST: a registration, logins (right, wrong, over the address's limit; then from another
    // address: wrong, and locked), a 404 and a body over the limit (413, produced by a layer
    // under the metrics layer).
    let email = "counted@example.com";
    let (_, password) = t.register(email).await;
    let token = t.login(email, &password).await;
    let wrong = json!({"email": email, "password": "not the password"});
    let other = "127.0.0.2".parse().expect("address");
    for (from, status) in [
        (None, 401),
        (None, 429),
        (Some(other), 401),
        (Some(other), 429),
    ] {
        let response = match from {
            None => t.post("/api/v1/sessions", None, wrong.clone()).await,
            Some(from) => {
                t.call_from(from, "POST", "/api/v1/sessions", None, Some(wrong.clone()))
                    .await
            }
        };
        assert_eq!(response.status, status, "from {from:?}: {}", response.text);
    }
    assert_eq!(t.get("/no/such/route", None).await.status, 404);
    let big = json!({"user": {"name": "x".repeat(70 * 1024)}});
    assert_eq!(t.post("/api/v1/users", None, big).await.status, 413);

    // phoenix.js: connect, join room:lobby, post, leave (the runtime's metrics of this are
    // checked by the next test; here it is traffic the app's metrics must not count).
    let socket_url = format!("{}/socket", t.url.replace("http://", "ws://"));
    let output = node::run_script("metrics.mjs", &[&socket_url, &token]).await;
    assert!(output.contains("ok connected"), "{output}");

    let after = scrape(&t, &metrics_url).await;
    let moved =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);

    // The app's own metrics: exact, since nothing else reaches this process.
    let route = |route, method, class| {
        [
            ("route", route),
            ("method", method),
            ("status_class", class),
        ]
    };
    assert_eq!(
        moved(HTTP, &route("/api/v1/users", "POST", "2xx")),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(
        moved(HTTP, &route("/api/v1/users", "POST", "4xx")),
        1.0,
        "413: {}",
        after.text
    );
    assert_eq!(moved(HTTP, &route("/api/v1/sessions", "POST", "2xx")), 1.0);
    assert_eq!(moved(HTTP, &route("/api/v1/sessions", "POST", "4xx")), 4.0);
    assert_eq!(moved(HTTP, &route("unmatched", "GET", "4xx")), 1.0);
    // The first scrape, counted under its own route (not `unmatched`).
    assert_eq!(moved(HTTP, &route("/metrics", "GET", "2xx")), 1.0);
    // The WebSocket upgrade is a connection, not an HTTP request.
    assert!(
        !after.has(HTTP, &[("status_class", "1xx")]),
        "{}",
        after.text
    );
    // No path or topic ever becomes a label.
    assert!(!after.text.contains("/no/such/route"), "{}", after.text);
    assert!(!after.text.contains("room:lobby"), "{}", after.text);
    let sessions_ok = route("/api/v1/sessions", "POST", "2xx");
    assert_eq!(
        moved("fawkes_http_request_duration_seconds_count", &sessions_ok),
        1.0
    );
    let mut inf = sessions_ok.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        moved("fawkes_http_request_duration_seconds_bucket", &inf),
        1.0
    );
    let mut small = sessions_ok.to_vec();
    small.push(("le", "0.0005"));
    assert!(
        after.has("fawkes_http_request_duration_seconds_bucket", &small),
        "explicit buckets, not a summary: {}",
        after.text
    );
    assert_eq!(
        moved("fawkes_login_attempts_total", &[("outcome", "ok")]),
        1.0
    );
    for (outcome, count) in [
        ("invalid", 2.0),
        ("rate_limited", 1.0),
        ("locked", 1.0),
        ("error", 0.0),
    ] {
        assert_eq!(
            moved("fawkes_login_attempts_total", &[("outcome", outcome)]),
            count,
            "{outcome}: {}",
            after.text
        );
    }
    assert_eq!(
        moved("fawkes_rate_limited_total", &[("limiter", "login")]),
        2.0
    );
    assert_eq!(
        moved("fawkes_rate_limited_total", &[("limiter", "requests")]),
        0.0
    );
    assert_eq!(after.value("fawkes_db_pool_max_connections", &[]), 10.0);
    let in_use = after.value("fawkes_db_pool_connections", &[("state", "in_use")]);
    let idle = after.value("fawkes_db_pool_connections", &[("state", "idle")]);
    assert!(
        in_use >= 0.0 && idle >= 0.0 && in_use + idle <= 10.0,
        "{in_use} {idle}"
    );
    assert_eq!(
        after.value(
            "fawkes_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(after.sum(name, &[]) > 0.0, "{name} in:\n{}", after.text);
    }
    assert!(
        after.has("process_cpu_seconds_total", &[]),
        "{}",
        after.text
    );
}

/// The runtime's side of phoenix.js traffic (recorded by fawkes-runtime into the app's
/// recorder): one connection, one join on `room:*`, one client event, a broadcast.
#[tokio::test]
async fn a_scrape_counts_phoenix_js_traffic_in_the_runtime_metrics() {
    let dir = tempfile::tempdir().expect("dir");
    let (_process, t) = serve(dir.path(), TestDb::new().await, "dev", &[]);
    let metrics_url = format!("{}/metrics", t.url);
    let (_, token) = t.user("socket@example.com").await;
    let before = scrape(&t, &metrics_url).await;

    let socket_url = format!("{}/socket", t.url.replace("http://", "ws://"));
    let output = node::run_script("metrics.mjs", &[&socket_url, &token]).await;
    assert!(output.contains("ok connected"), "{output}");

    // Polled: the socket's close may still be in progress when the script exits.
    let runtime_moved = eventually(Duration::from_secs(5), || async {
        let now = scrape(&t, &metrics_url).await;
        let moved =
            |name: &str, labels: &[(&str, &str)]| now.sum(name, labels) - before.sum(name, labels);
        let room = [("pattern", "room:*")];
        let done = moved("fawkes_connections_accepted_total", &[]) == 1.0
            && moved("fawkes_joins_total", &[("pattern", "room:*"), ("outcome", "ok")]) == 1.0
            && moved("fawkes_client_events_total", &room) == 1.0
            // At least the post; presence changes may be broadcasts of their own.
            && moved("fawkes_broadcasts_total", &[("origin", "local")]) >= 1.0
            && moved("fawkes_deliveries_total", &[]) >= 1.0
            && moved("fawkes_join_duration_seconds_count", &room) == 1.0
            && moved("fawkes_handle_in_duration_seconds_count", &room) == 1.0
            && now.sum("fawkes_connections", &[]) == 0.0
            && now.has("fawkes_connections", &[])
            && now.has("fawkes_topics", &[])
            && now.has("fawkes_registry_sockets", &[]);
        done.then_some(())
    })
    .await;
    assert!(
        runtime_moved.is_some(),
        "runtime metrics did not move as expected:\n{}",
        scrape(&t, &metrics_url).await.text
    );
    // Labels name the pattern, never the topic.
    assert!(!scrape(&t, &metrics_url).await.text.contains("room:lobby"));
}

#[tokio::test]
async fn prod_serves_metrics_only_on_the_metrics_address() {
    let dir = tempfile::tempdir().expect("dir");
    let (process, t) = serve(
        dir.path(),
        TestDb::new().await,
        "prod",
        &[("FAWKES_METRICS__BIND", "127.0.0.1:0")],
    );
    let metrics_addr = process
        .log
        .iter()
        .find_map(|line| {
            let at = line.find("metrics served at http://")?;
            let rest = &line[at + "metrics served at ".len()..];
            // Text or JSON log lines: the URL ends at a space or a quote.
            rest.split(|c: char| c.is_whitespace() || c == '"')
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no metrics address announced: {:#?}", process.log));
    assert!(
        !metrics_addr.starts_with(&format!("{}/", t.url)),
        "{metrics_addr}"
    );

    // Never on the public port.
    t.get("/metrics", None).await.assert_json_error(404);
    assert_eq!(t.get("/health", None).await.status, 200);

    // On the metrics address, `/metrics` only.
    let scraped = scrape(&t, &metrics_addr).await;
    assert_eq!(scraped.value("fawkes_build_info", &[]), 1.0);
    // The public request above was counted (as unmatched), the scrape listener's are not.
    assert_eq!(
        scraped.sum(HTTP, &[("route", "unmatched"), ("status_class", "4xx")]),
        1.0
    );
    assert!(
        !scraped.has(HTTP, &[("route", "/metrics")]),
        "{}",
        scraped.text
    );
    let base = metrics_addr.trim_end_matches("/metrics");
    for (method, path, status) in [
        ("GET", "/", 404),
        ("GET", "/health", 404),
        ("GET", "/api/v1/users", 404),
        ("POST", "/metrics", 405),
    ] {
        let response = t
            .send(
                ::http::Request::builder()
                    .method(method)
                    .uri(format!("{base}{path}"))
                    .body(Default::default())
                    .expect("request"),
            )
            .await;
        assert_eq!(response.status, status, "{method} {path}");
    }
}

#[tokio::test]
async fn prod_without_a_metrics_address_records_nothing() {
    let t = TestServer::start_with(|config| config.env = Environment::Prod).await;
    assert!(t.server().app().metrics.is_none());
    assert_eq!(t.server().metrics_addr(), None);
    t.get("/metrics", None).await.assert_json_error(404);
    let t = TestServer::start_with(|config| config.metrics.enabled = false).await;
    assert!(t.server().app().metrics.is_none());
    t.get("/metrics", None).await.assert_json_error(404);
}

/// `GET /metrics` over a fresh connection, `None` if nothing answers 200 (a stopped listener).
async fn try_scrape(addr: &str) -> Option<Scrape> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: metrics\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let response = String::from_utf8(response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| Scrape::parse(body))
}

#[tokio::test]
async fn the_metrics_address_serves_through_the_drain() {
    let dir = tempfile::tempdir().expect("dir");
    // One socket per batch, a second apart: the drain of three sockets lasts two seconds.
    let (mut process, t) = serve(
        dir.path(),
        TestDb::new().await,
        "prod",
        &[
            ("FAWKES_METRICS__BIND", "127.0.0.1:0"),
            ("FAWKES_SHUTDOWN__DRAIN_BATCH_SIZE", "1"),
            ("FAWKES_SHUTDOWN__DRAIN_INTERVAL_MS", "1000"),
        ],
    );
    let metrics_addr = process
        .log
        .iter()
        .find_map(|line| {
            let at = line.find("metrics served at http://")?;
            let rest = &line[at + "metrics served at http://".len()..];
            rest.split(['/', ' ', '"']).next().map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no metrics address announced: {:#?}", process.log));
    let (_, token) = t.user("drained@example.com").await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(t.socket(&token).await);
    }

    process.terminate();
    // The first socket's 1012 is counted, and scraped, while the others still wait their turn.
    let (code, _) = sockets[0].closed().await;
    assert_eq!(code, 1012);
    let seen = eventually(Duration::from_secs(10), || async {
        let scraped = try_scrape(&metrics_addr).await?;
        // The code is counted as the close is sent; the gauge falls once the socket is gone.
        let closed = scraped.sum("fawkes_close_codes_total", &[("code", "1012")]) >= 1.0
            && scraped.value("fawkes_connections", &[]) <= 2.0;
        closed.then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "the metrics address answers during the drain, with its closes counted"
    );
    for socket in &mut sockets[1..] {
        assert_eq!(socket.closed().await.0, 1012);
    }
    assert!(process.wait_exit(Duration::from_secs(30)).success());
}
