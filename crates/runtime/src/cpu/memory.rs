//! 64-byte aligned host memory backing CPU surfaces.

use std::alloc::Layout;
use std::ptr::NonNull;

use std::mem::ManuallyDrop;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::pool::SurfacePool;
use crate::surface::SurfaceMemory;

/// Alignment of every host allocation, bytes.
pub const ALIGN: usize = 64;

/// A zero-initialised, 64-byte aligned heap allocation.
#[derive(Debug)]
pub struct HostMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: HostMemory owns its allocation exclusively; access is coordinated by Surface locks.
unsafe impl Send for HostMemory {}
// SAFETY: as above; shared references only hand out the pointer, never access it.
unsafe impl Sync for HostMemory {}

impl HostMemory {
    /// Allocates `len` zeroed bytes (at least 1), aligned to 64.
    pub fn new(len: usize) -> Result<Self> {
        let layout = Layout::from_size_align(len.max(1), ALIGN)
            .map_err(|_| Error::Surface(format!("cannot allocate {len} bytes")))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr)
            .ok_or_else(|| Error::Surface(format!("out of memory allocating {len} bytes")))?;
        Ok(HostMemory {
            ptr,
            len: len.max(1),
        })
    }
}

impl HostMemory {
    /// Sets every byte to zero.
    pub fn zero(&mut self) {
        // SAFETY: `ptr` addresses `len` bytes owned by `self`, borrowed mutably here.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr(), 0, self.len) };
    }
}

/// Host memory that returns to a [`SurfacePool`] when its Surface is dropped.
#[derive(Debug)]
pub struct PooledMemory {
    mem: ManuallyDrop<HostMemory>,
    pool: Arc<SurfacePool<HostMemory>>,
}

impl PooledMemory {
    /// Zeroed memory of `len` bytes: reused from `pool` when it holds an allocation of that
    /// size, else freshly allocated.
    pub fn new(pool: &Arc<SurfacePool<HostMemory>>, len: usize) -> Result<Self> {
        let mem = match pool.take(len) {
            Some(mut m) => {
                m.zero();
                m
            }
            None => HostMemory::new(len)?,
        };
        Ok(PooledMemory {
            mem: ManuallyDrop::new(mem),
            pool: pool.clone(),
        })
    }

    fn mem(&self) -> &HostMemory {
        &self.mem
    }
}

impl Drop for PooledMemory {
    fn drop(&mut self) {
        // SAFETY: `mem` is taken exactly once, here, and never touched again.
        let m = unsafe { ManuallyDrop::take(&mut self.mem) };
        let len = m.len;
        drop(self.pool.give(len, m));
    }
}

// SAFETY: forwards to the owned HostMemory, which meets the contract.
unsafe impl SurfaceMemory for PooledMemory {
    fn len(&self) -> usize {
        self.mem().len
    }

    fn lock(&self, write: bool) -> Result<*mut u8> {
        self.mem().lock(write)
    }

    fn unlock(&self, write: bool) {
        self.mem().unlock(write)
    }
}

impl Drop for HostMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe {
            std::alloc::dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.len, ALIGN),
            )
        };
    }
}

// SAFETY: the pointer addresses `len` bytes aligned to 64 that live as long as `self` and
// never move; `lock`/`unlock` need no work on host memory.
unsafe impl SurfaceMemory for HostMemory {
    fn len(&self) -> usize {
        self.len
    }

    fn lock(&self, _write: bool) -> Result<*mut u8> {
        Ok(self.ptr.as_ptr())
    }

    fn unlock(&self, _write: bool) {}
}

/// Host memory owned by someone else — a model's parameter buffer, say — wrapped so that a
/// CPU kernel reads it in place as a Surface (zero-copy weights). Never freed by the surface.
#[derive(Debug)]
pub struct ExternalMemory {
    ptr: NonNull<u8>,
    len: usize,
}

impl ExternalMemory {
    /// Wraps the `len` bytes at `ptr`.
    ///
    /// # Safety
    /// The bytes must stay valid (allocated, not moved) for as long as any Surface made from
    /// this memory lives, and must not be written by anyone else while such a Surface is
    /// locked (while a kernel that reads it is evaluating, or a guard on it is held).
    pub unsafe fn new(ptr: NonNull<u8>, len: usize) -> ExternalMemory {
        ExternalMemory { ptr, len }
    }
}

// SAFETY: the owner of the memory guarantees (per `ExternalMemory::new`) that it stays valid
// for the surface's life and is not written while locked; the pointer is only dereferenced
// under a surface lock, which serialises writers and readers on the runtime's side.
unsafe impl Send for ExternalMemory {}
// SAFETY: as above.
unsafe impl Sync for ExternalMemory {}

// SAFETY: per `ExternalMemory::new`, the `len` bytes at `ptr` outlive every surface made from
// this memory; host memory needs no work to lock or unlock.
unsafe impl SurfaceMemory for ExternalMemory {
    fn len(&self) -> usize {
        self.len
    }

    fn lock(&self, _write: bool) -> Result<*mut u8> {
        Ok(self.ptr.as_ptr())
    }

    fn unlock(&self, _write: bool) {}
}
