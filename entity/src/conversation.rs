//! `conversations`: one per unordered pair of users.
//!
//! The pair is stored normalized (`user_a_id < user_b_id`, a check constraint) under a unique
//! index, so A→B and B→A are the same row by construction in the database. Deleting either
//! user deletes the conversation and its messages (`ON DELETE CASCADE`).

use sea_orm::entity::prelude::*;

/// One row of `conversations`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The participant with the smaller id.
    pub user_a_id: i64,
    /// The participant with the larger id.
    pub user_b_id: i64,
    /// When the conversation was opened.
    pub inserted_at: DateTimeUtc,
    /// When its last message was posted (ordering by activity).
    pub last_message_at: Option<DateTimeUtc>,
}

/// `conversations` relations are enforced by foreign keys; none are navigated from code.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
