//! `ane-train train`: train a model on the built-in corpus (or a text file), checkpointing as
//! it goes, then print an efficiency report and a text sample.
//!
//! When the compile budget cannot fit the next Baked update, the run writes its checkpoint
//! and re-executes itself with `--resume` (a fresh process gets a fresh budget).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ane_runtime::budget::{CompileBudget, CompileCounter};
use ane_runtime::cpu::CpuDevice;
use ane_runtime::{Device, Fidelity};
use ane_train::checkpoint::{CorpusInfo, TrainSettings};
use ane_train::data::{corpus, ByteTokenizer};
use ane_train::kernels::WeightMode;
use ane_train::llama::{Model, ModelOptions};
use ane_train::model::ModelConfig;
use ane_train::optim::{AdamWConfig, Schedule};
use ane_train::trainer::{StepOutcome, Trainer};
use anyhow::{bail, Context, Result};
use clap::Args;

use super::knobs::{self, ENV_ACCUM_STEPS};
use super::metrics::{Line, MetricsLog};
use super::progress::Progress;
use super::restart::{interrupt_flag, restart, ENV_RESTARTS};
use super::run_chain::Chain;
use super::run_dir::{self, RunLock, Saver};
use super::sample::{check_sample_args, sample};
use super::train_inputs::{initial_params, inputs, new_model_config, start, Inputs};
use super::train_report::{chain_of, report_of, run_dir_of, write_report};

/// Arguments of `ane-train train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Model preset (tiny, stories260k, stories15m, stories42m, stories110m, qwen3-0.6b) or a
    /// TOML file [default: tiny, Stories260K's layers with 128-token windows].
    #[arg(long)]
    pub model: Option<String>,
    /// Override the model's window length (RoPE has no learned positions, so any multiple of
    /// 16 works; shorter windows train faster per token).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Device: auto (the Neural Engine where there is one, else cpu), ane, ane-sim or cpu.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Weight mode: params (weights as inputs), packed, or baked (recompiles every update).
    #[arg(long, default_value = "params")]
    pub mode: String,
    /// Training text: `builtin` (generated stories) or a text file (documents separated by
    /// blank lines).
    #[arg(long, default_value = "builtin")]
    pub corpus: String,
    /// Updates in the whole run [default: 3000]. With --resume: a larger value extends the
    /// run (the cosine decay is stretched to the new end, so the learning rate rises again).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Micro-steps per update (gradient accumulation), 1 to 10000 [default: ANE_ACCUM_STEPS,
    /// else 1 in every weight mode; upstream's 10 suits Baked mode, where every update
    /// recompiles and fewer updates mean fewer restarts].
    #[arg(long)]
    pub accum: Option<u32>,
    /// Windows per micro-step, run side by side as one [C, B·S] pass (needs the cpu kernel
    /// set, i.e. `--device cpu`) [default: 1]. An update sees accum × batch windows.
    #[arg(long)]
    pub batch: Option<u32>,
    /// Peak learning rate; default by model width: 3e-3 up to dim 128, 1e-3 up to 512, else
    /// 3e-4.
    #[arg(long)]
    pub lr: Option<f32>,
    /// Final learning rate (cosine decay ends there); default lr/10.
    #[arg(long)]
    pub min_lr: Option<f32>,
    /// Warmup updates; default 5 % of the steps.
    #[arg(long)]
    pub warmup: Option<u64>,
    /// AdamW weight decay, matrices only [default: 0.1].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Clip the gradient's global norm to this, 0 for no clipping [default: 1].
    #[arg(long)]
    pub grad_clip: Option<f32>,
    /// Seed of the initial weights, the window order and the sample [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory of the run: checkpoints (`checkpoint.bin`), the report (`report.json`) and
    /// a `lock` naming the process using it (a second run there is refused; a lock left by a
    /// killed process is taken over). Default: with --resume, the checkpoint's own directory,
    /// else `runs/<model name>`. A fresh run in a directory holding another run's checkpoints
    /// moves them aside to `checkpoint.prev.bin`, `checkpoint.prev2.bin`, … (the first free
    /// name), so none is ever lost.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write a checkpoint every this many updates (0: only at the end). A periodic save that
    /// fails (disk full, permissions) warns and is retried at the next one; the final save
    /// failing is an error.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: u64,
    /// Checkpoint generations kept, at least 1: `checkpoint.bin` is the newest complete one,
    /// `checkpoint.1.bin` the save before it, and so on.
    #[arg(long, default_value_t = 2)]
    pub keep: usize,
    /// Continue the run saved in this checkpoint (its settings win over the flags above,
    /// except --steps, which may extend the run). It continues in the checkpoint's directory
    /// unless --out says otherwise; an --out holding a different run's checkpoint is refused.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Print the held-out loss every this many updates (0: only at the end).
    #[arg(long, default_value_t = 500)]
    pub eval_every: u64,
    /// Held-out windows per evaluation.
    #[arg(long, default_value_t = 8)]
    pub eval_windows: usize,
    /// Kernel compiles allowed per process (default: ANE_MAX_COMPILES, else 100).
    #[arg(long)]
    pub max_compiles: Option<usize>,
    /// After training, generate this many bytes of text (0: no sample).
    #[arg(long, default_value_t = 400)]
    pub sample_tokens: usize,
    /// Prompt of the sample.
    #[arg(long, default_value = "Once upon a time")]
    pub prompt: String,
    /// Sampling temperature (0: always the most likely byte).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Also write the efficiency report as JSON to this file (default `<out>/report.json`).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Train on pretokenized u16 token files (TinyStories shard format; several allowed,
    /// comma-separated or repeated) instead of --corpus; needs --tokenizer.
    #[arg(long, value_delimiter = ',', conflicts_with = "corpus")]
    pub data: Vec<PathBuf>,
    /// The tokenizer, saved in the checkpoint: a llama2.c `tokenizer.bin` (tokenizes --corpus,
    /// names the ids of --data), `bpe` (learn one with the model's vocabulary from the
    /// corpus's training documents), or `bytes` (one id per byte) [default: the --init file's;
    /// else `bpe` when the vocabulary has more than 259 ids, `bytes` otherwise].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Start from the weights in this file (our checkpoint, llama2.c model.bin, safetensors
    /// directory, or maderix/ANE checkpoint, whose AdamW state is taken over too); the model
    /// shape comes from the file.
    #[arg(long, conflicts_with_all = ["model", "resume"])]
    pub init: Option<PathBuf>,
    /// Write one JSON line per update and per held-out evaluation to this file (appended
    /// across --resume and restarts; a new run starts it afresh).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// When the output is not a terminal, print a progress line every this many seconds
    /// (0: none); on a terminal a progress bar shows instead.
    #[arg(long, default_value_t = 30)]
    pub log_every: u64,
    /// At the end, plot the training and held-out loss of --metrics to `<out>/loss.png`.
    #[arg(long, requires = "metrics")]
    pub plot: bool,
}

fn parse_mode(name: &str) -> Result<WeightMode> {
    WeightMode::from_name(name)
        .with_context(|| format!("--mode {name:?}: expected params, packed or baked"))
}

pub(crate) fn load_config(name: &str) -> Result<ModelConfig> {
    Ok(if name.ends_with(".toml") {
        ModelConfig::from_toml_file(name)?
    } else {
        ModelConfig::preset(name)?
    })
}

/// The corpus text and its description.
pub(crate) fn load_corpus(name: &str) -> Result<(Vec<u8>, CorpusInfo)> {
    let text = if name == "builtin" {
        corpus::builtin().into_bytes()
    } else {
        std::fs::read(name).with_context(|| format!("reading corpus {name}"))?
    };
    let info = CorpusInfo::of(name, &text);
    Ok((text, info))
}

pub(crate) fn check_vocab(cfg: &ModelConfig) -> Result<()> {
    if cfg.vocab_size < ByteTokenizer::VOCAB_SIZE {
        bail!(
            "model {} has a vocabulary of {}, the byte tokenizer needs at least {}",
            cfg.name,
            cfg.vocab_size,
            ByteTokenizer::VOCAB_SIZE
        );
    }
    Ok(())
}

/// Opens the training device. `ane-sim` counts compiles against the process budget like the
/// Neural Engine, so a Baked run rehearses checkpoint-and-restart on any machine.
fn open_device(name: &str, max_compiles: Option<usize>) -> Result<Arc<dyn Device>> {
    if let Some(n) = max_compiles {
        CompileBudget::init_global(n)?;
    }
    if name == "ane-sim" {
        let budget: Arc<dyn CompileCounter> = Arc::new(CompileBudget::global()?);
        return Ok(Arc::new(
            CpuDevice::new(Fidelity::Ane).with_compile_budget(budget),
        ));
    }
    Ok(ane_runtime::open(name)?)
}

/// Runs `ane-train train`.
pub fn run(args: &TrainArgs) -> Result<ExitCode> {
    let env = knobs::from_env()?;
    if let Some(n) = args.accum {
        knobs::check_accum_flag(n)?;
    }
    let mode = parse_mode(&args.mode)?;
    let device = open_device(&args.device, args.max_compiles)?;
    let Inputs {
        init,
        resumed,
        tokenizer,
        data,
        info,
    } = inputs(args)?;
    let build_ms;
    let mut trainer = match resumed {
        Some(ckpt) => {
            let given = [
                ("--model", args.model.is_some()),
                ("--seq-len", args.seq_len.is_some()),
                ("--lr", args.lr.is_some()),
                ("--min-lr", args.min_lr.is_some()),
                ("--warmup", args.warmup.is_some()),
                ("--accum", args.accum.is_some()),
                ("--batch", args.batch.is_some()),
                ("--weight-decay", args.weight_decay.is_some()),
                ("--grad-clip", args.grad_clip.is_some()),
                ("--seed", args.seed.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
                bail!(
                    "{flag} cannot be combined with --resume: a resumed run keeps the settings \
                     in its checkpoint (only --steps may extend it)"
                );
            }
            let mut ckpt = ckpt;
            let h = &mut ckpt.header;
            match args.steps {
                Some(n) if n < h.settings.steps => bail!(
                    "--steps {n} is shorter than the checkpoint's run of {} updates",
                    h.settings.steps
                ),
                Some(n) if n > h.settings.steps => {
                    println!(
                        "  extending the run from {} to {n} updates (the learning-rate decay is \
                         stretched to the new end)",
                        h.settings.steps
                    );
                    h.settings.steps = n;
                    h.settings.schedule.total = n;
                }
                _ => {}
            }
            let here = (mode.name(), device.capabilities().kind.name());
            if !h.mode.is_empty() && (h.mode.as_str(), h.device.as_str()) != here {
                println!(
                    "  note: the run was trained in {} mode on {}, it continues in {} mode on {}; \
                     the result will not be bit-identical to an uninterrupted run",
                    h.mode, h.device, here.0, here.1
                );
            }
            let t = Instant::now();
            let trainer = Trainer::resume(ckpt, device.clone(), mode, &info)?;
            build_ms = t.elapsed().as_secs_f64() * 1e3;
            trainer
        }
        None => {
            let cfg = new_model_config(args, init.as_ref(), &tokenizer)?;
            let settings = settings_from(args, &cfg, env.accum)?;
            let t = Instant::now();
            let options = ModelOptions {
                batch: settings.batch as usize,
                ..ModelOptions::default()
            };
            let params = initial_params(init.as_ref(), &cfg, settings.seed);
            let model = Model::with_options(cfg.clone(), device.clone(), mode, params, options)?;
            build_ms = t.elapsed().as_secs_f64() * 1e3;
            eprintln!(
                "compiled {} kernels in {build_ms:.0} ms",
                model.compile_count()
            );
            start(
                Trainer::new(model, settings, info.clone())?,
                init,
                tokenizer,
            )?
        }
    };
    let cfg = trainer.model().config().clone();
    // Everything that can be refused is refused before any file is touched or time spent.
    data.check(cfg.vocab_size, cfg.seq_len)?;
    if args.sample_tokens > 0 {
        check_sample_args(
            &args.prompt,
            args.temperature,
            args.sample_tokens,
            cfg.seq_len,
        )?;
    }
    let chain = Chain::inherited()?;
    let out = run_dir_of(args, &cfg);
    let mut saver = Saver::new(&out, args.keep)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // Held until this function returns (every exit path); a restart's exec keeps it.
    let _lock = RunLock::acquire(&out)?;
    for name in run_dir::remove_stale_temps(&out)? {
        println!("  removed {name}, left by an interrupted write");
    }
    let ckpt_path = saver.path();
    let fresh = args.resume.is_none();
    match &args.resume {
        Some(from) => run_dir::check_resume_target(from, &out)?,
        None => {
            if let Some(prev) = run_dir::move_previous_run(&out)? {
                println!(
                    "  (the previous run's checkpoint is now {}; continue it with --resume {} \
                     --out <another directory>)",
                    prev.display(),
                    prev.display()
                );
            }
        }
    }
    let s = *trainer.settings();
    println!(
        "ane-train train — {} ({} params, {} layers, dim {}, seq {}) on {}, {} mode",
        cfg.name,
        cfg.param_count(),
        cfg.n_layers,
        cfg.dim,
        cfg.seq_len,
        device.capabilities().description,
        mode.name()
    );
    println!(
        "  corpus {} ({} bytes: {} training tokens, {} held out); {} updates of {} x {} x {} \
         tokens, lr {:.1e} -> {:.1e}, from update {}",
        info.name,
        info.bytes,
        data.train.len(),
        data.eval.len(),
        s.steps,
        s.accum,
        s.batch,
        cfg.seq_len,
        s.schedule.lr,
        s.schedule.min_lr,
        trainer.steps_done()
    );
    let restarts = std::env::var(ENV_RESTARTS).unwrap_or_default();
    if !restarts.is_empty() {
        println!("  restart {restarts} of this run (compile budget)");
    }
    if fresh && env.accum.is_some() && args.accum.is_none() {
        println!("  accumulation {} from {ENV_ACCUM_STEPS}", s.accum);
    }
    let tokens_per_update = u64::from(s.accum) * cfg.seq_len as u64;
    let mut metrics = match &args.metrics {
        Some(p) => {
            let resume_step = args.resume.as_ref().map(|_| trainer.steps_done());
            let mut log = MetricsLog::open(p, resume_step)?;
            log.write(&Line::Start {
                step: trainer.steps_done(),
                restart: restarts.parse().unwrap_or(0),
                compiles: trainer.model().compile_count(),
                compile_ms: build_ms,
            })?;
            Some(log)
        }
        None => None,
    };
    let log_eval = |log: &mut Option<MetricsLog>, step: u64, e: Option<f32>| match (log, e) {
        (Some(log), Some(eval_loss)) => log.write(&Line::Eval {
            step,
            tokens: step * tokens_per_update,
            eval_loss,
        }),
        _ => Ok(()),
    };
    let mut bar = Progress::new(s.steps, trainer.steps_done(), args.log_every);
    let first = trainer.steps_done() + 1;
    let mut last_loss = None;
    let mut eval_loss = None;
    let mut step_times = Vec::new();
    let interrupted = interrupt_flag();
    loop {
        if interrupted.load(Ordering::SeqCst) {
            saver.save(&trainer)?;
            bar.finish();
            println!(
                "  interrupted: checkpointed at update {} in {}; continue with --resume {}",
                trainer.steps_done(),
                ckpt_path.display(),
                ckpt_path.display()
            );
            let report = report_of(&trainer, &device, mode, &step_times, last_loss, eval_loss);
            write_report(args, &out, &report, chain_of(&chain, &trainer), true)?;
            return Ok(ExitCode::from(130));
        }
        let weight_update_before = trainer.totals().weight_update;
        match trainer.step(&data)? {
            StepOutcome::Updated(r) => {
                last_loss = Some(r.loss);
                step_times.push(r.elapsed);
                let secs = r.elapsed.as_secs_f64();
                let tokens_per_s = tokens_per_update as f64 / secs.max(1e-9);
                bar.update(r.step, r.loss, r.lr, tokens_per_s);
                if let Some(log) = &mut metrics {
                    let wu = trainer.totals().weight_update - weight_update_before;
                    log.write(&Line::Update {
                        step: r.step,
                        tokens: r.step * tokens_per_update,
                        loss: r.loss,
                        lr: r.lr,
                        grad_norm: r.grad_norm,
                        ms: secs * 1e3,
                        tokens_per_s,
                        skipped: r.skipped,
                        loss_scale: r.loss_scale,
                        weight_update_ms: wu.as_secs_f64() * 1e3,
                    })?;
                }
                let every = |n: u64| n > 0 && r.step % n == 0 && r.step < s.steps;
                // Baked: evaluating needs the new weights compiled; skip it when this
                // process's budget cannot spare them (the next process evaluates later).
                if every(args.eval_every) && can_evaluate(trainer.model()) {
                    eval_loss = trainer.eval_loss(&data, args.eval_windows)?;
                    log_eval(&mut metrics, r.step, eval_loss)?;
                }
                if every(args.eval_every) || r.step == first {
                    let ev = eval_loss.map_or(String::new(), |e| format!("  held-out {e:.4}"));
                    bar.println(&format!(
                        "  update {:>6}  loss {:.4}{ev}  |g| {:.3}  lr {:.2e}  {:.0} ms",
                        r.step,
                        r.loss,
                        r.grad_norm,
                        r.lr,
                        secs * 1e3
                    ));
                }
                if every(args.checkpoint_every) {
                    if let Err(e) = saver.save(&trainer) {
                        bar.println(&format!(
                            "  warning: checkpoint at update {} failed ({e:#}); training goes \
                             on, the next save retries, the previous checkpoint is intact",
                            r.step
                        ));
                    }
                }
            }
            StepOutcome::Finished => break,
            StepOutcome::RestartNeeded { needed, remaining } => {
                saver.save(&trainer)?;
                bar.finish();
                if interrupted.load(Ordering::SeqCst) {
                    println!(
                        "  interrupted: checkpointed at update {}; continue with --resume {}",
                        trainer.steps_done(),
                        ckpt_path.display()
                    );
                    let report =
                        report_of(&trainer, &device, mode, &step_times, last_loss, eval_loss);
                    write_report(args, &out, &report, chain_of(&chain, &trainer), true)?;
                    return Ok(ExitCode::from(130));
                }
                println!(
                    "  compile budget: the next update needs {needed} compiles, {remaining} are \
                     left; checkpointed at update {} and restarting",
                    trainer.steps_done()
                );
                return restart(&ckpt_path, &chain_of(&chain, &trainer).to_env());
            }
        }
    }
    bar.finish();
    saver.save(&trainer)?;
    // Baked: the final weights' kernels are not compiled yet; evaluating and sampling need
    // them, which the compile budget may not allow in this process.
    let can_run = can_evaluate(trainer.model());
    if !can_run {
        let pending = trainer.model().pending_compiles();
        let left = trainer.model().device().compiles_remaining();
        println!(
            "  (no held-out loss or sample: the final weights need {pending} compiles, {} are \
             left in this process; run `ane-train sample --checkpoint {}`)",
            left.unwrap_or(0),
            ckpt_path.display()
        );
    }
    if interrupted.load(Ordering::SeqCst) {
        let report = report_of(&trainer, &device, mode, &step_times, last_loss, eval_loss);
        write_report(args, &out, &report, chain_of(&chain, &trainer), true)?;
        return Ok(ExitCode::from(130));
    }
    if can_run {
        let end = trainer.eval_loss(&data, args.eval_windows)?;
        log_eval(&mut metrics, trainer.steps_done(), end)?;
        eval_loss = end.or(eval_loss);
    }
    let report = report_of(&trainer, &device, mode, &step_times, last_loss, eval_loss);
    print!("{}", report.render());
    if let Some(e) = eval_loss {
        let bytes = trainer.tokenizer().decode(0, &data.eval).len();
        if bytes > 0 {
            // Comparable across tokenizers: nats per token × tokens per byte ÷ ln 2.
            let bpb = f64::from(e) * data.eval.len() as f64 / bytes as f64 / std::f64::consts::LN_2;
            println!("  held-out {e:.4} nats/token = {bpb:.3} bits/byte");
        }
    }
    let chain = chain_of(&chain, &trainer);
    if chain.processes > 1 {
        println!(
            "  whole run: {} processes ({} restarts), {} updates, {:.1} s in updates, {} compiles",
            chain.processes, chain.restarts, chain.updates, chain.train_seconds, chain.compiles
        );
    }
    let json_path = write_report(args, &out, &report, chain, false)?;
    println!(
        "checkpoint {}  report {}",
        ckpt_path.display(),
        json_path.display()
    );
    if let (true, Some(m)) = (args.plot, &args.metrics) {
        let png = out.join("loss.png");
        super::plot::write(m, &png)?;
        println!("plot {}", png.display());
    }
    if args.sample_tokens > 0 && can_run && !interrupted.load(Ordering::SeqCst) {
        let tok = trainer.tokenizer().clone();
        let text = sample(
            trainer.model_mut(),
            &tok,
            &args.prompt,
            args.sample_tokens,
            args.temperature,
            s.seed,
        )?;
        println!("\nsample (temperature {}):\n{text}", args.temperature);
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `model` can be evaluated in this process: the compiles its stale Baked kernels
/// need (if any) fit what is left of the compile budget.
fn can_evaluate(model: &Model) -> bool {
    let pending = model.pending_compiles();
    model
        .device()
        .compiles_remaining()
        .is_none_or(|left| pending <= left)
}

/// Preset of the default run: Stories260K's layers, 128-token windows (which train about
/// 2.5× more tokens per second on a CPU than its 512: attention dominates at dim 64), and
/// widths that need no padding on the Neural Engine.
const DEFAULT_MODEL: &str = "tiny";

/// The model of a new run: `--model` (default: [`DEFAULT_MODEL`]), `--seq-len` applied.
pub(crate) fn model_config(args: &TrainArgs) -> Result<ModelConfig> {
    let mut cfg = load_config(args.model.as_deref().unwrap_or(DEFAULT_MODEL))?;
    if let Some(s) = args.seq_len {
        cfg.seq_len = s;
        cfg.validate()
            .with_context(|| format!("--seq-len {s} for model {}", cfg.name))?;
    }
    check_vocab(&cfg)?;
    Ok(cfg)
}

/// The default peak learning rate for a model of width `dim`.
fn default_lr(dim: usize) -> f32 {
    match dim {
        0..=128 => 3e-3,
        129..=512 => 1e-3,
        _ => 3e-4,
    }
}

/// The settings of a new run; `env_accum` is `ANE_ACCUM_STEPS` (the flag wins over it).
fn settings_from(
    args: &TrainArgs,
    cfg: &ModelConfig,
    env_accum: Option<u32>,
) -> Result<TrainSettings> {
    let steps = args.steps.unwrap_or(3000);
    if steps == 0 {
        bail!("--steps must be at least 1");
    }
    let lr = args.lr.unwrap_or_else(|| default_lr(cfg.dim));
    let s = TrainSettings {
        steps,
        accum: args.accum.or(env_accum).unwrap_or(1),
        batch: args.batch.unwrap_or(1),
        schedule: Schedule {
            lr,
            min_lr: args.min_lr.unwrap_or(lr / 10.0),
            warmup: args.warmup.unwrap_or(steps / 20),
            total: steps,
        },
        adamw: AdamWConfig {
            weight_decay: args.weight_decay.unwrap_or(0.1),
            grad_clip: args.grad_clip.unwrap_or(1.0),
            ..AdamWConfig::default()
        },
        seed: args.seed.unwrap_or(1),
    };
    s.schedule.validate().map_err(anyhow::Error::msg)?;
    s.adamw.validate().map_err(anyhow::Error::msg)?;
    if s.accum == 0 {
        bail!("--accum must be at least 1");
    }
    if s.batch == 0 {
        bail!("--batch must be at least 1");
    }
    Ok(s)
}
