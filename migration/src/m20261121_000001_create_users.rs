use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(big_pk_auto(Users::Id))
                    .col(string_len(Users::Name, 100))
                    .col(string_len(Users::Subname, 100))
                    .col(string_len(Users::Email, 160))
                    .col(string_len(Users::Job, 100))
                    .col(text(Users::PasswordHash))
                    .col(timestamp_with_time_zone(Users::InsertedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Case-insensitive uniqueness lives in the database, not only in code. An expression
        // index is plain SQL that SQLite and PostgreSQL both accept.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX users_email_lower_index ON users (lower(email))",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Name,
    Subname,
    Email,
    Job,
    PasswordHash,
    InsertedAt,
    UpdatedAt,
}
