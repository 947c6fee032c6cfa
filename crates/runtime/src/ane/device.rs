//! [`AneDevice`]: the `Device` implementation over an [`AneSys`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ane_mil::{DType, Dialect, Program};

use super::backend::AneSys;
use super::errors::to_error;
use super::memory::{IoSurface, Registry};
use super::model_dir::DirTable;
use super::support::{ArtifactCache, CompileCounter, NoCache, SurfaceRecycler};
use super::sys::AppleSys;
use crate::budget::CompileBudget;
use crate::device::{BindingOrder, Capabilities, Device, DeviceKind, Fidelity, Realtime};
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::pool::SurfacePool;
use crate::rules;
use crate::surface::Surface;
use crate::weights::Weights;

/// The QoS every upstream kernel compiles, loads and evaluates with (`QOS_CLASS_DEFAULT`,
/// reference §1.4).
pub const QOS: u32 = 21;

/// How long to wait before the single load retry (upstream's bridge: `usleep(100000)`).
pub const LOAD_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Settings of an [`AneDevice`].
#[derive(Debug, Clone)]
pub struct AneOptions {
    /// Counts compiles and cache-served loads (rule 11).
    pub budget: Arc<dyn CompileCounter>,
    /// Keeps compile artifacts across processes.
    pub cache: Arc<dyn ArtifactCache>,
    /// QoS of every compile, load, eval and unload.
    pub qos: u32,
    /// Wait before the single load retry.
    pub load_retry_delay: Duration,
}

impl AneOptions {
    /// Counting against `budget`; no cache, QoS 21, 100 ms retry delay.
    pub fn new(budget: Arc<dyn CompileCounter>) -> Self {
        AneOptions {
            budget,
            cache: Arc::new(NoCache),
            qos: QOS,
            load_retry_delay: LOAD_RETRY_DELAY,
        }
    }

    /// Counting against the process-wide budget ([`CompileBudget::global`]: `ANE_MAX_COMPILES`,
    /// default 100; the leak is per process, not per device). Fails when that variable is
    /// invalid.
    pub fn process() -> Result<Self> {
        Ok(AneOptions::new(Arc::new(CompileBudget::global()?)))
    }
}

/// What a device, its kernels and its surfaces share.
pub(crate) struct Shared<S: AneSys> {
    pub sys: Arc<S>,
    pub caps: Capabilities,
    pub opts: AneOptions,
    pub pool: Arc<dyn SurfaceRecycler<S::Surface>>,
    pub registry: Registry<S>,
    pub dirs: Arc<DirTable>,
}

impl<S: AneSys> fmt::Debug for Shared<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("sys", &self.sys)
            .field("caps", &self.caps)
            .field("registry", &self.registry)
            .finish()
    }
}

/// The Apple Neural Engine as a [`Device`] (≈ IREE device ≈ upstream's bridge): compiles
/// Programs through `_ANEInMemoryModel`, allocates IOSurfaces, binds them into `_ANERequest`s.
///
/// Capabilities: fp16 surfaces only (fp32 I/O would need a `cast` inside the program, which
/// M1/M2 reject — rule 15 — and `ane-sim` accepts only fp16, so a program that runs on
/// `ane-sim` runs here), allocations of at least 48 KiB, alphabetical binding order. Generic
/// over the [`AneSys`] it drives: [`AppleSys`] on a Mac, [`super::fake::FakeSys`] in tests.
/// Send + Sync.
#[derive(Debug)]
pub struct AneDevice<S: AneSys = AppleSys> {
    shared: Arc<Shared<S>>,
}

impl AneDevice<AppleSys> {
    /// Opens the Neural Engine of this Mac, counting against the process-wide compile budget
    /// and pooling surfaces. On any other machine (or a Mac without the private framework or
    /// one of its classes) this is [`Error::Unavailable`] saying why.
    pub fn open() -> Result<Self> {
        let sys = AppleSys::load().map_err(|e| to_error("open", e))?;
        AneDevice::new(sys, AneOptions::process()?)
    }
}

impl<S: AneSys> AneDevice<S> {
    /// A device over `sys` whose surfaces are reused through a default [`SurfacePool`].
    pub fn new(sys: S, opts: AneOptions) -> Result<Self> {
        AneDevice::with_pool(sys, opts, Arc::new(SurfacePool::<S::Surface>::default()))
    }

    /// A device over `sys` whose surfaces are taken from and given back to `pool`. Fails
    /// with [`Error::Unavailable`] when a class or selector the driver needs is missing.
    pub fn with_pool(
        sys: S,
        opts: AneOptions,
        pool: Arc<dyn SurfaceRecycler<S::Surface>>,
    ) -> Result<Self> {
        sys.probe().map_err(|e| to_error("open", e))?;
        let description = sys.describe();
        let caps = Capabilities {
            kind: DeviceKind::Ane,
            fidelity: Fidelity::Ane,
            surface_dtypes: vec![DType::Fp16],
            min_surface_bytes: rules::MIN_SURFACE_BYTES,
            max_dim: rules::MAX_DIM,
            binding_order: BindingOrder::Alphabetical,
            dialect: dialect_for(&description),
            description,
        };
        Ok(AneDevice {
            shared: Arc::new(Shared {
                sys: Arc::new(sys),
                caps,
                opts,
                pool,
                registry: Registry::default(),
                dirs: Arc::default(),
            }),
        })
    }

    /// The sys layer this device drives.
    pub fn sys(&self) -> &Arc<S> {
        &self.shared.sys
    }
}

/// `program(1.0)`/`ios16` on M1 and M2 (rule 15), `program(1.3)`/`ios18` elsewhere.
fn dialect_for(description: &str) -> Dialect {
    if description.contains("Apple M1") || description.contains("Apple M2") {
        Dialect::Ios16
    } else {
        Dialect::Ios18
    }
}

impl<S: AneSys> Device for AneDevice<S> {
    fn capabilities(&self) -> &Capabilities {
        &self.shared.caps
    }

    fn compile(&self, program: &Program, weights: &Weights) -> Result<Kernel> {
        super::kernel::compile(&self.shared, program, weights)
    }

    fn surface_with_alloc(
        &self,
        shape: &[usize],
        dtype: DType,
        alloc_bytes: usize,
    ) -> Result<Surface> {
        let sh = &self.shared;
        sh.caps.check_surface_dtype(dtype)?;
        let data = shape
            .iter()
            .try_fold(2usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::Surface(format!("shape {shape:?} overflows")))?;
        if alloc_bytes < data {
            return Err(Error::Surface(format!(
                "an allocation of {alloc_bytes} bytes cannot hold {dtype} {shape:?} ({data} bytes)"
            )));
        }
        let io = IoSurface::new(sh.sys.clone(), sh.pool.clone(), alloc_bytes)?;
        sh.registry.wrap(shape, dtype, io)
    }

    fn realtime_begin(&self) -> Realtime {
        match self.shared.sys.realtime_begin() {
            Ok(()) => Realtime::Active,
            Err(why) => Realtime::Unavailable(why),
        }
    }

    fn realtime_end(&self) -> Realtime {
        match self.shared.sys.realtime_end() {
            Ok(()) => Realtime::Active,
            Err(why) => Realtime::Unavailable(why),
        }
    }

    fn compiles_remaining(&self) -> Option<usize> {
        self.shared.opts.budget.remaining()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m1_and_m2_get_the_ios16_dialect() {
        assert_eq!(dialect_for("Apple M1 Pro, macOS 24C101"), Dialect::Ios16);
        assert_eq!(dialect_for("Apple M2"), Dialect::Ios16);
        assert_eq!(dialect_for("Apple M4 Max"), Dialect::Ios18);
    }
}
