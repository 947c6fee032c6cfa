//! `ane-train corpus`: write the built-in corpus (or another generated one) as text, to look
//! at it or to train another program on exactly the same data.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use ane_train::data::corpus;
use anyhow::{Context, Result};
use clap::Args;

/// The most stories one `corpus` writes (about 480 bytes each: ~480 MB); more is refused
/// rather than attempted in memory.
pub const MAX_STORIES: usize = 1_000_000;

/// Arguments of `ane-train corpus`.
#[derive(Debug, Args)]
pub struct CorpusArgs {
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the generator (the built-in corpus uses the default).
    #[arg(long, default_value_t = corpus::DEFAULT_SEED)]
    pub seed: u64,
    /// Number of stories (the built-in corpus has the default); at most [`MAX_STORIES`].
    #[arg(long, default_value_t = corpus::DEFAULT_STORIES)]
    pub stories: usize,
}

/// Runs `ane-train corpus`.
pub fn run(args: &CorpusArgs) -> Result<ExitCode> {
    if args.stories > MAX_STORIES {
        anyhow::bail!(
            "--stories is {}; at most {MAX_STORIES} stories can be generated",
            args.stories
        );
    }
    let text = corpus::generate(args.seed, args.stories);
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(e).context("writing to standard output");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
