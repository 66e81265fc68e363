//! Corpus loading shared by the benches.

use std::path::{Path, PathBuf};

/// The SpamAssassin corpus as `tools/eval` extracts it (absent until then).
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/.work/corpus")
}

/// Sorted message files of `dir`: regular files, without hidden files, the
/// corpus' `cmds` index files or the fixtures' `.toml` descriptions.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            !name.starts_with('.') && name != "cmds" && !name.ends_with(".toml")
        })
        .collect();
    files.sort();
    files
}

/// The hand-written fixtures, used when the corpus is not extracted.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}
