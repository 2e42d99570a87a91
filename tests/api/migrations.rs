//! Migrations run up and down cleanly on the test database.

use entity::user;
use migration::{Migrator, MigratorTrait};
use sea_orm::{EntityTrait, PaginatorTrait};
use sea_orm_migration::migrator::MigrationStatus;

use crate::support::TestDb;

#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    let db = TestDb::new().await;
    // One connection, as `fawkes migrate` uses: SQLite checks some DDL (`ALTER TABLE … DROP
    // COLUMN`, `CREATE INDEX`) against a connection's cached schema without re-reading it, so a
    // second pooled connection that missed the previous step fails now and then ("no such
    // column", "index … already exists").
    let conn = fawkes::db::connect(&db.url, 1).await.expect("connect");
    let statuses = |conn| async move {
        Migrator::get_migration_with_status(conn)
            .await
            .expect("status")
            .iter()
            .map(|m| m.status())
            .collect::<Vec<_>>()
    };
    let count = Migrator::migrations().len();
    assert!(count >= 3);
    assert_eq!(statuses(&conn).await, vec![MigrationStatus::Pending; count]);

    Migrator::up(&conn, None).await.expect("up");
    assert_eq!(statuses(&conn).await, vec![MigrationStatus::Applied; count]);
    assert_eq!(
        user::Entity::find()
            .count(&conn)
            .await
            .expect("users table"),
        0
    );

    Migrator::down(&conn, None).await.expect("down");
    assert_eq!(statuses(&conn).await, vec![MigrationStatus::Pending; count]);
    assert!(
        user::Entity::find().count(&conn).await.is_err(),
        "users table dropped"
    );

    Migrator::up(&conn, None).await.expect("up again");
    assert_eq!(statuses(&conn).await, vec![MigrationStatus::Applied; count]);
}
