//! Per-client limits in the config: `per_client` with a connection count and a connection
//! rate written `"N/s"`, `"N/m"` or `"N/h"`.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A rate of new connections: at most `count` per `per` (a token bucket whose burst is
/// `count`, refilled continuously at `count / per`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Connections per period (and the burst), at least 1.
    pub count: u32,
    /// The period: one second, minute or hour.
    pub per: Duration,
}

impl Rate {
    /// Parses `"50/s"`, `"600/m"`, `"10000/h"`.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let fail =
            |why: &str| format!("invalid rate \"{s}\": {why} (write e.g. \"50/s\" or \"600/m\")");
        let (count, unit) = s.trim().split_once('/').ok_or_else(|| fail("no \"/\""))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| fail("the count must be a whole number"))?;
        if count == 0 {
            return Err(fail("the count must be at least 1"));
        }
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(fail("the unit must be s, m or h")),
        };
        Ok(Rate { count, per })
    }

    fn unit(self) -> &'static str {
        match self.per.as_secs() {
            60 => "m",
            3600 => "h",
            _ => "s",
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.unit())
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate such as \"50/s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rate, E> {
                Rate::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// `per_client`: limits on each client IP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct PerClientConfig {
    /// Connections one client IP may have open at once. Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// New connections one client IP may open, as a rate. Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_rate: Option<Rate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        for (text, count, secs) in [("50/s", 50, 1), ("600/m", 600, 60), (" 7 / h ", 7, 3600)] {
            let r = Rate::parse(text).unwrap();
            assert_eq!((r.count, r.per), (count, Duration::from_secs(secs)));
            assert_eq!(Rate::parse(&r.to_string()).unwrap(), r);
        }
        for bad in ["50", "0/s", "-1/s", "1.5/s", "5/d", "/s", "x/s", ""] {
            let e = Rate::parse(bad).unwrap_err();
            assert!(e.starts_with("invalid rate"), "{bad}: {e}");
        }
    }
}
