//! `messages`: what was said in a conversation, read back in id order (indexed by
//! `(conversation_id, id)`).

use sea_orm::entity::prelude::*;

/// One row of `messages`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    /// Primary key; also the history cursor.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The conversation.
    pub conversation_id: i64,
    /// Who sent it (a participant).
    pub sender_id: i64,
    /// The text, 1..4000 characters.
    pub content: String,
    /// When it was committed.
    pub inserted_at: DateTimeUtc,
}

/// `messages` relations are enforced by foreign keys; none are navigated from code.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
