//! Access tokens: PASETO v4.local, claims `sub` (user id), `iat`, `nbf`, `exp`, `jti`.
//!
//! `iat` carries microseconds (PASETO allows fractional seconds): a per-user revocation refuses
//! tokens issued at or before an instant, and a token issued in the same second just after it
//! must not be caught. Microseconds are what PostgreSQL keeps of a timestamp, so both sides of
//! that comparison survive a round trip through the database unchanged.
//!
//! v4.local is encrypted and authenticated with the server key: a client can neither read nor
//! forge one. Verifying is pure computation (no database); revocation is checked separately
//! against the in-memory [`super::revocation::Revocations`].

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound as _, Utc};
use pasetors::claims::{Claims, ClaimsValidationRules};
use pasetors::token::UntrustedToken;
use pasetors::version4::V4;

use crate::config::{Purpose, SecretKey};

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user the token was issued to.
    pub user_id: i64,
    /// The token's unique id (used to revoke it).
    pub jti: String,
    /// When it was issued (microseconds; whole seconds for tokens made before they were kept).
    pub issued_at: DateTime<Utc>,
    /// When it stops being valid.
    pub expires_at: DateTime<Utc>,
}

/// Issues and verifies access tokens.
#[derive(Clone, Debug)]
pub(crate) struct Tokens {
    key: SecretKey,
    ttl: Duration,
}

/// Why a token was refused or could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// Garbled, forged, expired, or missing a claim.
    #[error("invalid token")]
    Invalid,
    /// The claims could not be built (a clock or overflow problem).
    #[error("could not issue a token")]
    Issue,
}

impl Tokens {
    pub(crate) fn new(key: SecretKey, ttl: Duration) -> Self {
        Self { key, ttl }
    }

    /// The server key (socket tokens are signed with it).
    pub(crate) fn key(&self) -> &SecretKey {
        &self.key
    }

    /// The configured token lifetime.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new token for `user_id`, issued at `issued_at` (not in the future; see [`now`]).
    pub(crate) fn issue(
        &self,
        user_id: i64,
        issued_at: DateTime<Utc>,
    ) -> Result<(String, AccessClaims), TokenError> {
        let jti = format!("{:032x}", rand::random::<u128>());
        let issued_at = issued_at.trunc_subsecs(6);
        let ttl = chrono::Duration::from_std(self.ttl).map_err(|_| TokenError::Issue)?;
        let expires_at = issued_at.checked_add_signed(ttl).ok_or(TokenError::Issue)?;
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut claims = Claims::new().map_err(|_| TokenError::Issue)?;
        claims
            .issued_at(&stamp(issued_at))
            .map_err(|_| TokenError::Issue)?;
        claims
            .not_before(&stamp(issued_at))
            .map_err(|_| TokenError::Issue)?;
        claims
            .expiration(&stamp(expires_at))
            .map_err(|_| TokenError::Issue)?;
        claims
            .subject(&user_id.to_string())
            .map_err(|_| TokenError::Issue)?;
        claims
            .token_identifier(&jti)
            .map_err(|_| TokenError::Issue)?;
        let parsed = parse_claims(&claims).ok_or(TokenError::Issue)?;
        let token = pasetors::local::encrypt(
            self.key.symmetric(),
            &claims,
            None,
            Some(Purpose::AccessToken.assertion()),
        )
        .map_err(|_| TokenError::Issue)?;
        Ok((token, parsed))
    }

    /// The claims of `token` if it is authentic and currently valid.
    pub(crate) fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let untrusted = UntrustedToken::<pasetors::Local, V4>::try_from(token)
            .map_err(|_| TokenError::Invalid)?;
        let rules = ClaimsValidationRules::new();
        let trusted = pasetors::local::decrypt(
            self.key.symmetric(),
            &untrusted,
            &rules,
            None,
            Some(Purpose::AccessToken.assertion()),
        )
        .map_err(|_| TokenError::Invalid)?;
        trusted
            .payload_claims()
            .and_then(parse_claims)
            .ok_or(TokenError::Invalid)
    }
}

/// The current time at the precision tokens and revocations keep (microseconds).
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn parse_claims(claims: &Claims) -> Option<AccessClaims> {
    let text = |name: &str| claims.get_claim(name).and_then(|v| v.as_str());
    let time = |name: &str| {
        text(name)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    Some(AccessClaims {
        user_id: text("sub")?.parse().ok()?,
        jti: text("jti")?.to_owned(),
        issued_at: time("iat")?,
        expires_at: time("exp")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ttl: Duration) -> Tokens {
        Tokens::new(SecretKey::generate(), ttl)
    }

    #[test]
    fn issue_then_verify() {
        let tokens = tokens(Duration::from_secs(60));
        let at = Utc::now();
        let (token, claims) = tokens.issue(42, at).expect("issue");
        assert!(token.starts_with("v4.local."));
        assert_eq!(tokens.verify(&token), Ok(claims.clone()));
        assert_eq!(claims.user_id, 42);
        assert_eq!(claims.jti.len(), 32);
        assert_eq!((claims.expires_at - claims.issued_at).num_seconds(), 60);
        // Microseconds survive, so a revocation later in the same second can tell them apart.
        assert_eq!(claims.issued_at, at.trunc_subsecs(6));
    }

    #[test]
    fn refuses_other_keys_garbage_and_sealed_mail() {
        let (a, b) = (
            tokens(Duration::from_secs(60)),
            tokens(Duration::from_secs(60)),
        );
        let (token, _) = a.issue(1, Utc::now()).expect("issue");
        assert_eq!(b.verify(&token), Err(TokenError::Invalid));
        assert_eq!(a.verify("v4.local.garbage"), Err(TokenError::Invalid));
        assert_eq!(a.verify(""), Err(TokenError::Invalid));
        let mut flipped = token.into_bytes();
        let last = flipped.len() - 5;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert_eq!(a.verify(&flipped), Err(TokenError::Invalid));
        let sealed = a
            .key
            .seal(Purpose::MailBody, br#"{"sub":"1"}"#)
            .expect("seal");
        assert_eq!(a.verify(&sealed), Err(TokenError::Invalid));
    }
}
