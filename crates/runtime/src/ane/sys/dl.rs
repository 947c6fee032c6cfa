//! `dlopen`/`dlsym`: the only way this crate reaches Apple's libraries (no link-time
//! dependency, so everything builds and is tested on Linux).

use std::ffi::{c_void, CStr, CString};
use std::ptr::NonNull;

use crate::ane::backend::SysError;

/// A library opened with `dlopen(path, RTLD_NOW | RTLD_LOCAL)`. Never closed: Objective-C
/// classes a framework registers must outlive every object of theirs, so the handle lives
/// for the process.
#[derive(Debug, Clone, Copy)]
pub struct Library {
    handle: NonNull<c_void>,
    path: &'static str,
}

// SAFETY: a dlopen handle is a process-global token; dlsym on it is thread-safe.
unsafe impl Send for Library {}
// SAFETY: as above; the handle is never mutated or closed.
unsafe impl Sync for Library {}

impl Library {
    /// Opens `path`; `Missing` carries `dlerror()`.
    pub fn open(path: &'static str) -> Result<Self, SysError> {
        let c = CString::new(path).map_err(|_| SysError::Missing(format!("bad path {path}")))?;
        // SAFETY: `c` is a NUL-terminated path; dlopen has no other preconditions.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        match NonNull::new(handle) {
            Some(handle) => Ok(Library { handle, path }),
            None => {
                let e = last_error();
                let reason = e
                    .strip_prefix(path)
                    .map_or(e.as_str(), |r| r.trim_start_matches(": "));
                Err(SysError::Missing(format!("{path}: {reason}")))
            }
        }
    }

    /// The address of symbol `name` (a function, or a global variable).
    pub fn symbol(&self, name: &CStr) -> Result<NonNull<c_void>, SysError> {
        // SAFETY: the handle came from a successful dlopen and is never closed; `name` is
        // NUL-terminated.
        let p = unsafe { libc::dlsym(self.handle.as_ptr(), name.as_ptr()) };
        NonNull::new(p).ok_or_else(|| {
            SysError::Missing(format!(
                "{} has no symbol {}",
                self.path,
                name.to_string_lossy()
            ))
        })
    }

    /// The symbol as a function pointer of type `F`.
    ///
    /// # Safety
    /// `F` must be an `unsafe extern "C" fn` type whose signature is the C signature of
    /// `name`.
    pub unsafe fn function<F: Copy>(&self, name: &CStr) -> Result<F, SysError> {
        const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<*mut c_void>()) };
        let p = self.symbol(name)?.as_ptr();
        // SAFETY: F is a function-pointer type of pointer size (checked above) matching the
        // symbol's signature (caller's contract); dlsym returned the function's address.
        Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
    }
}

/// A symbol from any already-loaded image (`dlsym(RTLD_DEFAULT, name)`), e.g. libc's
/// `sysctlbyname`, which glibc does not have.
pub fn global_symbol(name: &CStr) -> Option<NonNull<c_void>> {
    // SAFETY: RTLD_DEFAULT is a valid pseudo-handle; `name` is NUL-terminated.
    NonNull::new(unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) })
}

fn last_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string owned by the C library, valid
    // until the next dl* call on this thread; it is copied at once.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        return "not found".into();
    }
    // SAFETY: non-null, NUL-terminated (above).
    unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
}
