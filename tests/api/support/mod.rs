//! Test support: a real server on port 0 over a fresh database, and a real HTTP client.
//!
//! Every test gets its own database: a new SQLite file in a temporary directory, or, when
//! `TEST_DATABASE_URL` points at PostgreSQL, a new database created on that server and dropped
//! afterwards.

#![allow(dead_code, unreachable_pub)]

pub mod cluster;
pub mod db;
pub mod http;
pub mod process;
pub mod smtp;

use std::future::Future;
use std::time::{Duration, Instant};

use fawkes::app::Server;
use fawkes::config::{Config, Environment, SecretKey};
use serde_json::{Value, json};

pub use self::db::TestDb;
pub use self::http::Resp;

/// A running server and the database it owns.
pub struct TestServer {
    pub server: Option<Server>,
    pub config: Config,
    pub db: TestDb,
    pub url: String,
    client: http::Client,
}

/// A configuration for tests: port 0, dev routes on, a fresh key, generous limits.
pub fn test_config(db: &TestDb) -> Config {
    let mut config = Config {
        env: Environment::Dev,
        bind: "127.0.0.1:0".parse().expect("addr"),
        database_url: db.url.clone(),
        database_pool_size: 5,
        secret_key: Some(SecretKey::generate().to_paserk()),
        ..Config::default()
    };
    config.rate_limit.login_per_ip_per_minute = 1000;
    config.rate_limit.login_per_email_per_minute = 1000;
    config.rate_limit.login_per_email_all_addresses_per_minute = 1000;
    config.rate_limit.register_per_ip_per_minute = 1000;
    config.rate_limit.register_per_minute = 10_000;
    config.rate_limit.requests_per_ip_per_second = 0;
    config.shutdown.timeout_secs = 5;
    // Whether `web/dist` was built must not change what a test sees at `/` (`dev` serves it).
    config.web.static_dir = std::env::temp_dir().join("fawkes-tests-no-web-client");
    config
}

impl TestServer {
    /// A server with the test configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with the test configuration changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::new().await;
        let mut config = test_config(&db);
        tweak(&mut config);
        Self::start_on(db, config).await
    }

    /// A server on an existing database.
    pub async fn start_on(db: TestDb, config: Config) -> Self {
        let server = Server::start(config.clone()).await.expect("server starts");
        let url = server.url();
        Self {
            server: Some(server),
            config,
            db,
            url,
            client: http::Client::new(),
        }
    }

    /// A client of a server running elsewhere (the real binary) at `url`, on `db`.
    pub fn at(url: String, db: TestDb, config: Config) -> Self {
        Self {
            server: None,
            config,
            db,
            url,
            client: http::Client::new(),
        }
    }

    /// Shuts this server down; returns its database and configuration.
    pub async fn stop(mut self) -> (TestDb, Config) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        (self.db, self.config)
    }

    /// Shuts this server down and starts a new one on the same database and configuration.
    pub async fn restart(mut self) -> Self {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        let mut config = self.config.clone();
        config.bind = "127.0.0.1:0".parse().expect("addr");
        Self::start_on(self.db, config).await
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    /// Sends `method path` with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        self.send(self.request(method, path, token, body)).await
    }

    /// Like [`TestServer::call`], from the loopback address `source` (e.g. 127.0.0.2): the
    /// server sees it as the client's address.
    pub async fn call_from(
        &self,
        source: std::net::IpAddr,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        http::Client::bound_to(source)
            .send(self.request(method, path, token, body))
            .await
    }

    /// `method path` with an optional bearer token and JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> ::http::Request<http::Body> {
        let mut builder = ::http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.url, path));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                body.to_string()
            }
            None => String::new(),
        };
        builder.body(body.into()).expect("request")
    }

    /// Sends a prepared request.
    pub async fn send(&self, request: ::http::Request<http::Body>) -> Resp {
        self.client.send(request).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call("GET", path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call("POST", path, token, Some(body)).await
    }

    /// Registers a user with a password; returns (id, password).
    pub async fn register(&self, email: &str) -> (i64, String) {
        let password = "correct horse battery".to_owned();
        let resp = self
            .post(
                "/api/v1/users",
                None,
                json!({"user": {"name": "Test", "subname": "User", "email": email, "job": "Tester", "password": password}}),
            )
            .await;
        assert_eq!(resp.status, 201, "register {email}: {}", resp.text);
        (resp.body["data"]["id"].as_i64().expect("id"), password)
    }

    /// Logs in; returns the token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let resp = self
            .post(
                "/api/v1/sessions",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(resp.status, 200, "login {email}: {}", resp.text);
        resp.body["data"]["token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// Registers and logs in; returns (id, token).
    pub async fn user(&self, email: &str) -> (i64, String) {
        let (id, password) = self.register(email).await;
        (id, self.login(email, &password).await)
    }

    /// Polls `/dev/mailbox` until a mail to `to` satisfies `done`, or panics at the deadline.
    pub async fn wait_for_mail(&self, to: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(Duration::from_secs(10), || async {
            let resp = self.get("/dev/mailbox", None).await;
            resp.body["data"]
                .as_array()
                .and_then(|mails| mails.iter().find(|m| m["to"] == to && done(m)).cloned())
        })
        .await
        .unwrap_or_else(|| panic!("no matching mail to {to} within the deadline"))
    }

    /// A real WebSocket client on the app socket (`/socket`, V2 JSON) with `token`.
    pub async fn socket(&self, token: &str) -> fawkes::testing::WsClient {
        let url = format!(
            "{}/socket/websocket?token={token}&vsn=2.0.0",
            self.url.replace("http://", "ws://")
        );
        fawkes::testing::WsClient::connect(&url)
            .await
            .expect("connect")
    }

    /// Opens the conversation between the owner of `token` and `recipient`; returns its id.
    pub async fn conversation(&self, token: &str, recipient: i64) -> i64 {
        let resp = self
            .post(
                "/api/v1/conversations",
                Some(token),
                serde_json::json!({ "recipient_id": recipient }),
            )
            .await;
        assert!(matches!(resp.status, 200 | 201), "{}", resp.text);
        resp.body["data"]["id"].as_i64().expect("id")
    }
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if start.elapsed() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The standard detail-error body for `reason`.
pub fn detail(reason: &str) -> Value {
    json!({"errors": {"detail": reason}})
}

/// Writes `request` as raw bytes on a new connection and reads until the server closes it
/// (send `connection: close`), for at most 10 s.
pub async fn raw_http(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("response within 10 s")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// The JSON body of a raw HTTP/1.1 response (after the blank line; chunked framing undone
/// for a single chunk).
pub fn raw_json_body(response: &str) -> Value {
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body)
        .or_else(|_| {
            let inner = body.split_once("\r\n").map(|(_, b)| b).unwrap_or_default();
            let inner = inner
                .rsplit_once("\r\n0\r\n")
                .map(|(b, _)| b)
                .unwrap_or(inner);
            serde_json::from_str(inner.trim_end())
        })
        .unwrap_or(Value::Null)
}
