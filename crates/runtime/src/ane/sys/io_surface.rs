//! IOSurface: flat byte buffers shared with the Neural Engine (reference §3.1, §3.2).
//!
//! A surface is `IOSurfaceCreate` with `Width = bytes, Height = 1, BytesPerElement = 1,
//! BytesPerRow = bytes, AllocSize = bytes, PixelFormat = 0`. The property dictionary is an
//! NSDictionary (toll-free bridged to CFDictionary) keyed by the framework's `kIOSurface*`
//! CFString constants. CPU access: `IOSurfaceLock(s, options, NULL)` → base address →
//! `IOSurfaceUnlock(s, options, NULL)`, options `kIOSurfaceLockReadOnly` (1) for reads, 0 for
//! writes.

use std::ffi::{c_void, CStr};
use std::fmt;
use std::ptr::{self, NonNull};

use super::dl::Library;
use super::foundation::Foundation;
use super::objc::{Id, Objc};
use crate::ane::backend::SysError;

/// Path of IOSurface.framework.
pub const IOSURFACE: &str = "/System/Library/Frameworks/IOSurface.framework/IOSurface";
/// Path of CoreFoundation (for `CFRelease`).
pub const CORE_FOUNDATION: &str =
    "/System/Library/Frameworks/CoreFoundation.framework/CoreFoundation";
/// `kIOSurfaceLockReadOnly` (IOSurfaceTypes.h).
pub const LOCK_READ_ONLY: u32 = 1;

type CfRelease = unsafe extern "C" fn(*const c_void);

/// The IOSurface functions and property keys, resolved once.
#[derive(Debug)]
pub struct IoSurfaceApi {
    create: unsafe extern "C" fn(*const c_void) -> *mut c_void,
    lock: unsafe extern "C" fn(*mut c_void, u32, *mut u32) -> i32,
    unlock: unsafe extern "C" fn(*mut c_void, u32, *mut u32) -> i32,
    base: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    alloc_size: unsafe extern "C" fn(*mut c_void) -> usize,
    cf_release: CfRelease,
    /// `kIOSurfaceWidth`, `Height`, `BytesPerElement`, `BytesPerRow`, `AllocSize`,
    /// `PixelFormat` (CFStringRef constants).
    keys: [Id; 6],
}

// SAFETY: function addresses and constant CFStrings are immutable for the process.
unsafe impl Send for IoSurfaceApi {}
// SAFETY: as above; the IOSurface functions are thread-safe.
unsafe impl Sync for IoSurfaceApi {}

impl IoSurfaceApi {
    /// Opens IOSurface.framework and CoreFoundation and resolves what is used.
    pub fn load() -> Result<Self, SysError> {
        let lib = Library::open(IOSURFACE)?;
        let cf = Library::open(CORE_FOUNDATION)?;
        let key = |name: &CStr| -> Result<Id, SysError> {
            let p = lib.symbol(name)?.cast::<Id>();
            // SAFETY: the symbol is a `const CFStringRef` global (IOSurfaceRef.h); reading it
            // yields the constant string, valid for the process.
            Ok(unsafe { p.as_ptr().read() })
        };
        // SAFETY: each type is the C signature in IOSurfaceRef.h / CFBase.h:
        // IOSurfaceCreate(CFDictionaryRef) -> IOSurfaceRef (+1, Create rule),
        // IOSurfaceLock/Unlock(IOSurfaceRef, IOSurfaceLockOptions (uint32), uint32_t *seed)
        // -> kern_return_t, IOSurfaceGetBaseAddress -> void *, IOSurfaceGetAllocSize ->
        // size_t, CFRelease(CFTypeRef).
        unsafe {
            Ok(IoSurfaceApi {
                create: lib.function(c"IOSurfaceCreate")?,
                lock: lib.function(c"IOSurfaceLock")?,
                unlock: lib.function(c"IOSurfaceUnlock")?,
                base: lib.function(c"IOSurfaceGetBaseAddress")?,
                alloc_size: lib.function(c"IOSurfaceGetAllocSize")?,
                cf_release: cf.function(c"CFRelease")?,
                keys: [
                    key(c"kIOSurfaceWidth")?,
                    key(c"kIOSurfaceHeight")?,
                    key(c"kIOSurfaceBytesPerElement")?,
                    key(c"kIOSurfaceBytesPerRow")?,
                    key(c"kIOSurfaceAllocSize")?,
                    key(c"kIOSurfacePixelFormat")?,
                ],
            })
        }
    }

    /// A new `bytes`-byte surface (+1, released when the returned value drops).
    pub fn create(
        &self,
        objc: &Objc,
        ns: &Foundation,
        bytes: usize,
    ) -> Result<IoSurfaceRef, SysError> {
        let _pool = objc.pool();
        let n = i64::try_from(bytes).map_err(|_| SysError::failed("surface too large"))?;
        let values = [n, 1, 1, n, n, 0].map(|v| ns.number(objc, v));
        let props = ns.dictionary(objc, &self.keys, &values);
        if props.is_null() {
            return Err(SysError::failed("could not build the IOSurface properties"));
        }
        // SAFETY: `props` is a live NSDictionary (toll-free bridged CFDictionaryRef) holding
        // the §3.1 properties; IOSurfaceCreate copies what it needs.
        let s = unsafe { (self.create)(Foundation::as_cf(props)) };
        let ptr = NonNull::new(s).ok_or_else(|| {
            SysError::failed(format!("IOSurfaceCreate({bytes} bytes) returned NULL"))
        })?;
        Ok(IoSurfaceRef {
            ptr,
            release: self.cf_release,
        })
    }

    /// `IOSurfaceLock` then `IOSurfaceGetBaseAddress`.
    pub fn lock(&self, s: &IoSurfaceRef, write: bool) -> Result<*mut u8, SysError> {
        let opts = if write { 0 } else { LOCK_READ_ONLY };
        // SAFETY: `s` is a live IOSurface; a null seed pointer is allowed.
        let kr = unsafe { (self.lock)(s.ptr.as_ptr(), opts, ptr::null_mut()) };
        if kr != 0 {
            return Err(SysError::Failed {
                code: Some(i64::from(kr)),
                message: "IOSurfaceLock failed".into(),
            });
        }
        Ok(self.base(s))
    }

    /// `IOSurfaceUnlock` with the options of the matching lock.
    pub fn unlock(&self, s: &IoSurfaceRef, write: bool) {
        let opts = if write { 0 } else { LOCK_READ_ONLY };
        // SAFETY: `s` is a live IOSurface locked with the same options; a failure would only
        // mean it was not locked, which the Surface lock state rules out.
        unsafe { (self.unlock)(s.ptr.as_ptr(), opts, ptr::null_mut()) };
    }

    /// `IOSurfaceGetBaseAddress`.
    pub fn base(&self, s: &IoSurfaceRef) -> *mut u8 {
        // SAFETY: `s` is a live IOSurface.
        unsafe { (self.base)(s.ptr.as_ptr()) }.cast()
    }

    /// `IOSurfaceGetAllocSize`.
    pub fn alloc_size(&self, s: &IoSurfaceRef) -> usize {
        // SAFETY: `s` is a live IOSurface.
        unsafe { (self.alloc_size)(s.ptr.as_ptr()) }
    }
}

/// An owned (+1) `IOSurfaceRef`, `CFRelease`d on drop.
pub struct IoSurfaceRef {
    ptr: NonNull<c_void>,
    release: CfRelease,
}

impl fmt::Debug for IoSurfaceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IOSurface({:p})", self.ptr)
    }
}

// SAFETY: IOSurfaces are designed to be shared across threads and processes; the ref count
// is atomic and access to the memory is coordinated by the Surface lock state.
unsafe impl Send for IoSurfaceRef {}
// SAFETY: as above.
unsafe impl Sync for IoSurfaceRef {}

impl IoSurfaceRef {
    /// The raw `IOSurfaceRef` (valid while `self` lives).
    pub fn as_ptr(&self) -> *const c_void {
        self.ptr.as_ptr()
    }
}

impl Drop for IoSurfaceRef {
    fn drop(&mut self) {
        // SAFETY: balances the +1 from IOSurfaceCreate.
        unsafe { (self.release)(self.ptr.as_ptr()) }
    }
}
