//! A small RGB canvas for the plots: lines, rectangles, text in an 8×8 bitmap font
//! (`font8x8`, public domain), encoded as PNG. Drawing text this way needs no system font
//! library, so `ane-train plot` works on any machine the Rust toolchain builds on.

use std::path::Path;

use anyhow::{Context, Result};
use font8x8::legacy::BASIC_LEGACY;

/// An RGB colour.
pub(crate) type Rgb = [u8; 3];

/// An RGB image being drawn.
#[derive(Debug, Clone)]
pub(crate) struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A `width`×`height` canvas filled with `background`.
    pub(crate) fn new(width: usize, height: usize, background: Rgb) -> Canvas {
        Canvas {
            width,
            height,
            pixels: background.repeat(width * height),
        }
    }

    /// Sets one pixel; outside the canvas nothing happens.
    pub(crate) fn dot(&mut self, x: i64, y: i64, c: Rgb) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let i = (y as usize * self.width + x as usize) * 3;
        self.pixels[i..i + 3].copy_from_slice(&c);
    }

    /// Fills the rectangle from `(x0, y0)` to `(x1, y1)` inclusive.
    pub(crate) fn rect(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb) {
        for y in y0.min(y1)..=y0.max(y1) {
            for x in x0.min(x1)..=x0.max(x1) {
                self.dot(x, y, c);
            }
        }
    }

    /// A line `width` pixels thick from `a` to `b` (points on the canvas, fractional).
    pub(crate) fn line(&mut self, a: (f64, f64), b: (f64, f64), width: i64, c: Rgb) {
        let n = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as usize;
        let r = width / 2;
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let x = (a.0 + (b.0 - a.0) * t).round() as i64;
            let y = (a.1 + (b.1 - a.1) * t).round() as i64;
            self.rect((x - r, y - r), (x - r + width - 1, y - r + width - 1), c);
        }
    }

    /// Width in pixels of `text` at `scale`.
    pub(crate) fn text_width(text: &str, scale: i64) -> i64 {
        text.chars().count() as i64 * 8 * scale
    }

    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel `scale`² pixels;
    /// characters outside ASCII show as `?`.
    pub(crate) fn text(&mut self, (x, y): (i64, i64), text: &str, scale: i64, c: Rgb) {
        self.glyphs(text, scale, c, |gx, gy| (x + gx, y + gy));
    }

    /// Draws `text` turned 90° anticlockwise (reading upwards), its baseline's start at the
    /// bottom-left `(x, y)`.
    pub(crate) fn text_up(&mut self, (x, y): (i64, i64), text: &str, scale: i64, c: Rgb) {
        self.glyphs(text, scale, c, |gx, gy| (x + gy, y - gx));
    }

    fn glyphs(&mut self, text: &str, scale: i64, c: Rgb, at: impl Fn(i64, i64) -> (i64, i64)) {
        for (k, ch) in text.chars().enumerate() {
            let code = if ch.is_ascii() {
                ch as usize
            } else {
                '?' as usize
            };
            for (row, bits) in BASIC_LEGACY[code].iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 0 {
                        continue;
                    }
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let gx = (k as i64 * 8 + col) * scale + dx;
                            let gy = row as i64 * scale + dy;
                            let (px, py) = at(gx, gy);
                            self.dot(px, py, c);
                        }
                    }
                }
            }
        }
    }

    /// Writes the canvas as an 8-bit RGB PNG (atomically).
    pub(crate) fn write_png(&self, path: &Path) -> Result<()> {
        let mut bytes = Vec::new();
        let mut enc = png::Encoder::new(&mut bytes, self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().context("encoding the PNG")?;
        w.write_image_data(&self.pixels)
            .context("encoding the PNG")?;
        w.finish().context("encoding the PNG")?;
        super::files::write_atomic(path, &bytes)
    }
}
