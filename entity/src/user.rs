//! `users`: registered accounts.
//!
//! `email` is unique regardless of case: the database enforces it with a unique index on
//! `lower(email)`. The password is stored only as an argon2id PHC string.

use sea_orm::entity::prelude::*;

/// One row of `users`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Given name.
    pub name: String,
    /// Family name ("subname" in the original tutorial).
    pub subname: String,
    /// E-mail address as entered; compared case-insensitively.
    pub email: String,
    /// Job title.
    pub job: String,
    /// argon2id hash in PHC string form; never the clear password.
    pub password_hash: String,
    /// When the row was created.
    pub inserted_at: DateTimeUtc,
    /// When the row was last changed.
    pub updated_at: DateTimeUtc,
}

/// `users` has no relations yet.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
