//! The CPU device: executes any Program; `cpu` and `ane-sim` fidelity.

mod memory;

pub use memory::HostMemory;

use ane_mil::{DType, Dialect, Program};

use crate::device::{BindingOrder, Capabilities, Device, DeviceKind, Fidelity, Realtime};
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::rules;
use crate::surface::Surface;
use crate::weights::Weights;

/// The CPU device; see the module docs.
#[derive(Debug)]
pub struct CpuDevice {
    caps: Capabilities,
}

impl CpuDevice {
    /// A CPU device with the given fidelity (`Exact` = `cpu`, `Ane` = `ane-sim`).
    pub fn new(fidelity: Fidelity) -> Self {
        let ane = fidelity == Fidelity::Ane;
        CpuDevice {
            caps: Capabilities {
                kind: if ane {
                    DeviceKind::AneSim
                } else {
                    DeviceKind::Cpu
                },
                fidelity,
                surface_dtypes: if ane {
                    vec![DType::Fp16]
                } else {
                    vec![DType::Fp16, DType::Fp32]
                },
                min_surface_bytes: if ane { rules::MIN_SURFACE_BYTES } else { 64 },
                max_dim: if ane { rules::MAX_DIM } else { usize::MAX },
                binding_order: if ane {
                    BindingOrder::Alphabetical
                } else {
                    BindingOrder::Declaration
                },
                dialect: Dialect::Ios18,
                description: format!(
                    "CPU executor ({} threads){}",
                    rayon::current_num_threads(),
                    if ane { ", Neural Engine fidelity" } else { "" }
                ),
            },
        }
    }
}

impl Device for CpuDevice {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn compile(&self, program: &Program, _weights: &Weights) -> Result<Kernel> {
        ane_mil::verify::verify(program)?;
        if self.caps.fidelity == Fidelity::Ane {
            rules::check_program(program)?;
        }
        Err(Error::Unsupported {
            device: self.caps.kind.name(),
            detail: "the CPU executor is being built".into(),
        })
    }

    fn surface_with_alloc(
        &self,
        shape: &[usize],
        dtype: DType,
        alloc_bytes: usize,
    ) -> Result<Surface> {
        if !self.caps.surface_dtypes.contains(&dtype) {
            return Err(Error::Surface(format!(
                "{} surfaces hold {:?}, not {dtype}",
                self.caps.kind, self.caps.surface_dtypes
            )));
        }
        Surface::new(shape, dtype, Box::new(HostMemory::new(alloc_bytes)?))
    }

    fn realtime_begin(&self) -> Realtime {
        Realtime::Unavailable("not implemented yet".into())
    }

    fn realtime_end(&self) -> Realtime {
        Realtime::Unavailable("not implemented yet".into())
    }
}
