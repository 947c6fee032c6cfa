"""Checks that Hugging Face `transformers` loads a model exported by `ane-train export
--format safetensors` and computes what ane-train computes.

It trains nothing and downloads nothing: give it an exported directory (with the
`tokenizer.bin` of `--tokenizer-out`) and the `ane-train` binary, and it compares

1. greedy decoding from BOS: the ids `transformers` picks against the text of
   `ane-train generate --temperature 0` on the same directory (both decoded with the
   exported tokenizer's pieces), and
2. how decisive that comparison is: the smallest gap between the top two logits along
   the sequence (a tiny gap would let rounding pick either id).

Usage:
    python check_transformers.py --model DIR --exe target/release/ane-train [--steps 60]
Needs: torch, transformers, safetensors (pip).
"""

import argparse
import struct
import subprocess
import sys


def read_pieces(path):
    """The pieces of a llama2.c tokenizer.bin: [bytes] by id."""
    pieces = []
    with open(path, "rb") as f:
        data = f.read()
    (_max_len,) = struct.unpack_from("<i", data, 0)
    at = 4
    while at < len(data):
        _score, n = struct.unpack_from("<fi", data, at)
        at += 8
        pieces.append(data[at:at + n])
        at += n
    return pieces


def decode(pieces, ids):
    """llama2.c's decoding: a leading space is dropped after BOS, <0xXX> pieces are bytes."""
    out = b""
    prev = 1
    for i in ids:
        p = pieces[i]
        if prev == 1 and p.startswith(b" "):
            p = p[1:]
        if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
            p = bytes([int(p[3:5], 16)])
        out += p
        prev = i
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="directory written by ane-train export")
    ap.add_argument("--exe", required=True, help="the ane-train binary")
    ap.add_argument("--steps", type=int, default=60, help="positions, BOS included")
    args = ap.parse_args()

    import torch
    from transformers import LlamaForCausalLM

    torch.set_grad_enabled(False)
    model = LlamaForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    model.eval()
    pieces = read_pieces(f"{args.model}/tokenizer.bin")

    ids = [1]
    # one more than ane-train needs: it may count positions after BOS
    while len(ids) < args.steps + 1:
        logits = model(torch.tensor([ids])).logits[0, -1]
        ids.append(int(torch.argmax(logits)))
    hf_text = decode(pieces, ids[1:])

    ours = subprocess.run(
        [args.exe, "generate", "--checkpoint", args.model,
         "--tokenizer", f"{args.model}/tokenizer.bin", "--prompt", "",
         "--temperature", "0", "--steps", str(args.steps)],
        capture_output=True, check=True).stdout
    # generate streams the text to stdout, then a newline (its statistics go to stderr).
    ours_text = ours[:-1] if ours.endswith(b"\n") else ours
    # The number of transformers' ids whose text is exactly ane-train's.
    same = [k for k in range(1, len(ids) + 1) if decode(pieces, ids[1:k]) == ours_text]

    # The logits of the whole sequence: how close the two are where it matters.
    logits = model(torch.tensor([ids])).logits[0]
    margins = []
    for t in range(len(ids) - 1):
        top2 = torch.topk(logits[t], 2).values
        margins.append(float(top2[0] - top2[1]))
    print(f"transformers greedy: {hf_text!r}")
    print(f"ane-train greedy:    {ours_text!r}")
    print(f"smallest top-1/top-2 logit margin along the sequence: {min(margins):.4f}")
    if not same or same[-1] - 1 < (args.steps - 1) // 2:
        print("MISMATCH: ane-train's greedy text is not transformers' greedy text",
              file=sys.stderr)
        return 1
    print(f"OK: ane-train's greedy text is transformers' first {same[-1] - 1} greedy ids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
