//! Text generation from a model: one forward pass per new token over the last `S` tokens.

use crate::llama::{Model, ModelError};
use crate::rng::Rng;

/// How tokens are picked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleOptions {
    /// New tokens to generate at most.
    pub max_tokens: usize,
    /// Softmax temperature; `0` picks the most likely token every time.
    pub temperature: f32,
    /// Only ids below this are ever picked (the tokenizer's vocabulary, which may be smaller
    /// than the model's).
    pub vocab_limit: usize,
    /// Generation stops after any of these ids (they are kept in the output).
    pub stop: [Option<u32>; 2],
    /// Seed of the sampling RNG.
    pub seed: u64,
}

/// Continues `prompt` (non-empty ids) by up to `opts.max_tokens` ids; returns only the new ids.
pub fn generate(
    model: &mut Model,
    prompt: &[u32],
    opts: &SampleOptions,
) -> Result<Vec<u32>, ModelError> {
    if !(opts.temperature.is_finite() && opts.temperature >= 0.0) {
        return Err(ModelError::Shape(format!(
            "the temperature must be finite and >= 0, got {}",
            opts.temperature
        )));
    }
    if prompt.is_empty() {
        return Err(ModelError::Shape(
            "generation needs a prompt of at least one id (e.g. BOS)".into(),
        ));
    }
    let s = model.config().seq_len;
    let limit = opts.vocab_limit.min(model.config().vocab_size).max(1);
    let mut rng = Rng::new(opts.seed);
    let mut all = prompt.to_vec();
    // Reserve for one window at most: `max_tokens` comes from a flag and may be huge.
    let mut out = Vec::with_capacity(opts.max_tokens.min(s.max(1)));
    for _ in 0..opts.max_tokens {
        let ctx = &all[all.len().saturating_sub(s)..];
        let logits = model.logits_at(ctx, ctx.len() - 1)?;
        let id = pick(&logits[..limit], opts.temperature, &mut rng);
        all.push(id);
        out.push(id);
        if opts.stop.contains(&Some(id)) {
            break;
        }
    }
    Ok(out)
}

/// Argmax at temperature 0, else a draw from `softmax(logits / temperature)`.
pub fn pick(logits: &[f32], temperature: f32, rng: &mut Rng) -> u32 {
    let argmax = logits
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &l)| {
            if l > best.1 {
                (i, l)
            } else {
                best
            }
        })
        .0;
    if temperature == 0.0 {
        return argmax as u32;
    }
    let max = logits[argmax];
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| f64::from((l - max) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = f64::from(rng.unit()) * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    argmax as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_is_argmax_when_cold_and_follows_the_softmax_when_warm() {
        let mut rng = Rng::new(1);
        let logits = [0.0f32, 2.0, 1.0, f32::NEG_INFINITY];
        assert_eq!(pick(&logits, 0.0, &mut rng), 1);
        let mut counts = [0usize; 4];
        for _ in 0..20_000 {
            counts[pick(&logits, 1.0, &mut rng) as usize] += 1;
        }
        let z: f64 = [0.0f64, 2.0, 1.0].iter().map(|l| l.exp()).sum();
        for (i, l) in [0.0f64, 2.0, 1.0].iter().enumerate() {
            let expect = l.exp() / z;
            let got = counts[i] as f64 / 20_000.0;
            assert!((got - expect).abs() < 0.02, "id {i}: {got} vs {expect}");
        }
        assert_eq!(counts[3], 0);
    }
}
