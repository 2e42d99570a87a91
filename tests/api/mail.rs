//! Mail delivery over SMTP, failure recording, and that mail never fails a registration.

use std::time::Duration;

use fawkes::config::{MailTransportKind, SmtpTls};
use serde_json::json;

use crate::support::TestServer;
use crate::support::smtp::FakeSmtp;

fn newcomer(email: &str) -> serde_json::Value {
    json!({"user": {"name": "New", "subname": "Comer", "email": email, "job": "Pilot"}})
}

#[tokio::test]
async fn generated_passwords_are_mailed_over_smtp_and_recorded_as_sent() {
    let mut smtp = FakeSmtp::start().await;
    let port = smtp.port;
    let t = TestServer::start_with(|c| {
        c.mail.transport = MailTransportKind::Smtp;
        c.mail.smtp_host = "127.0.0.1".into();
        c.mail.smtp_port = port;
        c.mail.smtp_tls = SmtpTls::None;
    })
    .await;
    let resp = t
        .post("/api/v1/users", None, newcomer("smtp@example.com"))
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let password = resp.body["data"]["password"].as_str().expect("password");

    let message = tokio::time::timeout(Duration::from_secs(10), smtp.messages.recv())
        .await
        .expect("mail within 10 s")
        .expect("a message");
    assert!(message.contains("To: smtp@example.com"), "{message}");
    assert!(message.contains("Subject: Welcome to Fawkes"), "{message}");
    assert!(
        message.contains(password),
        "the generated password is in the mail"
    );

    let record = t
        .wait_for_mail("smtp@example.com", |m| m["status"] == "sent")
        .await;
    assert_eq!(record["transport"], "smtp");
    assert!(record["error"].is_null());
}

#[tokio::test]
async fn smtp_failures_are_recorded_and_never_fail_the_registration() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let t = TestServer::start_with(|c| {
        c.mail.transport = MailTransportKind::Smtp;
        c.mail.smtp_host = "127.0.0.1".into();
        c.mail.smtp_port = port;
        c.mail.smtp_tls = SmtpTls::None;
        c.mail.smtp_timeout_secs = 2;
    })
    .await;
    let resp = t
        .post("/api/v1/users", None, newcomer("unlucky@example.com"))
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let password = resp.body["data"]["password"]
        .as_str()
        .expect("password")
        .to_owned();

    let record = t
        .wait_for_mail("unlucky@example.com", |m| m["status"] == "failed")
        .await;
    assert!(
        record["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{record}"
    );
    // The message itself is kept with the failure.
    assert!(record["body"].as_str().expect("body").contains(&password));
    // And the account works.
    t.login("unlucky@example.com", &password).await;
}

#[tokio::test]
async fn a_chosen_password_is_never_mailed() {
    let t = TestServer::start().await;
    t.register("chosen@example.com").await;
    let (_, token) = t.user("second@example.com").await;
    assert_eq!(t.get("/api/v1/me", Some(&token)).await.status, 200);
    let mailbox = t.get("/dev/mailbox", None).await;
    assert_eq!(mailbox.body, json!({"data": []}));
}
