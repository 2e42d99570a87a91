//! Revoked tokens, kept in memory so checking one costs no database round trip.
//!
//! The database (`token_revocations`) is the record; this cache mirrors it. It is loaded at
//! start-up and every revocation is written to the database first and to the cache after the
//! write commits, so the cache never holds less than a committed revocation on this node.
//! Entries whose tokens have all expired are pruned from both.
//!
//! With several server nodes, each node's cache would also need other nodes' revocations
//! (through PubSub); that arrives with the multi-node adapter.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use entity::token_revocation;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter,
};

use super::token::AccessClaims;

#[derive(Default)]
struct State {
    /// jti → when that token expires.
    tokens: HashMap<String, DateTime<Utc>>,
    /// user id → (tokens issued at or before this are refused, when the rule can be dropped).
    users: HashMap<i64, (DateTime<Utc>, DateTime<Utc>)>,
}

/// The revocation cache.
#[derive(Default)]
pub(crate) struct Revocations {
    state: RwLock<State>,
}

impl Revocations {
    /// Loads every revocation that can still match a live token.
    pub(crate) async fn load(db: &DatabaseConnection) -> Result<Self, DbErr> {
        let now = Utc::now();
        let rows = token_revocation::Entity::find()
            .filter(token_revocation::Column::ExpiresAt.gt(now))
            .all(db)
            .await?;
        let this = Self::default();
        for row in rows {
            this.remember(&row);
        }
        Ok(this)
    }

    /// Whether `claims` belong to a revoked token.
    pub(crate) fn is_revoked(&self, claims: &AccessClaims) -> bool {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.tokens.contains_key(&claims.jti)
            || state
                .users
                .get(&claims.user_id)
                .is_some_and(|(before, _)| claims.issued_at <= *before)
    }

    /// Records the revocation of one token (logout).
    pub(crate) async fn revoke_token(
        &self,
        db: &impl ConnectionTrait,
        claims: &AccessClaims,
    ) -> Result<(), DbErr> {
        let row = token_revocation::ActiveModel {
            jti: Set(Some(claims.jti.clone())),
            user_id: Set(None),
            revoked_before: Set(None),
            expires_at: Set(claims.expires_at),
            inserted_at: Set(Utc::now()),
            ..Default::default()
        };
        let row = token_revocation::Entity::insert(row)
            .exec_with_returning(db)
            .await?;
        self.remember(&row);
        Ok(())
    }

    /// Writes (inside the caller's transaction) a revocation of every token of `user_id`
    /// issued up to now. Call [`Revocations::remember`] with the result after commit.
    pub(crate) async fn insert_user_revocation(
        db: &impl ConnectionTrait,
        user_id: i64,
        ttl: std::time::Duration,
    ) -> Result<token_revocation::Model, DbErr> {
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let row = token_revocation::ActiveModel {
            jti: Set(None),
            user_id: Set(Some(user_id)),
            revoked_before: Set(Some(now)),
            expires_at: Set(now
                .checked_add_signed(ttl)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)),
            inserted_at: Set(now),
            ..Default::default()
        };
        token_revocation::Entity::insert(row)
            .exec_with_returning(db)
            .await
    }

    /// Adds a committed revocation row to the cache.
    pub(crate) fn remember(&self, row: &token_revocation::Model) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let Some(jti) = &row.jti {
            state.tokens.insert(jti.clone(), row.expires_at);
        }
        if let (Some(user_id), Some(before)) = (row.user_id, row.revoked_before) {
            let entry = state
                .users
                .entry(user_id)
                .or_insert((before, row.expires_at));
            *entry = (entry.0.max(before), entry.1.max(row.expires_at));
        }
    }

    /// Drops rules that can no longer match a live token, from the cache and the database.
    pub(crate) async fn prune(&self, db: &DatabaseConnection) -> Result<u64, DbErr> {
        let now = Utc::now();
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            state.tokens.retain(|_, expires| *expires > now);
            state.users.retain(|_, (_, expires)| *expires > now);
        }
        let deleted = token_revocation::Entity::delete_many()
            .filter(token_revocation::Column::ExpiresAt.lte(now))
            .exec(db)
            .await?;
        Ok(deleted.rows_affected)
    }
}
