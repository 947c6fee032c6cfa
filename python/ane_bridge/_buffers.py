"""Turning Python buffers (bytes, bytearray, memoryview, array.array, numpy arrays) into
pointers for the C calls, and fp16 conversion, with numpy optional."""

import ctypes
import struct
from array import array
from ctypes import POINTER, c_float, c_void_p

try:  # numpy is optional: used when installed, never required
    import numpy as _np
except ImportError:  # pragma: no cover - exercised on machines without numpy
    _np = None


def have_numpy():
    """Whether numpy is importable."""
    return _np is not None


def _is_ndarray(x):
    return _np is not None and isinstance(x, _np.ndarray)


def byte_pointer(data):
    """(pointer, nbytes, keepalive) over the bytes of `data`, any C-contiguous buffer.
    Keep `keepalive` referenced until the C call returns."""
    if _is_ndarray(data):
        arr = _np.ascontiguousarray(data)
        return c_void_p(arr.ctypes.data), arr.nbytes, arr
    mv = memoryview(data)
    if not mv.c_contiguous:
        raise ValueError("the buffer must be C-contiguous")
    mv = mv.cast("B")
    n = mv.nbytes
    if n == 0:
        return None, 0, None
    if mv.readonly:
        buf = (ctypes.c_char * n).from_buffer_copy(mv)
    else:
        buf = (ctypes.c_char * n).from_buffer(mv)
    return ctypes.cast(buf, c_void_p), n, (buf, mv)


def writable_pointer(out):
    """(pointer, nbytes, keepalive) over a writable C-contiguous buffer."""
    if _is_ndarray(out):
        if not out.flags["C_CONTIGUOUS"] or not out.flags["WRITEABLE"]:
            raise ValueError("the output array must be C-contiguous and writeable")
        return c_void_p(out.ctypes.data), out.nbytes, out
    mv = memoryview(out)
    if mv.readonly or not mv.c_contiguous:
        raise ValueError("the output buffer must be writable and C-contiguous")
    mv = mv.cast("B")
    if mv.nbytes == 0:
        return None, 0, None
    buf = (ctypes.c_char * mv.nbytes).from_buffer(mv)
    return ctypes.cast(buf, c_void_p), mv.nbytes, (buf, mv)


def float_pointer(values):
    """(float*, count, keepalive) over `values` as float32: a numpy array (converted if
    needed), a buffer of format 'f' (array('f'), memoryview), or any iterable of numbers."""
    if _is_ndarray(values):
        arr = _np.ascontiguousarray(values, dtype=_np.float32).reshape(-1)
        return arr.ctypes.data_as(POINTER(c_float)), arr.size, arr
    try:
        mv = memoryview(values)
    except TypeError:
        mv = None
    if mv is not None and mv.format == "f" and mv.c_contiguous:
        arr = mv.cast("B").cast("f")
    else:
        arr = array("f", values)
    n = len(arr)
    if n == 0:
        return None, 0, None
    if isinstance(arr, memoryview) and arr.readonly:
        buf = (c_float * n).from_buffer_copy(arr)
    else:
        buf = (c_float * n).from_buffer(arr)
    return ctypes.cast(buf, POINTER(c_float)), n, (buf, arr)


def to_fp16(values):
    """`values` (numbers, or a numpy array) as little-endian fp16 bytes."""
    if _is_ndarray(values):
        return _np.ascontiguousarray(values, dtype="<f2").tobytes()
    vals = list(values)
    return struct.pack(f"<{len(vals)}e", *vals)


def from_fp16(data, as_numpy=False):
    """Little-endian fp16 bytes as a list of floats (a float32 numpy array if `as_numpy`)."""
    if as_numpy:
        if _np is None:
            raise ImportError("as_numpy=True needs numpy")
        return _np.frombuffer(bytes(data), dtype="<f2").astype(_np.float32)
    n = len(data) // 2
    return list(struct.unpack(f"<{n}e", bytes(data[: 2 * n])))
