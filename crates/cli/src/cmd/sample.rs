//! `ane-train sample`: continue a prompt from a checkpoint; and the sampling shared with the
//! end of `ane-train train`.

use std::path::PathBuf;
use std::process::ExitCode;

use ane_train::checkpoint;
use ane_train::data::ByteTokenizer;
use ane_train::kernels::WeightMode;
use ane_train::llama::Model;
use ane_train::sample::{generate, SampleOptions};
use ane_train::tokenizer::TextTokenizer;
use anyhow::{bail, Context, Result};
use clap::Args;

use super::train::check_vocab;

/// Arguments of `ane-train sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// The checkpoint to sample from.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Device: auto, ane, ane-sim or cpu.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Prompt.
    #[arg(long, default_value = "Once upon a time")]
    pub prompt: String,
    /// Bytes to generate at most.
    #[arg(long, default_value_t = 400)]
    pub tokens: usize,
    /// Sampling temperature (0: always the most likely byte).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Seed of the sampling RNG.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Refuses a prompt the model cannot see whole (BOS + bytes must fit one window), a
/// temperature that is not a finite number >= 0, and more than [`MAX_SAMPLE_TOKENS`] tokens.
pub(crate) fn check_sample_args(
    prompt: &str,
    temperature: f32,
    tokens: usize,
    seq_len: usize,
) -> Result<()> {
    if tokens > MAX_SAMPLE_TOKENS {
        bail!(
            "--tokens (--sample-tokens for train) is {tokens}; at most {MAX_SAMPLE_TOKENS} tokens \
             can be sampled"
        );
    }
    if prompt.len() + 1 > seq_len {
        bail!(
            "the prompt is {} bytes; this model sees at most {} (--prompt)",
            prompt.len(),
            seq_len - 1
        );
    }
    if !(temperature.is_finite() && temperature >= 0.0) {
        bail!("--temperature must be a finite number >= 0, got {temperature}");
    }
    Ok(())
}

/// The most tokens one `sample` (or the sample at the end of `train`) generates: each token is a
/// full-window forward pass, so more than this would run for days.
pub(crate) const MAX_SAMPLE_TOKENS: usize = 100_000;

/// Continues `prompt` for up to `tokens` (at most [`MAX_SAMPLE_TOKENS`]) tokens of `tok`;
/// returns prompt + continuation.
pub(crate) fn sample(
    model: &mut Model,
    tok: &TextTokenizer,
    prompt: &str,
    tokens: usize,
    temperature: f32,
    seed: u64,
) -> Result<String> {
    let ids = tok.encode(prompt.as_bytes(), true);
    check_sample_args(prompt, temperature, tokens, model.config().seq_len)?;
    let opts = SampleOptions {
        max_tokens: tokens,
        temperature,
        vocab_limit: tok.vocab_size(),
        stop: [Some(ByteTokenizer::BOS), Some(ByteTokenizer::EOS)],
        seed,
    };
    let mut new = generate(model, &ids, &opts)?;
    if new.last().is_some_and(|t| opts.stop.contains(&Some(*t))) {
        new.pop();
    }
    let last = ids.last().copied().unwrap_or(ByteTokenizer::BOS);
    let text = String::from_utf8_lossy(&tok.decode(last, &new)).into_owned();
    Ok(format!("{prompt}{text}"))
}

/// Runs `ane-train sample`.
pub fn run(args: &SampleArgs) -> Result<ExitCode> {
    let ckpt = checkpoint::read(&args.checkpoint)
        .with_context(|| format!("reading checkpoint {}", args.checkpoint.display()))?;
    check_vocab(&ckpt.header.model)?;
    let device = ane_runtime::open(&args.device)?;
    let mut model = Model::new(ckpt.header.model, device, WeightMode::Params, ckpt.params)?;
    let text = sample(
        &mut model,
        &ckpt.tokenizer,
        &args.prompt,
        args.tokens,
        args.temperature,
        args.seed,
    )?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}
