//! Images: the QR codes in the pictures a message carries.
//!
//! Phishing moved links into QR codes because filters read text and a phone
//! camera does not ask a filter. The pictures are read here, while parsing,
//! so the link inside joins the message's links and every URL check sees it
//! like any other. PNG, JPEG and GIF (attached, inline, or `data:` URIs in
//! HTML) are decoded with `image` and searched with `rqrr`.
//!
//! Bounded, because any bytes may claim to be a picture: a message reads at
//! most `max_images` pictures, each of at most `max_image_bytes` and
//! `max_image_pixels` (checked from the header before any pixel is
//! decoded), and stops reading once `image_budget_ms` has been spent. A
//! picture that fails to decode is counted, never a panic (the decoders run
//! under `catch_unwind` besides).

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::{ImageFormat, ImageReader};

use super::Limits;

/// What reading a message's pictures found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// Pictures decoded and searched.
    pub read: usize,
    /// Pictures not read: too large, over the per-message count or time
    /// budget.
    pub skipped: usize,
    /// Pictures whose bytes did not decode.
    pub unreadable: usize,
    /// The text of every QR code found, in order.
    pub qr_codes: Vec<String>,
}

/// QR codes kept per picture: a sheet of a hundred is not a message.
const MAX_CODES_PER_IMAGE: usize = 4;
/// Pictures narrower or lower than this (pixels) hold no QR code a phone
/// would read: the smallest code is 21 modules plus its quiet zone.
const MIN_SIDE: u32 = 48;
/// Characters kept of one QR code's text.
const MAX_CODE_CHARS: usize = 2048;

/// Reads the pictures of one message, in the order they are offered,
/// within the message's limits.
pub struct ImageReaderBudget {
    started: Option<Instant>,
    budget: Duration,
    max_images: usize,
    max_bytes: usize,
    max_pixels: u64,
}

impl ImageReaderBudget {
    pub fn new(limits: &Limits) -> ImageReaderBudget {
        ImageReaderBudget {
            started: None,
            budget: Duration::from_millis(limits.image_budget_ms),
            max_images: limits.max_images,
            max_bytes: limits.max_image_bytes,
            max_pixels: limits.max_image_pixels,
        }
    }

    /// Reads `bytes` if it is a PNG, JPEG or GIF picture and the budget
    /// allows; anything else is not a picture and costs nothing.
    pub fn read(&mut self, bytes: &[u8], facts: &mut ImageFacts) {
        let Some(format) = picture_format(bytes) else {
            return;
        };
        let started = *self.started.get_or_insert_with(Instant::now);
        if facts.read >= self.max_images
            || bytes.len() > self.max_bytes
            || started.elapsed() > self.budget
        {
            facts.skipped += 1;
            return;
        }
        let max_pixels = self.max_pixels;
        let outcome = std::panic::catch_unwind(|| decode_codes(bytes, format, max_pixels));
        match outcome {
            Ok(Ok(Some(codes))) => {
                facts.read += 1;
                facts.qr_codes.extend(codes);
            }
            Ok(Ok(None)) => facts.skipped += 1,
            Ok(Err(())) | Err(_) => facts.unreadable += 1,
        }
    }
}

/// The format by the file's magic bytes (a declared type is a claim).
fn picture_format(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(ImageFormat::Gif)
    } else {
        None
    }
}

/// The QR codes of one picture; `Ok(None)` when it has more pixels than
/// allowed (read from its header, before decoding), `Err` when it does not
/// decode.
fn decode_codes(
    bytes: &[u8],
    format: ImageFormat,
    max_pixels: u64,
) -> Result<Option<Vec<String>>, ()> {
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|_| ())?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Ok(None);
    }
    if width < MIN_SIDE || height < MIN_SIDE {
        // Spacers, tracking pixels and icons: no camera reads a code that
        // small, and most pictures in mail are these.
        return Ok(Some(Vec::new()));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // RGBA at 8 bits plus the decoder's own buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(8));
    reader.limits(limits);
    let picture = reader.decode().map_err(|_| ())?;
    let mut prepared = rqrr::PreparedImage::prepare(picture.to_luma8());
    let codes = prepared
        .detect_grids()
        .into_iter()
        .take(MAX_CODES_PER_IMAGE)
        .filter_map(|grid| grid.decode().ok())
        .map(|(_, text)| text.chars().take(MAX_CODE_CHARS).collect())
        .collect();
    Ok(Some(codes))
}

/// The bytes of a `data:image/...;base64,` URI, if `link` is one.
pub fn data_uri_picture(link: &str) -> Option<Vec<u8>> {
    let head = link.get(..11)?;
    if !head.eq_ignore_ascii_case("data:image/") {
        return None;
    }
    let (meta, payload) = link.split_once(',')?;
    if !meta.to_ascii_lowercase().ends_with(";base64") {
        return None;
    }
    decode_base64(payload)
}

/// Base64 as browsers read a data URI: white space and `%0A`-style noise
/// skipped, padding optional.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut buffer = 0u32;
    let mut bits = 0u32;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => continue,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pictures_by_their_magic_bytes_are_read() {
        let mut budget = ImageReaderBudget::new(&Limits::default());
        let mut facts = ImageFacts::default();
        budget.read(b"%PDF-1.4 not a picture", &mut facts);
        assert_eq!(facts, ImageFacts::default());
        budget.read(b"\x89PNG\r\n\x1a\nbroken", &mut facts);
        assert_eq!(facts.unreadable, 1);
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let picture = image::GrayImage::from_pixel(width, height, image::Luma([255]));
        let mut bytes = Vec::new();
        match picture.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png) {
            Ok(()) => bytes,
            Err(e) => panic!("encoding a test PNG: {e}"),
        }
    }

    #[test]
    fn pictures_past_the_pixel_or_count_limit_are_skipped_not_decoded() {
        let limits = Limits {
            max_image_pixels: 10_000,
            max_images: 2,
            ..Limits::default()
        };
        let mut budget = ImageReaderBudget::new(&limits);
        let mut facts = ImageFacts::default();
        // 4,000 × 4,000 claims 16 MP in its header: never decoded.
        budget.read(&png(4000, 4000), &mut facts);
        assert_eq!((facts.read, facts.skipped), (0, 1));
        for _ in 0..3 {
            budget.read(&png(50, 50), &mut facts);
        }
        assert_eq!((facts.read, facts.skipped), (2, 2));
        assert!(facts.qr_codes.is_empty());
    }

    #[test]
    fn data_uris_decode_and_others_are_not_pictures() {
        assert_eq!(
            data_uri_picture("data:image/png;base64,aGVsbG8="),
            Some(b"hello".to_vec())
        );
        assert_eq!(data_uri_picture("data:text/html;base64,aGVsbG8="), None);
        assert_eq!(data_uri_picture("http://example.com/a.png"), None);
        assert_eq!(data_uri_picture("data:image/png,rawbytes"), None);
    }
}
