//! The files generated from the command lines (man pages, shell completions) are the
//! committed ones, and every relative link in README.md and docs/*.md leads to a file of
//! the repository.
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

/// The targets of a Markdown text's inline links `[text](target)` and reference
/// definitions `[label]: target`, outside code blocks and code spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Reference definitions.
        if let Some(rest) = trimmed.strip_prefix('[') {
            if let Some((_, after)) = rest.split_once("]:") {
                if let Some(t) = after.split_whitespace().next() {
                    targets.push(t.trim_matches(['<', '>']).to_string());
                }
                continue;
            }
        }
        // Inline links, skipping code spans.
        let mut in_code = false;
        let bytes: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                '`' => in_code = !in_code,
                ']' if !in_code && bytes.get(i + 1) == Some(&'(') => {
                    let start = i + 2;
                    let mut depth = 1;
                    let mut j = start;
                    while j < bytes.len() {
                        match bytes[j] {
                            '(' => depth += 1,
                            ')' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    let inside: String = bytes[start..j.min(bytes.len())].iter().collect();
                    let target = match inside.strip_prefix('<') {
                        Some(rest) => rest.split('>').next(),
                        None => inside.split_whitespace().next(),
                    };
                    if let Some(t) = target {
                        targets.push(t.to_string());
                    }
                    i = j;
                }
                _ => {}
            }
            i += 1;
        }
    }
    targets
}

/// The Markdown files whose links are checked: README.md and docs/*.md.
fn markdown_files() -> Vec<PathBuf> {
    let root = repo();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "md"))
                .collect()
        })
        .unwrap_or_default();
    docs.sort();
    files.extend(docs);
    files
}

#[test]
fn relative_links_lead_to_files_of_the_repository() {
    let repo = repo();
    let root = repo.canonicalize().unwrap();
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let dir = file.parent().unwrap();
        for target in link_targets(&text) {
            let is_external = target.contains("://") || target.starts_with("mailto:");
            if is_external || target.starts_with('#') {
                continue;
            }
            let path = target.split('#').next().unwrap();
            let resolved = dir.join(path);
            checked += 1;
            let inside = resolved
                .canonicalize()
                .map(|p| p.starts_with(&root))
                .unwrap_or(false);
            if !inside {
                broken.push(format!(
                    "{}: {target}",
                    file.strip_prefix(&repo).unwrap_or(&file).display()
                ));
            }
        }
    }
    assert!(checked > 0, "no relative link found: is the parser broken?");
    assert!(
        broken.is_empty(),
        "relative links to no file of the repository:\n{}",
        broken.join("\n")
    );
}

#[test]
fn link_parser_finds_inline_and_reference_links_outside_code() {
    let text = "see [a](docs/a.md#x) and `[no](x.md)` and [b](<c d.md>)\n\
                ```\n[no](y.md)\n```\n[ref]: docs/r.md \"title\"\n";
    assert_eq!(link_targets(text), ["docs/a.md#x", "c d.md", "docs/r.md"]);
}
