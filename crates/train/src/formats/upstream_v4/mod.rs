//! maderix/ANE checkpoints (`ane-upstream.md` §5.4): version 4 (the dynamic pipeline) is
//! imported — weights and AdamW moments — so a run begun there continues here; version 2
//! (the static pipeline) and any other are refused with a clear error.
//!
//! Header, 96 bytes, little-endian `i32` unless noted: magic `0x424C5A54`, version, step,
//! total_steps, n_layers, vocab_size, dim, hidden_dim, n_heads, seq_len, lr (`f32`), loss
//! (`f32`), cum_compile, cum_train, cum_wall (`f64` ms), cum_steps, cum_batches, adam_t,
//! kv_heads, head_dim, q_dim. Body, `f32`: per layer `Wq, Wk, Wv, Wo, W1, W2, W3, rms_att,
//! rms_ffn`, then `(m, v)` of each of those in the same order; then `rms_final` with its
//! `m, v`, then `embed` with its `m, v`.
//!
//! The model upstream trains: tied classifier, θ 10000, eps 1e-5, residual scale
//! `1/sqrt(2·n_layers)`. Its forward kernel lets query head `h` read KV head `h mod NKV`
//! where ours reads `h / (NH/NKV)` ([`crate::model::kv_head_of`]); for GQA the import
//! reorders the query heads (rows of `Wq`, columns of `Wo`, and their moments) so our model
//! computes what upstream's forward pass computed.

use super::{count, Cursor, FormatError};
use crate::model::{ModelConfig, ParamKind};

/// Upstream's checkpoint magic.
pub const MAGIC: u32 = 0x424C_5A54;
/// Header bytes.
pub const HEADER: usize = 96;

/// A maderix/ANE checkpoint read.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamCheckpoint {
    /// The shape (`name` = `upstream`).
    pub config: ModelConfig,
    /// Parameters, layout of [`ModelConfig::params`].
    pub params: Vec<f32>,
    /// AdamW first moments, same layout.
    pub m: Vec<f32>,
    /// AdamW second moments, same layout.
    pub v: Vec<f32>,
    /// AdamW step count.
    pub adam_t: u64,
    /// The next step upstream would run.
    pub step: u64,
    /// Steps of upstream's run.
    pub total_steps: u64,
    /// The last loss upstream recorded.
    pub loss: f32,
}

/// Upstream's per-layer tensor order.
const LAYER_ORDER: [ParamKind; 9] = [
    ParamKind::Wq,
    ParamKind::Wk,
    ParamKind::Wv,
    ParamKind::Wo,
    ParamKind::W1,
    ParamKind::W2,
    ParamKind::W3,
    ParamKind::AttnNorm,
    ParamKind::FfnNorm,
];

impl UpstreamCheckpoint {
    /// Parses a checkpoint; `file` names it in errors.
    pub fn from_bytes(bytes: &[u8], file: &str) -> Result<Self, FormatError> {
        let mut c = Cursor::new(bytes, file);
        if c.u32("magic")? != MAGIC {
            return Err(c.err("magic", "not 0x424C5A54: not a maderix/ANE checkpoint"));
        }
        let version = c.i32("version")?;
        if version != 4 {
            return Err(c.err(
                "version",
                format!(
                    "{version}: only version 4 (training_dynamic) checkpoints are imported; \
                     version 2 is the static pipeline, which has no RoPE and cannot be \
                     continued here"
                ),
            ));
        }
        let step = c.i32("step")?;
        let total = c.i32("total_steps")?;
        let mut n = [0usize; 6];
        for (i, f) in [
            "n_layers",
            "vocab_size",
            "dim",
            "hidden_dim",
            "n_heads",
            "seq_len",
        ]
        .iter()
        .enumerate()
        {
            let v = c.i32(f)?;
            n[i] = count(&c, v, f)?;
        }
        let [layers, vocab, dim, hidden, heads, seq] = n;
        let _lr = c.f32("lr")?;
        let loss = c.f32("loss")?;
        for f in ["cum_compile", "cum_train", "cum_wall"] {
            c.f64(f)?;
        }
        c.i32("cum_steps")?;
        c.i32("cum_batches")?;
        let adam_t = c.i32("adam_t")?;
        let adam_t = count(&c, adam_t, "adam_t")? as u64;
        let mut g = [0usize; 3];
        for (i, f) in ["kv_heads", "head_dim", "q_dim"].iter().enumerate() {
            let v = c.i32(f)?;
            g[i] = count(&c, v, f)?;
        }
        let [kv_heads, head_dim, q_dim] = g;
        if heads.checked_mul(head_dim) != Some(q_dim) {
            return Err(c.err(
                "q_dim",
                format!("{q_dim} is not n_heads {heads} × head_dim {head_dim}"),
            ));
        }
        let config = ModelConfig {
            name: "upstream".to_string(),
            dim,
            n_layers: layers,
            n_heads: heads,
            n_kv_heads: kv_heads,
            head_dim,
            hidden_dim: hidden,
            vocab_size: vocab,
            seq_len: seq,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
            tied_classifier: true,
            residual_scale: Some(ModelConfig::deepnet_residual_scale(layers)),
        };
        config.validate().map_err(|source| FormatError::Config {
            file: file.to_string(),
            source,
        })?;
        c.expect_remaining(3 * config.param_count() as u128 * 4, "weights and moments")?;
        let table = config.params();
        let total_n = config.param_count();
        let (mut params, mut m, mut v) =
            (vec![0.0; total_n], vec![0.0; total_n], vec![0.0; total_n]);
        let range = |kind: ParamKind, layer: Option<usize>| {
            table
                .iter()
                .find(|s| s.kind == kind && s.layer == layer)
                .map(|s| s.range())
                .unwrap_or(0..0)
        };
        for l in 0..layers {
            for k in LAYER_ORDER {
                c.f32s_to(
                    &mut params[range(k, Some(l))],
                    &format!("layers[{l}].{k:?}"),
                )?;
            }
            for k in LAYER_ORDER {
                let r = range(k, Some(l));
                c.f32s_to(&mut m[r.clone()], &format!("layers[{l}].{k:?}.m"))?;
                c.f32s_to(&mut v[r], &format!("layers[{l}].{k:?}.v"))?;
            }
        }
        for k in [ParamKind::FinalNorm, ParamKind::Embed] {
            let r = range(k, None);
            c.f32s_to(&mut params[r.clone()], &format!("{k:?}"))?;
            c.f32s_to(&mut m[r.clone()], &format!("{k:?}.m"))?;
            c.f32s_to(&mut v[r], &format!("{k:?}.v"))?;
        }
        c.finish("embed.v")?;
        for buf in [&mut params, &mut m, &mut v] {
            reorder_query_heads(&config, buf);
        }
        Ok(UpstreamCheckpoint {
            config,
            params,
            m,
            v,
            adam_t,
            step: u64::try_from(step).unwrap_or(0),
            total_steps: u64::try_from(total).unwrap_or(0),
            loss,
        })
    }
}

/// The upstream query head our head `h` must be: with `r = NH/NKV`, ours `kv·r + j` reads KV
/// head `kv`, and upstream head `j·NKV + kv` read KV head `(j·NKV + kv) mod NKV = kv`.
pub fn upstream_head_of(h: usize, n_heads: usize, n_kv_heads: usize) -> usize {
    let r = n_heads / n_kv_heads.max(1);
    let (kv, j) = (h / r.max(1), h % r.max(1));
    j * n_kv_heads + kv
}

/// Reorders the query heads of every layer's `Wq` (rows) and `Wo` (columns) in `buf`
/// (parameters or a moment, layout of [`ModelConfig::params`]) from upstream's order to ours.
fn reorder_query_heads(cfg: &ModelConfig, buf: &mut [f32]) {
    let (nh, nkv, hd, d) = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.dim);
    if nh == nkv {
        return;
    }
    for spec in cfg.params() {
        let w = &mut buf[spec.range()];
        let old = w.to_vec();
        match spec.kind {
            ParamKind::Wq => {
                for h in 0..nh {
                    let src = upstream_head_of(h, nh, nkv) * hd * d;
                    w[h * hd * d..(h + 1) * hd * d].copy_from_slice(&old[src..src + hd * d]);
                }
            }
            ParamKind::Wo => {
                let q = nh * hd;
                for row in 0..d {
                    for h in 0..nh {
                        let src = row * q + upstream_head_of(h, nh, nkv) * hd;
                        w[row * q + h * hd..][..hd].copy_from_slice(&old[src..src + hd]);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
