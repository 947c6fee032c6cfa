//! AdamW with global-norm gradient clipping (folded into the update) and a warmup + cosine learning-rate schedule.
//!
//! Update of parameter `p` with gradient `g` at step `t` (1-based), as PyTorch `AdamW`:
//! `m = β1·m + (1−β1)·g`, `v = β2·v + (1−β2)·g²`, `m̂ = m/(1−β1ᵗ)`, `v̂ = v/(1−β2ᵗ)`,
//! `p -= lr·(m̂/(√v̂ + ε) + λ·p)` with decay `λ` only on matrices (not on RMSNorm weights).
//! Everything is elementwise, so the result does not depend on how the work is split; the
//! global norm is summed in fixed chunks in a fixed order, so runs are bit-for-bit repeatable.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::ParamSpec;

/// Elements per parallel chunk (fixed, so sums are repeatable).
const CHUNK: usize = 1 << 16;

/// Optimizer settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// First-moment decay `β1`.
    pub beta1: f32,
    /// Second-moment decay `β2`.
    pub beta2: f32,
    /// `ε` added to `√v̂`.
    pub eps: f32,
    /// Decoupled weight decay `λ` (matrices only).
    pub weight_decay: f32,
    /// Clip the gradient's global L2 norm to this (`0` disables clipping).
    pub grad_clip: f32,
}

impl Default for AdamWConfig {
    /// llama2.c's settings: β = (0.9, 0.95), ε = 1e-8, λ = 0.1, clip 1.0.
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            grad_clip: 1.0,
        }
    }
}

impl AdamWConfig {
    /// Checks every setting is finite and in range.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |name: &str, v: f32| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must be in [0, 1), got {v}"))
            }
        };
        unit("beta1", self.beta1)?;
        unit("beta2", self.beta2)?;
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(format!("eps must be finite and > 0, got {}", self.eps));
        }
        for (name, v) in [
            ("weight_decay", self.weight_decay),
            ("grad_clip", self.grad_clip),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} must be finite and >= 0, got {v}"));
            }
        }
        Ok(())
    }
}

/// The optimizer's state: both moments and the step count.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamW {
    /// Settings.
    pub config: AdamWConfig,
    /// First moments, one per parameter.
    pub m: Vec<f32>,
    /// Second moments, one per parameter.
    pub v: Vec<f32>,
    /// Updates done so far.
    pub t: u64,
    /// Each tensor's range and whether weight decay applies to it.
    segments: Vec<(std::ops::Range<usize>, bool)>,
}

/// What one update saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpdateStats {
    /// Global L2 norm of the gradient before clipping.
    pub grad_norm: f32,
    /// Factor the gradient was multiplied by (1 when not clipped).
    pub clip_scale: f32,
}

impl AdamW {
    /// Fresh state (zero moments, `t = 0`) for parameters laid out as `table`.
    pub fn new(config: AdamWConfig, table: &[ParamSpec]) -> AdamW {
        let n = table.iter().map(ParamSpec::numel).sum();
        AdamW {
            config,
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
            segments: segments(table),
        }
    }

    /// State restored from a checkpoint; `None` when the moments do not match `table`.
    pub fn restore(
        config: AdamWConfig,
        table: &[ParamSpec],
        m: Vec<f32>,
        v: Vec<f32>,
        t: u64,
    ) -> Option<AdamW> {
        let n: usize = table.iter().map(ParamSpec::numel).sum();
        (m.len() == n && v.len() == n).then(|| AdamW {
            config,
            m,
            v,
            t,
            segments: segments(table),
        })
    }

    /// One update of `params` with `grads` (same layout) at learning rate `lr`, the gradient
    /// scaled down to the configured global norm. Panics if the lengths differ from the
    /// state's.
    pub fn update(&mut self, params: &mut [f32], grads: &[f32], lr: f32) -> UpdateStats {
        let norm = global_norm(grads);
        self.update_with_norm(params, grads, lr, norm)
    }

    /// [`AdamW::update`] with the gradient's global norm already computed (by
    /// [`global_norm`]), which saves a pass over the gradient.
    pub fn update_with_norm(
        &mut self,
        params: &mut [f32],
        grads: &[f32],
        lr: f32,
        grad_norm: f32,
    ) -> UpdateStats {
        self.update_scaled(params, grads, lr, grad_norm, 1.0)
    }

    /// [`AdamW::update_with_norm`] for a gradient stored multiplied by `1/grad_scale` (summed
    /// over `accum` windows, and times the fp16 loss scale): the true gradient is
    /// `grad_scale·grads`, its norm `grad_scale·raw_norm` (`raw_norm` = [`global_norm`] of
    /// `grads`). Unscaling, averaging and clipping are one multiply in the update pass.
    pub fn update_scaled(
        &mut self,
        params: &mut [f32],
        grads: &[f32],
        lr: f32,
        raw_norm: f32,
        grad_scale: f32,
    ) -> UpdateStats {
        let (step, stats) = self.begin(params.len(), grads.len(), lr, raw_norm, grad_scale);
        for (range, decays) in &self.segments {
            let r = range.clone();
            params[r.clone()]
                .par_chunks_mut(CHUNK)
                .zip(grads[r.clone()].par_chunks(CHUNK))
                .zip(self.m[r.clone()].par_chunks_mut(CHUNK))
                .zip(self.v[r].par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| step.chunk(p, g, m, v, *decays));
        }
        stats
    }

    /// [`AdamW::update_scaled`] that also zeroes `grads`, ready for the next accumulation
    /// (each chunk is cleared while it is still in cache, which saves the trainer a separate
    /// pass over the gradient).
    pub fn update_scaled_and_clear(
        &mut self,
        params: &mut [f32],
        grads: &mut [f32],
        lr: f32,
        raw_norm: f32,
        grad_scale: f32,
    ) -> UpdateStats {
        let (step, stats) = self.begin(params.len(), grads.len(), lr, raw_norm, grad_scale);
        for (range, decays) in &self.segments {
            let r = range.clone();
            params[r.clone()]
                .par_chunks_mut(CHUNK)
                .zip(grads[r.clone()].par_chunks_mut(CHUNK))
                .zip(self.m[r.clone()].par_chunks_mut(CHUNK))
                .zip(self.v[r].par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| {
                    step.chunk(p, g, m, v, *decays);
                    g.fill(0.0);
                });
        }
        stats
    }

    /// Advances `t` and returns the constants of this update. Panics if the lengths differ
    /// from the state's.
    fn begin(
        &mut self,
        params: usize,
        grads: usize,
        lr: f32,
        raw_norm: f32,
        grad_scale: f32,
    ) -> (Step, UpdateStats) {
        assert_eq!(params, self.m.len(), "parameter count");
        assert_eq!(grads, self.m.len(), "gradient count");
        let grad_norm = raw_norm * grad_scale;
        let clip = self.config.grad_clip;
        let clip_scale = if clip > 0.0 && grad_norm > clip {
            clip / grad_norm
        } else {
            1.0
        };
        self.t += 1;
        let c = self.config;
        let t = self.t as i32;
        let step = Step {
            k: grad_scale * clip_scale,
            b1: c.beta1,
            b2: c.beta2,
            eps: c.eps,
            // Bias corrections as reciprocals: one multiply per element instead of a divide.
            rbc1: 1.0 / (1.0 - c.beta1.powi(t)),
            rbc2: 1.0 / (1.0 - c.beta2.powi(t)),
            lr,
            wd: c.weight_decay,
            avx: avx(),
        };
        let stats = UpdateStats {
            grad_norm,
            clip_scale,
        };
        (step, stats)
    }
}

/// The constants of one update, applied chunk by chunk.
#[derive(Clone, Copy)]
struct Step {
    /// Multiplier of the stored gradient (unscaling, averaging and clipping).
    k: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    /// `1/(1−β1ᵗ)`, `1/(1−β2ᵗ)`.
    rbc1: f32,
    rbc2: f32,
    lr: f32,
    /// Weight decay of the tensors that decay.
    wd: f32,
    /// The CPU has AVX (the loop is then compiled 8 lanes wide: the same operations in the
    /// same order, so the result is bit-identical to the baseline build's).
    avx: bool,
}

impl Step {
    /// Updates one chunk (`p`, `g`, `m`, `v` of one length).
    fn chunk(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], decays: bool) {
        #[cfg(target_arch = "x86_64")]
        if self.avx {
            // SAFETY: `avx` is set only when the CPU has AVX.
            return unsafe { self.chunk_avx(p, g, m, v, decays) };
        }
        self.chunk_plain(p, g, m, v, decays)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    fn chunk_avx(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], decays: bool) {
        self.chunk_plain(p, g, m, v, decays)
    }

    #[inline(always)]
    fn chunk_plain(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], decays: bool) {
        let Step {
            k,
            b1,
            b2,
            eps,
            rbc1,
            rbc2,
            lr,
            ..
        } = *self;
        let wd = if decays { self.wd } else { 0.0 };
        let lanes = p.iter_mut().zip(g).zip(m.iter_mut().zip(v.iter_mut()));
        for ((p, &g), (m, v)) in lanes {
            let g = g * k;
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let (mh, vh) = (*m * rbc1, *v * rbc2);
            *p -= lr * (mh / (vh.sqrt() + eps) + wd * *p);
        }
    }
}

/// Whether this CPU has AVX.
fn avx() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Each tensor's range and whether weight decay applies to it (matrices yes, RMSNorm
/// weights no).
fn segments(table: &[ParamSpec]) -> Vec<(std::ops::Range<usize>, bool)> {
    table
        .iter()
        .map(|s| (s.range(), !s.kind.is_norm()))
        .collect()
}

/// The L2 norm of `x`, summed in f64 over fixed chunks in a fixed order (within a chunk, in
/// [`NORM_LANES`] interleaved partial sums, so the adds do not wait on each other).
pub fn global_norm(x: &[f32]) -> f32 {
    let parts: Vec<f64> = x.par_chunks(CHUNK).map(sum_squares).collect();
    parts.iter().sum::<f64>().sqrt() as f32
}

/// Partial sums in [`sum_squares`]: element `i` of a chunk goes to lane `i % NORM_LANES`.
const NORM_LANES: usize = 8;

/// `Σ x²` in f64: lane sums in element order, then the lanes added in order.
fn sum_squares(x: &[f32]) -> f64 {
    let mut lanes = [0f64; NORM_LANES];
    let mut blocks = x.chunks_exact(NORM_LANES);
    for b in &mut blocks {
        for (l, &g) in lanes.iter_mut().zip(b) {
            *l += f64::from(g) * f64::from(g);
        }
    }
    for (l, &g) in lanes.iter_mut().zip(blocks.remainder()) {
        *l += f64::from(g) * f64::from(g);
    }
    lanes.iter().sum()
}

/// Learning-rate schedule: linear warmup from `lr/warmup` to `lr` over `warmup` steps, then
/// cosine decay to `min_lr` at step `total` (and `min_lr` after).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Peak learning rate.
    pub lr: f32,
    /// Final learning rate.
    pub min_lr: f32,
    /// Warmup steps.
    pub warmup: u64,
    /// Step at which the decay ends.
    pub total: u64,
}

impl Schedule {
    /// The learning rate of update `step` (0-based).
    pub fn at(&self, step: u64) -> f32 {
        if step < self.warmup {
            return self.lr * (step + 1) as f32 / self.warmup as f32;
        }
        if step >= self.total || self.total <= self.warmup {
            return self.min_lr;
        }
        let progress = (step - self.warmup) as f64 / (self.total - self.warmup) as f64;
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        (f64::from(self.min_lr) + cos * f64::from(self.lr - self.min_lr)) as f32
    }

    /// Checks the rates are finite, positive, `min_lr <= lr`.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!(
                "the learning rate must be finite and > 0, got {}",
                self.lr
            ));
        }
        if !(self.min_lr.is_finite() && (0.0..=self.lr).contains(&self.min_lr)) {
            return Err(format!(
                "the final learning rate must be in [0, lr = {}], got {}",
                self.lr, self.min_lr
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelConfig, ParamKind};

    fn table() -> Vec<ParamSpec> {
        let cfg = ModelConfig::from_toml_str(
            "name = \"t\"\ndim = 8\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\n\
             head_dim = 4\nhidden_dim = 16\nvocab_size = 12\nseq_len = 32\n",
        )
        .unwrap();
        cfg.params()
    }

    /// Three AdamW steps against a plain f64 implementation of the PyTorch formula, with
    /// clipping active and decay only on matrices.
    #[test]
    fn matches_an_f64_reference() {
        let table = table();
        let n: usize = table.iter().map(ParamSpec::numel).sum();
        let cfg = AdamWConfig {
            grad_clip: 0.5,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(cfg, &table);
        let mut p: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0).collect();
        let (mut rp, mut rm, mut rv) = (
            p.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
            vec![0.0f64; n],
            vec![0.0f64; n],
        );
        let decays: Vec<bool> = (0..n)
            .map(|i| {
                let s = table.iter().find(|s| s.range().contains(&i)).unwrap();
                !matches!(
                    s.kind,
                    ParamKind::AttnNorm | ParamKind::FfnNorm | ParamKind::FinalNorm
                )
            })
            .collect();
        for t in 1..=3 {
            let g: Vec<f32> = (0..n)
                .map(|i| ((i * 5 + t) % 11) as f32 / 20.0 - 0.25)
                .collect();
            let lr = 0.01 * t as f32;
            let stats = opt.update(&mut p, &g, lr);
            let norm: f64 = g.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            assert!((f64::from(stats.grad_norm) - norm).abs() < 1e-5 * norm);
            let scale = if norm > 0.5 { 0.5 / norm } else { 1.0 };
            assert!(scale < 1.0, "the test exercises clipping");
            let (b1, b2) = (0.9f64, 0.95f64);
            for i in 0..n {
                let gi = f64::from(g[i]) * scale;
                rm[i] = b1 * rm[i] + (1.0 - b1) * gi;
                rv[i] = b2 * rv[i] + (1.0 - b2) * gi * gi;
                let mh = rm[i] / (1.0 - b1.powi(t as i32));
                let vh = rv[i] / (1.0 - b2.powi(t as i32));
                let wd = if decays[i] { 0.1 } else { 0.0 };
                rp[i] -= f64::from(lr) * (mh / (vh.sqrt() + 1e-8) + wd * rp[i]);
            }
        }
        for i in 0..n {
            assert!(
                (f64::from(p[i]) - rp[i]).abs() < 1e-5,
                "param {i}: {} vs {}",
                p[i],
                rp[i]
            );
        }
        assert_eq!(opt.t, 3);
        let again = AdamW::restore(cfg, &table, opt.m.clone(), opt.v.clone(), 3).unwrap();
        assert_eq!(again, opt);
        assert!(AdamW::restore(cfg, &table, vec![0.0; 3], opt.v.clone(), 3).is_none());
    }

    /// The clearing update equals the plain one bit for bit and leaves zeros; the lane-wise
    /// norm matches an f64 reference, on a table spanning several chunks with a ragged end.
    #[test]
    fn clearing_update_matches_the_plain_one_across_chunks() {
        let cfg = ModelConfig::from_toml_str(
            "name = \"t\"\ndim = 8\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\n\
             head_dim = 4\nhidden_dim = 16\nvocab_size = 17001\nseq_len = 32\n",
        )
        .unwrap();
        let table = cfg.params();
        let n: usize = table.iter().map(ParamSpec::numel).sum();
        assert!(n > 2 * CHUNK, "{n}");
        let g: Vec<f32> = (0..n)
            .map(|i| ((i * 31 % 101) as f32 - 50.0) / 700.0)
            .collect();
        for len in [n, n - 3] {
            let x = &g[..len];
            let reference: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
            assert!((f64::from(global_norm(x)) - reference).abs() < 1e-6 * reference);
        }
        let norm = global_norm(&g);
        let p0: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0).collect();
        let (mut a, mut b) = (AdamW::new(AdamWConfig::default(), &table), None);
        let mut pa = p0.clone();
        let mut pb = p0;
        for step in 0..2 {
            let sa = a.update_scaled(&mut pa, &g, 0.01, norm, 0.5);
            let opt_b = b.get_or_insert_with(|| AdamW::new(AdamWConfig::default(), &table));
            let mut gb = g.clone();
            let sb = opt_b.update_scaled_and_clear(&mut pb, &mut gb, 0.01, norm, 0.5);
            assert_eq!(sa, sb, "step {step}");
            assert!(gb.iter().all(|&x| x == 0.0));
        }
        let b = b.unwrap();
        assert!(pa.iter().zip(&pb).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert_eq!(a, b);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let s = Schedule {
            lr: 1.0,
            min_lr: 0.1,
            warmup: 4,
            total: 14,
        };
        assert_eq!(s.at(0), 0.25);
        assert_eq!(s.at(3), 1.0);
        assert_eq!(s.at(4), 1.0);
        assert!((s.at(9) - 0.55).abs() < 1e-6);
        assert!((s.at(14) - 0.1).abs() < 1e-7);
        assert_eq!(s.at(100), 0.1);
        assert!(s.validate().is_ok());
        assert!(Schedule { lr: f32::NAN, ..s }.validate().is_err());
        assert!(Schedule { min_lr: 2.0, ..s }.validate().is_err());
        assert!(AdamWConfig {
            beta1: 1.0,
            ..AdamWConfig::default()
        }
        .validate()
        .is_err());
    }
}
