use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Mails::Table)
                    .col(big_pk_auto(Mails::Id))
                    .col(string_len(Mails::Recipient, 160))
                    .col(string_len(Mails::Subject, 200))
                    .col(text(Mails::BodySealed))
                    .col(string_len(Mails::Transport, 16))
                    .col(string_len(Mails::Status, 16))
                    .col(text_null(Mails::Error))
                    .col(timestamp_with_time_zone(Mails::InsertedAt))
                    .col(timestamp_with_time_zone(Mails::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Mails::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Mails {
    Table,
    Id,
    Recipient,
    Subject,
    BodySealed,
    Transport,
    Status,
    Error,
    InsertedAt,
    UpdatedAt,
}
