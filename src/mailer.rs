//! Outgoing mail: compose, record, deliver — never in a request's path.
//!
//! Every mail is recorded in the `mails` table with its body sealed by the server key (a body
//! may carry a generated password, which must never be stored in clear). With the `outbox`
//! transport the record is the delivery (read it at `GET /dev/mailbox` in dev); with `smtp` the
//! record tracks the attempt: `pending`, then `sent` or `failed` with the error.
//!
//! [`Mailer::deliver_later`] runs on a tracked task, so a slow or failing relay never delays
//! or fails the request that caused the mail, and shutdown waits for mail in flight.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::mail;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseConnection, DbErr, EntityTrait, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use tokio_util::task::TaskTracker;

use crate::config::{MailConfig, MailTransportKind, Purpose, SecretKey, SmtpTls};

/// A mail to send.
#[derive(Debug, Clone)]
pub struct Email {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// A recorded mail, opened for display (`GET /dev/mailbox`).
#[derive(Debug, Clone, Serialize)]
pub struct SentMail {
    /// Record id.
    pub id: i64,
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// The body, or `null` if it was sealed under another key.
    pub body: Option<String>,
    /// `outbox` or `smtp`.
    pub transport: String,
    /// `stored`, `pending`, `sent` or `failed`.
    pub status: String,
    /// Why delivery failed.
    pub error: Option<String>,
    /// When it was queued.
    pub inserted_at: DateTime<Utc>,
}

/// The mailer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    /// The `from` setting is not a mailbox.
    #[error("mail.from {0:?} is not a valid mailbox")]
    From(String),
    /// The SMTP relay settings were refused.
    #[error("mail SMTP settings: {0}")]
    Smtp(String),
}

enum Transport {
    Outbox,
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

struct Inner {
    db: DatabaseConnection,
    key: SecretKey,
    from: Mailbox,
    transport: Transport,
    tasks: TaskTracker,
}

/// Sends mail in the background and records every attempt.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

impl Mailer {
    /// A mailer for `config`, recording into `db`, sealing with `key`.
    pub fn new(
        config: &MailConfig,
        db: DatabaseConnection,
        key: SecretKey,
    ) -> Result<Self, MailerError> {
        let from = config
            .from
            .parse()
            .map_err(|_| MailerError::From(config.from.clone()))?;
        let transport = match config.transport {
            MailTransportKind::Outbox => Transport::Outbox,
            MailTransportKind::Smtp => Transport::Smtp(smtp_transport(config)?),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                key,
                from,
                transport,
                tasks: TaskTracker::new(),
            }),
        })
    }

    /// Records and delivers `email` on a background task; never fails the caller.
    pub fn deliver_later(&self, email: Email) {
        let this = self.clone();
        self.inner
            .tasks
            .spawn(async move { this.deliver(email).await });
    }

    /// Records and delivers `email` now. Failures are recorded and logged, not returned.
    pub async fn deliver(&self, email: Email) {
        let inner = &self.inner;
        let (transport, status) = match inner.transport {
            Transport::Outbox => ("outbox", "stored"),
            Transport::Smtp(_) => ("smtp", "pending"),
        };
        let Some(sealed) = inner.key.seal(Purpose::MailBody, email.body.as_bytes()) else {
            tracing::error!(to = %email.to, "could not seal a mail body; mail dropped");
            return;
        };
        let now = Utc::now();
        let record = mail::ActiveModel {
            recipient: Set(email.to.clone()),
            subject: Set(email.subject.clone()),
            body_sealed: Set(sealed),
            transport: Set(transport.to_owned()),
            status: Set(status.to_owned()),
            error: Set(None),
            inserted_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        let record = match mail::Entity::insert(record)
            .exec_with_returning(&inner.db)
            .await
        {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(to = %email.to, error = %e, "could not record a mail; mail dropped");
                return;
            }
        };
        let Transport::Smtp(smtp) = &inner.transport else {
            tracing::info!(mail_id = record.id, to = %email.to, "mail stored in the outbox");
            return;
        };
        let outcome = match self.compose(&email) {
            Ok(message) => smtp
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let (status, error) = match &outcome {
            Ok(()) => ("sent", None),
            Err(e) => ("failed", Some(e.clone())),
        };
        match &outcome {
            Ok(()) => tracing::info!(mail_id = record.id, to = %email.to, "mail sent"),
            Err(e) => {
                tracing::warn!(mail_id = record.id, to = %email.to, error = %e, "mail delivery failed")
            }
        }
        let mut update: mail::ActiveModel = record.into();
        update.status = Set(status.to_owned());
        update.error = Set(error);
        update.updated_at = Set(Utc::now());
        if let Err(e) = update.update(&inner.db).await {
            tracing::error!(error = %e, "could not record a mail's delivery status");
        }
    }

    fn compose(&self, email: &Email) -> Result<Message, String> {
        let to: Mailbox = email
            .to
            .parse()
            .map_err(|e| format!("invalid recipient {:?}: {e}", email.to))?;
        Message::builder()
            .from(self.inner.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.clone())
            .map_err(|e| e.to_string())
    }

    /// The most recent `limit` recorded mails, newest first, bodies opened.
    pub async fn recent(&self, limit: u64) -> Result<Vec<SentMail>, DbErr> {
        let rows = mail::Entity::find()
            .order_by_desc(mail::Column::Id)
            .limit(limit)
            .all(&self.inner.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| SentMail {
                id: row.id,
                body: self.inner.key.open(Purpose::MailBody, &row.body_sealed),
                to: row.recipient,
                subject: row.subject,
                transport: row.transport,
                status: row.status,
                error: row.error,
                inserted_at: row.inserted_at,
            })
            .collect())
    }

    /// Stops taking mail and waits up to `timeout` for mail in flight. Returns whether all of
    /// it finished.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        self.inner.tasks.close();
        tokio::time::timeout(timeout, self.inner.tasks.wait())
            .await
            .is_ok()
    }
}

fn smtp_transport(config: &MailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailerError> {
    let smtp_err = |e: lettre::transport::smtp::Error| MailerError::Smtp(e.to_string());
    let host = config.smtp_host.as_str();
    let builder = match config.smtp_tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpTls::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(smtp_err)?
        }
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(smtp_err)?,
    };
    let mut builder = builder
        .port(config.smtp_port)
        .timeout(Some(Duration::from_secs(config.smtp_timeout_secs)));
    if let (Some(user), Some(password)) = (&config.smtp_username, &config.smtp_password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}
