//! A fresh database per test: SQLite in a temporary directory, or a new PostgreSQL database
//! when `TEST_DATABASE_URL` is set (dropped when the test ends).

use sea_orm::{ConnectionTrait, Database};

pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new() -> Self {
        // The test suite's own switch, not a server setting.
        #[allow(clippy::disallowed_methods)]
        let admin = std::env::var("TEST_DATABASE_URL");
        match admin {
            Ok(admin) if admin.starts_with("postgres") => Self::postgres(admin).await,
            _ => Self::sqlite(),
        }
    }

    /// Whether the tests run against PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("fawkes.db").display());
        Self {
            url,
            _dir: Some(dir),
            postgres: None,
        }
    }

    async fn postgres(admin: String) -> Self {
        let name = format!("fawkes_test_{:016x}", rand::random::<u64>());
        let conn = Database::connect(&admin)
            .await
            .expect("connect TEST_DATABASE_URL");
        conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        conn.close().await.expect("close admin connection");
        let url = replace_database(&admin, &name);
        Self {
            url,
            _dir: None,
            postgres: Some((admin, name)),
        }
    }
}

/// `postgres://u@h:p/OLD?x` → `postgres://u@h:p/NEW?x`.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").expect("URL with a scheme");
    let host = rest.split('/').next().unwrap_or(rest);
    match query {
        Some(q) => format!("{scheme}://{host}/{name}?{q}"),
        None => format!("{scheme}://{host}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime; use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(conn) = Database::connect(&admin).await {
                        let _ = conn
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                        let _ = conn.close().await;
                    }
                });
            }
        })
        .join();
    }
}
