//! Compiling, evaluating and the I/O of kernel handles.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::null_mut;

use super::{count, handle_id, handle_ptr, slice, slice_mut, ANEKernelHandle};
use crate::error::{guard, BridgeError, Result};
use crate::handle::{self, Handle, Spec};

/// The BLOBFILE path `ane_bridge_compile` registers its single weight blob under.
const SINGLE_WEIGHT: &str = "@model_path/weights/weight.bin";

/// The MIL text (trailing NULs dropped).
///
/// # Safety
/// As [`slice`].
unsafe fn mil<'a>(text: *const c_char, len: usize) -> Result<&'a str> {
    // SAFETY: forwarded contract.
    let bytes = unsafe { slice(text.cast::<u8>(), len, "mil_text") }?;
    if bytes.is_empty() {
        return Err(BridgeError::Argument("mil_text is empty".into()));
    }
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    Ok(std::str::from_utf8(&bytes[..end])?)
}

/// `n` sizes at `p`.
///
/// # Safety
/// As [`slice`].
unsafe fn sizes<'a>(n: c_int, p: *const usize, what: &'static str) -> Result<&'a [usize]> {
    let n = count(n, what)?;
    // SAFETY: forwarded contract.
    unsafe { slice(p, n, what) }
}

fn compile(spec: Result<Spec<'_>>) -> Result<*mut ANEKernelHandle> {
    Ok(handle_ptr(handle::register(Handle::compile(&spec?)?)))
}

/// Compiles a MIL program with at most one BLOBFILE weight blob, registered under
/// `@model_path/weights/weight.bin` (`weight_data` NULL or `weight_len` 0: no weights).
/// Inputs `0..n_inputs-1` are the MIL function's parameters in declaration order and outputs
/// `0..n_outputs-1` its returned values in order, whatever their names (the runtime binds them
/// alphabetically on `ane`/`ane-sim` and pads every surface to the device's minimum). Each
/// byte size must equal its declared tensor type's (e.g. `tensor<fp16, [1,64,1,32]>` = 4096);
/// any mismatch, a MIL that does not parse or compile, or a spent compile budget gives NULL and
/// `last_error`. A second compile of the same MIL text and weight bytes on the same device is
/// served from the bridge's kernel cache (not counted, see `ane_bridge_get_compile_count`).
/// Free the handle with `ane_bridge_free`.
///
/// # Safety
/// Every non-NULL pointer points at as many valid elements as its length argument says.
#[no_mangle]
pub unsafe extern "C" fn ane_bridge_compile(
    mil_text: *const c_char,
    mil_len: usize,
    weight_data: *const u8,
    weight_len: usize,
    n_inputs: c_int,
    input_sizes: *const usize,
    n_outputs: c_int,
    output_sizes: *const usize,
) -> *mut ANEKernelHandle {
    guard(null_mut(), || {
        // SAFETY: forwarded contract (each pointer with its length).
        let spec = unsafe {
            let blob = slice(weight_data, weight_len, "weight_data");
            Ok(Spec {
                mil: mil(mil_text, mil_len)?,
                files: match blob? {
                    [] => Vec::new(),
                    b => vec![(SINGLE_WEIGHT.to_string(), b)],
                },
                input_sizes: sizes(n_inputs, input_sizes, "input_sizes")?,
                weight_sizes: &[],
                output_sizes: sizes(n_outputs, output_sizes, "output_sizes")?,
            })
        };
        compile(spec)
    })
}

/// Like `ane_bridge_compile` with any number of BLOBFILE files: `weight_names[i]` is the path
/// as the MIL writes it (`@model_path/weights/wq.bin`; a name without the `@model_path/`
/// prefix gets it), `weight_datas[i]` its `weight_lens[i]` bytes.
///
/// # Safety
/// As `ane_bridge_compile`; `weight_names`, `weight_datas` and `weight_lens` each hold
/// `n_weights` entries, names NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn ane_bridge_compile_multi_weights(
    mil_text: *const c_char,
    mil_len: usize,
    weight_names: *const *const c_char,
    weight_datas: *const *const u8,
    weight_lens: *const usize,
    n_weights: c_int,
    n_inputs: c_int,
    input_sizes: *const usize,
    n_outputs: c_int,
    output_sizes: *const usize,
) -> *mut ANEKernelHandle {
    guard(null_mut(), || {
        let n = count(n_weights, "n_weights")?;
        // SAFETY: forwarded contract (each pointer with its length).
        let spec = unsafe {
            let names = slice(weight_names, n, "weight_names")?;
            let datas = slice(weight_datas, n, "weight_datas")?;
            let lens = slice(weight_lens, n, "weight_lens")?;
            let mut files = Vec::with_capacity(n);
            for i in 0..n {
                if names[i].is_null() {
                    return Err(BridgeError::Argument(format!("weight_names[{i}] is NULL")));
                }
                let name = std::ffi::CStr::from_ptr(names[i]).to_string_lossy();
                let path = if name.starts_with(ane_runtime::weights::MODEL_PATH) {
                    name.into_owned()
                } else {
                    format!("{}{name}", ane_runtime::weights::MODEL_PATH)
                };
                let data = slice(datas[i], lens[i], "weight_datas[i]")?;
                files.push((path, data));
            }
            Ok(Spec {
                mil: mil(mil_text, mil_len)?,
                files,
                input_sizes: sizes(n_inputs, input_sizes, "input_sizes")?,
                weight_sizes: &[],
                output_sizes: sizes(n_outputs, output_sizes, "output_sizes")?,
            })
        };
        compile(spec)
    })
}

/// Compiles a MIL program whose weights are function parameters backed by surfaces the caller
/// rewrites between evals (`ane_bridge_write_weight*`) with no recompile. The MIL function
/// declares `n_inputs` activation parameters first, then `n_weights` weight parameters, and
/// returns one value of `output_size` bytes; input `i` is parameter `i`, weight `j` is
/// parameter `n_inputs + j`, whatever their names. Sizes are checked as in
/// `ane_bridge_compile`.
///
/// # Safety
/// As `ane_bridge_compile`.
#[no_mangle]
pub unsafe extern "C" fn ane_bridge_compile_dyn(
    mil_text: *const c_char,
    mil_len: usize,
    n_inputs: c_int,
    input_sizes: *const usize,
    n_weights: c_int,
    weight_sizes: *const usize,
    output_size: usize,
) -> *mut ANEKernelHandle {
    guard(null_mut(), || {
        let outs = [output_size];
        // SAFETY: forwarded contract (each pointer with its length).
        let spec = unsafe {
            Ok(Spec {
                mil: mil(mil_text, mil_len)?,
                files: Vec::new(),
                input_sizes: sizes(n_inputs, input_sizes, "input_sizes")?,
                weight_sizes: sizes(n_weights, weight_sizes, "weight_sizes")?,
                output_sizes: &outs,
            })
        };
        compile(spec)
    })
}

fn with<T>(kernel: *mut ANEKernelHandle, f: impl FnOnce(&mut Handle) -> Result<T>) -> Result<T> {
    let h = handle::lookup(handle_id(kernel), "kernel")?;
    let mut g = handle::lock(&h);
    f(&mut g)
}

/// Runs the kernel once on its device. Returns true on success, false (and `last_error`)
/// otherwise. Calls on one handle are serialised; different handles may run on different
/// threads at once.
#[no_mangle]
pub extern "C" fn ane_bridge_eval(kernel: *mut ANEKernelHandle) -> bool {
    guard(false, || with(kernel, |h| h.eval().map(|()| true)))
}

/// Copies `bytes` raw bytes (the tensor's dtype, usually fp16) into the start of input `idx`.
/// Fewer bytes than the tensor fill a prefix (the rest keeps its contents); more are refused
/// and nothing is written.
///
/// # Safety
/// `data` is NULL or points at `bytes` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn ane_bridge_write_input(
    kernel: *mut ANEKernelHandle,
    idx: c_int,
    data: *const c_void,
    bytes: usize,
) {
    guard((), || {
        // SAFETY: forwarded contract.
        let d = unsafe { slice(data.cast::<u8>(), bytes, "data") }?;
        with(kernel, |h| h.write(false, idx.into(), d))
    })
}

/// Copies output `idx` into `data`: `min(bytes, the tensor's bytes)` bytes, never more.
///
/// # Safety
/// `data` is NULL or points at `bytes` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ane_bridge_read_output(
    kernel: *mut ANEKernelHandle,
    idx: c_int,
    data: *mut c_void,
    bytes: usize,
) {
    guard((), || {
        // SAFETY: forwarded contract.
        let d = unsafe { slice_mut(data.cast::<u8>(), bytes, "data") }?;
        with(kernel, |h| h.read_output(idx.into(), d).map(|_| ()))
    })
}

/// Copies `bytes` raw bytes into the start of weight `idx` (`ane_bridge_compile_dyn`
/// handles; `0..n_weights-1`); the next eval uses them, no recompile. Size rules as
/// `ane_bridge_write_input`.
///
/// # Safety
/// `fp16_data` is NULL or points at `bytes` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn ane_bridge_write_weight(
    kernel: *mut ANEKernelHandle,
    idx: c_int,
    fp16_data: *const c_void,
    bytes: usize,
) {
    guard((), || {
        // SAFETY: forwarded contract.
        let d = unsafe { slice(fp16_data.cast::<u8>(), bytes, "fp16_data") }?;
        with(kernel, |h| h.write(true, idx.into(), d))
    })
}

/// Writes `count` floats into the start of weight `idx`, converted to the tensor's dtype
/// (fp16: round to nearest even). More elements than the tensor has are refused.
///
/// # Safety
/// `fp32_data` is NULL or points at `count` floats.
#[no_mangle]
pub unsafe extern "C" fn ane_bridge_write_weight_f32(
    kernel: *mut ANEKernelHandle,
    idx: c_int,
    fp32_data: *const f32,
    count: usize,
) {
    guard((), || {
        // SAFETY: forwarded contract.
        let d = unsafe { slice(fp32_data, count, "fp32_data") }?;
        with(kernel, |h| h.write_weight_f32(idx.into(), d))
    })
}

/// Feeds `src`'s output `src_out_idx` into `dst`'s input `dst_in_idx`; both tensors must have
/// the same byte size. Where the runtime can (same shape and dtype, binding rules still met)
/// the input is aliased to the output's memory: no copy now or after later evals of `src`
/// (calling again is free). Otherwise the bytes are copied now. Writing that input later
/// (`ane_bridge_write_input`) first gives it its own memory again, so it never changes `src`.
/// While aliased the two handles share that memory: evaluating `src` and `dst` at the same
/// moment on two threads makes one eval fail with "surface is busy" (an error, not a race).
#[no_mangle]
pub extern "C" fn ane_bridge_copy_io(
    src: *mut ANEKernelHandle,
    src_out_idx: c_int,
    dst: *mut ANEKernelHandle,
    dst_in_idx: c_int,
) {
    guard((), || {
        let (s, d) = (handle_id(src), handle_id(dst));
        let sh = handle::lookup(s, "src")?;
        if s == d {
            let mut g = handle::lock(&sh);
            return handle::copy_io_self(&mut g, src_out_idx.into(), dst_in_idx.into()).map(|_| ());
        }
        let dh = handle::lookup(d, "dst")?;
        // Lock in id order, so two threads copying both ways cannot deadlock.
        let (sg, mut dg) = if s < d {
            let sg = handle::lock(&sh);
            (sg, handle::lock(&dh))
        } else {
            let dg = handle::lock(&dh);
            (handle::lock(&sh), dg)
        };
        handle::copy_io(&sg, src_out_idx.into(), &mut dg, dst_in_idx.into()).map(|_| ())
    })
}

/// Releases the handle (its surfaces; its kernel stays in the kernel cache). A freed, NULL or
/// unknown handle is an error (`last_error`), never a crash; a call running on the handle in
/// another thread finishes first.
#[no_mangle]
pub extern "C" fn ane_bridge_free(kernel: *mut ANEKernelHandle) {
    guard((), || handle::unregister(handle_id(kernel), "kernel"))
}
