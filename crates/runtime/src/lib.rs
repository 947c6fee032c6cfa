//! `ane-runtime`: the `Device` trait, Surfaces, Kernels and Bindings, and the devices that run
//! `ane-mil` Programs.
//!
//! - [`Device`] compiles a Program into a [`Kernel`] and allocates [`Surface`]s;
//!   [`Kernel::bind`] makes a [`Binding`] that is evaluated many times.
//! - [`cpu::CpuDevice`] executes any Program: `cpu` (f32 compute) and `ane-sim` (fp16 results
//!   and every Neural Engine rule of [`rules`] enforced).
//! - [`pool`], [`budget`] and [`cache`] are shared by the devices: surface reuse, the
//!   per-process compile budget, and the on-disk compile cache.

#![deny(missing_docs)]

pub mod ane;
pub mod budget;
pub mod cache;
pub mod cpu;
pub mod device;
pub mod error;
pub mod kernel;
pub mod pool;
pub mod realtime;
pub mod rules;
pub mod surface;
pub mod weights;

pub use ane_mil as mil;
pub use device::{open, BindingOrder, Capabilities, Device, DeviceKind, Fidelity, Realtime};
pub use error::{Error, Result};
pub use kernel::{Binding, Feed, Kernel, KernelInfo, TensorDesc};
pub use surface::Surface;
pub use weights::Weights;
