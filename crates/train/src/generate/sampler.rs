//! llama2.c's sampler: greedy at temperature 0, else softmax of `logits / T` and either a
//! draw from the whole distribution or nucleus (top-p) sampling, with its xorshift64* draws,
//! so a seed gives the tokens `run.c` gives for it.

use crate::rng::Rng;

/// Picks the next token from logits.
#[derive(Debug, Clone)]
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    rng: Rng,
    probs: Vec<(f32, u32)>,
}

impl Sampler {
    /// A sampler with `temperature` (0: greedy), `top_p` (outside `(0, 1)`: no nucleus
    /// cut), seeded with `seed` (as `run.c --seed`; 0 is used as 1, which xorshift needs).
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Sampler {
        Sampler {
            temperature,
            top_p,
            rng: Rng::from_state(seed.max(1)).unwrap_or_else(|| Rng::new(1)),
            probs: Vec::new(),
        }
    }

    /// `run.c`'s `random_f32`: the top 24 of a draw's upper 32 bits, in `[0, 1)`.
    fn coin(&mut self) -> f32 {
        let u = (self.rng.next_u64() >> 32) as u32;
        (u >> 8) as f32 / 16_777_216.0
    }

    /// The next token: the first largest logit at temperature 0 (or for non-finite T), else a
    /// draw as `run.c` draws.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let argmax = logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &l)| if l > b.1 { (i, l) } else { b },
            )
            .0 as u32;
        if !(self.temperature.is_finite() && self.temperature > 0.0) || logits.is_empty() {
            return argmax;
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) / self.temperature;
        let mut probs: Vec<f32> = logits
            .iter()
            .map(|&l| (l / self.temperature - max).exp())
            .collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        let coin = self.coin();
        let n = probs.len();
        if self.top_p <= 0.0 || self.top_p >= 1.0 || n < 2 {
            let mut cdf = 0.0;
            for (i, &p) in probs.iter().enumerate() {
                cdf += p;
                if coin < cdf {
                    return i as u32;
                }
            }
            return (n - 1) as u32;
        }
        // Nucleus: candidates at or above (1 - p)/(n - 1), most likely first, cut where the
        // cumulative probability first exceeds p.
        let cutoff = (1.0 - self.top_p) / (n - 1) as f32;
        self.probs.clear();
        self.probs.extend(
            probs
                .iter()
                .enumerate()
                .filter(|(_, &p)| p >= cutoff)
                .map(|(i, &p)| (p, i as u32)),
        );
        self.probs
            .sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut total = 0.0;
        let mut last = self.probs.len().saturating_sub(1);
        for (i, &(p, _)) in self.probs.iter().enumerate() {
            total += p;
            if total > self.top_p {
                last = i;
                break;
            }
        }
        let r = coin * total;
        let mut cdf = 0.0;
        for &(p, id) in &self.probs[..=last.min(self.probs.len().saturating_sub(1))] {
            cdf += p;
            if r < cdf {
                return id;
            }
        }
        self.probs.get(last).map_or(argmax, |c| c.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum_and_warm_draws_follow_the_softmax() {
        let logits = [0.0f32, 2.0, 2.0, 1.0];
        assert_eq!(Sampler::new(0.0, 0.9, 1).sample(&logits), 1);
        let mut s = Sampler::new(1.0, 0.0, 7);
        let mut counts = [0usize; 4];
        for _ in 0..20_000 {
            counts[s.sample(&logits) as usize] += 1;
        }
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        for (i, &l) in logits.iter().enumerate() {
            let want = f64::from(l).exp() / z;
            let got = counts[i] as f64 / 20_000.0;
            assert!((got - want).abs() < 0.02, "id {i}: {got} vs {want}");
        }
        // Top-p 0.5 keeps only the two most likely (each 0.4 of the mass).
        let mut s = Sampler::new(1.0, 0.5, 7);
        for _ in 0..2000 {
            assert!(matches!(s.sample(&logits), 1 | 2));
        }
    }

    #[test]
    fn draws_are_run_c_s_xorshift() {
        // run.c: state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
        // (state * 0x2545F4914F6CDD1D) >> 32, then >> 8 over 2^24.
        let mut state: u64 = 42;
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let u = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32;
        let mut s = Sampler::new(1.0, 0.0, 42);
        assert_eq!(s.coin(), (u >> 8) as f32 / 16_777_216.0);
    }
}
