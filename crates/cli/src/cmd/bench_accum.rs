//! `ane-train bench accum`: Baked mode under a compile budget, one row per accumulation, every
//! row training the same number of windows (upstream PR #33's `ANE_ACCUM_STEPS` table,
//! measured). Each row is a real `ane-train train` child process, so the checkpoint-and-exec()
//! restarts are the real ones; its `--metrics` file tells the restarts and compile times, and
//! the held-out loss of its final checkpoint is evaluated afterwards on the cpu device
//! (Params mode, same weights), because the last Baked process may lack the compiles for it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use ane_runtime::cpu::CpuDevice;
use ane_runtime::Fidelity;
use ane_train::checkpoint::{self, CorpusInfo};
use ane_train::data::{corpus, TokenData};
use ane_train::kernels::WeightMode;
use ane_train::trainer::Trainer;
use anyhow::{bail, Context, Result};
use clap::Args;

use super::bench_common::{print_header, table, write_json, Machine};
use super::knobs::parse_accum;
use super::metrics::{self, Line};

/// Arguments of `bench accum`.
#[derive(Debug, Args)]
pub struct AccumArgs {
    /// Model preset or TOML file.
    #[arg(long, default_value = "tiny")]
    pub model: String,
    /// Override the model's window length.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Accumulations to compare, comma-separated (one row each).
    #[arg(long, default_value = "10,20,50")]
    pub accum: String,
    /// Compile budget of each process.
    #[arg(long, default_value_t = 100)]
    pub max_compiles: usize,
    /// Windows every row trains on (a multiple of every accumulation).
    #[arg(long, default_value_t = 100)]
    pub micro_steps: u64,
    /// Device of the training runs: ane-sim (counts compiles like the Neural Engine) or ane.
    #[arg(long, default_value = "ane-sim")]
    pub device: String,
    /// Held-out windows of the final evaluation.
    #[arg(long, default_value_t = 8)]
    pub eval_windows: usize,
    /// Keep each row's run directory (checkpoint, metrics, report) here [default: a temporary
    /// directory, removed afterwards].
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One measured row.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    accum: u32,
    updates: u64,
    restarts: u64,
    wall_s: f64,
    compile_s: f64,
    compile_share: f64,
    ms_per_update: f64,
    tokens: u64,
    tokens_per_s: f64,
    eval_loss: Option<f32>,
}

/// Runs `bench accum`.
pub fn run(args: &AccumArgs) -> Result<ExitCode> {
    let accums = args
        .accum
        .split(',')
        .map(|a| parse_accum("--accum", a.trim()))
        .collect::<Result<Vec<u32>>>()?;
    ane_runtime::budget::parse_limit(&args.max_compiles.to_string())?;
    for &a in &accums {
        if args.micro_steps == 0 || !args.micro_steps.is_multiple_of(u64::from(a)) {
            bail!(
                "--micro-steps {} is not a positive multiple of accumulation {a}: every row \
                 trains on the same windows",
                args.micro_steps
            );
        }
    }
    let machine = Machine::detect();
    print_header("accum", &machine);
    println!(
        "model {}, Baked mode on {}, compile budget {} per process, {} windows per row; \
         each row is one `ane-train train` run, restarts are real exec()s\n",
        args.model, args.device, args.max_compiles, args.micro_steps
    );
    let temp = std::env::temp_dir().join(format!("ane-bench-accum-{}", std::process::id()));
    let root = args.keep.clone().unwrap_or_else(|| temp.clone());
    let text = corpus::builtin().into_bytes();
    let info = CorpusInfo::of("builtin", &text);
    let data = TokenData::from_text(&text, 0.05)?;
    let mut rows = Vec::new();
    for &a in &accums {
        let dir = root.join(format!("accum-{a}"));
        let row = measure(args, a, &dir, &data, &info).with_context(|| format!("accum {a}"))?;
        rows.push(row);
    }
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.accum.to_string(),
                r.updates.to_string(),
                r.restarts.to_string(),
                format!("{:.2}", r.wall_s),
                format!("{:.0} %", r.compile_share * 100.0),
                format!("{:.0}", r.ms_per_update),
                format!("{:.0}", r.tokens_per_s),
                r.eval_loss.map_or("-".into(), |l| format!("{l:.4}")),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "accum",
                "updates",
                "exec() restarts",
                "wall s",
                "compile share",
                "ms/update",
                "tokens/s",
                "held-out loss",
            ],
            &cells
        )
    );
    if let Some(path) = &args.json {
        let j = serde_json::json!({
            "bench": "accum",
            "machine": machine,
            "model": args.model,
            "device": args.device,
            "max_compiles": args.max_compiles,
            "micro_steps": args.micro_steps,
            "rows": rows,
        });
        write_json(path, &j)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn measure(
    args: &AccumArgs,
    accum: u32,
    dir: &Path,
    data: &TokenData,
    info: &CorpusInfo,
) -> Result<Row> {
    let updates = args.micro_steps / u64::from(accum);
    let metrics_path = dir.join("metrics.jsonl");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let exe = std::env::current_exe().context("finding this program")?;
    let mut cmd = Command::new(exe);
    cmd.arg("train")
        .args(["--device", &args.device, "--mode", "baked"])
        .args(["--model", &args.model])
        .args(["--accum", &accum.to_string()])
        .args(["--steps", &updates.to_string()])
        .args(["--max-compiles", &args.max_compiles.to_string()])
        .args(["--eval-every", "0", "--checkpoint-every", "0"])
        .args(["--sample-tokens", "0", "--log-every", "0"])
        .arg("--metrics")
        .arg(&metrics_path)
        .arg("--out")
        .arg(dir)
        .env_remove(super::knobs::ENV_ACCUM_STEPS)
        .env_remove(super::restart::ENV_RESTARTS);
    if let Some(s) = args.seq_len {
        cmd.args(["--seq-len", &s.to_string()]);
    }
    let t = Instant::now();
    let out = cmd.output().context("running ane-train train")?;
    let wall_s = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "the training run failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lines = metrics::read(&metrics_path)?;
    let (mut starts, mut done, mut tokens, mut compile_ms) = (0u64, 0u64, 0u64, 0.0);
    for l in &lines {
        match *l {
            Line::Start { compile_ms: c, .. } => {
                starts += 1;
                compile_ms += c;
            }
            Line::Update {
                tokens: t,
                weight_update_ms,
                ..
            } => {
                done += 1;
                tokens = t;
                compile_ms += weight_update_ms;
            }
            Line::Eval { .. } => {}
        }
    }
    let ckpt = checkpoint::read(&dir.join("checkpoint.bin"))?;
    let device = std::sync::Arc::new(CpuDevice::new(Fidelity::Exact));
    let mut trainer = Trainer::resume(ckpt, device, WeightMode::Params, info)?;
    let eval_loss = trainer.eval_loss(data, args.eval_windows)?;
    Ok(Row {
        accum,
        updates: done,
        restarts: starts.saturating_sub(1),
        wall_s,
        compile_s: compile_ms / 1e3,
        compile_share: compile_ms / 1e3 / wall_s,
        ms_per_update: wall_s * 1e3 / done.max(1) as f64,
        tokens,
        tokens_per_s: tokens as f64 / wall_s,
        eval_loss,
    })
}
