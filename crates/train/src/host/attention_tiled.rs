//! The per-head bodies of [`super::attention`] for head dims of at least [`MIN_HEAD_DIM`]: the
//! same causal attention (same formulas, see there), computed on tiles of [`QT`] queries by
//! the one GEMM engine ([`ane_runtime::cpu::gemm::matmul_views`], on the calling thread, so
//! heads stay the parallel unit).
//!
//! A tile of queries `i0..n` reads keys `0..n` only (the causal prefix of its last query), so
//! fully masked key tiles are never computed; inside the diagonal tile the masked entries of
//! `P` and `dS` are zero. Per tile, with `Q, K, V, O, dO` one head's `[HD, S]` views (rows `st`
//! floats apart) and `P, dS` the tile's `[nb, n]` row buffer:
//!
//! - forward: `P = Qᵀ_tile·K` (scaled, row softmax, `lse` saved), `O_tile = V·Pᵀ`;
//! - backward: `P` again from `lse`, `dP = dOᵀ_tile·V`, `dS = scale·P∘(dP − D)` with
//!   `D_i = dO_i·O_i`, then `dQ_tile += K·dSᵀ`, `dK += Q_tile·dS`, `dV += dO_tile·P`.
//!
//! At head dim 64 this is several times faster than the row-at-a-time bodies, whose dot
//! products are too short to keep vector units busy; below [`MIN_HEAD_DIM`] the GEMM's packing
//! costs more than it saves.

use ane_runtime::cpu::gemm::{matmul_views, View, ViewMut};
use ane_runtime::cpu::ops::math::exp_f32;

use super::isa::widest_copies;
use super::HostError;

/// Queries per tile.
pub const QT: usize = 64;

/// The smallest head dim that uses these bodies.
pub const MIN_HEAD_DIM: usize = 32;

/// Floats of row buffer one forward task needs for windows of `s` positions.
pub fn forward_rows(s: usize) -> usize {
    QT.min(s) * s
}

/// Floats of row buffer one backward task needs for windows of `s` positions.
pub fn backward_rows(s: usize) -> usize {
    2 * QT.min(s) * s
}

/// One head's (forward) or one query head's (backward) operands, each a `[HD, B·S]` block:
/// rows `st` floats apart, windows of `s` columns.
pub(super) struct Operands<'a> {
    /// Queries of the head.
    pub q: &'a [f32],
    /// Keys of its KV head.
    pub k: &'a [f32],
    /// Values of its KV head.
    pub v: &'a [f32],
    /// Head dim `HD`.
    pub hd: usize,
    /// Positions per window.
    pub s: usize,
    /// Columns, `B·S`.
    pub st: usize,
    /// `1/√HD`.
    pub scale: f32,
}

/// What the backward pass reads besides [`Operands`]: the head's forward output `o`, its
/// gradient `dout` (both `[HD, B·S]`) and `lse [B·S]`.
pub(super) struct Saved<'a> {
    /// Forward output of the head.
    pub o: &'a [f32],
    /// Gradient of the output.
    pub dout: &'a [f32],
    /// Log-sum-exp of each query's scores.
    pub lse: &'a [f32],
}

fn gemm_err(_: ane_runtime::cpu::gemm::ViewError) -> HostError {
    HostError::Overflow {
        what: "attention tile",
    }
}

/// `[rows, cols]` view of `data` with strides `(rs, cs)`.
fn view(data: &[f32], rows: usize, cols: usize, rs: usize, cs: usize) -> View<'_> {
    View {
        data,
        rows,
        cols,
        rs,
        cs,
    }
}

/// `[rows, cols]` writable view of `data` with strides `(rs, cs)`.
fn view_mut(data: &mut [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> ViewMut<'_> {
    ViewMut {
        data,
        rows,
        cols,
        rs,
        cs,
    }
}

/// `p[b, ..n] ← Q_tileᵀ·K` for queries `i0..i0+nb` of the window starting at column `w0`
/// (unscaled scores).
fn scores(
    p: &mut [f32],
    x: &Operands<'_>,
    w0: usize,
    i0: usize,
    nb: usize,
    n: usize,
) -> Result<(), HostError> {
    let (hd, st) = (x.hd, x.st);
    let q_t = view(&x.q[w0 + i0..], nb, hd, 1, st);
    let k = view(&x.k[w0..], hd, n, st, 1);
    matmul_views(view_mut(p, nb, n, n, 1), q_t, k, false).map_err(gemm_err)
}

/// The forward pass of one head over every window: `out_h [HD, B·S]`, `lse_h [B·S]`, with
/// `rows` ([`forward_rows`] floats) of scratch.
#[inline(always)]
fn forward_head(
    x: &Operands<'_>,
    out_h: &mut [f32],
    lse_h: &mut [f32],
    rows: &mut [f32],
) -> Result<(), HostError> {
    let (hd, s, st, scale) = (x.hd, x.s, x.st, x.scale);
    for w0 in (0..st).step_by(s) {
        for i0 in (0..s).step_by(QT) {
            let n = (i0 + QT).min(s);
            let nb = n - i0;
            let p = &mut rows[..nb * n];
            scores(p, x, w0, i0, nb, n)?;
            for (b, row) in p.chunks_exact_mut(n).enumerate() {
                let i = i0 + b;
                let (live, masked) = row.split_at_mut(i + 1);
                let m = scale * live.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let z = exp_scaled(live, scale, m);
                lse_h[w0 + i] = m + z.ln();
                let inv = 1.0 / z;
                live.iter_mut().for_each(|v| *v *= inv);
                masked.fill(0.0);
            }
            let v = view(&x.v[w0..], hd, n, st, 1);
            let p_t = view(p, n, nb, 1, n);
            let out = view_mut(&mut out_h[w0 + i0..], hd, nb, st, 1);
            matmul_views(out, v, p_t, false).map_err(gemm_err)?;
        }
    }
    Ok(())
}

/// The backward pass of one query head over every window, accumulating its `dq_h` and its KV
/// head's `dk_g`, `dv_g` (all `[HD, B·S]`), with `rows` ([`backward_rows`] floats) of scratch.
#[inline(always)]
fn backward_head(
    x: &Operands<'_>,
    saved: &Saved<'_>,
    dq_h: &mut [f32],
    (dk_g, dv_g): (&mut [f32], &mut [f32]),
    rows: &mut [f32],
) -> Result<(), HostError> {
    let (hd, s, st, scale) = (x.hd, x.s, x.st, x.scale);
    let (p_buf, ds_buf) = rows.split_at_mut(QT.min(s) * s);
    for w0 in (0..st).step_by(s) {
        for i0 in (0..s).step_by(QT) {
            let n = (i0 + QT).min(s);
            let nb = n - i0;
            let (p, ds) = (&mut p_buf[..nb * n], &mut ds_buf[..nb * n]);
            scores(p, x, w0, i0, nb, n)?;
            let do_t = view(&saved.dout[w0 + i0..], nb, hd, 1, st);
            matmul_views(
                view_mut(ds, nb, n, n, 1),
                do_t,
                view(&x.v[w0..], hd, n, st, 1),
                false,
            )
            .map_err(gemm_err)?;
            for (b, (prow, dsrow)) in p
                .chunks_exact_mut(n)
                .zip(ds.chunks_exact_mut(n))
                .enumerate()
            {
                let i = w0 + i0 + b;
                let l = saved.lse[i];
                let d_i: f32 = (0..hd)
                    .map(|c| saved.dout[c * st + i] * saved.o[c * st + i])
                    .sum();
                let live = i0 + b + 1;
                let (p_live, p_masked) = prow.split_at_mut(live);
                let (ds_live, ds_masked) = dsrow.split_at_mut(live);
                for (pj, dj) in p_live.iter_mut().zip(ds_live.iter_mut()) {
                    *pj = exp_f32(scale * *pj - l);
                    *dj = scale * *pj * (*dj - d_i);
                }
                p_masked.fill(0.0);
                ds_masked.fill(0.0);
            }
            let k = view(&x.k[w0..], hd, n, st, 1);
            let dq = view_mut(&mut dq_h[w0 + i0..], hd, nb, st, 1);
            matmul_views(dq, k, view(ds, n, nb, 1, n), true).map_err(gemm_err)?;
            let q = view(&x.q[w0 + i0..], hd, nb, st, 1);
            let dk = view_mut(&mut dk_g[w0..], hd, n, st, 1);
            matmul_views(dk, q, view(ds, nb, n, n, 1), true).map_err(gemm_err)?;
            let dout = view(&saved.dout[w0 + i0..], hd, nb, st, 1);
            let dv = view_mut(&mut dv_g[w0..], hd, n, st, 1);
            matmul_views(dv, dout, view(p, nb, n, n, 1), true).map_err(gemm_err)?;
        }
    }
    Ok(())
}

widest_copies! {
    /// [`forward_head`] compiled for the widest vector ISA the CPU has (the row softmax is
    /// then as wide as the GEMM's micro-kernel).
    pub(super) fn forward_head_widest(
        x: &Operands<'_>,
        out_h: &mut [f32],
        lse_h: &mut [f32],
        rows: &mut [f32],
    ) -> Result<(), HostError> = forward_head;
}

widest_copies! {
    /// [`backward_head`] compiled for the widest vector ISA the CPU has.
    pub(super) fn backward_head_widest(
        x: &Operands<'_>,
        saved: &Saved<'_>,
        dq_h: &mut [f32],
        dkv: (&mut [f32], &mut [f32]),
        rows: &mut [f32],
    ) -> Result<(), HostError> = backward_head;
}

/// `p ← exp(scale·p − m)`; returns `Σ p` (16 partial sums, so it vectorises).
#[inline(always)]
pub(super) fn exp_scaled(p: &mut [f32], scale: f32, m: f32) -> f32 {
    let mut lanes = [0.0f32; 16];
    let mut chunks = p.chunks_exact_mut(16);
    for ch in &mut chunks {
        for (l, x) in lanes.iter_mut().zip(ch.iter_mut()) {
            *x = exp_f32(scale * *x - m);
            *l += *x;
        }
    }
    let mut tail = 0.0;
    for x in chunks.into_remainder() {
        *x = exp_f32(scale * *x - m);
        tail += *x;
    }
    lanes.iter().sum::<f32>() + tail
}
