//! Durations in config files: strings with units (`"250ms"`, `"2s"`, `"1.5s"`, `"1m30s"`,
//! `"1d"`).

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A `Duration` written in config as a string of one or more numbers, each with a unit
/// (`ms`, `s`, `m`, `h`, `d`), largest unit first: `"250ms"`, `"1.5s"`, `"1m30s"`,
/// `"1d12h"`. A bare number is an error, so `"timeout": 5` cannot silently mean 5 ms or
/// 5 s; so is a negative one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

/// The units, largest first, with their length in nanoseconds.
const UNITS: [(&str, u128); 5] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
];

/// Longest accepted duration, in nanoseconds (10^12 ms, about 31 years).
const MAX_NANOS: u128 = 1_000_000_000_000_000_000;

/// Digits of a fraction that count; more cannot change a nanosecond count.
const MAX_FRACTION_DIGITS: usize = 18;

impl ConfigDuration {
    /// Parses `"250ms"`, `"2s"`, `"1.5s"`, `"5m"`, `"1h"`, `"1d"`, and sums of them written
    /// largest unit first, each unit at most once (`"1h30m"`, `"1m30.5s"`). Exact to the
    /// nanosecond (finer fractions are rounded).
    pub fn parse(s: &str) -> Result<ConfigDuration, String> {
        let s = s.trim();
        let fail = |why: String| format!("invalid duration \"{s}\": {why}");
        if s.is_empty() {
            return Err(fail(
                "empty (write e.g. \"250ms\" or \"1m30s\")".to_string(),
            ));
        }
        if s.starts_with('-') {
            return Err(fail("durations cannot be negative".to_string()));
        }
        let mut rest = s;
        let mut total: u128 = 0;
        // Index in UNITS of the last unit read: the next one must be smaller.
        let mut last: Option<usize> = None;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let (num, after) = rest.split_at(num_len);
            let read = &s[..s.len() - rest.len()];
            if num.is_empty() {
                let c = after.chars().next().unwrap_or(' ');
                return Err(fail(if c.is_ascii_alphabetic() {
                    format!("expected a number before \"{rest}\" (e.g. \"250ms\", \"1m30s\")")
                } else if read.is_empty() {
                    format!("unexpected {c:?} at the start")
                } else {
                    format!("unexpected {c:?} after \"{read}\"")
                }));
            }
            let unit_len = after
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            if unit.is_empty() {
                return Err(match after.chars().next() {
                    None => fail(format!(
                        "missing unit after \"{num}\" (use ms, s, m, h or d)"
                    )),
                    Some(c) => fail(format!("unexpected {c:?} after \"{read}{num}\"")),
                });
            }
            let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
                return Err(fail(format!(
                    "unknown unit \"{unit}\" (use ms, s, m, h or d)"
                )));
            };
            if last.is_some_and(|l| index <= l) {
                return Err(fail(
                    "units must go from largest to smallest, each once (\"1h30m\", not \"30m1h\")"
                        .to_string(),
                ));
            }
            last = Some(index);
            let nanos = scaled(num, UNITS[index].1)
                .ok_or_else(|| fail(format!("\"{num}\" is not a number")))?;
            total = total.saturating_add(nanos);
            if total > MAX_NANOS {
                return Err(fail("too large (at most 11574d)".to_string()));
            }
            rest = after;
        }
        // MAX_NANOS fits in a u64.
        Ok(ConfigDuration(Duration::from_nanos(total as u64)))
    }
}

/// `num` (digits with at most one `.`, at least one digit) times `unit` nanoseconds,
/// rounded to a nanosecond; saturates when far too large, `None` when not a number.
fn scaled(num: &str, unit: u128) -> Option<u128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let mut value: u128 = 0;
    for b in int.bytes() {
        value = value
            .saturating_mul(10)
            .saturating_add(u128::from(b - b'0'));
    }
    let mut value = value.saturating_mul(unit);
    let frac = &frac[..frac.len().min(MAX_FRACTION_DIGITS)];
    if !frac.is_empty() {
        // Below 10^18, so times a unit (at most 8.64 * 10^13) it fits a u128.
        let digits: u128 = frac.parse().ok()?;
        let scale = 10u128.pow(frac.len() as u32);
        value = value.saturating_add((digits * unit + scale / 2) / scale);
    }
    Some(value)
}

/// Writes `whole` then, if `frac` (out of 10^`width`) is not zero, a point and its digits
/// without trailing zeros.
fn write_decimal(f: &mut fmt::Formatter<'_>, whole: u128, frac: u128, width: usize) -> fmt::Result {
    write!(f, "{whole}")?;
    if frac > 0 {
        let digits = format!("{frac:0width$}");
        write!(f, ".{}", digits.trim_end_matches('0'))?;
    }
    Ok(())
}

/// Compound, largest unit first, exact to the nanosecond: `1d2h`, `1m30s`, `1.5s`,
/// `250ms`, `0.0015ms`; zero is `0ms`. [`ConfigDuration::parse`] reads it back equal.
impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_nanos();
        if rest == 0 {
            return f.write_str("0ms");
        }
        let mut wrote = false;
        for (name, len) in &UNITS[..3] {
            if rest >= *len {
                write!(f, "{}{name}", rest / len)?;
                rest %= len;
                wrote = true;
            }
        }
        const SEC: u128 = 1_000_000_000;
        const MS: u128 = 1_000_000;
        if rest == 0 {
            Ok(())
        } else if wrote || rest >= SEC {
            write_decimal(f, rest / SEC, rest % SEC, 9)?;
            f.write_str("s")
        } else {
            write_decimal(f, rest / MS, rest % MS, 6)?;
            f.write_str("ms")
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
                f.write_str("a duration string with a unit, e.g. \"250ms\" or \"1m30s\"")
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
                if v < 0 {
                    return Err(E::custom(format!(
                        "invalid duration {v}: durations cannot be negative"
                    )));
                }
                Err(E::custom(format!(
                    "invalid duration {v}: a bare number has no unit; write \"{v}ms\" or \"{v}s\""
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ConfigDuration, E> {
                if v < 0.0 {
                    return Err(E::custom(format!(
                        "invalid duration {v}: durations cannot be negative"
                    )));
                }
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
        assert!(ConfigDuration::parse("5x")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(ConfigDuration::parse("ms")
            .unwrap_err()
            .contains("expected a number"));
    }

    #[test]
    fn display_round_trips() {
        for s in ["250ms", "2s", "5m", "1h", "0ms", "1500ms"] {
            let d = ConfigDuration::parse(s).unwrap();
            assert_eq!(ConfigDuration::parse(&d.to_string()).unwrap(), d, "{s}");
        }
    }

    #[test]
    fn negative_durations_say_so() {
        for neg in ["-1s", "-0.5ms", "-1m30s", " -1s", "-0s"] {
            let e = ConfigDuration::parse(neg).unwrap_err();
            assert!(e.ends_with("durations cannot be negative"), "{neg}: {e}");
        }
        for bare in ["-5", "-1.5"] {
            let e = serde_json::from_str::<ConfigDuration>(bare)
                .unwrap_err()
                .to_string();
            assert!(e.contains("durations cannot be negative"), "{bare}: {e}");
        }
    }

    #[test]
    fn compound_durations_and_days() {
        let ms = |s| ConfigDuration::parse(s).map(|d| d.0.as_millis());
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("1h30m"), Ok(5_400_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        assert_eq!(ms("0.5d"), Ok(43_200_000));
        assert_eq!(ms("1d2h3m4s5ms"), Ok(93_784_005));
        assert_eq!(ms("1m0.5s"), Ok(60_500));
        assert_eq!(ms("1.5h30m"), Ok(7_200_000));
        for (bad, says) in [
            ("30s1m", "largest to smallest"),
            ("1s1s", "largest to smallest"),
            ("1m30", "missing unit"),
            ("1m 30s", "unexpected"),
            ("1,5s", "unexpected"),
            ("", "empty"),
            ("1..5s", "not a number"),
            (".s", "not a number"),
            ("1m s", "unexpected"),
            ("1mm", "unknown unit"),
        ] {
            let e = ConfigDuration::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn display_is_compound_and_round_trips() {
        let shown = |s| ConfigDuration::parse(s).unwrap().to_string();
        assert_eq!(shown("90s"), "1m30s");
        assert_eq!(shown("5400s"), "1h30m");
        assert_eq!(shown("24h"), "1d");
        assert_eq!(shown("1500ms"), "1.5s");
        assert_eq!(shown("500ms"), "500ms");
        assert_eq!(shown("0.0015ms"), "0.0015ms");
        for nanos in [
            0u64,
            1,
            999,
            1_000_000,
            1_500_000_000,
            60_000_000_001,
            86_399_999_999_999,
            86_400_000_000_000 * 11_574,
            123_456_789_012_345,
        ] {
            let d = ConfigDuration(Duration::from_nanos(nanos));
            let text = d.to_string();
            let back = ConfigDuration::parse(&text).unwrap();
            assert_eq!(back, d, "{nanos} ns shown as {text}");
            assert_eq!(back.to_string(), text);
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
