//! `ane-train`: train LLaMA-family models on the Apple Neural Engine or any CPU.
//!
//! The binary is thin: it parses arguments, calls the libraries, and renders errors once.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Command-line interface of ane-train.
#[derive(Debug, Parser)]
#[command(
    name = "ane-train",
    version,
    about = "Train LLaMA-family models on the Apple Neural Engine or any CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model (default: `tiny`, 264K parameters, on the built-in corpus), then print an efficiency
    /// report and a text sample.
    Train(Box<cmd::train::TrainArgs>),
    /// Generate text from a checkpoint (full-window forward on the training device; see
    /// `generate` for KV-cached decoding of any model file).
    Sample(cmd::sample::SampleArgs),
    /// Generate text with a KV cache from our checkpoint or a llama2.c model.bin, streamed.
    Generate(cmd::generate::GenerateArgs),
    /// Export a model as llama2.c model.bin or Hugging Face safetensors, and its tokenizer.
    Export(cmd::export::ExportArgs),
    /// Tokenize a text corpus into a u16 token file (BOS before each document).
    Tokenize(cmd::tokenize::TokenizeArgs),
    /// Tokenizers (train a BPE tokenizer.bin).
    #[command(subcommand)]
    Tokenizer(cmd::tokenizer::TokenizerCommand),
    /// Write the built-in training corpus (generated stories) as text.
    Corpus(cmd::corpus::CorpusArgs),
    /// Build a demo kernel (RMSNorm with a baked weight), write its MIL and weight blob, read
    /// both back and check them.
    Demo(cmd::demo::DemoArgs),
    /// Work with MIL program text.
    #[command(subcommand)]
    Mil(cmd::mil::MilCommand),
    /// Hardware smoke test: one small kernel per weight mode, checked against the CPU device.
    Selftest(cmd::selftest::SelftestArgs),
    /// Plot the training and held-out loss of a `train --metrics` file as a PNG.
    Plot(cmd::plot::PlotArgs),
    /// Benchmarks (print a table; --json writes the numbers).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => cmd::train::run(&args),
        Command::Sample(args) => cmd::sample::run(&args),
        Command::Generate(args) => cmd::generate::run(&args),
        Command::Export(args) => cmd::export::run(&args),
        Command::Tokenize(args) => cmd::tokenize::run(&args),
        Command::Tokenizer(c) => cmd::tokenizer::run(&c),
        Command::Corpus(args) => cmd::corpus::run(&args),
        Command::Demo(args) => cmd::demo::run(&args),
        Command::Mil(c) => cmd::mil::run(&c),
        Command::Bench(c) => cmd::bench::run(&c),
        Command::Plot(args) => cmd::plot::run(&args),
        Command::Selftest(args) => cmd::selftest::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ane-train: {e:#}");
            ExitCode::FAILURE
        }
    }
}
