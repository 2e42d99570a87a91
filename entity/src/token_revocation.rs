//! `token_revocations`: access tokens refused before their expiry.
//!
//! A row revokes either one token (`jti` set: logout) or every token of a user issued at or
//! before `revoked_before` (`user_id` set: the account was deleted, or its password or e-mail
//! changed), except the token named by `except_jti` (the one that made the change), if any.
//! A row is useless once `expires_at` has passed, since every token it could match has expired
//! by then.

use sea_orm::entity::prelude::*;

/// One row of `token_revocations`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "token_revocations")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The revoked token's `jti`, for a single-token revocation.
    pub jti: Option<String>,
    /// The user whose tokens are revoked, for a per-user revocation.
    pub user_id: Option<i64>,
    /// For a per-user revocation: tokens issued at or before this instant are refused.
    pub revoked_before: Option<DateTimeUtc>,
    /// For a per-user revocation: the one token it spares (the one that made the change).
    pub except_jti: Option<String>,
    /// When the spared token was issued.
    pub except_issued_at: Option<DateTimeUtc>,
    /// After this instant no token matched by this row can still be valid.
    pub expires_at: DateTimeUtc,
    /// When the revocation was made.
    pub inserted_at: DateTimeUtc,
}

/// `token_revocations` has no relations (a per-user row outlives the user on purpose).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
