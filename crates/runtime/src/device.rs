//! The `Device` trait, what a device can do, and opening a device by name.
//!
//! A Device compiles Programs into [`Kernel`]s and allocates [`Surface`]s; a Kernel binds
//! Surfaces into a [`crate::Binding`] that is evaluated many times. The trait has no generic
//! methods, so `Arc<dyn Device>` works and the trainer knows nothing else of the device.

use std::sync::Arc;

use ane_mil::{DType, Dialect, Program};

use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::surface::Surface;
use crate::weights::Weights;

/// Which device implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// The CPU executor: f32 compute, fp16 or fp32 surfaces.
    Cpu,
    /// The CPU executor in Neural Engine fidelity: fp16 surfaces, fp16 rounding of every op
    /// result, every hardware rule enforced.
    AneSim,
    /// The Apple Neural Engine (macOS only).
    Ane,
}

impl DeviceKind {
    /// The name used on the command line: `cpu`, `ane-sim`, `ane`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::AneSim => "ane-sim",
            DeviceKind::Ane => "ane",
        }
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How exactly a device follows the Neural Engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fidelity {
    /// Plain f32 arithmetic; no hardware rules.
    Exact,
    /// fp16 results and every rule of `ane-pitfalls.md` §A.
    Ane,
}

/// How a request's positional surfaces map to a kernel's parameters and results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingOrder {
    /// Slot i is the i-th parameter as declared.
    Declaration,
    /// Slot i is the i-th parameter in alphabetical (byte-wise) order of the MIL names — what
    /// the Neural Engine does (rule 4).
    Alphabetical,
}

/// What a device supports.
#[derive(Debug, Clone, PartialEq)]
pub struct Capabilities {
    /// Device kind.
    pub kind: DeviceKind,
    /// Numerical fidelity.
    pub fidelity: Fidelity,
    /// Surface dtypes accepted by `surface` and `bind`.
    pub surface_dtypes: Vec<DType>,
    /// Smallest allocation `surface` hands out, in bytes (49,152 for the Neural Engine).
    pub min_surface_bytes: usize,
    /// Largest dimension a tensor may have (65,536 for the Neural Engine).
    pub max_dim: usize,
    /// How positional bindings map to names.
    pub binding_order: BindingOrder,
    /// The MIL dialect programs are printed in for this device.
    pub dialect: Dialect,
    /// One line describing the device (processor, OS build, ...).
    pub description: String,
}

impl Capabilities {
    /// Checks that surfaces of `dtype` can be allocated on this device.
    pub fn check_surface_dtype(&self, dtype: DType) -> Result<()> {
        if self.surface_dtypes.contains(&dtype) {
            Ok(())
        } else {
            Err(Error::Surface(format!(
                "{} surfaces hold {:?}, not {dtype}",
                self.kind, self.surface_dtypes
            )))
        }
    }
}

/// Whether realtime scheduling is in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Realtime {
    /// Raised (or lowered back, for `realtime_end`).
    Active,
    /// Not available here; the reason says why. Evaluation works as before.
    Unavailable(String),
}

/// A compute device; see the module docs. Send + Sync.
pub trait Device: Send + Sync + std::fmt::Debug {
    /// What the device supports.
    fn capabilities(&self) -> &Capabilities;

    /// Compiles `program` (its `main` function); BLOBFILE constants are read from `weights`.
    fn compile(&self, program: &Program, weights: &Weights) -> Result<Kernel>;

    /// Allocates a Surface of `shape` and `dtype` with the device's minimum allocation.
    fn surface(&self, shape: &[usize], dtype: DType) -> Result<Surface> {
        let bytes = shape.iter().product::<usize>() * dtype.size_bytes().unwrap_or(4);
        self.surface_with_alloc(
            shape,
            dtype,
            bytes.max(self.capabilities().min_surface_bytes),
        )
    }

    /// Allocates a Surface with an explicit allocation size (`>=` the data size), e.g. to
    /// give every input of a request the same size.
    fn surface_with_alloc(
        &self,
        shape: &[usize],
        dtype: DType,
        alloc_bytes: usize,
    ) -> Result<Surface>;

    /// Raises the calling thread's scheduling priority for evaluation, where permitted.
    fn realtime_begin(&self) -> Realtime;

    /// Ends what `realtime_begin` started.
    fn realtime_end(&self) -> Realtime;

    /// How many more kernels this process may compile on the device before it must restart
    /// (the Neural Engine's compile leak, rule 11), or `None` when compiles are unlimited.
    /// A trainer asks before a batch of compiles so it can checkpoint first.
    fn compiles_remaining(&self) -> Option<usize> {
        None
    }
}

/// Opens a device by name: `cpu`, `ane-sim`, `ane`, or `auto` (`ane` where it opens, else
/// `cpu`).
pub fn open(name: &str) -> Result<Arc<dyn Device>> {
    match name {
        "cpu" => Ok(Arc::new(crate::cpu::CpuDevice::new(Fidelity::Exact))),
        "ane-sim" => Ok(Arc::new(crate::cpu::CpuDevice::new(Fidelity::Ane))),
        "ane" => Ok(Arc::new(crate::ane::AneDevice::open()?)),
        "auto" => match open("ane") {
            Err(Error::Unavailable(_)) => open("cpu"),
            other => other,
        },
        other => Err(Error::Config {
            name: "device".into(),
            value: other.into(),
            expected: "one of cpu, ane-sim, ane, auto".into(),
        }),
    }
}
