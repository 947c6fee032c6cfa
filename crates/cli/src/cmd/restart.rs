//! How `ane-train train` survives: Ctrl-C checkpoints between updates, and a run whose compile
//! budget is spent re-executes itself from its checkpoint.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

/// Environment variable counting self-restarts of one run (for messages only).
pub(crate) const ENV_RESTARTS: &str = "ANE_TRAIN_RESTARTS";

/// A flag that Ctrl-C (SIGINT/SIGTERM) sets, so the loop can checkpoint between updates and
/// exit instead of dying mid-update. Where no handler can be installed (one already exists),
/// the flag simply never rises and the periodic checkpoints are what survives.
pub(crate) fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let setter = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if setter.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C while the checkpoint is written: leave at once.
            std::process::exit(130);
        }
    });
    flag
}

/// Flags (each taking a value) that a resumed run takes from its checkpoint instead.
const FROM_CHECKPOINT: [&str; 10] = [
    "--resume",
    "--model",
    "--seq-len",
    "--lr",
    "--min-lr",
    "--warmup",
    "--accum",
    "--weight-decay",
    "--grad-clip",
    "--seed",
];

/// Re-executes this program with `--resume <checkpoint>`, dropping the flags the checkpoint
/// now provides; `chain` (the [`super::run_chain::ENV_CHAIN`] value) hands the totals so far
/// to the next process. On Unix the same pid continues, so it keeps the run-directory lock.
pub(crate) fn restart(ckpt: &Path, chain: &str) -> Result<ExitCode> {
    let mut args: Vec<OsString> = Vec::new();
    let mut skip = false;
    for a in std::env::args_os().skip(1) {
        if std::mem::take(&mut skip) {
            continue;
        }
        let text = a.to_string_lossy();
        if FROM_CHECKPOINT.contains(&text.as_ref()) {
            skip = true;
            continue;
        }
        if FROM_CHECKPOINT
            .iter()
            .any(|f| text.starts_with(&format!("{f}=")))
        {
            continue;
        }
        args.push(a);
    }
    args.push("--resume".into());
    args.push(ckpt.as_os_str().to_owned());
    let n: u64 = std::env::var(ENV_RESTARTS)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        + 1;
    let exe = std::env::current_exe().context("finding this program to restart it")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&args)
        .env(ENV_RESTARTS, n.to_string())
        .env(super::run_chain::ENV_CHAIN, chain);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = cmd.exec();
        Err(err).context("restarting")
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status().context("restarting")?;
        Ok(if status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
