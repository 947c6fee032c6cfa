//! `train --metrics FILE.jsonl`: one JSON object per line — one per update, one per held-out
//! evaluation, one per process start — appended across `--resume` and across the compile
//! budget's restarts, never duplicated.
//!
//! A resumed run first drops the lines past its checkpoint's step (a crash between the last
//! checkpoint and the exit leaves updates the resumed run will do again) and any torn last
//! line, so the file always describes exactly one run.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One line of a metrics file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Line {
    /// A process started (or restarted) the run at `step`.
    Start {
        /// Updates done before this process.
        step: u64,
        /// Restarts of the run before this process (compile budget).
        restart: u64,
        /// Kernel compiles of the model build.
        compiles: usize,
        /// Milliseconds of the model build (compiling every kernel).
        compile_ms: f64,
    },
    /// One update.
    Update {
        /// Updates done, this one included.
        step: u64,
        /// Tokens predicted in the run so far, this update included.
        tokens: u64,
        /// Mean training loss of the update's windows.
        loss: f32,
        /// Learning rate used.
        lr: f32,
        /// Global gradient norm before clipping.
        grad_norm: f32,
        /// Wall milliseconds of the update.
        ms: f64,
        /// Tokens per second of the update.
        tokens_per_s: f64,
        /// Whether the update was skipped (non-finite gradient).
        skipped: bool,
        /// The loss scale (1 on fp32 devices).
        loss_scale: f32,
        /// Milliseconds handing the new weights to the device (Baked: recompiling; else
        /// restaging).
        weight_update_ms: f64,
    },
    /// A held-out evaluation after `step` updates.
    Eval {
        /// Updates done.
        step: u64,
        /// Tokens predicted in the run so far.
        tokens: u64,
        /// Mean held-out loss.
        eval_loss: f32,
    },
}

impl Line {
    fn step(&self) -> u64 {
        match self {
            Line::Start { step, .. } | Line::Update { step, .. } | Line::Eval { step, .. } => *step,
        }
    }
}

/// Reads a metrics file; lines that do not parse (a torn last line) are skipped.
pub(crate) fn read(path: &Path) -> Result<Vec<Line>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// An open metrics file; see the module docs.
#[derive(Debug)]
pub(crate) struct MetricsLog {
    path: PathBuf,
    out: BufWriter<File>,
    evals: HashSet<u64>,
}

impl MetricsLog {
    /// Opens `path` for a run: a new run (`resume_step` `None`) starts it afresh; a resumed
    /// run keeps the lines up to its checkpoint's step and appends after them.
    pub(crate) fn open(path: &Path, resume_step: Option<u64>) -> Result<MetricsLog> {
        let kept: Vec<Line> = match resume_step {
            Some(step) if path.exists() => read(path)?
                .into_iter()
                .filter(|l| l.step() <= step)
                .collect(),
            _ => Vec::new(),
        };
        let mut text = String::new();
        for l in &kept {
            text += &serde_json::to_string(l)?;
            text.push('\n');
        }
        super::files::write_atomic(path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let evals = kept
            .iter()
            .filter(|l| matches!(l, Line::Eval { .. }))
            .map(Line::step)
            .collect();
        Ok(MetricsLog {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            evals,
        })
    }

    /// Appends `line` (an evaluation at a step already logged is skipped) and flushes it, so
    /// what a crash leaves is whole lines.
    pub(crate) fn write(&mut self, line: &Line) -> Result<()> {
        if let Line::Eval { step, .. } = line {
            if !self.evals.insert(*step) {
                return Ok(());
            }
        }
        let text = serde_json::to_string(line)? + "\n";
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(step: u64) -> Line {
        Line::Update {
            step,
            tokens: step * 32,
            loss: 5.0,
            lr: 1e-3,
            grad_norm: 1.0,
            ms: 2.0,
            tokens_per_s: 16.0,
            skipped: false,
            loss_scale: 1.0,
            weight_update_ms: 0.1,
        }
    }

    #[test]
    fn a_resume_drops_lines_past_its_checkpoint_and_torn_lines() {
        let dir = std::env::temp_dir().join(format!("ane-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.jsonl");
        let mut log = MetricsLog::open(&path, None).unwrap();
        for s in 1..=5 {
            log.write(&update(s)).unwrap();
        }
        let eval = Line::Eval {
            step: 3,
            tokens: 96,
            eval_loss: 4.0,
        };
        log.write(&eval).unwrap();
        drop(log);
        // A torn line, as a crash mid-write leaves it.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"kind\":\"upd").unwrap();
        drop(f);
        let mut log = MetricsLog::open(&path, Some(3)).unwrap();
        log.write(&eval).unwrap();
        log.write(&update(4)).unwrap();
        drop(log);
        let lines = read(&path).unwrap();
        let steps: Vec<u64> = lines.iter().map(Line::step).collect();
        assert_eq!(steps, [1, 2, 3, 3, 4]);
        assert_eq!(lines[3], eval);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 5);
        // A new run starts the file afresh.
        drop(MetricsLog::open(&path, None).unwrap());
        assert!(read(&path).unwrap().is_empty());
    }
}
