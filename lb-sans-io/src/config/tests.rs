use super::*;

fn err(json: &str) -> String {
    Config::from_json(json).unwrap_err().to_string()
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = Config::from_json(r#"{"backends":[{"address":"127.0.0.1:5001"}]}"#).unwrap();
    // The flat form is one listener and one pool, both named `default`.
    assert_eq!(c.form, Form::Flat);
    assert_eq!((c.listeners.len(), c.pools.len()), (1, 1));
    let (l, p) = (&c.listeners[0], &c.pools[0]);
    assert_eq!((l.name.as_str(), p.name.as_str()), ("default", "default"));
    assert_eq!(l.pool.as_deref(), Some("default"));
    assert_eq!(l.protocol, Protocol::Tcp);
    assert!(l.sni.is_empty());
    assert_eq!(l.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(p.algorithm, Algorithm::RoundRobin);
    assert_eq!(p.backends[0].name, "127.0.0.1:5001");
    assert_eq!(p.backends[0].weight, 1);
    assert_eq!(p.health_check.interval.0, Duration::from_secs(1));
    assert_eq!(p.health_check.timeout.0, Duration::from_millis(500));
    assert_eq!((p.health_check.rise, p.health_check.fall), (2, 2));
    assert!(!p.health_check.start_up);
    assert_eq!(c.timeouts.connect.0, Duration::from_secs(1));
    assert_eq!(c.timeouts.idle.0, Duration::from_secs(300));
    assert_eq!(c.timeouts.half_close.0, Duration::from_secs(60));
    assert_eq!(c.timeouts.client_hello.0, Duration::from_secs(5));
    assert_eq!(c.timeouts.shutdown_grace.0, Duration::from_secs(30));
    // The listener's and the pool's timeouts are the top-level ones.
    assert_eq!(l.timeouts.idle, c.timeouts.idle);
    assert_eq!(l.timeouts.half_close, c.timeouts.half_close);
    assert_eq!(l.timeouts.client_hello, c.timeouts.client_hello);
    assert_eq!(p.timeouts.connect, c.timeouts.connect);
    assert_eq!(p.retries, 2);
    assert_eq!(l.max_connections, 10_000);
    assert_eq!(
        (l.allow.as_ref(), l.per_client, l.tcp_keepalive),
        (None, None, None)
    );
    assert_eq!(c.admin, None);
}

#[test]
fn errors_name_the_field() {
    let e = err(r#"{"backends":[{"address":"127.0.0.1:1"},{"address":"localhost"}]}"#);
    assert!(
        e.starts_with("backends[1].address: invalid socket address \"localhost\""),
        "{e}"
    );
    let e = err(r#"{"backends":[{"address":"localhost:x"}]}"#);
    assert!(
        e.starts_with("backends[0].address: invalid socket address"),
        "{e}"
    );
    let e = err(r#"{"backends":[{"address":"1.2.3.4:1"}],"health_check":{"interval":5}}"#);
    assert!(
        e.starts_with("health_check.interval: invalid duration 5"),
        "{e}"
    );
    let e = err(r#"{"backends":[{"address":"1.2.3.4:1","wieght":2}]}"#);
    assert_eq!(
        e,
        r#"backends[0]: unknown field "wieght", did you mean "weight"?"#
    );
    let e = err(r#"{"backends":[{"address":"1.2.3.4:1"}],"retires":1}"#);
    assert_eq!(e, r#"unknown field "retires", did you mean "retries"?"#);
    let e = err(r#"{"backends":[{"address":"1.2.3.4:1","weight":0}]}"#);
    assert!(
        e.starts_with("backends[0].weight: must be between 1 and 1000"),
        "{e}"
    );
    let e = err(
        r#"{"backends":[{"name":"a","address":"1.2.3.4:1"},{"name":"a","address":"1.2.3.4:2"}]}"#,
    );
    assert!(
        e.starts_with("backends[1].name: duplicate name \"a\""),
        "{e}"
    );
    let e = err(r#"{"backends":[]}"#);
    assert!(e.starts_with("backends: at least one backend"), "{e}");
    let e = err(r#"{}"#);
    assert!(e.contains("missing field `backends`"), "{e}");
    let e = err(r#"{"backends":[{"address":"1.2.3.4:1"}],"timeouts":{"idle":"0s"}}"#);
    assert!(
        e.starts_with("timeouts.idle: must be greater than zero"),
        "{e}"
    );
    let e = err(r#"{"backends":[{"address":"1.2.3.4:1"}],"health_check":{"rise":0}}"#);
    assert!(e.starts_with("health_check.rise: must be between 1"), "{e}");
    let e = err(r#"{"listen":"8080","backends":[{"address":"1.2.3.4:1"}]}"#);
    assert!(
        e.starts_with("listen: invalid socket address \"8080\""),
        "{e}"
    );
    let e = err(r#"{"backends":[{"address":"1.2.3.4:1"}],"algorithm":"fastest"}"#);
    assert!(e.starts_with("algorithm: unknown variant `fastest`"), "{e}");
}

#[test]
fn syntax_errors_give_the_position() {
    let e = Config::from_json("{\n  \"backends\": [,]\n}").unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e:?}");
    assert!(e.to_string().starts_with("invalid JSON at line 2"), "{e}");
}

#[test]
fn host_names_are_kept_for_the_driver() {
    let c = Config::from_json(r#"{"backends":[{"address":"db-1.internal:5432"}]}"#).unwrap();
    assert_eq!(
        c.pools[0].backends[0].address,
        BackendAddress::Host {
            host: "db-1.internal".into(),
            port: 5432
        }
    );
    let c = Config::from_json(r#"{"backends":[{"address":"[::1]:80"}]}"#).unwrap();
    assert_eq!(
        c.pools[0].backends[0].address,
        BackendAddress::Socket("[::1]:80".parse().unwrap())
    );
}

#[test]
fn serialisation_round_trips() {
    let c = Config::from_json(
        r#"{"listen":"127.0.0.1:8080","algorithm":"hash","backends":[{"name":"a","address":"127.0.0.1:5001","weight":3}],
            "health_check":{"type":"http","path":"/ready","interval":"1m30s"},"timeouts":{"idle":"1d"},"allow":["10.0.0.0/8"],
            "proxy_protocol":"v2","slow_start":"10s","retries":1,"max_connections":5,"admin":"127.0.0.1:9000"}"#,
    )
    .unwrap();
    assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    let c = Config::from_json(
        r#"{"backends":[{"address":"h:1","max_connections":3}],"admin":"127.0.0.1:9000"}"#,
    )
    .unwrap();
    assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
}

#[test]
fn odd_addresses_that_would_not_round_trip_are_rejected() {
    // Found by the config fuzzer: "+2" parsed as a port, "27.0.0.1" as a host name.
    for bad in [
        "27.0.0.1:+2",
        "1.1:80",
        "063.0.0.1:80",
        "host:",
        "host:-1",
        ":80",
    ] {
        let e = err(&format!(r#"{{"backends":[{{"address":"{bad}"}}]}}"#));
        assert!(
            e.starts_with("backends[0].address: invalid socket address"),
            "{bad}: {e}"
        );
    }
    for good in ["db-1.internal:5432", "localhost:80", "a1.b2:1"] {
        assert!(Config::from_json(&format!(r#"{{"backends":[{{"address":"{good}"}}]}}"#)).is_ok());
    }
}

#[test]
fn allow_takes_networks_and_names_the_bad_one() {
    let c = Config::from_json(r#"{"backends":[{"address":"h:1"}],"allow":["10.0.0.0/8","::1"]}"#)
        .unwrap();
    let allow = c.listeners[0].allow.as_ref().unwrap();
    assert_eq!(allow.len(), 2);
    assert_eq!(allow[1].to_string(), "::1/128");
    assert!(
        c.summary().contains("allow 2 network(s)"),
        "{}",
        c.summary()
    );
    assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    let e = Config::from_json(
        r#"{"backends":[{"address":"h:1"}],"allow":["10.0.0.0/8","10.0.0.1/8"]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("allow[1]"), "{e}");
    assert!(e.contains("did you mean \"10.0.0.0/8\""), "{e}");
    let e = Config::from_json(r#"{"backends":[{"address":"h:1"}],"allow":[]}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("allow: an empty list refuses every client"),
        "{e}"
    );
    let e = Config::from_json(r#"{"backends":[{"address":"h:1"}],"allow":"10.0.0.0/8"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("allow"), "{e}");
}

#[test]
fn health_check_kinds_take_only_their_own_fields() {
    let parse = |check: &str| {
        Config::from_json(&format!(
            r#"{{"backends":[{{"address":"h:1"}}],"health_check":{check}}}"#
        ))
    };
    let c = parse(r#"{"type":"http"}"#).unwrap();
    assert_eq!(c.pools[0].health_check.http_path(), "/health");
    assert!(
        c.summary().contains("http GET /health checks every 1s"),
        "{}",
        c.summary()
    );
    let c = parse(r#"{"send":"PING\r\n","expect":"PONG"}"#).unwrap();
    assert!(
        c.summary().contains("tcp send/expect checks"),
        "{}",
        c.summary()
    );
    assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    for (check, says) in [
        (
            r#"{"path":"/x"}"#,
            "health_check.path: only an \"http\" check has a path",
        ),
        (
            r#"{"type":"http","send":"x"}"#,
            "health_check.send: only a \"tcp\" check",
        ),
        (
            r#"{"type":"http","expect":"x"}"#,
            "health_check.expect: only a \"tcp\" check",
        ),
        (
            r#"{"type":"http","path":"health"}"#,
            "health_check.path: must start with /",
        ),
        (
            r#"{"type":"http","path":"/a b"}"#,
            "health_check.path: must start with /",
        ),
        (
            r#"{"expect":""}"#,
            "health_check.expect: must be 1 to 4096 bytes",
        ),
        (r#"{"type":"grpc"}"#, "health_check.type"),
    ] {
        let e = parse(check).unwrap_err().to_string();
        assert!(e.contains(says), "{check}: {e}");
    }
}

#[test]
fn proxy_protocol_is_v1_or_v2() {
    let parse = |v: &str| {
        Config::from_json(&format!(
            r#"{{"backends":[{{"address":"h:1"}}],"proxy_protocol":{v}}}"#
        ))
    };
    assert_eq!(
        parse(r#""v1""#).unwrap().pools[0].proxy_protocol,
        Some(ProxyProtocol::V1)
    );
    let c = parse(r#""v2""#).unwrap();
    assert!(c.summary().contains("proxy_protocol v2"), "{}", c.summary());
    assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    let e = parse(r#""v3""#).unwrap_err().to_string();
    assert!(e.contains("proxy_protocol"), "{e}");
}

#[test]
fn a_reload_keeps_only_the_fields_that_need_a_restart() {
    let old = Config::from_json(
        r#"{"listen":"127.0.0.1:1","admin":"127.0.0.1:2","backends":[{"address":"h:1"}]}"#,
    )
    .unwrap();
    let new = Config::from_json(
        r#"{"listen":"127.0.0.1:9","retries":5,"timeouts":{"shutdown_grace":"1s"},
            "backends":[{"address":"h:2"}]}"#,
    )
    .unwrap();
    // `listen` is reloadable now (a reload binds the new address): only the admin endpoint
    // and the drain period need a restart.
    assert_eq!(
        old.restart_needed(&new),
        ["admin", "timeouts.shutdown_grace"]
    );
    let running = old.reloaded(new.clone());
    assert_eq!(running.admin, old.admin);
    assert_eq!(running.timeouts.shutdown_grace, old.timeouts.shutdown_grace);
    assert_eq!(running.listeners, new.listeners, "the new listen address");
    assert_eq!(running.pools, new.pools);
    assert_eq!(
        (running.pools[0].retries, &running.pools[0].backends),
        (5, &new.pools[0].backends)
    );
    assert!(running.restart_needed(&running.clone()).is_empty());
}

#[test]
fn only_whitespace_may_follow_the_config() {
    let good = r#"{"backends":[{"address":"h:1"}]}"#;
    assert!(Config::from_json(&format!("\n {good} \r\n\t\n")).is_ok());
    // A second object, say with a misspelled field, is not read silently.
    let e = Config::from_json(&format!("{good}\n{{\"helth_check\":{{}}}}\n")).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Syntax {
                line: 2,
                column: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("invalid JSON at line 2 column 1: trailing content"),
        "{e}"
    );
    // Nor are megabytes of junk; the position is where the junk starts.
    let e = Config::from_json(&format!("{good}  {}", "x".repeat(4 << 20))).unwrap_err();
    assert!(
        matches!(e, ConfigError::Syntax { line: 1, column, .. } if column == good.len() + 3),
        "{e:?}"
    );
    for tail in [",", "}", "]", "0", "null", "\u{feff}", "//"] {
        let e = Config::from_json(&format!("{good}{tail}")).unwrap_err();
        assert!(e.to_string().contains("trailing content"), "{tail:?}: {e}");
    }
}

#[test]
fn a_backend_needs_a_port_but_listen_and_admin_may_take_any() {
    for zero in [
        "127.0.0.1:0",
        "[::1]:0",
        "db-1.internal:0",
        "db-1.internal:00",
    ] {
        let e = err(&format!(
            r#"{{"backends":[{{"address":"127.0.0.1:1"}},{{"address":"{zero}"}}]}}"#
        ));
        assert!(e.starts_with("backends[1].address: port 0"), "{zero}: {e}");
    }
    // Port 0 for `listen` and `admin` is "any free port" (the tests bind that way).
    let c = Config::from_json(
        r#"{"listen":"127.0.0.1:0","admin":"127.0.0.1:0","backends":[{"address":"h:1"}]}"#,
    )
    .unwrap();
    assert_eq!(
        (c.listeners[0].listen.port(), c.admin.map(|a| a.port())),
        (0, Some(0))
    );
}

#[test]
fn names_are_at_most_255_bytes() {
    let with_name = |name: &str| {
        Config::from_json(&format!(
            r#"{{"backends":[{{"name":"{name}","address":"h:1"}}]}}"#
        ))
    };
    assert!(with_name(&"n".repeat(255)).is_ok());
    // Bytes, not characters: 128 two-byte characters are 256 bytes.
    for long in ["n".repeat(256), "é".repeat(128), "n".repeat(100_000)] {
        let e = with_name(&long).unwrap_err().to_string();
        assert!(
            e.starts_with("backends[0].name: must be at most 255 bytes long"),
            "{e}"
        );
    }
    // A name defaulted from a long host name is too long as well, and the error says how
    // to fix it.
    let host = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    assert_eq!(host.len(), 253);
    let e = err(&format!(r#"{{"backends":[{{"address":"{host}:65535"}}]}}"#));
    assert!(
        e.starts_with("backends[0].name: must be at most 255 bytes long") && e.contains("\"name\""),
        "{e}"
    );
    assert!(Config::from_json(&format!(
        r#"{{"backends":[{{"name":"db","address":"{host}:65535"}}]}}"#
    ))
    .is_ok());
}

#[test]
fn a_byte_order_mark_at_the_start_is_skipped() {
    let good = r#"{"backends":[{"address":"h:1"}]}"#;
    let c = Config::from_json(&format!("\u{feff}{good}")).unwrap();
    assert_eq!(c, Config::from_json(good).unwrap());
    // Positions count from after it.
    let e = Config::from_json("\u{feff}{\n  \"backends\": [,]\n}").unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Syntax {
                line: 2,
                column: 16,
                ..
            }
        ),
        "{e:?}"
    );
    // Only one, and only at the start.
    for bad in [
        format!("\u{feff}\u{feff}{good}"),
        format!(" \u{feff}{good}"),
    ] {
        let e = err(&bad);
        assert!(e.starts_with("invalid JSON at line 1"), "{e}");
    }
}

#[test]
fn duration_errors_name_the_field() {
    let e = err(r#"{"backends":[{"address":"h:1"}],"health_check":{"timeout":"-1s"}}"#);
    assert_eq!(
        e,
        r#"health_check.timeout: invalid duration "-1s": durations cannot be negative"#
    );
    let c = Config::from_json(
        r#"{"backends":[{"address":"h:1"}],"timeouts":{"idle":"1h30m","shutdown_grace":"1m30s"},"slow_start":"1d"}"#,
    )
    .unwrap();
    assert_eq!(c.timeouts.idle.0, Duration::from_secs(5400));
    assert_eq!(c.timeouts.shutdown_grace.0, Duration::from_secs(90));
    assert_eq!(
        c.pools[0].slow_start.unwrap().0,
        Duration::from_secs(86_400)
    );
    assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
}

#[test]
fn unknown_fields_suggest_the_closest_known_one() {
    let with = |top: &str, backend: &str| {
        err(&format!(
            r#"{{"backends":[{{"address":"h:1"}},{{"address":"h:2"{backend}}}]{top}}}"#
        ))
    };
    for (top, backend, says) in [
        (
            r#","helth_check":{}"#,
            "",
            r#"unknown field "helth_check", did you mean "health_check"?"#,
        ),
        (
            r#","health_check":{"intervl":"1s"}"#,
            "",
            r#"health_check: unknown field "intervl", did you mean "interval"?"#,
        ),
        (
            r#","timeouts":{"idel":"1s"}"#,
            "",
            r#"timeouts: unknown field "idel", did you mean "idle"?"#,
        ),
        (
            "",
            r#","max_conections":3"#,
            r#"backends[1]: unknown field "max_conections", did you mean "max_connections"?"#,
        ),
        (
            r#","Listen":"127.0.0.1:1""#,
            "",
            r#"unknown field "Listen", did you mean "listen"?"#,
        ),
        (
            r#","timeout":{}"#,
            "",
            r#"unknown field "timeout", did you mean "timeouts"?"#,
        ),
    ] {
        assert_eq!(with(top, backend), says);
    }
    // Nothing close: no guess, the known fields instead.
    let e = with("", r#","colour":"red""#);
    assert_eq!(
        e,
        r#"backends[1]: unknown field "colour" (known fields: name, address, weight, max_connections)"#
    );
    let e =
        Config::from_json(r#"{"backends":[{"address":"h:1"}],"timeouts":{"x":"1s"}}"#).unwrap_err();
    assert!(
        matches!(&e, ConfigError::UnknownField { path, field, suggestion: None, .. }
            if path == "timeouts" && field == "x"),
        "{e:?}"
    );
}

#[test]
fn edit_distance_counts_a_swap_as_one() {
    assert_eq!(edit_distance("", ""), 0);
    assert_eq!(edit_distance("abc", ""), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("wieght", "weight"), 1);
    assert_eq!(edit_distance("retires", "retries"), 1);
    assert_eq!(edit_distance("helth_check", "health_check"), 1);
    assert_eq!(edit_distance("é", "e"), 1);
}

#[test]
fn every_restart_only_field_is_warned_about_and_kept() {
    let base = Config::from_json(r#"{"backends":[{"address":"h:1"}]}"#).unwrap();
    let changed = Config::from_json(
        r#"{"admin":"127.0.0.1:2","timeouts":{"shutdown_grace":"1s"},
            "backends":[{"address":"h:1"}]}"#,
    )
    .unwrap();
    let names: Vec<&str> = RESTART_ONLY.iter().map(|f| f.name).collect();
    assert_eq!(names, ["admin", "timeouts.shutdown_grace"]);
    for f in RESTART_ONLY {
        assert!((f.differs)(&base, &changed), "{}", f.name);
        let mut new = changed.clone();
        (f.keep)(&mut new, &base);
        assert!(!(f.differs)(&base, &new), "{}", f.name);
    }
    assert_eq!(base.restart_needed(&changed), names);
    assert_eq!(base.reloaded(changed), base);
}

#[test]
fn per_client_and_on_backend_down_parse_validate_and_round_trip() {
    let c = Config::from_json(
        r#"{"backends":[{"address":"127.0.0.1:1"}],
            "per_client":{"max_connections":100,"connection_rate":"50/s"},
            "on_backend_down":"close"}"#,
    )
    .unwrap();
    let pc = c.listeners[0].per_client.unwrap();
    assert_eq!(pc.max_connections, Some(100));
    assert_eq!(pc.connection_rate.unwrap().to_string(), "50/s");
    assert_eq!(c.pools[0].on_backend_down, OnBackendDown::Close);
    assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    let plain = Config::from_json(r#"{"backends":[{"address":"127.0.0.1:1"}]}"#).unwrap();
    assert_eq!(
        (
            plain.listeners[0].per_client,
            plain.pools[0].on_backend_down
        ),
        (None, OnBackendDown::Keep)
    );
    for (bad, want) in [
        (
            r#""per_client":{"max_connections":0}"#,
            "per_client.max_connections: must be at least 1",
        ),
        (
            r#""per_client":{"connection_rate":"50"}"#,
            "per_client.connection_rate: invalid rate \"50\"",
        ),
        (
            r#""per_client":{"conection_rate":"5/s"}"#,
            "did you mean \"connection_rate\"",
        ),
        (r#""on_backend_down":"drop""#, "on_backend_down"),
    ] {
        let e = err(&format!(
            r#"{{"backends":[{{"address":"127.0.0.1:1"}}],{bad}}}"#
        ));
        assert!(e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn a_config_is_read_only_from_a_json_object() {
    // serde reads a struct from an array by field order: this was a valid config.
    let e = err(r#"["127.0.0.1:1","hash",[["n","h:1",1,null]]]"#);
    assert_eq!(e, "config must be a JSON object, got an array");
    for (text, got) in [
        (r#""backends""#, "a string"),
        ("5", "a number"),
        ("-1.5", "a number"),
        ("true", "a boolean"),
        ("null", "null"),
    ] {
        assert_eq!(
            err(text),
            format!("config must be a JSON object, got {got}"),
            "{text}"
        );
    }
}

#[test]
fn every_nested_config_object_is_read_only_from_a_json_object() {
    let one = r#"{"address":"1.2.3.4:1"}"#;
    for (field, path) in [
        (r#""backends":[["n","1.2.3.4:1",1,null]]"#, "backends[0]"),
        (
            &*format!(r#""backends":[{one},["n","1.2.3.4:2"]]"#),
            "backends[1]",
        ),
        (r#""health_check":["tcp","1s","500ms",2,2]"#, "health_check"),
        (r#""timeouts":["1s","5m","1m","30s"]"#, "timeouts"),
    ] {
        let text = if field.starts_with("\"backends\"") {
            format!("{{{field}}}")
        } else {
            format!(r#"{{"backends":[{one}],{field}}}"#)
        };
        assert_eq!(
            err(&text),
            format!("{path}: expected an object, got an array"),
            "{text}"
        );
    }
    let e = err(r#"{"backends":["1.2.3.4:1"]}"#);
    assert_eq!(e, "backends[0]: expected an object, got a string");
    let e = err(r#"{"backends":[{"address":"1.2.3.4:1"}],"health_check":null}"#);
    assert_eq!(e, "health_check: expected an object, got null");
}

#[test]
fn config_names_are_read_only_from_json_strings() {
    // serde reads a unit variant from a one-key object too: `{"hash": null}` was `hash`.
    let one = r#""backends":[{"address":"1.2.3.4:1"}]"#;
    for (field, path, got) in [
        (r#""algorithm":{"hash":null}"#, "algorithm", "an object"),
        (r#""algorithm":["hash"]"#, "algorithm", "an array"),
        (
            r#""proxy_protocol":{"v1":null}"#,
            "proxy_protocol",
            "an object",
        ),
        (
            r#""health_check":{"type":{"http":null}}"#,
            "health_check.type",
            "an object",
        ),
        (r#""algorithm":1"#, "algorithm", "a number"),
    ] {
        let text = format!("{{{one},{field}}}");
        assert_eq!(
            err(&text),
            format!("{path}: expected a string, got {got}"),
            "{text}"
        );
    }
    // Strings still read as before, with the same errors.
    let c = Config::from_json(&format!(
        r#"{{{one},"algorithm":"hash","proxy_protocol":"v1","health_check":{{"type":"http"}}}}"#
    ))
    .unwrap();
    assert_eq!(c.pools[0].algorithm, Algorithm::Hash);
    assert_eq!(c.pools[0].health_check.kind, CheckType::Http);
    let e = err(&format!(r#"{{{one},"algorithm":"fastest"}}"#));
    assert!(
        e.starts_with("algorithm: unknown variant `fastest`, expected one of `round_robin`"),
        "{e}"
    );
}

#[test]
fn tcp_keepalive_is_off_by_default_and_checked_against_the_kernels_limits() {
    let one = r#""backends":[{"address":"1.2.3.4:1"}]"#;
    let c = Config::from_json(&format!("{{{one}}}")).unwrap();
    assert_eq!(c.listeners[0].tcp_keepalive, None);
    assert_eq!(c.pools[0].tcp_keepalive, None);
    let c = Config::from_json(&format!(
        r#"{{{one},"tcp_keepalive":{{"idle":"60s","interval":"10s","count":6}}}}"#
    ))
    .unwrap();
    // In the flat form the one setting is the listener's (client sockets) and the pool's
    // (backend sockets).
    let ka = c.listeners[0].tcp_keepalive.unwrap();
    assert_eq!(c.pools[0].tcp_keepalive, Some(ka));
    assert_eq!(ka.idle.0, Duration::from_secs(60));
    assert_eq!(ka.interval.0, Duration::from_secs(10));
    assert_eq!(ka.count, 6);
    assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    assert!(c
        .summary()
        .contains("tcp_keepalive idle 1m interval 10s count 6"));
    // Every field has a default: `{}` turns keepalive on with them.
    let c = Config::from_json(&format!(r#"{{{one},"tcp_keepalive":{{"idle":"2h"}}}}"#)).unwrap();
    assert_eq!(c.pools[0].tcp_keepalive, c.listeners[0].tcp_keepalive);
    assert_eq!(
        c.listeners[0].tcp_keepalive,
        Some(TcpKeepaliveConfig {
            idle: ConfigDuration(Duration::from_secs(7200)),
            ..TcpKeepaliveConfig::default()
        })
    );
    for (field, message) in [
        (
            r#""idle":"0s""#,
            "tcp_keepalive.idle: must be whole seconds from 1s to 9h6m7s (the kernel counts seconds, up to 32767), got 0ms",
        ),
        (
            r#""interval":"1500ms""#,
            "tcp_keepalive.interval: must be whole seconds from 1s to 9h6m7s (the kernel counts seconds, up to 32767), got 1.5s",
        ),
        (
            r#""idle":"10h""#,
            "tcp_keepalive.idle: must be whole seconds from 1s to 9h6m7s (the kernel counts seconds, up to 32767), got 10h",
        ),
        (r#""count":0"#, "tcp_keepalive.count: must be between 1 and 127, got 0"),
        (r#""count":128"#, "tcp_keepalive.count: must be between 1 and 127, got 128"),
        (
            r#""idle":60"#,
            "tcp_keepalive.idle: invalid duration 60",
        ),
        (
            r#""intervall":"1s""#,
            r#"tcp_keepalive: unknown field "intervall", did you mean "interval"?"#,
        ),
    ] {
        let e = err(&format!(r#"{{{one},"tcp_keepalive":{{{field}}}}}"#));
        assert!(e.starts_with(message), "{field}: {e}");
    }
    let e = err(&format!(r#"{{{one},"tcp_keepalive":["60s","10s",6]}}"#));
    assert_eq!(e, "tcp_keepalive: expected an object, got an array");
    // The largest values are accepted.
    Config::from_json(&format!(
        r#"{{{one},"tcp_keepalive":{{"idle":"9h6m7s","interval":"32767s","count":127}}}}"#
    ))
    .unwrap();
}

// ---- the named form: listeners and pools ----------------------------------------------

/// The contract's example of the named form, without what is not supported yet: the UDP
/// listener and its pool are left out, and the `api` pool lists its backend instead of
/// discovering it.
const CONTRACT_EXAMPLE: &str = r#"{
  "listeners": [
    { "name": "web", "listen": "0.0.0.0:443", "pool": "web",
      "sni": { "api.example.com": "api", "*.internal.example.com": "internal" } }
  ],
  "pools": {
    "web": { "algorithm": "least_connections", "backends": [ { "address": "10.0.0.1:443" } ] },
    "api": { "algorithm": "hash", "backends": [ { "address": "10.0.2.1:443" } ] },
    "internal": { "backends": [ { "address": "10.0.1.1:443" } ] }
  },
  "timeouts": { "idle": "5m" },
  "admin": "127.0.0.1:9000"
}"#;

/// A named config: `listeners` (JSON array items) and `pools` (JSON object entries).
fn named(listeners: &[&str], pools: &[&str], rest: &str) -> String {
    format!(
        r#"{{"listeners":[{}],"pools":{{{}}}{rest}}}"#,
        listeners.join(","),
        pools.join(",")
    )
}

/// A pool entry `"NAME": {backends: [one]}` plus `extra` fields.
fn pool_entry(name: &str, port: u16, extra: &str) -> String {
    format!(r#""{name}":{{"backends":[{{"address":"127.0.0.1:{port}"}}]{extra}}}"#)
}

#[test]
fn the_contracts_named_example_parses() {
    let c = Config::from_json(CONTRACT_EXAMPLE).unwrap();
    assert_eq!(c.form, Form::Named);
    assert_eq!(c.listeners.len(), 1);
    let l = &c.listeners[0];
    assert_eq!(l.name, "web");
    assert_eq!(l.listen, "0.0.0.0:443".parse::<SocketAddr>().unwrap());
    assert_eq!(l.protocol, Protocol::Tcp);
    assert_eq!(l.pool.as_deref(), Some("web"));
    assert_eq!(
        l.sni,
        [
            ("api.example.com".to_string(), "api".to_string()),
            ("*.internal.example.com".to_string(), "internal".to_string()),
        ],
        "in file order"
    );
    assert_eq!(l.max_connections, 10_000);
    let names: Vec<&str> = c.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["web", "api", "internal"], "in file order");
    let algorithms: Vec<Algorithm> = c.pools.iter().map(|p| p.algorithm).collect();
    assert_eq!(
        algorithms,
        [
            Algorithm::LeastConnections,
            Algorithm::Hash,
            Algorithm::RoundRobin
        ]
    );
    assert_eq!(c.pool("internal").unwrap().backends[0].name, "10.0.1.1:443");
    assert_eq!(c.pool("api").unwrap().retries, 2);
    assert_eq!(l.timeouts.idle.0, Duration::from_secs(300));
    assert_eq!(c.admin, Some("127.0.0.1:9000".parse().unwrap()));
    assert_eq!(c.listener("web"), Some(l));
}

#[test]
fn udp_listeners_are_refused_as_not_supported_yet() {
    let text = named(
        &[
            r#"{"name":"web","listen":"0.0.0.0:443","pool":"web"}"#,
            r#"{"name":"dns","listen":"0.0.0.0:53","protocol":"udp","pool":"dns"}"#,
        ],
        &[&pool_entry("web", 443, ""), &pool_entry("dns", 53, "")],
        "",
    );
    let e = err(&text);
    assert!(
        e.starts_with("listeners[1].protocol: \"udp\" is not supported yet"),
        "{e}"
    );
    // "tcp" written out is the default.
    let text = named(
        &[r#"{"listen":"0.0.0.0:443","protocol":"tcp","pool":"web"}"#],
        &[&pool_entry("web", 443, "")],
        "",
    );
    assert_eq!(
        Config::from_json(&text).unwrap().listeners[0].protocol,
        Protocol::Tcp
    );
    let e = err(&named(
        &[r#"{"listen":"0.0.0.0:443","protocol":"sctp","pool":"web"}"#],
        &[&pool_entry("web", 443, "")],
        "",
    ));
    assert!(
        e.starts_with("listeners[0].protocol: unknown variant `sctp`"),
        "{e}"
    );
}

#[test]
fn listeners_and_pools_take_the_top_level_timeouts_unless_they_set_their_own() {
    let c = Config::from_json(&named(
        &[
            r#"{"name":"a","listen":"127.0.0.1:1","pool":"p"}"#,
            r#"{"name":"b","listen":"127.0.0.1:2","pool":"q","timeouts":{"idle":"9s","client_hello":"750ms"}}"#,
        ],
        &[
            &pool_entry("p", 10, ""),
            &pool_entry("q", 11, r#","timeouts":{"connect":"250ms"}"#),
        ],
        r#","timeouts":{"connect":"2s","idle":"7m","half_close":"30s","client_hello":"3s","shutdown_grace":"1m"}"#,
    ))
    .unwrap();
    let secs = |s: u64| ConfigDuration(Duration::from_secs(s));
    let ms = |m: u64| ConfigDuration(Duration::from_millis(m));
    let a = c.listener("a").unwrap();
    assert_eq!(
        a.timeouts,
        ListenerTimeouts {
            idle: secs(420),
            half_close: secs(30),
            client_hello: secs(3),
        },
        "inherited"
    );
    let b = c.listener("b").unwrap();
    assert_eq!(
        b.timeouts,
        ListenerTimeouts {
            idle: secs(9),
            half_close: secs(30),
            client_hello: ms(750),
        },
        "overridden where set, inherited elsewhere"
    );
    assert_eq!(c.pool("p").unwrap().timeouts.connect, secs(2), "inherited");
    assert_eq!(c.pool("q").unwrap().timeouts.connect, ms(250), "overridden");
    assert_eq!(c.timeouts.shutdown_grace, secs(60));
    // Without top-level timeouts, the documented defaults.
    let c = Config::from_json(&named(
        &[r#"{"listen":"127.0.0.1:1","pool":"p"}"#],
        &[&pool_entry("p", 10, "")],
        "",
    ))
    .unwrap();
    assert_eq!(
        c.listeners[0].timeouts,
        ListenerTimeouts {
            idle: secs(300),
            half_close: secs(60),
            client_hello: secs(5),
        }
    );
    assert_eq!(c.pools[0].timeouts.connect, secs(1));
    // A listener's or a pool's own zero timeout is refused where it is written.
    let e = err(&named(
        &[r#"{"listen":"127.0.0.1:1","pool":"p","timeouts":{"half_close":"0s"}}"#],
        &[&pool_entry("p", 10, "")],
        "",
    ));
    assert!(
        e.starts_with("listeners[0].timeouts.half_close: must be greater than zero"),
        "{e}"
    );
    let e = err(&named(
        &[r#"{"listen":"127.0.0.1:1","pool":"p"}"#],
        &[&pool_entry("p", 10, r#","timeouts":{"connect":"0ms"}"#)],
        "",
    ));
    assert!(
        e.starts_with("pools.p.timeouts.connect: must be greater than zero"),
        "{e}"
    );
}

#[test]
fn listener_and_pool_settings_are_read_where_they_are_written() {
    let c = Config::from_json(&named(
        &[
            r#"{"listen":"127.0.0.1:1","pool":"p","allow":["10.0.0.0/8"],"max_connections":7,
                "per_client":{"max_connections":3},"tcp_keepalive":{"idle":"30s"}}"#,
        ],
        &[&pool_entry(
            "p",
            10,
            r#","algorithm":"weighted_round_robin","retries":4,"slow_start":"5s","proxy_protocol":"v2",
               "on_backend_down":"close","tcp_keepalive":{"count":3},"health_check":{"type":"http"}"#,
        )],
        "",
    ))
    .unwrap();
    let l = &c.listeners[0];
    assert_eq!(
        l.name, "127.0.0.1:1",
        "a listener's name defaults to its address"
    );
    assert_eq!(l.allow.as_ref().unwrap()[0].to_string(), "10.0.0.0/8");
    assert_eq!(l.max_connections, 7);
    assert_eq!(l.per_client.unwrap().max_connections, Some(3));
    assert_eq!(l.tcp_keepalive.unwrap().idle.0, Duration::from_secs(30));
    let p = &c.pools[0];
    assert_eq!(p.algorithm, Algorithm::WeightedRoundRobin);
    assert_eq!(p.retries, 4);
    assert_eq!(p.slow_start.unwrap().0, Duration::from_secs(5));
    assert_eq!(p.proxy_protocol, Some(ProxyProtocol::V2));
    assert_eq!(p.on_backend_down, OnBackendDown::Close);
    assert_eq!(p.tcp_keepalive.unwrap().count, 3);
    assert_eq!(p.health_check.kind, CheckType::Http);
    // Each one's keepalive is its own: the listener's count and the pool's idle are the
    // defaults.
    assert_eq!(l.tcp_keepalive.unwrap().count, 6);
    assert_eq!(p.tcp_keepalive.unwrap().idle.0, Duration::from_secs(60));
}

#[test]
fn mixing_the_flat_and_the_named_form_is_an_error_naming_the_flat_field() {
    let listeners = [r#"{"listen":"127.0.0.1:1","pool":"p"}"#];
    let p = pool_entry("p", 10, "");
    for (flat, says) in [
        (
            r#""listen":"127.0.0.1:2""#,
            "listen: `listen` is a listener setting",
        ),
        (
            r#""allow":["10.0.0.0/8"]"#,
            "allow: `allow` is a listener setting",
        ),
        (
            r#""max_connections":5"#,
            "max_connections: `max_connections` is a listener setting",
        ),
        (
            r#""per_client":{"max_connections":1}"#,
            "per_client: `per_client` is a listener setting",
        ),
        (
            r#""tcp_keepalive":{}"#,
            "tcp_keepalive: `tcp_keepalive` is a listener and pool setting",
        ),
        (
            r#""algorithm":"hash""#,
            "algorithm: `algorithm` is a pool setting",
        ),
        (
            r#""backends":[{"address":"127.0.0.1:3"}]"#,
            "backends: `backends` is a pool setting",
        ),
        (
            r#""health_check":{}"#,
            "health_check: `health_check` is a pool setting",
        ),
        (r#""retries":1"#, "retries: `retries` is a pool setting"),
        (
            r#""slow_start":"1s""#,
            "slow_start: `slow_start` is a pool setting",
        ),
        (
            r#""proxy_protocol":"v1""#,
            "proxy_protocol: `proxy_protocol` is a pool setting",
        ),
        (
            r#""on_backend_down":"close""#,
            "on_backend_down: `on_backend_down` is a pool setting",
        ),
    ] {
        let e = err(&named(&listeners, &[&p], &format!(",{flat}")));
        assert!(e.starts_with(says), "{flat}: {e}");
    }
    // Half of the named form beside a flat config is mixing too.
    let e = err(
        r#"{"backends":[{"address":"127.0.0.1:3"}],"pools":{"p":{"backends":[{"address":"127.0.0.1:4"}]}}}"#,
    );
    assert!(
        e.starts_with("backends: `backends` is a pool setting"),
        "{e}"
    );
    let e = err(r#"{"listen":"127.0.0.1:2","listeners":[{"listen":"127.0.0.1:1","pool":"p"}]}"#);
    assert!(
        e.starts_with("listen: `listen` is a listener setting"),
        "{e}"
    );
    // And half of the named form alone says what is missing.
    let e = err(r#"{"listeners":[{"listen":"127.0.0.1:1","pool":"p"}]}"#);
    assert!(e.starts_with("pools: missing"), "{e}");
    let e = err(r#"{"pools":{"p":{"backends":[{"address":"127.0.0.1:4"}]}}}"#);
    assert!(e.starts_with("listeners: missing"), "{e}");
}

#[test]
fn unknown_fields_in_listeners_and_pools_suggest_the_closest_known_one() {
    for (listener, pool, says) in [
        (
            r#"{"listen":"127.0.0.1:1","pool":"p","snii":{}}"#,
            "",
            r#"listeners[0]: unknown field "snii", did you mean "sni"?"#,
        ),
        (
            r#"{"listen":"127.0.0.1:1","pool":"p","max_conections":1}"#,
            "",
            r#"listeners[0]: unknown field "max_conections", did you mean "max_connections"?"#,
        ),
        (
            r#"{"listen":"127.0.0.1:1","pool":"p","timeouts":{"client_helo":"1s"}}"#,
            "",
            r#"listeners[0].timeouts: unknown field "client_helo", did you mean "client_hello"?"#,
        ),
        (
            r#"{"listen":"127.0.0.1:1","pool":"p","per_client":{"conection_rate":"1/s"}}"#,
            "",
            r#"listeners[0].per_client: unknown field "conection_rate", did you mean "connection_rate"?"#,
        ),
        (
            r#"{"listen":"127.0.0.1:1","pool":"p"}"#,
            r#","algoritm":"hash""#,
            r#"pools.p: unknown field "algoritm", did you mean "algorithm"?"#,
        ),
        (
            r#"{"listen":"127.0.0.1:1","pool":"p"}"#,
            r#","timeouts":{"conect":"1s"}"#,
            r#"pools.p.timeouts: unknown field "conect", did you mean "connect"?"#,
        ),
        (
            r#"{"listen":"127.0.0.1:1","pool":"p"}"#,
            r#","health_check":{"intervl":"1s"}"#,
            r#"pools.p.health_check: unknown field "intervl", did you mean "interval"?"#,
        ),
        (
            r#"{"listen":"127.0.0.1:1","pool":"p"}"#,
            r#","tcp_keepalive":{"intervall":"1s"}"#,
            r#"pools.p.tcp_keepalive: unknown field "intervall", did you mean "interval"?"#,
        ),
    ] {
        let e = err(&named(&[listener], &[&pool_entry("p", 10, pool)], ""));
        assert_eq!(e, says);
    }
    // A backend of a pool.
    let e = err(&named(
        &[r#"{"listen":"127.0.0.1:1","pool":"p"}"#],
        &[r#""p":{"backends":[{"address":"127.0.0.1:1"},{"adress":"127.0.0.1:2"}]}"#],
        "",
    ));
    assert_eq!(
        e,
        r#"pools.p.backends[1]: unknown field "adress", did you mean "address"?"#
    );
    // Each object suggests only its own fields: `listen` is not a pool's, `algorithm` is
    // not a listener's.
    let e = Config::from_json(&named(
        &[r#"{"listen":"127.0.0.1:1","pool":"p"}"#],
        &[&pool_entry("p", 10, r#","lisen":"127.0.0.1:2""#)],
        "",
    ))
    .unwrap_err();
    assert!(
        matches!(&e, ConfigError::UnknownField { path, field, suggestion: None, known }
            if path == "pools.p" && field == "lisen" && known.contains(&"backends")
                && !known.contains(&"listen")),
        "{e:?}"
    );
    let e = Config::from_json(&named(
        &[r#"{"listen":"127.0.0.1:1","pool":"p","algoritm":"hash"}"#],
        &[&pool_entry("p", 10, "")],
        "",
    ))
    .unwrap_err();
    assert!(
        matches!(&e, ConfigError::UnknownField { path, field, suggestion: None, known }
            if path == "listeners[0]" && field == "algoritm" && known.contains(&"sni")
                && !known.contains(&"algorithm")),
        "{e:?}"
    );
    // A pool's field in a listener is unknown there, with the fields a listener takes.
    let e = Config::from_json(&named(
        &[r#"{"listen":"127.0.0.1:1","pool":"p","backends":[]}"#],
        &[&pool_entry("p", 10, "")],
        "",
    ))
    .unwrap_err();
    assert!(
        matches!(&e, ConfigError::UnknownField { path, field, known, .. }
            if path == "listeners[0]" && field == "backends" && known.contains(&"sni")),
        "{e:?}"
    );
    // A listener's timeout in a pool's timeouts is unknown there.
    let e = Config::from_json(&named(
        &[r#"{"listen":"127.0.0.1:1","pool":"p"}"#],
        &[&pool_entry("p", 10, r#","timeouts":{"idle":"1s"}"#)],
        "",
    ))
    .unwrap_err();
    assert!(
        matches!(&e, ConfigError::UnknownField { path, field, known, .. }
            if path == "pools.p.timeouts" && field == "idle" && *known == ["connect"]),
        "{e:?}"
    );
}

#[test]
fn errors_in_named_pools_and_listeners_name_the_field_where_it_is_written() {
    let l = r#"{"listen":"127.0.0.1:1","pool":"web"}"#;
    let e = err(&named(
        &[l],
        &[r#""web":{"backends":[{"address":"127.0.0.1:1"},{"address":"localhost"}]}"#],
        "",
    ));
    assert!(
        e.starts_with("pools.web.backends[1].address: invalid socket address \"localhost\""),
        "{e}"
    );
    let e = err(&named(
        &[l],
        &[r#""web":{"backends":[{"address":"127.0.0.1:1","weight":1001}]}"#],
        "",
    ));
    assert!(
        e.starts_with("pools.web.backends[0].weight: must be between 1 and 1000"),
        "{e}"
    );
    let e = err(&named(
        &[l],
        &[
            r#""web":{"backends":[{"name":"a","address":"127.0.0.1:1"},{"name":"a","address":"127.0.0.1:2"}]}"#,
        ],
        "",
    ));
    assert!(
        e.starts_with(
            "pools.web.backends[1].name: duplicate name \"a\" (also pools.web.backends[0].name)"
        ),
        "{e}"
    );
    let e = err(&named(&[l], &[r#""web":{"backends":[]}"#], ""));
    assert!(
        e.starts_with("pools.web.backends: at least one backend"),
        "{e}"
    );
    let e = err(&named(&[l], &[r#""web":{}"#], ""));
    assert!(e.starts_with("pools.web.backends: missing"), "{e}");
    let e = err(&named(
        &[l],
        &[&pool_entry("web", 1, r#","health_check":{"rise":0}"#)],
        "",
    ));
    assert!(
        e.starts_with("pools.web.health_check.rise: must be between 1"),
        "{e}"
    );
    let e = err(&named(
        &[l],
        &[&pool_entry("web", 1, r#","retries":101"#)],
        "",
    ));
    assert!(
        e.starts_with("pools.web.retries: must be at most 100"),
        "{e}"
    );
    let e = err(&named(
        &[r#"{"listen":"127.0.0.1:1","pool":"web","max_connections":0}"#],
        &[&pool_entry("web", 1, "")],
        "",
    ));
    assert!(
        e.starts_with("listeners[0].max_connections: must be at least 1"),
        "{e}"
    );
    let e = err(&named(
        &[
            l,
            r#"{"listen":"127.0.0.1:2","pool":"web","allow":["10.0.0.1/8"]}"#,
        ],
        &[&pool_entry("web", 1, "")],
        "",
    ));
    assert!(e.starts_with("listeners[1].allow[0]"), "{e}");
    let e = err(&named(
        &[r#"{"listen":"127.0.0.1:2","pool":"web","tcp_keepalive":{"count":0}}"#],
        &[&pool_entry("web", 1, "")],
        "",
    ));
    assert!(
        e.starts_with("listeners[0].tcp_keepalive.count: must be between 1 and 127"),
        "{e}"
    );
    let e = err(&named(
        &[l],
        &[&pool_entry("web", 1, r#","tcp_keepalive":{"count":0}"#)],
        "",
    ));
    assert!(
        e.starts_with("pools.web.tcp_keepalive.count: must be between 1 and 127"),
        "{e}"
    );
    let e = err(&named(
        &[l],
        &[&pool_entry("web", 1, ""), &pool_entry("web", 2, "")],
        "",
    ));
    assert!(
        e.contains("pools") && e.contains("\"web\" is written twice"),
        "{e}"
    );
}

#[test]
fn every_pool_must_be_used_and_every_pool_named_must_exist() {
    let e = err(&named(
        &[r#"{"listen":"127.0.0.1:1","pool":"web"}"#],
        &[&pool_entry("web", 1, ""), &pool_entry("spare", 2, "")],
        "",
    ));
    assert!(
        e.starts_with("pools.spare: no listener uses this pool"),
        "{e}"
    );
    let e = err(&named(
        &[r#"{"listen":"127.0.0.1:1","pool":"wbe"}"#],
        &[&pool_entry("web", 1, "")],
        "",
    ));
    assert!(
        e.starts_with("listeners[0].pool: no pool named \"wbe\" (pools: \"web\")"),
        "{e}"
    );
    let e = err(&named(
        &[r#"{"listen":"127.0.0.1:1","pool":"web","sni":{"api.example.com":"apii"}}"#],
        &[&pool_entry("web", 1, "")],
        "",
    ));
    assert!(
        e.starts_with("listeners[0].sni.api.example.com: no pool named \"apii\""),
        "{e}"
    );
    // No `pool` is allowed only with `sni`; a pool reached only through `sni` is used.
    let e = err(&named(
        &[r#"{"listen":"127.0.0.1:1"}"#],
        &[&pool_entry("web", 1, "")],
        "",
    ));
    assert!(e.starts_with("listeners[0].pool: missing"), "{e}");
    let c = Config::from_json(&named(
        &[r#"{"listen":"127.0.0.1:1","sni":{"api.example.com":"api"}}"#],
        &[&pool_entry("api", 1, "")],
        "",
    ))
    .unwrap();
    assert_eq!(c.listeners[0].pool, None);
    assert!(
        c.summary()
            .contains("unmatched clients rejected (no_route)"),
        "{}",
        c.summary()
    );
}

#[test]
fn sni_patterns_are_checked_and_each_written_once_in_any_case() {
    let with_sni = |sni: &str| {
        Config::from_json(&named(
            &[&format!(
                r#"{{"listen":"127.0.0.1:1","pool":"web","sni":{{{sni}}}}}"#
            )],
            &[&pool_entry("web", 1, "")],
            "",
        ))
    };
    for (sni, says) in [
        (r#""api.*.com":"web""#, "listeners[0].sni.api.*.com: \"api.*.com\": a wildcard is written `*.` at the start only"),
        (r#""*api.example.com":"web""#, "listeners[0].sni.*api.example.com: \"*api.example.com\": a wildcard is written `*.`"),
        (r#""*.":"web""#, "listeners[0].sni.*.: \"*.\": a server name is 1 to 253 bytes long"),
        (r#""a..b":"web""#, "listeners[0].sni.a..b: \"a..b\": empty or over-long label"),
        (r#""example.com.":"web""#, "listeners[0].sni.example.com.: \"example.com.\": empty or over-long label"),
        (r#""ex ample.com":"web""#, "listeners[0].sni.ex ample.com: \"ex ample.com\": a server name has only letters"),
        (
            r#""api.example.com":"web","API.Example.COM":"web""#,
            "listeners[0].sni.API.Example.COM: \"API.Example.COM\" is also written as \"api.example.com\"",
        ),
        (
            r#""*.Example.com":"web","*.example.COM":"web""#,
            "listeners[0].sni.*.example.COM: \"*.example.COM\" is also written as \"*.Example.com\"",
        ),
        (
            r#""api.example.com":"web","api.example.com":"web""#,
            "listeners[0].sni: \"api.example.com\" is written twice",
        ),
    ] {
        let e = with_sni(sni).unwrap_err().to_string();
        assert!(e.starts_with(says), "{sni}: {e}");
    }
    // An exact name and a wildcard over it are different patterns; so are two suffixes.
    let c = with_sni(
        r#""api.example.com":"web","*.example.com":"web","*.api.example.com":"web","x_y-1.example.com":"web""#,
    )
    .unwrap();
    assert_eq!(c.listeners[0].sni.len(), 4);
}

#[test]
fn listener_names_and_addresses_are_unique() {
    let p = pool_entry("web", 1, "");
    let e = err(&named(
        &[
            r#"{"name":"a","listen":"127.0.0.1:1","pool":"web"}"#,
            r#"{"name":"a","listen":"127.0.0.1:2","pool":"web"}"#,
        ],
        &[&p],
        "",
    ));
    assert!(
        e.starts_with("listeners[1].name: duplicate listener name \"a\" (also listeners[0].name)"),
        "{e}"
    );
    // A name defaulted from the address counts too.
    let e = err(&named(
        &[
            r#"{"listen":"127.0.0.1:1","pool":"web"}"#,
            r#"{"name":"127.0.0.1:1","listen":"127.0.0.1:2","pool":"web"}"#,
        ],
        &[&p],
        "",
    ));
    assert!(
        e.starts_with("listeners[1].name: duplicate listener name"),
        "{e}"
    );
    let e = err(&named(
        &[
            r#"{"name":"a","listen":"127.0.0.1:1","pool":"web"}"#,
            r#"{"name":"b","listen":"127.0.0.1:2","pool":"web"}"#,
            r#"{"name":"c","listen":"127.0.0.1:1","pool":"web"}"#,
        ],
        &[&p],
        "",
    ));
    assert!(
        e.starts_with("listeners[2].listen: 127.0.0.1:1 is also listeners[0].listen"),
        "{e}"
    );
    // Port 0 is "any free port": two of them do not collide.
    let c = Config::from_json(&named(
        &[
            r#"{"name":"a","listen":"127.0.0.1:0","pool":"web"}"#,
            r#"{"name":"b","listen":"127.0.0.1:0","pool":"web"}"#,
        ],
        &[&p],
        "",
    ))
    .unwrap();
    assert_eq!(c.listeners.len(), 2);
    let e = err(&named(
        &[r#"{"name":"a\"b","listen":"127.0.0.1:1","pool":"web"}"#],
        &[&p],
        "",
    ));
    assert!(
        e.starts_with("listeners[0].name: must not contain quotes"),
        "{e}"
    );
    let e = err(&named(
        &[r#"{"listen":"127.0.0.1:1","pool":"we\"b"}"#],
        &[&pool_entry("we\\\"b", 1, "")],
        "",
    ));
    assert!(e.starts_with("pools.we\"b: must not contain quotes"), "{e}");
}

#[test]
fn both_forms_round_trip_through_to_json_in_their_own_form() {
    let named_text = named(
        &[
            r#"{"name":"tls","listen":"0.0.0.0:443","sni":{"API.example.com":"api","*.example.com":"web"},
                "allow":["10.0.0.0/8","::1"],"max_connections":50,"per_client":{"connection_rate":"5/s"},
                "timeouts":{"client_hello":"2s"},"tcp_keepalive":{"idle":"30s"}}"#,
            r#"{"name":"plain","listen":"[::1]:8080","pool":"web","timeouts":{"idle":"1h","half_close":"10s"}}"#,
        ],
        &[
            &pool_entry(
                "web",
                1,
                r#","algorithm":"power_of_two","health_check":{"type":"http","path":"/ready"},"retries":0,
                   "slow_start":"30s","proxy_protocol":"v1","on_backend_down":"close","timeouts":{"connect":"3s"},
                   "tcp_keepalive":{"count":2}"#,
            ),
            r#""api":{"backends":[{"name":"a","address":"api-1.internal:443","weight":5,"max_connections":9}]}"#,
        ],
        r#","timeouts":{"idle":"2m","shutdown_grace":"5s"},"admin":"127.0.0.1:9000""#,
    );
    let c = Config::from_json(&named_text).unwrap();
    let json = c.to_json();
    assert_eq!(Config::from_json(&json).unwrap(), c, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        v["listeners"].is_array() && v["pools"].is_object(),
        "{json}"
    );
    assert!(
        v.get("listen").is_none() && v.get("backends").is_none(),
        "{json}"
    );
    assert_eq!(v["pools"]["api"]["backends"][0]["name"], "a");
    assert_eq!(v["listeners"][0]["sni"]["API.example.com"], "api");

    let flat = Config::from_json(
        r#"{"listen":"127.0.0.1:8080","algorithm":"least_response_time","backends":[{"name":"a","address":"127.0.0.1:5001"}],
            "allow":["10.0.0.0/8"],"per_client":{"max_connections":2},"tcp_keepalive":{},"on_backend_down":"close",
            "timeouts":{"connect":"2s","client_hello":"1s"},"admin":"127.0.0.1:9000"}"#,
    )
    .unwrap();
    let json = flat.to_json();
    assert_eq!(Config::from_json(&json).unwrap(), flat, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["listen"], "127.0.0.1:8080", "{json}");
    assert!(v["backends"].is_array(), "{json}");
    assert!(
        v.get("listeners").is_none() && v.get("pools").is_none(),
        "{json}"
    );
}

#[test]
fn the_seeds_flat_config_still_parses_with_the_same_values() {
    // config.json as the project's first commit shipped it.
    let c = Config::from_json(
        r#"{
  "listen": "127.0.0.1:8080",
  "algorithm": "round_robin",
  "backends": [
    { "name": "server-5001", "address": "127.0.0.1:5001", "weight": 1 },
    { "name": "server-5002", "address": "127.0.0.1:5002", "weight": 1 },
    { "name": "server-5003", "address": "127.0.0.1:5003", "weight": 1 }
  ],
  "health_check": { "type": "tcp", "interval": "1s", "timeout": "500ms", "rise": 2, "fall": 2 },
  "timeouts": { "connect": "1s", "idle": "5m", "half_close": "1m", "shutdown_grace": "30s" },
  "retries": 2,
  "max_connections": 10000
}"#,
    )
    .unwrap();
    assert_eq!(c.form, Form::Flat);
    let l = &c.listeners[0];
    assert_eq!(l.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(l.max_connections, 10_000);
    assert_eq!(l.allow, None);
    let p = &c.pools[0];
    assert_eq!(p.algorithm, Algorithm::RoundRobin);
    let backends: Vec<(&str, String, u32)> = p
        .backends
        .iter()
        .map(|b| (b.name.as_str(), b.address.to_string(), b.weight))
        .collect();
    assert_eq!(
        backends,
        [
            ("server-5001", "127.0.0.1:5001".to_string(), 1),
            ("server-5002", "127.0.0.1:5002".to_string(), 1),
            ("server-5003", "127.0.0.1:5003".to_string(), 1),
        ]
    );
    let hc = &p.health_check;
    assert_eq!(hc.kind, CheckType::Tcp);
    assert_eq!(
        (hc.interval.0, hc.timeout.0, hc.rise, hc.fall),
        (Duration::from_secs(1), Duration::from_millis(500), 2, 2)
    );
    assert_eq!(p.timeouts.connect.0, Duration::from_secs(1));
    assert_eq!(l.timeouts.idle.0, Duration::from_secs(300));
    assert_eq!(l.timeouts.half_close.0, Duration::from_secs(60));
    assert_eq!(c.timeouts.shutdown_grace.0, Duration::from_secs(30));
    assert_eq!(p.retries, 2);
    assert_eq!(c.admin, None);
    assert_eq!(
        c.summary_lines(),
        ["listen 127.0.0.1:8080, round_robin over 3 backends, tcp checks every 1s (timeout 500ms, rise 2, fall 2), retries 2, max_connections 10000"]
    );
}

#[test]
fn the_summary_has_one_line_per_listener() {
    let c = Config::from_json(&named(
        &[
            r#"{"name":"tls","listen":"0.0.0.0:443","pool":"web","sni":{"api.example.com":"api","*.example.com":"web"},
                "timeouts":{"client_hello":"2s"}}"#,
            r#"{"name":"plain","listen":"0.0.0.0:80","pool":"web","max_connections":5,"allow":["10.0.0.0/8"]}"#,
            r#"{"name":"strict","listen":"0.0.0.0:8443","sni":{"api.example.com":"api"}}"#,
        ],
        &[
            &pool_entry("web", 1, r#","algorithm":"least_connections""#),
            &pool_entry("api", 2, r#","algorithm":"hash","proxy_protocol":"v2""#),
        ],
        r#","admin":"127.0.0.1:9000""#,
    ))
    .unwrap();
    let lines = c.summary_lines();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(
        lines[0],
        "listener tls on 0.0.0.0:443, sni 2 name(s) to pool(s) api, web (ClientHello within 2s), pool web: least_connections over 1 backend, tcp checks every 1s (timeout 500ms, rise 2, fall 2), retries 2, max_connections 10000"
    );
    assert_eq!(
        lines[1],
        "listener plain on 0.0.0.0:80, pool web: least_connections over 1 backend, tcp checks every 1s (timeout 500ms, rise 2, fall 2), retries 2, max_connections 5, allow 1 network(s)"
    );
    assert_eq!(
        lines[2],
        "listener strict on 0.0.0.0:8443, sni 1 name(s) to pool(s) api (ClientHello within 5s), unmatched clients rejected (no_route), max_connections 10000, admin 127.0.0.1:9000"
    );
    assert_eq!(c.summary(), lines.join("; "));
}

#[test]
fn discover_is_read_checked_and_written_back() {
    // Backends may then be left out; a config round-trips with it.
    let c = Config::from_json(
        r#"{"discover":{"srv":"_web._tcp.service.consul","resolver":"127.0.0.1:8600","interval":"2s"}}"#,
    )
    .unwrap();
    let d = c.pools[0].discover.as_ref().unwrap();
    assert_eq!(d.resolver, Some("127.0.0.1:8600".parse().unwrap()));
    assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    assert!(
        c.summary()
            .contains("over 0 backends and those of srv _web._tcp.service.consul (every 2s)"),
        "{}",
        c.summary()
    );
    for (json, want) in [
        (
            r#"{"discover":{"dns":"web:80","srv":"_x._tcp.web"}}"#,
            "discover: give `dns` or `srv`, not both",
        ),
        (r#"{"discover":{}}"#, "discover: give `dns`"),
        (
            r#"{"discover":{"dns":"web"}}"#,
            "discover: dns: \"web\" has no port",
        ),
        (
            r#"{"discover":{"dns":"web:80","interval":"10ms"}}"#,
            "discover.interval: 10ms is too short",
        ),
        (
            r#"{"discover":{"dns":"web:80","resolver":"dns.example:53"}}"#,
            "discover.resolver: invalid socket address",
        ),
        (
            r#"{"discover":{"dns":"web:80","intreval":"1s"}}"#,
            r#"discover: unknown field "intreval", did you mean "interval"?"#,
        ),
        (r#"{"discover":"web:80"}"#, "discover: expected an object"),
        (
            r#"{"listen":"127.0.0.1:1"}"#,
            "missing field `backends` (or `discover`",
        ),
        (
            r#"{"listeners":[{"listen":"127.0.0.1:1","pool":"p"}],"pools":{"p":{}}}"#,
            "pools.p.backends: missing: a pool needs its backends (or `discover`)",
        ),
        (
            r#"{"listeners":[{"listen":"127.0.0.1:1","pool":"p"}],"pools":{"p":{"discover":{"dns":"w:1"}}},"discover":{"dns":"w:1"}}"#,
            "discover: `discover` is a pool setting",
        ),
    ] {
        let e = err(json);
        assert!(e.starts_with(want) || e.contains(want), "{json}: {e}");
    }
}
