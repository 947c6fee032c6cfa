//! The forward pass through the layers: host RMSNorm and residuals around the device kernels,
//! and (cpu kernel set) the fused attention on the host.

use super::runner::LayerKernels;
use super::views::ParamRanges;
use super::workspace::{Saved, Workspace};
use super::Result;
use crate::host::{self, AttentionDims, AttentionWorkspace, RopeTable};
use crate::kernels::{KernelKind, KernelSet};
use crate::model::ModelConfig;

/// Time spent in the host's fused attention (cpu kernel set), forward and backward.
pub(super) type AttentionTime = std::time::Duration;

/// What the forward pass reads besides the workspace.
pub(super) struct Trunk<'a> {
    pub cfg: &'a ModelConfig,
    pub set: KernelSet,
    /// Columns of the pass, `B·S`.
    pub cols: usize,
    pub ranges: &'a ParamRanges,
    pub params: &'a [f32],
    /// RoPE angles of the pass's columns (the cpu set rotates q and k on the host).
    pub rope: &'a RopeTable,
}

impl Trunk<'_> {
    /// The attention layout of the model.
    pub fn attention_dims(&self) -> AttentionDims {
        AttentionDims {
            n_heads: self.cfg.n_heads,
            n_kv_heads: self.cfg.n_kv_heads,
            head_dim: self.cfg.head_dim,
            seq: self.cfg.seq_len,
            windows: self.cols / self.cfg.seq_len.max(1),
        }
    }

    /// Embedding, every layer and the final RMSNorm over `inputs` (`B·S` ids): leaves each
    /// layer's saved activations, the last layer's output in `ws.x_last` and the final norm's
    /// in `ws.xf`. Returns the time spent in host attention.
    pub fn run(
        &self,
        layers: &mut [LayerKernels],
        ws: &mut Workspace,
        inputs: &[u32],
    ) -> Result<AttentionTime> {
        let c = self.cfg;
        let (d, s, v) = (c.dim, self.cols, c.vocab_size);
        let p = self.params;
        let mut attention = AttentionTime::ZERO;
        let n = layers.len();
        let Workspace {
            saved,
            x_last,
            xf,
            attention: attn_ws,
            ..
        } = ws;
        host::embedding_forward(&mut saved[0].x, inputs, &p[self.ranges.embed.clone()], v, d)?;
        for l in 0..n {
            let Some((sv, rest)) = saved[l..].split_first_mut() else {
                return Err(super::ModelError::Shape(format!(
                    "no saved activations for layer {l}"
                )));
            };
            let next = match rest.first_mut() {
                Some(next) => &mut next.x,
                None => &mut *x_last,
            };
            attention += self.layer(&mut layers[l], l, sv, next, attn_ws)?;
        }
        let fnorm = &p[self.ranges.final_norm.clone()];
        host::rmsnorm_forward(xf, x_last, fnorm, d, s, c.norm_eps)?;
        Ok(attention)
    }

    /// Layer `l`'s forward from `sv.x`: fills the rest of `sv` and writes the layer's output
    /// into `x_next`. Outputs used once are read in place from the kernels' surfaces.
    fn layer(
        &self,
        k: &mut LayerKernels,
        l: usize,
        sv: &mut Saved,
        x_next: &mut [f32],
        attn_ws: &mut AttentionWorkspace,
    ) -> Result<AttentionTime> {
        let c = self.cfg;
        let (d, s, eps, alpha) = (c.dim, self.cols, c.norm_eps, c.residual_alpha());
        let r = &self.ranges.layers[l];
        let p = self.params;
        host::rmsnorm_forward(&mut sv.xnorm, &sv.x, &p[r.attn_norm.clone()], d, s, eps)?;
        let mut attention = AttentionTime::ZERO;
        match self.set {
            KernelSet::NeuralEngine => {
                let sdpa = k.get(KernelKind::SdpaFwd)?;
                sdpa.run(&[("xnorm", &sv.xnorm)])?;
                sdpa.part_into("attn_out", &mut sv.attn_out)?;
                sdpa.part_into("q_rope", &mut sv.q_rope)?;
                sdpa.part_into("k_rope", &mut sv.k_rope)?;
                sdpa.part_into("v", &mut sv.v)?;
            }
            KernelSet::Cpu => {
                let qkv = k.get(KernelKind::QkvFwd)?;
                qkv.run(&[("xnorm", &sv.xnorm)])?;
                // RoPE on the host, read in place from the kernel's q and k (channel-first,
                // no per-head transposes).
                let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
                qkv.with_part("q", |q| {
                    Ok(host::rope_forward(&mut sv.q_rope, q, self.rope, nh, hd, s)?)
                })?;
                qkv.with_part("k", |k| {
                    Ok(host::rope_forward(
                        &mut sv.k_rope,
                        k,
                        self.rope,
                        nkv,
                        hd,
                        s,
                    )?)
                })?;
                qkv.part_into("v", &mut sv.v)?;
                let t = std::time::Instant::now();
                host::attention_forward(
                    &mut sv.attn_out,
                    &mut sv.lse,
                    (&sv.q_rope, &sv.k_rope, &sv.v),
                    self.attention_dims(),
                    attn_ws,
                )?;
                attention += t.elapsed();
            }
        }
        let wo = k.get(KernelKind::WoFwd)?;
        wo.run(&[("attn_out", &sv.attn_out)])?;
        wo.with_part("o", |o| {
            Ok(host::residual_forward(&mut sv.x2, &sv.x, o, alpha)?)
        })?;
        host::rmsnorm_forward(&mut sv.x2norm, &sv.x2, &p[r.ffn_norm.clone()], d, s, eps)?;
        let ffn = k.get(KernelKind::FfnFused)?;
        ffn.run(&[("x2norm", &sv.x2norm), ("x2", &sv.x2)])?;
        ffn.part_into("h1", &mut sv.h1)?;
        ffn.part_into("h3", &mut sv.h3)?;
        ffn.part_into("gate", &mut sv.gate)?;
        ffn.part_into("x_next", x_next)?;
        Ok(attention)
    }
}
