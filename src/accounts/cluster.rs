//! Revocations across the nodes of a cluster: each node caches every revocation (see
//! `revocation`), so a token revoked through one node must be refused by all.
//!
//! A node that commits a revocation announces the row on [`REVOCATIONS_TOPIC`]; every node
//! follows that topic and caches what it hears. Announcements are at most once, like every
//! broadcast between nodes, so each node also reads the recent rows from the database every
//! [`REFRESH_EVERY`] (`Accounts::refresh_revocations`): a revocation announced while the link
//! was down is in force everywhere within that interval.

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

impl Accounts {
    /// Makes this node part of a cluster: every revocation it commits is announced through
    /// `pubsub`, and the others' are cached as they are heard, until `shutdown`.
    pub fn join_cluster(&self, pubsub: PubSub, shutdown: CancellationToken) {
        let _ = self.cluster.set(pubsub.clone());
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let mut heard = pubsub.subscribe(REVOCATIONS_TOPIC).await;
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        next = heard.recv() => match next {
                            Some(b) => match b.payload.decode::<Announced>() {
                                Ok(row) => this.revocations.remember(&row.into()),
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

    /// Caches the revocations written (by any node) since shortly before the last call;
    /// returns how many rows were read.
    pub async fn refresh_revocations(&self) -> Result<usize, AccountsError> {
        Ok(self.revocations.refresh(&self.db).await?)
    }
}
