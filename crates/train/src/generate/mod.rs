//! KV-cached incremental decoding on the host: one token in, next-token logits out, each
//! position's keys and values kept so a step costs one matrix-vector product per weight
//! instead of a forward pass over the whole window.
//!
//! The math is the model's (see [`crate::llama`]): per layer `x += α·Wo·attn(RMSNorm(x))`,
//! `x += α·W2·(silu(W1·h) ⊙ W3·h)` with `h = RMSNorm(x)`, RoPE on interleaved pairs
//! ([`crate::host::rope`]), query head `h` reading KV head [`kv_head_of`], scores scaled by
//! `1/√HD`; final RMSNorm and the classifier. It is written here per token from the parameter
//! table; `tests/generate.rs` checks its logits against the full forward pass.

mod sampler;

pub use sampler::Sampler;

use rayon::prelude::*;

use crate::host::RopeTable;
use crate::llama::Ranges;
use crate::model::{kv_head_of, ModelConfig};
use crate::tokenizer::{BOS, EOS};

/// What is wrong with a decoding request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The parameters do not fit the config.
    #[error("{got} parameters given, the model has {expected}")]
    Params {
        /// Values given.
        got: usize,
        /// Values the config needs.
        expected: usize,
    },
    /// The config is not valid.
    #[error("invalid model config: {0}")]
    Config(String),
    /// A token id is outside the vocabulary.
    #[error("token id {id} is not below the vocabulary size {vocab}")]
    Token {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// Every position of the cache is used.
    #[error("the KV cache holds {seq} positions, all used")]
    Full {
        /// Positions the cache holds.
        seq: usize,
    },
    /// The prompt has no token.
    #[error("generation needs a prompt of at least one id (e.g. BOS)")]
    EmptyPrompt,
}

/// Weights of one transformer block, as slices of the flat parameter buffer.
#[derive(Debug, Clone, Copy)]
struct Layer<'a> {
    attn_norm: &'a [f32],
    wq: &'a [f32],
    wk: &'a [f32],
    wv: &'a [f32],
    wo: &'a [f32],
    ffn_norm: &'a [f32],
    w1: &'a [f32],
    w2: &'a [f32],
    w3: &'a [f32],
}

/// A KV-cached decoder over borrowed parameters (layout of [`ModelConfig::params`]).
///
/// Cache: keys and values `[L, S, KV]` f32, position-major per layer.
#[derive(Debug)]
pub struct Decoder<'a> {
    cfg: ModelConfig,
    embed: &'a [f32],
    layers: Vec<Layer<'a>>,
    final_norm: &'a [f32],
    head: &'a [f32],
    /// Per pair `i`, the RoPE frequency `θ^(-2i/HD)`.
    freqs: Vec<f64>,
    keys: Vec<f32>,
    values: Vec<f32>,
    pos: usize,
    logits: Vec<f32>,
}

impl<'a> Decoder<'a> {
    /// A decoder for `cfg` with `params`, its cache sized for `cfg.seq_len` positions.
    pub fn new(cfg: &ModelConfig, params: &'a [f32]) -> Result<Self, DecodeError> {
        cfg.validate()
            .map_err(|e| DecodeError::Config(e.to_string()))?;
        if params.len() != cfg.param_count() {
            return Err(DecodeError::Params {
                got: params.len(),
                expected: cfg.param_count(),
            });
        }
        let table = cfg.params();
        let ranges = Ranges::new(cfg, &table)
            .ok_or_else(|| DecodeError::Config("the parameter table misses a tensor".into()))?;
        let at = |r: &std::ops::Range<usize>| -> &'a [f32] { &params[r.clone()] };
        let layers = ranges
            .layers
            .iter()
            .map(|r| Layer {
                attn_norm: at(&r.attn_norm),
                wq: at(&r.wq),
                wk: at(&r.wk),
                wv: at(&r.wv),
                wo: at(&r.wo),
                ffn_norm: at(&r.ffn_norm),
                w1: at(&r.w1),
                w2: at(&r.w2),
                w3: at(&r.w3),
            })
            .collect();
        let cache = cfg.n_layers * cfg.seq_len * cfg.kv_dim();
        Ok(Decoder {
            embed: at(&ranges.embed),
            layers,
            final_norm: at(&ranges.final_norm),
            head: at(&ranges.head),
            freqs: (0..cfg.head_dim / 2)
                .map(|i| RopeTable::freq(i, cfg.head_dim, cfg.rope_theta))
                .collect(),
            keys: vec![0.0; cache],
            values: vec![0.0; cache],
            pos: 0,
            logits: vec![0.0; cfg.vocab_size],
            cfg: cfg.clone(),
        })
    }

    /// The config.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Positions decoded so far (the next token goes to this position).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Forgets every cached position.
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Feeds `token` at the next position; returns the next-token logits `[V]`.
    pub fn step(&mut self, token: u32) -> Result<&[f32], DecodeError> {
        let c = &self.cfg;
        let (d, s, v, hd) = (c.dim, c.seq_len, c.vocab_size, c.head_dim);
        let (qd, kvd, hid) = (c.q_dim(), c.kv_dim(), c.hidden_dim);
        if token as usize >= v {
            return Err(DecodeError::Token {
                id: token,
                vocab: v,
            });
        }
        if self.pos >= s {
            return Err(DecodeError::Full { seq: s });
        }
        let (p, eps, alpha) = (self.pos, c.norm_eps, c.residual_alpha());
        let mut x = self.embed[token as usize * d..][..d].to_vec();
        let (mut h, mut q, mut k, mut val) =
            (vec![0.0; d], vec![0.0; qd], vec![0.0; kvd], vec![0.0; kvd]);
        let (mut att, mut o) = (vec![0.0; qd], vec![0.0; d]);
        let (mut h1, mut h3) = (vec![0.0; hid], vec![0.0; hid]);
        let mut scores = vec![0.0f32; p + 1];
        let scale = 1.0 / (hd as f32).sqrt();
        for (l, w) in self.layers.iter().enumerate() {
            rmsnorm(&mut h, &x, w.attn_norm, eps);
            matvec(&mut q, w.wq, &h);
            matvec(&mut k, w.wk, &h);
            matvec(&mut val, w.wv, &h);
            rope(&mut q, hd, p, &self.freqs);
            rope(&mut k, hd, p, &self.freqs);
            let base = l * s * kvd;
            self.keys[base + p * kvd..][..kvd].copy_from_slice(&k);
            self.values[base + p * kvd..][..kvd].copy_from_slice(&val);
            for hq in 0..c.n_heads {
                let kvh = kv_head_of(hq, c.n_heads, c.n_kv_heads);
                let qh = &q[hq * hd..][..hd];
                for (t, sc) in scores.iter_mut().enumerate() {
                    let kt = &self.keys[base + t * kvd + kvh * hd..][..hd];
                    *sc = dot(qh, kt) * scale;
                }
                softmax(&mut scores);
                let out = &mut att[hq * hd..][..hd];
                out.fill(0.0);
                for (t, &pr) in scores.iter().enumerate() {
                    let vt = &self.values[base + t * kvd + kvh * hd..][..hd];
                    for (a, &b) in out.iter_mut().zip(vt) {
                        *a += pr * b;
                    }
                }
            }
            matvec(&mut o, w.wo, &att);
            for (xi, oi) in x.iter_mut().zip(&o) {
                *xi += alpha * oi;
            }
            rmsnorm(&mut h, &x, w.ffn_norm, eps);
            matvec(&mut h1, w.w1, &h);
            matvec(&mut h3, w.w3, &h);
            for (a, &b) in h1.iter_mut().zip(&h3) {
                *a = *a / (1.0 + (-*a).exp()) * b;
            }
            matvec(&mut o, w.w2, &h1);
            for (xi, oi) in x.iter_mut().zip(&o) {
                *xi += alpha * oi;
            }
        }
        rmsnorm(&mut h, &x, self.final_norm, eps);
        matvec(&mut self.logits, self.head, &h);
        self.pos += 1;
        Ok(&self.logits)
    }
}

/// `y = x·w·(mean x² + eps)^-½`, over one column `[D]`.
fn rmsnorm(y: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let r = 1.0 / (ss + eps).sqrt();
    for ((o, &xv), &wv) in y.iter_mut().zip(x).zip(w) {
        *o = xv * wv * r;
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y [R] = W [R, C] · x [C]`, rows in parallel when the matrix is large.
fn matvec(y: &mut [f32], w: &[f32], x: &[f32]) {
    let cols = x.len();
    if y.len() * cols >= 1 << 16 {
        y.par_iter_mut()
            .zip(w.par_chunks_exact(cols))
            .for_each(|(o, row)| *o = dot(row, x));
    } else {
        for (o, row) in y.iter_mut().zip(w.chunks_exact(cols)) {
            *o = dot(row, x);
        }
    }
}

/// Rotates pair `i` of every head of `x [heads·HD]` by `p·freqs[i]` (cos/sin in f64,
/// rounded to f32 as [`crate::host::RopeTable`] does).
fn rope(x: &mut [f32], hd: usize, p: usize, freqs: &[f64]) {
    for head in x.chunks_exact_mut(hd) {
        for (i, pair) in head.chunks_exact_mut(2).enumerate() {
            let a = p as f64 * freqs[i];
            let (c, s) = (a.cos() as f32, a.sin() as f32);
            let (x0, x1) = (pair[0], pair[1]);
            pair[0] = x0 * c - x1 * s;
            pair[1] = x0 * s + x1 * c;
        }
    }
}

/// In-place softmax (max subtracted).
fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// Runs llama2.c's generation loop: feeds `prompt` (forced, one position each), then
/// `sampler`'s picks, for at most `steps` positions (clipped to the cache); stops before a
/// sampled BOS or EOS. `emit(prev, next)` is called for every token after the first, as it is
/// produced. Returns every token fed or produced, prompt included.
pub fn generate(
    dec: &mut Decoder<'_>,
    prompt: &[u32],
    steps: usize,
    sampler: &mut Sampler,
    mut emit: impl FnMut(u32, u32),
) -> Result<Vec<u32>, DecodeError> {
    let Some(&first) = prompt.first() else {
        return Err(DecodeError::EmptyPrompt);
    };
    let steps = steps.min(dec.config().seq_len);
    let mut out = vec![first];
    let mut token = first;
    let mut pos = 0;
    while pos < steps {
        let logits = dec.step(token)?;
        let next = match prompt.get(pos + 1) {
            Some(&t) => t,
            None => sampler.sample(logits),
        };
        pos += 1;
        if pos >= prompt.len() && (next == BOS || next == EOS) {
            break;
        }
        emit(token, next);
        out.push(next);
        token = next;
    }
    Ok(out)
}
