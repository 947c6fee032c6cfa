//! The efficiency report of a training run: throughput, where the time went, and how much of
//! the model's arithmetic per second that is.

use serde::Serialize;

use crate::model::ModelConfig;
use crate::trainer::Totals;

/// Arithmetic of one training token (forward + backward) in FLOPs, counted as a dense LLaMA:
/// per layer the seven projections (`2·D·(QD + 2·KVD) + 2·QD·D + 6·D·H` forward) and causal
/// attention over the unmasked pairs only (a window's `S(S+1)/2` query–key pairs, `4·QD`
/// each for scores and values: `2·QD·(S+1)` per token forward — the masked half is work no
/// useful result needs, so it is not counted even where a kernel set computes it), plus the
/// classifier (`2·D·V`); backward costs twice the forward.
pub fn train_flops_per_token(c: &ModelConfig) -> f64 {
    let (d, qd, kvd, h) = (
        c.dim as f64,
        c.q_dim() as f64,
        c.kv_dim() as f64,
        c.hidden_dim as f64,
    );
    let (s, v, l) = (c.seq_len as f64, c.vocab_size as f64, c.n_layers as f64);
    let layer = 2.0 * d * (qd + 2.0 * kvd) + 2.0 * qd * d + 6.0 * d * h + 2.0 * qd * (s + 1.0);
    3.0 * (l * layer + 2.0 * d * v)
}

/// One share of the wall time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Share {
    /// What the time was spent on.
    pub name: &'static str,
    /// Seconds.
    pub seconds: f64,
    /// Fraction of the training wall time.
    pub fraction: f64,
}

/// The report printed at the end of `ane-train train` (and written with `--json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EfficiencyReport {
    /// Model name.
    pub model: String,
    /// The model's whole configuration.
    pub config: ModelConfig,
    /// Parameters.
    pub params: usize,
    /// Device description.
    pub device: String,
    /// Weight mode.
    pub mode: String,
    /// Updates done in this process.
    pub updates: u64,
    /// Updates skipped (non-finite gradient).
    pub skipped: u64,
    /// Tokens trained on in this process.
    pub tokens: u64,
    /// Wall seconds inside training updates.
    pub train_seconds: f64,
    /// Tokens per second.
    pub tokens_per_second: f64,
    /// Milliseconds per update (mean, first update included).
    pub ms_per_update: f64,
    /// Median milliseconds per update (0 when no update was timed).
    pub median_ms_per_update: f64,
    /// Model FLOPs per second (forward + backward, [`train_flops_per_token`]).
    pub model_gflops: f64,
    /// Where the time went.
    pub shares: Vec<Share>,
    /// Kernel compiles in this process.
    pub compiles: usize,
    /// Loss of the last update.
    pub final_loss: Option<f32>,
    /// Held-out loss at the end.
    pub eval_loss: Option<f32>,
}

impl EfficiencyReport {
    /// The report of `totals` for a model of `cfg`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &ModelConfig,
        device: &str,
        mode: &str,
        totals: &Totals,
        step_times: &[std::time::Duration],
        compiles: usize,
        final_loss: Option<f32>,
        eval_loss: Option<f32>,
    ) -> EfficiencyReport {
        let wall = totals.wall.as_secs_f64();
        let per = |x: f64| if wall > 0.0 { x / wall } else { 0.0 };
        let share = |name, d: std::time::Duration| Share {
            name,
            seconds: d.as_secs_f64(),
            fraction: per(d.as_secs_f64()),
        };
        let shares = vec![
            share("device kernels", totals.device),
            share("surface traffic", totals.traffic),
            share("host ops", totals.host),
            share("optimizer", totals.optimizer),
            share("weight update", totals.weight_update),
        ];
        EfficiencyReport {
            model: cfg.name.clone(),
            config: cfg.clone(),
            params: cfg.param_count(),
            device: device.to_string(),
            mode: mode.to_string(),
            updates: totals.updates,
            skipped: totals.skipped,
            tokens: totals.tokens,
            train_seconds: wall,
            tokens_per_second: per(totals.tokens as f64),
            ms_per_update: if totals.updates > 0 {
                wall * 1e3 / totals.updates as f64
            } else {
                0.0
            },
            median_ms_per_update: median_ms(step_times),
            model_gflops: per(totals.tokens as f64 * train_flops_per_token(cfg)) / 1e9,
            shares,
            compiles,
            final_loss,
            eval_loss,
        }
    }

    /// The report as aligned text lines.
    pub fn render(&self) -> String {
        let mut out = format!(
            "efficiency — {} ({} params) on {}, {} mode\n",
            self.model, self.params, self.device, self.mode
        );
        out += &format!(
            "  {} updates ({} skipped), {} tokens in {:.1} s: {:.0} tokens/s, {:.1} ms/update \
             (median {:.1}), {:.2} model GFLOP/s\n",
            self.updates,
            self.skipped,
            self.tokens,
            self.train_seconds,
            self.tokens_per_second,
            self.ms_per_update,
            self.median_ms_per_update,
            self.model_gflops
        );
        for s in &self.shares {
            out += &format!(
                "  {:<16} {:>9.2} s  {:>5.1} %\n",
                s.name,
                s.seconds,
                s.fraction * 100.0
            );
        }
        out += &format!("  kernel compiles  {}\n", self.compiles);
        if let Some(l) = self.final_loss {
            out += &format!("  last train loss  {l:.4}\n");
        }
        if let Some(l) = self.eval_loss {
            out += &format!("  held-out loss    {l:.4}\n");
        }
        out
    }
}

/// The median of `times` in milliseconds (0 for none).
fn median_ms(times: &[std::time::Duration]) -> f64 {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    if ms.is_empty() {
        return 0.0;
    }
    ms.sort_by(f64::total_cmp);
    let mid = ms.len() / 2;
    if ms.len() % 2 == 1 {
        ms[mid]
    } else {
        (ms[mid - 1] + ms[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The FLOP count against a hand count for stories260k (D 64, L 5, NH 8, NKV 4, HD 8,
    /// H 172, V 512, S 512).
    #[test]
    fn flops_match_a_hand_count() {
        let c = ModelConfig::preset("stories260k").unwrap();
        let proj = 2 * 64 * (64 + 2 * 32) + 2 * 64 * 64 + 6 * 64 * 172;
        // 512·513/2 unmasked pairs per window, 4·QD FLOPs each, over 512 tokens.
        let attn = 2 * 64 * 513;
        let fwd = 5 * (proj + attn) + 2 * 64 * 512;
        assert_eq!(train_flops_per_token(&c), 3.0 * fwd as f64);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        let ms = |v: &[u64]| -> Vec<std::time::Duration> {
            v.iter()
                .map(|&m| std::time::Duration::from_millis(m))
                .collect()
        };
        assert_eq!(median_ms(&ms(&[5, 1, 3])), 3.0);
        assert_eq!(median_ms(&ms(&[4, 1, 3, 2])), 2.5);
        assert_eq!(median_ms(&[]), 0.0);
    }
}
