use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TokenRevocations::Table)
                    .col(big_pk_auto(TokenRevocations::Id))
                    .col(string_len_null(TokenRevocations::Jti, 64))
                    .col(big_integer_null(TokenRevocations::UserId))
                    .col(timestamp_with_time_zone_null(
                        TokenRevocations::RevokedBefore,
                    ))
                    .col(timestamp_with_time_zone(TokenRevocations::ExpiresAt))
                    .col(timestamp_with_time_zone(TokenRevocations::InsertedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("token_revocations_expires_at_index")
                    .table(TokenRevocations::Table)
                    .col(TokenRevocations::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TokenRevocations::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum TokenRevocations {
    Table,
    Id,
    Jti,
    UserId,
    RevokedBefore,
    ExpiresAt,
    InsertedAt,
}
