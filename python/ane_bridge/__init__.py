"""ane_bridge: Python over the ane-train C bridge (libane_bridge), with ctypes only.

No build step and no required dependency: numpy arrays are accepted (and returned on request)
when numpy is installed; bytes, bytearray, memoryview and array.array always work.

The library is found through $ANE_BRIDGE_LIB (a file path), else the workspace's
target/release, else target/debug. Errors are raised as `BridgeError`, whose message is the
bridge's `ane_bridge_last_error()`.

    import ane_bridge as ab
    ab.init("cpu")                       # or "ane-sim", "ane", "auto" (default: $ANE_BRIDGE_DEVICE)
    with ab.Kernel.compile_dyn(mil, [x_bytes], [w_bytes], out_bytes) as k:
        k.write_input(0, ab.to_fp16(x))
        k.write_weight_f32(0, w)
        k.eval()
        y = ab.from_fp16(k.read_output(0))
"""

import ctypes
from contextlib import contextmanager
from ctypes import c_char_p, c_float, c_size_t, c_void_p

from . import _lib
from ._buffers import byte_pointer, float_pointer, from_fp16, have_numpy, to_fp16, writable_pointer

__all__ = [
    "BridgeError",
    "Kernel",
    "build_weight_blob",
    "build_weight_blob_int8",
    "build_weight_blob_quantized",
    "build_weight_blob_transposed",
    "compile_count",
    "device_name",
    "from_fp16",
    "have_numpy",
    "init",
    "last_error",
    "library",
    "realtime",
    "reset_compile_count",
    "set_device",
    "to_fp16",
    "version",
]


class BridgeError(RuntimeError):
    """A bridge call failed; the message is the bridge's last_error."""


_LIB = None


def library():
    """The loaded ctypes library (loaded on first use)."""
    global _LIB
    if _LIB is None:
        _LIB = _lib.load()
    return _LIB


def last_error():
    """The calling thread's last bridge error ("" after a successful call)."""
    return library().ane_bridge_last_error().decode("utf-8", "replace")


def _check(what):
    err = last_error()
    if err:
        raise BridgeError(f"{what}: {err}")


def set_device(name):
    """Chooses the device for the next init/compile: cpu, ane-sim, ane or auto."""
    if library().ane_bridge_set_device(name.encode()) != 0:
        raise BridgeError(f"set_device({name!r}): {last_error()}")


def init(device=None):
    """Opens the device (`device`, else the current choice) and resets the compile count."""
    if device is not None:
        set_device(device)
    if library().ane_bridge_init() != 0:
        raise BridgeError(f"init: {last_error()}")
    return device_name()


def device_name():
    """The device in use (cpu, ane-sim, ane), or the choice before one is open."""
    name = library().ane_bridge_device_name().decode()
    _check("device_name")
    return name


def version():
    """The bridge library's version."""
    return library().ane_bridge_version().decode()


def compile_count():
    """Compiles counted since init or the last reset (cache hits are not counted)."""
    n = library().ane_bridge_get_compile_count()
    _check("get_compile_count")
    return n


def reset_compile_count():
    """Starts the compile count from 0 again."""
    library().ane_bridge_reset_compile_count()
    _check("reset_compile_count")


@contextmanager
def realtime():
    """Raises this thread's scheduling priority for the evals inside the block, where the OS
    allows it; yields None when active, else the reason it is not (evals work either way)."""
    library().ane_bridge_begin_realtime()
    reason = last_error() or None
    try:
        yield reason
    finally:
        library().ane_bridge_end_realtime()


def _sizes(values):
    vals = [int(v) for v in values]
    return (c_size_t * max(1, len(vals)))(*vals), len(vals)


def _mil(text):
    data = text.encode() if isinstance(text, str) else bytes(text)
    return data, len(data)


class Kernel:
    """A compiled kernel: tensors are indexed in the MIL's declaration order; sizes in bytes.
    Use as a context manager (or call `close`) to free it."""

    def __init__(self, handle, input_sizes, weight_sizes, output_sizes):
        self._h = handle
        self.input_sizes = list(input_sizes)
        self.weight_sizes = list(weight_sizes)
        self.output_sizes = list(output_sizes)

    @classmethod
    def compile(cls, mil, input_sizes, output_sizes, weights=None):
        """Compiles `mil` with BLOBFILE weights: None, one blob (bytes, registered as
        @model_path/weights/weight.bin) or a dict {path in the MIL: blob bytes}."""
        lib = library()
        text, n = _mil(mil)
        ins, n_in = _sizes(input_sizes)
        outs, n_out = _sizes(output_sizes)
        if weights is None or isinstance(weights, (bytes, bytearray, memoryview)):
            ptr, blen, keep = byte_pointer(weights or b"")
            h = lib.ane_bridge_compile(text, n, ptr, blen, n_in, ins, n_out, outs)
            del keep
        else:
            items = list(dict(weights).items())
            names = (c_char_p * max(1, len(items)))(*[k.encode() for k, _ in items])
            blobs = [bytes(v) for _, v in items]
            datas = (c_void_p * max(1, len(items)))(
                *[ctypes.cast(c_char_p(b), c_void_p) for b in blobs]
            )
            lens = (c_size_t * max(1, len(items)))(*[len(b) for b in blobs])
            h = lib.ane_bridge_compile_multi_weights(
                text, n, names, datas, lens, len(items), n_in, ins, n_out, outs
            )
        if not h:
            raise BridgeError(f"compile: {last_error()}")
        return cls(h, input_sizes, [], output_sizes)

    @classmethod
    def compile_dyn(cls, mil, input_sizes, weight_sizes, output_size):
        """Compiles `mil` whose parameters are the inputs, then the weights (rewritable
        between evals with write_weight*, no recompile); one output of `output_size` bytes."""
        text, n = _mil(mil)
        ins, n_in = _sizes(input_sizes)
        ws, n_w = _sizes(weight_sizes)
        h = library().ane_bridge_compile_dyn(text, n, n_in, ins, n_w, ws, int(output_size))
        if not h:
            raise BridgeError(f"compile_dyn: {last_error()}")
        return cls(h, input_sizes, weight_sizes, [output_size])

    def _handle(self):
        if self._h is None:
            raise BridgeError("the kernel is closed")
        return self._h

    def write_input(self, idx, data):
        """Writes raw bytes (fp16 for fp16 tensors) into the start of input `idx`."""
        ptr, n, keep = byte_pointer(data)
        library().ane_bridge_write_input(self._handle(), idx, ptr, n)
        del keep
        _check(f"write_input({idx})")

    def write_input_f32(self, idx, values):
        """Writes numbers into fp16 input `idx` (converted here)."""
        self.write_input(idx, to_fp16(values))

    def write_weight(self, idx, data):
        """Writes raw bytes into the start of weight `idx` (compile_dyn kernels)."""
        ptr, n, keep = byte_pointer(data)
        library().ane_bridge_write_weight(self._handle(), idx, ptr, n)
        del keep
        _check(f"write_weight({idx})")

    def write_weight_f32(self, idx, values):
        """Writes float32 values into weight `idx`, converted to its dtype by the bridge."""
        ptr, n, keep = float_pointer(values)
        library().ane_bridge_write_weight_f32(self._handle(), idx, ptr, n)
        del keep
        _check(f"write_weight_f32({idx})")

    def eval(self):
        """Runs the kernel once."""
        if not library().ane_bridge_eval(self._handle()):
            raise BridgeError(f"eval: {last_error()}")

    def read_output(self, idx, nbytes=None):
        """Output `idx` as bytes (all of it, or the first `nbytes`)."""
        if not 0 <= idx < len(self.output_sizes):
            library().ane_bridge_read_output(self._handle(), idx, None, 0)
            _check(f"read_output({idx})")
        n = self.output_sizes[idx] if nbytes is None else int(nbytes)
        buf = ctypes.create_string_buffer(n)
        library().ane_bridge_read_output(self._handle(), idx, buf, n)
        _check(f"read_output({idx})")
        return buf.raw[: min(n, self.output_sizes[idx])]

    def read_output_into(self, idx, out):
        """Copies output `idx` into a writable buffer (bytearray, array, numpy array, ...)."""
        ptr, n, keep = writable_pointer(out)
        library().ane_bridge_read_output(self._handle(), idx, ptr, n)
        del keep
        _check(f"read_output({idx})")

    def read_output_f32(self, idx, as_numpy=False):
        """fp16 output `idx` as floats (a list, or a float32 numpy array)."""
        return from_fp16(self.read_output(idx), as_numpy=as_numpy)

    def copy_io(self, out_idx, dst, in_idx):
        """Feeds this kernel's output `out_idx` into `dst`'s input `in_idx`."""
        library().ane_bridge_copy_io(self._handle(), out_idx, dst._handle(), in_idx)
        _check(f"copy_io({out_idx} -> {in_idx})")

    def close(self):
        """Frees the kernel; later calls raise BridgeError. Closing twice is harmless."""
        if self._h is not None:
            h, self._h = self._h, None
            library().ane_bridge_free(h)
            _check("free")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass


def _blob(ptr, n):
    if not ptr:
        raise BridgeError(f"build_weight_blob: {last_error()}")
    try:
        return ctypes.string_at(ptr, n)
    finally:
        library().ane_bridge_free_blob(ctypes.cast(ptr, c_void_p))


def _shape(values, rows, cols):
    ptr, n, keep = float_pointer(values)
    if n != rows * cols:
        raise BridgeError(f"{n} values given for {rows} x {cols}")
    return ptr, keep


def build_weight_blob(values, rows, cols):
    """A BLOBFILE weight file (blob v2, fp16) of `rows x cols` row-major values, as bytes."""
    ptr, keep = _shape(values, rows, cols)
    n = c_size_t(0)
    p = library().ane_bridge_build_weight_blob(ptr, rows, cols, ctypes.byref(n))
    del keep
    return _blob(p, n.value)


def build_weight_blob_transposed(values, rows, cols):
    """As build_weight_blob, with the data transposed to `cols x rows`."""
    ptr, keep = _shape(values, rows, cols)
    n = c_size_t(0)
    p = library().ane_bridge_build_weight_blob_transposed(ptr, rows, cols, ctypes.byref(n))
    del keep
    return _blob(p, n.value)


def build_weight_blob_int8(values, rows, cols):
    """A blob v2 int8 weight file of `rows x cols` int8 values (-128..127)."""
    raw = bytes(v & 0xFF for v in values)
    if len(raw) != rows * cols:
        raise BridgeError(f"{len(raw)} values given for {rows} x {cols}")
    src = (ctypes.c_int8 * max(1, len(raw))).from_buffer_copy(raw or b"\0")
    n = c_size_t(0)
    p = library().ane_bridge_build_weight_blob_int8(src, rows, cols, ctypes.byref(n))
    return _blob(p, n.value)


def build_weight_blob_quantized(values, rows, cols):
    """Symmetric per-tensor int8 quantisation: returns (blob bytes, scale)."""
    ptr, keep = _shape(values, rows, cols)
    n, scale = c_size_t(0), c_float(0)
    p = library().ane_bridge_build_weight_blob_quantized(
        ptr, rows, cols, ctypes.byref(scale), ctypes.byref(n)
    )
    del keep
    return _blob(p, n.value), scale.value

