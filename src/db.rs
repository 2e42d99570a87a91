//! Opening the database and applying migrations.
//!
//! SQLite (the default) is opened in WAL mode with foreign keys on, a busy timeout and
//! `synchronous = NORMAL`, created if missing. PostgreSQL is used as the URL says. Migrations
//! run over one connection of their own ([`migrate`]), never over the server's pool; so an
//! in-memory SQLite database (`sqlite::memory:`, `mode=memory`), which vanishes with the
//! connection that migrated it, is refused ([`is_in_memory_sqlite`]).

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// How long an SQLite writer waits for the lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `url` with a pool of at most `pool_size` connections.
pub async fn connect(url: &str, pool_size: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(pool_size.max(1))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
        });
    Database::connect(options).await
}

/// Applies every pending migration on `db`. Give it one connection ([`migrate`] does):
/// SQLite checks some DDL (`ALTER TABLE … DROP COLUMN`, `CREATE INDEX`) against a
/// connection's cached schema, so a pooled connection that missed the previous step fails now
/// and then ("no such column", "index … already exists").
pub async fn migrate_up(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Applies every pending migration to the database at `url` over a connection of its own,
/// closed afterwards (what the server does at start-up, before it opens its pool). Refuses an
/// in-memory SQLite database ([`is_in_memory_sqlite`]): it would vanish with that connection,
/// leaving the server's pool a fresh database without tables.
pub async fn migrate(url: &str) -> Result<(), DbErr> {
    if is_in_memory_sqlite(url) {
        return Err(DbErr::Custom(format!(
            "{url} is an in-memory SQLite database, which does not outlive the connection that \
             migrates it; use a file (e.g. sqlite://fawkes.db) or PostgreSQL"
        )));
    }
    let db = connect(url, 1).await?;
    let migrated = migrate_up(&db).await;
    let closed = db.close().await;
    migrated.and(closed)
}

/// Whether `url` names an in-memory SQLite database: `sqlite::memory:` (or `:memory:` as the
/// path) or a `mode=memory` parameter.
pub fn is_in_memory_sqlite(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return false;
    };
    let rest = rest.trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    path.trim_start_matches("file:") == ":memory:"
        || query
            .split('&')
            .any(|param| param.eq_ignore_ascii_case("mode=memory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_sqlite_urls_are_told_apart_from_files() {
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite:file::memory:",
            "sqlite://shared?mode=memory&cache=shared",
            "sqlite:db?cache=shared&MODE=MEMORY",
        ] {
            assert!(is_in_memory_sqlite(url), "{url}");
        }
        for url in [
            "sqlite://fawkes.db",
            "sqlite://memory.db",
            "sqlite://fawkes.db?mode=rwc",
            "postgres://u@localhost/memory?mode=memory",
        ] {
            assert!(!is_in_memory_sqlite(url), "{url}");
        }
    }

    #[tokio::test]
    async fn migrating_an_in_memory_database_is_refused_with_a_clear_error() {
        let refused = migrate("sqlite::memory:").await.expect_err("refused");
        assert!(
            refused.to_string().contains("in-memory SQLite"),
            "{refused}"
        );
    }
}
