//! Messages out of paths: single files, directory trees, mbox files and
//! maildirs. `learn` uses it today; `rescore` will.
//!
//! An mbox is read as a stream, line by line, so its size never matters. A
//! file that starts with an mbox `From ` line is read as an mbox: a
//! single-message file in that form (as the SpamAssassin corpus ships) is
//! then just an mbox of one.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Where one message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub path: PathBuf,
    /// Byte offset of the `From ` line, for messages inside an mbox.
    pub mbox_offset: Option<u64>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mbox_offset {
            Some(offset) if offset > 0 => write!(f, "{}@{offset}", self.path.display()),
            _ => write!(f, "{}", self.path.display()),
        }
    }
}

/// One message's bytes and origin.
#[derive(Debug)]
pub struct RawMessage {
    pub origin: Origin,
    pub bytes: Vec<u8>,
}

/// A path that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct SourceError {
    pub path: PathBuf,
    pub reason: String,
}

/// Messages larger than this are refused while reading, before they can
/// exhaust memory; it matches the default `max_message_bytes`.
pub const MAX_READ_BYTES: u64 = 50 * 1024 * 1024;

/// Iterates over every message under `paths`, in a stable order: paths as
/// given, directory entries sorted by name.
pub struct Messages {
    pending: Vec<PathBuf>,
    current_mbox: Option<MboxReader>,
    /// Messages of a small mbox, split in memory, in reverse order.
    split: Vec<RawMessage>,
}

impl Messages {
    pub fn new(paths: &[PathBuf]) -> Messages {
        let mut pending: Vec<PathBuf> = paths.to_vec();
        pending.reverse();
        Messages {
            pending,
            current_mbox: None,
            split: Vec::new(),
        }
    }
}

impl Iterator for Messages {
    type Item = Result<RawMessage, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(message) = self.split.pop() {
                return Some(Ok(message));
            }
            if let Some(mbox) = &mut self.current_mbox {
                match mbox.next_message() {
                    Some(item) => return Some(item),
                    None => self.current_mbox = None,
                }
            }
            let path = self.pending.pop()?;
            let error = |reason: String| SourceError {
                path: path.clone(),
                reason,
            };
            let metadata = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => return Some(Err(error(e.to_string()))),
            };
            if metadata.is_dir() {
                match directory_entries(&path) {
                    Ok(entries) => self.pending.extend(entries.into_iter().rev()),
                    Err(e) => return Some(Err(error(e.to_string()))),
                }
                continue;
            }
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => return Some(Err(error(e.to_string()))),
            };
            let mut head = [0u8; 5];
            let head_len = read_up_to(&mut file, &mut head);
            let is_mbox = &head[..head_len] == b"From ";
            if is_mbox && metadata.len() <= SMALL_MBOX_BYTES {
                let mut bytes = head[..head_len].to_vec();
                if let Err(e) = file.read_to_end(&mut bytes) {
                    return Some(Err(error(e.to_string())));
                }
                self.split = split_mbox(&path, &bytes);
                self.split.reverse();
                continue;
            }
            if is_mbox {
                match File::open(&path) {
                    Ok(f) => self.current_mbox = Some(MboxReader::new(path, f)),
                    Err(e) => return Some(Err(error(e.to_string()))),
                }
                continue;
            }
            if metadata.len() > MAX_READ_BYTES {
                return Some(Err(error(format!(
                    "message of {} bytes exceeds the {MAX_READ_BYTES}-byte limit",
                    metadata.len()
                ))));
            }
            let mut bytes = head[..head_len].to_vec();
            if let Err(e) = file.read_to_end(&mut bytes) {
                return Some(Err(error(e.to_string())));
            }
            return Some(Ok(RawMessage {
                origin: Origin {
                    path,
                    mbox_offset: None,
                },
                bytes,
            }));
        }
    }
}

/// An mbox up to this size is read whole and split in memory, which is much
/// faster than the line-by-line stream used for larger ones; it covers every
/// single-message file in mbox form.
const SMALL_MBOX_BYTES: u64 = 8 * 1024 * 1024;

/// Splits an mbox held in memory, with the same rules as [`MboxReader`].
fn split_mbox(path: &Path, bytes: &[u8]) -> Vec<RawMessage> {
    let mut messages = Vec::new();
    let mut start = 0usize;
    let mut search_from = 0usize;
    let finish = |messages: &mut Vec<RawMessage>, start: usize, end: usize| {
        messages.push(RawMessage {
            origin: Origin {
                path: path.to_owned(),
                mbox_offset: Some(start as u64),
            },
            bytes: unquote_from_lines(&bytes[start..end]),
        });
    };
    while let Some(found) = memchr::memmem::find(&bytes[search_from..], b"\nFrom ") {
        let line_start = search_from + found + 1;
        search_from = line_start;
        let before = &bytes[..line_start - 1];
        if before.ends_with(b"\n") || before.ends_with(b"\n\r") {
            finish(&mut messages, start, line_start);
            start = line_start;
        }
    }
    if start < bytes.len() {
        finish(&mut messages, start, bytes.len());
    }
    messages
}

/// Undoes one level of `>From ` quoting on every line.
fn unquote_from_lines(message: &[u8]) -> Vec<u8> {
    if memchr::memmem::find(message, b">From ").is_none() {
        return message.to_vec();
    }
    let mut out = Vec::with_capacity(message.len());
    for line in message.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(unquote_line(line));
    }
    out
}

fn unquote_line(line: &[u8]) -> &[u8] {
    match line.iter().position(|&b| b != b'>') {
        Some(level) if level > 0 && line[level..].starts_with(b"From ") => &line[1..],
        _ => line,
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

/// The entries of a directory to visit, sorted. A maildir contributes its
/// `cur/` and `new/` only; hidden files are skipped.
fn directory_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    if dir.join("cur").is_dir() && dir.join("new").is_dir() {
        return Ok(vec![dir.join("cur"), dir.join("new")]);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    entries.sort();
    Ok(entries)
}

/// Splits an mbox into messages: a `From ` line at the start of the file or
/// after an empty line starts a message; `>From ` quoting (mboxrd and
/// mboxo) is undone by one level.
struct MboxReader {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
    /// The `From ` line that starts the next message, already read.
    next_start: Option<(u64, Vec<u8>)>,
    done: bool,
}

impl MboxReader {
    fn new(path: PathBuf, file: File) -> MboxReader {
        MboxReader {
            path,
            reader: BufReader::with_capacity(256 * 1024, file),
            offset: 0,
            next_start: None,
            done: false,
        }
    }

    fn next_message(&mut self) -> Option<Result<RawMessage, SourceError>> {
        if self.done {
            return None;
        }
        let (start, first_line) = match self.next_start.take() {
            Some(start) => start,
            None => {
                let mut line = Vec::new();
                match self.reader.read_until(b'\n', &mut line) {
                    Ok(0) => {
                        self.done = true;
                        return None;
                    }
                    Ok(n) => {
                        let start = self.offset;
                        self.offset += n as u64;
                        (start, line)
                    }
                    Err(e) => return Some(Err(self.error(e.to_string()))),
                }
            }
        };
        let mut bytes = first_line;
        let mut previous_blank = false;
        let mut too_large = false;
        loop {
            let mut line = Vec::new();
            let n = match self.reader.read_until(b'\n', &mut line) {
                Ok(n) => n,
                Err(e) => return Some(Err(self.error(e.to_string()))),
            };
            if n == 0 {
                self.done = true;
                break;
            }
            let line_start = self.offset;
            self.offset += n as u64;
            if previous_blank && line.starts_with(b"From ") {
                self.next_start = Some((line_start, line));
                break;
            }
            previous_blank = line == b"\n" || line == b"\r\n";
            if bytes.len() as u64 > MAX_READ_BYTES {
                too_large = true;
                continue;
            }
            bytes.extend_from_slice(unquote_line(&line));
        }
        if too_large {
            return Some(Err(self.error(format!(
                "message at offset {start} exceeds the {MAX_READ_BYTES}-byte limit"
            ))));
        }
        Some(Ok(RawMessage {
            origin: Origin {
                path: self.path.clone(),
                mbox_offset: Some(start),
            },
            bytes,
        }))
    }

    fn error(&self, reason: String) -> SourceError {
        SourceError {
            path: self.path.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_splits_on_from_lines_after_blank_and_unquotes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("box");
        std::fs::write(
            &path,
            "From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\n>From quoted\nFrom not a separator\n\nFrom b@x Mon Jan  1 00:00:00 2024\nSubject: two\n\nbody2\n",
        )
        .unwrap();
        let messages: Vec<RawMessage> = Messages::new(&[path]).map(Result::unwrap).collect();
        assert_eq!(messages.len(), 2);
        let first = String::from_utf8_lossy(&messages[0].bytes);
        assert!(first.contains("\nFrom quoted\n"), "{first}");
        assert!(first.contains("From not a separator"));
        assert_eq!(messages[0].origin.mbox_offset, Some(0));
        assert!(messages[1].origin.mbox_offset.unwrap() > 0);
        assert!(String::from_utf8_lossy(&messages[1].bytes).contains("Subject: two"));
    }

    #[test]
    fn small_and_streamed_mbox_split_alike() {
        let text = "From a@x Mon Jan  1 00:00:00 2024\r\nSubject: one\r\n\r\nbody\r\n>>From q\r\n\r\nFrom b@x Mon Jan  1 00:00:00 2024\nSubject: two\n\nbody2\n";
        let in_memory = split_mbox(Path::new("m"), text.as_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        std::fs::write(&path, text).unwrap();
        let mut reader = MboxReader::new(path.clone(), File::open(&path).unwrap());
        let mut streamed = Vec::new();
        while let Some(m) = reader.next_message() {
            streamed.push(m.unwrap());
        }
        assert_eq!(in_memory.len(), 2);
        assert_eq!(streamed.len(), 2);
        for (a, b) in in_memory.iter().zip(&streamed) {
            assert_eq!(a.bytes, b.bytes);
            assert_eq!(a.origin.mbox_offset, b.origin.mbox_offset);
        }
        assert!(String::from_utf8_lossy(&in_memory[0].bytes).contains("\n>From q"));
    }

    #[test]
    fn directories_are_walked_in_sorted_order_and_maildirs_by_cur_and_new() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.eml"), "Subject: b\n\nb\n").unwrap();
        std::fs::write(dir.path().join("a.eml"), "Subject: a\n\na\n").unwrap();
        std::fs::write(dir.path().join(".hidden"), "x").unwrap();
        let maildir = dir.path().join("c-maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        std::fs::write(maildir.join("new/1"), "Subject: n\n\nn\n").unwrap();
        std::fs::write(maildir.join("tmp/2"), "Subject: t\n\nt\n").unwrap();
        let names: Vec<String> = Messages::new(&[dir.path().to_owned()])
            .map(|m| {
                m.unwrap()
                    .origin
                    .path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, vec!["a.eml", "b.eml", "1"]);
    }

    #[test]
    fn missing_path_is_an_error_naming_it() {
        let err = Messages::new(&[PathBuf::from("/nonexistent/x.eml")])
            .next()
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.eml"));
    }
}
