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

/// A file's module path under `src/`: `rules/spamassassin/mod.rs` is
/// `[rules, spamassassin]`, `rules/spec.rs` is `[rules, spec]`, and the
/// crate roots (`lib.rs`, `main.rs`) are `[]`. The library and the binary
/// share the namespace: their top-level names never collide.
fn module_of(path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts
}

/// Library and binary source files, test-only files (`tests.rs`) aside.
fn non_test_files() -> Vec<PathBuf> {
    rust_files(&src())
        .into_iter()
        .filter(|p| p.file_name().unwrap() != "tests.rs")
        .collect()
}

/// One reference from a module to another: (from, to, `file:line`).
type Reference = (Vec<String>, Vec<String>, String);

/// Every module path each file names as written — `crate::a::b`,
/// `chaff::a::b` (the binary naming the library), `super::b` — with a
/// `use` group's members (`crate::a::{b, c::d}`) each taken on its own,
/// resolved to the longest known module.
fn module_references() -> Vec<Reference> {
    let files = non_test_files();
    let modules: std::collections::HashSet<Vec<String>> =
        files.iter().map(|p| module_of(p)).collect();
    let path_pattern =
        regex::Regex::new(r"\b(crate|chaff|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)(::\{([^}]*)\})?")
            .unwrap();
    let mut references = Vec::new();
    for path in &files {
        let module = module_of(path);
        for (line_no, line) in code_lines(path) {
            for found in path_pattern.captures_iter(&line) {
                let named: Vec<String> = found[2]
                    .trim_start_matches("::")
                    .split("::")
                    .map(str::to_owned)
                    .collect();
                let base: Vec<String> = match &found[1] {
                    "super" => module[..module.len().saturating_sub(1)].to_vec(),
                    _ => Vec::new(),
                };
                let mut full = base;
                full.extend(named);
                let mut targets = vec![full.clone()];
                if let Some(group) = found.get(4) {
                    for member in group.as_str().split(',') {
                        let member = member.trim();
                        if member.is_empty() || member == "self" {
                            continue;
                        }
                        let mut target = full.clone();
                        target.extend(member.split("::").map(|s| s.trim().to_owned()));
                        targets.push(target);
                    }
                }
                for target in targets {
                    let Some(resolved) = (1..=target.len())
                        .rev()
                        .map(|n| target[..n].to_vec())
                        .find(|prefix| modules.contains(prefix))
                    else {
                        continue;
                    };
                    if resolved != module {
                        let at = format!("{}:{line_no}", relative(path));
                        references.push((module.clone(), resolved, at));
                    }
                }
            }
        }
    }
    references
}

#[test]
fn no_import_circle_between_sibling_modules() {
    // Siblings are the children of one module (files and folders beside
    // each other); a reference from anywhere inside one to anywhere inside
    // another is an edge between the two. A parent and its own children
    // are not siblings: `mod.rs` declares and re-exports them.
    use std::collections::{BTreeMap, BTreeSet};
    let mut graph: BTreeMap<Vec<String>, BTreeMap<String, BTreeMap<String, String>>> =
        BTreeMap::new();
    for (from, to, at) in module_references() {
        let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        if common >= from.len() || common >= to.len() {
            continue;
        }
        graph
            .entry(from[..common].to_vec())
            .or_default()
            .entry(from[common].clone())
            .or_default()
            .entry(to[common].clone())
            .or_insert(at);
    }
    let mut circles = Vec::new();
    for (parent, edges) in &graph {
        // A circle exists where a sibling reaches itself again.
        for start in edges.keys() {
            let mut seen = BTreeSet::new();
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            while let Some((node, trail)) = stack.pop() {
                for next in edges.get(&node).into_iter().flat_map(|e| e.keys()) {
                    if next == start {
                        let steps: Vec<String> = trail
                            .iter()
                            .zip(trail.iter().skip(1).chain([start]))
                            .map(|(a, b)| format!("{a} → {b} ({})", edges[a][b]))
                            .collect();
                        let parent = if parent.is_empty() {
                            "crate".to_owned()
                        } else {
                            parent.join("::")
                        };
                        circles.push(format!("in {parent}: {}", steps.join(", ")));
                    } else if seen.insert(next.clone()) {
                        let mut longer = trail.clone();
                        longer.push(next.clone());
                        stack.push((next.clone(), longer));
                    }
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn dependencies_point_down_the_pipeline() {
    // The top-level modules in ARCHITECTURE.md's order: a module may use
    // those of its own rank or below, never above. Equal ranks are parts
    // beside each other (their circles are caught above).
    let rank = |module: &str| -> Option<u32> {
        Some(match module {
            "symbol" | "class" | "setting" | "mailbox" => 0,
            "message" => 1,
            "fuzzy" | "extract" => 2,
            "classifier" | "bayes" | "store" | "lists" | "auth" | "rules" | "verdict"
            | "context" => 3,
            "checks" | "config" | "policy" => 4,
            "engine" => 5,
            "report" => 6,
            "cli" | "server" => 7,
            _ => return None,
        })
    };
    let mut violations = Vec::new();
    for (from, to, at) in module_references() {
        let (Some(from), Some(to)) = (from.first(), to.first()) else {
            continue;
        };
        match (rank(from), rank(to)) {
            (Some(a), Some(b)) if a >= b => {}
            (Some(_), Some(_)) => violations.push(format!("{at}: {from} uses {to}, a later stage")),
            _ => violations.push(format!(
                "{at}: {from} → {to}: give each top-level module its rank here and in ARCHITECTURE.md"
            )),
        }
    }
    violations.sort();
    violations.dedup();
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// Lines of `text` outside its `#[cfg(test)]` items (a test module's
/// braces counted from the line after the attribute).
fn lines_outside_test_modules(text: &str) -> usize {
    let mut count = 0;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if !line.trim_start().starts_with("#[cfg(test)]") {
            count += 1;
            continue;
        }
        let mut depth = 0i64;
        let mut opened = false;
        for item in lines.by_ref() {
            depth += item.matches('{').count() as i64 - item.matches('}').count() as i64;
            opened |= item.contains('{');
            if (opened && depth <= 0) || (!opened && item.trim_end().ends_with(';')) {
                break;
            }
        }
    }
    count
}

#[test]
fn test_modules_do_not_count_but_code_after_them_does() {
    let text = "fn a() {}\n#[cfg(test)]\nmod tests {\n    fn t() {\n    }\n}\nfn b() {}\n\
                #[cfg(test)]\nmod more;\nfn c() {}\n";
    assert_eq!(lines_outside_test_modules(text), 3);
}

#[test]
fn no_source_file_is_over_600_lines() {
    // Tests aside: a file's `#[cfg(test)]` modules, wherever they stand,
    // and test-only files (`tests.rs`), do not count; code after a test
    // module does.
    let mut long = Vec::new();
    for path in non_test_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = lines_outside_test_modules(&text);
        if lines > 600 {
            long.push(format!("{}: {lines} lines", relative(&path)));
        }
    }
    assert!(
        long.is_empty(),
        "split these by concern:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_library_returns_typed_errors_not_strings() {
    // An error the caller can match on, named by what failed
    // (`PatternError`, `InvalidSetting`, `ConfigError`, …), not a `String`.
    let string_error = regex::Regex::new(r"Result<.*, String>").unwrap();
    let violations = library_lines_where(|line| string_error.is_match(line));
    assert!(
        violations.is_empty(),
        "Result<_, String> in the library:\n{}",
        violations.join("\n")
    );
}
