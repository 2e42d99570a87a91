//! The accounts context over a real SQLite database: orderings between a login and a
//! transaction that revokes the user's tokens, which no request from outside can time.

use std::time::Duration;

use serde_json::json;

use super::{Accounts, AccountsError, Session};
use crate::config::{MailConfig, SecretKey};
use crate::mailer::Mailer;

const EMAIL: &str = "racer@example.com";
const PASSWORD: &str = "correct horse battery";

/// A context on a fresh SQLite file (pooled, as the server opens it) and one registered user.
async fn context() -> (Accounts, i64, tempfile::TempDir) {
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
    (accounts, registered.user.id, dir)
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
