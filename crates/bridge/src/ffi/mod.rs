//! The C entry points. Each one runs its body in [`guard`] (no panic crosses the boundary;
//! `last_error` is set on every call) and turns raw pointers into checked slices here, so the
//! rest of the crate is safe Rust.

pub mod blob;
pub mod kernel;

use std::ffi::{c_char, c_int, CStr};

use ane_runtime::Realtime;

use crate::device;
use crate::error::{guard, last_error_ptr, BridgeError, Result};

/// Opaque kernel handle. The pointer value is a registry id, never dereferenced: a freed or
/// made-up handle is an error, not a crash.
pub struct ANEKernelHandle {
    _opaque: [u8; 0],
}

/// The id a handle pointer carries.
pub(crate) fn handle_id(h: *const ANEKernelHandle) -> usize {
    h as usize
}

/// The handle pointer for a registry id.
pub(crate) fn handle_ptr(id: usize) -> *mut ANEKernelHandle {
    std::ptr::without_provenance_mut(id)
}

/// `n` elements at `p` as a slice: empty when `n == 0` (any `p`), an error when `p` is NULL or
/// misaligned otherwise.
///
/// # Safety
/// When `n > 0` and `p` is non-NULL, `p` points at `n` initialised `T`s that stay valid and
/// unmodified for `'a`.
pub(crate) unsafe fn slice<'a, T>(p: *const T, n: usize, what: &'static str) -> Result<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    check_ptr(p, n, what)?;
    // SAFETY: non-NULL, aligned, and `n` valid elements by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Like [`slice`], writable.
///
/// # Safety
/// When `n > 0` and `p` is non-NULL, `p` points at `n` writable `T`s that nothing else
/// accesses for `'a`.
pub(crate) unsafe fn slice_mut<'a, T>(
    p: *mut T,
    n: usize,
    what: &'static str,
) -> Result<&'a mut [T]> {
    if n == 0 {
        return Ok(&mut []);
    }
    check_ptr(p, n, what)?;
    // SAFETY: non-NULL, aligned, and `n` writable elements by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, n) })
}

fn check_ptr<T>(p: *const T, n: usize, what: &'static str) -> Result<()> {
    if p.is_null() {
        return Err(BridgeError::Null(what));
    }
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(BridgeError::Misaligned(what));
    }
    if n.checked_mul(std::mem::size_of::<T>().max(1))
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(BridgeError::Argument(format!(
            "{what}: {n} elements is too many"
        )));
    }
    Ok(())
}

/// A C `int` count that must not be negative.
pub(crate) fn count(n: c_int, what: &str) -> Result<usize> {
    usize::try_from(n)
        .map_err(|_| BridgeError::Argument(format!("{what} is {n}, must not be negative")))
}

const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };

/// Opens the chosen device (see `ane_bridge_set_device`) and resets the compile count.
/// Idempotent. Returns 0 when the device opens, -1 otherwise (`ane_bridge_last_error()` says
/// why, e.g. `ane` on a machine without the Neural Engine, or a bad `ANE_BRIDGE_DEVICE`).
/// Compiling without calling it first opens the device too.
#[no_mangle]
pub extern "C" fn ane_bridge_init() -> c_int {
    guard(-1, || device::init().map(|()| 0))
}

/// The calling thread's message for the last bridge call that failed: `""` when the last call
/// on this thread succeeded. Valid until the next bridge call on this thread. (This is the one
/// call that does not change it.)
#[no_mangle]
pub extern "C" fn ane_bridge_last_error() -> *const c_char {
    last_error_ptr()
}

/// Chooses the device: `"cpu"` (f32 compute), `"ane-sim"` (the CPU with the Neural Engine's
/// fp16 rounding and rules), `"ane"` (the Neural Engine, macOS only) or `"auto"` (`ane` where
/// it opens, else `cpu`). Without a call, `ANE_BRIDGE_DEVICE` chooses, else `auto`. Takes
/// effect at the next `ane_bridge_init` (or compile); handles compiled before keep working on
/// their device. Returns 0, or -1 for NULL or an unknown name.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ane_bridge_set_device(name: *const c_char) -> c_int {
    // SAFETY: forwarded contract.
    guard(-1, || unsafe { device::set_device(name) }.map(|()| 0))
}

/// The device in use: `"cpu"`, `"ane-sim"` or `"ane"` once one is open, else the choice
/// (possibly `"auto"`). `""` (and a `last_error`) when `ANE_BRIDGE_DEVICE` is invalid. A
/// static string.
#[no_mangle]
pub extern "C" fn ane_bridge_device_name() -> *const c_char {
    guard(c"".as_ptr(), || device::name().map(CStr::as_ptr))
}

/// The bridge's version (the `ane-bridge` crate version, e.g. `"0.1.0"`). A static string.
#[no_mangle]
pub extern "C" fn ane_bridge_version() -> *const c_char {
    guard(VERSION.as_ptr(), || Ok(VERSION.as_ptr()))
}

/// Compiles counted against the runtime's compile budget (`ANE_MAX_COMPILES`, default 100,
/// per process, on every device) since `ane_bridge_init` or the last reset: every compile the
/// device performs. Cache hits do NOT count: a compile of MIL text and weight bytes already
/// compiled on the same device in this process reuses that kernel (the bridge keeps the last
/// 32) and compiles and loads nothing. -1 if the budget cannot be read (bad
/// `ANE_MAX_COMPILES`).
#[no_mangle]
pub extern "C" fn ane_bridge_get_compile_count() -> c_int {
    guard(-1, || {
        device::compile_count().map(|n| c_int::try_from(n).unwrap_or(c_int::MAX))
    })
}

/// Starts the compile count from 0 again. The process-wide budget is not reset (the compiler
/// leak it models is per process): once `ANE_MAX_COMPILES` compiles are used, compiles fail
/// until the process restarts.
#[no_mangle]
pub extern "C" fn ane_bridge_reset_compile_count() {
    guard((), device::reset_compile_count)
}

fn realtime(r: Realtime) -> Result<()> {
    match r {
        Realtime::Active => Ok(()),
        Realtime::Unavailable(why) => Err(BridgeError::Realtime(why)),
    }
}

/// Raises the calling thread's scheduling priority for the evals that follow (on `ane`, the
/// device's realtime mode; on `cpu`/`ane-sim`, SCHED_FIFO or nice -10 on Linux, the
/// user-interactive QoS class on macOS). Where the OS refuses, nothing changes, evals work as
/// before and `last_error` says why.
#[no_mangle]
pub extern "C" fn ane_bridge_begin_realtime() {
    guard((), || realtime(device::current()?.device.realtime_begin()))
}

/// Ends what `ane_bridge_begin_realtime` started on this thread (`last_error` is set if it
/// was not active).
#[no_mangle]
pub extern "C" fn ane_bridge_end_realtime() {
    guard((), || realtime(device::current()?.device.realtime_end()))
}
