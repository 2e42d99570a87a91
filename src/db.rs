//! Opening the database and applying migrations.
//!
//! SQLite (the default) is opened in WAL mode with foreign keys on, a busy timeout and
//! `synchronous = NORMAL`, created if missing. PostgreSQL is used as the URL says. Migrations
//! run over one connection of their own ([`migrate`]), never over the server's pool.

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
/// closed afterwards (what the server does at start-up, before it opens its pool).
pub async fn migrate(url: &str) -> Result<(), DbErr> {
    let db = connect(url, 1).await?;
    let migrated = migrate_up(&db).await;
    let closed = db.close().await;
    migrated.and(closed)
}
