"""Finding and loading libane_bridge, and the C signatures of ane_bridge.h (ctypes only)."""

import ctypes
import os
import sys
from ctypes import POINTER, c_bool, c_char_p, c_float, c_int, c_int8, c_size_t, c_uint8, c_void_p
from pathlib import Path

ENV_LIB = "ANE_BRIDGE_LIB"

_NAMES = {"darwin": "libane_bridge.dylib", "win32": "ane_bridge.dll"}


def library_name():
    """The shared library's file name on this platform."""
    return _NAMES.get(sys.platform, "libane_bridge.so")


def candidates():
    """Where the library is looked for, in order: $ANE_BRIDGE_LIB, then the workspace's
    target/release, then target/debug (a `cargo build` without --release)."""
    env = os.environ.get(ENV_LIB)
    if env:
        return [Path(env)]
    root = Path(__file__).resolve().parents[2]
    return [root / "target" / profile / library_name() for profile in ("release", "debug")]


def find_library():
    """The path of the library to load; raises OSError saying how to build it."""
    paths = candidates()
    for p in paths:
        if p.is_file():
            return p
    tried = ", ".join(str(p) for p in paths)
    raise OSError(
        f"libane_bridge not found (tried {tried}); build it with "
        f"`cargo build --release -p ane-bridge` or set {ENV_LIB} to its path"
    )


_HANDLE = c_void_p
_SIZES = POINTER(c_size_t)

# name: (restype, argtypes), exactly as ane_bridge.h declares them.
SIGNATURES = {
    "ane_bridge_init": (c_int, []),
    "ane_bridge_last_error": (c_char_p, []),
    "ane_bridge_set_device": (c_int, [c_char_p]),
    "ane_bridge_device_name": (c_char_p, []),
    "ane_bridge_version": (c_char_p, []),
    "ane_bridge_get_compile_count": (c_int, []),
    "ane_bridge_reset_compile_count": (None, []),
    "ane_bridge_begin_realtime": (None, []),
    "ane_bridge_end_realtime": (None, []),
    "ane_bridge_compile": (
        _HANDLE,
        [c_char_p, c_size_t, c_void_p, c_size_t, c_int, _SIZES, c_int, _SIZES],
    ),
    "ane_bridge_compile_multi_weights": (
        _HANDLE,
        [
            c_char_p,
            c_size_t,
            POINTER(c_char_p),
            POINTER(c_void_p),
            _SIZES,
            c_int,
            c_int,
            _SIZES,
            c_int,
            _SIZES,
        ],
    ),
    "ane_bridge_compile_dyn": (
        _HANDLE,
        [c_char_p, c_size_t, c_int, _SIZES, c_int, _SIZES, c_size_t],
    ),
    "ane_bridge_eval": (c_bool, [_HANDLE]),
    "ane_bridge_write_input": (None, [_HANDLE, c_int, c_void_p, c_size_t]),
    "ane_bridge_read_output": (None, [_HANDLE, c_int, c_void_p, c_size_t]),
    "ane_bridge_write_weight": (None, [_HANDLE, c_int, c_void_p, c_size_t]),
    "ane_bridge_write_weight_f32": (None, [_HANDLE, c_int, POINTER(c_float), c_size_t]),
    "ane_bridge_copy_io": (None, [_HANDLE, c_int, _HANDLE, c_int]),
    "ane_bridge_free": (None, [_HANDLE]),
    "ane_bridge_build_weight_blob": (
        POINTER(c_uint8),
        [POINTER(c_float), c_int, c_int, POINTER(c_size_t)],
    ),
    "ane_bridge_build_weight_blob_transposed": (
        POINTER(c_uint8),
        [POINTER(c_float), c_int, c_int, POINTER(c_size_t)],
    ),
    "ane_bridge_build_weight_blob_int8": (
        POINTER(c_uint8),
        [POINTER(c_int8), c_int, c_int, POINTER(c_size_t)],
    ),
    "ane_bridge_build_weight_blob_quantized": (
        POINTER(c_uint8),
        [POINTER(c_float), c_int, c_int, POINTER(c_float), POINTER(c_size_t)],
    ),
    "ane_bridge_free_blob": (None, [c_void_p]),
}


def load(path=None):
    """Loads the library (found by `find_library` unless `path` is given) and declares every
    function's signature."""
    lib = ctypes.CDLL(str(path or find_library()))
    for name, (res, args) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    return lib
