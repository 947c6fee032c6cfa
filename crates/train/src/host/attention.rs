//! Fused causal attention for the `cpu` device: forward and backward without a `[NH, S, S]`
//! tensor (the Neural Engine kernel set materialises scores and probabilities; here one row
//! of `S` scores per task is all there is).
//!
//! Layout: `q [QD, B·S]`, `k, v [KVD, B·S]`, `out [QD, B·S]` channel-first (channel `h·HD + c`
//! is dimension `c` of head `h`), `lse [NH, B·S]`, for `B` windows of `S` positions side by
//! side along the columns; each window attends only within itself. Query head `h` reads KV head
//! [`crate::model::kv_head_of`]`(h)`, the one GQA mapping.
//!
//! Forward, per head and query `i`: `sⱼ = (q_i·k_j)/√HD` for `j ≤ i` only (masked keys are
//! never computed), `lse_i = logsumexp(s)`, `out_i = Σⱼ exp(sⱼ − lse_i)·v_j`. Backward
//! recomputes the row from `lse` (FlashAttention-2's scheme, Dao 2023, arXiv 2307.08691):
//! `pⱼ = exp(sⱼ − lse_i)`, `D_i = dout_i·out_i`, `dpⱼ = dout_i·v_j`, `dsⱼ = pⱼ(dpⱼ − D_i)`,
//! `dq_i = Σⱼ dsⱼ k_j/√HD`, `dk_j += dsⱼ q_i/√HD`, `dv_j += pⱼ dout_i`. Every inner loop runs
//! over contiguous key positions, so it vectorises; heads (forward) and KV heads (backward,
//! which owns its `dk`, `dv` rows and its query heads' `dq` rows) run across the rayon pool.

use ane_runtime::cpu::ops::math::exp_f32;
use rayon::prelude::*;

use super::attention_tiled as tiled;
use super::isa::widest_copies;
use super::{check_len, HostError};
use crate::model::kv_head_of;

/// The head layout of one attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionDims {
    /// Query heads `NH`.
    pub n_heads: usize,
    /// Key/value heads `NKV` (divides `NH`).
    pub n_kv_heads: usize,
    /// Head dim `HD`.
    pub head_dim: usize,
    /// Positions per window `S`.
    pub seq: usize,
    /// Windows side by side along the columns, `B` (each attends only to itself): tensors
    /// are `[C, B·S]`, window `b` in columns `b·S..(b+1)·S`.
    pub windows: usize,
}

impl AttentionDims {
    /// Query heads per KV head, after checking the layout (`NKV` divides `NH`, and the one
    /// GQA mapping sends consecutive query heads to each KV head).
    fn group(&self) -> Result<usize, HostError> {
        let bad = HostError::Heads {
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
        };
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(bad);
        }
        let g = self.n_heads / self.n_kv_heads;
        if (0..self.n_heads).any(|h| kv_head_of(h, self.n_heads, self.n_kv_heads) != h / g) {
            return Err(bad);
        }
        Ok(g)
    }

    /// Columns of every tensor, `B·S`.
    pub fn columns(&self) -> usize {
        self.seq.saturating_mul(self.windows)
    }

    fn check(&self, q: usize, kv: &[(&'static str, usize)]) -> Result<usize, HostError> {
        let g = self.group()?;
        let (hd, s) = (self.head_dim, self.columns());
        check_len("q", q, &[self.n_heads, hd, s])?;
        for &(what, len) in kv {
            check_len(what, len, &[self.n_kv_heads, hd, s])?;
        }
        Ok(g)
    }
}

/// Queries per block in the backward pass: `dk` and `dv` rows are updated once per block.
const QB: usize = 8;

/// Row buffers of the attention ops, kept between calls (sized on first use, then reused).
#[derive(Debug, Default)]
pub struct AttentionWorkspace {
    rows: Vec<f32>,
}

impl AttentionWorkspace {
    /// Row buffers for the layout `dims`, so that no call with it allocates.
    pub fn for_dims(dims: AttentionDims) -> AttentionWorkspace {
        let forward = dims.n_heads * forward_rows(dims);
        let backward = dims.n_kv_heads * backward_rows(dims);
        AttentionWorkspace {
            rows: vec![0.0; forward.max(backward)],
        }
    }

    fn rows(&mut self, tasks: usize, per: usize) -> &mut [f32] {
        self.rows.resize(tasks * per, 0.0);
        &mut self.rows
    }
}

/// Whether `dims` runs on the GEMM-tiled bodies ([`tiled`]).
fn is_tiled(dims: AttentionDims) -> bool {
    dims.head_dim >= tiled::MIN_HEAD_DIM
}

/// Row-buffer floats of one forward task (a query head).
fn forward_rows(dims: AttentionDims) -> usize {
    if is_tiled(dims) {
        tiled::forward_rows(dims.seq)
    } else {
        dims.seq
    }
}

/// Row-buffer floats of one backward task (a KV head's group).
fn backward_rows(dims: AttentionDims) -> usize {
    if is_tiled(dims) {
        tiled::backward_rows(dims.seq)
    } else {
        2 * QB * dims.seq
    }
}

/// Causal softmax attention, forward.
///
/// - out: `out [QD, S]`, `lse [NH, S]` (overwritten);
/// - in: `q [QD, S]`, `k [KVD, S]`, `v [KVD, S]` (RoPE already applied to `q` and `k`).
pub fn attention_forward(
    out: &mut [f32],
    lse: &mut [f32],
    (q, k, v): (&[f32], &[f32], &[f32]),
    dims: AttentionDims,
    ws: &mut AttentionWorkspace,
) -> Result<(), HostError> {
    let g = dims.check(q.len(), &[("k", k.len()), ("v", v.len())])?;
    let (hd, s, st) = (dims.head_dim, dims.seq, dims.columns());
    check_len("out", out.len(), &[dims.n_heads, hd, st])?;
    check_len("lse", lse.len(), &[dims.n_heads, st])?;
    if hd == 0 || s == 0 {
        return Ok(());
    }
    let scale = 1.0 / (hd as f32).sqrt();
    let blk = hd * st;
    let per = forward_rows(dims);
    let tiled = is_tiled(dims);
    out.par_chunks_mut(blk)
        .zip(lse.par_chunks_mut(st))
        .zip(ws.rows(dims.n_heads, per).par_chunks_mut(per))
        .enumerate()
        .try_for_each(|(h, ((out_h, lse_h), row))| {
            let head = Head {
                q: &q[h * blk..(h + 1) * blk],
                k: &k[h / g * blk..(h / g + 1) * blk],
                v: &v[h / g * blk..(h / g + 1) * blk],
                hd,
                s,
                st,
                scale,
            };
            if tiled {
                return tiled::forward_head_widest(&head, out_h, lse_h, row);
            }
            forward_head_widest(&head, out_h, lse_h, row);
            Ok(())
        })?;
    Ok(())
}

/// One head's operands: `q` `[HD, B·S]` of the query head, `k`, `v` of its KV head (rows `st`
/// floats apart), windows of `s` columns.
use tiled::Operands as Head;

/// The forward pass of one head over every window: `out_h [HD, B·S]`, `lse_h [B·S]`, with the
/// row buffer `row` (`S` floats).
#[inline(always)]
fn forward_head(x: &Head<'_>, out_h: &mut [f32], lse_h: &mut [f32], row: &mut [f32]) {
    let (hd, s, st, scale) = (x.hd, x.s, x.st, x.scale);
    for w0 in (0..st).step_by(s) {
        // Window `w0 / S`: every row of these views starts at its first column.
        let (q_h, k_g, v_g) = (&x.q[w0..], &x.k[w0..], &x.v[w0..]);
        let out_h = &mut out_h[w0..];
        for i in 0..s {
            let p = &mut row[..=i];
            scores(p, q_h, k_g, hd, st, i, scale);
            let m = p.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let z = exp_in_place(p, m);
            lse_h[w0 + i] = m + z.ln();
            let inv = 1.0 / z;
            for c in 0..hd {
                out_h[c * st + i] = dot(p, &v_g[c * st..c * st + i + 1]) * inv;
            }
        }
    }
}

widest_copies! {
    /// [`forward_head`] compiled for the widest vector ISA the CPU has.
    fn forward_head_widest(x: &Head<'_>, out_h: &mut [f32], lse_h: &mut [f32], row: &mut [f32])
        = forward_head;
}

/// Gradients of [`attention_forward`], accumulated (`+=`) into `dq [QD, S]`, `dk [KVD, S]`,
/// `dv [KVD, S]`, from `dout [QD, S]` and what the forward read and wrote
/// (`q, k, v`, `out [QD, S]`, `lse [NH, S]`).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
    dout: &[f32],
    (q, k, v): (&[f32], &[f32], &[f32]),
    out: &[f32],
    lse: &[f32],
    dims: AttentionDims,
    ws: &mut AttentionWorkspace,
) -> Result<(), HostError> {
    let g = dims.check(
        q.len(),
        &[
            ("k", k.len()),
            ("v", v.len()),
            ("dk", dk.len()),
            ("dv", dv.len()),
        ],
    )?;
    let (hd, s, st) = (dims.head_dim, dims.seq, dims.columns());
    for (what, len) in [("dq", dq.len()), ("dout", dout.len()), ("out", out.len())] {
        check_len(what, len, &[dims.n_heads, hd, st])?;
    }
    check_len("lse", lse.len(), &[dims.n_heads, st])?;
    if hd == 0 || s == 0 {
        return Ok(());
    }
    let scale = 1.0 / (hd as f32).sqrt();
    let blk = hd * st;
    let per = backward_rows(dims);
    let tiled = is_tiled(dims);
    dq.par_chunks_mut(g * blk)
        .zip(dk.par_chunks_mut(blk))
        .zip(dv.par_chunks_mut(blk))
        .zip(ws.rows(dims.n_kv_heads, per).par_chunks_mut(per))
        .enumerate()
        .try_for_each(|(kv, (((dq_grp, dk_g), dv_g), rows))| {
            let (k, v) = (&k[kv * blk..(kv + 1) * blk], &v[kv * blk..(kv + 1) * blk]);
            if tiled {
                for (h, dq_h) in (kv * g..(kv + 1) * g).zip(dq_grp.chunks_exact_mut(blk)) {
                    let span = h * blk..(h + 1) * blk;
                    let head = Head {
                        q: &q[span.clone()],
                        k,
                        v,
                        hd,
                        s,
                        st,
                        scale,
                    };
                    let saved = tiled::Saved {
                        o: &out[span.clone()],
                        dout: &dout[span],
                        lse: &lse[h * st..(h + 1) * st],
                    };
                    tiled::backward_head_widest(
                        &head,
                        &saved,
                        dq_h,
                        (&mut *dk_g, &mut *dv_g),
                        rows,
                    )?;
                }
                return Ok(());
            }
            let group = Group {
                q,
                k,
                v,
                out,
                dout,
                lse,
                heads: kv * g..(kv + 1) * g,
                hd,
                s,
                st,
                scale,
            };
            backward_group_widest(&group, dq_grp, (dk_g, dv_g), rows);
            Ok(())
        })?;
    Ok(())
}

/// `row[j] = scale·Σ_c q[c, i]·k[c, j]` for `j < row.len()` (`q`, `k` are one head's `HD`
/// rows, `st` floats apart).
#[inline(always)]
fn scores(row: &mut [f32], q: &[f32], k: &[f32], hd: usize, st: usize, i: usize, scale: f32) {
    combine_rows(row, |c| q[c * st + i] * scale, k, hd, st, false);
}

/// One KV head's group: the operands of its query heads `heads` (whole `q`, `out`, `dout`
/// `[QD, B·S]` and `lse [NH, B·S]`) and its own `k`, `v` `[HD, B·S]`.
struct Group<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    out: &'a [f32],
    dout: &'a [f32],
    lse: &'a [f32],
    heads: std::ops::Range<usize>,
    hd: usize,
    s: usize,
    st: usize,
    scale: f32,
}

/// The backward pass of one KV head's group over every window: accumulates its query heads'
/// `dq_grp` and its own `dk_g`, `dv_g`, with `rows` (`2·QB·S` floats) of scratch.
#[inline(always)]
fn backward_group(
    x: &Group<'_>,
    dq_grp: &mut [f32],
    (dk_g, dv_g): (&mut [f32], &mut [f32]),
    rows: &mut [f32],
) {
    let (hd, s, st, scale) = (x.hd, x.s, x.st, x.scale);
    let blk = hd * st;
    let (p_blk, ds_blk) = rows.split_at_mut(QB * s);
    for (h, dq_h) in x.heads.clone().zip(dq_grp.chunks_exact_mut(blk)) {
        for w0 in (0..st).step_by(s) {
            // Window `w0 / S`: every row of these views starts at its first column.
            let (k_g, v_g) = (&x.k[w0..], &x.v[w0..]);
            let span = h * blk + w0..(h + 1) * blk;
            let (q_h, o_h, do_h) = (&x.q[span.clone()], &x.out[span.clone()], &x.dout[span]);
            let (dq_h, dk_g, dv_g) = (&mut dq_h[w0..], &mut dk_g[w0..], &mut dv_g[w0..]);
            let lse_h = &x.lse[h * st + w0..];
            for i0 in (0..s).step_by(QB) {
                // A block of queries i0..n over keys 0..n (the causal prefix of its
                // last query); entries past a row's own query are zero in P and dS.
                let n = (i0 + QB).min(s);
                let nb = n - i0;
                let (p, ds) = (&mut p_blk[..nb * n], &mut ds_blk[..nb * n]);
                for b in 0..nb {
                    let i = i0 + b;
                    let prow = &mut p[b * n..(b + 1) * n];
                    scores(prow, q_h, k_g, hd, st, i, scale);
                    let l = lse_h[i];
                    let (live, masked) = prow.split_at_mut(i + 1);
                    live.iter_mut().for_each(|x| *x = exp_f32(*x - l));
                    masked.fill(0.0);
                    let d_i: f32 = (0..hd).map(|c| do_h[c * st + i] * o_h[c * st + i]).sum();
                    let dsrow = &mut ds[b * n..(b + 1) * n];
                    combine_rows(dsrow, |c| do_h[c * st + i], v_g, hd, st, false);
                    // dS = P·(dP − D); zero where P is.
                    dsrow
                        .iter_mut()
                        .zip(prow.iter())
                        .for_each(|(d, &pj)| *d = pj * (*d - d_i));
                    for c in 0..hd {
                        dq_h[c * st + i] += scale * dot(dsrow, &k_g[c * st..c * st + n]);
                    }
                }
                for c in 0..hd {
                    let keys = c * st..c * st + n;
                    let dout_c = |b: usize| do_h[c * st + i0 + b];
                    combine_rows(&mut dv_g[keys.clone()], dout_c, p, nb, n, true);
                    let q_c = |b: usize| scale * q_h[c * st + i0 + b];
                    combine_rows(&mut dk_g[keys], q_c, ds, nb, n, true);
                }
            }
        }
    }
}

widest_copies! {
    /// [`backward_group`] compiled for the widest vector ISA the CPU has.
    fn backward_group_widest(
        x: &Group<'_>,
        dq_grp: &mut [f32],
        dkv: (&mut [f32], &mut [f32]),
        rows: &mut [f32],
    ) = backward_group;
}

/// `out[j] (+)= Σ_c coef(c)·m[c, j]` for `j < out.len()`, `m` holding `rows` rows of stride `s`:
/// 16 columns at a time in registers, so each element of `m` is loaded once and `out` stored
/// once per group of 64 rows (a head dim up to 64 is one group).
#[inline(always)]
fn combine_rows(
    out: &mut [f32],
    coef: impl Fn(usize) -> f32,
    m: &[f32],
    rows: usize,
    s: usize,
    accumulate: bool,
) {
    const L: usize = 16;
    const G: usize = 64;
    if !accumulate {
        out.fill(0.0);
    }
    let n = out.len();
    let mut coefs = [0.0f32; G];
    for r0 in (0..rows).step_by(G) {
        let nr = (rows - r0).min(G);
        for (c, v) in coefs[..nr].iter_mut().enumerate() {
            *v = coef(r0 + c);
        }
        let mut chunks = out.chunks_exact_mut(L);
        for (blk, o) in (&mut chunks).enumerate() {
            let j0 = blk * L;
            let mut acc = [0.0f32; L];
            for (c, &a) in coefs[..nr].iter().enumerate() {
                let at = (r0 + c) * s + j0;
                for (x, &y) in acc.iter_mut().zip(&m[at..at + L]) {
                    *x += a * y;
                }
            }
            o.iter_mut().zip(&acc).for_each(|(o, a)| *o += a);
        }
        let j0 = n - n % L;
        for (j, o) in chunks.into_remainder().iter_mut().enumerate() {
            for (c, &a) in coefs[..nr].iter().enumerate() {
                *o += a * m[(r0 + c) * s + j0 + j];
            }
        }
    }
}

/// `p ← exp(p − m)`; returns `Σ p` (the tiled bodies' exponent with scale 1, which is exact).
#[inline(always)]
fn exp_in_place(p: &mut [f32], m: f32) -> f32 {
    tiled::exp_scaled(p, 1.0, m)
}

/// `Σ x·y` with 16 independent partial sums (so it vectorises without reassociation).
#[inline(always)]
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let (xc, yc) = (x.chunks_exact(16), y.chunks_exact(16));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for ((l, &a), &b) in lanes.iter_mut().zip(a).zip(b) {
            *l += a * b;
        }
    }
    let tail: f32 = xr.iter().zip(yr).map(|(a, b)| a * b).sum();
    lanes.iter().sum::<f32>() + tail
}
