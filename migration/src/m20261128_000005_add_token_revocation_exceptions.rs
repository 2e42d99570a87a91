//! A per-user revocation may spare one token: the one that changed the password or e-mail.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds a single column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(TokenRevocations::Table)
                    .add_column(string_len_null(TokenRevocations::ExceptJti, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(TokenRevocations::Table)
                    .add_column(timestamp_with_time_zone_null(
                        TokenRevocations::ExceptIssuedAt,
                    ))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TokenRevocations::Table)
                    .drop_column(TokenRevocations::ExceptIssuedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(TokenRevocations::Table)
                    .drop_column(TokenRevocations::ExceptJti)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum TokenRevocations {
    Table,
    ExceptJti,
    ExceptIssuedAt,
}
