//! The backward pass of one layer: dx kernels on the device, weight-gradient GEMMs on the host
//! beside them ([`host::overlap_dw`]), RMSNorm/SwiGLU/RoPE backward on the host, and the
//! attention core either on the device (Neural Engine set: `sdpaBwd1`, `sdpaBwd2`) or fused on
//! the host (cpu set). Every weight gradient is accumulated straight into the gradient buffer.

use std::ops::Range;
use std::time::Instant;

use super::forward::{AttentionTime, Trunk};
use super::runner::LayerKernels;
use super::workspace::{Grads, Saved};
use super::{ModelError, Result};
use crate::host::{self, AttentionWorkspace, Gemm};
use crate::kernels::{KernelKind, KernelSet};

/// Back-propagates `dy` (gradient of layer `l`'s output) through the layer: accumulates its
/// weight gradients into `grads` and writes the gradient of its input into `dx`.
#[allow(clippy::too_many_arguments)]
pub(super) fn layer_backward(
    t: &Trunk<'_>,
    k: &mut LayerKernels,
    l: usize,
    sv: &Saved,
    (dy, dx): (&[f32], &mut [f32]),
    g: &mut Grads,
    attn_ws: &mut AttentionWorkspace,
    grads: &mut [f32],
) -> Result<AttentionTime> {
    let c = t.cfg;
    // Every activation here is `[C, B·S]`: `s` counts the pass's columns.
    let (d, s, hid, qd, kvd) = (c.dim, t.cols, c.hidden_dim, c.q_dim(), c.kv_dim());
    let (nh, nkv, hd, alpha, eps) = (
        c.n_heads,
        c.n_kv_heads,
        c.head_dim,
        c.residual_alpha(),
        c.norm_eps,
    );
    let r = &t.ranges.layers[l];
    let (p, rope) = (t.params, t.rope);
    let acc = |m, n| Gemm::new(m, n, s).b_transposed().accumulating();
    let Grads {
        dffn,
        dx2,
        dx2s,
        dxn,
        dh1,
        dh3,
        da,
        dq_rope,
        dq,
        dk_rope,
        dk,
        dv,
        k_tiled,
        v_tiled,
        dk_full,
        dv_full,
        probs,
        dp,
    } = g;
    let mut attention = AttentionTime::ZERO;
    // FFN: dffn = α·dy; dgate = W2ᵀ·dffn beside dW2; SwiGLU backward;
    // dx_ffn = W1ᵀ·dh1 + W3ᵀ·dh3 beside dW1 and dW3 (each GEMM beside the kernel of its size).
    scaled(dffn, dy, alpha);
    let [g2] = disjoint_mut(grads, [r.w2.clone()])?;
    let jobs = [job(g2, &dffn[..], &sv.gate, acc(d, hid))];
    host::overlap_dw(jobs, || -> Result<()> {
        k.get(KernelKind::FfnBwdW2t)?.run(&[("dffn", &dffn[..])])
    })??;
    dh1.fill(0.0);
    dh3.fill(0.0);
    k.get(KernelKind::FfnBwdW2t)?.with_part("dgate", |dgate| {
        Ok(host::swiglu_backward(
            &mut dh1[..],
            &mut dh3[..],
            dgate,
            &sv.h1,
            &sv.h3,
        )?)
    })?;
    let [g1, g3] = disjoint_mut(grads, [r.w1.clone(), r.w3.clone()])?;
    let jobs = [
        job(g1, &dh1[..], &sv.x2norm, acc(hid, d)),
        job(g3, &dh3[..], &sv.x2norm, acc(hid, d)),
    ];
    host::overlap_dw(jobs, || -> Result<()> {
        let kern = k.get(KernelKind::FfnBwdW13t)?;
        kern.run(&[("dh1", &dh1[..]), ("dh3", &dh3[..])])
    })??;
    dx2.copy_from_slice(dy);
    k.get(KernelKind::FfnBwdW13t)?
        .with_part("dx_ffn", |dx_ffn| {
            Ok(host::rmsnorm_backward(
                &mut dx2[..],
                &mut grads[r.ffn_norm.clone()],
                dx_ffn,
                &sv.x2,
                &p[r.ffn_norm.clone()],
                d,
                s,
                eps,
            )?)
        })?;
    // Attention output projection da = Woᵀ·(α·dx2), and the attention core. dWo runs beside
    // the projection on the cpu set, beside the (larger) attention kernels on the Neural
    // Engine set.
    scaled(&mut dx2s[..], &dx2[..], alpha);
    let [go] = disjoint_mut(grads, [r.wo.clone()])?;
    let dwo = [job(go, &dx2s[..], &sv.attn_out, acc(d, qd))];
    dk_rope.fill(0.0);
    dv.fill(0.0);
    match t.set {
        KernelSet::NeuralEngine => {
            let kern = k.get(KernelKind::WotBwd)?;
            kern.run(&[("dx2_scaled", &dx2s[..])])?;
            // sdpaBwd1 takes it as an input: a copy either way.
            kern.part_into("da", &mut da[..])?;
            // K and V tiled to the query heads, back through softmax on the device.
            host::gqa_tile(&mut k_tiled[..], &sv.k_rope, nh, nkv, hd, s)?;
            host::gqa_tile(&mut v_tiled[..], &sv.v, nh, nkv, hd, s)?;
            host::overlap_dw(dwo, || -> Result<()> {
                let kern = k.get(KernelKind::SdpaBwd1)?;
                let acts = [
                    ("q_rope", &sv.q_rope[..]),
                    ("k_tiled", k_tiled),
                    ("v_tiled", v_tiled),
                    ("da", da),
                ];
                kern.run(&acts)?;
                kern.part_into("dv_full", dv_full)?;
                kern.part_into("probs", probs)?;
                kern.part_into("dp", dp)?;
                let kern = k.get(KernelKind::SdpaBwd2)?;
                let acts = [
                    ("probs", &probs[..]),
                    ("dp", dp),
                    ("q_rope", &sv.q_rope),
                    ("k_tiled", k_tiled),
                ];
                kern.run(&acts)?;
                kern.part_into("dq_rope", dq_rope)?;
                kern.part_into("dk_full", dk_full)
            })??;
            host::gqa_reduce(&mut dk_rope[..], &dk_full[..], nh, nkv, hd, s)?;
            host::gqa_reduce(&mut dv[..], &dv_full[..], nh, nkv, hd, s)?;
        }
        KernelSet::Cpu => {
            host::overlap_dw(dwo, || {
                k.get(KernelKind::WotBwd)?.run(&[("dx2_scaled", &dx2s[..])])
            })??;
            dq_rope.fill(0.0);
            let t0 = Instant::now();
            // The fused attention backward reads da in place from the projection's output.
            k.get(KernelKind::WotBwd)?.with_part("da", |da| {
                Ok(host::attention_backward(
                    (dq_rope, dk_rope, dv),
                    da,
                    (&sv.q_rope, &sv.k_rope, &sv.v),
                    &sv.attn_out,
                    &sv.lse,
                    t.attention_dims(),
                    attn_ws,
                )?)
            })?;
            attention += t0.elapsed();
        }
    }
    // Inverse RoPE on the host, then dx through Wq, Wk, Wv (beside their dW).
    dq.fill(0.0);
    dk.fill(0.0);
    host::rope_backward(&mut dq[..], &dq_rope[..], rope, nh, hd, s)?;
    host::rope_backward(&mut dk[..], &dk_rope[..], rope, nkv, hd, s)?;
    let [gq, gk, gv] = disjoint_mut(grads, [r.wq.clone(), r.wk.clone(), r.wv.clone()])?;
    let jobs = [
        job(gq, &dq[..], &sv.xnorm, acc(qd, d)),
        job(gk, &dk[..], &sv.xnorm, acc(kvd, d)),
        job(gv, &dv[..], &sv.xnorm, acc(kvd, d)),
    ];
    host::overlap_dw(jobs, || -> Result<()> {
        let kern = k.get(KernelKind::QBwd)?;
        kern.run(&[("dq", dq)])?;
        kern.part_into("dx_q", dxn)?;
        let kern = k.get(KernelKind::KvBwd)?;
        kern.run(&[("dk", dk), ("dv", dv)])?;
        kern.with_part("dx_kv", |dx_kv| {
            dxn.iter_mut().zip(dx_kv).for_each(|(a, b)| *a += b);
            Ok(())
        })
    })??;
    dx.copy_from_slice(&dx2[..]);
    host::rmsnorm_backward(
        dx,
        &mut grads[r.attn_norm.clone()],
        &dxn[..],
        &sv.x,
        &p[r.attn_norm.clone()],
        d,
        s,
        eps,
    )?;
    Ok(attention)
}

/// `out = a·x`.
fn scaled(out: &mut [f32], x: &[f32], a: f32) {
    out.iter_mut().zip(x).for_each(|(o, &x)| *o = a * x);
}

/// A weight-gradient job for [`host::overlap_dw`].
fn job<'a>(c: &'a mut [f32], a: &'a [f32], b: &'a [f32], gemm: Gemm) -> host::DwGemm<'a> {
    host::DwGemm { c, a, b, gemm }
}

/// `N` mutable slices of `buf` over non-overlapping `ranges` (any order).
pub(super) fn disjoint_mut<const N: usize>(
    buf: &mut [f32],
    ranges: [Range<usize>; N],
) -> Result<[&mut [f32]; N]> {
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    order.sort_by_key(|&i| ranges[i].start);
    let mut out: [&mut [f32]; N] = std::array::from_fn(|_| <&mut [f32]>::default());
    let mut rest = buf;
    let mut at = 0;
    for &i in &order {
        let r = &ranges[i];
        if r.start < at || r.end > at + rest.len() {
            return Err(ModelError::Shape(format!(
                "overlapping or out-of-range gradient ranges {ranges:?}"
            )));
        }
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - at);
        let (mine, tail) = tail.split_at_mut(r.end - r.start);
        out[i] = mine;
        rest = tail;
        at = r.end;
    }
    Ok(out)
}
