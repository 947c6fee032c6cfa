"""Train a linear model y = W x on the bridge: one compile_dyn, then every step writes the new
weights with write_weight_f32 (no recompile), evaluates the forward pass on the device, and
takes a gradient step on the host.

    python3 python/examples/train_linear.py [--device cpu|ane-sim|ane|auto] [--steps 60]

Prints the loss every few steps; it falls by orders of magnitude. Pure Python (numpy is used
when installed, only to make the host gradient faster).
"""

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ane_bridge as ab  # noqa: E402

IN, OUT, BATCH = 32, 32, 32

# y[o, b] = sum_i W[o, i] x[i, b]; x is the activation input, W a weight parameter.
MIL = f"""program(1.3)
{{
    func main<ios18>(tensor<fp16, [1, {IN}, 1, {BATCH}]> x, tensor<fp16, [1, {OUT}, {IN}]> W) {{
        tensor<int32, [3]> sh = const()[name=string("sh"), val=tensor<int32, [3]>([1,{IN},{BATCH}])];
        tensor<fp16, [1,{IN},{BATCH}]> x3 = reshape(shape=sh,x=x)[name=string("x3")];
        bool f = const()[name=string("f"), val=bool(false)];
        tensor<fp16, [1,{OUT},{BATCH}]> y = matmul(transpose_x=f,transpose_y=f,x=W,y=x3)[name=string("y")];
    }} -> (y);
}}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cpu, ane-sim, ane or auto (default: $ANE_BRIDGE_DEVICE, else auto)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=4.0)
    args = ap.parse_args()

    print(f"ane_bridge {ab.version()} on {ab.init(args.device)}")
    rng = random.Random(0)
    target = [[rng.uniform(-1, 1) / IN**0.5 for _ in range(IN)] for _ in range(OUT)]
    W = [[0.0] * IN for _ in range(OUT)]

    with ab.Kernel.compile_dyn(MIL, [IN * BATCH * 2], [OUT * IN * 2], OUT * BATCH * 2) as k:
        compiles = ab.compile_count()
        first = last = None
        for step in range(args.steps):
            x = [[rng.uniform(-1, 1) for _ in range(BATCH)] for _ in range(IN)]
            k.write_input_f32(0, [v for row in x for v in row])
            k.write_weight_f32(0, [v for row in W for v in row])  # new weights, no recompile
            k.eval()
            yv = k.read_output_f32(0)
            y = [yv[o * BATCH : (o + 1) * BATCH] for o in range(OUT)]
            t = [[sum(target[o][i] * x[i][b] for i in range(IN)) for b in range(BATCH)] for o in range(OUT)]
            err = [[y[o][b] - t[o][b] for b in range(BATCH)] for o in range(OUT)]
            loss = sum(e * e for row in err for e in row) / (OUT * BATCH)
            scale = 2.0 / (OUT * BATCH)
            for o in range(OUT):
                eo = err[o]
                for i in range(IN):
                    xi = x[i]
                    W[o][i] -= args.lr * scale * sum(eo[b] * xi[b] for b in range(BATCH))
            first = loss if first is None else first
            last = loss
            if step % 5 == 0 or step == args.steps - 1:
                print(f"step {step:3d}  loss {loss:.3e}")
        assert ab.compile_count() == compiles, "weight updates must not recompile"
    print(f"loss {first:.3e} -> {last:.3e} with {compiles} compile(s)")
    return 0 if last < first * 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
