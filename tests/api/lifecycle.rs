//! Graceful shutdown and the database settings the server opens SQLite with.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{TestServer, eventually, raw_json_body};

#[tokio::test]
async fn an_in_memory_sqlite_database_is_refused_at_start_up() {
    let db = crate::support::TestDb::new().await;
    for url in [
        "sqlite::memory:",
        "sqlite://fawkes?mode=memory&cache=shared",
    ] {
        let config = fawkes::config::Config {
            database_url: url.to_owned(),
            ..crate::support::test_config(&db)
        };
        let refused = fawkes::app::Server::start(config)
            .await
            .err()
            .expect("refused");
        let message = refused.to_string();
        assert!(
            message.contains("in-memory SQLite") && message.contains(url),
            "{message}"
        );
    }
}

#[tokio::test]
async fn shutdown_stops_accepting_but_finishes_in_flight_requests() {
    let mut t = TestServer::start().await;
    let server = t.server.take().expect("server");
    let addr = server.local_addr();

    let body = r#"{"user":{"name":"Late","subname":"Comer","email":"late@example.com","job":"Pilot","password":"a long enough password"}}"#;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let headers = format!(
        "POST /api/v1/users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream
        .write_all(headers.as_bytes())
        .await
        .expect("write headers");
    // hyper answers `100 Continue` once the handler starts reading the body: from here on the
    // request is in flight.
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut byte))
            .await
            .expect("100 Continue in time")
            .expect("read");
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&interim)
    );

    let shutdown = server.shutdown_token();
    shutdown.cancel();
    let closed = eventually(Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(closed.is_some(), "listener closed after shutdown began");

    stream.write_all(body.as_bytes()).await.expect("write body");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert_eq!(
        raw_json_body(&response)["data"]["email"],
        "late@example.com"
    );
    tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("shutdown completes");

    // The request was committed: a new server on the same database knows the user.
    let t = TestServer::start_on(t.db, t.config).await;
    t.login("late@example.com", "a long enough password").await;
}

#[tokio::test]
async fn sqlite_is_opened_in_wal_mode_with_foreign_keys_and_a_busy_timeout() {
    let db = crate::support::TestDb::new().await;
    if db.is_postgres() {
        return;
    }
    let conn = fawkes::db::connect(&db.url, 2).await.expect("connect");
    let pragma = |name: &'static str| {
        let conn = &conn;
        async move {
            let row = conn
                .query_one_raw(Statement::from_string(
                    conn.get_database_backend(),
                    format!("PRAGMA {name}"),
                ))
                .await
                .expect("pragma")
                .expect("row");
            row.try_get_by_index::<String>(0)
                .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
                .expect("value")
        }
    };
    assert_eq!(pragma("journal_mode").await, "wal");
    assert_eq!(pragma("foreign_keys").await, "1");
    assert_eq!(pragma("busy_timeout").await, "5000");
}

#[tokio::test]
async fn a_server_refuses_a_zero_that_makes_a_setting_useless() {
    let db = crate::support::TestDb::new().await;
    let mut config = crate::support::test_config(&db);
    config.token_ttl_secs = 0;
    let error = fawkes::app::Server::start(config)
        .await
        .err()
        .expect("refused to start");
    assert!(
        matches!(error, fawkes::app::StartError::Config(_)),
        "{error}"
    );
    assert!(error.to_string().contains("token_ttl_secs = 0"), "{error}");
}
