//! `ane-train tokenizer train`: learn a BPE tokenizer from a text corpus and write it as a
//! llama2.c `tokenizer.bin`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ane_train::data::{corpus, split_documents};
use ane_train::tokenizer::train_bpe;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};

/// Tokenizer commands.
#[derive(Debug, Subcommand)]
pub enum TokenizerCommand {
    /// Learn a BPE tokenizer of a chosen size from a corpus; write a llama2.c tokenizer.bin.
    Train(TrainTokenizerArgs),
}

/// Arguments of `ane-train tokenizer train`.
#[derive(Debug, Args)]
pub struct TrainTokenizerArgs {
    /// Text corpus (documents separated by blank lines), or `builtin`.
    #[arg(long)]
    pub corpus: String,
    /// Number of ids (3 specials + 256 byte pieces + learned pieces).
    #[arg(long, default_value_t = 512)]
    pub vocab: usize,
    /// The tokenizer.bin to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs a tokenizer command.
pub fn run(cmd: &TokenizerCommand) -> Result<ExitCode> {
    let TokenizerCommand::Train(args) = cmd;
    let text = if args.corpus == "builtin" {
        corpus::builtin().into_bytes()
    } else {
        std::fs::read(&args.corpus).with_context(|| format!("reading corpus {}", args.corpus))?
    };
    let start = Instant::now();
    let docs: Vec<String> = split_documents(&text)
        .into_iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect();
    let tok = train_bpe(docs.iter(), args.vocab)?;
    tok.write(&args.out)?;
    let ids: usize = docs
        .iter()
        .map(|d| tok.encode(d.as_bytes(), true, false).len())
        .sum();
    println!(
        "{} ids learned from {} documents ({} bytes) in {:.1} s; the corpus encodes to {ids} ids \
         ({:.2} bytes/id); wrote {}",
        tok.vocab_size(),
        docs.len(),
        text.len(),
        start.elapsed().as_secs_f64(),
        text.len() as f64 / ids.max(1) as f64,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
