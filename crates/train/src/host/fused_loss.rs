//! The classifier and cross-entropy fused and chunked over positions: the `[V, S]` logits of
//! the whole window are never materialised, only `[SC, V]` for a chunk of `SC` positions,
//! whose gradient is folded into `dW` and `dx` before the next chunk is computed.
//!
//! Per chunk of positions `c`: `logitsᵀ[c] = xᵀ[c]·Wᵀ` (`[SC, V]`, one GEMM); per row, the
//! max-subtracted softmax, the loss `logsumexp − logit[target]`, and in place
//! `dlogits = dloss·(p − onehot)/S`; then `dxᵀ[c] = dlogitsᵀ·W` and `dW += dlogits·xᵀ[c]`
//! (two GEMMs side by side). Three GEMMs in all, as the unfused forward + backward; rows of
//! the softmax run across the rayon pool. Same results as [`super::classifier_forward`],
//! [`super::cross_entropy`] and [`super::classifier_backward`] up to f32 summation order.

use ane_runtime::cpu::ops::math::exp_f32;
use rayon::prelude::*;

use super::embedding::check_ids;
use super::gemm::{matmul, Gemm};
use super::isa::widest_copies;
use super::{check_len, HostError};

/// Most logits one chunk holds (`SC·V`, 16 MiB of f32): `SC = BUDGET / V` (rounded down to a
/// multiple of 32 from 32 up, at least 1) capped at `S`, so a 32K vocabulary takes 128
/// positions per chunk and a 152K one 27.
pub const CHUNK_BUDGET: usize = 1 << 22;

/// Positions per chunk: `BUDGET / V`, rounded down to a multiple of 32 (whole GEMM panels)
/// when at least 32, and between 1 and `S`.
fn chunk_rows(vocab: usize, seq: usize) -> usize {
    let sc = CHUNK_BUDGET / vocab.max(1);
    let sc = if sc >= 32 { sc / 32 * 32 } else { sc };
    sc.clamp(1, seq.max(1))
}

/// Buffers of [`classifier_loss`], kept between calls (sized on first use, then reused).
#[derive(Debug, Default)]
pub struct LossWorkspace {
    xt: Vec<f32>,
    logits: Vec<f32>,
    dxt: Vec<f32>,
}

impl LossWorkspace {
    /// Buffers sized for a vocabulary of `vocab`, `dim` channels and `seq` positions, so that
    /// no call of that size (or smaller) allocates.
    pub fn for_dims(vocab: usize, dim: usize, seq: usize) -> LossWorkspace {
        let sc = chunk_rows(vocab, seq);
        LossWorkspace {
            xt: vec![0.0; seq * dim],
            logits: vec![0.0; sc * vocab],
            dxt: vec![0.0; seq * dim],
        }
    }
}

/// Where [`classifier_loss`] writes gradients; `None` computes the loss only.
#[derive(Debug)]
pub struct LossGrads<'a> {
    /// `dx [D, S]`, accumulated.
    pub dx: &'a mut [f32],
    /// `dW [V, D]`, accumulated.
    pub dweight: &'a mut [f32],
}

/// Mean cross-entropy of `W·x` against `targets`, and (given `grads`) its gradients scaled by
/// `dloss` (1, or the loss scale of an fp16 backward).
///
/// - in: `x [D, S]` (the final-norm output), `weight [V, D]`, `targets [S]` (each `< V`);
/// - out: `grads.dx [D, S]` and `grads.dweight [V, D]`, both accumulated (`+=`).
///
/// Returns the mean loss (natural log). `S = targets.len() > 0`.
#[allow(clippy::too_many_arguments)]
pub fn classifier_loss(
    grads: Option<LossGrads<'_>>,
    x: &[f32],
    weight: &[f32],
    targets: &[u32],
    vocab: usize,
    dim: usize,
    dloss: f32,
    ws: &mut LossWorkspace,
) -> Result<f32, HostError> {
    let seq = targets.len();
    if seq == 0 {
        return Err(HostError::Empty { what: "targets" });
    }
    check_len("x", x.len(), &[dim, seq])?;
    check_len("weight", weight.len(), &[vocab, dim])?;
    check_ids("targets", targets, vocab)?;
    if let Some(g) = &grads {
        check_len("dx", g.dx.len(), &[dim, seq])?;
        check_len("dweight", g.dweight.len(), &[vocab, dim])?;
    }
    let sc = chunk_rows(vocab, seq);
    ws.xt.resize(seq * dim, 0.0);
    ws.logits.resize(sc * vocab, 0.0);
    transpose(&mut ws.xt, x, dim, seq);
    if grads.is_some() {
        ws.dxt.resize(seq * dim, 0.0);
    }
    let scale = dloss / seq as f32;
    let mut grads = grads;
    let mut total = 0.0f64;
    for c0 in (0..seq).step_by(sc) {
        let n = sc.min(seq - c0);
        let xt = &ws.xt[c0 * dim..(c0 + n) * dim];
        let logits = &mut ws.logits[..n * vocab];
        matmul(logits, xt, weight, Gemm::new(n, vocab, dim).b_transposed())?;
        let want_grad = grads.is_some();
        total += logits
            .par_chunks_mut(vocab)
            .zip(&targets[c0..c0 + n])
            .map(|(row, &t)| softmax_row_widest(row, t as usize, want_grad.then_some(scale)))
            .sum::<f64>();
        if let Some(g) = grads.as_mut() {
            let logits = &ws.logits[..n * vocab];
            let dxt = &mut ws.dxt[c0 * dim..(c0 + n) * dim];
            let dw = Gemm::new(vocab, dim, n).a_transposed().accumulating();
            let (a, b) = rayon::join(
                || matmul(dxt, logits, weight, Gemm::new(n, dim, vocab)),
                || matmul(g.dweight, logits, xt, dw),
            );
            a?;
            b?;
        }
    }
    if let Some(g) = grads {
        add_transposed(g.dx, &ws.dxt, dim, seq);
    }
    Ok((total / seq as f64) as f32)
}

widest_copies! {
    /// [`softmax_row`] compiled for the widest vector ISA the CPU has.
    fn softmax_row_widest(row: &mut [f32], target: usize, scale: Option<f32>) -> f64
        = softmax_row;
}

/// The loss of one row of logits against `target`; with `Some(scale)` the row is overwritten
/// with `scale·(softmax − onehot(target))`.
#[inline(always)]
fn softmax_row(row: &mut [f32], target: usize, scale: Option<f32>) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let picked = row[target];
    let mut lanes = [0.0f32; 16];
    let mut chunks = row.chunks_exact_mut(16);
    for ch in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(ch.iter_mut()) {
            *v = exp_f32(*v - max);
            *l += *v;
        }
    }
    for v in chunks.into_remainder() {
        *v = exp_f32(*v - max);
        lanes[0] += *v;
    }
    let z: f64 = lanes.iter().map(|&l| l as f64).sum();
    if let Some(scale) = scale {
        let k = (scale as f64 / z) as f32;
        row.iter_mut().for_each(|v| *v *= k);
        row[target] -= scale;
    }
    z.ln() + max as f64 - picked as f64
}

/// `dst [cols, rows] = srcᵀ` for `src [rows, cols]`.
fn transpose(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    dst.par_chunks_mut(rows.max(1) * 64)
        .enumerate()
        .for_each(|(blk, out)| {
            let c0 = blk * 64;
            for (i, o) in out.chunks_exact_mut(rows).enumerate() {
                let c = c0 + i;
                for (r, v) in o.iter_mut().enumerate() {
                    *v = src[r * cols + c];
                }
            }
        });
}

/// `dst [rows, cols] += srcᵀ` for `src [cols, rows]`.
fn add_transposed(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    dst.par_chunks_mut(cols.max(1))
        .enumerate()
        .for_each(|(r, row)| {
            for (c, v) in row.iter_mut().enumerate() {
                *v += src[c * rows + r];
            }
        });
}
