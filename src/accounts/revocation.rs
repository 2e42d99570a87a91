//! Revoked tokens, kept in memory so checking one costs no database round trip.
//!
//! The database (`token_revocations`) is the record; this cache mirrors it. It is loaded at
//! start-up and every revocation is written to the database first and to the cache after the
//! write commits, so the cache never holds less than a committed revocation on this node.
//! Entries whose tokens have all expired are pruned from both.
//!
//! Two kinds of rule: one token (`jti`, logout) and one user's tokens issued at or before an
//! instant, optionally sparing one token (account deletion; a password or e-mail change, which
//! spares the token that made it).
//!
//! With several server nodes, each node also takes in the others' revocations: a node that
//! commits one announces it to the cluster (see `super::cluster`), and every node reads the
//! rows it has not seen from the database every few seconds, which covers announcements lost
//! while the link between nodes was down.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use entity::token_revocation;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter,
};

use super::token::{AccessClaims, now};

/// The token a per-user rule spares.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spared {
    jti: String,
    issued_at: DateTime<Utc>,
}

/// Every token of one user issued at or before `before` is refused, except `spared`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserRule {
    before: DateTime<Utc>,
    spared: Option<Spared>,
    /// When the rule can be dropped (every token it matches has expired).
    expires: DateTime<Utc>,
}

impl UserRule {
    fn refuses(&self, claims: &AccessClaims) -> bool {
        claims.issued_at <= self.before && self.spared.as_ref().is_none_or(|s| s.jti != claims.jti)
    }

    /// Whether every token `other` refuses, `self` refuses too (so `other` is redundant once
    /// `self` lives at least as long).
    fn covers(&self, other: &UserRule) -> bool {
        self.before >= other.before
            && self.expires >= other.expires
            && match &self.spared {
                None => true,
                Some(spared) => {
                    other.spared.as_ref().is_some_and(|o| o.jti == spared.jti)
                        || spared.issued_at > other.before
                }
            }
    }
}

#[derive(Default)]
struct State {
    /// jti → when that token expires.
    tokens: HashMap<String, DateTime<Utc>>,
    /// user id → the rules for that user's tokens. Usually one: a new rule made with a token
    /// that an older rule let live covers the older rule, which is then dropped.
    users: HashMap<i64, Vec<UserRule>>,
}

/// The revocation cache.
#[derive(Default)]
pub(crate) struct Revocations {
    state: RwLock<State>,
    /// When the last successful [`Revocations::refresh`] (or the load) began.
    refreshed: std::sync::Mutex<Option<DateTime<Utc>>>,
}

/// How far back a refresh reads before the previous one: rows commit out of order (a
/// transaction may commit after a later one) and nodes' clocks differ a little.
const REFRESH_OVERLAP: chrono::Duration = chrono::Duration::minutes(5);

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
        *this.refreshed.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        Ok(this)
    }

    /// Whether `claims` belong to a revoked token.
    pub(crate) fn is_revoked(&self, claims: &AccessClaims) -> bool {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.tokens.contains_key(&claims.jti)
            || state
                .users
                .get(&claims.user_id)
                .is_some_and(|rules| rules.iter().any(|rule| rule.refuses(claims)))
    }

    /// Records the revocation of one token (logout).
    pub(crate) async fn revoke_token(
        &self,
        db: &impl ConnectionTrait,
        claims: &AccessClaims,
    ) -> Result<token_revocation::Model, DbErr> {
        let row = token_revocation::ActiveModel {
            jti: Set(Some(claims.jti.clone())),
            user_id: Set(None),
            revoked_before: Set(None),
            except_jti: Set(None),
            except_issued_at: Set(None),
            expires_at: Set(claims.expires_at),
            inserted_at: Set(Utc::now()),
            ..Default::default()
        };
        let row = token_revocation::Entity::insert(row)
            .exec_with_returning(db)
            .await?;
        self.remember(&row);
        Ok(row)
    }

    /// Writes (inside the caller's transaction) a revocation of every token of `user_id`
    /// issued up to now, except `spared` if given. Call [`Revocations::remember`] with the
    /// result after commit (after [`Revocations::move_to_now`], if the transaction changed
    /// what a login checks).
    pub(crate) async fn insert_user_revocation(
        db: &impl ConnectionTrait,
        user_id: i64,
        spared: Option<&AccessClaims>,
        ttl: std::time::Duration,
    ) -> Result<token_revocation::Model, DbErr> {
        let now = now();
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let row = token_revocation::ActiveModel {
            jti: Set(None),
            user_id: Set(Some(user_id)),
            revoked_before: Set(Some(now)),
            except_jti: Set(spared.map(|c| c.jti.clone())),
            except_issued_at: Set(spared.map(|c| c.issued_at)),
            expires_at: Set(expiry(now, ttl)),
            inserted_at: Set(now),
            ..Default::default()
        };
        token_revocation::Entity::insert(row)
            .exec_with_returning(db)
            .await
    }

    /// Moves a committed per-user revocation's instant to now (and its expiry with it).
    ///
    /// A login stamps its token with the time it read the user's password hash. One that read
    /// the old hash just before the change committed may finish after the revocation's own
    /// instant (taken inside the transaction); moving the instant past the commit catches it.
    /// If the move cannot be written, the database keeps the earlier instant and the error is
    /// returned: the caller should still remember the row it has.
    pub(crate) async fn move_to_now(
        db: &impl ConnectionTrait,
        row: &mut token_revocation::Model,
        ttl: std::time::Duration,
    ) -> Result<(), DbErr> {
        let now = now();
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let mut moved = row.clone();
        moved.revoked_before = Some(now);
        moved.expires_at = expiry(now, ttl);
        let active = token_revocation::ActiveModel {
            id: Set(row.id),
            revoked_before: Set(moved.revoked_before),
            expires_at: Set(moved.expires_at),
            ..Default::default()
        };
        token_revocation::Entity::update(active).exec(db).await?;
        *row = moved;
        Ok(())
    }

    /// Reads the unexpired rows written or moved since a little before the previous refresh
    /// (other nodes' revocations; see [`REFRESH_OVERLAP`]); returns those that were new here.
    pub(crate) async fn refresh(
        &self,
        db: &DatabaseConnection,
    ) -> Result<Vec<token_revocation::Model>, DbErr> {
        let started = Utc::now();
        let previous = *self.refreshed.lock().unwrap_or_else(|e| e.into_inner());
        let since = previous.map_or(DateTime::<Utc>::MIN_UTC, |at| at - REFRESH_OVERLAP);
        let rows = token_revocation::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(token_revocation::Column::InsertedAt.gte(since))
                    .add(token_revocation::Column::RevokedBefore.gte(since)),
            )
            .filter(token_revocation::Column::ExpiresAt.gt(started))
            .all(db)
            .await?;
        let new = rows.into_iter().filter(|row| self.remember(row)).collect();
        *self.refreshed.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
        Ok(new)
    }

    /// Adds a committed revocation row to the cache; whether it refuses a token that the cache
    /// did not refuse before (a row already known, or covered by a known rule, does not).
    pub(crate) fn remember(&self, row: &token_revocation::Model) -> bool {
        let mut new = false;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let Some(jti) = &row.jti {
            new |= state.tokens.insert(jti.clone(), row.expires_at).is_none();
        }
        if let (Some(user_id), Some(before)) = (row.user_id, row.revoked_before) {
            let rule = UserRule {
                before,
                spared: row.except_jti.clone().map(|jti| Spared {
                    jti,
                    // Unknown only if a row was written by hand; never let that spare more.
                    issued_at: row.except_issued_at.unwrap_or(DateTime::<Utc>::MIN_UTC),
                }),
                expires: row.expires_at,
            };
            let rules = state.users.entry(user_id).or_default();
            if !rules.iter().any(|old| old.covers(&rule)) {
                rules.retain(|old| !rule.covers(old));
                rules.push(rule);
                new = true;
            }
        }
        new
    }

    /// Drops rules that can no longer match a live token, from the cache and the database.
    pub(crate) async fn prune(&self, db: &DatabaseConnection) -> Result<u64, DbErr> {
        let now = Utc::now();
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            state.tokens.retain(|_, expires| *expires > now);
            state.users.retain(|_, rules| {
                rules.retain(|rule| rule.expires > now);
                !rules.is_empty()
            });
        }
        let deleted = token_revocation::Entity::delete_many()
            .filter(token_revocation::Column::ExpiresAt.lte(now))
            .exec(db)
            .await?;
        Ok(deleted.rows_affected)
    }
}

fn expiry(now: DateTime<Utc>, ttl: chrono::Duration) -> DateTime<Utc> {
    now.checked_add_signed(ttl)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + secs, 0).expect("time")
    }

    fn claims(user_id: i64, jti: &str, issued: i64) -> AccessClaims {
        AccessClaims {
            user_id,
            jti: jti.to_owned(),
            issued_at: at(issued),
            expires_at: at(issued + 1000),
        }
    }

    fn row(user_id: i64, before: i64, spared: Option<&AccessClaims>) -> token_revocation::Model {
        token_revocation::Model {
            id: 0,
            jti: None,
            user_id: Some(user_id),
            revoked_before: Some(at(before)),
            except_jti: spared.map(|c| c.jti.clone()),
            except_issued_at: spared.map(|c| c.issued_at),
            expires_at: at(before + 1000),
            inserted_at: at(before),
        }
    }

    #[test]
    fn a_user_rule_spares_the_token_that_made_it_and_later_tokens() {
        let cache = Revocations::default();
        let (a, b) = (claims(1, "a", 0), claims(1, "b", 5));
        cache.remember(&row(1, 10, Some(&a)));
        assert!(!cache.is_revoked(&a));
        assert!(cache.is_revoked(&b));
        assert!(!cache.is_revoked(&claims(1, "c", 11)), "issued after");
        assert!(
            cache.is_revoked(&claims(1, "c", 10)),
            "issued at the instant"
        );
        assert!(!cache.is_revoked(&claims(2, "b", 5)), "another user");
    }

    #[test]
    fn a_newer_rule_made_by_a_surviving_token_replaces_the_older_one() {
        let cache = Revocations::default();
        let a = claims(1, "a", 0);
        cache.remember(&row(1, 10, Some(&a)));
        // The same token changes the password again: one rule.
        cache.remember(&row(1, 20, Some(&a)));
        // A token issued after the second change makes a third: still one rule.
        let c = claims(1, "c", 25);
        cache.remember(&row(1, 30, Some(&c)));
        let state = cache.state.read().expect("lock");
        assert_eq!(state.users[&1].len(), 1);
        drop(state);
        assert!(cache.is_revoked(&a));
        assert!(!cache.is_revoked(&c));
    }

    #[test]
    fn racing_rules_keep_both_exceptions_from_sparing_each_other() {
        // Two sessions change the password at once: neither may survive the other's rule.
        let cache = Revocations::default();
        let (a, b) = (claims(1, "a", 0), claims(1, "b", 1));
        cache.remember(&row(1, 10, Some(&a)));
        cache.remember(&row(1, 11, Some(&b)));
        assert!(cache.is_revoked(&a));
        assert!(cache.is_revoked(&b));
        // An account deletion covers everything before it.
        cache.remember(&row(1, 12, None));
        assert_eq!(cache.state.read().expect("lock").users[&1].len(), 1);
    }
}
