//! Random initial parameters.

use crate::model::{ModelConfig, ParamKind};

/// Random initial parameters for `cfg`, laid out as [`ModelConfig::params`]: uniform in
/// `(-s, s)` per tensor with upstream's scales — `Wq, Wk, Wv`: `1/√D`; `Wo`: `1/√QD · 1/√(2L)`;
/// `W1, W3`: `1/√H`; `W2`: `1/√D · 1/√(2L)`; embedding and classifier `0.02`; RMSNorm weights 1.
/// Deterministic for a given `seed` ([`crate::rng::Rng`]).
pub fn init_params(cfg: &ModelConfig, seed: u64) -> Vec<f32> {
    let mut rng = crate::rng::Rng::new(seed);
    let mut uniform = move || rng.symmetric();
    let depth = 1.0 / (2.0 * cfg.n_layers as f32).sqrt();
    let inv_sqrt = |n: usize| 1.0 / (n as f32).sqrt();
    let mut out = Vec::with_capacity(cfg.param_count());
    for spec in cfg.params() {
        let scale = match spec.kind {
            ParamKind::AttnNorm | ParamKind::FfnNorm | ParamKind::FinalNorm => {
                out.extend(std::iter::repeat_n(1.0, spec.numel()));
                continue;
            }
            ParamKind::Wq | ParamKind::Wk | ParamKind::Wv => inv_sqrt(cfg.dim),
            ParamKind::Wo => inv_sqrt(cfg.q_dim()) * depth,
            ParamKind::W1 | ParamKind::W3 => inv_sqrt(cfg.hidden_dim),
            ParamKind::W2 => inv_sqrt(cfg.dim) * depth,
            ParamKind::Embed | ParamKind::Classifier => 0.02,
        };
        out.extend((0..spec.numel()).map(|_| uniform() * scale));
    }
    out
}
