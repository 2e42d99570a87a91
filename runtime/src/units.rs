//! Durations in configuration, in the unit their setting's name says (`idle_timeout_secs`,
//! `window_ms`): a whole number, or a decimal one for a fraction. Written back whole when
//! they are whole.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

/// A duration setting in seconds (`#[serde(with = "crate::units::secs")]`).
pub(crate) mod secs {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        super::serialize(duration, 1_000_000_000, s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Unit {
            name: "seconds",
            whole: Duration::from_secs,
            seconds_each: 1.0,
        })
    }
}

/// A duration setting in milliseconds (`#[serde(with = "crate::units::millis")]`).
pub(crate) mod millis {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        super::serialize(duration, 1_000_000, s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Unit {
            name: "milliseconds",
            whole: Duration::from_millis,
            seconds_each: 0.001,
        })
    }
}

/// `duration` in units of `unit_nanos`: an integer if whole, else a decimal.
fn serialize<S: Serializer>(
    duration: &Duration,
    unit_nanos: u128,
    s: S,
) -> Result<S::Ok, S::Error> {
    let nanos = duration.as_nanos();
    match u64::try_from(nanos / unit_nanos) {
        Ok(whole) if nanos.is_multiple_of(unit_nanos) => s.serialize_u64(whole),
        _ => s.serialize_f64(nanos as f64 / unit_nanos as f64),
    }
}

struct Unit {
    name: &'static str,
    whole: fn(u64) -> Duration,
    seconds_each: f64,
}

impl<'de> Visitor<'de> for Unit {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a number of {} (0 or more)", self.name)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
        Ok((self.whole)(n))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
        match u64::try_from(n) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::invalid_value(de::Unexpected::Signed(n), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(n * self.seconds_each)
            .map_err(|_| E::invalid_value(de::Unexpected::Float(n), &self))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Settings {
        #[serde(with = "secs")]
        timeout_secs: Duration,
        #[serde(with = "millis")]
        window_ms: Duration,
    }

    #[test]
    fn durations_read_and_write_in_their_unit_whole_or_decimal() {
        let settings: Settings =
            serde_json::from_value(json!({"timeout_secs": 30, "window_ms": 25})).expect("whole");
        assert_eq!(
            settings,
            Settings {
                timeout_secs: Duration::from_secs(30),
                window_ms: Duration::from_millis(25),
            }
        );
        assert_eq!(
            serde_json::to_value(&settings).expect("writes"),
            json!({"timeout_secs": 30, "window_ms": 25})
        );
        let fractional: Settings =
            serde_json::from_value(json!({"timeout_secs": 0.5, "window_ms": 2.5}))
                .expect("decimal");
        assert_eq!(fractional.timeout_secs, Duration::from_millis(500));
        assert_eq!(fractional.window_ms, Duration::from_micros(2500));
        assert_eq!(
            serde_json::to_value(&fractional).expect("writes"),
            json!({"timeout_secs": 0.5, "window_ms": 2.5})
        );
        for bad in [
            json!({"timeout_secs": -1, "window_ms": 0}),
            json!({"timeout_secs": -0.5, "window_ms": 0}),
            json!({"timeout_secs": "soon", "window_ms": 0}),
            json!({"timeout_secs": 1e300, "window_ms": 0}),
        ] {
            let error = serde_json::from_value::<Settings>(bad.clone()).expect_err("refused");
            assert!(error.to_string().contains("seconds"), "{bad}: {error}");
        }
    }
}
