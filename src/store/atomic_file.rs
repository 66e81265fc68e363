//! Replacing a file so that a crash leaves either the old or the new one.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Writes `parts` to a temporary file beside `path`, fsyncs it, renames it
/// over `path` and fsyncs the directory, so the rename itself is durable.
pub fn replace(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Fsyncs the directory holding `path`.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}
