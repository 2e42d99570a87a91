//! The accounts context over a real SQLite database: orderings between a login and a
//! transaction that revokes the user's tokens, and between a revocation's commit and its
//! cache, which no request from outside can time.

use std::time::Duration;

use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
use serde_json::json;

use super::revocation::Revocations;
use super::{Accounts, AccountsError, Session};
use crate::config::{MailConfig, SecretKey};
use crate::mailer::Mailer;

const EMAIL: &str = "racer@example.com";
const PASSWORD: &str = "correct horse battery";

/// A context on a fresh SQLite file (pooled, as the server opens it) and one registered user.
async fn context() -> (Accounts, i64, tempfile::TempDir) {
    let (accounts, id, dir, _) = context_at().await;
    (accounts, id, dir)
}

/// [`context`], and the database's URL.
async fn context_at() -> (Accounts, i64, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("fawkes.db").display());
    crate::db::migrate(&url).await.expect("migrate");
    let db = crate::db::connect(&url, 4).await.expect("connect");
    let key = SecretKey::generate();
    let mailer = Mailer::new(&MailConfig::default(), db.clone(), key.clone()).expect("mailer");
    let accounts = Accounts::new(db, key, Duration::from_secs(3600), mailer)
        .await
        .expect("accounts");
    let registered = accounts
        .register(&json!({
            "name": "Race", "subname": "Condition", "email": EMAIL, "job": "Tester",
            "password": PASSWORD,
        }))
        .await
        .expect("register");
    (accounts, registered.user.id, dir, url)
}

#[tokio::test]
async fn a_login_that_read_the_row_before_the_deletion_committed_gets_a_revoked_token() {
    let (accounts, id, _dir) = context().await;
    let mut raced: Option<Session> = None;
    // The login runs inside the deletion, after its revocation instant was taken and before it
    // commits: it still sees the row, verifies the password and stamps its token later than
    // that instant.
    accounts
        .delete_user_then(id, id, async || {
            raced = Some(
                accounts
                    .login(EMAIL, PASSWORD)
                    .await
                    .expect("the row is there"),
            );
        })
        .await
        .expect("delete");
    let raced = raced.expect("the login ran");
    assert!(
        matches!(
            accounts.authenticate(&raced.token),
            Err(AccountsError::Unauthenticated)
        ),
        "a token from a login that raced the deletion stays valid"
    );
    assert!(matches!(
        accounts.login(EMAIL, PASSWORD).await,
        Err(AccountsError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn a_committed_revocation_is_in_force_before_its_instant_is_moved() {
    let (accounts, id, _dir, url) = context_at().await;
    let session = accounts.login(EMAIL, PASSWORD).await.expect("login");
    // A revocation of every token of the user, committed (as after a credential change).
    let revocation =
        Revocations::insert_user_revocation(&accounts.db, id, None, accounts.tokens.ttl())
            .await
            .expect("revocation");
    // Another connection holds SQLite's write lock: moving the instant has to wait for it.
    let other = crate::db::connect(&url, 1).await.expect("connect");
    let lock = other.begin().await.expect("begin");
    lock.execute_unprepared("UPDATE users SET name = name")
        .await
        .expect("take the write lock");
    // Settling, while the move waits: the token is refused already. (The settle future only
    // completes with its last step, so seeing the token refused first means the cache had the
    // revocation while the write was still pending.)
    let settle = accounts.settle(id, revocation);
    tokio::pin!(settle);
    let refused_while_moving = tokio::select! {
        () = &mut settle => false,
        () = async {
            while accounts.authenticate(&session.token).is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } => true,
    };
    assert!(
        refused_while_moving,
        "the revocation reached the cache only after the move was written"
    );
    lock.rollback().await.expect("release the lock");
    settle.await;
    assert!(matches!(
        accounts.authenticate(&session.token),
        Err(AccountsError::Unauthenticated)
    ));
}
