//! The weight blob builders' entry points.

use std::ffi::{c_int, c_void};
use std::ptr::null_mut;

use super::{slice, slice_mut};
use crate::blob;
use crate::error::{guard, Result};

/// Writes the length, hands the blob out.
///
/// # Safety
/// `out_len` is NULL or points at a writable `size_t`.
unsafe fn hand_out(bytes: Vec<u8>, out_len: *mut usize) -> Result<*mut u8> {
    // SAFETY: forwarded contract.
    let len = unsafe { slice_mut(out_len, 1, "out_len") }?;
    let (p, n) = blob::hand_out(bytes);
    len[0] = n;
    Ok(p)
}

/// `rows · cols` floats at `src`.
///
/// # Safety
/// `src` is NULL or points at `rows · cols` floats.
unsafe fn floats<'a>(src: *const f32, rows: c_int, cols: c_int) -> Result<&'a [f32]> {
    let n = blob::elements(rows, cols)?;
    // SAFETY: forwarded contract.
    unsafe { slice(src, n, "src") }
}

/// Builds a BLOBFILE weight file (coremltools blob storage v2, one fp16 blob; the MIL refers
/// to it with `offset=uint64(64)`): 64-byte header, 64-byte metadata, then `src` (row-major
/// `rows × cols`, e.g. a conv weight `[rows, cols, 1, 1]`) as fp16. Sets `*out_len` to its
/// length (128 + 2·rows·cols). Free it with `ane_bridge_free_blob`. NULL on error.
///
/// # Safety
/// `src` points at `rows · cols` floats; `out_len` at a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn ane_bridge_build_weight_blob(
    src: *const f32,
    rows: c_int,
    cols: c_int,
    out_len: *mut usize,
) -> *mut u8 {
    // SAFETY: forwarded contract.
    guard(null_mut(), || unsafe {
        hand_out(blob::fp16(floats(src, rows, cols)?), out_len)
    })
}

/// As `ane_bridge_build_weight_blob`, with the data transposed: `cols × rows`.
///
/// # Safety
/// As `ane_bridge_build_weight_blob`.
#[no_mangle]
pub unsafe extern "C" fn ane_bridge_build_weight_blob_transposed(
    src: *const f32,
    rows: c_int,
    cols: c_int,
    out_len: *mut usize,
) -> *mut u8 {
    guard(null_mut(), || {
        // SAFETY: forwarded contract.
        let s = unsafe { floats(src, rows, cols) }?;
        let t = blob::transpose(s, rows as usize, cols as usize);
        // SAFETY: forwarded contract.
        unsafe { hand_out(blob::fp16(&t), out_len) }
    })
}

/// Builds a weight file holding `src` (`rows × cols` int8) as one int8 blob, in the same blob
/// v2 layout as the fp16 builder (data at byte 128, MIL `offset=uint64(64)`) — not upstream's
/// 64-byte-header layout. Free it with `ane_bridge_free_blob`.
///
/// # Safety
/// `src` points at `rows · cols` int8 values; `out_len` at a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn ane_bridge_build_weight_blob_int8(
    src: *const i8,
    rows: c_int,
    cols: c_int,
    out_len: *mut usize,
) -> *mut u8 {
    guard(null_mut(), || {
        let n = blob::elements(rows, cols)?;
        // SAFETY: forwarded contract.
        let s = unsafe { slice(src, n, "src") }?;
        // SAFETY: forwarded contract.
        unsafe { hand_out(blob::int8(s), out_len) }
    })
}

/// Quantises `src` (`rows × cols` floats) symmetrically per tensor — `scale = max|w| / 127`
/// (1 when all are 0), `q = round(w / scale)` half away from zero, clamped to -128..127 — and
/// builds the int8 weight file as `ane_bridge_build_weight_blob_int8`. Sets `*out_scale`.
/// NaN or infinite values are an error.
///
/// # Safety
/// `src` points at `rows · cols` floats; `out_scale` at a writable float; `out_len` at a
/// writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn ane_bridge_build_weight_blob_quantized(
    src: *const f32,
    rows: c_int,
    cols: c_int,
    out_scale: *mut f32,
    out_len: *mut usize,
) -> *mut u8 {
    guard(null_mut(), || {
        // SAFETY: forwarded contract.
        let scale = unsafe { slice_mut(out_scale, 1, "out_scale") }?;
        // SAFETY: forwarded contract.
        let (q, s) = blob::quantize(unsafe { floats(src, rows, cols) }?)?;
        // SAFETY: forwarded contract.
        let p = unsafe { hand_out(blob::int8(&q), out_len) }?;
        scale[0] = s;
        Ok(p)
    })
}

/// Frees a buffer returned by an `ane_bridge_build_weight_blob*` function. NULL does nothing;
/// any other pointer (or one freed already) is an error (`last_error`), not heap corruption.
#[no_mangle]
pub extern "C" fn ane_bridge_free_blob(ptr: *mut c_void) {
    guard((), || blob::free(ptr as usize))
}
