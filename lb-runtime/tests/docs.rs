//! The files generated from the command lines (man pages, shell completions) are the
//! committed ones.
//!
//! Regenerate the generated files with:
//!
//! ```text
//! LB_UPDATE_GENERATED=1 cargo test -p lb-runtime --test docs
//! ```

use clap_complete::Shell;
use std::path::{Path, PathBuf};

const REGENERATE: &str = "LB_UPDATE_GENERATED=1 cargo test -p lb-runtime --test docs";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("lb-runtime is in the workspace root")
        .to_path_buf()
}

/// The commands as documented: the version without the commit, so the files do not
/// change with every commit.
fn commands() -> Vec<clap::Command> {
    [
        lb_runtime::cli::loadbalancer_command(),
        lb_runtime::cli::demo_server_command(),
    ]
    .into_iter()
    .map(|c| c.version(env!("CARGO_PKG_VERSION")))
    .collect()
}

/// Every generated file: its path in the repository and its content.
fn generated() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for cmd in commands() {
        let name = cmd.get_name().to_string();
        let mut man = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut man)
            .expect("render the man page");
        files.push((format!("docs/man/{name}.1"), man));
        for (shell, ext) in [
            (Shell::Bash, "bash"),
            (Shell::Zsh, "zsh"),
            (Shell::Fish, "fish"),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), name.clone(), &mut out);
            files.push((format!("completions/{name}.{ext}"), out));
        }
    }
    files
}

#[test]
fn generated_files_are_up_to_date() {
    let root = repo();
    let update = std::env::var_os("LB_UPDATE_GENERATED").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (path, content) in generated() {
        let full = root.join(&path);
        let committed = std::fs::read(&full).ok();
        if committed.as_deref() == Some(&content[..]) {
            continue;
        }
        if update {
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, &content).unwrap();
            eprintln!("wrote {path}");
        } else {
            stale.push(match committed {
                None => format!("{path} (missing)"),
                Some(_) => format!("{path} (differs)"),
            });
        }
    }
    assert!(
        stale.is_empty(),
        "generated files out of date: {}\nregenerate them with:\n    {REGENERATE}\nand commit the result",
        stale.join(", ")
    );
}
