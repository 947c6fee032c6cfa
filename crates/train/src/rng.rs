//! A small deterministic random number generator (xorshift64*), the same on every platform,
//! whose whole state is one `u64` — so a checkpoint can store it and a resumed run draws the
//! same numbers as an uninterrupted one.

/// xorshift64* (Vigna). Not for cryptography. Invariant: the state is never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded from `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// Generator number `stream` of `seed`: both are hashed (splitmix64's finalizer), so
    /// neighbouring streams and neighbouring seeds give unrelated sequences.
    pub fn for_stream(seed: u64, stream: u64) -> Rng {
        Rng::new(mix(mix(seed) ^ mix(stream ^ 0x5EED_C0DE_0000_0000)))
    }

    /// The generator whose [`Rng::state`] is `state`; `None` for 0, which is not a state.
    pub fn from_state(state: u64) -> Option<Rng> {
        (state != 0).then_some(Rng { state })
    }

    /// The whole state (non-zero), for checkpoints.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)` with 24 random bits (exactly representable in f32).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[-1, 1)`.
    pub fn symmetric(&mut self) -> f32 {
        self.unit() * 2.0 - 1.0
    }

    /// Uniform in `0..n` (`n > 0`; multiply-shift, bias below 2⁻³² for `n < 2³²`).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        ((u128::from(self.next_u64() >> 32) * n as u128) >> 32) as usize
    }

    /// A uniformly chosen element of `items` (non-empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// splitmix64's output function: a bijective 64-bit mix.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_state_round_trips() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut c = Rng::from_state(a.state()).unwrap();
        assert_eq!(a.next_u64(), c.next_u64());
        assert!(Rng::from_state(0).is_none());
        assert_ne!(Rng::new(0).state(), 0);
        let mut s0 = Rng::for_stream(1, 0);
        let mut s1 = Rng::for_stream(1, 1);
        assert_ne!(s0.next_u64(), s1.next_u64());
        assert_eq!(Rng::for_stream(1, 1), Rng::for_stream(1, 1));
    }

    #[test]
    fn ranges_hold_and_below_covers_every_value() {
        let mut r = Rng::new(3);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            let s = r.symmetric();
            assert!((-1.0..1.0).contains(&s));
            seen[r.below(7)] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }
}
