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
    let luma = match format {
        ImageFormat::Gif => gif_luma(bytes, max_pixels)?,
        ImageFormat::Jpeg => jpeg_luma(bytes, max_pixels)?,
        _ => decoded_luma(bytes, format, max_pixels)?,
    };
    let Some(luma) = luma else {
        return Ok(None);
    };
    if luma.width() < MIN_SIDE || luma.height() < MIN_SIDE {
        // Spacers, tracking pixels and icons: no camera reads a code that
        // small, and most pictures in mail are these.
        return Ok(Some(Vec::new()));
    }
    // Most pictures in mail hold no code: a row scan for the finder
    // pattern decides that at a fraction of the cost of rqrr's search.
    if !may_hold_code(&luma) {
        return Ok(Some(Vec::new()));
    }
    let mut prepared = rqrr::PreparedImage::prepare(luma);
    let codes = prepared
        .detect_grids()
        .into_iter()
        .take(MAX_CODES_PER_IMAGE)
        .filter_map(|grid| grid.decode().ok())
        .map(|(_, text)| text.chars().take(MAX_CODE_CHARS).collect())
        .collect();
    Ok(Some(codes))
}

/// The first frame of a GIF in grey, decoded as palette indices (the
/// `image` crate's RGBA expansion cost three times the decoding itself);
/// `Ok(None)` past the pixel limit.
fn gif_luma(bytes: &[u8], max_pixels: u64) -> Result<Option<image::GrayImage>, ()> {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    if let Some(limit) = std::num::NonZeroU64::new(max_pixels.saturating_mul(2)) {
        options.set_memory_limit(gif::MemoryLimit::Bytes(limit));
    }
    let mut decoder = options.read_info(bytes).map_err(|_| ())?;
    if u64::from(decoder.width()) * u64::from(decoder.height()) > max_pixels {
        return Ok(None);
    }
    let (width, height, transparent, local, indices) = {
        let frame = decoder.read_next_frame().map_err(|_| ())?.ok_or(())?;
        (
            u32::from(frame.width),
            u32::from(frame.height),
            frame.transparent,
            frame.palette.clone(),
            frame.buffer.to_vec(),
        )
    };
    let palette = local
        .as_deref()
        .or_else(|| decoder.global_palette())
        .unwrap_or(&[]);
    // Grey of every palette entry; transparent and missing ones white, as
    // a mail reader's background.
    let mut grey = [255u8; 256];
    for (index, rgb) in palette.chunks_exact(3).enumerate().take(256) {
        if transparent != Some(index as u8) {
            grey[index] = weigh(rgb[0], rgb[1], rgb[2]);
        }
    }
    let pixels: Vec<u8> = indices.iter().map(|&i| grey[usize::from(i)]).collect();
    Ok(image::GrayImage::from_raw(width, height, pixels))
}

/// A JPEG's grey (its Y channel), decoded by zune-jpeg without the colour
/// conversion; `Ok(None)` past the pixel limit, read from the header.
fn jpeg_luma(bytes: &[u8], max_pixels: u64) -> Result<Option<image::GrayImage>, ()> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let side = usize::try_from(max_pixels).unwrap_or(usize::MAX);
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::Luma)
        .set_max_width(side)
        .set_max_height(side);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(|_| ())?;
    let (width, height) = decoder.dimensions().ok_or(())?;
    let (width, height) = (
        u32::try_from(width).map_err(|_| ())?,
        u32::try_from(height).map_err(|_| ())?,
    );
    if u64::from(width) * u64::from(height) > max_pixels {
        return Ok(None);
    }
    if width < MIN_SIDE || height < MIN_SIDE {
        return Ok(Some(image::GrayImage::new(width, height)));
    }
    let pixels = decoder.decode().map_err(|_| ())?;
    image::GrayImage::from_raw(width, height, pixels)
        .map(Some)
        .ok_or(())
}

/// A PNG in grey; `Ok(None)` past the pixel limit (read from the
/// header, before any pixel is decoded).
fn decoded_luma(
    bytes: &[u8],
    format: ImageFormat,
    max_pixels: u64,
) -> Result<Option<image::GrayImage>, ()> {
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|_| ())?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Ok(None);
    }
    if width < MIN_SIDE || height < MIN_SIDE {
        return Ok(Some(image::GrayImage::new(width, height)));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // RGBA at 8 bits plus the decoder's own buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(8));
    reader.limits(limits);
    let picture = reader.decode().map_err(|_| ())?;
    Ok(Some(luma_of(picture)))
}

/// Grey by integer luma weights (ITU-R BT.601, in 256ths).
fn weigh(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 77 + u32::from(g) * 150 + u32::from(b) * 29) >> 8) as u8
}

/// The picture in grey, by integer luma weights: `image`'s own conversion
/// goes through floating point per pixel and cost more than decoding.
fn luma_of(picture: image::DynamicImage) -> image::GrayImage {
    let (width, height) = (picture.width(), picture.height());
    let grey: Option<Vec<u8>> = match &picture {
        image::DynamicImage::ImageLuma8(_) => return picture.into_luma8(),
        image::DynamicImage::ImageRgb8(rgb) => Some(
            rgb.as_raw()
                .chunks_exact(3)
                .map(|p| weigh(p[0], p[1], p[2]))
                .collect(),
        ),
        // Transparent pixels show the white a mail reader draws behind.
        image::DynamicImage::ImageRgba8(rgba) => Some(
            rgba.as_raw()
                .chunks_exact(4)
                .map(|p| {
                    // luma × alpha + white × (1 − alpha), by 256ths.
                    let alpha = u32::from(p[3]) + u32::from(p[3] >> 7);
                    let luma = u32::from(weigh(p[0], p[1], p[2]));
                    ((luma * alpha + 255 * (256 - alpha)) >> 8) as u8
                })
                .collect(),
        ),
        _ => None,
    };
    grey.and_then(|grey| image::GrayImage::from_raw(width, height, grey))
        .unwrap_or_else(|| picture.to_luma8())
}

/// Rows read by the finder scan: every third. A finder's middle run is
/// three modules high, and a code whose modules are under two pixels is no
/// code a camera reads.
const ROW_STEP: usize = 3;

/// Finder patterns a code has: the full search runs only where the row
/// scan found this many apart, each confirmed down its column.
const FINDERS: usize = 3;

/// Whether the picture shows QR finder patterns: dark, light, dark, light,
/// dark runs in the ratio 1:1:3:1:1 across a row and down the column
/// through their middle, at a threshold halfway between the picture's
/// darkest and lightest grey, in three places apart (ZXing's finder
/// search, cut down).
fn may_hold_code(luma: &image::GrayImage) -> bool {
    let (width, height) = (luma.width() as usize, luma.height() as usize);
    let pixels = luma.as_raw();
    let (mut darkest, mut lightest) = (u8::MAX, u8::MIN);
    for &p in pixels.iter().step_by(7) {
        darkest = darkest.min(p);
        lightest = lightest.max(p);
    }
    if lightest.saturating_sub(darkest) < 64 {
        return false;
    }
    let threshold = ((u16::from(darkest) + u16::from(lightest)) / 2) as u8;
    let is_dark = |x: usize, y: usize| pixels[y * width + x] < threshold;
    // Confirmed finders: centre and size.
    let mut finders: Vec<(usize, usize, usize)> = Vec::new();
    let mut runs: Vec<(usize, usize)> = Vec::with_capacity(64);
    for (y, row) in pixels.chunks_exact(width).enumerate().step_by(ROW_STEP) {
        runs.clear();
        let mut start = 0;
        let mut dark = row[0] < threshold;
        for (x, &p) in row.iter().enumerate().skip(1) {
            if (p < threshold) != dark {
                runs.push((start, x - start));
                start = x;
                dark = !dark;
            }
        }
        runs.push((start, width - start));
        if runs.len() < 5 {
            continue;
        }
        let first_dark = usize::from(row[0] >= threshold);
        for window in runs.windows(5).skip(first_dark).step_by(2) {
            let lengths = [
                window[0].1,
                window[1].1,
                window[2].1,
                window[3].1,
                window[4].1,
            ];
            if !finder_ratio(&lengths) {
                continue;
            }
            let size: usize = lengths.iter().sum();
            let centre_x = window[2].0 + window[2].1 / 2;
            let known = finders
                .iter()
                .any(|&(fx, fy, fsize)| fx.abs_diff(centre_x) <= fsize && fy.abs_diff(y) <= fsize);
            if known || !column_crosses_finder(&is_dark, centre_x, y, height, size) {
                continue;
            }
            finders.push((centre_x, y, size));
            if finders.len() >= FINDERS {
                return true;
            }
        }
    }
    false
}

/// Whether the column through (x, y) crosses a finder of about `size`
/// pixels: the 1:1:3:1:1 runs again, going up and down from the middle.
fn column_crosses_finder(
    is_dark: &dyn Fn(usize, usize) -> bool,
    x: usize,
    y: usize,
    height: usize,
    size: usize,
) -> bool {
    let limit = size * 2;
    // Runs outward from the middle: dark (the centre), light, dark.
    let walk = |step_up: bool| {
        let mut lengths = [0usize; 3];
        let mut at = y;
        for (index, want_dark) in [true, false, true].into_iter().enumerate() {
            loop {
                let next = if step_up {
                    at.checked_sub(1)
                } else {
                    Some(at + 1).filter(|&n| n < height)
                };
                if lengths[index] > limit || is_dark(x, at) != want_dark {
                    break;
                }
                lengths[index] += 1;
                match next {
                    Some(next) => at = next,
                    None => return lengths,
                }
            }
        }
        lengths
    };
    let (up, down) = (walk(true), walk(false));
    if up[0] == 0 || down[0] == 0 {
        return false;
    }
    let column = [up[2], up[1], up[0] + down[0] - 1, down[1], down[2]];
    let total: usize = column.iter().sum();
    finder_ratio(&column) && total * 2 >= size && total <= size * 2
}

/// Runs in the ratio 1:1:3:1:1: each within half a module of it, the
/// middle one within a module and a half (ZXing's tolerance).
fn finder_ratio(runs: &[usize]) -> bool {
    let total: usize = runs.iter().sum();
    if total < 7 {
        return false;
    }
    // Measured in sevenths of a pixel, so a module is `total` units.
    let module = total;
    [1, 1, 3, 1, 1]
        .iter()
        .zip(runs)
        .all(|(&units, &run)| (run * 7).abs_diff(units * module) * 2 < units * module)
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
    fn the_row_scan_passes_finder_patterns_and_rejects_plain_pictures() {
        // Three finder patterns, 3 pixels a module, on white, where a code
        // has them: two corners of the top and the bottom left.
        let finder = |x: u32, y: u32| {
            let (mx, my) = (x / 3, y / 3);
            if mx >= 9 || my >= 9 || mx == 0 || my == 0 || mx == 8 || my == 8 {
                return 255;
            }
            let ring = (mx - 1).min(my - 1).min(7 - mx).min(7 - my);
            if ring == 1 { 255 } else { 0 }
        };
        let three = |x: u32, y: u32| {
            let (fx, fy) = (x % 45, y % 45);
            if (x >= 45 && y >= 45) || fx >= 27 || fy >= 27 {
                255
            } else {
                finder(fx, fy)
            }
        };
        let with_finders = image::GrayImage::from_fn(90, 90, |x, y| image::Luma([three(x, y)]));
        assert!(may_hold_code(&with_finders));
        let one = image::GrayImage::from_fn(60, 60, |x, y| image::Luma([finder(x, y)]));
        assert!(!may_hold_code(&one));
        let blank = image::GrayImage::from_pixel(60, 60, image::Luma([255]));
        assert!(!may_hold_code(&blank));
        let stripes = image::GrayImage::from_fn(60, 60, |x, _| {
            image::Luma([if x % 4 < 2 { 0 } else { 255 }])
        });
        assert!(!may_hold_code(&stripes));
    }

    /// A small picture of each format, as an encoder writes it.
    fn encoded(format: ImageFormat) -> Vec<u8> {
        let picture = image::RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x ^ y) * 4) as u8])
        });
        let mut bytes = Vec::new();
        match image::DynamicImage::ImageRgb8(picture).write_to(&mut Cursor::new(&mut bytes), format)
        {
            Ok(()) => bytes,
            Err(e) => panic!("encoding a test picture: {e}"),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Real pictures with bytes flipped and tails cut: decoded,
        /// counted as unreadable or skipped, never a panic, never more
        /// read than the limit.
        #[test]
        fn damaged_pictures_never_panic(
            format in proptest::prop_oneof![
                proptest::prelude::Just(ImageFormat::Png),
                proptest::prelude::Just(ImageFormat::Jpeg),
                proptest::prelude::Just(ImageFormat::Gif),
            ],
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..16),
            keep in 0.0f64..1.0,
        ) {
            let mut bytes = encoded(format);
            let length = bytes.len();
            for (at, value) in flips {
                // Past the magic bytes, so the decoder is the one to cope.
                let at = 8 + at % (length - 8);
                bytes[at] = value;
            }
            bytes.truncate(8 + ((length - 8) as f64 * keep) as usize);
            let limits = Limits { max_images: 1, ..Limits::default() };
            let mut budget = ImageReaderBudget::new(&limits);
            let mut facts = ImageFacts::default();
            budget.read(&bytes, &mut facts);
            budget.read(&bytes, &mut facts);
            proptest::prop_assert!(facts.read <= 1);
            proptest::prop_assert_eq!(facts.read + facts.skipped + facts.unreadable, 2);
        }
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
