//! What `ane-train train` writes about itself: where its run directory is, its efficiency
//! report (`report.json`, written atomically, with the whole restart chain's totals).

use std::path::PathBuf;
use std::sync::Arc;

use ane_runtime::Device;
use ane_train::kernels::WeightMode;
use ane_train::model::ModelConfig;
use ane_train::report::EfficiencyReport;
use ane_train::trainer::Trainer;
use anyhow::{Context, Result};

use super::run_chain::Chain;
use super::train::TrainArgs;

/// The run directory: `--out`, else the resumed checkpoint's directory, else
/// `runs/<model name>`.
pub(crate) fn run_dir_of(args: &TrainArgs, cfg: &ModelConfig) -> PathBuf {
    if let Some(o) = &args.out {
        return o.clone();
    }
    match args.resume.as_ref().and_then(|r| r.parent()) {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        Some(_) => PathBuf::from("."),
        None => PathBuf::from("runs").join(&cfg.name),
    }
}

/// This process's efficiency report.
pub(crate) fn report_of(
    trainer: &Trainer,
    device: &Arc<dyn Device>,
    mode: WeightMode,
    step_times: &[std::time::Duration],
    last_loss: Option<f32>,
    eval_loss: Option<f32>,
) -> EfficiencyReport {
    let model = trainer.model();
    EfficiencyReport::new(
        model.config(),
        &device.capabilities().description,
        mode.name(),
        &trainer.totals(),
        step_times,
        model.compile_count(),
        last_loss,
        eval_loss,
    )
}

/// The chain's totals with this process's added.
pub(crate) fn chain_of(earlier: &Chain, trainer: &Trainer) -> Chain {
    let t = trainer.totals();
    earlier.plus(
        t.updates,
        t.wall.as_secs_f64(),
        trainer.model().compile_count() as u64,
    )
}

/// `report.json` as written: this process's report, the whole chain's totals, and whether
/// the run was interrupted (Ctrl-C).
#[derive(serde::Serialize)]
struct ReportFile<'a> {
    #[serde(flatten)]
    report: &'a EfficiencyReport,
    chain: Chain,
    interrupted: bool,
}

/// Writes the report atomically to `--json` (default `<out>/report.json`); returns its path.
pub(crate) fn write_report(
    args: &TrainArgs,
    out: &std::path::Path,
    report: &EfficiencyReport,
    chain: Chain,
    interrupted: bool,
) -> Result<PathBuf> {
    let path = args.json.clone().unwrap_or_else(|| out.join("report.json"));
    let file = ReportFile {
        report,
        chain,
        interrupted,
    };
    let text = serde_json::to_string_pretty(&file)? + "\n";
    ane_train::atomic::write_atomic(&path, |w| {
        use std::io::Write;
        w.write_all(text.as_bytes())
    })
    .with_context(|| format!("writing the report {}", path.display()))?;
    Ok(path)
}
