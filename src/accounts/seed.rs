//! Seeding many users fast, for load tests: one password hash shared by all, batched inserts,
//! and an access token per user. A benchmarking aid, not an account workflow.

use chrono::Utc;
use entity::user;
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ActiveValue::Set, EntityTrait, QueryFilter, QuerySelect};

use super::{Accounts, AccountsError};

/// Rows per insert (SQLite allows 32766 bound values; a user row binds 7).
const BATCH: usize = 1000;

impl Accounts {
    /// Makes sure users `{prefix}-0@bench.invalid` … `{prefix}-{count-1}@bench.invalid` exist
    /// (creating the missing ones with `password`), and returns `(user id, access token)` for
    /// each, in order.
    pub async fn seed_users(
        &self,
        prefix: &str,
        count: usize,
        password: &str,
    ) -> Result<Vec<(i64, String)>, AccountsError> {
        let email = |i: usize| format!("{prefix}-{i}@bench.invalid");
        let hash = self.hash(password.to_owned()).await?;
        let pattern = format!("{prefix}-%@bench.invalid");
        let existing: std::collections::HashSet<String> = user::Entity::find()
            .select_only()
            .column(user::Column::Email)
            .filter(Expr::col(user::Column::Email).like(pattern.as_str()))
            .into_tuple::<String>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let now = Utc::now();
        let missing: Vec<usize> = (0..count)
            .filter(|i| !existing.contains(&email(*i)))
            .collect();
        for chunk in missing.chunks(BATCH) {
            let rows = chunk.iter().map(|&i| user::ActiveModel {
                name: Set(format!("Bench {i}")),
                subname: Set("User".to_owned()),
                email: Set(email(i)),
                job: Set("Load test".to_owned()),
                password_hash: Set(hash.clone()),
                inserted_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            });
            user::Entity::insert_many(rows).exec(&self.db).await?;
        }
        let ids: std::collections::HashMap<String, i64> = user::Entity::find()
            .select_only()
            .column(user::Column::Email)
            .column(user::Column::Id)
            .filter(Expr::col(user::Column::Email).like(pattern.as_str()))
            .into_tuple::<(String, i64)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        (0..count)
            .map(|i| {
                let id = *ids.get(&email(i)).ok_or(AccountsError::NotFound)?;
                let (token, _) = self
                    .tokens
                    .issue(id, super::token::now())
                    .map_err(|e| AccountsError::Internal(e.to_string()))?;
                Ok((id, token))
            })
            .collect()
    }
}
