//! Typed views of the flat parameter buffer: each tensor's range, resolved once at build time
//! from the parameter table, so the hot path indexes fields instead of hashing keys.

use std::ops::Range;

use crate::kernels::{LayerWeights, Matrix};
use crate::model::{ModelConfig, ParamKind, ParamSpec};

/// The ranges of one transformer block's tensors in the flat buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRanges {
    /// Attention RMSNorm weight `[D]`.
    pub attn_norm: Range<usize>,
    /// `Wq [QD, D]`.
    pub wq: Range<usize>,
    /// `Wk [KVD, D]`.
    pub wk: Range<usize>,
    /// `Wv [KVD, D]`.
    pub wv: Range<usize>,
    /// `Wo [D, QD]`.
    pub wo: Range<usize>,
    /// FFN RMSNorm weight `[D]`.
    pub ffn_norm: Range<usize>,
    /// `W1 [H, D]`.
    pub w1: Range<usize>,
    /// `W2 [D, H]`.
    pub w2: Range<usize>,
    /// `W3 [H, D]`.
    pub w3: Range<usize>,
}

impl LayerRanges {
    /// The range of `m`.
    pub fn matrix(&self, m: Matrix) -> Range<usize> {
        match m {
            Matrix::Wq => self.wq.clone(),
            Matrix::Wk => self.wk.clone(),
            Matrix::Wv => self.wv.clone(),
            Matrix::Wo => self.wo.clone(),
            Matrix::W1 => self.w1.clone(),
            Matrix::W2 => self.w2.clone(),
            Matrix::W3 => self.w3.clone(),
        }
    }
}

/// The ranges of every tensor of a model in the flat buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamRanges {
    /// Token embedding `[V, D]`.
    pub embed: Range<usize>,
    /// Final RMSNorm weight `[D]`.
    pub final_norm: Range<usize>,
    /// The classifier `[V, D]`: the embedding's range when tied.
    pub head: Range<usize>,
    /// One entry per layer.
    pub layers: Vec<LayerRanges>,
}

impl ParamRanges {
    /// Resolves `table` (the table of `cfg`); `None` if a tensor the config needs is missing.
    pub fn new(cfg: &ModelConfig, table: &[ParamSpec]) -> Option<ParamRanges> {
        let find = |kind: ParamKind, layer: Option<usize>| {
            table
                .iter()
                .find(|s| s.kind == kind && s.layer == layer)
                .map(ParamSpec::range)
        };
        let layers = (0..cfg.n_layers)
            .map(|l| {
                let g = |k| find(k, Some(l));
                Some(LayerRanges {
                    attn_norm: g(ParamKind::AttnNorm)?,
                    wq: g(ParamKind::Wq)?,
                    wk: g(ParamKind::Wk)?,
                    wv: g(ParamKind::Wv)?,
                    wo: g(ParamKind::Wo)?,
                    ffn_norm: g(ParamKind::FfnNorm)?,
                    w1: g(ParamKind::W1)?,
                    w2: g(ParamKind::W2)?,
                    w3: g(ParamKind::W3)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let embed = find(ParamKind::Embed, None)?;
        let head = if cfg.tied_classifier {
            embed.clone()
        } else {
            find(ParamKind::Classifier, None)?
        };
        Some(ParamRanges {
            embed,
            final_norm: find(ParamKind::FinalNorm, None)?,
            head,
            layers,
        })
    }

    /// Layer `l`'s weight matrices in `params`.
    pub fn layer_weights<'a>(&self, params: &'a [f32], l: usize) -> LayerWeights<'a> {
        let r = &self.layers[l];
        LayerWeights {
            wq: &params[r.wq.clone()],
            wk: &params[r.wk.clone()],
            wv: &params[r.wv.clone()],
            wo: &params[r.wo.clone()],
            w1: &params[r.w1.clone()],
            w2: &params[r.w2.clone()],
            w3: &params[r.w3.clone()],
        }
    }
}
