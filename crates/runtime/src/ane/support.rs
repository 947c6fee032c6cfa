//! The three services the driver borrows from the rest of the runtime, as small traits so the
//! driver does not depend on how they are built: the compile budget (rule 11), the surface
//! pool, and the compile-artifact cache. Each has a trivial implementation here; the runtime's
//! shared `budget`, `pool` and `cache` modules plug in through the same traits.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};

/// Upstream's per-process compile budget (`MAX_COMPILES`), below the ~119 compiles after which
/// the ANE compiler leaks and fails (rule 11).
pub const DEFAULT_MAX_COMPILES: usize = 100;

/// Counts compiles against a budget. Every real compile and every load served from a cache is
/// counted (whether cache-served loads leak like compiles is unmeasured, so they count too).
pub trait CompileCounter: Send + Sync + fmt::Debug {
    /// Counts one compile and returns how many have been counted, or
    /// [`Error::BudgetExhausted`] (counting nothing) when the budget is spent.
    fn try_acquire(&self) -> Result<usize>;
}

/// A compile counter with a fixed limit.
#[derive(Debug)]
pub struct CountingBudget {
    used: AtomicUsize,
    limit: usize,
}

impl CountingBudget {
    /// A fresh budget of `limit` compiles.
    pub fn new(limit: usize) -> Self {
        CountingBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Compiles counted so far.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl CompileCounter for CountingBudget {
    fn try_acquire(&self) -> Result<usize> {
        let limit = self.limit;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < limit).then_some(u + 1)
            })
            .map(|prev| prev + 1)
            .map_err(|used| Error::BudgetExhausted { used, limit })
    }
}

/// The process-wide budget of [`DEFAULT_MAX_COMPILES`] shared by every `ane` device opened
/// with default options (the leak is per process, not per device).
pub fn process_budget() -> Arc<CountingBudget> {
    static BUDGET: OnceLock<Arc<CountingBudget>> = OnceLock::new();
    BUDGET
        .get_or_init(|| Arc::new(CountingBudget::new(DEFAULT_MAX_COMPILES)))
        .clone()
}

/// Reuses device buffers by allocation size.
pub trait SurfaceRecycler<T>: Send + Sync + fmt::Debug {
    /// A buffer of exactly `bytes` bytes given back earlier, if any.
    fn take(&self, bytes: usize) -> Option<T>;
    /// Gives back a buffer of `bytes` bytes for reuse (or drops it).
    fn give(&self, bytes: usize, buffer: T);
}

/// No reuse: every surface is freshly allocated and released when dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPool;

impl<T> SurfaceRecycler<T> for NoPool {
    fn take(&self, _bytes: usize) -> Option<T> {
        None
    }
    fn give(&self, _bytes: usize, _buffer: T) {}
}

/// What identifies a compiled artifact: the exact program text, the weights' content hash,
/// the device, the OS build and the compiler (reference §1.6: key on MIL and weights
/// explicitly, never on the framework's model hash alone).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactKey {
    /// The MIL text as handed to the framework.
    pub program_text: String,
    /// SHA-256 over the weight paths and contents ([`crate::Weights::content_hash`]).
    pub weights_hash: [u8; 32],
    /// Device kind name (`ane`).
    pub device: String,
    /// OS build, e.g. `24C101`.
    pub os_build: String,
    /// The compiler: the framework path (it ships with the OS build).
    pub compiler: String,
}

/// Stores the files the framework leaves in a model's temp dir after compiling (`net.plist`,
/// and `data` when the model has weights). The cache may be a no-op: callers keep the Kernel
/// they get back rather than relying on a later hit.
pub trait ArtifactCache: Send + Sync + fmt::Debug {
    /// The cached files for `key`, as (file name, bytes).
    fn get(&self, key: &ArtifactKey) -> Option<Vec<(String, Vec<u8>)>>;
    /// Stores `files` for `key`.
    fn put(&self, key: &ArtifactKey, files: &[(String, Vec<u8>)]) -> Result<()>;
}

/// A cache that never hits.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCache;

impl ArtifactCache for NoCache {
    fn get(&self, _key: &ArtifactKey) -> Option<Vec<(String, Vec<u8>)>> {
        None
    }
    fn put(&self, _key: &ArtifactKey, _files: &[(String, Vec<u8>)]) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_to_its_limit_then_refuses() {
        let b = CountingBudget::new(2);
        assert_eq!(b.try_acquire().unwrap(), 1);
        assert_eq!(b.try_acquire().unwrap(), 2);
        assert!(matches!(
            b.try_acquire(),
            Err(Error::BudgetExhausted { used: 2, limit: 2 })
        ));
        assert_eq!(b.used(), 2);
    }
}
