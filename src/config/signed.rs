//! Signed data for app code, in the manner of Phoenix's `Phoenix.Token`: [`SecretKey::sign`]
//! turns a purpose and any serializable data into a string a client can carry (an invitation,
//! a socket token, an unsubscribe link), and [`SecretKey::verify`] gives the data back if the
//! string was made by this server's key for the same purpose and is not older than a maximum
//! age.
//!
//! The string is a PASETO v4.local token (like the access tokens): encrypted and authenticated
//! with the server key, so a client can neither read nor change the data. Its payload is
//! `{"purpose", "signed_at", "data"}`; the implicit assertion `fawkes:signed:v1` keeps it apart
//! from access tokens and sealed mail, and the purpose inside tells one app use from another.
//! Anyone holding the string can present it until it is too old: use a short maximum age, and
//! bind the data to what it grants (a user id, a parent session).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound as _, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::SecretKey;

const ASSERTION: &[u8] = b"fawkes:signed:v1";

/// Why [`SecretKey::verify`] refused a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Made for this purpose by this key, but older than the maximum age.
    #[error("expired")]
    Expired,
    /// Garbled, forged, made by another key, or not made by [`SecretKey::sign`]; or its data
    /// does not have the expected shape.
    #[error("invalid")]
    Invalid,
    /// Made by this key for another purpose.
    #[error("wrong purpose")]
    WrongPurpose,
}

/// [`SecretKey::sign`] failed: the data could not be serialized, or encryption failed.
#[derive(Debug, thiserror::Error)]
#[error("could not sign: {0}")]
pub struct SignError(String);

impl SecretKey {
    /// Signs (and encrypts) `data` for `purpose`, stamped with the current time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fawkes::config::{SecretKey, VerifyError};
    ///
    /// let key = SecretKey::generate();
    /// let token = key.sign("invitation", &42_i64).expect("sign");
    /// let day = Duration::from_secs(86_400);
    /// assert_eq!(key.verify::<i64>("invitation", &token, day), Ok(42));
    /// assert_eq!(key.verify::<i64>("password reset", &token, day), Err(VerifyError::WrongPurpose));
    /// ```
    pub fn sign(&self, purpose: &str, data: &impl Serialize) -> Result<String, SignError> {
        self.sign_at(purpose, data, Utc::now())
    }

    /// [`SecretKey::sign`] stamped with `signed_at` (the crate's socket tokens show the
    /// instant they were signed at).
    pub(crate) fn sign_at(
        &self,
        purpose: &str,
        data: &impl Serialize,
        signed_at: DateTime<Utc>,
    ) -> Result<String, SignError> {
        let data = serde_json::to_value(data).map_err(|e| SignError(e.to_string()))?;
        let signed_at = signed_at
            .trunc_subsecs(6)
            .to_rfc3339_opts(SecondsFormat::Micros, true);
        let payload = json!({ "purpose": purpose, "signed_at": signed_at, "data": data });
        let bytes = serde_json::to_vec(&payload).map_err(|e| SignError(e.to_string()))?;
        pasetors::version4::LocalToken::encrypt(self.symmetric(), &bytes, None, Some(ASSERTION))
            .map_err(|e| SignError(e.to_string()))
    }

    /// The data of a string made by [`SecretKey::sign`] with this key for `purpose`, if it was
    /// signed at most `max_age` ago. A string signed "in the future" (another node's clock
    /// ahead of this one) counts as just signed.
    pub fn verify<T: DeserializeOwned>(
        &self,
        purpose: &str,
        token: &str,
        max_age: Duration,
    ) -> Result<T, VerifyError> {
        self.verify_at(purpose, token, max_age, Utc::now())
    }

    fn verify_at<T: DeserializeOwned>(
        &self,
        purpose: &str,
        token: &str,
        max_age: Duration,
        now: DateTime<Utc>,
    ) -> Result<T, VerifyError> {
        let untrusted =
            pasetors::token::UntrustedToken::<pasetors::Local, pasetors::version4::V4>::try_from(
                token,
            )
            .map_err(|_| VerifyError::Invalid)?;
        let trusted = pasetors::version4::LocalToken::decrypt(
            self.symmetric(),
            &untrusted,
            None,
            Some(ASSERTION),
        )
        .map_err(|_| VerifyError::Invalid)?;
        let mut payload: Value =
            serde_json::from_str(trusted.payload()).map_err(|_| VerifyError::Invalid)?;
        if payload.get("purpose").and_then(Value::as_str) != Some(purpose) {
            return Err(if payload.get("purpose").is_some_and(Value::is_string) {
                VerifyError::WrongPurpose
            } else {
                VerifyError::Invalid
            });
        }
        let signed_at = payload
            .get("signed_at")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .ok_or(VerifyError::Invalid)?
            .with_timezone(&Utc);
        let age = (now - signed_at).to_std().unwrap_or(Duration::ZERO);
        if age > max_age {
            return Err(VerifyError::Expired);
        }
        let data = payload.get_mut("data").map(Value::take);
        serde_json::from_value(data.ok_or(VerifyError::Invalid)?).map_err(|_| VerifyError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Purpose;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn data_comes_back_for_the_same_purpose_and_key() {
        let key = SecretKey::generate();
        let data = json!({"user": 7, "room": "café"});
        let token = key.sign("invite", &data).expect("sign");
        assert!(token.starts_with("v4.local."));
        assert!(!token.contains("café"), "encrypted");
        assert_eq!(key.verify::<Value>("invite", &token, MINUTE), Ok(data));
        assert_ne!(
            key.sign("invite", &7).expect("sign"),
            key.sign("invite", &7).expect("sign"),
            "a fresh nonce each time"
        );
    }

    #[test]
    fn too_old_is_expired_and_the_boundary_is_inclusive() {
        let key = SecretKey::generate();
        let signed = Utc::now();
        let token = key.sign_at("p", &1, signed).expect("sign");
        let at = |secs: i64| signed.trunc_subsecs(6) + chrono::Duration::seconds(secs);
        assert_eq!(key.verify_at::<i32>("p", &token, MINUTE, at(60)), Ok(1));
        assert_eq!(
            key.verify_at::<i32>("p", &token, MINUTE, at(61)),
            Err(VerifyError::Expired)
        );
        // Signed ahead of this node's clock: treated as just signed.
        assert_eq!(key.verify_at::<i32>("p", &token, MINUTE, at(-30)), Ok(1));
    }

    #[test]
    fn wrong_purpose_other_key_garbage_and_other_token_kinds_are_refused() {
        let key = SecretKey::generate();
        let token = key.sign("socket", &1).expect("sign");
        assert_eq!(
            key.verify::<i32>("invite", &token, MINUTE),
            Err(VerifyError::WrongPurpose)
        );
        assert_eq!(
            SecretKey::generate().verify::<i32>("socket", &token, MINUTE),
            Err(VerifyError::Invalid)
        );
        for garbage in ["", "v4.local.", "v4.local.abc", "v4.public.abc", "nonsense"] {
            assert_eq!(
                key.verify::<i32>("socket", garbage, MINUTE),
                Err(VerifyError::Invalid),
                "{garbage}"
            );
        }
        let mut flipped = token.clone().into_bytes();
        let i = flipped.len() - 3;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert_eq!(
            key.verify::<i32>("socket", &flipped, MINUTE),
            Err(VerifyError::Invalid)
        );
        // Data of another shape.
        assert_eq!(
            key.verify::<String>("socket", &token, MINUTE),
            Err(VerifyError::Invalid)
        );
        // A sealed mail body with a look-alike payload is not a signed token, nor the reverse.
        let payload = json!({"purpose": "socket", "signed_at": Utc::now(), "data": 1});
        let sealed = key
            .seal(Purpose::MailBody, payload.to_string().as_bytes())
            .expect("seal");
        assert_eq!(
            key.verify::<i32>("socket", &sealed, MINUTE),
            Err(VerifyError::Invalid)
        );
        assert_eq!(key.open(Purpose::MailBody, &token), None);
        assert_eq!(key.open(Purpose::AccessToken, &token), None);
    }
}
