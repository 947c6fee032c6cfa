//! `ane-train plot`: the training and held-out loss of a `--metrics` file against tokens, as
//! a PNG with labelled axes and a legend.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::metrics::{self, Line};
use super::raster::{Canvas, Rgb};

/// Arguments of `ane-train plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// The metrics file a run wrote with `train --metrics`.
    #[arg(long)]
    pub metrics: PathBuf,
    /// The PNG to write.
    #[arg(long, default_value = "loss.png")]
    pub out: PathBuf,
}

/// Runs `ane-train plot`.
pub fn run(args: &PlotArgs) -> Result<ExitCode> {
    write(&args.metrics, &args.out)?;
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

const WIDTH: usize = 960;
const HEIGHT: usize = 600;
/// Plot area: left, top, right, bottom edges.
const AREA: (f64, f64, f64, f64) = (124.0, 50.0, 930.0, 520.0);
const INK: Rgb = [30, 30, 30];
const GRID: Rgb = [225, 225, 225];
const TRAIN: Rgb = [70, 130, 200];
const HELD_OUT: Rgb = [230, 110, 20];

/// Plots the losses of the metrics file `metrics` into the PNG `out`.
pub(crate) fn write(metrics: &Path, out: &Path) -> Result<()> {
    let lines = metrics::read(metrics)?;
    let mut train = Vec::new();
    let mut held_out = Vec::new();
    for l in &lines {
        match *l {
            Line::Update {
                tokens,
                loss,
                skipped: false,
                ..
            } if loss.is_finite() => train.push((tokens as f64, f64::from(loss))),
            Line::Eval {
                tokens, eval_loss, ..
            } if eval_loss.is_finite() => held_out.push((tokens as f64, f64::from(eval_loss))),
            _ => {}
        }
    }
    if train.is_empty() && held_out.is_empty() {
        bail!("{} has no loss to plot", metrics.display());
    }
    let all = || train.iter().chain(&held_out);
    let x_max = all().map(|p| p.0).fold(0.0, f64::max).max(1.0);
    let (y_lo, y_hi) = all().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let pad = ((y_hi - y_lo) * 0.05).max(0.05);
    let (y_lo, y_hi) = ((y_lo - pad).max(0.0), y_hi + pad);
    let (l, t, r, b) = AREA;
    let px = |x: f64| l + x / x_max * (r - l);
    let py = |y: f64| b - (y - y_lo) / (y_hi - y_lo) * (b - t);

    let mut c = Canvas::new(WIDTH, HEIGHT, [255, 255, 255]);
    for x in ticks(0.0, x_max) {
        let xi = px(x) as i64;
        c.rect((xi, t as i64), (xi, b as i64), GRID);
        let label = si(x);
        c.text(
            (xi - Canvas::text_width(&label, 2) / 2, b as i64 + 10),
            &label,
            2,
            INK,
        );
    }
    for y in ticks(y_lo, y_hi) {
        let yi = py(y) as i64;
        c.rect((l as i64, yi), (r as i64, yi), GRID);
        let label = format!("{y:.2}");
        c.text(
            (l as i64 - 10 - Canvas::text_width(&label, 2), yi - 8),
            &label,
            2,
            INK,
        );
    }
    c.rect((l as i64, b as i64), (r as i64, b as i64 + 1), INK);
    c.rect((l as i64 - 1, t as i64), (l as i64, b as i64), INK);
    let xlabel = "tokens trained on";
    c.text(
        (
            (l + r) as i64 / 2 - Canvas::text_width(xlabel, 2) / 2,
            b as i64 + 40,
        ),
        xlabel,
        2,
        INK,
    );
    let ylabel = "loss (nats per token)";
    c.text_up(
        (12, (t + b) as i64 / 2 + Canvas::text_width(ylabel, 2) / 2),
        ylabel,
        2,
        INK,
    );
    let title = format!("loss against tokens: {}", file_name(metrics));
    c.text((l as i64, 14), &title, 2, INK);

    let series = |c: &mut Canvas, pts: &[(f64, f64)], colour: Rgb, marks: bool| {
        for w in pts.windows(2) {
            c.line(
                (px(w[0].0), py(w[0].1)),
                (px(w[1].0), py(w[1].1)),
                2,
                colour,
            );
        }
        for p in pts.iter().filter(|_| marks || pts.len() == 1) {
            let (x, y) = (px(p.0) as i64, py(p.1) as i64);
            c.rect((x - 4, y - 4), (x + 4, y + 4), colour);
        }
    };
    series(&mut c, &train, TRAIN, false);
    series(&mut c, &held_out, HELD_OUT, true);

    // Legend, top right inside the plot area.
    let entries = [("training loss", TRAIN), ("held-out loss", HELD_OUT)];
    let (lx, ly) = (r as i64 - 290, t as i64 + 12);
    c.rect((lx, ly), (lx + 278, ly + 66), [245, 245, 245]);
    for (k, (name, colour)) in entries.iter().enumerate() {
        let y = ly + 14 + k as i64 * 28;
        c.rect((lx + 12, y + 5), (lx + 52, y + 9), *colour);
        c.text((lx + 64, y), name, 2, INK);
    }
    c.write_png(out)
}

/// About five round tick values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// `x` with a k/M/G suffix.
fn si(x: f64) -> String {
    let trim = |v: f64, s: &str| {
        let t = format!("{v:.1}");
        format!("{}{s}", t.strip_suffix(".0").unwrap_or(&t))
    };
    match x.abs() {
        v if v >= 1e9 => trim(x / 1e9, "G"),
        v if v >= 1e6 => trim(x / 1e6, "M"),
        v if v >= 1e3 => trim(x / 1e3, "k"),
        _ => trim(x, ""),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        assert_eq!(ticks(0.0, 10.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(1.93, 5.61);
        assert!(t.iter().all(|v| (1.93..=5.61).contains(v)), "{t:?}");
        assert!((3..=8).contains(&t.len()), "{t:?}");
        assert_eq!(si(12_500.0), "12.5k");
        assert_eq!(si(2_000_000.0), "2M");
        assert_eq!(si(0.0), "0");
    }
}
