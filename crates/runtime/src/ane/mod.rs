//! The Apple Neural Engine device (`--device ane`).
//!
//! Two layers, so the driver is compiled, linted and tested on any machine:
//! - [`sys`]: Apple's libraries (libobjc, Foundation, IOSurface, the private
//!   AppleNeuralEngine framework) resolved at run time with dlopen/dlsym — no link-time Apple
//!   dependency — one small typed Rust function per Objective-C message or C call;
//! - the driver ([`AneDevice`]), written against the [`AneSys`] trait: compile (with the
//!   compile cache and budget), load with one retry, IOSurfaces through the pool, bindings
//!   whose `_ANERequest` is built once in alphabetical order of the MIL names (rule 4), eval
//!   at QoS 21, unload and temp-dir cleanup, and typed errors for what the framework reports.
//!
//! [`fake::FakeSys`] models the framework's observable behaviour and evaluates on the CPU
//! device, so every driver path runs in tests on Linux. [`accelerate`] resolves Accelerate's
//! `cblas_sgemm` the same way, for host GEMMs on macOS.
//!
//! The binding rules of `ane-pitfalls.md` §A (rules 1–3: every surface >= 48 KiB, equal input
//! sizes, equal output sizes) are checked by [`crate::rules::check_binding`] before a request
//! is built, so a broken rule is an [`crate::Error::Rule`] here exactly as on `ane-sim`.

pub mod accelerate;
mod backend;
mod device;
mod errors;
pub mod fake;
mod kernel;
mod memory;
mod model_dir;
mod support;
pub mod sys;

pub use backend::{AneSys, SysError, WeightFile};
pub use device::{AneDevice, AneOptions, LOAD_RETRY_DELAY, QOS};
pub use errors::STATUS_PROGRAM_INFERENCE;
pub use kernel::{AneBinding, AneKernel, MAX_REQUEST_BUFFERS};
pub use model_dir::ARTIFACTS;
pub use support::{ArtifactCache, CompileCounter, NoCache, SurfaceRecycler};
