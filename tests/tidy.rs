//! Architecture invariants from ARCHITECTURE.md, checked on the source text.
//!
//! These are the rules that keep the pipeline readable top to bottom; a
//! change that breaks one should change ARCHITECTURE.md in the same commit,
//! not this test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Source lines that are code: not comments, not inside `#[cfg(test)]` modules.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        out.push((index + 1, line.to_owned()));
    }
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(src()).unwrap().display().to_string()
}

#[test]
fn checks_never_import_each_other() {
    let checks_dir = src().join("checks");
    let names: Vec<String> = rust_files(&checks_dir)
        .iter()
        .filter(|p| p.file_name().unwrap() != "mod.rs")
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut violations = Vec::new();
    for path in rust_files(&checks_dir) {
        if path.file_name().unwrap() == "mod.rs" {
            continue;
        }
        for (line_no, line) in code_lines(&path) {
            for name in &names {
                let own = path.file_stem().unwrap().to_string_lossy() == name.as_str();
                let imports = line.contains(&format!("checks::{name}"))
                    || line.contains(&format!("super::{name}"));
                if !own && imports {
                    violations.push(format!("{}:{line_no}: {}", relative(&path), line.trim()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "a check reaches into another check:\n{}",
        violations.join("\n")
    );
}

#[test]
fn verdict_sees_symbols_not_checks() {
    let path = src().join("verdict.rs");
    let violations: Vec<String> = code_lines(&path)
        .into_iter()
        .filter(|(_, line)| line.contains("checks::") || line.contains("crate::bayes"))
        .map(|(n, line)| format!("verdict.rs:{n}: {}", line.trim()))
        .collect();
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn unsafe_lives_only_in_the_store() {
    let mut violations = Vec::new();
    for path in rust_files(&src()) {
        if relative(&path).starts_with("store") {
            continue;
        }
        for (line_no, line) in code_lines(&path) {
            if line.contains("unsafe {")
                || line.contains("unsafe fn")
                || line.contains("allow(unsafe_code)")
            {
                violations.push(format!("{}:{line_no}: {}", relative(&path), line.trim()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "unsafe outside src/store:\n{}",
        violations.join("\n")
    );
}

#[test]
fn adapters_do_not_parse_tokenize_or_classify() {
    // The CLI and the daemon are thin adapters over `Engine`.
    let forbidden = [
        "message::parse(",
        "Features::extract",
        "bayes::classify(",
        "Tokenizer::new(",
        "ModelFeatures::",
    ];
    let mut violations = Vec::new();
    for dir in ["cli", "server"] {
        for path in rust_files(&src().join(dir)) {
            for (line_no, line) in code_lines(&path) {
                if forbidden.iter().any(|f| line.contains(f)) {
                    violations.push(format!("{}:{line_no}: {}", relative(&path), line.trim()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "an adapter does the engine's work:\n{}",
        violations.join("\n")
    );
}

/// Library code lines (not main.rs, cli/ or server/, the binary's
/// adapters) for which `matches` holds, as `file:line: code`.
fn library_lines_where(matches: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for path in rust_files(&src()) {
        let rel = relative(&path);
        if rel == "main.rs" || rel.starts_with("cli") || rel.starts_with("server") {
            continue;
        }
        for (line_no, line) in code_lines(&path) {
            if matches(&line) {
                found.push(format!("{rel}:{line_no}: {}", line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_library_never_prints() {
    // It logs through `tracing` or returns what happened to the caller;
    // only the binary (main.rs, cli/, server/) writes to stdout or stderr.
    let violations = library_lines_where(|line| {
        ["println!", "print!(", "eprint!(", "dbg!("]
            .iter()
            .any(|p| line.contains(p))
    });
    assert!(
        violations.is_empty(),
        "the library prints:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_library_reports_typed_errors_not_anyhow() {
    let violations = library_lines_where(|line| line.contains("anyhow"));
    assert!(
        violations.is_empty(),
        "anyhow in the library:\n{}",
        violations.join("\n")
    );
}
