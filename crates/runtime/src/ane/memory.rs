//! IOSurface-backed Surface memory, and the registry that tells a binding which of its
//! Surfaces are this device's IOSurfaces.
//!
//! Host access follows reference §3.2: `IOSurfaceLock` (read-only for reads) → base address →
//! `IOSurfaceUnlock`. While the device itself evaluates, the Surface's lock state is still
//! taken (so host code cannot touch a buffer the hardware is using), but the IOSurface is not
//! CPU-locked: upstream evaluates with every surface unlocked. A thread-local flag set by
//! [`DeviceAccess`] tells the memory which kind of lock it is serving.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use super::backend::AneSys;
use super::errors::to_error;
use super::support::SurfaceRecycler;
use crate::error::{Error, Result};
use crate::surface::{Surface, SurfaceMemory};

thread_local! {
    static DEVICE_ACCESS: Cell<bool> = const { Cell::new(false) };
}

/// While alive, Surface locks taken on this thread are the device's own: the IOSurface is
/// not CPU-locked. Drop every such lock before this guard.
#[derive(Debug)]
pub struct DeviceAccess {
    previous: bool,
}

impl DeviceAccess {
    /// Enters device access on this thread.
    pub fn enter() -> Self {
        DeviceAccess {
            previous: DEVICE_ACCESS.with(|d| d.replace(true)),
        }
    }
}

impl Drop for DeviceAccess {
    fn drop(&mut self) {
        DEVICE_ACCESS.with(|d| d.set(self.previous));
    }
}

fn device_access() -> bool {
    DEVICE_ACCESS.with(Cell::get)
}

/// One IOSurface, given back to the pool when the last Surface using it is dropped.
pub struct IoSurface<S: AneSys> {
    sys: Arc<S>,
    handle: Option<S::Surface>,
    len: usize,
    pool: Arc<dyn SurfaceRecycler<S::Surface>>,
}

impl<S: AneSys> fmt::Debug for IoSurface<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoSurface")
            .field("handle", &self.handle)
            .field("len", &self.len)
            .finish()
    }
}

impl<S: AneSys> IoSurface<S> {
    /// Takes a buffer of `len` bytes from `pool` (zeroing it) or creates one.
    pub fn new(
        sys: Arc<S>,
        pool: Arc<dyn SurfaceRecycler<S::Surface>>,
        len: usize,
    ) -> Result<Self> {
        let (handle, reused) = match pool.take(len) {
            Some(h) => (h, true),
            None => (
                sys.new_surface(len).map_err(|e| to_error("surface", e))?,
                false,
            ),
        };
        let real = sys.surface_len(&handle);
        if real < len {
            return Err(Error::Surface(format!(
                "IOSurfaceCreate gave {real} bytes for a request of {len}"
            )));
        }
        let s = IoSurface {
            sys,
            handle: Some(handle),
            len,
            pool,
        };
        if reused {
            s.zero()?;
        }
        Ok(s)
    }

    /// The sys handle.
    pub fn handle(&self) -> Result<&S::Surface> {
        self.handle
            .as_ref()
            .ok_or_else(|| Error::Surface("the IOSurface was already released".into()))
    }

    fn zero(&self) -> Result<()> {
        let h = self.handle()?;
        let base = self.sys.lock(h, true).map_err(|e| to_error("lock", e))?;
        // SAFETY: `base` addresses the surface's `len` bytes (IOSurfaceGetAllocSize >= len,
        // checked in `new`) and the IOSurface is write-locked until the unlock below; no
        // Surface wraps this buffer yet, so nothing else accesses it.
        unsafe { std::ptr::write_bytes(base, 0, self.len) };
        self.sys.unlock(h, true);
        Ok(())
    }
}

impl<S: AneSys> Drop for IoSurface<S> {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.pool.give(self.len, h);
        }
    }
}

/// The [`SurfaceMemory`] of an `ane` Surface.
pub struct IoSurfaceMemory<S: AneSys>(pub Arc<IoSurface<S>>);

impl<S: AneSys> fmt::Debug for IoSurfaceMemory<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

// SAFETY: an IOSurface's memory stays at one address for the surface's lifetime (it is never
// purgeable here and never resized), is at least `len` bytes (checked in `IoSurface::new`),
// and its base is checked to be 64-byte aligned on every lock (IOSurfaces are page-aligned).
// The IoSurface lives as long as this object, which the Surface owns.
unsafe impl<S: AneSys> SurfaceMemory for IoSurfaceMemory<S> {
    fn len(&self) -> usize {
        self.0.len
    }

    fn lock(&self, write: bool) -> Result<*mut u8> {
        let s = &self.0;
        let h = s.handle()?;
        let base = if device_access() {
            s.sys.base_address(h)
        } else {
            s.sys.lock(h, write).map_err(|e| to_error("lock", e))?
        };
        if base.is_null() || !(base as usize).is_multiple_of(64) {
            if !device_access() {
                s.sys.unlock(h, write);
            }
            return Err(Error::Surface(format!(
                "IOSurface base address {base:p} is null or not 64-byte aligned"
            )));
        }
        Ok(base)
    }

    fn unlock(&self, write: bool) {
        if device_access() {
            return;
        }
        if let Ok(h) = self.0.handle() {
            self.0.sys.unlock(h, write);
        }
    }
}

/// Which live Surfaces are this device's IOSurfaces, by [`Surface::id`].
pub struct Registry<S: AneSys> {
    map: Mutex<HashMap<u64, Weak<IoSurface<S>>>>,
}

impl<S: AneSys> fmt::Debug for Registry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.map.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Registry").field("surfaces", &n).finish()
    }
}

impl<S: AneSys> Default for Registry<S> {
    fn default() -> Self {
        Registry {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<S: AneSys> Registry<S> {
    /// Wraps `io` as a Surface of `shape`/`dtype` and records it.
    pub fn wrap(
        &self,
        shape: &[usize],
        dtype: ane_mil::DType,
        io: IoSurface<S>,
    ) -> Result<Surface> {
        let io = Arc::new(io);
        let weak = Arc::downgrade(&io);
        let surface = Surface::new(shape, dtype, Box::new(IoSurfaceMemory(io)))?;
        let mut map = self.lock()?;
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(surface.id(), weak);
        Ok(surface)
    }

    /// The IOSurface behind `surface`, or an error saying it is not one of this device's.
    pub fn io_surface(&self, surface: &Surface) -> Result<Arc<IoSurface<S>>> {
        let io = self
            .lock()?
            .get(&surface.id())
            .and_then(Weak::upgrade)
            .ok_or_else(|| {
                Error::Binding(format!(
                    "a {} {:?} surface is not an IOSurface of this ane device: allocate every \
                     surface of an ane binding with that device's surface()/surface_with_alloc()",
                    surface.dtype(),
                    surface.shape()
                ))
            })?;
        if io.len != surface.alloc_bytes() {
            return Err(Error::Binding(format!(
                "surface allocation {} does not match its IOSurface ({} bytes)",
                surface.alloc_bytes(),
                io.len
            )));
        }
        Ok(io)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<u64, Weak<IoSurface<S>>>>> {
        self.map
            .lock()
            .map_err(|_| Error::Surface("surface registry poisoned by a panic elsewhere".into()))
    }
}
