"""pytest suite for the ane_bridge package, on the cpu and ane-sim devices."""

import random
import sys
from array import array
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ane_bridge as ab  # noqa: E402

K = M = N = 64

# PR #22's function-parameter matmul: out[n, m] = sum_k W[n, k] x[k, m]. Declared x, then W;
# the Neural Engine binds W first (alphabetical), which the bridge must handle.
MATMUL = """program(1.3)
{
    func main<ios18>(tensor<fp16, [1, 64, 1, 64]> x, tensor<fp16, [1, 64, 64]> W) {
        tensor<int32, [3]> sh = const()[name=string("sh"), val=tensor<int32, [3]>([1,64,64])];
        tensor<fp16, [1,64,64]> x3 = reshape(shape=sh,x=x)[name=string("x3")];
        bool f = const()[name=string("f"), val=bool(false)];
        tensor<fp16, [1,64,64]> out = matmul(transpose_x=f,transpose_y=f,x=W,y=x3)[name=string("out")];
    } -> (out);
}
"""

ADD = """program(1.3)
{
    func main<ios18>(tensor<fp16, [1, 32, 1, 32]> %s) {
        tensor<fp16, [1,32,1,32]> y = add(x=%s,y=%s)[name=string("y")];
    } -> (y);
}
"""

CONV = """program(1.3)
{
    func main<ios18>(tensor<fp16, [1, 64, 1, 32]> x) {
        tensor<fp16, [32,64,1,1]> w = const()[name=string("w"), val=tensor<fp16, [32,64,1,1]>(BLOBFILE(path=string("@model_path/weights/%s"), offset=uint64(64)))];
        tensor<int32, [2]> d = const()[name=string("d"), val=tensor<int32, [2]>([1,1])];
        int32 g = const()[name=string("g"), val=int32(1)];
        tensor<int32, [4]> p = const()[name=string("p"), val=tensor<int32, [4]>([0,0,0,0])];
        string pt = const()[name=string("pt"), val=string("valid")];
        tensor<fp16, [1,32,1,32]> y = conv(dilations=d,groups=g,pad=p,pad_type=pt,strides=d,weight=w,x=x)[name=string("y")];
    } -> (y);
}
"""

TENSOR = 32 * 32 * 2


@pytest.fixture(params=["cpu", "ane-sim"])
def device(request):
    assert ab.init(request.param) == request.param
    return request.param


def tol(device):
    return 2e-3 if device == "cpu" else 2e-2


def fp16_round(values):
    return ab.from_fp16(ab.to_fp16(values))


def rand(n, rng):
    return fp16_round([rng.uniform(-1, 1) for _ in range(n)])


def matmul_ref(W, x):
    return [
        sum(W[n * K + k] * x[k * M + m] for k in range(K)) for n in range(N) for m in range(M)
    ]


def max_err(got, want):
    return max(abs(g - w) / max(1.0, abs(w)) for g, w in zip(got, want))


def matmul_kernel():
    return ab.Kernel.compile_dyn(MATMUL, [K * M * 2], [N * K * 2], N * M * 2)


def test_dynamic_matmul_matches_reference(device):
    rng = random.Random(1)
    x, W = rand(K * M, rng), rand(N * K, rng)
    with matmul_kernel() as k:
        k.write_input(0, ab.to_fp16(x))
        k.write_weight_f32(0, W)
        k.eval()
        got = k.read_output_f32(0)
    assert len(got) == N * M
    assert max_err(got, matmul_ref(W, x)) < tol(device)
    # The swapped binding (x's data as W, W's as x) would give something else.
    assert max_err(got, matmul_ref(x, W)) > 0.1


def test_weight_update_without_recompile(device):
    rng = random.Random(2)
    x, W = rand(K * M, rng), rand(N * K, rng)
    with matmul_kernel() as k:
        k.write_input_f32(0, x)
        k.write_weight_f32(0, W)
        k.eval()
        before = ab.compile_count()
        for step in range(3):
            W2 = rand(N * K, rng)
            if step == 0:
                k.write_weight(0, ab.to_fp16(W2))  # raw fp16 bytes
            else:
                k.write_weight_f32(0, array("f", W2))
            k.eval()
            assert max_err(k.read_output_f32(0), matmul_ref(W2, x)) < tol(device)
        assert ab.compile_count() == before, "weight writes must not recompile"


def test_second_compile_is_served_from_the_cache(device):
    mil = ADD % (("c_" + device.replace("-", "_"),) * 3)
    ab.reset_compile_count()
    ab.Kernel.compile(mil, [TENSOR], [TENSOR]).close()
    assert ab.compile_count() == 1
    with ab.Kernel.compile(mil, [TENSOR], [TENSOR]):
        assert ab.compile_count() == 1


def test_copy_io_chain(device):
    rng = random.Random(3)
    with ab.Kernel.compile(ADD % ("x", "x", "x"), [TENSOR], [TENSOR]) as k1, ab.Kernel.compile(
        ADD % ("a", "a", "a"), [TENSOR], [TENSOR]
    ) as k2:
        for _ in range(2):
            x = rand(32 * 32, rng)
            k1.write_input_f32(0, x)
            k1.eval()
            k1.copy_io(0, k2, 0)
            k2.eval()
            assert max_err(k2.read_output_f32(0), [4 * v for v in x]) < 1e-3
        with matmul_kernel() as mm, pytest.raises(ab.BridgeError, match="bytes"):
            k1.copy_io(0, mm, 0)


def test_blobfile_weights(device):
    rng = random.Random(4)
    W, x = rand(32 * 64, rng), rand(64 * 32, rng)
    blob = ab.build_weight_blob(W, 32, 64)
    assert len(blob) == 128 + 2 * 32 * 64
    Wt = [W[o * 64 + i] for i in range(64) for o in range(32)]
    assert ab.build_weight_blob_transposed(Wt, 64, 32) == blob
    want = [sum(W[o * 64 + i] * x[i * 32 + s] for i in range(64)) for o in range(32) for s in range(32)]
    with ab.Kernel.compile(CONV % "weight.bin", [64 * 32 * 2], [TENSOR], weights=blob) as k:
        k.write_input_f32(0, x)
        k.eval()
        assert max_err(k.read_output_f32(0), want) < tol(device)
    named = {"@model_path/weights/w.bin": blob}
    with ab.Kernel.compile(CONV % "w.bin", [64 * 32 * 2], [TENSOR], weights=named) as k:
        k.write_input_f32(0, x)
        k.eval()
        assert max_err(k.read_output_f32(0), want) < tol(device)
    q, scale = ab.build_weight_blob_quantized([0.0, 1.27, -2.54, 0.01], 2, 2)
    assert abs(scale - 0.02) < 1e-6 and len(q) == 132
    assert ab.build_weight_blob_int8([1, -2, 3, 4], 2, 2)[128:] == bytes([1, 254, 3, 4])


def test_buffer_kinds(device):
    data = ab.to_fp16([1.5] * (32 * 32))
    with ab.Kernel.compile(ADD % ("x", "x", "x"), [TENSOR], [TENSOR]) as k:
        for buf in (data, bytearray(data), memoryview(data), array("H", data)):
            k.write_input(0, buf)
            k.eval()
            assert k.read_output_f32(0) == [3.0] * (32 * 32)
        out = bytearray(TENSOR + 10)
        k.read_output_into(0, out)
        assert out[TENSOR:] == bytearray(10), "reads stop at the tensor's bytes"


@pytest.mark.skipif(not ab.have_numpy(), reason="numpy is not installed")
def test_numpy_arrays(device):
    import numpy as np

    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (K, M)).astype(np.float16)
    W = rng.uniform(-1, 1, (N, K)).astype(np.float32)
    with matmul_kernel() as k:
        k.write_input(0, x)
        k.write_weight_f32(0, W)  # float32 array
        k.eval()
        got = k.read_output_f32(0, as_numpy=True).reshape(N, M)
        want = W.astype(np.float16).astype(np.float64) @ x.astype(np.float64)
        assert np.max(np.abs(got - want) / np.maximum(1, np.abs(want))) < tol(device)
        k.write_weight_f32(0, W.astype(np.float64) * 2)  # converted to float32 first
        k.eval()
        out = np.empty((N, M), dtype=np.float16)
        k.read_output_into(0, out)
        assert np.max(np.abs(out.astype(np.float64) - 2 * want) / np.maximum(1, 2 * np.abs(want))) < tol(device)


def test_errors(device):
    with pytest.raises(ab.BridgeError, match="8192 bytes"):
        ab.Kernel.compile_dyn(MATMUL, [K * M * 2 - 2], [N * K * 2], N * M * 2)
    with pytest.raises(ab.BridgeError, match="parameters"):
        ab.Kernel.compile_dyn(MATMUL, [K * M * 2], [], N * M * 2)
    with pytest.raises(ab.BridgeError, match="MIL"):
        ab.Kernel.compile("program(1.3) { nope", [TENSOR], [TENSOR])
    k = matmul_kernel()
    with pytest.raises(ab.BridgeError, match="nothing was written"):
        k.write_input(0, bytes(K * M * 2 + 2))
    with pytest.raises(ab.BridgeError, match="nothing was written"):
        k.write_weight_f32(0, [0.0] * (N * K + 1))
    with pytest.raises(ab.BridgeError, match="out of range"):
        k.write_weight(1, b"\0\0")
    with pytest.raises(ab.BridgeError, match="out of range"):
        k.read_output(3)
    k.close()
    k.close()  # harmless
    with pytest.raises(ab.BridgeError, match="closed"):
        k.eval()
    with pytest.raises(ab.BridgeError, match="unknown device"):
        ab.set_device("gpu")
    with pytest.raises(ab.BridgeError, match="positive"):
        ab.build_weight_blob([], 0, 0)
    assert ab.last_error() != ""
    assert ab.device_name() == device and ab.last_error() == ""


def test_freed_handle_is_an_error_not_a_crash(device):
    k = ab.Kernel.compile(ADD % ("x", "x", "x"), [TENSOR], [TENSOR])
    raw = k._h
    k.close()
    assert not ab.library().ane_bridge_eval(raw)
    assert "not a live" in ab.last_error()


def test_realtime_around_an_eval(device):
    with ab.Kernel.compile(ADD % ("x", "x", "x"), [TENSOR], [TENSOR]) as k:
        with ab.realtime() as reason:
            assert reason is None or "realtime" in reason
            k.eval()


def test_version_and_library():
    assert ab.version()[0].isdigit()
    assert ab.library() is ab.library()
