//! `ane-train bench weight-modes`: Baked, Packed and Params side by side on every device that
//! opens, training the same model for the same updates (upstream PR #22's table, measured).
//!
//! Per update: wall ms, compile ms (Baked's recompile), staging ms (surface traffic, plus
//! restaging the weights in Packed/Params), kernel evaluations and compiles (counted by a
//! device wrapper). Per row: the compile ms of the first model build, and the wall time of all
//! the updates including restarts. A restart here writes and reads the real checkpoint and
//! rebuilds the model on a fresh compile budget inside this process (on `ane-sim`, whose
//! budget is per device); `bench accum` measures the real exec() restart.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ane_runtime::budget::{CompileBudget, CompileCounter, DEFAULT_MAX_COMPILES};
use ane_runtime::cpu::CpuDevice;
use ane_runtime::{Device, Fidelity};
use ane_train::checkpoint::{self, CorpusInfo, TrainSettings};
use ane_train::data::{corpus, TokenData};
use ane_train::kernels::WeightMode;
use ane_train::llama::{init_params, Model};
use ane_train::model::ModelConfig;
use ane_train::optim::{AdamWConfig, Schedule};
use ane_train::trainer::{StepOutcome, Trainer};
use anyhow::{bail, Result};
use clap::Args;

use super::bench_common::{model_config, print_header, table, write_json, Machine, Stat};
use super::bench_counting::CountingDevice;

/// Arguments of `bench weight-modes`.
#[derive(Debug, Args)]
pub struct WeightModesArgs {
    /// Model preset or TOML file.
    #[arg(long, default_value = "tiny")]
    pub model: String,
    /// Override the model's window length.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Updates per row (one window each).
    #[arg(long, default_value_t = 10)]
    pub steps: u64,
    /// Devices to try, comma-separated; one that does not open is reported as unavailable.
    #[arg(long, default_value = "cpu,ane-sim,ane")]
    pub devices: String,
    /// Compile budget per process on ane-sim and ane [default: ANE_MAX_COMPILES, else 100].
    #[arg(long)]
    pub max_compiles: Option<usize>,
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One measured row.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    device: String,
    mode: &'static str,
    updates: u64,
    ms_per_update: Stat,
    compile_ms_start: f64,
    compile_ms_per_update: Stat,
    staging_ms_per_update: Stat,
    evals_per_update: Stat,
    compiles_per_update: Stat,
    restarts: u64,
    wall_s: f64,
    final_loss: f32,
    /// Why the row did fewer updates than asked, if it did.
    stopped: Option<String>,
}

/// Runs `bench weight-modes`.
pub fn run(args: &WeightModesArgs) -> Result<ExitCode> {
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let cfg = model_config(&args.model, args.seq_len)?;
    let limit = match args.max_compiles {
        Some(n) => ane_runtime::budget::parse_limit(&n.to_string())?,
        None => super::knobs::from_env()?
            .max_compiles
            .unwrap_or(DEFAULT_MAX_COMPILES),
    };
    let machine = Machine::detect();
    print_header("weight-modes", &machine);
    let text = corpus::builtin().into_bytes();
    let info = CorpusInfo::of("builtin", &text);
    let data = TokenData::from_text(&text, 0.05)?;
    data.check(cfg.vocab_size, cfg.seq_len)?;
    println!(
        "model {} ({} params, {} layers, dim {}, seq {}); {} updates of one window per row; \
         compile budget {limit} per process; medians [min, max]\n",
        cfg.name,
        cfg.param_count(),
        cfg.n_layers,
        cfg.dim,
        cfg.seq_len,
        args.steps
    );
    let scratch = std::env::temp_dir().join(format!("ane-bench-modes-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let mut rows = Vec::new();
    let mut unavailable = Vec::new();
    let mut failed = Vec::new();
    for name in args.devices.split(',').map(str::trim) {
        let opener = || open(name, limit);
        if let Err(e) = opener() {
            println!("{name}: unavailable ({e:#})");
            unavailable.push(serde_json::json!({ "device": name, "reason": format!("{e:#}") }));
            continue;
        }
        // The Neural Engine's compile budget is per process and cannot be renewed here:
        // Baked, the mode that spends it, goes last there.
        let restartable = name != "ane";
        let mut modes = [WeightMode::Baked, WeightMode::Packed, WeightMode::Params];
        if !restartable {
            modes.reverse();
        }
        for mode in modes {
            let ckpt = scratch.join(format!("{name}-{}.bin", mode.name()));
            match measure(
                &cfg,
                mode,
                &opener,
                &data,
                &info,
                args.steps,
                &ckpt,
                restartable,
            ) {
                Ok(row) => rows.push(Row {
                    device: name.to_string(),
                    ..row
                }),
                Err(e) => {
                    println!("{name}, {} mode: failed ({e:#})", mode.name());
                    failed.push(serde_json::json!({
                        "device": name, "mode": mode.name(), "error": format!("{e:#}"),
                    }));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    for r in &rows {
        if let Some(why) = &r.stopped {
            println!("{}, {} mode: {why}", r.device, r.mode);
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.device.clone(),
                r.mode.to_string(),
                r.ms_per_update.cell(1),
                format!("{:.0}", r.compile_ms_start),
                r.compile_ms_per_update.cell(1),
                r.staging_ms_per_update.cell(2),
                format!("{:.0}", r.evals_per_update.median),
                format!("{:.0}", r.compiles_per_update.median),
                r.restarts.to_string(),
                format!("{:.2}", r.wall_s),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "device",
                "mode",
                "ms/update",
                "compile ms at start",
                "compile ms/update",
                "staging ms/update",
                "evals/update",
                "compiles/update",
                "restarts",
                "wall s",
            ],
            &cells
        )
    );
    if let Some(path) = &args.json {
        let j = serde_json::json!({
            "bench": "weight-modes",
            "machine": machine,
            "model": cfg.name,
            "steps": args.steps,
            "max_compiles": limit,
            "rows": rows,
            "unavailable": unavailable,
            "failed": failed,
        });
        write_json(path, &j)?;
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Opens device `name` with a fresh compile budget of `limit` (ane-sim) — one "process".
fn open(name: &str, limit: usize) -> Result<Arc<dyn Device>> {
    Ok(match name {
        "ane-sim" => {
            let budget: Arc<dyn CompileCounter> = Arc::new(CompileBudget::new(limit));
            Arc::new(CpuDevice::new(Fidelity::Ane).with_compile_budget(budget))
        }
        "ane" => {
            CompileBudget::init_global(limit)?;
            ane_runtime::open("ane")?
        }
        other => ane_runtime::open(other)?,
    })
}

fn settings(steps: u64) -> TrainSettings {
    TrainSettings {
        steps,
        accum: 1,
        batch: 1,
        schedule: Schedule {
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 0,
            total: steps,
        },
        adamw: AdamWConfig::default(),
        seed: 1,
    }
}

/// Trains `steps` updates in `mode`; `restartable`: whether a spent compile budget can be
/// renewed by opening the device again (else the row stops there).
#[allow(clippy::too_many_arguments)]
fn measure(
    cfg: &ModelConfig,
    mode: WeightMode,
    opener: &dyn Fn() -> Result<Arc<dyn Device>>,
    data: &TokenData,
    info: &CorpusInfo,
    steps: u64,
    ckpt: &std::path::Path,
    restartable: bool,
) -> Result<Row> {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let wall = Instant::now();
    let (dev, mut counts) = CountingDevice::new(opener()?);
    let model = Model::new(cfg.clone(), dev, mode, init_params(cfg, 1))?;
    let compile_ms_start = ms(wall.elapsed());
    let mut trainer = Trainer::new(model, settings(steps), info.clone())?;
    let (mut per, mut compile, mut staging, mut evals, mut compiles) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut restarts, mut final_loss, mut just_restarted) = (0, f32::NAN, false);
    let mut stopped = None;
    loop {
        let before = (trainer.totals(), counts.evals(), counts.compiles());
        match trainer.step(data)? {
            StepOutcome::Updated(r) => {
                just_restarted = false;
                let after = trainer.totals();
                let wu = ms(after.weight_update - before.0.weight_update);
                let traffic = ms(after.traffic - before.0.traffic);
                let baked = mode == WeightMode::Baked;
                per.push(ms(r.elapsed));
                compile.push(if baked { wu } else { 0.0 });
                staging.push(traffic + if baked { 0.0 } else { wu });
                evals.push((counts.evals() - before.1) as f64);
                compiles.push((counts.compiles() - before.2) as f64);
                final_loss = r.loss;
            }
            StepOutcome::Finished => break,
            StepOutcome::RestartNeeded { needed, remaining } => {
                if just_restarted || !restartable {
                    stopped = Some(format!(
                        "stopped after {} of {steps} updates: the next needs {needed} compiles, \
                         {remaining} are left in this process (`bench accum` measures the \
                         restarts)",
                        per.len()
                    ));
                    break;
                }
                trainer.save(ckpt)?;
                let (dev, c) = CountingDevice::new(opener()?);
                counts = c;
                let read = checkpoint::read(ckpt)?;
                trainer = Trainer::resume(read, dev, mode, info)?;
                restarts += 1;
                just_restarted = true;
            }
        }
    }
    Ok(Row {
        device: String::new(),
        mode: mode.name(),
        updates: per.len() as u64,
        ms_per_update: Stat::of(per),
        compile_ms_start,
        compile_ms_per_update: Stat::of(compile),
        staging_ms_per_update: Stat::of(staging),
        evals_per_update: Stat::of(evals),
        compiles_per_update: Stat::of(compiles),
        restarts,
        wall_s: wall.elapsed().as_secs_f64(),
        final_loss,
        stopped,
    })
}
