#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What reading pictures for QR codes costs (issue 18's bounds): a parse of
//! a message carrying a 1-megapixel PNG with a QR code in it, against the
//! same message without the picture, and against one whose 1-megapixel
//! picture holds no code. Run with `cargo bench --bench images`; under
//! `cargo test` each bench runs once as a smoke test.

use std::hint::black_box;

use chaff::message::{self, Limits};
use criterion::{Criterion, criterion_group, criterion_main};

/// A 1000 × 1000 PNG: a QR code of `text` drawn 12 pixels a module in its
/// middle, on white; or a busy pattern without a code.
fn megapixel_png(text: Option<&str>) -> Vec<u8> {
    let side = 1000u32;
    let picture = match text {
        Some(text) => {
            let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
            let modules = u32::try_from(code.width()).unwrap();
            let colors = code.to_colors();
            let scale = 12;
            let offset = (side - modules * scale) / 2;
            image::GrayImage::from_fn(side, side, |x, y| {
                let (mx, my) = (
                    x.wrapping_sub(offset) / scale,
                    y.wrapping_sub(offset) / scale,
                );
                let inside = x >= offset && y >= offset && mx < modules && my < modules;
                let dark = inside && colors[(my * modules + mx) as usize] == qrcode::Color::Dark;
                image::Luma([if dark { 0 } else { 255 }])
            })
        }
        // A busy picture with full contrast: the row scan reads it all.
        None => image::GrayImage::from_fn(side, side, |x, y| {
            image::Luma([((x * 7 + y * 13 + (x * y) % 97) % 256) as u8])
        }),
    };
    let mut png = Vec::new();
    picture
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

fn with_attachment(png: Option<&[u8]>) -> Vec<u8> {
    let mut raw = b"From: a@example.net\nSubject: scan\nMIME-Version: 1.0\n\
        Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\n\
        Scan the code to keep your account.\n"
        .to_vec();
    if let Some(png) = png {
        raw.extend_from_slice(
            b"--b\nContent-Type: image/png\nContent-Transfer-Encoding: binary\n\n",
        );
        raw.extend_from_slice(png);
        raw.extend_from_slice(b"\n");
    }
    raw.extend_from_slice(b"--b--\n");
    raw
}

fn images(c: &mut Criterion) {
    let limits = Limits::default();
    let with_code = with_attachment(Some(&megapixel_png(Some(
        "https://login.example.com/session/4711",
    ))));
    let blank = with_attachment(Some(&megapixel_png(None)));
    let without = with_attachment(None);
    // The bench measures what it claims: the code is found.
    let parsed = message::parse(&with_code, &limits);
    assert_eq!(
        parsed.images.qr_codes,
        vec!["https://login.example.com/session/4711"]
    );
    let mut group = c.benchmark_group("images");
    group.sample_size(20);
    group.bench_function("parse, 1 MP PNG with a QR code", |b| {
        b.iter(|| message::parse(black_box(&with_code), &limits))
    });
    group.bench_function("parse, 1 MP PNG without a code", |b| {
        b.iter(|| message::parse(black_box(&blank), &limits))
    });
    group.bench_function("parse, no picture", |b| {
        b.iter(|| message::parse(black_box(&without), &limits))
    });
    group.finish();
}

criterion_group!(benches, images);
criterion_main!(benches);
