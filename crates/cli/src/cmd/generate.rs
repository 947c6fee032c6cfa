//! `ane-train generate`: KV-cached text generation from our checkpoint, a llama2.c
//! `model.bin`, or any model file `load_weights` reads, streamed to stdout as `run.c` does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use ane_train::formats::{load_weights, Weights};
use ane_train::generate::{generate, Decoder, Sampler};
use ane_train::tokenizer::{is_printable, Llama2cTokenizer, TextTokenizer};
use anyhow::{bail, Context, Result};
use clap::Args;

/// Arguments of `ane-train generate`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("model").required(true).args(["checkpoint", "model_file"])))]
pub struct GenerateArgs {
    /// Our checkpoint (it carries its tokenizer), or a safetensors directory or a maderix/ANE
    /// checkpoint.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// A llama2.c `model.bin` (version 0 or 1); needs --tokenizer.
    #[arg(long)]
    pub model_file: Option<PathBuf>,
    /// A llama2.c `tokenizer.bin` (overrides the checkpoint's).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Prompt text (empty: start from BOS alone).
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Positions to run, prompt included (clipped to the model's seq_len, as run.c does).
    #[arg(long, default_value_t = 256)]
    pub steps: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely ids up to this much probability (0 or 1: off).
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    /// Seed of the sampler's xorshift generator (run.c's --seed); default: the clock.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The tokenizer to use: `--tokenizer`, else the one the weights carry.
pub(crate) fn resolve_tokenizer(given: Option<&Path>, w: &Weights) -> Result<TextTokenizer> {
    let tok = match given {
        Some(p) => TextTokenizer::Llama2c(
            Llama2cTokenizer::read(p)
                .with_context(|| format!("reading tokenizer {}", p.display()))?,
        ),
        None => match &w.tokenizer {
            Some(t) => t.clone(),
            None => bail!(
                "{} carries no tokenizer: give --tokenizer tokenizer.bin",
                w.path.display()
            ),
        },
    };
    if tok.vocab_size() > w.config.vocab_size {
        bail!(
            "the tokenizer has {} ids, the model's vocabulary only {}",
            tok.vocab_size(),
            w.config.vocab_size
        );
    }
    Ok(tok)
}

/// Runs `ane-train generate`.
pub fn run(args: &GenerateArgs) -> Result<ExitCode> {
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        bail!(
            "--temperature must be a finite number >= 0, got {}",
            args.temperature
        );
    }
    if !(0.0..=1.0).contains(&args.top_p) {
        bail!("--top-p must be in [0, 1], got {}", args.top_p);
    }
    let path = args
        .checkpoint
        .as_ref()
        .or(args.model_file.as_ref())
        .context("give --checkpoint or --model-file")?;
    let w = load_weights(path).with_context(|| format!("reading {}", path.display()))?;
    let tok = resolve_tokenizer(args.tokenizer.as_deref(), &w)?;
    let prompt = tok.encode(args.prompt.as_bytes(), true);
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let mut sampler = Sampler::new(args.temperature, args.top_p, seed);
    let mut dec = Decoder::new(&w.config, &w.params)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = None;
    let start = Instant::now();
    let tokens = generate(&mut dec, &prompt, args.steps, &mut sampler, |prev, next| {
        let piece = tok.decode_piece(prev, next);
        let show = match tok {
            TextTokenizer::Bytes => true,
            TextTokenizer::Llama2c(_) => is_printable(&piece),
        };
        if show && failed.is_none() {
            if let Err(e) = out.write_all(&piece).and_then(|()| out.flush()) {
                failed = Some(e);
            }
        }
    })?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(e) = failed {
        return Err(e).context("writing to stdout");
    }
    writeln!(out)?;
    let produced = tokens.len().saturating_sub(1);
    eprintln!(
        "{produced} tokens in {secs:.2} s: {:.1} tokens/s",
        produced as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
