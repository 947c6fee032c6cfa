//! Helpers shared by the CLI's integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `ane-train` binary, with the environment's settings removed (a test sets its own).
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ane-train"));
    c.env_remove("ANE_ACCUM_STEPS")
        .env_remove("ANE_MAX_COMPILES");
    c
}

/// An empty temporary directory for test `name`.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ane-train-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A one-layer model of dim 32 and 32-token windows, as a TOML file in `dir`.
pub fn tiny(dir: &Path) -> PathBuf {
    let p = dir.join("tiny.toml");
    std::fs::write(
        &p,
        "name = \"tiny\"\ndim = 32\nn_layers = 1\nn_heads = 4\nn_kv_heads = 2\nhead_dim = 8\n\
         hidden_dim = 64\nvocab_size = 259\nseq_len = 32\n",
    )
    .unwrap();
    p
}

/// Runs `cmd`; its output and stdout followed by stderr as text.
pub fn run(cmd: &mut Command) -> (Output, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// `ane-train train --device cpu --steps <steps> --out <out>`, checkpointing every update,
/// with no sample and no evaluation: the quiet run the run-directory and crash tests build on
/// (add `--model` or `--resume`).
pub fn quiet_train(out: &Path, steps: &str) -> Command {
    let mut c = bin();
    c.arg("train")
        .args(["--device", "cpu", "--steps", steps])
        .args([
            "--checkpoint-every",
            "1",
            "--sample-tokens",
            "0",
            "--eval-every",
            "0",
        ])
        .arg("--out")
        .arg(out);
    c
}

/// The update count recorded in the checkpoint at `p` (panics naming the file if it does not
/// load).
pub fn checkpoint_step(p: &Path) -> u64 {
    ane_train::checkpoint::read(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .header
        .step
}
