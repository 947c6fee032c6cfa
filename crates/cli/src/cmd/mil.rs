//! `ane-train mil ...`: format and check MIL files.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use ane_mil::Dialect;
use clap::{Subcommand, ValueEnum};

/// Exit status for invalid input (a file that cannot be read or does not parse).
const BAD_INPUT: u8 = 2;

/// `ane-train mil` subcommands.
#[derive(Debug, Subcommand)]
pub enum MilCommand {
    /// Print the canonical form of a MIL file (or only validate it with --check).
    ///
    /// On invalid input prints `FILE:LINE:COL: message` and exits with status 2.
    Fmt {
        /// The MIL file to read.
        file: PathBuf,
        /// Only validate; print nothing on success.
        #[arg(long)]
        check: bool,
        /// Print in this dialect instead of the file's own.
        #[arg(long, value_enum)]
        dialect: Option<DialectArg>,
    },
    /// Compile a MIL file, feed its inputs from .npy files, run it once and write every output
    /// as DIR/NAME.npy.
    Run(RunArgs),
}

/// Arguments of `ane-train mil run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The MIL file.
    pub file: PathBuf,
    /// Device: cpu, ane-sim, ane or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Directory that `@model_path` names (where BLOBFILE weights live); default: the MIL
    /// file's directory.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// An input as NAME=PATH.npy (fp16 or fp32, C order, exactly the declared shape); repeat
    /// for each input.
    #[arg(long = "input", value_name = "NAME=PATH")]
    pub inputs: Vec<String>,
    /// Directory to write NAME.npy for every output into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

/// A dialect named on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DialectArg {
    /// `program(1.3)` / `ios18` (M3 and later).
    Ios18,
    /// `program(1.0)` / `ios16` (M1/M2).
    Ios16,
}

/// Runs a `mil` subcommand.
pub fn run(cmd: &MilCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MilCommand::Run(args) => super::mil_run::run(args),
        MilCommand::Fmt {
            file,
            check,
            dialect,
        } => {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{}: cannot read: {e}", file.display());
                    return Ok(ExitCode::from(BAD_INPUT));
                }
            };
            let mut program = match ane_mil::parse(&text) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{}:{e}", file.display());
                    return Ok(ExitCode::from(BAD_INPUT));
                }
            };
            if *check {
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(d) = dialect {
                program.dialect = match d {
                    DialectArg::Ios18 => Dialect::Ios18,
                    DialectArg::Ios16 => Dialect::Ios16,
                };
                program.build_info = program.dialect.default_build_info();
            }
            let out = ane_mil::print(&program);
            match std::io::stdout().write_all(out.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
    }
}
