//! The `config` target: arbitrary bytes as config.json.

use super::{Rule, Violation};
use lb_sans_io::config::Config;

/// A deliberate fault in the config parser or renderer as the check sees them, so tests can
/// show [`Rule::ConfigRoundTrip`] fires (see [`check_config_bytes_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigMutation {
    /// The parser reads the first JSON value and ignores whatever follows it (the bug
    /// `fuzz/regressions/config/trailing-second-object` was found for).
    IgnoreTrailing,
    /// The renderer leaves `retries` out (a field skipped when serialising: at the top level
    /// of a flat config, in each pool of a named one), so a config with other than the
    /// default number of retries reads back different.
    RendererDropsRetries,
    /// The parser reads the top level with serde's derived reader, which takes a JSON
    /// array by field order as well as an object (the bug
    /// `fuzz/regressions/config/top-level-array` was written for).
    ReadsArrays,
}

/// Parses `data` as a config file (invalid UTF-8 replaced, as a lossy reader would):
/// parsing and validation must not panic, errors must print, and an accepted config's text
/// must be exactly one JSON value (after a byte-order mark, only whitespace) of the
/// config's own shape (where the config, serialised, has an object, a list, a string, a
/// number or a boolean, the text has the same, if it has that field at all: no config
/// written as an array, no backend as a list of values, no algorithm as `{"hash": null}`),
/// and the config must validate, serialise, parse back to an equal config, and serialise
/// the same again.
pub fn check_config_bytes(data: &[u8]) -> Result<(), Violation> {
    check_config_bytes_with(data, None)
}

/// [`check_config_bytes`] with a fault injected into the parser or renderer it checks.
pub fn check_config_bytes_with(
    data: &[u8],
    mutation: Option<ConfigMutation>,
) -> Result<(), Violation> {
    let text = String::from_utf8_lossy(data);
    let fail = |detail: String| Violation {
        step: 0,
        rule: Rule::ConfigRoundTrip,
        detail,
    };
    let parsed = match mutation {
        Some(ConfigMutation::IgnoreTrailing) => {
            let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
            let mut values =
                serde_json::Deserializer::from_str(body).into_iter::<serde_json::Value>();
            match values.next() {
                Some(Ok(_)) => Config::from_json(&body[..values.byte_offset()]),
                _ => Config::from_json(&text),
            }
        }
        // The top level read by serde's derived reader: no shape rule.
        Some(ConfigMutation::ReadsArrays) => Config::from_json_any_shape(&text),
        _ => Config::from_json(&text),
    };
    let render = |config: &Config| {
        let json = config.to_json();
        if mutation != Some(ConfigMutation::RendererDropsRetries) {
            return json;
        }
        let mut value: serde_json::Value =
            serde_json::from_str(&json).expect("the rendered config is JSON");
        // Flat: at the top level; named: in every pool.
        if let Some(fields) = value.as_object_mut() {
            fields.remove("retries");
            if let Some(pools) = fields.get_mut("pools").and_then(|p| p.as_object_mut()) {
                for pool in pools.values_mut().filter_map(|p| p.as_object_mut()) {
                    pool.remove("retries");
                }
            }
        }
        serde_json::to_string_pretty(&value).expect("JSON values serialise")
    };
    let config = match parsed {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return Ok(());
        }
    };
    // Judged by serde_json's own reading of a JSON text, not by the config parser's.
    let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let input = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => v,
        Err(e) => {
            return Err(fail(format!(
                "from_json accepted a text that is not exactly one JSON value: {e}"
            )))
        }
    };
    let rendered: serde_json::Value =
        serde_json::from_str(&config.to_json()).expect("the rendered config is JSON");
    if let Err(e) = same_shape(&rendered, &input, "config") {
        return Err(fail(format!(
            "from_json accepted a text not shaped as a config: {e}"
        )));
    }
    if let Err(e) = config.validate() {
        return Err(fail(format!(
            "from_json accepted a config that validate rejects: {e}"
        )));
    }
    let _ = config.summary();
    let json = render(&config);
    let again = Config::from_json(&json)
        .map_err(|e| fail(format!("the serialised config does not parse: {e}\n{json}")))?;
    if again != config {
        return Err(fail(format!(
            "round trip changed the config:\nbefore {config:?}\nafter  {again:?}\njson {json}"
        )));
    }
    let json2 = render(&again);
    if json2 != json {
        return Err(fail(format!(
            "serialisation is not stable:\n{json}\n{json2}"
        )));
    }
    Ok(())
}

/// Whether `input` (the accepted text) has the shape of `rendered` (the config it was read
/// as, serialised): the same JSON type at every field the text has. Fields the text leaves
/// out (defaults) and `null`s the config renders are not compared.
fn same_shape(
    rendered: &serde_json::Value,
    input: &serde_json::Value,
    path: &str,
) -> Result<(), String> {
    use serde_json::Value;
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    match (rendered, input) {
        (Value::Null, _) => Ok(()),
        (Value::Object(r), Value::Object(i)) => {
            for (key, value) in r {
                if let Some(given) = i.get(key) {
                    same_shape(value, given, &format!("{path}.{key}"))?;
                }
            }
            Ok(())
        }
        (Value::Array(r), Value::Array(i)) if r.len() == i.len() => {
            for (n, (value, given)) in r.iter().zip(i).enumerate() {
                same_shape(value, given, &format!("{path}[{n}]"))?;
            }
            Ok(())
        }
        (Value::Array(r), Value::Array(i)) => {
            Err(format!("{path}: {} elements read as {}", i.len(), r.len()))
        }
        (r, i) if std::mem::discriminant(r) == std::mem::discriminant(i) => Ok(()),
        (r, i) => Err(format!("{path}: {} read as {}", kind(i), kind(r))),
    }
}
