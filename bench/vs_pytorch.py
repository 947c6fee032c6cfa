"""Training speed of ane-train against eager PyTorch on the same model, side by side.

For each case (model preset, window length, updates), runs `ane-train train` and
`bench/pytorch_llama.py` one after the other, `--repeats` times, alternating, on the same
byte-tokenized built-in corpus, with the same thread count. Each run reports its median
milliseconds per update (the first, warm-up update included in the sample but not dominating
it); the table gives, per case, the medians [min, max] over repeats of both, and of the ratio
ane-train / PyTorch (below 1: ane-train is faster).

Needs: a release build of ane-train (`cargo build --release -p ane-cli`) and a Python with
torch (`pip install torch`). Standard library only otherwise.

    python3 bench/vs_pytorch.py --python /path/to/venv/bin/python --json bench/vs_pytorch.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (preset, seq_len, updates)
CASES = [
    ("stories260k", 128, 100),
    ("stories260k", 512, 30),
    ("stories15m", 256, 10),
    ("stories110m", 256, 5),
]


def ours(exe, work, preset, seq, steps):
    out = os.path.join(work, f"{preset}-{seq}")
    report = os.path.join(out, "report.json")
    subprocess.run(
        [exe, "train", "--device", "cpu", "--model", preset, "--seq-len", str(seq),
         "--steps", str(steps), "--eval-every", "0", "--checkpoint-every", "0",
         "--sample-tokens", "0", "--out", out, "--json", report],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    with open(report) as f:
        r = json.load(f)
    return r["median_ms_per_update"], r["config"]


def torch_side(python, config, corpus, steps):
    p = subprocess.run(
        [python, os.path.join(HERE, "pytorch_llama.py"), "--config", json.dumps(config),
         "--corpus", corpus, "--steps", str(steps)],
        check=True, capture_output=True, text=True,
    )
    r = json.loads(p.stdout)
    return r["median_ms_per_update"], r["torch"]


def stat(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exe", default=os.path.join(ROOT, "target", "release", "ane-train"))
    ap.add_argument("--python", default=sys.executable, help="a Python that has torch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="all", help="comma-separated presets, or all")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    cases = [c for c in CASES if args.cases == "all" or c[0] in args.cases.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        corpus = os.path.join(work, "corpus.txt")
        subprocess.run([args.exe, "corpus", "--out", corpus], check=True)
        version = None
        for preset, seq, steps in cases:
            a, b, ratio = [], [], []
            for _ in range(args.repeats):
                ms_ours, config = ours(args.exe, work, preset, seq, steps)
                ms_torch, version = torch_side(args.python, config, corpus, steps)
                a.append(ms_ours)
                b.append(ms_torch)
                ratio.append(ms_ours / ms_torch)
            rows.append({"model": preset, "seq_len": seq, "updates": steps,
                         "ane_train_ms": stat(a), "pytorch_ms": stat(b), "ratio": stat(ratio)})
            r = rows[-1]
            print(f"{preset:<12} S={seq:<4} ane-train {r['ane_train_ms']['median']:9.1f} ms  "
                  f"PyTorch {r['pytorch_ms']['median']:9.1f} ms  ratio "
                  f"{r['ratio']['median']:.2f} [{r['ratio']['min']:.2f}, {r['ratio']['max']:.2f}]",
                  flush=True)
    result = {"pytorch": version, "threads": os.cpu_count(), "repeats": args.repeats,
              "cases": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
