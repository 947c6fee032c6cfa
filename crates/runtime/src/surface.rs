//! Surfaces: device-visible tensor buffers (≈ IREE buffer_view ≈ an IOSurface on macOS).
//!
//! A [`Surface`] has a static shape (usually `[1, C, 1, S]`, channel-major: element `(c, s)` at
//! index `c·S + s`), a dtype (fp16 or fp32) and an allocation of at least `elements · size`
//! bytes, 64-byte aligned. The allocation may be larger than the data (the Neural Engine wants
//! equal-sized input allocations of at least 48 KiB); the data always starts at byte 0.
//!
//! Host code reads and writes through lock guards that hand out typed slices, so it writes
//! straight into device memory with no staging copy. A surface is either unlocked, read-locked
//! by any number of readers, or write-locked by one writer; a lock that cannot be had at once
//! fails with [`Error::SurfaceBusy`] rather than blocking. Devices take the same locks while
//! they evaluate.
//!
//! `Surface` is a cheap handle (`Clone` shares the memory): two Bindings that hold the same
//! Surface alias it — that is how one kernel's output feeds the next kernel's input for free.
//! Send + Sync.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::sync::Arc;

use ane_mil::DType;
use half::f16;

use crate::error::{Error, Result};

/// Backing memory of a Surface, provided by a device.
///
/// # Safety
/// `base()` must return a pointer to `len()` bytes, aligned to 64, valid and not moved for
/// the lifetime of the object, and only accessed by the runtime between `lock`/`unlock` pairs
/// (the Surface's lock state guarantees exclusive writers).
pub unsafe trait SurfaceMemory: Send + Sync + std::fmt::Debug {
    /// Allocation size in bytes.
    fn len(&self) -> usize;
    /// True when the allocation is empty (never, for real surfaces).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Makes the memory accessible to the CPU and returns its base address (IOSurfaceLock).
    fn lock(&self, write: bool) -> Result<*mut u8>;
    /// Ends CPU access (IOSurfaceUnlock).
    fn unlock(&self, write: bool);
}

/// An element type a Surface can be viewed as.
pub trait Element: bytemuck::Pod + Send + Sync + 'static {
    /// The dtype this element type represents.
    const DTYPE: DType;
}

impl Element for f16 {
    const DTYPE: DType = DType::Fp16;
}

impl Element for f32 {
    const DTYPE: DType = DType::Fp32;
}

static NEXT_SURFACE_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
struct Inner {
    id: u64,
    shape: Vec<usize>,
    dtype: DType,
    elements: usize,
    /// `> 0`: that many readers; `-1`: one writer; `0`: unlocked.
    state: AtomicIsize,
    mem: Box<dyn SurfaceMemory>,
}

/// A device-visible tensor buffer; see the module docs.
#[derive(Debug, Clone)]
pub struct Surface {
    inner: Arc<Inner>,
}

impl Surface {
    /// Wraps device memory as a Surface of `shape` and `dtype`. Fails when the memory is too
    /// small for the data or the dtype is not fp16/fp32.
    pub fn new(shape: &[usize], dtype: DType, mem: Box<dyn SurfaceMemory>) -> Result<Self> {
        let elements = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::Surface(format!("shape {shape:?} overflows")))?;
        let size = match dtype {
            DType::Fp16 | DType::Fp32 => dtype.size_bytes().unwrap_or(4),
            other => {
                return Err(Error::Surface(format!(
                    "surfaces hold fp16 or fp32, not {other}"
                )))
            }
        };
        if elements == 0 {
            return Err(Error::Surface(format!("shape {shape:?} has no elements")));
        }
        let bytes = elements * size;
        if mem.len() < bytes {
            return Err(Error::Surface(format!(
                "{} bytes of memory cannot hold {dtype} {shape:?} ({bytes} bytes)",
                mem.len()
            )));
        }
        Ok(Surface {
            inner: Arc::new(Inner {
                id: NEXT_SURFACE_ID.fetch_add(1, Ordering::Relaxed),
                shape: shape.to_vec(),
                dtype,
                elements,
                state: AtomicIsize::new(0),
                mem,
            }),
        })
    }

    /// A process-unique id; clones share it.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Shape of the data.
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.inner.dtype
    }

    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.inner.elements
    }

    /// Bytes of data (`elements · element size`).
    pub fn data_bytes(&self) -> usize {
        self.inner.elements * self.inner.dtype.size_bytes().unwrap_or(4)
    }

    /// Bytes allocated (`>= data_bytes()`).
    pub fn alloc_bytes(&self) -> usize {
        self.inner.mem.len()
    }

    /// True when both handles share one allocation.
    pub fn same_memory(&self, other: &Surface) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Read access as `&[T]` (`T` = `f16` or `f32`, matching the dtype).
    pub fn read<T: Element>(&self) -> Result<ReadGuard<'_, T>> {
        self.check_type::<T>()?;
        let lock = self.lock_read("read")?;
        Ok(ReadGuard {
            lock,
            _t: std::marker::PhantomData,
        })
    }

    /// Write access as `&mut [T]` (`T` = `f16` or `f32`, matching the dtype).
    pub fn write<T: Element>(&self) -> Result<WriteGuard<'_, T>> {
        self.check_type::<T>()?;
        let lock = self.lock_write("write")?;
        Ok(WriteGuard {
            lock,
            _t: std::marker::PhantomData,
        })
    }

    /// Writes `values` (one per element, in order) converting to the surface's dtype; fp16
    /// conversion is SIMD (round to nearest even).
    pub fn write_f32(&self, values: &[f32]) -> Result<()> {
        self.write_f32_at(0, values)
    }

    /// Writes `values` starting at element `start`.
    pub fn write_f32_at(&self, start: usize, values: &[f32]) -> Result<()> {
        self.check_range(start, values.len())?;
        let mut lock = self.lock_write("write_f32")?;
        match self.dtype() {
            DType::Fp16 => {
                let dst: &mut [f16] = bytemuck::cast_slice_mut(lock.bytes_mut(self.data_bytes()));
                half::slice::HalfFloatSliceExt::convert_from_f32_slice(
                    &mut dst[start..start + values.len()],
                    values,
                );
            }
            _ => {
                let dst: &mut [f32] = bytemuck::cast_slice_mut(lock.bytes_mut(self.data_bytes()));
                dst[start..start + values.len()].copy_from_slice(values);
            }
        }
        Ok(())
    }

    /// Writes the rectangle `rows × cols` of a surface viewed as `[C, width]` (channel-first,
    /// `C = elements / width`) from `src`, a host buffer with that same `[C, width]` layout;
    /// converts to the surface's dtype. One lock for the whole rectangle: this is how an
    /// activation block is written into a packed input without touching its weight columns.
    pub fn write_f32_rect(
        &self,
        width: usize,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        src: &[f32],
    ) -> Result<()> {
        let n = self.elements();
        if width == 0
            || !n.is_multiple_of(width)
            || src.len() != n
            || rows.end > n / width
            || cols.end > width
        {
            return Err(Error::Surface(format!(
                "rectangle rows {rows:?} cols {cols:?} of a [{}, {width}] view does not fit (source has {} values, the surface {n})",
                n / width.max(1),
                src.len()
            )));
        }
        let mut lock = self.lock_write("write_f32_rect")?;
        let bytes = lock.bytes_mut(self.data_bytes());
        for r in rows {
            let span = r * width + cols.start..r * width + cols.end;
            match self.dtype() {
                DType::Fp16 => {
                    let dst: &mut [f16] = bytemuck::cast_slice_mut(&mut bytes[..]);
                    half::slice::HalfFloatSliceExt::convert_from_f32_slice(
                        &mut dst[span.clone()],
                        &src[span],
                    );
                }
                _ => {
                    let dst: &mut [f32] = bytemuck::cast_slice_mut(&mut bytes[..]);
                    dst[span.clone()].copy_from_slice(&src[span]);
                }
            }
        }
        Ok(())
    }

    /// Reads every element as f32.
    pub fn read_f32(&self) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.elements()];
        self.read_f32_into(0, &mut out)?;
        Ok(out)
    }

    /// Reads `out.len()` elements starting at element `start`, converting to f32.
    pub fn read_f32_into(&self, start: usize, out: &mut [f32]) -> Result<()> {
        self.check_range(start, out.len())?;
        let lock = self.lock_read("read_f32")?;
        match self.dtype() {
            DType::Fp16 => {
                let src: &[f16] = bytemuck::cast_slice(lock.bytes(self.data_bytes()));
                half::slice::HalfFloatSliceExt::convert_to_f32_slice(
                    &src[start..start + out.len()],
                    out,
                );
            }
            _ => {
                let src: &[f32] = bytemuck::cast_slice(lock.bytes(self.data_bytes()));
                out.copy_from_slice(&src[start..start + out.len()]);
            }
        }
        Ok(())
    }

    /// Copies `channels` channels of a `[1, C, 1, S]`-style surface (dim 1 = channels, the
    /// product of the dims after it = the channel length) from `src` starting at channel
    /// `src_ch` into `self` starting at `dst_ch`. Channel lengths and dtypes must match.
    pub fn copy_channels_from(
        &self,
        dst_ch: usize,
        src: &Surface,
        src_ch: usize,
        channels: usize,
    ) -> Result<()> {
        let (dl, sl) = (self.channel_len()?, src.channel_len()?);
        if dl != sl || self.dtype() != src.dtype() {
            return Err(Error::Surface(format!(
                "channel copy needs equal channel lengths and dtypes: {:?} {} vs {:?} {}",
                self.shape(),
                self.dtype(),
                src.shape(),
                src.dtype()
            )));
        }
        let (dc, sc) = (self.shape()[1], src.shape()[1]);
        if dst_ch + channels > dc || src_ch + channels > sc {
            return Err(Error::Surface(format!(
                "channel range out of bounds: dst {dst_ch}+{channels} of {dc}, src {src_ch}+{channels} of {sc}"
            )));
        }
        if self.same_memory(src) {
            let mut lock = self.lock_write("copy_channels")?;
            let esz = self.dtype().size_bytes().unwrap_or(4);
            let bytes = lock.bytes_mut(self.data_bytes());
            bytes.copy_within(
                src_ch * sl * esz..(src_ch + channels) * sl * esz,
                dst_ch * dl * esz,
            );
            return Ok(());
        }
        let s = src.lock_read("copy_channels")?;
        let mut d = self.lock_write("copy_channels")?;
        let esz = self.dtype().size_bytes().unwrap_or(4);
        let n = channels * sl * esz;
        d.bytes_mut(self.data_bytes())[dst_ch * dl * esz..][..n]
            .copy_from_slice(&s.bytes(src.data_bytes())[src_ch * sl * esz..][..n]);
        Ok(())
    }

    fn channel_len(&self) -> Result<usize> {
        if self.shape().len() < 2 {
            return Err(Error::Surface(format!(
                "channel copy needs rank >= 2, got {:?}",
                self.shape()
            )));
        }
        Ok(self.shape()[2..].iter().product())
    }

    fn check_type<T: Element>(&self) -> Result<()> {
        if T::DTYPE != self.dtype() {
            return Err(Error::SurfaceDType {
                surface: self.dtype(),
                requested: T::DTYPE,
            });
        }
        Ok(())
    }

    fn check_range(&self, start: usize, len: usize) -> Result<()> {
        if start
            .checked_add(len)
            .is_none_or(|end| end > self.elements())
        {
            return Err(Error::Surface(format!(
                "elements {start}..{} are outside a surface of {} elements",
                start.saturating_add(len),
                self.elements()
            )));
        }
        Ok(())
    }

    /// Takes the read lock (device side). Fails at once if a writer holds the surface.
    pub fn lock_read(&self, what: &'static str) -> Result<Lock<'_>> {
        let state = &self.inner.state;
        let mut cur = state.load(Ordering::Acquire);
        loop {
            if cur < 0 {
                return Err(Error::SurfaceBusy(what));
            }
            match state.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        match self.inner.mem.lock(false) {
            Ok(base) => Ok(Lock {
                surface: self,
                base,
                write: false,
            }),
            Err(e) => {
                state.fetch_sub(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }

    /// Takes the write lock (device side). Fails at once if any guard holds the surface.
    pub fn lock_write(&self, what: &'static str) -> Result<Lock<'_>> {
        let state = &self.inner.state;
        if state
            .compare_exchange(0, -1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::SurfaceBusy(what));
        }
        match self.inner.mem.lock(true) {
            Ok(base) => Ok(Lock {
                surface: self,
                base,
                write: true,
            }),
            Err(e) => {
                state.store(0, Ordering::Release);
                Err(e)
            }
        }
    }
}

impl Surface {
    /// Takes the read or write lock and keeps it until [`Surface::raw_unlock`]; for device
    /// executors that hold many locks at once without allocating guards.
    pub(crate) fn raw_lock(&self, write: bool, what: &'static str) -> Result<*mut u8> {
        let lock = if write {
            self.lock_write(what)?
        } else {
            self.lock_read(what)?
        };
        let base = lock.base;
        std::mem::forget(lock);
        Ok(base)
    }

    /// Releases a lock taken with [`Surface::raw_lock`] (same `write`).
    pub(crate) fn raw_unlock(&self, write: bool) {
        drop(Lock {
            surface: self,
            base: std::ptr::null_mut(),
            write,
        });
    }
}

/// A held lock on a Surface's memory; unlocks on drop.
#[derive(Debug)]
pub struct Lock<'a> {
    surface: &'a Surface,
    base: *mut u8,
    write: bool,
}

// SAFETY: the lock only hands out the base pointer of memory that is Send + Sync
// (`SurfaceMemory: Send + Sync`); exclusivity is tracked by the surface's atomic state.
unsafe impl Send for Lock<'_> {}

impl Lock<'_> {
    /// The first `n` bytes of the allocation (`n <= alloc_bytes`).
    pub fn bytes(&self, n: usize) -> &[u8] {
        let n = n.min(self.surface.alloc_bytes());
        // SAFETY: `base` points at `alloc_bytes` valid bytes (SurfaceMemory contract) and the
        // state holds at least a read lock for the lifetime of `self`.
        unsafe { std::slice::from_raw_parts(self.base, n) }
    }

    /// The first `n` bytes of the allocation, writable. Empty for a read lock.
    pub fn bytes_mut(&mut self, n: usize) -> &mut [u8] {
        if !self.write {
            return &mut [];
        }
        let n = n.min(self.surface.alloc_bytes());
        // SAFETY: as in `bytes`, and the state holds the only write lock (-1), so no other
        // reference to this memory exists while `self` is borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.base, n) }
    }

    /// Raw base pointer, for device executors that access the memory with strides.
    pub fn base(&self) -> *mut u8 {
        self.base
    }
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        self.surface.inner.mem.unlock(self.write);
        if self.write {
            self.surface.inner.state.store(0, Ordering::Release);
        } else {
            self.surface.inner.state.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Read guard: derefs to the surface's elements.
#[derive(Debug)]
pub struct ReadGuard<'a, T: Element> {
    lock: Lock<'a>,
    _t: std::marker::PhantomData<T>,
}

impl<T: Element> Deref for ReadGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        bytemuck::cast_slice(self.lock.bytes(self.lock.surface.data_bytes()))
    }
}

/// Write guard: derefs mutably to the surface's elements.
#[derive(Debug)]
pub struct WriteGuard<'a, T: Element> {
    lock: Lock<'a>,
    _t: std::marker::PhantomData<T>,
}

impl<T: Element> Deref for WriteGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        bytemuck::cast_slice(self.lock.bytes(self.lock.surface.data_bytes()))
    }
}

impl<T: Element> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        let n = self.lock.surface.data_bytes();
        bytemuck::cast_slice_mut(self.lock.bytes_mut(n))
    }
}
