//! Small hand-checked programs: the golden tests print them and compare with checked-in text,
//! and `ane-train demo` shows them. Each one is a pattern the training kernels are made of.
//!
//! Shapes use the Neural Engine's `[1, C, 1, S]` layout: C channels, S sequence positions.

use crate::builder::FunctionBuilder;
use crate::error::Error;
use crate::ir::{DType, Dialect, Literal, Program, TensorType};

fn fp16(shape: impl Into<Vec<usize>>) -> TensorType {
    TensorType::new(DType::Fp16, shape)
}

fn dim(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Dynamic linear layer with the weights packed beside the activations in the spatial axis:
/// input `x [1, IC, 1, S + OC]` = `[act | Wᵀ]`, output `y [1, OC, 1, S]`,
/// `y[o, s] = Σ_i act[i, s] · Wᵀ[i, o]`.
pub fn dynamic_matmul_packed(ic: usize, oc: usize, seq: usize) -> Result<Program, Error> {
    let (ic_, oc_, s_) = (dim(ic), dim(oc), dim(seq));
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16([1, ic, 1, seq + oc]))?;
    let act = f.slice_by_size("act", x, &[0, 0, 0, 0], &[1, ic_, 1, s_])?;
    let wt = f.slice_by_size("wt", x, &[0, 0, 0, s_], &[1, ic_, 1, oc_])?;
    let a2 = f.reshape("a2", act, &[1, 1, ic_, s_])?;
    let a3 = f.transpose("a3", a2, &[0, 1, 3, 2])?;
    let w = f.reshape("w", wt, &[1, 1, ic_, oc_])?;
    let yh = f.matmul("yh", a3, w, false, false)?;
    let yt = f.transpose("yt", yh, &[0, 1, 3, 2])?;
    let y = f.reshape("y", yt, &[1, oc_, 1, s_])?;
    Ok(Program::new(Dialect::Ios18, f.finish(&[y])?))
}

/// Dynamic linear layer with the weights as a second function parameter (upstream PR #22's
/// form, with names that sort in declaration order): `act [1, K, 1, M]`, `wq [1, N, K]`,
/// output `y [1, N, M]` with `y[n, m] = Σ_k wq[n, k] · act[k, m]`.
pub fn dynamic_matmul_params(
    dialect: Dialect,
    k: usize,
    n: usize,
    m: usize,
) -> Result<Program, Error> {
    let mut f = FunctionBuilder::new("main");
    let act = f.input("act", fp16([1, k, 1, m]))?;
    let wq = f.input("wq", fp16([1, n, k]))?;
    let a3 = f.reshape("a3", act, &[1, dim(k), dim(m)])?;
    let y = f.matmul("y", wq, a3, false, false)?;
    Ok(Program::new(dialect, f.finish(&[y])?))
}

/// RMSNorm over channels with a baked weight: `x [1, D, 1, S]`, weight BLOBFILE `[1, D, 1, 1]`
/// at `@model_path/weights/rms.bin` offset 64,
/// `y[c, s] = x[c, s] · w[c] · (Σ_c x[c, s]² / D + 1e-5)^-½`.
pub fn rmsnorm(d: usize, seq: usize) -> Result<Program, Error> {
    let mut f = FunctionBuilder::new("main");
    let x = f.input("x", fp16([1, d, 1, seq]))?;
    let w = f.blob_constant("w", fp16([1, d, 1, 1]), "@model_path/weights/rms.bin", 64)?;
    let sq = f.mul("sq", x, x)?;
    let ss = f.reduce_sum("ss", sq, &[1], true)?;
    let mean = f.mul("mean", ss, Literal::fp16(1.0 / d as f32))?;
    let eps = f.add("eps", mean, Literal::fp16(1e-5))?;
    let rrms = f.pow("rrms", eps, Literal::fp16(-0.5))?;
    let xr = f.mul("xr", x, rrms)?;
    let y = f.mul("y", xr, w)?;
    Ok(Program::new(Dialect::Ios18, f.finish(&[y])?))
}

/// Causal self-attention with an explicit additive mask (the hardware ignores SDPA's
/// `attn_mask`): input `qkv [1, 3·H·HD, 1, S]` = channel blocks q, k, v; mask BLOBFILE
/// `[1, 1, S, S]` at `@model_path/weights/mask.bin` offset 64 (0 where key ≤ query, else
/// -65504); output `[1, H·HD, 1, S]`.
pub fn causal_attention(heads: usize, head_dim: usize, seq: usize) -> Result<Program, Error> {
    let qd = heads * head_dim;
    let (h, hd, s, q) = (dim(heads), dim(head_dim), dim(seq), dim(qd));
    let mut f = FunctionBuilder::new("main");
    let x = f.input("qkv", fp16([1, 3 * qd, 1, seq]))?;
    let mask = f.blob_constant(
        "mask",
        fp16([1, 1, seq, seq]),
        "@model_path/weights/mask.bin",
        64,
    )?;
    let heads_of = |f: &mut FunctionBuilder, name: &str, block: i32| -> Result<_, Error> {
        let flat = f.slice_by_size(&format!("{name}f"), x, &[0, block * q, 0, 0], &[1, q, 1, s])?;
        let r = f.reshape(&format!("{name}r"), flat, &[1, h, hd, s])?;
        f.transpose(&format!("{name}h"), r, &[0, 1, 3, 2])
    };
    let qh = heads_of(&mut f, "q", 0)?;
    let kh = heads_of(&mut f, "k", 1)?;
    let vh = heads_of(&mut f, "v", 2)?;
    let scores = f.matmul("scores", qh, kh, false, true)?;
    let scaled = f.mul(
        "scaled",
        scores,
        Literal::fp16(1.0 / (head_dim as f32).sqrt()),
    )?;
    let masked = f.add("masked", scaled, mask)?;
    let probs = f.softmax("probs", masked, -1)?;
    let att = f.matmul("att", probs, vh, false, false)?;
    let att_t = f.transpose("att_t", att, &[0, 1, 3, 2])?;
    let out = f.reshape("out", att_t, &[1, q, 1, s])?;
    Ok(Program::new(Dialect::Ios18, f.finish(&[out])?))
}
