//! What every `ane-train bench` shares: medians with min and max, the machine a table was
//! measured on, markdown tables, and the command that repeats a bench.

use std::path::Path;

use ane_train::model::ModelConfig;
use anyhow::{Context, Result};

/// Median, min and max of a sample (all 0 for an empty one).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub(crate) struct Stat {
    /// The middle value (the upper one of an even-sized sample).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Stat {
    /// The statistics of `v`.
    pub(crate) fn of(mut v: Vec<f64>) -> Stat {
        if v.is_empty() {
            return Stat::default();
        }
        v.sort_by(f64::total_cmp);
        Stat {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        }
    }

    /// `{median, min, max}` as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({ "median": self.median, "min": self.min, "max": self.max })
    }

    /// `median [min, max]` with `digits` decimals.
    pub(crate) fn cell(&self, digits: usize) -> String {
        format!(
            "{:.d$} [{:.d$}, {:.d$}]",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

/// The machine a bench ran on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical cores this process may use.
    pub cores: usize,
    /// Operating system and version.
    pub os: String,
}

impl Machine {
    /// This machine, as far as it tells (`unknown` where it does not).
    pub(crate) fn detect() -> Machine {
        Machine {
            cpu: cpu_model().unwrap_or_else(|| "unknown CPU".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: os_name(),
        }
    }

    /// One line for a bench's header.
    pub(crate) fn line(&self) -> String {
        format!("machine: {} ({} cores), {}", self.cpu, self.cores, self.os)
    }
}

fn first_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once(['=', ':']))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn cpu_model() -> Option<String> {
    if cfg!(target_os = "macos") {
        return command_output("sysctl", &["-n", "machdep.cpu.brand_string"]);
    }
    first_value(
        &std::fs::read_to_string("/proc/cpuinfo").ok()?,
        "model name",
    )
}

fn os_name() -> String {
    let name = if cfg!(target_os = "macos") {
        command_output("sw_vers", &["-productVersion"]).map(|v| format!("macOS {v}"))
    } else {
        std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| first_value(&t, "PRETTY_NAME"))
    };
    let arch = std::env::consts::ARCH;
    match name {
        Some(n) => format!("{n} ({arch})"),
        None => format!("{} ({arch})", std::env::consts::OS),
    }
}

/// The model `name` (preset or TOML file) with its window length overridden by `seq_len`.
pub(crate) fn model_config(name: &str, seq_len: Option<usize>) -> Result<ModelConfig> {
    let mut cfg = super::train::load_config(name)?;
    if let Some(s) = seq_len {
        cfg.seq_len = s;
        cfg.validate()
            .with_context(|| format!("--seq-len {s} for model {}", cfg.name))?;
    }
    super::train::check_vocab(&cfg)?;
    Ok(cfg)
}

/// A markdown table.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", headers.join(" | "));
    out += &format!("|{}\n", " --- |".repeat(headers.len()));
    for r in rows {
        out += &format!("| {} |\n", r.join(" | "));
    }
    out
}

/// This process's command line as `ane-train ...`, for repeating the bench (on a Mac, where
/// `--device auto` and the `ane` rows pick the Neural Engine).
pub(crate) fn repeat_command() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a
            }
        })
        .collect();
    format!("ane-train {}", args.join(" "))
}

/// Prints the header every bench starts with.
pub(crate) fn print_header(title: &str, machine: &Machine) {
    println!("ane-train bench {title}");
    println!("{}", machine.line());
    println!("repeat (on a Mac): {}", repeat_command());
}

/// Writes `value` as pretty JSON to `path`.
pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    super::files::write_atomic(
        path,
        (serde_json::to_string_pretty(value)? + "\n").as_bytes(),
    )?;
    println!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_tables_and_key_values() {
        let s = Stat::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Stat::of(Vec::new()), Stat::default());
        assert_eq!(s.cell(1), "2.0 [1.0, 3.0]");
        let t = table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        assert_eq!(t, "| a | b |\n| --- | --- |\n| 1 | 2 |\n");
        let text = "processor\t: 0\nmodel name\t: Test CPU @ 2GHz\n";
        assert_eq!(first_value(text, "model name").unwrap(), "Test CPU @ 2GHz");
        assert_eq!(
            first_value("PRETTY_NAME=\"Debian 12\"", "PRETTY_NAME").unwrap(),
            "Debian 12"
        );
        assert!(Machine::detect().cores >= 1);
    }
}
