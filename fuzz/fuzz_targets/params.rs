//! Target 4a: casting and validating a user's REST parameters (`UserParams::cast`, then
//! `validate_create` and `validate_update`) on any JSON the fuzzer writes.
//!
//! Properties: never panics; allocates at most linearly in the body; every accepted field is
//! within its bounds (trimmed, non-blank, short enough, a well-formed address, a password of
//! allowed length); an accepted registration is also an accepted update; errors name known
//! fields only and serialize.

#![no_main]

use fawkes::accounts::{
    MAX_EMAIL_LEN, MAX_PASSWORD_LEN, MAX_TEXT_LEN, MIN_PASSWORD_LEN, UserParams, is_valid_email,
};
use fawkes_fuzz::bounded;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const FIELDS: [&str; 6] = ["user", "name", "subname", "email", "job", "password"];

fn within_bounds(params: &UserParams) {
    for (name, value, max) in [
        ("name", &params.name, MAX_TEXT_LEN),
        ("subname", &params.subname, MAX_TEXT_LEN),
        ("email", &params.email, MAX_EMAIL_LEN),
        ("job", &params.job, MAX_TEXT_LEN),
    ] {
        if let Some(value) = value {
            assert!(!value.is_empty(), "{name} accepted blank");
            assert_eq!(value.trim(), value, "{name} accepted untrimmed");
            assert!(value.chars().count() <= max, "{name} accepted too long");
        }
    }
    if let Some(email) = &params.email {
        assert!(is_valid_email(email), "accepted e-mail {email:?}");
    }
    if let Some(password) = &params.password {
        let len = password.chars().count();
        assert!((MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len));
    }
}

fuzz_target!(|data: &[u8]| {
    // The body reaches casting as a parsed JSON value (`json_body`); anything else is a 400.
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let (params, created, updated) = bounded("cast + validate", data.len(), || {
        let (params, errors) = UserParams::cast(&body);
        let created = params.validate_create(errors.clone());
        let updated = params.validate_update(errors);
        (params, created, updated)
    });
    for errors in [&created, &updated]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
    {
        assert!(!errors.is_empty());
        let json = serde_json::to_value(errors).expect("field errors serialize");
        let fields = json.as_object().expect("field errors are an object");
        for (field, messages) in fields {
            assert!(
                FIELDS.contains(&field.as_str()),
                "error on unknown field {field}"
            );
            assert!(messages.as_array().is_some_and(|m| !m.is_empty()));
        }
    }
    if created.is_ok() {
        assert!(updated.is_ok(), "a valid registration is an invalid update");
        for value in [&params.name, &params.subname, &params.email, &params.job] {
            assert!(
                value.is_some(),
                "a registration accepted without a profile field"
            );
        }
    }
    if updated.is_ok() {
        within_bounds(&params);
    }
});
