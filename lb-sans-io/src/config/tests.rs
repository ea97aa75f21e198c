use super::*;

fn err(json: &str) -> String {
    Config::from_json(json).unwrap_err().to_string()
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = Config::from_json(r#"{"backends":[{"address":"127.0.0.1:5001"}]}"#).unwrap();
    assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.algorithm, Algorithm::RoundRobin);
    assert_eq!(c.backends[0].name, "127.0.0.1:5001");
    assert_eq!(c.backends[0].weight, 1);
    assert_eq!(c.health_check.interval.0, Duration::from_secs(1));
    assert_eq!(c.health_check.timeout.0, Duration::from_millis(500));
    assert_eq!((c.health_check.rise, c.health_check.fall), (2, 2));
    assert!(!c.health_check.start_up);
    assert_eq!(c.timeouts.connect.0, Duration::from_secs(1));
    assert_eq!(c.timeouts.idle.0, Duration::from_secs(300));
    assert_eq!(c.timeouts.half_close.0, Duration::from_secs(60));
    assert_eq!(c.timeouts.shutdown_grace.0, Duration::from_secs(30));
    assert_eq!(c.retries, 2);
    assert_eq!(c.max_connections, 10_000);
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
        c.backends[0].address,
        BackendAddress::Host {
            host: "db-1.internal".into(),
            port: 5432
        }
    );
    let c = Config::from_json(r#"{"backends":[{"address":"[::1]:80"}]}"#).unwrap();
    assert_eq!(
        c.backends[0].address,
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
    let allow = c.allow.as_ref().unwrap();
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
    assert_eq!(c.health_check.http_path(), "/health");
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
        parse(r#""v1""#).unwrap().proxy_protocol,
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
    assert_eq!(
        old.restart_needed(&new),
        ["listen", "admin", "timeouts.shutdown_grace"]
    );
    let running = old.reloaded(new.clone());
    assert_eq!((running.listen, running.admin), (old.listen, old.admin));
    assert_eq!(running.timeouts.shutdown_grace, old.timeouts.shutdown_grace);
    assert_eq!((running.retries, &running.backends), (5, &new.backends));
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
    assert_eq!((c.listen.port(), c.admin.map(|a| a.port())), (0, Some(0)));
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
    assert_eq!(c.slow_start.unwrap().0, Duration::from_secs(86_400));
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
        r#"{"listen":"127.0.0.1:1","admin":"127.0.0.1:2","timeouts":{"shutdown_grace":"1s"},
            "backends":[{"address":"h:1"}]}"#,
    )
    .unwrap();
    let names: Vec<&str> = RESTART_ONLY.iter().map(|f| f.name).collect();
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
    let pc = c.per_client.unwrap();
    assert_eq!(pc.max_connections, Some(100));
    assert_eq!(pc.connection_rate.unwrap().to_string(), "50/s");
    assert_eq!(c.on_backend_down, OnBackendDown::Close);
    assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    let plain = Config::from_json(r#"{"backends":[{"address":"127.0.0.1:1"}]}"#).unwrap();
    assert_eq!(
        (plain.per_client, plain.on_backend_down),
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
    assert_eq!(c.algorithm, Algorithm::Hash);
    assert_eq!(c.health_check.kind, CheckType::Http);
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
    assert_eq!(c.tcp_keepalive, None);
    let c = Config::from_json(&format!(
        r#"{{{one},"tcp_keepalive":{{"idle":"60s","interval":"10s","count":6}}}}"#
    ))
    .unwrap();
    let ka = c.tcp_keepalive.unwrap();
    assert_eq!(ka.idle.0, Duration::from_secs(60));
    assert_eq!(ka.interval.0, Duration::from_secs(10));
    assert_eq!(ka.count, 6);
    assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    assert!(c
        .summary()
        .contains("tcp_keepalive idle 1m interval 10s count 6"));
    // Every field has a default: `{}` turns keepalive on with them.
    let c = Config::from_json(&format!(r#"{{{one},"tcp_keepalive":{{"idle":"2h"}}}}"#)).unwrap();
    assert_eq!(
        c.tcp_keepalive,
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
