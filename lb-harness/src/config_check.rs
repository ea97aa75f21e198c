//! The `config` target: arbitrary bytes as config.json.

use super::{Rule, Violation};
use lb_sans_io::config::Config;

/// Parses `data` as a config file (invalid UTF-8 replaced, as a lossy reader would):
/// parsing and validation must not panic, errors must print, and an accepted config's text
/// must be exactly one JSON value (after a byte-order mark, only whitespace), and the
/// config must validate, serialise, parse back to an equal config, and serialise the same
/// again.
pub fn check_config_bytes(data: &[u8]) -> Result<(), Violation> {
    let text = String::from_utf8_lossy(data);
    let fail = |detail: String| Violation {
        step: 0,
        rule: Rule::ConfigRoundTrip,
        detail,
    };
    let config = match Config::from_json(&text) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return Ok(());
        }
    };
    // Judged by serde_json's own reading of a JSON text, not by the config parser's.
    let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if let Err(e) = serde_json::from_str::<serde_json::Value>(body) {
        return Err(fail(format!(
            "from_json accepted a text that is not exactly one JSON value: {e}"
        )));
    }
    if let Err(e) = config.validate() {
        return Err(fail(format!(
            "from_json accepted a config that validate rejects: {e}"
        )));
    }
    let _ = config.summary();
    let json = config.to_json();
    let again = Config::from_json(&json)
        .map_err(|e| fail(format!("the serialised config does not parse: {e}\n{json}")))?;
    if again != config {
        return Err(fail(format!(
            "round trip changed the config:\nbefore {config:?}\nafter  {again:?}\njson {json}"
        )));
    }
    let json2 = again.to_json();
    if json2 != json {
        return Err(fail(format!(
            "serialisation is not stable:\n{json}\n{json2}"
        )));
    }
    Ok(())
}
