//! The CPU device: executes any Program; `cpu` and `ane-sim` fidelity.
//!
//! `compile` turns the Program into a static [`plan::Plan`]; `bind` gives each Binding its own
//! arena (temporaries, per-task scratch, and f32 staging for fp16 surfaces), sized once; `eval`
//! locks the surfaces, runs the steps and unlocks — with no heap allocation of its own.
//! In `ane-sim` fidelity surfaces are fp16 only, every op result is rounded to fp16, the
//! Program rules of [`crate::rules`] are checked at compile time and the surface rules at bind
//! time, and request slots bind alphabetically (rule 4).

mod exec;
pub mod gemm;
mod layout;
mod memory;
pub mod ops;
mod plan;
pub mod sgemm;

use std::sync::{Arc, Mutex};

pub use memory::{ExternalMemory, HostMemory, PooledMemory};

use ane_mil::{DType, Dialect, Program};

use self::exec::{BufKind, Ctx, Ptr};
use self::plan::Plan;
use crate::budget::CompileCounter;
use crate::device::{BindingOrder, Capabilities, Device, DeviceKind, Fidelity, Realtime};
use crate::error::{Error, Result};
use crate::kernel::{BindingImpl, Kernel, KernelImpl, KernelInfo};
use crate::pool::SurfacePool;
use crate::rules;
use crate::surface::Surface;
use crate::weights::Weights;

/// The CPU device; see the module docs.
#[derive(Debug)]
pub struct CpuDevice {
    caps: Capabilities,
    pool: Arc<SurfacePool<HostMemory>>,
    budget: Option<Arc<dyn CompileCounter>>,
}

impl CpuDevice {
    /// A CPU device with the given fidelity (`Exact` = `cpu`, `Ane` = `ane-sim`) and a surface
    /// pool of the default capacity.
    pub fn new(fidelity: Fidelity) -> Self {
        Self::with_pool(fidelity, Arc::new(SurfacePool::default()))
    }

    /// Counters of the surface pool (allocations reused when surfaces are dropped).
    pub fn pool_stats(&self) -> crate::pool::PoolStats {
        self.pool.stats()
    }

    /// A CPU device whose surfaces come from (and return to) `pool`.
    pub fn with_pool(fidelity: Fidelity, pool: Arc<SurfacePool<HostMemory>>) -> Self {
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
                    vec![DType::Fp32, DType::Fp16]
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
            pool,
            budget: None,
        }
    }

    /// This device, counting every compile against `budget` like the Neural Engine driver
    /// (rule 11): `ane-sim` with a budget rehearses a trainer's checkpoint-and-restart on any
    /// machine. Without one (the default) compiles are unlimited.
    pub fn with_compile_budget(mut self, budget: Arc<dyn CompileCounter>) -> Self {
        self.budget = Some(budget);
        self
    }
}

impl Device for CpuDevice {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn compile(&self, program: &Program, weights: &Weights) -> Result<Kernel> {
        ane_mil::verify::verify(program)?;
        if let Some(b) = &self.budget {
            b.try_acquire()?;
        }
        let ane = self.caps.fidelity == Fidelity::Ane;
        if ane {
            rules::check_program(program)?;
        }
        let plan = plan::compile(program, weights, ane)?;
        Ok(Kernel::new(Arc::new(CpuKernel {
            plan: Arc::new(plan),
            caps: self.caps.clone(),
        })))
    }

    fn surface_with_alloc(
        &self,
        shape: &[usize],
        dtype: DType,
        alloc_bytes: usize,
    ) -> Result<Surface> {
        self.caps.check_surface_dtype(dtype)?;
        Surface::new(
            shape,
            dtype,
            Box::new(PooledMemory::new(&self.pool, alloc_bytes)?),
        )
    }

    fn realtime_begin(&self) -> Realtime {
        crate::realtime::begin()
    }

    fn realtime_end(&self) -> Realtime {
        crate::realtime::end()
    }

    fn compiles_remaining(&self) -> Option<usize> {
        self.budget.as_ref().and_then(|b| b.remaining())
    }
}

/// A compiled plan on the CPU device.
#[derive(Debug)]
struct CpuKernel {
    plan: Arc<Plan>,
    caps: Capabilities,
}

impl KernelImpl for CpuKernel {
    fn info(&self) -> &KernelInfo {
        &self.plan.info
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn bind(&self, inputs: &[Surface], outputs: &[Surface]) -> Result<Box<dyn BindingImpl>> {
        let plan = &self.plan;
        let tasks = rayon::current_num_threads().max(1);
        let mut arena_len = plan.temp_len + tasks * plan.scratch_per_task;
        let mut stage = |s: &Surface| -> Option<usize> {
            (s.dtype() != DType::Fp32).then(|| {
                let at = arena_len;
                arena_len += s.elements().next_multiple_of(16);
                at
            })
        };
        let in_stage: Vec<Option<usize>> = inputs.iter().map(&mut stage).collect();
        let out_stage: Vec<Option<usize>> = outputs.iter().map(&mut stage).collect();
        Ok(Box::new(CpuBinding {
            plan: plan.clone(),
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            in_stage,
            out_stage,
            tasks,
            state: Mutex::new(State {
                arena: vec![0.0; arena_len],
                bases: vec![Ptr(std::ptr::null_mut()); plan.bufs.len()],
                out_bases: vec![Ptr(std::ptr::null_mut()); outputs.len()],
            }),
        }))
    }
}

#[derive(Debug)]
struct State {
    arena: Vec<f32>,
    bases: Vec<Ptr>,
    /// Locked base address of each output surface during an eval.
    out_bases: Vec<Ptr>,
}

/// Surfaces plus the arena of one binding.
#[derive(Debug)]
struct CpuBinding {
    plan: Arc<Plan>,
    inputs: Vec<Surface>,
    outputs: Vec<Surface>,
    /// Arena offset of the f32 copy of each fp16 input (None: read the surface directly).
    in_stage: Vec<Option<usize>>,
    /// Arena offset of the f32 result of each fp16 output (None: write the surface directly).
    out_stage: Vec<Option<usize>>,
    tasks: usize,
    state: Mutex<State>,
}

/// Unlocks the surfaces locked so far when dropped (also on panic).
struct Held<'a> {
    inputs: &'a [Surface],
    outputs: &'a [Surface],
    ins: usize,
    outs: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.inputs[..self.ins]
            .iter()
            .for_each(|s| s.raw_unlock(false));
        self.outputs[..self.outs]
            .iter()
            .for_each(|s| s.raw_unlock(true));
    }
}

impl BindingImpl for CpuBinding {
    fn eval(&self) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| Error::Device {
            stage: "eval",
            detail: "binding poisoned by an earlier panic".into(),
        })?;
        let State {
            arena,
            bases,
            out_bases,
        } = &mut *state;
        let arena_ptr = arena.as_mut_ptr();
        let mut held = Held {
            inputs: &self.inputs,
            outputs: &self.outputs,
            ins: 0,
            outs: 0,
        };
        for (i, kind) in self.plan.bufs.iter().enumerate() {
            bases[i] = match *kind {
                // SAFETY: temp offsets lie inside the arena sized at bind time.
                BufKind::Temp { offset, .. } => Ptr(unsafe { arena_ptr.add(offset) }),
                BufKind::Const(c) => Ptr(self.plan.consts[c].as_ptr() as *mut f32),
                _ => Ptr(std::ptr::null_mut()),
            };
        }
        for (i, s) in self.inputs.iter().enumerate() {
            let base = s.raw_lock(false, "eval input")?;
            held.ins += 1;
            let p = match self.in_stage[i] {
                None => base as *mut f32,
                Some(at) => {
                    // SAFETY: the surface holds `elements` fp16 values (checked at bind) and the
                    // staging range was reserved for exactly that many floats.
                    unsafe {
                        let src =
                            std::slice::from_raw_parts(base as *const half::f16, s.elements());
                        let dst = std::slice::from_raw_parts_mut(arena_ptr.add(at), s.elements());
                        half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, dst);
                        arena_ptr.add(at)
                    }
                }
            };
            self.set(bases, BufKind::Input(i), p);
        }
        for (i, s) in self.outputs.iter().enumerate() {
            let base = s.raw_lock(true, "eval output")?;
            held.outs += 1;
            out_bases[i] = Ptr(base as *mut f32);
            let p = match self.out_stage[i] {
                None => base as *mut f32,
                // SAFETY: reserved at bind time.
                Some(at) => unsafe { arena_ptr.add(at) },
            };
            self.set(bases, BufKind::Output(i), p);
        }
        // SAFETY: scratch follows the temporaries in the arena.
        let scratch = Ptr(unsafe { arena_ptr.add(self.plan.temp_len) });
        let ctx = Ctx {
            bases,
            scratch,
            scratch_per_task: self.plan.scratch_per_task,
            tasks: self.tasks,
            round: self.plan.round,
        };
        for step in &self.plan.steps {
            step.run(&ctx);
        }
        for (i, s) in self.outputs.iter().enumerate() {
            if let Some(at) = self.out_stage[i] {
                let base = out_bases[i].get();
                // SAFETY: the output is write-locked; staging holds `elements` floats.
                unsafe {
                    let src = std::slice::from_raw_parts(arena_ptr.add(at), s.elements());
                    let dst = std::slice::from_raw_parts_mut(base as *mut half::f16, s.elements());
                    half::slice::HalfFloatSliceExt::convert_from_f32_slice(dst, src);
                }
            }
        }
        drop(held);
        Ok(())
    }
}

impl CpuBinding {
    fn set(&self, bases: &mut [Ptr], kind: BufKind, p: *mut f32) {
        for (b, k) in bases.iter_mut().zip(&self.plan.bufs) {
            if *k == kind {
                *b = Ptr(p);
            }
        }
    }
}
