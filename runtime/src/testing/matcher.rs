//! Payload matchers for the channel assertions.

use std::fmt;

use serde_json::Value;

/// What a payload must look like for an assertion to match it.
///
/// Two kinds ship:
/// - a [`serde_json::Value`] (or a reference to one) matches a payload it is a *subset* of:
///   every key of an object pattern must be present in the payload with a matching value
///   (extra keys in the payload are fine), recursively; an array pattern matches an array of
///   the same length element by element; any other value matches an equal value. So
///   `json!({})` matches every object payload, and `json!({"x": 1})` matches
///   `{"x": 1, "y": 2}`.
/// - [`matching`] wraps a predicate, for anything else (ranges, any payload at all).
///
/// Binary payloads are seen as a JSON array of their bytes.
///
/// ```
/// use fawkes_runtime::testing::{Match, matching};
/// use serde_json::json;
///
/// let payload = json!({"user": "ann", "at": {"x": 1, "y": 2}});
/// assert!(json!({"at": {"x": 1}}).matches(&payload));
/// assert!(!json!({"user": "bob"}).matches(&payload));
/// assert!(matching(|p| p["at"]["y"].as_i64() > Some(1)).matches(&payload));
/// ```
pub trait Match {
    /// Whether `payload` matches.
    fn matches(&self, payload: &Value) -> bool;

    /// How failure messages show this matcher.
    fn describe(&self) -> String;
}

impl Match for Value {
    fn matches(&self, payload: &Value) -> bool {
        is_subset(self, payload)
    }

    fn describe(&self) -> String {
        format!("a payload containing {self}")
    }
}

impl<M: Match + ?Sized> Match for &M {
    fn matches(&self, payload: &Value) -> bool {
        (**self).matches(payload)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// A matcher from a predicate on the payload (see [`Match`]).
pub fn matching<F: Fn(&Value) -> bool>(predicate: F) -> Matching<F> {
    Matching(predicate)
}

/// A predicate as a matcher, made by [`matching`].
#[derive(Clone, Copy)]
pub struct Matching<F>(F);

impl<F> fmt::Debug for Matching<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Matching(<predicate>)")
    }
}

impl<F: Fn(&Value) -> bool> Match for Matching<F> {
    fn matches(&self, payload: &Value) -> bool {
        (self.0)(payload)
    }

    fn describe(&self) -> String {
        "a payload satisfying the predicate".to_owned()
    }
}

/// Whether `pattern` is a subset of `value` (see [`Match`]).
fn is_subset(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Object(pattern), Value::Object(value)) => pattern
            .iter()
            .all(|(key, p)| value.get(key).is_some_and(|v| is_subset(p, v))),
        (Value::Array(pattern), Value::Array(value)) => {
            pattern.len() == value.len() && pattern.iter().zip(value).all(|(p, v)| is_subset(p, v))
        }
        (pattern, value) => pattern == value,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Match, matching};

    #[test]
    fn a_json_pattern_matches_payloads_it_is_a_subset_of() {
        let payload = json!({"a": 1, "b": {"c": [1, {"d": 2, "e": 3}]}, "f": null});
        assert!(json!({}).matches(&payload));
        assert!(json!({"a": 1}).matches(&payload));
        assert!(json!({"b": {"c": [1, {"d": 2}]}}).matches(&payload));
        assert!(json!({"f": null}).matches(&payload));
        assert!(!json!({"a": 2}).matches(&payload));
        assert!(!json!({"g": null}).matches(&payload), "absent is not null");
        assert!(
            !json!({"b": {"c": [1]}}).matches(&payload),
            "array lengths differ"
        );
        assert!(
            !json!({}).matches(&json!([])),
            "an object pattern needs an object"
        );
        assert!(json!(3).matches(&json!(3)) && !json!(3).matches(&json!(3.5)));
    }

    #[test]
    fn a_predicate_matches_what_it_accepts() {
        let even = matching(|p| p.as_i64().is_some_and(|n| n % 2 == 0));
        assert!(even.matches(&json!(4)) && !even.matches(&json!(3)));
        // By reference too, so one matcher serves several assertions.
        fn accepts(m: impl Match, payload: serde_json::Value) -> bool {
            m.matches(&payload)
        }
        let pattern = json!({"a": 1});
        assert!(accepts(&pattern, json!({"a": 1, "b": 2})));
        assert!(!accepts(&pattern, json!({"a": 2})));
    }
}
