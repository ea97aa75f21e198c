//! Replays, on stable `cargo test`, every input of the fuzz corpus (`fuzz/corpus/<target>/`)
//! and every crash the fuzzers ever found (`fuzz/regressions/<target>/`), through the same
//! harness the fuzz targets call.

use lb_harness::{
    check_admin_bytes, check_client_hello_bytes, check_config_bytes, check_events_bytes, Violation,
};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Fewest corpus files a fuzz target may have (the smallest tracked corpus, `admin`, has
/// 6): fewer means its corpus was lost, emptied or never seeded, and the replay would pass
/// without replaying anything of it.
const MIN_CORPUS_FILES: usize = 5;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The harness check for a target's inputs.
fn checker(target: &str) -> fn(&[u8]) -> Result<(), Violation> {
    match target {
        "events" => check_events_bytes,
        "config" => check_config_bytes,
        "admin" => check_admin_bytes,
        "client_hello" => check_client_hello_bytes,
        other => panic!("no harness check for fuzz target {other:?}: add it to harness_replay.rs"),
    }
}

/// The fuzz targets: one per `fuzz/fuzz_targets/<target>.rs`.
fn targets() -> Vec<String> {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut out: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no fuzz targets at {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fuzz targets in {}", dir.display());
    out
}

/// Every file under `<fuzz>/<kind>/<target>/`, by target.
fn inputs(kind: &str) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out = BTreeMap::new();
    let Ok(targets) = fs::read_dir(fuzz_dir().join(kind)) else {
        return out;
    };
    for target in targets {
        let target = target.expect("readable directory entry").path();
        if !target.is_dir() {
            continue;
        }
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        let mut files = Vec::new();
        for file in fs::read_dir(&target).expect("readable target directory") {
            let file = file.expect("readable directory entry").path();
            if file.is_file() {
                files.push(file);
            }
        }
        files.sort();
        out.insert(name, files);
    }
    out
}

/// Replays every input of `kind`; returns how many each target has.
fn replay(kind: &str) -> BTreeMap<String, usize> {
    let inputs = inputs(kind);
    let total: usize = inputs.values().map(Vec::len).sum();
    let mut failures = Vec::new();
    for (target, files) in &inputs {
        let check = checker(target);
        for file in files {
            let data = fs::read(file).expect("readable input");
            if let Err(v) = check(&data) {
                failures.push(format!("{}: {v}", file.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} inputs fail:\n{}",
        failures.len(),
        total,
        failures.join("\n")
    );
    inputs.into_iter().map(|(t, f)| (t, f.len())).collect()
}

#[test]
fn every_fuzz_target_has_a_harness_check() {
    for target in targets() {
        checker(&target);
    }
}

#[test]
fn every_corpus_input_passes() {
    let counts = replay("corpus");
    for target in targets() {
        let n = counts.get(&target).copied().unwrap_or(0);
        assert!(
            n >= MIN_CORPUS_FILES,
            "fuzz target {target:?} has {n} corpus files under {} (at least {MIN_CORPUS_FILES} expected)",
            fuzz_dir().join("corpus").join(&target).display()
        );
    }
}

#[test]
fn every_crash_ever_found_stays_fixed() {
    let n: usize = replay("regressions").values().sum();
    assert!(
        n > 0,
        "no regression inputs found under {}",
        fuzz_dir().display()
    );
}

/// The `client_hello` corpus holds real ClientHellos (rustls's, written by
/// `fuzz/examples/client_hellos.rs`) that the reader judges as their names say.
#[test]
fn the_client_hello_corpus_is_read_as_written() {
    use lb_sans_io::sni::ClientHello;
    let dir = fuzz_dir().join("corpus/client_hello");
    let outcome = |name: &str| {
        let data = fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        lb_harness::client_hello_outcome(&data).unwrap_or_else(|v| panic!("{name}: {v}"))
    };
    let named = |n: &str| ClientHello::ServerName(n.to_string());
    for (file, expected) in [
        ("tls13-sni", named("api.example.com")),
        ("tls12-sni", named("www.example.com")),
        ("tls13-tls12-sni", named("a.b.example.com")),
        ("tls13-sni-upper-case", named("api.example.com")),
        ("tls13-sni-records-100", named("api.example.com")),
        ("tls13-sni-records-1", named("api.example.com")),
        ("tls13-sni-then-data", named("www.example.org")),
        ("tls13-no-sni", ClientHello::NoServerName),
        ("tls12-no-sni", ClientHello::NoServerName),
        ("http-request", ClientHello::NoServerName),
        ("tls13-sni-cut", ClientHello::Incomplete),
    ] {
        assert_eq!(outcome(file), expected, "{file}");
    }
}
