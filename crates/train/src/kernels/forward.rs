//! Forward kernels: `sdpaFwd` (Neural Engine set) or `qkvFwd` (cpu set), `woFwd`, `ffnFused`.

use ane_mil::builder::Var;

use super::gen::{Gen, WeightUse};
use super::{KernelDims, KernelError, KernelOptions, KernelSpec, LayerWeights, Matrix, WeightMode};

/// `sdpaFwd` — QKV projections, RoPE, GQA and causal attention.
///
/// - in (`C = D`): activation `xnorm [D, S]` (the RMS-normed layer input); weight blocks
///   `wqt = Wqᵀ [D, QD]`, `wkt = Wkᵀ [D, KVD]`, `wvt = Wvᵀ [D, KVD]` (Packed: columns
///   `S..S+QD`, `S+QD..S+QD+KVD`, `S+QD+KVD..S+QD+2·KVD` of `x`).
/// - out `[2·QD + 2·KVD + D, S]` = `attn_out [QD]`, `q_rope [QD]`, `k_rope [KVD]`, `v [KVD]`,
///   `xnorm [D]` (pass-through) — all saved for backward.
///
/// `q = Wq·xnorm`, `k = Wk·xnorm`, `v = Wv·xnorm`; RoPE (interleaved pairs, θ from the options)
/// on q and k; query head `h` attends with KV head `h / (NH/NKV)`;
/// `attn_out_h = softmax(q_h·k_hᵀ/√HD + causal mask)·v_h`.
/// Reference: Vaswani et al. 2017 (arXiv 1706.03762); HF `LlamaAttention` / `repeat_kv`.
pub fn sdpa_fwd(
    dims: &KernelDims,
    opts: &KernelOptions,
    mode: WeightMode,
    weights: Option<&LayerWeights<'_>>,
) -> Result<KernelSpec, KernelError> {
    let mut g = Gen::new("sdpaFwd", dims, opts, mode, weights)?;
    let p = projections(&mut g)?;
    let d = g.dims;
    let kt = g.gqa_tile("kt", p.kr)?;
    let vt = g.gqa_tile("vt", p.vh)?;
    let probs = g.attention_probs("probs", p.qr, kt)?;
    let att = g.f.matmul("att", probs, vt, false, false)?;
    let attn_out = g.unheads("attn_out", att, d.n_heads)?;
    g.finish(&[
        ("attn_out", attn_out),
        ("q_rope", p.q_rope),
        ("k_rope", p.k_rope),
        ("v", p.v),
        ("xnorm", p.xnorm),
    ])
}

/// `qkvFwd` — the cpu kernel set's first forward kernel: the three projections of `sdpaFwd`
/// alone. The host rotates q and k ([`crate::host::rope_forward`], channel-first, so no
/// per-head transposes) and runs the attention fused ([`crate::host::attention_forward`]).
///
/// - in: as [`sdpa_fwd`];
/// - out `[QD + 2·KVD, S]` = `q [QD]`, `k [KVD]`, `v [KVD]` (`Wq·xnorm`, `Wk·xnorm`,
///   `Wv·xnorm`).
pub fn qkv_fwd(
    dims: &KernelDims,
    opts: &KernelOptions,
    mode: WeightMode,
    weights: Option<&LayerWeights<'_>>,
) -> Result<KernelSpec, KernelError> {
    let mut g = Gen::new("qkvFwd", dims, opts, mode, weights)?;
    let (_, [q, k, v]) = qkv(&mut g)?;
    g.finish(&[("q", q), ("k", k), ("v", v)])
}

/// What the QKV projections and RoPE leave: channel-first `xnorm`, `q_rope`, `k_rope`, `v`,
/// and the per-head `qr`, `kr`, `vh` (`[1, heads, S, HD]`).
struct Projections {
    xnorm: Var,
    q_rope: Var,
    k_rope: Var,
    v: Var,
    qr: Var,
    kr: Var,
    vh: Var,
}

/// The input `xnorm` and `[q, k, v]` = `Wq·xnorm`, `Wk·xnorm`, `Wv·xnorm`.
fn qkv(g: &mut Gen<'_>) -> Result<(Var, [Var; 3]), KernelError> {
    let (acts, lins) = g.inputs_spatial(
        g.dims.dim,
        &["xnorm"],
        &[
            WeightUse::fwd(Matrix::Wq),
            WeightUse::fwd(Matrix::Wk),
            WeightUse::fwd(Matrix::Wv),
        ],
    )?;
    let x = acts[0];
    let q = g.linear("q", lins[0], x)?;
    let k = g.linear("k", lins[1], x)?;
    let v = g.linear("v", lins[2], x)?;
    Ok((x, [q, k, v]))
}

/// `q = Wq·xnorm`, `k = Wk·xnorm`, `v = Wv·xnorm`, RoPE on q and k.
fn projections(g: &mut Gen<'_>) -> Result<Projections, KernelError> {
    let d = g.dims;
    let (x, [q, k, v]) = qkv(g)?;
    let qh = g.heads("qh", q, d.n_heads)?;
    let kh = g.heads("kh", k, d.n_kv_heads)?;
    let vh = g.heads("vh", v, d.n_kv_heads)?;
    let qr = g.rope("qr", qh, d.n_heads)?;
    let kr = g.rope("kr", kh, d.n_kv_heads)?;
    let q_rope = g.unheads("q_rope", qr, d.n_heads)?;
    let k_rope = g.unheads("k_rope", kr, d.n_kv_heads)?;
    Ok(Projections {
        xnorm: x,
        q_rope,
        k_rope,
        v,
        qr,
        kr,
        vh,
    })
}

/// `woFwd` — attention output projection.
///
/// - in (`C = QD`): activation `attn_out [QD, S]`; weight block `wot = Woᵀ [QD, D]` (Packed:
///   columns `S..S+D`).
/// - out `out [D, S]` = `o = Wo·attn_out`.
pub fn wo_fwd(
    dims: &KernelDims,
    opts: &KernelOptions,
    mode: WeightMode,
    weights: Option<&LayerWeights<'_>>,
) -> Result<KernelSpec, KernelError> {
    let mut g = Gen::new("woFwd", dims, opts, mode, weights)?;
    let d = g.dims;
    let (acts, lins) = g.inputs_spatial(d.q_dim, &["attn_out"], &[WeightUse::fwd(Matrix::Wo)])?;
    let o = g.linear("out", lins[0], acts[0])?;
    g.finish(&[("o", o)])
}

/// `ffnFused` — SwiGLU FFN with the scaled residual.
///
/// - in (`C = D`): activations `x2norm [D, S]` (columns `0..S`), `x2 [D, S]` (columns
///   `S..2S`); weight blocks `w1t = W1ᵀ [D, H]`, `w3t = W3ᵀ [D, H]`, `w2 = W2 [D, H]` as stored
///   (Packed: columns `2S..2S+H`, `2S+H..2S+2H`, `2S+2H..2S+3H`).
/// - out `[D + 3·H, S]` = `x_next [D]`, `h1 [H]`, `h3 [H]`, `gate [H]` (h1, h3, gate saved for
///   backward).
///
/// `h1 = W1·x2norm`, `h3 = W3·x2norm`, `gate = silu(h1)·h3`, `x_next = x2 + α·W2·gate`.
/// Reference: Shazeer 2020, "GLU Variants Improve Transformer" (arXiv 2002.05202).
pub fn ffn_fused(
    dims: &KernelDims,
    opts: &KernelOptions,
    mode: WeightMode,
    weights: Option<&LayerWeights<'_>>,
) -> Result<KernelSpec, KernelError> {
    let mut g = Gen::new("ffnFused", dims, opts, mode, weights)?;
    let d = g.dims;
    let (acts, lins) = g.inputs_spatial(
        d.dim,
        &["x2norm", "x2"],
        &[
            WeightUse::fwd(Matrix::W1),
            WeightUse::fwd(Matrix::W3),
            WeightUse::fwd_as_stored(Matrix::W2),
        ],
    )?;
    let (x2norm, x2) = (acts[0], acts[1]);
    let h1 = g.linear("h1", lins[0], x2norm)?;
    let h3 = g.linear("h3", lins[1], x2norm)?;
    let sig = g.f.unary("sig", ane_mil::Op::Sigmoid, h1)?;
    let silu = g.f.mul("silu", h1, sig)?;
    let gate = g.f.mul("gate", silu, h3)?;
    let ffn = g.linear("ffn", lins[2], gate)?;
    let alpha = g.lit(g.opts.alpha);
    let scaled = g.f.mul("ffn_scaled", ffn, alpha)?;
    let x_next = g.f.add("x_next", x2, scaled)?;
    g.finish(&[("x_next", x_next), ("h1", h1), ("h3", h3), ("gate", gate)])
}
