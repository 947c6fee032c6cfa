"""The PyTorch side of `bench/vs_pytorch.py`: the same LLaMA training step, timed.

Builds the model described by an ane-train model config (the `config` object of an
ane-train efficiency report: dim, n_layers, n_heads, n_kv_heads, head_dim, hidden_dim,
vocab_size, seq_len, rope_theta, norm_eps, tied_classifier, residual_scale) in eager PyTorch,
fp32, and runs `--steps` training updates on random windows of a byte-tokenized text file:
embedding, per layer RMSNorm -> Q/K/V -> RoPE -> causal grouped-query attention -> Wo ->
residual, RMSNorm -> SwiGLU FFN -> residual, final RMSNorm, classifier, cross-entropy,
backward, global-norm clipping at 1.0, AdamW (0.9, 0.95, eps 1e-8, decay 0.1 on matrices).
That is the arithmetic `ane-train train` does per update.

Prints one JSON object: per-update times in ms and the median.
"""

import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(head_dim, seq, theta):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    ang = torch.outer(torch.arange(seq).float(), inv)
    return ang.cos(), ang.sin()


def rope(x, cos, sin):
    # x: [B, H, S, HD]; rotate interleaved pairs (2i, 2i+1).
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)


class Block(nn.Module):
    def __init__(self, c, alpha):
        super().__init__()
        d, qd, kvd = c["dim"], c["n_heads"] * c["head_dim"], c["n_kv_heads"] * c["head_dim"]
        self.c, self.alpha = c, alpha
        self.attn_norm = RMSNorm(d, c["norm_eps"])
        self.wq = nn.Linear(d, qd, bias=False)
        self.wk = nn.Linear(d, kvd, bias=False)
        self.wv = nn.Linear(d, kvd, bias=False)
        self.wo = nn.Linear(qd, d, bias=False)
        self.ffn_norm = RMSNorm(d, c["norm_eps"])
        self.w1 = nn.Linear(d, c["hidden_dim"], bias=False)
        self.w2 = nn.Linear(c["hidden_dim"], d, bias=False)
        self.w3 = nn.Linear(d, c["hidden_dim"], bias=False)

    def forward(self, x, cos, sin):
        c = self.c
        b, s, _ = x.shape
        nh, nkv, hd = c["n_heads"], c["n_kv_heads"], c["head_dim"]
        h = self.attn_norm(x)
        q = self.wq(h).view(b, s, nh, hd).transpose(1, 2)
        k = self.wk(h).view(b, s, nkv, hd).transpose(1, 2)
        v = self.wv(h).view(b, s, nkv, hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.alpha * self.wo(a.transpose(1, 2).reshape(b, s, nh * hd))
        h = self.ffn_norm(x)
        return x + self.alpha * self.w2(F.silu(self.w1(h)) * self.w3(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        alpha = c.get("residual_scale") or 1.0
        self.embed = nn.Embedding(c["vocab_size"], c["dim"])
        self.layers = nn.ModuleList(Block(c, alpha) for _ in range(c["n_layers"]))
        self.norm = RMSNorm(c["dim"], c["norm_eps"])
        self.tied = c.get("tied_classifier", True)
        if not self.tied:
            self.head = nn.Linear(c["dim"], c["vocab_size"], bias=False)
        cos, sin = rope_tables(c["head_dim"], c["seq_len"], c["rope_theta"])
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)

    def forward(self, tokens, targets):
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin)
        x = self.norm(x)
        w = self.embed.weight if self.tied else self.head.weight
        logits = x @ w.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="model config as a JSON object")
    ap.add_argument("--corpus", required=True, help="text file (bytes are tokens + 3)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="run the model under torch.compile")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    c = json.loads(args.config)
    data = torch.frombuffer(bytearray(open(args.corpus, "rb").read()), dtype=torch.uint8)
    data = data.long() + 3
    model = Llama(c)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            nn.init.normal_(p, std=0.02)
    forward = torch.compile(model) if args.compile else model
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
    )
    s = c["seq_len"]
    times, losses = [], []
    for _ in range(args.steps):
        start = int(torch.randint(0, len(data) - s - 1, (1,)))
        w = data[start:start + s + 1]
        t = time.perf_counter()
        loss = forward(w[:-1].unsqueeze(0), w[1:].unsqueeze(0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append((time.perf_counter() - t) * 1e3)
        losses.append(loss.item())
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "params": n_params,
        "ms": times,
        "median_ms_per_update": statistics.median(times),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "ln_vocab": math.log(c["vocab_size"]),
    }))


if __name__ == "__main__":
    main()
