//! A device wrapper that counts kernel evaluations and compiles, so a bench can report
//! evaluations and compiles per update of a real training run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ane_mil::{DType, Program};
use ane_runtime::kernel::{BindingImpl, KernelImpl};
use ane_runtime::{
    Binding, Capabilities, Device, Kernel, KernelInfo, Realtime, Surface, TensorDesc, Weights,
};

/// Counters shared by a [`CountingDevice`] and everything it compiled.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    evals: AtomicU64,
    compiles: AtomicU64,
}

impl Counts {
    /// Kernel evaluations so far.
    pub(crate) fn evals(&self) -> u64 {
        self.evals.load(Ordering::Relaxed)
    }

    /// Successful compiles so far.
    pub(crate) fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }
}

/// `inner`, counting into [`Counts`].
#[derive(Debug)]
pub(crate) struct CountingDevice {
    inner: Arc<dyn Device>,
    counts: Arc<Counts>,
}

impl CountingDevice {
    /// Wraps `inner`; the counters are read through the returned [`Counts`].
    pub(crate) fn new(inner: Arc<dyn Device>) -> (Arc<CountingDevice>, Arc<Counts>) {
        let counts = Arc::new(Counts::default());
        let dev = Arc::new(CountingDevice {
            inner,
            counts: counts.clone(),
        });
        (dev, counts)
    }
}

impl Device for CountingDevice {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn compile(&self, program: &Program, weights: &Weights) -> ane_runtime::Result<Kernel> {
        let inner = self.inner.compile(program, weights)?;
        self.counts.compiles.fetch_add(1, Ordering::Relaxed);
        Ok(Kernel::new(Arc::new(CountingKernel {
            inner,
            caps: self.inner.capabilities().clone(),
            counts: self.counts.clone(),
        })))
    }

    fn surface_with_alloc(
        &self,
        shape: &[usize],
        dtype: DType,
        alloc_bytes: usize,
    ) -> ane_runtime::Result<Surface> {
        self.inner.surface_with_alloc(shape, dtype, alloc_bytes)
    }

    fn realtime_begin(&self) -> Realtime {
        self.inner.realtime_begin()
    }

    fn realtime_end(&self) -> Realtime {
        self.inner.realtime_end()
    }

    fn compiles_remaining(&self) -> Option<usize> {
        self.inner.compiles_remaining()
    }
}

#[derive(Debug)]
struct CountingKernel {
    inner: Kernel,
    /// The wrapped device's capabilities (`Kernel` does not expose its own).
    caps: Capabilities,
    counts: Arc<Counts>,
}

impl KernelImpl for CountingKernel {
    fn info(&self) -> &KernelInfo {
        self.inner.info()
    }

    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn bind(
        &self,
        inputs: &[Surface],
        outputs: &[Surface],
    ) -> ane_runtime::Result<Box<dyn BindingImpl>> {
        let info = self.inner.info();
        let named = |descs: &'_ [TensorDesc], s: &'_ [Surface]| -> Vec<(String, Surface)> {
            descs
                .iter()
                .map(|d| d.name.clone())
                .zip(s.iter().cloned())
                .collect()
        };
        let (ins, outs) = (named(&info.inputs, inputs), named(&info.outputs, outputs));
        Ok(Box::new(CountingBinding {
            inner: self.inner.bind(&refs(&ins), &refs(&outs))?,
            counts: self.counts.clone(),
        }))
    }
}

/// `(name, surface)` pairs borrowed from `v`.
fn refs(v: &[(String, Surface)]) -> Vec<(&str, &Surface)> {
    v.iter().map(|(n, s)| (n.as_str(), s)).collect()
}

#[derive(Debug)]
struct CountingBinding {
    inner: Binding,
    counts: Arc<Counts>,
}

impl BindingImpl for CountingBinding {
    fn eval(&self) -> ane_runtime::Result<()> {
        self.counts.evals.fetch_add(1, Ordering::Relaxed);
        self.inner.eval()
    }
}
