//! Durations in config files: strings with a unit (`"250ms"`, `"2s"`, `"5m"`, `"1h"`).

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A `Duration` written in config as a string with a unit: `ms`, `s`, `m` or `h`.
/// A bare number is an error, so `"timeout": 5` cannot silently mean 5 ms or 5 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Parses `"250ms"`, `"2s"`, `"1.5s"`, `"5m"`, `"1h"`.
    pub fn parse(s: &str) -> Result<ConfigDuration, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration \"{s}\": missing unit (ms, s, m or h)"))?;
        let (num, unit) = s.split_at(split);
        let scale_ms: f64 = match unit {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => {
                return Err(format!(
                    "invalid duration \"{s}\": unknown unit \"{unit}\" (use ms, s, m or h)"
                ))
            }
        };
        let value: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration \"{s}\": \"{num}\" is not a number"))?;
        let ms = value * scale_ms;
        if !ms.is_finite() || ms > 1e12 {
            return Err(format!("invalid duration \"{s}\": too large"));
        }
        Ok(ConfigDuration(Duration::from_micros(
            (ms * 1000.0).round() as u64
        )))
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let exact_ms = self.0 == Duration::from_millis(ms as u64);
        if !exact_ms {
            write!(f, "{}ms", self.0.as_secs_f64() * 1000.0)
        } else if ms % 3_600_000 == 0 && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms % 60_000 == 0 && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms % 1000 == 0 && ms > 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string with a unit, e.g. \"250ms\" or \"2s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigDuration, E> {
                ConfigDuration::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConfigDuration, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a bare number has no unit; write \"{v}ms\" or \"{v}s\""
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConfigDuration, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a bare number has no unit; write \"{v}ms\" or \"{v}s\""
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ConfigDuration, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a bare number has no unit; write \"{v}s\""
                )))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let ms = |s| ConfigDuration::parse(s).map(|d| d.0.as_millis());
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("2s"), Ok(2000));
        assert_eq!(ms("1.5s"), Ok(1500));
        assert_eq!(ms("5m"), Ok(300_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert!(ConfigDuration::parse("5")
            .unwrap_err()
            .contains("missing unit"));
        assert!(ConfigDuration::parse("5d")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(ConfigDuration::parse("ms")
            .unwrap_err()
            .contains("not a number"));
    }

    #[test]
    fn display_round_trips() {
        for s in ["250ms", "2s", "5m", "1h", "0ms", "1500ms"] {
            let d = ConfigDuration::parse(s).unwrap();
            assert_eq!(ConfigDuration::parse(&d.to_string()).unwrap(), d, "{s}");
        }
    }

    #[test]
    fn bare_number_is_an_error() {
        let e = serde_json::from_str::<ConfigDuration>("5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bare number"), "{e}");
    }
}
