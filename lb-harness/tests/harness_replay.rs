//! Replays, on stable `cargo test`, every input of the fuzz corpus (`fuzz/corpus/<target>/`)
//! and every crash the fuzzers ever found (`fuzz/regressions/<target>/`), through the same
//! harness the fuzz targets call.

use lb_harness::{check_admin_bytes, check_config_bytes, check_events_bytes, Violation};
use std::fs;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The harness check for a target's inputs.
fn checker(target: &str) -> fn(&[u8]) -> Result<(), Violation> {
    match target {
        "events" => check_events_bytes,
        "config" => check_config_bytes,
        "admin" => check_admin_bytes,
        other => panic!("no harness check for fuzz target {other:?}: add it to harness_replay.rs"),
    }
}

/// Every file under `<fuzz>/<kind>/<target>/`, with its target.
fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(targets) = fs::read_dir(fuzz_dir().join(kind)) else {
        return out;
    };
    for target in targets {
        let target = target.expect("readable directory entry").path();
        if !target.is_dir() {
            continue;
        }
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        for file in fs::read_dir(&target).expect("readable target directory") {
            let file = file.expect("readable directory entry").path();
            if file.is_file() {
                out.push((name.clone(), file));
            }
        }
    }
    out.sort();
    out
}

fn replay(kind: &str) -> usize {
    let inputs = inputs(kind);
    let mut failures = Vec::new();
    for (target, file) in &inputs {
        let data = fs::read(file).expect("readable input");
        if let Err(v) = checker(target)(&data) {
            failures.push(format!("{}: {v}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} inputs fail:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
    inputs.len()
}

#[test]
fn every_corpus_input_passes() {
    let n = replay("corpus");
    assert!(n > 0, "no corpus found under {}", fuzz_dir().display());
}

#[test]
fn every_crash_ever_found_stays_fixed() {
    let n = replay("regressions");
    assert!(
        n > 0,
        "no regression inputs found under {}",
        fuzz_dir().display()
    );
}
