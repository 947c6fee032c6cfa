//! `ane-train export`: write a model as a llama2.c `model.bin` (version 0, what `run.c`
//! reads) or a Hugging Face safetensors directory, and/or its `tokenizer.bin`.

use std::path::PathBuf;
use std::process::ExitCode;

use ane_train::formats::{llama2c, load_weights, safetensors, WeightsSource};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use super::generate::resolve_tokenizer;

/// Output format of `ane-train export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// llama2.c `model.bin`, legacy version 0.
    Llama2c,
    /// Hugging Face directory: `config.json` + `model.safetensors`.
    Safetensors,
}

/// Arguments of `ane-train export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The model: our checkpoint, a llama2.c `model.bin`, a safetensors directory or a
    /// maderix/ANE checkpoint.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Format of --out.
    #[arg(long, value_enum, requires = "out")]
    pub format: Option<ExportFormat>,
    /// The file (llama2c) or directory (safetensors) to write.
    #[arg(long, requires = "format")]
    pub out: Option<PathBuf>,
    /// Also write the model's tokenizer as a llama2.c `tokenizer.bin` (the byte tokenizer
    /// too).
    #[arg(long)]
    pub tokenizer_out: Option<PathBuf>,
    /// The tokenizer to write with --tokenizer-out when the model file carries none.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// Runs `ane-train export`.
pub fn run(args: &ExportArgs) -> Result<ExitCode> {
    if args.out.is_none() && args.tokenizer_out.is_none() {
        bail!("nothing to do: give --format and --out, and/or --tokenizer-out");
    }
    let w = load_weights(&args.checkpoint)
        .with_context(|| format!("reading {}", args.checkpoint.display()))?;
    if let (Some(format), Some(out)) = (args.format, &args.out) {
        match format {
            ExportFormat::Llama2c => {
                let rope = (w.source == WeightsSource::Llama2c)
                    .then_some(w.llama2c_rope.as_deref())
                    .flatten();
                llama2c::write_v0(out, &w.config, &w.params, rope)?
            }
            ExportFormat::Safetensors => safetensors::write_dir(out, &w.config, &w.params)?,
        }
        println!(
            "wrote {} ({:?}, {} parameters)",
            out.display(),
            format,
            w.params.len()
        );
    }
    if let Some(t) = &args.tokenizer_out {
        let tok = resolve_tokenizer(args.tokenizer.as_deref(), &w)?;
        tok.to_llama2c().write(t)?;
        println!("wrote {} ({} ids)", t.display(), tok.vocab_size());
    }
    Ok(ExitCode::SUCCESS)
}
