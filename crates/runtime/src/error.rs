//! Errors of the runtime. One enum; each variant says what was wrong and, where there is one,
//! what to change.

use ane_mil::blob::BlobError;
use ane_mil::DType;

use crate::rules::AneRule;

/// A runtime error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Program is not valid MIL.
    #[error("invalid program: {0}")]
    Program(#[from] ane_mil::Error),
    /// The Program has no function named `main`.
    #[error("the program has no `main` function")]
    NoMain,
    /// A program the device cannot run (an op or a form it does not support).
    #[error("cannot compile for {device}: {detail}")]
    Unsupported {
        /// Device kind name.
        device: &'static str,
        /// What is unsupported.
        detail: String,
    },
    /// A Neural Engine rule (`ane-pitfalls.md` §A) is broken; the hardware would fail as named.
    #[error("ANE rule {}: {detail} (on hardware: {}; fix: {fix})", rule.number(), rule.symptom())]
    Rule {
        /// The rule broken.
        rule: AneRule,
        /// What breaks it.
        detail: String,
        /// What to change.
        fix: String,
    },
    /// A BLOBFILE constant could not be resolved or read.
    #[error("weights `{path}`: {detail}")]
    Weights {
        /// BLOBFILE path as written in the MIL.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// A weight blob file is malformed.
    #[error("weights `{path}`: {source}")]
    Blob {
        /// BLOBFILE path as written in the MIL.
        path: String,
        /// The blob error.
        source: BlobError,
    },
    /// The per-process compile budget is spent; checkpoint and restart the process.
    #[error("compile budget exhausted: {used} of {limit} compiles used in this process (checkpoint and restart, or raise ANE_MAX_COMPILES)")]
    BudgetExhausted {
        /// Compiles counted so far.
        used: usize,
        /// The limit.
        limit: usize,
    },
    /// A configuration value (flag or environment variable) is invalid.
    #[error("invalid setting {name}={value:?}: {expected}")]
    Config {
        /// Setting name, e.g. `ANE_MAX_COMPILES`.
        name: String,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// A Surface of the wrong shape, dtype or size, or one used wrongly.
    #[error("surface: {0}")]
    Surface(String),
    /// A typed view of a Surface with the wrong element type.
    #[error("surface holds {surface} but was accessed as {requested}")]
    SurfaceDType {
        /// The surface's dtype.
        surface: DType,
        /// The requested element type.
        requested: DType,
    },
    /// A Surface is locked by a guard that is still alive.
    #[error("surface is busy: {0} (drop the read/write guard before evaluating or locking again)")]
    SurfaceBusy(&'static str),
    /// Inputs or outputs given to `bind` do not match the Kernel.
    #[error("binding: {0}")]
    Binding(String),
    /// The device is not available on this machine.
    #[error("device unavailable: {0}")]
    Unavailable(String),
    /// The device failed to compile, load or evaluate.
    #[error("{stage} failed: {detail}")]
    Device {
        /// `compile`, `load`, `eval`, ...
        stage: &'static str,
        /// The device's message.
        detail: String,
    },
    /// A filesystem error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
