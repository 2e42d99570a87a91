//! The `accounts` context: users, passwords, access tokens. The only code that queries
//! `users` and `token_revocations`.
//!
//! Controllers hand it untrusted input and get typed results or an [`AccountsError`] back;
//! they never see the database.

mod cluster;
mod params;
mod password;
mod revocation;
mod seed;
mod socket_token;
#[cfg(test)]
mod tests;
mod token;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::user;
use sea_orm::sea_query::{Expr, ExprTrait as _, Func};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};
use serde::Serialize;
use serde_json::Value;

pub use cluster::{OnRevoked, REFRESH_EVERY, REVOCATIONS_TOPIC, Revoked};
pub use params::{
    FieldErrors, MAX_EMAIL_LEN, MAX_PASSWORD_LEN, MAX_TEXT_LEN, MIN_PASSWORD_LEN, NUL_MESSAGE,
    UserParams, is_valid_email,
};
pub use socket_token::SocketToken;
pub use token::AccessClaims;

use crate::config::SecretKey;
use crate::mailer::{Email, Mailer};
use password::Passwords;
use revocation::Revocations;
use token::Tokens;

/// A user as the API shows it to the user themself: never the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Given name.
    pub name: String,
    /// Family name.
    pub subname: String,
    /// E-mail address.
    pub email: String,
    /// Job title.
    pub job: String,
    /// Created at.
    pub inserted_at: DateTime<Utc>,
    /// Last changed at.
    pub updated_at: DateTime<Utc>,
}

impl From<user::Model> for User {
    fn from(m: user::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            subname: m.subname,
            email: m.email,
            job: m.job,
            inserted_at: m.inserted_at,
            updated_at: m.updated_at,
        }
    }
}

/// A user as the API shows it to other users: no e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
// Described with `additionalProperties: false`, so that a full `User` is not one of these too.
#[serde(deny_unknown_fields)]
pub struct PublicUser {
    /// Id.
    pub id: i64,
    /// Given name.
    pub name: String,
    /// Family name.
    pub subname: String,
    /// Job title.
    pub job: String,
}

/// A user as one viewer may see them: in full (themself) or public (anyone else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum UserView {
    /// The viewer's own record.
    Own(User),
    /// Someone else's.
    Other(PublicUser),
}

impl User {
    /// What `viewer` may see of this user: everything if it is them, else the public fields
    /// (an e-mail address is shown only to its owner).
    pub fn shown_to(self, viewer: i64) -> UserView {
        if self.id == viewer {
            UserView::Own(self)
        } else {
            UserView::Other(PublicUser {
                id: self.id,
                name: self.name,
                subname: self.subname,
                job: self.job,
            })
        }
    }
}

/// The result of a profile change.
#[derive(Debug, Clone)]
pub struct Updated {
    /// The user as it is now.
    pub user: User,
    /// Whether the password or e-mail changed, so every other token of the user was revoked
    /// (their sockets should be closed).
    pub sessions_revoked: bool,
    /// The e-mail address before the change (the same as `user.email` unless it changed).
    pub previous_email: String,
}

/// The result of a registration.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The new user.
    pub user: User,
    /// The password the server generated, when the client sent none. Shown once.
    pub generated_password: Option<String>,
}

/// The result of a login.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who logged in.
    pub user: User,
    /// The access token.
    pub token: String,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
}

/// One page of users, in id order.
#[derive(Debug, Clone)]
pub struct UserPage {
    /// The users.
    pub users: Vec<User>,
    /// The cursor for the next page, if there is one.
    pub next: Option<i64>,
}

/// Largest page of users.
pub const MAX_PAGE: u64 = 100;

/// Why an accounts operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// Input failed validation.
    #[error("invalid input")]
    Invalid(FieldErrors),
    /// Wrong e-mail or password (deliberately indistinguishable).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The token is missing, garbled, forged, expired or revoked.
    #[error("unauthenticated")]
    Unauthenticated,
    /// The actor may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No such user.
    #[error("not found")]
    NotFound,
    /// A database failure.
    #[error("database: {0}")]
    Database(#[from] DbErr),
    /// Any other internal failure.
    #[error("internal: {0}")]
    Internal(String),
}

/// The accounts context.
#[derive(Clone)]
pub struct Accounts {
    db: DatabaseConnection,
    passwords: Passwords,
    tokens: Tokens,
    revocations: Arc<Revocations>,
    mailer: Mailer,
    socket_token_ttl: Duration,
    /// The cluster revocations are announced to (unset: a single node).
    cluster: Arc<std::sync::OnceLock<crate::runtime::PubSub>>,
    /// What to do with other nodes' revocations (set with the cluster).
    on_revoked: Arc<std::sync::OnceLock<OnRevoked>>,
}

/// How long a socket token is valid unless [`Accounts::with_socket_token_ttl`] says otherwise.
pub const DEFAULT_SOCKET_TOKEN_TTL: Duration = Duration::from_secs(60);

impl Accounts {
    /// Sets the context up: loads revocations, prepares the password hasher.
    pub async fn new(
        db: DatabaseConnection,
        key: SecretKey,
        token_ttl: Duration,
        mailer: Mailer,
    ) -> Result<Self, AccountsError> {
        Ok(Self {
            revocations: Arc::new(Revocations::load(&db).await?),
            passwords: Passwords::new()
                .await
                .map_err(|e| AccountsError::Internal(e.to_string()))?,
            tokens: Tokens::new(key, token_ttl),
            db,
            mailer,
            socket_token_ttl: DEFAULT_SOCKET_TOKEN_TTL,
            cluster: Arc::default(),
            on_revoked: Arc::default(),
        })
    }

    /// The same context issuing socket tokens valid for `ttl`.
    pub fn with_socket_token_ttl(mut self, ttl: Duration) -> Self {
        self.socket_token_ttl = ttl;
        self
    }

    /// Registers a user from untrusted `input` (the `"user"` object). Without a password, one
    /// is generated, returned once, and mailed to the user.
    pub async fn register(&self, input: &Value) -> Result<Registered, AccountsError> {
        self.register_admitted(input, || Ok::<_, AccountsError>(()))
            .await
    }

    /// [`Accounts::register`], asking `admit` once `input` is valid, before any password is
    /// hashed or anything stored: a budget that only valid registrations should use (an
    /// invalid body costs nothing) is charged there, and its error returned as is.
    pub async fn register_admitted<E: From<AccountsError>>(
        &self,
        input: &Value,
        admit: impl FnOnce() -> Result<(), E>,
    ) -> Result<Registered, E> {
        let (params, errors) = UserParams::cast(input);
        params
            .validate_create(errors)
            .map_err(AccountsError::Invalid)?;
        admit()?;
        let generated = params.password.is_none().then(password::generate);
        let clear = params
            .password
            .clone()
            .or_else(|| generated.clone())
            .unwrap_or_default();
        let hash = self.hash(clear).await?;
        let now = Utc::now();
        let row = user::ActiveModel {
            name: Set(params.name.unwrap_or_default()),
            subname: Set(params.subname.unwrap_or_default()),
            email: Set(params.email.unwrap_or_default()),
            job: Set(params.job.unwrap_or_default()),
            password_hash: Set(hash),
            inserted_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        let user = User::from(
            user::Entity::insert(row)
                .exec_with_returning(&self.db)
                .await
                .map_err(email_taken)?,
        );
        if let Some(password) = &generated {
            self.mailer.deliver_later(welcome_mail(&user, password));
        }
        tracing::info!(user_id = user.id, "user registered");
        Ok(Registered {
            user,
            generated_password: generated,
        })
    }

    /// Checks `email` and `password` and issues a token. An unknown e-mail and a wrong
    /// password fail alike, in the same time.
    pub async fn login(&self, email: &str, password: &str) -> Result<Session, AccountsError> {
        // The token is stamped with the time the hash was read, not the time it is issued: a
        // password change that commits while this login verifies the old password revokes it.
        let read_at = token::now();
        // No account has an address holding U+0000 (registration refuses it), and PostgreSQL
        // cannot even compare one: do not ask (schemathesis finding 1).
        let found = if email.contains('\0') {
            None
        } else {
            self.find_by_email(email).await?
        };
        let hash = found.as_ref().map(|u| u.password_hash.clone());
        if !self.passwords.verify(password.to_owned(), hash).await {
            return Err(AccountsError::InvalidCredentials);
        }
        let user = User::from(found.ok_or(AccountsError::InvalidCredentials)?);
        let (token, claims) = self
            .tokens
            .issue(user.id, read_at)
            .map_err(|e| AccountsError::Internal(e.to_string()))?;
        Ok(Session {
            user,
            token,
            expires_at: claims.expires_at,
        })
    }

    /// The claims of `token` if it is authentic, unexpired and not revoked. No database
    /// round trip.
    pub fn authenticate(&self, token: &str) -> Result<AccessClaims, AccountsError> {
        let claims = self
            .tokens
            .verify(token)
            .map_err(|_| AccountsError::Unauthenticated)?;
        if self.revocations.is_revoked(&claims) {
            return Err(AccountsError::Unauthenticated);
        }
        Ok(claims)
    }

    /// Revokes the token `claims` came from.
    pub async fn logout(&self, claims: &AccessClaims) -> Result<(), AccountsError> {
        let row = self.revocations.revoke_token(&self.db, claims).await?;
        self.announce(&row);
        tracing::info!(user_id = claims.user_id, "token revoked");
        Ok(())
    }

    /// The user with `id`.
    pub async fn get_user(&self, id: i64) -> Result<User, AccountsError> {
        user::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(User::from)
            .ok_or(AccountsError::NotFound)
    }

    /// Users with ids above `after`, at most `limit` (1..=[`MAX_PAGE`]).
    pub async fn list_users(
        &self,
        after: Option<i64>,
        limit: u64,
    ) -> Result<UserPage, AccountsError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut query = user::Entity::find().order_by_asc(user::Column::Id);
        if let Some(after) = after {
            query = query.filter(user::Column::Id.gt(after));
        }
        let mut rows = query.limit(limit + 1).all(&self.db).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next = if more {
            rows.last().map(|u| u.id)
        } else {
            None
        };
        Ok(UserPage {
            users: rows.into_iter().map(User::from).collect(),
            next,
        })
    }

    /// Changes user `id` from untrusted `input`; only the user themself may, with the token
    /// `presenting`.
    ///
    /// Changing the password or the e-mail address needs `current_password` in `input`
    /// (checked like a login; missing or wrong → [`AccountsError::Invalid`] on
    /// `current_password`, and nothing changes), and revokes every token of the user except
    /// `presenting`, in the same transaction.
    pub async fn update_user(
        &self,
        actor: i64,
        id: i64,
        input: &Value,
        presenting: &AccessClaims,
    ) -> Result<Updated, AccountsError> {
        let current = self.owned_user(actor, id).await?;
        let (params, mut errors) = UserParams::cast(input);
        let sensitive = params.password.is_some()
            || params
                .email
                .as_deref()
                .is_some_and(|email| email.to_lowercase() != current.email.to_lowercase());
        let current_password = match input.get("current_password") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if !p.is_empty() => Some(p.clone()),
            Some(Value::String(_)) => None,
            Some(_) => {
                errors.add("current_password", "is invalid");
                None
            }
        };
        if sensitive && current_password.is_none() && errors.get("current_password").is_none() {
            errors.add("current_password", "can't be blank");
        }
        params
            .validate_update(errors)
            .map_err(AccountsError::Invalid)?;
        if let (true, Some(password)) = (sensitive, current_password)
            && !self
                .passwords
                .verify(password, Some(current.password_hash.clone()))
                .await
        {
            return Err(AccountsError::Invalid(FieldErrors::single(
                "current_password",
                "is invalid",
            )));
        }
        let previous_email = current.email.clone();
        let mut row: user::ActiveModel = current.into();
        if let Some(v) = params.name {
            row.name = Set(v);
        }
        if let Some(v) = params.subname {
            row.subname = Set(v);
        }
        if let Some(v) = params.email {
            row.email = Set(v);
        }
        if let Some(v) = params.job {
            row.job = Set(v);
        }
        if let Some(password) = params.password {
            row.password_hash = Set(self.hash(password).await?);
        }
        row.updated_at = Set(Utc::now());
        if !sensitive {
            let updated = row.update(&self.db).await.map_err(email_taken)?;
            return Ok(Updated {
                user: User::from(updated),
                sessions_revoked: false,
                previous_email,
            });
        }
        let txn = self.db.begin().await?;
        let updated = row.update(&txn).await.map_err(email_taken)?;
        let revocation =
            Revocations::insert_user_revocation(&txn, id, Some(presenting), self.tokens.ttl())
                .await?;
        txn.commit().await?;
        self.settle(id, revocation).await;
        tracing::info!(user_id = id, "credentials changed; other tokens revoked");
        Ok(Updated {
            user: User::from(updated),
            sessions_revoked: true,
            previous_email,
        })
    }

    /// Deletes user `id`; only the user themself may. Every token of theirs is revoked in the
    /// same transaction, including one a login that read the row just before the commit is
    /// still issuing.
    pub async fn delete_user(&self, actor: i64, id: i64) -> Result<(), AccountsError> {
        self.delete_user_then(actor, id, async || {}).await
    }

    /// [`Accounts::delete_user`], running `before_commit` once the row is deleted and the
    /// revocation written, before the transaction commits (where a test races a login).
    async fn delete_user_then(
        &self,
        actor: i64,
        id: i64,
        before_commit: impl AsyncFnOnce(),
    ) -> Result<(), AccountsError> {
        self.owned_user(actor, id).await?;
        let txn = self.db.begin().await?;
        user::Entity::delete_by_id(id).exec(&txn).await?;
        let revocation =
            Revocations::insert_user_revocation(&txn, id, None, self.tokens.ttl()).await?;
        before_commit().await;
        txn.commit().await?;
        self.settle(id, revocation).await;
        tracing::info!(user_id = id, "user deleted");
        Ok(())
    }

    /// Puts a committed per-user revocation in force: caches it at once (no token it covers
    /// may pass while the next write waits for the database), then moves its instant past the
    /// commit (a login stamps its token with the time it read the row, which may be after the
    /// instant taken inside the transaction yet before the commit) and caches it again.
    async fn settle(&self, user_id: i64, mut revocation: entity::token_revocation::Model) {
        self.revocations.remember(&revocation);
        self.announce(&revocation);
        match Revocations::move_to_now(&self.db, &mut revocation, self.tokens.ttl()).await {
            Ok(()) => {
                self.revocations.remember(&revocation);
                self.announce(&revocation);
            }
            Err(e) => {
                tracing::warn!(user_id, error = %e, "could not move a revocation past its commit");
            }
        }
    }

    /// Drops revocations whose tokens have all expired. Returns how many rows went.
    pub async fn prune_revocations(&self) -> Result<u64, AccountsError> {
        Ok(self.revocations.prune(&self.db).await?)
    }

    async fn owned_user(&self, actor: i64, id: i64) -> Result<user::Model, AccountsError> {
        let found = user::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or(AccountsError::NotFound)?;
        if found.id != actor {
            return Err(AccountsError::Forbidden);
        }
        Ok(found)
    }

    async fn find_by_email(&self, email: &str) -> Result<Option<user::Model>, DbErr> {
        user::Entity::find()
            .filter(
                Expr::expr(Func::lower(Expr::col(user::Column::Email)))
                    .eq(Func::lower(Expr::val(email.trim()))),
            )
            .one(&self.db)
            .await
    }

    async fn hash(&self, password: String) -> Result<String, AccountsError> {
        self.passwords
            .hash(password)
            .await
            .map_err(|e| AccountsError::Internal(e.to_string()))
    }
}

/// Maps the unique-email violation to a validation error.
fn email_taken(e: DbErr) -> AccountsError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            AccountsError::Invalid(FieldErrors::single("email", "has already been taken"))
        }
        _ => AccountsError::Database(e),
    }
}

fn welcome_mail(user: &User, password: &str) -> Email {
    Email {
        to: user.email.clone(),
        subject: "Welcome to Fawkes".to_owned(),
        body: format!(
            "Hello {name},\n\nyour Fawkes account is ready.\n\n  e-mail:   {email}\n  password: {password}\n\n\
             Keep this password safe; you can change it at any time.\n",
            name = user.name,
            email = user.email,
        ),
    }
}
