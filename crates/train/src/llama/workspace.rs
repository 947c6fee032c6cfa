//! Every buffer one forward + backward pass needs, allocated once when the model is built, so
//! a training step allocates nothing (checked by a counting-allocator test,
//! `tests/alloc_free.rs`).

use crate::host::{AttentionDims, AttentionWorkspace, LossWorkspace};
use crate::kernels::KernelSet;
use crate::model::ModelConfig;

/// Activations one layer's forward pass saves for its backward pass (channel-first `[C, B·S]`).
#[derive(Debug)]
pub(super) struct Saved {
    /// Layer input `[D, S]`.
    pub x: Vec<f32>,
    /// `rms(x)` `[D, S]`.
    pub xnorm: Vec<f32>,
    /// Attention output before `Wo` `[QD, S]`.
    pub attn_out: Vec<f32>,
    /// `[QD, S]`.
    pub q_rope: Vec<f32>,
    /// `[KVD, S]`.
    pub k_rope: Vec<f32>,
    /// `[KVD, S]`.
    pub v: Vec<f32>,
    /// Log-sum-exp of each attention row `[NH, S]` (cpu kernel set only; empty otherwise).
    pub lse: Vec<f32>,
    /// `x + α·o` `[D, S]`.
    pub x2: Vec<f32>,
    /// `rms(x2)` `[D, S]`.
    pub x2norm: Vec<f32>,
    /// `W1·x2norm` `[H, S]`.
    pub h1: Vec<f32>,
    /// `W3·x2norm` `[H, S]`.
    pub h3: Vec<f32>,
    /// `silu(h1)·h3` `[H, S]`.
    pub gate: Vec<f32>,
}

/// Temporaries of one layer's backward pass, shared by all layers.
#[derive(Debug)]
pub(super) struct Grads {
    /// `[D, S]` each.
    pub dffn: Vec<f32>,
    pub dx2: Vec<f32>,
    pub dx2s: Vec<f32>,
    pub dxn: Vec<f32>,
    /// `[H, S]` each.
    pub dh1: Vec<f32>,
    pub dh3: Vec<f32>,
    /// `[QD, S]` each.
    pub da: Vec<f32>,
    pub dq_rope: Vec<f32>,
    pub dq: Vec<f32>,
    /// `[KVD, S]` each.
    pub dk_rope: Vec<f32>,
    pub dk: Vec<f32>,
    pub dv: Vec<f32>,
    /// Neural Engine set only (empty otherwise): K and V tiled to the query heads and their
    /// gradients `[QD, S]`, the probabilities and their gradient `[NH·S, S]`.
    pub k_tiled: Vec<f32>,
    pub v_tiled: Vec<f32>,
    pub dk_full: Vec<f32>,
    pub dv_full: Vec<f32>,
    pub probs: Vec<f32>,
    pub dp: Vec<f32>,
}

/// All of a model's step buffers.
#[derive(Debug)]
pub(super) struct Workspace {
    /// One per layer.
    pub saved: Vec<Saved>,
    /// The last layer's output `[D, S]`.
    pub x_last: Vec<f32>,
    /// The final RMSNorm's output `[D, S]`.
    pub xf: Vec<f32>,
    /// Gradient flowing down the residual stream `[D, S]`, and its partner buffer.
    pub dx: Vec<f32>,
    pub dx_next: Vec<f32>,
    /// Gradient of `xf` `[D, S]`.
    pub dxf: Vec<f32>,
    pub grads: Grads,
    pub attention: AttentionWorkspace,
    pub loss: LossWorkspace,
    /// Vocabulary compaction: the gathered classifier rows `[CV, D]`, their gradient, and the
    /// mapped targets `[S]` (empty until a compaction is set).
    pub head_rows: Vec<f32>,
    pub dhead_rows: Vec<f32>,
    pub mapped: Vec<u32>,
    /// The pass's input and target ids `[B·S]` each.
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
}

impl Workspace {
    /// Buffers for `cfg` with kernel set `set` and `batch` windows per pass (every activation
    /// is `[C, batch·S]`).
    pub fn new(cfg: &ModelConfig, set: KernelSet, batch: usize) -> Workspace {
        let s = cfg.seq_len * batch;
        let (d, h, qd, kvd) = (
            cfg.dim * s,
            cfg.hidden_dim * s,
            cfg.q_dim() * s,
            cfg.kv_dim() * s,
        );
        let z = |n: usize| vec![0.0f32; n];
        let ane = set == KernelSet::NeuralEngine;
        let only = |yes: bool, n: usize| if yes { z(n) } else { Vec::new() };
        let saved = (0..cfg.n_layers)
            .map(|_| Saved {
                x: z(d),
                xnorm: z(d),
                attn_out: z(qd),
                q_rope: z(qd),
                k_rope: z(kvd),
                v: z(kvd),
                lse: only(!ane, cfg.n_heads * s),
                x2: z(d),
                x2norm: z(d),
                h1: z(h),
                h3: z(h),
                gate: z(h),
            })
            .collect();
        let scores = cfg.n_heads * s * cfg.seq_len;
        Workspace {
            saved,
            x_last: z(d),
            xf: z(d),
            dx: z(d),
            dx_next: z(d),
            dxf: z(d),
            grads: Grads {
                dffn: z(d),
                dx2: z(d),
                dx2s: z(d),
                dxn: z(d),
                dh1: z(h),
                dh3: z(h),
                da: z(qd),
                dq_rope: z(qd),
                dq: z(qd),
                dk_rope: z(kvd),
                dk: z(kvd),
                dv: z(kvd),
                k_tiled: only(ane, qd),
                v_tiled: only(ane, qd),
                dk_full: only(ane, qd),
                dv_full: only(ane, qd),
                probs: only(ane, scores),
                dp: only(ane, scores),
            },
            attention: if ane {
                AttentionWorkspace::default()
            } else {
                AttentionWorkspace::for_dims(AttentionDims {
                    n_heads: cfg.n_heads,
                    n_kv_heads: cfg.n_kv_heads,
                    head_dim: cfg.head_dim,
                    seq: cfg.seq_len,
                    windows: batch,
                })
            },
            loss: LossWorkspace::for_dims(cfg.vocab_size, cfg.dim, s),
            head_rows: Vec::new(),
            dhead_rows: Vec::new(),
            mapped: Vec::new(),
            inputs: vec![0; s],
            targets: vec![0; s],
        }
    }
}
