//! Progress of `ane-train train`: a bar (loss, tokens/s, ETA) on a terminal, else a plain line
//! every `--log-every` seconds, so the logs of batch jobs show progress too.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Where progress goes; see the module docs.
#[derive(Debug)]
pub(crate) enum Progress {
    /// A terminal: the bar.
    Bar(ProgressBar),
    /// Not a terminal: a line every `every` (never when zero).
    Lines {
        /// Seconds between lines.
        every: Duration,
        /// When the last line was printed.
        last: Instant,
        /// When this process started training, and the updates done then.
        start: (Instant, u64),
        /// Updates of the whole run.
        total: u64,
    },
}

impl Progress {
    /// Progress of a run of `total` updates, `done` of them already done.
    pub(crate) fn new(total: u64, done: u64, log_every: u64) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "  [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} (eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(done);
            Progress::Bar(bar)
        } else {
            let now = Instant::now();
            Progress::Lines {
                every: Duration::from_secs(log_every),
                last: now,
                start: (now, done),
                total,
            }
        }
    }

    /// Reports update `step` (loss, learning rate, tokens per second).
    pub(crate) fn update(&mut self, step: u64, loss: f32, lr: f32, tokens_per_s: f64) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(step);
                bar.set_message(format!(
                    "loss {loss:.3}  lr {lr:.2e}  {tokens_per_s:.0} tok/s"
                ));
            }
            Progress::Lines {
                every,
                last,
                start,
                total,
            } => {
                if every.is_zero() || last.elapsed() < *every {
                    return;
                }
                *last = Instant::now();
                let ran = start.0.elapsed().as_secs_f64();
                let done = step.saturating_sub(start.1).max(1) as f64;
                let eta = ran / done * total.saturating_sub(step) as f64;
                println!(
                    "  [{}] update {step}/{total}  loss {loss:.4}  lr {lr:.2e}  \
                     {tokens_per_s:.0} tokens/s  eta {}",
                    clock(ran),
                    clock(eta)
                );
            }
        }
    }

    /// Prints `line` without tearing the bar.
    pub(crate) fn println(&self, line: &str) {
        match self {
            Progress::Bar(bar) => bar.suspend(|| println!("{line}")),
            Progress::Lines { .. } => println!("{line}"),
        }
    }

    /// Removes the bar (no-op for lines).
    pub(crate) fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// `h:mm:ss` of `seconds`.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn clock_formats_hours_minutes_seconds() {
        assert_eq!(super::clock(0.0), "0:00:00");
        assert_eq!(super::clock(3725.4), "1:02:05");
    }
}
