//! 64-byte aligned host memory backing CPU surfaces.

use std::alloc::Layout;
use std::ptr::NonNull;

use crate::error::{Error, Result};
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
