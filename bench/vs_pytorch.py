"""Training speed of ane-train against eager PyTorch on the same model, side by side.

For each case (model preset, window length, updates), runs `ane-train train` and
`bench/pytorch_llama.py` one after the other, `--repeats` times, alternating, on the same
byte-tokenized built-in corpus, with the same thread count. Each run reports its median
milliseconds per update (the first, warm-up update included in the sample but not dominating
it); the table gives, per case, the medians [min, max] over repeats of both, and of the ratio
ane-train / PyTorch (below 1: ane-train is faster), and the peak resident set size of each
process (from `wait4`). With `--compile`, a third run per repeat times `torch.compile` of the
same model (for reference; the ratio is against eager).

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
    ("tiny", 128, 100),
    ("stories260k", 128, 100),
    ("stories260k", 512, 30),
    ("stories15m", 256, 10),
    ("stories110m", 256, 5),
]


def run_measured(cmd, capture):
    """Runs `cmd`; returns (stdout text or None, peak RSS in MiB) of that process alone."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, text=True)
    text = p.stdout.read() if capture else None
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise subprocess.CalledProcessError(p.returncode, cmd)
    return text, usage.ru_maxrss / 1024.0  # Linux reports KiB


def ours(exe, work, preset, seq, steps):
    out = os.path.join(work, f"{preset}-{seq}")
    report = os.path.join(out, "report.json")
    _, rss = run_measured(
        [exe, "train", "--device", "cpu", "--tokenizer", "bytes", "--model", preset, "--seq-len", str(seq),
         "--steps", str(steps), "--eval-every", "0", "--checkpoint-every", "0",
         "--sample-tokens", "0", "--out", out, "--json", report],
        capture=False,
    )
    with open(report) as f:
        r = json.load(f)
    return r["median_ms_per_update"], r["config"], rss


def torch_side(python, config, corpus, steps, compile_=False):
    cmd = [python, os.path.join(HERE, "pytorch_llama.py"), "--config", json.dumps(config),
           "--corpus", corpus, "--steps", str(steps)]
    if compile_:
        cmd.append("--compile")
    text, rss = run_measured(cmd, capture=True)
    r = json.loads(text)
    return r["median_ms_per_update"], r["torch"], rss


def stat(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exe", default=os.path.join(ROOT, "target", "release", "ane-train"))
    ap.add_argument("--python", default=sys.executable, help="a Python that has torch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="all", help="comma-separated presets, or all")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile of the PyTorch model (reference only)")
    args = ap.parse_args()
    cases = [c for c in CASES if args.cases == "all" or c[0] in args.cases.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        corpus = os.path.join(work, "corpus.txt")
        subprocess.run([args.exe, "corpus", "--out", corpus], check=True)
        version = None
        for preset, seq, steps in cases:
            a, b, c, ratio, rss_a, rss_b = [], [], [], [], [], []
            for _ in range(args.repeats):
                ms_ours, config, rss = ours(args.exe, work, preset, seq, steps)
                a.append(ms_ours)
                rss_a.append(rss)
                ms_torch, version, rss = torch_side(args.python, config, corpus, steps)
                b.append(ms_torch)
                rss_b.append(rss)
                ratio.append(ms_ours / ms_torch)
                if args.compile:
                    try:
                        ms_c, _, _ = torch_side(args.python, config, corpus, steps, True)
                        c.append(ms_c)
                    except subprocess.CalledProcessError:
                        pass
            row = {"model": preset, "seq_len": seq, "updates": steps,
                   "ane_train_ms": stat(a), "pytorch_ms": stat(b), "ratio": stat(ratio),
                   "ane_train_peak_rss_mib": stat(rss_a), "pytorch_peak_rss_mib": stat(rss_b)}
            if c:
                row["pytorch_compile_ms"] = stat(c)
            rows.append(row)
            r = rows[-1]
            compiled = (f"  torch.compile {r['pytorch_compile_ms']['median']:9.1f} ms"
                        if c else "")
            print(f"{preset:<12} S={seq:<4} ane-train {r['ane_train_ms']['median']:9.1f} ms  "
                  f"PyTorch {r['pytorch_ms']['median']:9.1f} ms  ratio "
                  f"{r['ratio']['median']:.2f} [{r['ratio']['min']:.2f}, {r['ratio']['max']:.2f}]"
                  f"  peak RSS {r['ane_train_peak_rss_mib']['median']:.0f} vs "
                  f"{r['pytorch_peak_rss_mib']['median']:.0f} MiB{compiled}",
                  flush=True)
    result = {"pytorch": version, "threads": os.cpu_count(), "repeats": args.repeats,
              "cases": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
