//! `ane-train tokenize`: a text corpus to a pretokenized `u16` token file (TinyStories shard
//! format: BOS before each document; documents are separated by blank lines).

use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ane_train::data::shards::write_ids;
use ane_train::data::split_documents;
use ane_train::tokenizer::{Llama2cTokenizer, TextTokenizer};
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// Arguments of `ane-train tokenize`.
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// A llama2.c `tokenizer.bin`, or `bytes` for the byte tokenizer.
    #[arg(long)]
    pub tokenizer: String,
    /// Text corpus (documents separated by blank lines).
    #[arg(long)]
    pub corpus: PathBuf,
    /// Token file to write (little-endian u16 ids).
    #[arg(long)]
    pub out: PathBuf,
}

/// Documents encoded per progress update.
const CHUNK: usize = 4096;

/// Runs `ane-train tokenize`.
pub fn run(args: &TokenizeArgs) -> Result<ExitCode> {
    let tok = if args.tokenizer == "bytes" {
        TextTokenizer::Bytes
    } else {
        TextTokenizer::Llama2c(
            Llama2cTokenizer::read(args.tokenizer.as_ref())
                .with_context(|| format!("reading tokenizer {}", args.tokenizer))?,
        )
    };
    if tok.vocab_size() > 1 << 16 {
        bail!(
            "the tokenizer has {} ids; a u16 token file holds at most 65536",
            tok.vocab_size()
        );
    }
    let text = std::fs::read(&args.corpus)
        .with_context(|| format!("reading corpus {}", args.corpus.display()))?;
    let docs = split_documents(&text);
    let tmp = args
        .out
        .with_extension(format!("tmp{}", std::process::id()));
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let bar = ProgressBar::new(text.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "  [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let mut n_tokens = 0usize;
    for chunk in docs.chunks(CHUNK) {
        let ids: Vec<Vec<u32>> = chunk.par_iter().map(|d| tok.encode(d, true)).collect();
        for d in &ids {
            write_ids(&mut w, d)?;
            n_tokens += d.len();
        }
        bar.inc(chunk.iter().map(|d| d.len() as u64).sum());
        bar.set_message(format!("{n_tokens} tokens"));
    }
    bar.finish_and_clear();
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &args.out).with_context(|| format!("writing {}", args.out.display()))?;
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{} documents, {} bytes -> {n_tokens} tokens ({:.2} bytes/token) in {secs:.2} s: \
         {:.2} MB/s, {:.0} tokens/s; wrote {}",
        docs.len(),
        text.len(),
        text.len() as f64 / n_tokens.max(1) as f64,
        text.len() as f64 / secs / 1e6,
        n_tokens as f64 / secs,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
