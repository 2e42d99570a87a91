//! `mails`: every e-mail the server sent or tried to send.
//!
//! With the `outbox` transport this table *is* the delivery; with `smtp` it is the record of
//! each attempt. The body may carry a secret (a generated password), so it is stored sealed
//! (encrypted with the server key), never in clear.

use sea_orm::entity::prelude::*;

/// One row of `mails`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mails")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Recipient address.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// The text body, sealed with the server key.
    pub body_sealed: String,
    /// Transport used: `outbox` or `smtp`.
    pub transport: String,
    /// `pending`, `stored` (outbox), `sent` or `failed`.
    pub status: String,
    /// Why delivery failed, when it did.
    pub error: Option<String>,
    /// When the mail was queued.
    pub inserted_at: DateTimeUtc,
    /// When its status last changed.
    pub updated_at: DateTimeUtc,
}

/// `mails` has no relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
