//! Input-gradient (dx) kernels: `ffnBwdW2t`, `ffnBwdW13t`, `wotBwd`, `sdpaBwd1`, `sdpaBwd2`,
//! `qBwd`, `kvBwd`. Each overwrites its output; weight gradients are host GEMMs.

use super::gen::{i, Gen, WeightUse};
use super::{KernelDims, KernelError, KernelOptions, KernelSpec, LayerWeights, Matrix, WeightMode};

/// `ffnBwdW2t` — gradient into the SwiGLU gate.
///
/// - in (`C = D`): activation `dffn [D, S]` (`= α·dy`); weight block `w2 = W2 [D, H]` as stored
///   (Packed: columns `S..S+H`).
/// - out `[H, S]` = `dgate = W2ᵀ·dffn`.
pub fn ffn_bwd_w2t(
    dims: &KernelDims,
    opts: &KernelOptions,
    mode: WeightMode,
    weights: Option<&LayerWeights<'_>>,
) -> Result<KernelSpec, KernelError> {
    let mut g = Gen::new("ffnBwdW2t", dims, opts, mode, weights)?;
    let d = g.dims;
    let (acts, lins) = g.inputs_spatial(d.dim, &["dffn"], &[WeightUse::bwd(Matrix::W2)])?;
    let dgate = g.linear("out", lins[0], acts[0])?;
    g.finish(&[("dgate", dgate)])
}

/// `ffnBwdW13t` — gradient into the FFN input.
///
/// - in (`C = H`): activations `dh1 [H, S]` (columns `0..S`), `dh3 [H, S]` (columns `S..2S`);
///   weight blocks `w1 = W1 [H, D]`, `w3 = W3 [H, D]` as stored (Packed: columns `2S..2S+D`,
///   `2S+D..2S+2D`).
/// - out `[D, S]` = `dx_ffn = W1ᵀ·dh1 + W3ᵀ·dh3`.
pub fn ffn_bwd_w13t(
    dims: &KernelDims,
    opts: &KernelOptions,
    mode: WeightMode,
    weights: Option<&LayerWeights<'_>>,
) -> Result<KernelSpec, KernelError> {
    let mut g = Gen::new("ffnBwdW13t", dims, opts, mode, weights)?;
    let d = g.dims;
    let (acts, lins) = g.inputs_spatial(
        d.hidden,
        &["dh1", "dh3"],
        &[WeightUse::bwd(Matrix::W1), WeightUse::bwd(Matrix::W3)],
    )?;
    let a = g.linear("dx1", lins[0], acts[0])?;
    let b = g.linear("dx3", lins[1], acts[1])?;
    let dx = g.f.add("out", a, b)?;
    g.finish(&[("dx_ffn", dx)])
}

/// `wotBwd` — gradient into the attention output.
///
/// - in (`C = D`): activation `dx2_scaled [D, S]` (`= α·dx2`, scaled by the host); weight block
///   `wo = Wo [D, QD]` as stored (Packed: columns `S..S+QD`).
/// - out `[QD, S]` = `da = Woᵀ·(α·dx2)`.
pub fn wot_bwd(
    dims: &KernelDims,
    opts: &KernelOptions,
    mode: WeightMode,
    weights: Option<&LayerWeights<'_>>,
) -> Result<KernelSpec, KernelError> {
    let mut g = Gen::new("wotBwd", dims, opts, mode, weights)?;
    let d = g.dims;
    let (acts, lins) = g.inputs_spatial(d.dim, &["dx2_scaled"], &[WeightUse::bwd(Matrix::Wo)])?;
    let da = g.linear("out", lins[0], acts[0])?;
    g.finish(&[("da", da)])
}

/// `qBwd` — gradient into xnorm through the query projection.
///
/// - in (`C = QD`): activation `dq [QD, S]` (after inverse RoPE); weight block
///   `wq = Wq [QD, D]` as stored (Packed: columns `S..S+D`).
/// - out `[D, S]` = `dx_q = Wqᵀ·dq`.
pub fn q_bwd(
    dims: &KernelDims,
    opts: &KernelOptions,
    mode: WeightMode,
    weights: Option<&LayerWeights<'_>>,
) -> Result<KernelSpec, KernelError> {
    let mut g = Gen::new("qBwd", dims, opts, mode, weights)?;
    let d = g.dims;
    let (acts, lins) = g.inputs_spatial(d.q_dim, &["dq"], &[WeightUse::bwd(Matrix::Wq)])?;
    let dx = g.linear("out", lins[0], acts[0])?;
    g.finish(&[("dx_q", dx)])
}

/// `kvBwd` — gradient into xnorm through the key and value projections.
///
/// - in (`C = KVD`): activations `dk [KVD, S]` (columns `0..S`, after GQA reduction and inverse
///   RoPE), `dv [KVD, S]` (columns `S..2S`); weight blocks `wk = Wk [KVD, D]`,
///   `wv = Wv [KVD, D]` as stored (Packed: columns `2S..2S+D`, `2S+D..2S+2D`).
/// - out `[D, S]` = `dx_kv = Wkᵀ·dk + Wvᵀ·dv`.
pub fn kv_bwd(
    dims: &KernelDims,
    opts: &KernelOptions,
    mode: WeightMode,
    weights: Option<&LayerWeights<'_>>,
) -> Result<KernelSpec, KernelError> {
    let mut g = Gen::new("kvBwd", dims, opts, mode, weights)?;
    let d = g.dims;
    let (acts, lins) = g.inputs_spatial(
        d.kv_dim,
        &["dk", "dv"],
        &[WeightUse::bwd(Matrix::Wk), WeightUse::bwd(Matrix::Wv)],
    )?;
    let a = g.linear("dxk", lins[0], acts[0])?;
    let b = g.linear("dxv", lins[1], acts[1])?;
    let dx = g.f.add("out", a, b)?;
    g.finish(&[("dx_kv", dx)])
}

/// `sdpaBwd1` — recomputes the attention probabilities and back-propagates through `probs·v`.
/// Weight-free: the same program in every mode.
///
/// - in `x [4·QD, S]`, channel blocks `q_rope [QD]`, `k_tiled [QD]`, `v_tiled [QD]`, `da [QD]`
///   (K and V already broadcast to the query heads by the host, head `h` ← KV head `h/G`).
/// - out `[QD + 2·NH·S, S]` = `dv_full [QD]` (per query head; the host sums each group),
///   `probs [NH·S]`, `dp [NH·S]` (channel `h·S + query`, column = key).
///
/// `probs_h = softmax(q_h·k_hᵀ/√HD + mask)`, `dv_h = probs_hᵀ·da_h`, `dp_h = da_h·v_hᵀ`.
pub fn sdpa_bwd1(
    dims: &KernelDims,
    opts: &KernelOptions,
    mode: WeightMode,
    weights: Option<&LayerWeights<'_>>,
) -> Result<KernelSpec, KernelError> {
    let mut g = Gen::new("sdpaBwd1", dims, opts, mode, weights)?;
    let d = g.dims;
    let qd = d.q_dim;
    let x = g.inputs_channels(&[("q_rope", qd), ("k_tiled", qd), ("v_tiled", qd), ("da", qd)])?;
    let qh = g.heads("qh", x[0], d.n_heads)?;
    let kh = g.heads("kh", x[1], d.n_heads)?;
    let vh = g.heads("vh", x[2], d.n_heads)?;
    let dah = g.heads("dah", x[3], d.n_heads)?;
    let probs = g.attention_probs("probs", qh, kh)?;
    let dvh = g.f.matmul("dvh", probs, dah, true, false)?;
    let dv = g.unheads("dv_full", dvh, d.n_heads)?;
    let dph = g.f.matmul("dph", dah, vh, false, true)?;
    let hs = [1, i(d.n_heads * d.seq), 1, i(d.seq)];
    let probs_flat = g.f.reshape("probs_flat", probs, &hs)?;
    let dp_flat = g.f.reshape("dp", dph, &hs)?;
    g.finish(&[("dv_full", dv), ("probs", probs_flat), ("dp", dp_flat)])
}

/// `sdpaBwd2` — back-propagates through the softmax and `q·kᵀ`. Weight-free: the same program in
/// every mode.
///
/// - in `x [2·NH·S + 2·QD, S]`, channel blocks `probs [NH·S]`, `dp [NH·S]` (as `sdpaBwd1`
///   writes them), `q_rope [QD]`, `k_tiled [QD]`.
/// - out `[2·QD, S]` = `dq_rope [QD]`, `dk_full [QD]` (per query head; the host sums each
///   group and undoes RoPE).
///
/// `ds = probs ⊙ (dp − rowsum(probs ⊙ dp)) / √HD`, `dq = ds·k`, `dk = dsᵀ·q` (per head).
pub fn sdpa_bwd2(
    dims: &KernelDims,
    opts: &KernelOptions,
    mode: WeightMode,
    weights: Option<&LayerWeights<'_>>,
) -> Result<KernelSpec, KernelError> {
    let mut g = Gen::new("sdpaBwd2", dims, opts, mode, weights)?;
    let d = g.dims;
    let (hs, qd) = (d.n_heads * d.seq, d.q_dim);
    let x = g.inputs_channels(&[("probs", hs), ("dp", hs), ("q_rope", qd), ("k_tiled", qd)])?;
    let sq = [1, i(d.n_heads), i(d.seq), i(d.seq)];
    let probs = g.f.reshape("probs_h", x[0], &sq)?;
    let dp = g.f.reshape("dp_h", x[1], &sq)?;
    let qh = g.heads("qh", x[2], d.n_heads)?;
    let kh = g.heads("kh", x[3], d.n_heads)?;
    let pd = g.f.mul("pd", probs, dp)?;
    let rs = g.f.reduce_sum("rowsum", pd, &[-1], true)?;
    let centred = g.f.sub("centred", dp, rs)?;
    let ds0 = g.f.mul("ds0", probs, centred)?;
    let scale = g.lit(1.0 / (d.head_dim as f32).sqrt());
    let ds = g.f.mul("ds", ds0, scale)?;
    let dqh = g.f.matmul("dqh", ds, kh, false, false)?;
    let dkh = g.f.matmul("dkh", ds, qh, true, false)?;
    let dq = g.unheads("dq_rope", dqh, d.n_heads)?;
    let dk = g.unheads("dk_full", dkh, d.n_heads)?;
    g.finish(&[("dq_rope", dq), ("dk_full", dk)])
}
