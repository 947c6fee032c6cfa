//! `ane-train demo`: the most complete demo that exists until the trainer lands.

use std::path::PathBuf;
use std::process::ExitCode;

use ane_mil::blob::{BlobFile, BlobWriter};
use ane_mil::samples;
use anyhow::{ensure, Context};
use clap::Args;

/// Arguments of `ane-train demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory to write `model.mil` and `weights/rms.bin` into (default: a fresh temp dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Channels of the RMSNorm kernel, 1 to 65536.
    #[arg(long, default_value_t = 768,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65_536))]
    pub dim: usize,
    /// Sequence length of the RMSNorm kernel.
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
}

/// Builds the RMSNorm kernel, writes its MIL and weight blob, reads both back and checks them.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let program = samples::rmsnorm(args.dim, args.seq).context("building the RMSNorm kernel")?;
    let text = ane_mil::print(&program);
    let dir = match &args.out {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("ane-train-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(dir.join("weights"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let weights: Vec<f32> = (0..args.dim)
        .map(|c| 1.0 + c as f32 / args.dim as f32)
        .collect();
    let mut blob = BlobWriter::new();
    let offset = blob.add_f32_as_f16(&weights);
    ensure!(
        offset == 64,
        "the single weight blob must sit at offset 64, got {offset}"
    );
    let blob_path = dir.join("weights/rms.bin");
    std::fs::write(&blob_path, blob.finish())
        .with_context(|| format!("writing {}", blob_path.display()))?;
    let mil_path = dir.join("model.mil");
    std::fs::write(&mil_path, &text).with_context(|| format!("writing {}", mil_path.display()))?;

    let reread = std::fs::read_to_string(&mil_path)?;
    let parsed =
        ane_mil::parse(&reread).map_err(|e| anyhow::anyhow!("{}:{e}", mil_path.display()))?;
    ensure!(
        parsed == program,
        "the MIL text did not read back to the same program"
    );
    let bytes = std::fs::read(&blob_path)?;
    let file =
        BlobFile::parse(&bytes).with_context(|| format!("reading {}", blob_path.display()))?;
    let back = file.read_f32(offset, args.dim)?;
    ensure!(
        back.iter()
            .zip(&weights)
            .all(|(a, b)| (a - b).abs() <= b.abs() * 1e-3),
        "weights changed on the round trip"
    );

    println!("{text}");
    println!(
        "# RMSNorm kernel: x [1,{d},1,{s}] fp16 -> y [1,{d},1,{s}] fp16",
        d = args.dim,
        s = args.seq
    );
    println!(
        "# wrote {} ({} statements) and {} ({} bytes, fp16 weights at blob offset {offset})",
        mil_path.display(),
        program.functions[0].body.len(),
        blob_path.display(),
        bytes.len()
    );
    println!("# both read back and verified: MIL parses to the same program, weights match");
    Ok(ExitCode::SUCCESS)
}
