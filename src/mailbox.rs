//! Messages out of paths: single files, directory trees, mbox files
//! (plain, gzip or zstd) and maildirs. `learn`, `scan` and `rescore` all
//! read through [`Messages`], so they agree on what a message is.
//!
//! An mbox is read as a stream, line by line, so its size never matters. A
//! file that starts with an mbox `From ` line is read as an mbox: a
//! single-message file in that form (as the SpamAssassin corpus ships) is
//! then just an mbox of one.
//!
//! Compression is recognised by magic bytes, not by file name (archives are
//! often renamed, and `.gz` says nothing reliable about the content): gzip
//! (`1f 8b`, concatenated members included) and zstd (`28 b5 2f fd`,
//! concatenated frames included). The decompressed stream is then read like
//! a plain file: an mbox if it starts with `From `, otherwise one message.
//! Mbox offsets of compressed files are offsets in the decompressed stream,
//! so a compressed mbox reports the same offsets as the plain one.

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
            if let Some(compression) = Compression::detect(&head[..head_len]) {
                match self.open_compressed(path, &head[..head_len], file, compression) {
                    Ok(Some(message)) => return Some(Ok(message)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
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
                    Ok(f) => {
                        let reader = BufReader::with_capacity(STREAM_BUFFER_BYTES, f);
                        self.current_mbox = Some(MboxReader::new(path, Box::new(reader)));
                    }
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

impl Messages {
    /// Starts reading a compressed file whose first bytes (`head`, already
    /// consumed from `file`) carry a compression magic. An mbox inside
    /// becomes the current stream (`Ok(None)`); anything else is one message.
    fn open_compressed(
        &mut self,
        path: PathBuf,
        head: &[u8],
        file: File,
        compression: Compression,
    ) -> Result<Option<RawMessage>, SourceError> {
        let error = |reason: String| SourceError {
            path: path.clone(),
            reason: format!("{}: {reason}", compression.name()),
        };
        let compressed = BufReader::new(std::io::Cursor::new(head.to_vec()).chain(file));
        let mut decoder: Box<dyn Read + Send> = match compression {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(compressed)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(compressed)
                    .map_err(|e| error(e.to_string()))?,
            ),
        };
        let mut start = [0u8; 5];
        let start_len = read_fully(&mut decoder, &mut start).map_err(|e| error(e.to_string()))?;
        let decompressed = std::io::Cursor::new(start[..start_len].to_vec()).chain(decoder);
        if &start[..start_len] == b"From " {
            let reader = BufReader::with_capacity(STREAM_BUFFER_BYTES, decompressed);
            self.current_mbox = Some(MboxReader::new(path, Box::new(reader)));
            return Ok(None);
        }
        let mut bytes = Vec::new();
        decompressed
            .take(MAX_READ_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| error(e.to_string()))?;
        if bytes.len() as u64 > MAX_READ_BYTES {
            return Err(error(format!(
                "decompressed message exceeds the {MAX_READ_BYTES}-byte limit"
            )));
        }
        Ok(Some(RawMessage {
            origin: Origin {
                path,
                mbox_offset: None,
            },
            bytes,
        }))
    }
}

/// A compression recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    fn detect(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Read-ahead for streamed mboxes: large enough that a read is rarely
/// shorter than a message, small enough not to matter per open stream.
const STREAM_BUFFER_BYTES: usize = 256 * 1024;

/// An mbox up to this size is read whole and split in memory, which is much
/// faster than the line-by-line stream used for larger ones; it covers every
/// single-message file in mbox form.
const SMALL_MBOX_BYTES: u64 = 8 * 1024 * 1024;

/// The messages of one uploaded file: an mbox (it starts with a `From `
/// line) split as `chaff learn` splits one, or else one message.
pub fn split_upload(bytes: &[u8]) -> Vec<Vec<u8>> {
    if bytes.starts_with(b"From ") {
        split_mbox(Path::new("upload"), bytes)
            .into_iter()
            .map(|message| message.bytes)
            .filter(|bytes| !bytes.is_empty())
            .collect()
    } else {
        vec![bytes.to_vec()]
    }
}

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

/// Fills `buf` as far as the stream allows; unlike [`read_up_to`] a read
/// error is returned, because for a decompressor it means corrupt data.
fn read_fully(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
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
///
/// The source is any buffered stream (a file, or a decompressor over one),
/// so only the current message is ever in memory. A read error ends the
/// stream: after a decompression error there is no way to resynchronise.
struct MboxReader {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    offset: u64,
    /// The `From ` line that starts the next message, already read.
    next_start: Option<(u64, Vec<u8>)>,
    /// Reused for every line, so streaming allocates per message, not per line.
    line: Vec<u8>,
    done: bool,
}

impl MboxReader {
    fn new(path: PathBuf, reader: Box<dyn BufRead + Send>) -> MboxReader {
        MboxReader {
            path,
            reader,
            offset: 0,
            next_start: None,
            line: Vec::new(),
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
                    Err(e) => return Some(Err(self.read_error(e))),
                }
            }
        };
        let mut bytes = first_line;
        let mut previous_blank = false;
        let mut too_large = false;
        loop {
            let mut line = std::mem::take(&mut self.line);
            line.clear();
            let n = match self.reader.read_until(b'\n', &mut line) {
                Ok(n) => n,
                Err(e) => return Some(Err(self.read_error(e))),
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
            } else {
                bytes.extend_from_slice(unquote_line(&line));
            }
            self.line = line;
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

    /// Ends the stream and names where it broke.
    fn read_error(&mut self, error: std::io::Error) -> SourceError {
        self.done = true;
        self.next_start = None;
        self.error(format!("read error after byte {}: {error}", self.offset))
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
        let file = BufReader::new(File::open(&path).unwrap());
        let mut reader = MboxReader::new(path.clone(), Box::new(file));
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

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn origins_and_bytes(path: &Path) -> Vec<(Option<u64>, Vec<u8>)> {
        Messages::new(&[path.to_owned()])
            .map(|m| {
                let m = m.unwrap();
                (m.origin.mbox_offset, m.bytes)
            })
            .collect()
    }

    #[test]
    fn gzip_and_zstd_mboxes_read_like_the_plain_one() {
        let text = "From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\n>From quoted\n\nFrom b@x Mon Jan  1 00:00:00 2024\nSubject: two\n\nbody2\n";
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("box");
        let gz = dir.path().join("box.gz");
        // Named without a suffix: the magic bytes decide, not the name.
        let zst = dir.path().join("box-zstd");
        std::fs::write(&plain, text).unwrap();
        std::fs::write(&gz, gzip(text.as_bytes())).unwrap();
        std::fs::write(&zst, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
        let expected = origins_and_bytes(&plain);
        assert_eq!(expected.len(), 2);
        assert_eq!(origins_and_bytes(&gz), expected);
        assert_eq!(origins_and_bytes(&zst), expected);
    }

    #[test]
    fn concatenated_gzip_members_are_one_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("box.gz");
        let mut bytes = gzip(b"From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\n");
        bytes.extend(gzip(b"From b@x Mon Jan  1 00:00:00 2024\nSubject: two\n\n"));
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(origins_and_bytes(&path).len(), 2);
    }

    #[test]
    fn a_compressed_single_message_is_one_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.eml.gz");
        let text = b"Subject: x\n\nbody\n\nFrom here on it is still the body\n";
        std::fs::write(&path, gzip(text)).unwrap();
        assert_eq!(origins_and_bytes(&path), vec![(None, text.to_vec())]);
    }

    #[test]
    fn corrupt_compressed_data_is_one_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("box.gz");
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&format!(
                "From a@x Mon Jan  1 00:00:00 2024\nSubject: {i}\n\nbody {i}\n\n"
            ));
        }
        let mut bytes = gzip(text.as_bytes());
        let middle = bytes.len() / 2;
        bytes.truncate(middle);
        std::fs::write(&path, bytes).unwrap();
        let items: Vec<_> = Messages::new(std::slice::from_ref(&path)).collect();
        let errors: Vec<String> = items
            .iter()
            .filter_map(|m| m.as_ref().err().map(ToString::to_string))
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("box.gz"), "{}", errors[0]);
        assert!(items.len() > 1, "the messages before the damage are read");
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
