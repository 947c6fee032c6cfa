//! A pool of released device allocations, reused by exact byte size.
//!
//! Creating and releasing Surfaces (IOSurfaces on macOS) costs a system call each; a process that
//! recompiles kernels in batches frees and recreates the same sizes again and again. The pool keeps
//! released allocations keyed by their byte size and hands them back on the next request of the
//! same size.
//!
//! Differences from upstream PR #33's pool (`reference/ane-upstream.md` §4.3): lookup is O(1)
//! (a map from size to a stack) rather than a linear scan, the pool is thread-safe, and dropping
//! the pool releases everything in it. Like upstream, a reused allocation keeps its old contents:
//! the caller must overwrite it before reading. The pool lives only as long as its process, so it
//! saves work only when kernels are recompiled in-process (not across a checkpoint-and-exec
//! restart, which is where PR #33 put it).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Capacity of [`SurfacePool::default`]: at most 128 allocations kept, over all sizes (as upstream).
pub const DEFAULT_POOL_CAPACITY: usize = 128;

/// Counters of a [`SurfacePool`], read by [`SurfacePool::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Calls to [`SurfacePool::take`] that returned a pooled allocation.
    pub hits: u64,
    /// Calls to [`SurfacePool::take`] that found nothing of the requested size.
    pub misses: u64,
    /// Allocations held by the pool now, over all sizes; always `<= capacity`.
    pub pooled: usize,
    /// The most allocations the pool holds at once.
    pub capacity: usize,
}

/// A thread-safe pool of allocations `M` (e.g. Surfaces), keyed by their size in bytes.
///
/// Invariants: an allocation given back with size `b` is only ever handed out to a request for
/// exactly `b` bytes; the pool never holds more than `capacity` allocations in total; every
/// allocation given to the pool is either handed out once, returned by [`give`](Self::give)
/// (pool full), or dropped by [`clear`](Self::clear) or by dropping the pool.
pub struct SurfacePool<M> {
    capacity: usize,
    state: Mutex<State<M>>,
}

struct State<M> {
    /// Byte size → allocations of that size (a stack: the most recently released first).
    /// A size with no allocations has no entry, so the map stays as small as the pool.
    by_size: HashMap<usize, Vec<M>>,
    pooled: usize,
    hits: u64,
    misses: u64,
}

impl<M> State<M> {
    fn empty() -> Self {
        State {
            by_size: HashMap::new(),
            pooled: 0,
            hits: 0,
            misses: 0,
        }
    }
}

impl<M: Send> SurfacePool<M> {
    /// A pool that keeps at most `capacity` allocations (over all sizes); `0` disables pooling.
    pub fn new(capacity: usize) -> Self {
        SurfacePool {
            capacity,
            state: Mutex::new(State::empty()),
        }
    }

    /// Takes a pooled allocation of exactly `bytes` bytes, or `None` (a miss: allocate a new one).
    /// O(1). The allocation keeps whatever contents it had when it was given back.
    pub fn take(&self, bytes: usize) -> Option<M> {
        let mut state = self.lock();
        let found = match state.by_size.get_mut(&bytes) {
            Some(stack) => {
                let m = stack.pop();
                if stack.is_empty() {
                    state.by_size.remove(&bytes);
                }
                m
            }
            None => None,
        };
        match found {
            Some(m) => {
                state.pooled -= 1;
                state.hits += 1;
                Some(m)
            }
            None => {
                state.misses += 1;
                None
            }
        }
    }

    /// Gives back an allocation of `bytes` bytes for reuse. Returns `None` when the pool kept it,
    /// or `Some(m)` when the pool is full (the caller drops it, which releases it). O(1).
    pub fn give(&self, bytes: usize, m: M) -> Option<M> {
        let mut state = self.lock();
        if state.pooled >= self.capacity {
            return Some(m);
        }
        state.by_size.entry(bytes).or_default().push(m);
        state.pooled += 1;
        None
    }

    /// Counters: hits and misses of [`take`](Self::take) since the pool was made, and the
    /// allocations pooled now.
    pub fn stats(&self) -> PoolStats {
        let state = self.lock();
        PoolStats {
            hits: state.hits,
            misses: state.misses,
            pooled: state.pooled,
            capacity: self.capacity,
        }
    }

    /// Releases (drops) every pooled allocation. The counters are kept.
    pub fn clear(&self) {
        let drained = {
            let mut state = self.lock();
            state.pooled = 0;
            std::mem::take(&mut state.by_size)
        };
        // Dropped here, outside the lock, so a slow release never blocks other threads.
        drop(drained);
    }

    /// Number of allocations pooled now, over all sizes.
    pub fn len(&self) -> usize {
        self.lock().pooled
    }

    /// Whether the pool holds no allocation.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most allocations the pool holds at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Locks the state. A panic while the lock was held cannot leave the state inconsistent (no
    /// user code runs under it: allocations are dropped outside), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State<M>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<M: Send> Default for SurfacePool<M> {
    /// A pool with [`DEFAULT_POOL_CAPACITY`].
    fn default() -> Self {
        SurfacePool::new(DEFAULT_POOL_CAPACITY)
    }
}

impl<M> std::fmt::Debug for SurfacePool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pooled = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pooled;
        f.debug_struct("SurfacePool")
            .field("capacity", &self.capacity)
            .field("pooled", &pooled)
            .finish()
    }
}
