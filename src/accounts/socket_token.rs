//! Socket tokens: short-lived strings for connecting the app socket, so that browsers need not
//! put a long-lived access token in a WebSocket URL (where proxies log it).
//!
//! A socket token is [`SecretKey::sign`](crate::config::SecretKey::sign)ed data for the purpose
//! `fawkes:socket` holding the claims of the access token that asked for it (its parent). It
//! is accepted for connecting for the socket token lifetime (60 s by default) and never after
//! its parent expires; revoking the parent (logout, a password change made elsewhere, account
//! deletion) refuses it at once, because the parent's claims are checked against the
//! revocation cache. A socket opened with it belongs to the parent session (its disconnect
//! topic is the parent's). It is never accepted as a REST bearer token: its purpose differs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::token::now;
use super::{AccessClaims, Accounts, AccountsError};

/// The purpose socket tokens are signed for.
const PURPOSE: &str = "fawkes:socket";

/// A socket token, when it was issued and when it stops being accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SocketToken {
    /// The token, for the socket's `token` parameter or phoenix.js `authToken`.
    pub token: String,
    /// The instant it was signed at (its lifetime counts from here).
    pub issued_at: DateTime<Utc>,
    /// After this instant it is refused: `issued_at` plus the socket token lifetime, or its
    /// parent's expiry if that comes first.
    pub expires_at: DateTime<Utc>,
}

/// What a socket token carries: its parent's claims.
#[derive(Serialize, Deserialize)]
struct Parent {
    sub: i64,
    jti: String,
    iat: DateTime<Utc>,
    exp: DateTime<Utc>,
}

impl Accounts {
    /// A socket token for the session of `parent` (already authenticated).
    pub fn issue_socket_token(&self, parent: &AccessClaims) -> Result<SocketToken, AccountsError> {
        let ttl = chrono::Duration::from_std(self.socket_token_ttl)
            .map_err(|e| AccountsError::Internal(e.to_string()))?;
        // The instant signed into the token: the expiry shown is the real one.
        let issued_at = now();
        let expires_at = issued_at
            .checked_add_signed(ttl)
            .map_or(parent.expires_at, |at| at.min(parent.expires_at));
        let data = Parent {
            sub: parent.user_id,
            jti: parent.jti.clone(),
            iat: parent.issued_at,
            exp: parent.expires_at,
        };
        let token = self
            .tokens
            .key()
            .sign_at(PURPOSE, &data, issued_at)
            .map_err(|e| AccountsError::Internal(e.to_string()))?;
        Ok(SocketToken {
            token,
            issued_at,
            expires_at,
        })
    }

    /// The access claims a socket may connect with: those of an access token, or of the
    /// parent of a socket token that is still within its lifetime. Either way the session
    /// must be unexpired and not revoked. No database round trip.
    pub fn authenticate_socket(&self, token: &str) -> Result<AccessClaims, AccountsError> {
        if let Ok(claims) = self.authenticate(token) {
            return Ok(claims);
        }
        let parent: Parent = self
            .tokens
            .key()
            .verify(PURPOSE, token, self.socket_token_ttl)
            .map_err(|_| AccountsError::Unauthenticated)?;
        let claims = AccessClaims {
            user_id: parent.sub,
            jti: parent.jti,
            issued_at: parent.iat,
            expires_at: parent.exp,
        };
        if claims.expires_at < Utc::now() || self.revocations.is_revoked(&claims) {
            return Err(AccountsError::Unauthenticated);
        }
        Ok(claims)
    }
}
