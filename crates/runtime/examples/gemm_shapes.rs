//! GFLOP/s of the one GEMM engine on the products a stories110m training step runs (S = 256):
//! `cargo run --release -p ane-runtime --example gemm_shapes [repeats [shape filter]]`. Medians [min, max].

use std::time::Instant;

use ane_runtime::cpu::gemm::{matmul, Gemm};

fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    let (d, hid, v, s, sc) = (768, 2048, 32000, 256, 128);
    let shapes = [
        ("classifier logits", Gemm::new(sc, v, d).b_transposed()),
        ("classifier dx", Gemm::new(sc, d, v)),
        (
            "classifier dW",
            Gemm::new(v, d, sc).a_transposed().accumulating(),
        ),
        ("15m logits sc131", Gemm::new(131, v, 288).b_transposed()),
        ("15m logits sc128", Gemm::new(128, v, 288).b_transposed()),
        ("15m dx sc131", Gemm::new(131, 288, v)),
        ("15m dx sc128", Gemm::new(128, 288, v)),
        (
            "15m dW sc131",
            Gemm::new(v, 288, 131).a_transposed().accumulating(),
        ),
        (
            "15m dW sc128",
            Gemm::new(v, 288, 128).a_transposed().accumulating(),
        ),
        (
            "dW2 [D,H]",
            Gemm::new(d, hid, s).b_transposed().accumulating(),
        ),
        (
            "dW1 [H,D]",
            Gemm::new(hid, d, s).b_transposed().accumulating(),
        ),
        (
            "dWq [D,D]",
            Gemm::new(d, d, s).b_transposed().accumulating(),
        ),
        ("fwd W1·x", Gemm::new(hid, s, d)),
        ("fwd W2·h", Gemm::new(d, s, hid)),
        ("bwd W1ᵀ·dh", Gemm::new(d, s, hid).a_transposed()),
    ];
    let only = std::env::args().nth(2);
    println!(
        "{} threads, {repeats} repeats",
        rayon::current_num_threads()
    );
    for (name, g) in shapes {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let (lc, la, lb) = g.lens().unwrap();
        let a: Vec<f32> = (0..la).map(|i| ((i * 7919) % 1000) as f32 * 1e-3).collect();
        let b: Vec<f32> = (0..lb)
            .map(|i| ((i * 104729) % 1000) as f32 * 1e-3)
            .collect();
        let mut c = vec![0f32; lc];
        matmul(&mut c, &a, &b, g).unwrap();
        let mut rates: Vec<f64> = (0..repeats)
            .map(|_| {
                let t = Instant::now();
                matmul(&mut c, &a, &b, g).unwrap();
                2.0 * (g.m * g.n * g.k) as f64 / t.elapsed().as_secs_f64() / 1e9
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        println!(
            "{name:<20} {:>5}x{:>5}x{:>5}  {:6.1} GFLOP/s [{:.1}, {:.1}]",
            g.m,
            g.n,
            g.k,
            rates[repeats / 2],
            rates[0],
            rates[repeats - 1]
        );
    }
}
