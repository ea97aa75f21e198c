//! Validation of a normalised config: every value's range and the constraints between
//! fields, each error naming the field where it is written (`backends[1].weight` in the
//! flat form, `pools.web.backends[1].weight` in the named one).

use super::*;

/// Checks the whole config.
pub(super) fn config(c: &Config) -> Result<(), ConfigError> {
    let t = &c.timeouts;
    for (field, d) in [
        ("connect", t.connect),
        ("idle", t.idle),
        ("half_close", t.half_close),
        ("client_hello", t.client_hello),
    ] {
        positive(&format!("timeouts.{field}"), d)?;
    }
    if c.listeners.is_empty() {
        return Err(ConfigError::field(
            "listeners",
            "at least one listener is required",
        ));
    }
    if c.pools.is_empty() {
        return Err(ConfigError::field("pools", "at least one pool is required"));
    }
    for (i, p) in c.pools.iter().enumerate() {
        if c.form == Form::Named {
            name(&format!("pools.{}", p.name), &p.name, "pool")?;
        }
        debug_assert!(c.pools[..i].iter().all(|o| o.name != p.name));
        pool(c, p)?;
    }
    for (i, l) in c.listeners.iter().enumerate() {
        listener(c, i, l)?;
    }
    for p in &c.pools {
        let used = c.listeners.iter().any(|l| {
            l.pool.as_deref() == Some(&p.name) || l.sni.iter().any(|(_, to)| *to == p.name)
        });
        if !used {
            return Err(ConfigError::field(
                format!("pools.{}", p.name),
                "no listener uses this pool (name it in a listener's `pool` or `sni`, or remove it)",
            ));
        }
    }
    Ok(())
}

fn positive(path: &str, d: ConfigDuration) -> Result<(), ConfigError> {
    if d.0.is_zero() {
        return Err(ConfigError::field(path, "must be greater than zero"));
    }
    Ok(())
}

/// A listener's, a pool's or a backend's name: at most [`MAX_NAME_LEN`] bytes, no quotes
/// or control characters (names appear in logs, metrics labels and admin URLs).
fn name(path: &str, name: &str, what: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::field(
            path,
            format!("a {what} name must not be empty"),
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ConfigError::field(
            path,
            format!(
                "a {what} name must be at most {MAX_NAME_LEN} bytes long, got {}",
                name.len()
            ),
        ));
    }
    if name.chars().any(|c| c.is_control() || c == '"') {
        return Err(ConfigError::field(
            path,
            "must not contain quotes or control characters",
        ));
    }
    Ok(())
}

fn listener(c: &Config, i: usize, l: &ListenerConfig) -> Result<(), ConfigError> {
    let at = |field: &str| c.listener_path(i, field);
    if c.form == Form::Named {
        name(&at("name"), &l.name, "listener")?;
        if let Some(j) = c.listeners[..i].iter().position(|o| o.name == l.name) {
            return Err(ConfigError::field(
                at("name"),
                format!(
                    "duplicate listener name \"{}\" (also listeners[{j}].name)",
                    l.name
                ),
            ));
        }
        // Port 0 is "any free port": two such listeners do not collide.
        if let Some(j) = c.listeners[..i]
            .iter()
            .position(|o| o.listen == l.listen && l.listen.port() != 0)
        {
            return Err(ConfigError::field(
                at("listen"),
                format!("{} is also listeners[{j}].listen", l.listen),
            ));
        }
    }
    if l.protocol == Protocol::Udp {
        return Err(ConfigError::field(
            at("protocol"),
            "\"udp\" is not supported yet (planned); only \"tcp\" listeners for now",
        ));
    }
    let pool_names = || {
        c.pools
            .iter()
            .map(|p| format!("\"{}\"", p.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &l.pool {
        Some(p) if c.pool(p).is_none() => {
            return Err(ConfigError::field(
                at("pool"),
                format!("no pool named \"{p}\" (pools: {})", pool_names()),
            ));
        }
        None if l.sni.is_empty() => {
            return Err(ConfigError::field(
                at("pool"),
                "missing: a listener needs a pool (it may go without one only with `sni`, which then rejects unmatched clients)",
            ));
        }
        _ => {}
    }
    for (k, (pattern, to)) in l.sni.iter().enumerate() {
        let path = at(&format!("sni.{pattern}"));
        crate::sni::check_pattern(pattern)
            .map_err(|why| ConfigError::field(&path, format!("{pattern:?}: {why}")))?;
        if let Some((other, _)) = l.sni[..k]
            .iter()
            .find(|(o, _)| o.eq_ignore_ascii_case(pattern))
        {
            return Err(ConfigError::field(
                &path,
                format!("{pattern:?} is also written as {other:?} (names match in any case)"),
            ));
        }
        if c.pool(to).is_none() {
            return Err(ConfigError::field(
                &path,
                format!("no pool named \"{to}\" (pools: {})", pool_names()),
            ));
        }
    }
    if l.max_connections == 0 {
        return Err(ConfigError::field(
            at("max_connections"),
            "must be at least 1",
        ));
    }
    if l.allow.as_ref().is_some_and(|a| a.is_empty()) {
        return Err(ConfigError::field(
            at("allow"),
            "an empty list refuses every client (omit `allow` to allow all)",
        ));
    }
    if let Some(pc) = &l.per_client {
        if pc.max_connections == Some(0) {
            return Err(ConfigError::field(
                at("per_client.max_connections"),
                "must be at least 1 (omit it for no limit)",
            ));
        }
    }
    for (field, d) in [
        ("idle", l.timeouts.idle),
        ("half_close", l.timeouts.half_close),
        ("client_hello", l.timeouts.client_hello),
    ] {
        positive(&at(&format!("timeouts.{field}")), d)?;
    }
    if let Some(ka) = &l.tcp_keepalive {
        keepalive(&at("tcp_keepalive"), ka)?;
    }
    Ok(())
}

fn keepalive(path: &str, ka: &TcpKeepaliveConfig) -> Result<(), ConfigError> {
    for (field, d) in [("idle", ka.idle), ("interval", ka.interval)] {
        let secs = d.0.as_secs();
        if d.0.subsec_nanos() != 0 || !(1..=MAX_KEEPALIVE_SECS).contains(&secs) {
            return Err(ConfigError::field(
                format!("{path}.{field}"),
                format!(
                    "must be whole seconds from 1s to {} (the kernel counts seconds, up to {MAX_KEEPALIVE_SECS}), got {d}",
                    ConfigDuration(Duration::from_secs(MAX_KEEPALIVE_SECS))
                ),
            ));
        }
    }
    if !(1..=MAX_KEEPALIVE_COUNT).contains(&ka.count) {
        return Err(ConfigError::field(
            format!("{path}.count"),
            format!(
                "must be between 1 and {MAX_KEEPALIVE_COUNT}, got {}",
                ka.count
            ),
        ));
    }
    Ok(())
}

fn pool(c: &Config, p: &PoolConfig) -> Result<(), ConfigError> {
    let at = |field: &str| c.pool_path(&p.name, field);
    if let Some(d) = &p.discover {
        d.target()
            .map_err(|why| ConfigError::field(at("discover"), why))?;
        if d.interval.0 < std::time::Duration::from_millis(100) {
            return Err(ConfigError::field(
                at("discover.interval"),
                format!("{} is too short (at least 100ms)", d.interval),
            ));
        }
    } else if p.backends.is_empty() {
        return Err(ConfigError::field(
            at("backends"),
            "at least one backend is required (or `discover` them)",
        ));
    }
    for (i, b) in p.backends.iter().enumerate() {
        let at = |field: &str| at(&format!("backends[{i}].{field}"));
        if b.name.len() > MAX_NAME_LEN {
            let hint = if b.name == b.address.to_string() {
                " (it defaults to the address; set a shorter \"name\")"
            } else {
                ""
            };
            return Err(ConfigError::field(
                at("name"),
                format!(
                    "must be at most {MAX_NAME_LEN} bytes long, got {}{hint}",
                    b.name.len()
                ),
            ));
        }
        if let Some(j) = p.backends[..i].iter().position(|o| o.name == b.name) {
            return Err(ConfigError::field(
                at("name"),
                format!(
                    "duplicate name \"{}\" (also {})",
                    b.name,
                    c.pool_path(&p.name, &format!("backends[{j}].name"))
                ),
            ));
        }
        // Port 0 means "any port" to a listening socket, nothing to connect to.
        if b.address.port() == 0 {
            return Err(ConfigError::field(
                at("address"),
                format!(
                    "port 0 in \"{}\": a backend needs the port it listens on",
                    b.address
                ),
            ));
        }
        if b.name.chars().any(|c| c.is_control() || c == '"') {
            return Err(ConfigError::field(
                at("name"),
                "must not contain quotes or control characters",
            ));
        }
        if !(1..=MAX_WEIGHT).contains(&b.weight) {
            return Err(ConfigError::field(
                at("weight"),
                format!("must be between 1 and {MAX_WEIGHT}, got {}", b.weight),
            ));
        }
        if b.max_connections == Some(0) {
            return Err(ConfigError::field(
                at("max_connections"),
                "must be at least 1 (omit it for no limit)",
            ));
        }
    }
    let hc = &p.health_check;
    let hc_at = |field: &str| at(&format!("health_check.{field}"));
    for (name, v) in [("rise", hc.rise), ("fall", hc.fall)] {
        if !(1..=MAX_RISE_FALL).contains(&v) {
            return Err(ConfigError::field(
                hc_at(name),
                format!("must be between 1 and {MAX_RISE_FALL}, got {v}"),
            ));
        }
    }
    match hc.kind {
        CheckType::Tcp => {
            if hc.path.is_some() {
                return Err(ConfigError::field(
                    hc_at("path"),
                    "only an \"http\" check has a path (set \"type\": \"http\")",
                ));
            }
        }
        CheckType::Http => {
            for (field, v) in [("send", &hc.send), ("expect", &hc.expect)] {
                if v.is_some() {
                    return Err(ConfigError::field(
                        hc_at(field),
                        "only a \"tcp\" check has send / expect (an \"http\" check sends a GET of `path`)",
                    ));
                }
            }
            if let Some(path) = &hc.path {
                if !path.starts_with('/')
                    || path.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(ConfigError::field(
                        hc_at("path"),
                        format!("must start with / and have no spaces or control characters, got {path:?}"),
                    ));
                }
            }
        }
    }
    for (field, v) in [
        ("send", &hc.send),
        ("expect", &hc.expect),
        ("path", &hc.path),
    ] {
        if let Some(v) = v {
            if v.is_empty() || v.len() > MAX_CHECK_TEXT {
                return Err(ConfigError::field(
                    hc_at(field),
                    format!("must be 1 to {MAX_CHECK_TEXT} bytes long (omit it for none)"),
                ));
            }
        }
    }
    positive(&hc_at("interval"), hc.interval)?;
    positive(&hc_at("timeout"), hc.timeout)?;
    positive(&at("timeouts.connect"), p.timeouts.connect)?;
    if p.retries > MAX_RETRIES {
        return Err(ConfigError::field(
            at("retries"),
            format!("must be at most {MAX_RETRIES}, got {}", p.retries),
        ));
    }
    // In the flat form the one `tcp_keepalive` is the listener's too: checked there.
    if let (Some(ka), Form::Named) = (&p.tcp_keepalive, c.form) {
        keepalive(&at("tcp_keepalive"), ka)?;
    }
    Ok(())
}

/// Settings that are valid but probably not what the operator meant.
pub(super) fn warnings(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(admin) = c.admin.filter(|a| !a.ip().is_loopback()) {
        out.push(format!(
            "admin: {admin} is not a loopback address, and the admin endpoint has no authentication: anyone who can reach it can drain, disable and reweight backends (bind it to 127.0.0.1 or a management network)"
        ));
    }
    for p in &c.pools {
        let hc = &p.health_check;
        if hc.timeout.0 > hc.interval.0 {
            out.push(format!(
                "{}: {} is longer than the interval ({}): a backend that stops answering is noticed only after the timeout, and probes are spaced by it rather than by the interval",
                c.pool_path(&p.name, "health_check.timeout"),
                hc.timeout,
                hc.interval
            ));
        }
    }
    out
}
