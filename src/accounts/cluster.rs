//! Revocations across the nodes of a cluster: each node caches every revocation (see
//! `revocation`), so a token revoked through one node must be refused by all.
//!
//! A node that commits a revocation announces the row on [`REVOCATIONS_TOPIC`]; every node
//! follows that topic and caches what it hears. Announcements are at most once, like every
//! broadcast between nodes, so each node also reads the recent rows from the database every
//! [`REFRESH_EVERY`] (`Accounts::refresh_revocations`): a revocation announced while the link
//! was down is in force everywhere within that interval.
//!
//! Each revocation a node learns this way is also handed to the hook given to
//! [`Accounts::join_cluster`], which closes the node's sockets of the revoked tokens: the
//! disconnect the revoking node broadcast is at most once too, and a socket that reconnected
//! with a revoked token before its revocation was known here is closed all the same.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::token_revocation;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Accounts, AccountsError};
use crate::runtime::PubSub;

/// The topic revocations are announced on (no channel is mounted on it: clients cannot join).
pub const REVOCATIONS_TOPIC: &str = "fawkes:revocations";
const REVOKED: &str = "revoked";

/// How often a clustered node reads the revocations other nodes wrote.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// A revocation row as announced.
#[derive(Serialize, Deserialize)]
struct Announced {
    id: i64,
    jti: Option<String>,
    user_id: Option<i64>,
    revoked_before: Option<DateTime<Utc>>,
    except_jti: Option<String>,
    except_issued_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
    inserted_at: DateTime<Utc>,
}

impl From<&token_revocation::Model> for Announced {
    fn from(row: &token_revocation::Model) -> Self {
        Self {
            id: row.id,
            jti: row.jti.clone(),
            user_id: row.user_id,
            revoked_before: row.revoked_before,
            except_jti: row.except_jti.clone(),
            except_issued_at: row.except_issued_at,
            expires_at: row.expires_at,
            inserted_at: row.inserted_at,
        }
    }
}

impl From<Announced> for token_revocation::Model {
    fn from(a: Announced) -> Self {
        Self {
            id: a.id,
            jti: a.jti,
            user_id: a.user_id,
            revoked_before: a.revoked_before,
            except_jti: a.except_jti,
            except_issued_at: a.except_issued_at,
            expires_at: a.expires_at,
            inserted_at: a.inserted_at,
        }
    }
}

/// A revocation another node made, as [`Accounts::join_cluster`]'s hook receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// One token (logout).
    Token {
        /// Its `jti`.
        jti: String,
    },
    /// Every token of a user issued up to the revocation, but `spared`'s (the token whose
    /// session made the change) if any.
    User {
        /// The user.
        user_id: i64,
        /// The spared token's `jti`.
        spared: Option<String>,
    },
}

impl From<&token_revocation::Model> for Revoked {
    fn from(row: &token_revocation::Model) -> Self {
        match (&row.jti, row.user_id) {
            (Some(jti), _) => Revoked::Token { jti: jti.clone() },
            (None, Some(user_id)) => Revoked::User {
                user_id,
                spared: row.except_jti.clone(),
            },
            // Neither: a row written by hand that revokes nothing.
            (None, None) => Revoked::Token { jti: String::new() },
        }
    }
}

/// What a node does with a revocation another node made (closes its sockets).
pub type OnRevoked = Arc<dyn Fn(&Revoked) + Send + Sync>;

impl Accounts {
    /// Makes this node part of a cluster: every revocation it commits is announced through
    /// `pubsub`, and the others' are cached as they are heard (and handed to `on_revoked`),
    /// until `shutdown`.
    pub fn join_cluster(&self, pubsub: PubSub, on_revoked: OnRevoked, shutdown: CancellationToken) {
        let _ = self.cluster.set(pubsub.clone());
        let _ = self.on_revoked.set(on_revoked);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let mut heard = pubsub.subscribe(REVOCATIONS_TOPIC).await;
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        next = heard.recv() => match next {
                            Some(b) => match b.payload.decode::<Announced>() {
                                Ok(row) => this.learned(&row.into()),
                                Err(e) => tracing::warn!(error = %e, "bad revocation announcement"),
                            },
                            None => break,
                        },
                    }
                }
                // The subscription ended (it fell behind, or its topic actor failed): what it
                // missed is in the database.
                tracing::warn!("revocation announcements interrupted: reading the database");
                if let Err(e) = this.refresh_revocations().await {
                    tracing::warn!(error = %e, "reading revocations failed");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        });
    }

    /// Tells the other nodes about a committed revocation (nothing for a single node).
    pub(super) fn announce(&self, row: &token_revocation::Model) {
        if let Some(pubsub) = self.cluster.get() {
            match crate::runtime::Payload::json(&Announced::from(row)) {
                Ok(payload) => pubsub.broadcast(REVOCATIONS_TOPIC, REVOKED, payload),
                Err(e) => tracing::warn!(error = %e, "revocation not announced"),
            }
        }
    }

    /// A revocation heard of or read: cached, and if it is new here, handed to the hook.
    fn learned(&self, row: &token_revocation::Model) {
        if self.revocations.remember(row)
            && let Some(hook) = self.on_revoked.get()
        {
            hook(&Revoked::from(row));
        }
    }

    /// Caches the revocations written (by any node) since shortly before the last call, and
    /// hands those new here to the hook; returns how many were new.
    pub async fn refresh_revocations(&self) -> Result<usize, AccountsError> {
        let new = self.revocations.refresh(&self.db).await?;
        if let Some(hook) = self.on_revoked.get() {
            for row in &new {
                hook(&Revoked::from(row));
            }
        }
        Ok(new.len())
    }
}
