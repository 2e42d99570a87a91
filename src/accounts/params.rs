//! Casting and validating user input, in the manner of an Ecto changeset.
//!
//! Input is untrusted JSON. Known fields are picked out (unknown ones ignored), each must be a
//! string, and the result is validated; every problem is reported per field, all at once.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// Validation problems, by field, in the order they were found.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    /// Records `message` against `field`.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The messages recorded for `field`.
    pub fn get(&self, field: &str) -> Option<&[String]> {
        self.0.get(field).map(Vec::as_slice)
    }

    /// A set holding a single problem.
    pub fn single(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.add(field, message);
        errors
    }

    /// `Ok(())` when empty, else `Err(self)`.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// The problem of text holding U+0000, which PostgreSQL cannot store (schemathesis finding 1).
pub const NUL_MESSAGE: &str = "can't contain the NUL character";

/// Longest accepted name, subname and job.
pub const MAX_TEXT_LEN: usize = 100;
/// Longest accepted e-mail address.
pub const MAX_EMAIL_LEN: usize = 160;
/// Shortest accepted password.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest accepted password (hashing cost is bounded, not the attacker's choice).
pub const MAX_PASSWORD_LEN: usize = 128;

/// Profile fields a client may set; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct UserParams {
    /// Given name.
    pub name: Option<String>,
    /// Family name.
    pub subname: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Job title.
    pub job: Option<String>,
    /// New password (never trimmed).
    pub password: Option<String>,
}

impl UserParams {
    /// Picks the known fields out of a JSON object. A field of the wrong type is recorded as
    /// "is invalid" and treated as not given; `null` counts as not given.
    pub fn cast(input: &Value) -> (Self, FieldErrors) {
        let mut errors = FieldErrors::default();
        let Some(object) = input.as_object() else {
            return (Self::default(), FieldErrors::single("user", "is invalid"));
        };
        let mut field = |name: &str, trim: bool| match object.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if trim => Some(s.trim().to_owned()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.add(name, "is invalid");
                None
            }
        };
        let params = Self {
            name: field("name", true),
            subname: field("subname", true),
            email: field("email", true),
            job: field("job", true),
            password: field("password", false),
        };
        (params, errors)
    }

    /// Validates a registration, adding to the cast's `errors`: every profile field required
    /// (unless already invalid), the password optional.
    pub fn validate_create(&self, mut errors: FieldErrors) -> Result<(), FieldErrors> {
        for (name, value) in self.text_fields() {
            if value.is_none_or(str::is_empty) && errors.get(name).is_none() {
                errors.add(name, "can't be blank");
            }
        }
        self.validate_given(&mut errors);
        errors.into_result()
    }

    /// Validates an update, adding to the cast's `errors`: only the given fields, none of
    /// which may be blank.
    pub fn validate_update(&self, mut errors: FieldErrors) -> Result<(), FieldErrors> {
        for (name, value) in self.text_fields() {
            if value == Some("") {
                errors.add(name, "can't be blank");
            }
        }
        self.validate_given(&mut errors);
        errors.into_result()
    }

    fn text_fields(&self) -> [(&'static str, Option<&str>); 4] {
        [
            ("name", self.name.as_deref()),
            ("subname", self.subname.as_deref()),
            ("email", self.email.as_deref()),
            ("job", self.job.as_deref()),
        ]
    }

    fn validate_given(&self, errors: &mut FieldErrors) {
        for (name, value) in self.text_fields() {
            let max = if name == "email" {
                MAX_EMAIL_LEN
            } else {
                MAX_TEXT_LEN
            };
            if value.is_some_and(|v| v.chars().count() > max) {
                errors.add(name, format!("should be at most {max} character(s)"));
            }
            if value.is_some_and(|v| v.contains('\0')) {
                errors.add(name, NUL_MESSAGE);
            }
        }
        if let Some(email) = self.email.as_deref().filter(|e| !e.is_empty())
            && !is_valid_email(email)
        {
            errors.add("email", "has invalid format");
        }
        if let Some(password) = &self.password {
            let len = password.chars().count();
            if len < MIN_PASSWORD_LEN {
                errors.add(
                    "password",
                    format!("should be at least {MIN_PASSWORD_LEN} character(s)"),
                );
            } else if len > MAX_PASSWORD_LEN {
                errors.add(
                    "password",
                    format!("should be at most {MAX_PASSWORD_LEN} character(s)"),
                );
            }
        }
    }
}

/// A deliberately simple address check: one `@`, a non-empty local part, a dotted domain
/// with no empty labels, and no whitespace or control characters. Deliverability is the
/// mail server's business.
pub fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let clean = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    clean(local)
        && clean(domain)
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn email_format() {
        for ok in ["a@b.co", "first.last+tag@mail.example.org", "ü@exämple.de"] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "", "plain", "@b.co", "a@", "a@b", "a@@b.co", "a b@c.de", "a@b..co", "a@.b",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn cast_reports_wrong_types_and_ignores_unknown_fields() {
        let (_, errors) = UserParams::cast(&json!({"name": 5, "job": ["x"], "admin": true}));
        assert_eq!(errors.get("name"), Some(&["is invalid".to_owned()][..]));
        assert_eq!(errors.get("job"), Some(&["is invalid".to_owned()][..]));
        assert_eq!(errors.get("admin"), None);
    }

    #[test]
    fn create_requires_every_profile_field_and_bounds_lengths() {
        let (params, errors) = UserParams::cast(&json!({
            "name": "  ", "email": "x@y.z", "job": "j".repeat(101), "password": "short", "subname": 1
        }));
        let errors = params.validate_create(errors).expect_err("invalid");
        assert_eq!(errors.get("name"), Some(&["can't be blank".to_owned()][..]));
        assert_eq!(errors.get("subname"), Some(&["is invalid".to_owned()][..]));
        assert_eq!(
            errors.get("job"),
            Some(&["should be at most 100 character(s)".to_owned()][..])
        );
        assert_eq!(
            errors.get("password"),
            Some(&["should be at least 12 character(s)".to_owned()][..])
        );
        assert_eq!(errors.get("email"), None);
    }

    #[test]
    fn text_must_not_hold_nul() {
        let (params, errors) = UserParams::cast(&json!({"job": "a\u{0}b", "name": "Ada"}));
        let errors = params.validate_update(errors).expect_err("invalid");
        assert_eq!(errors.get("job"), Some(&[NUL_MESSAGE.to_owned()][..]));
        assert_eq!(errors.get("name"), None);
    }

    #[test]
    fn update_checks_only_given_fields() {
        let (params, errors) = UserParams::cast(&json!({"job": "Pilot"}));
        assert!(params.validate_update(errors).is_ok());
        let (params, errors) = UserParams::cast(&json!({"name": ""}));
        assert!(params.validate_update(errors).is_err());
    }
}
