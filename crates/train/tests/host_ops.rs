//! Host ops against plain f64 references written here (naive loops), on seeded random data,
//! and every backward also against central finite differences of its forward op.
//! Sizes include S not a multiple of 16, a single head, and GQA ratios 1 and 2.

use ane_train::host::{
    self, classifier_backward, classifier_forward, cross_entropy, embedding_backward,
    embedding_forward, gqa_reduce, gqa_tile, matmul, overlap_dw, residual_backward,
    residual_forward, rmsnorm_backward, rmsnorm_forward, rope_backward, rope_forward,
    swiglu_backward, swiglu_forward, DwGemm, Gemm, HostError, RopeTable, VocabCompaction,
};
use ane_train::model::kv_head_of;

// ---------------------------------------------------------------------------------------------
// Support: seeded data, llm.c-style comparison, finite differences.

/// SplitMix64: a seeded source of test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }

    fn below(&mut self, n: usize) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Checks `|got − want| <= atol + rtol·|want|` everywhere. On failure prints, llm.c style,
/// the tensor name, the first 5 pairs, the first mismatches with their `(c, s)` (row, column
/// for `cols` columns) and the max absolute and relative differences.
fn assert_close(name: &str, got: &[f32], want: &[f64], cols: usize, atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let cols = cols.max(1);
    let (mut max_abs, mut max_rel) = (0.0f64, 0.0f64);
    let mut bad = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        max_abs = max_abs.max(err);
        max_rel = max_rel.max(err / w.abs().max(1e-12));
        if err.is_nan() || err > atol + rtol * w.abs() {
            bad.push(i);
        }
    }
    if bad.is_empty() {
        return;
    }
    let mut msg = format!("{name}: {} of {} values NOT OK\n", bad.len(), got.len());
    for (i, (&g, &w)) in got.iter().zip(want).take(5).enumerate() {
        msg += &format!("  [{i}] got {g:+.6e} want {w:+.6e}\n");
    }
    for &i in bad.iter().take(10) {
        msg += &format!(
            "  NOT OK at {i} = (c {}, s {}): got {:+.6e} want {:+.6e}\n",
            i / cols,
            i % cols,
            got[i],
            want[i]
        );
    }
    msg += &format!("  max abs diff {max_abs:.3e}, max rel diff {max_rel:.3e}");
    panic!("{msg}");
}

/// Central differences `(f(x + h·e_i) − f(x − h·e_i)) / 2h` for every `i`.
fn fd_grad(x: &[f32], h: f32, f: impl Fn(&[f32]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            xp[i] = x[i] + h;
            let up = f(&xp);
            xp[i] = x[i] - h;
            let down = f(&xp);
            xp[i] = x[i];
            (up - down) / (2.0 * h as f64)
        })
        .collect()
}

/// `Σ g·y` in f64: the scalar whose gradient w.r.t. `y` is `g`.
fn dot(g: &[f32], y: &[f32]) -> f64 {
    g.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Adds `start` to each element of `delta`: what an accumulating op must produce.
fn plus(start: &[f32], delta: &[f64]) -> Vec<f64> {
    start
        .iter()
        .zip(delta)
        .map(|(&s, &d)| s as f64 + d)
        .collect()
}

/// Central-difference tolerance for f32 forward ops with h = 1e-2.
const FD_H: f32 = 1e-2;
const FD_ATOL: f64 = 2e-3;
const FD_RTOL: f64 = 1e-2;

/// (C, S) pairs: odd, single, and S not a multiple of 16.
const SIZES: [(usize, usize); 4] = [(1, 1), (7, 5), (12, 33), (16, 17)];

// ---------------------------------------------------------------------------------------------
// Embedding.

fn ref_embedding(tokens: &[u32], embed: &[f32], dim: usize) -> Vec<f64> {
    let s_len = tokens.len();
    let mut x = vec![0.0; dim * s_len];
    for s in 0..s_len {
        for d in 0..dim {
            x[d * s_len + s] = embed[tokens[s] as usize * dim + d] as f64;
        }
    }
    x
}

#[test]
fn embedding_forward_gathers_rows_channel_first() {
    let mut rng = Rng(1);
    for (dim, seq) in SIZES {
        let vocab = 11;
        let embed = rng.vec(vocab * dim);
        let mut tokens: Vec<u32> = (0..seq).map(|_| rng.below(vocab)).collect();
        tokens[0] = (vocab - 1) as u32;
        let mut x = vec![f32::NAN; dim * seq];
        embedding_forward(&mut x, &tokens, &embed, vocab, dim).unwrap();
        assert_close("x", &x, &ref_embedding(&tokens, &embed, dim), seq, 0.0, 0.0);
    }
}

#[test]
fn embedding_rejects_out_of_range_ids_and_bad_lengths() {
    let embed = vec![0.0; 4 * 3];
    let mut x = vec![0.0; 3 * 3];
    let e = embedding_forward(&mut x, &[0, 4, 1], &embed, 4, 3).unwrap_err();
    assert_eq!(
        e,
        HostError::TokenOutOfRange {
            what: "tokens",
            index: 1,
            token: 4,
            vocab: 4
        }
    );
    assert_eq!(
        e.to_string(),
        "tokens[1] = 4 is not a valid id (vocabulary size 4)"
    );
    let mut dembed = vec![0.0; 12];
    let e = embedding_backward(&mut dembed, &[0, 1, 9], &x, 4, 3).unwrap_err();
    assert!(matches!(e, HostError::TokenOutOfRange { token: 9, .. }));
    let e = embedding_forward(&mut x[..8], &[0, 1, 2], &embed, 4, 3).unwrap_err();
    assert_eq!(e.to_string(), "`x` has 8 elements, expected 9");
}

#[test]
fn embedding_backward_scatter_adds_and_matches_finite_differences() {
    let mut rng = Rng(2);
    for (dim, seq) in SIZES {
        let vocab = 6;
        let embed = rng.vec(vocab * dim);
        // Repeated ids: their gradients must sum.
        let tokens: Vec<u32> = (0..seq).map(|s| (s % 3) as u32 * 2).collect();
        let dx = rng.vec(dim * seq);
        let start = rng.vec(vocab * dim);
        let mut dembed = start.clone();
        embedding_backward(&mut dembed, &tokens, &dx, vocab, dim).unwrap();

        let mut want = vec![0.0f64; vocab * dim];
        for s in 0..seq {
            for d in 0..dim {
                want[tokens[s] as usize * dim + d] += dx[d * seq + s] as f64;
            }
        }
        assert_close("dembed", &dembed, &plus(&start, &want), dim, 1e-6, 1e-6);

        let loss = |e: &[f32]| {
            let mut x = vec![0.0; dim * seq];
            embedding_forward(&mut x, &tokens, e, vocab, dim).unwrap();
            dot(&dx, &x)
        };
        let mut fresh = vec![0.0; vocab * dim];
        embedding_backward(&mut fresh, &tokens, &dx, vocab, dim).unwrap();
        assert_close(
            "dembed fd",
            &fresh,
            &fd_grad(&embed, FD_H, loss),
            dim,
            FD_ATOL,
            FD_RTOL,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RMSNorm.

const EPS: f32 = 1e-5;

fn ref_rmsnorm(x: &[f32], w: &[f32], c_len: usize, s_len: usize) -> Vec<f64> {
    let mut y = vec![0.0; c_len * s_len];
    for s in 0..s_len {
        let mut ms = 0.0f64;
        for c in 0..c_len {
            ms += (x[c * s_len + s] as f64).powi(2);
        }
        let r = 1.0 / (ms / c_len as f64 + EPS as f64).sqrt();
        for c in 0..c_len {
            y[c * s_len + s] = x[c * s_len + s] as f64 * w[c] as f64 * r;
        }
    }
    y
}

/// dx and dw of `Σ dy·y` by the chain rule through the full Jacobian `∂y_c/∂x_k`.
fn ref_rmsnorm_bwd(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    c_len: usize,
    s_len: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; c_len * s_len];
    let mut dw = vec![0.0; c_len];
    for s in 0..s_len {
        let xs: Vec<f64> = (0..c_len).map(|c| x[c * s_len + s] as f64).collect();
        let ms = xs.iter().map(|v| v * v).sum::<f64>() / c_len as f64;
        let r = 1.0 / (ms + EPS as f64).sqrt();
        for c in 0..c_len {
            let g = dy[c * s_len + s] as f64;
            dw[c] += g * xs[c] * r;
            for k in 0..c_len {
                // y_c = w_c·x_c·r;  ∂r/∂x_k = −r³·x_k/C.
                let delta = if c == k { r } else { 0.0 };
                let jac = w[c] as f64 * (delta - xs[c] * r.powi(3) * xs[k] / c_len as f64);
                dx[k * s_len + s] += g * jac;
            }
        }
    }
    (dx, dw)
}

#[test]
fn rmsnorm_forward_matches_reference() {
    let mut rng = Rng(3);
    for (c, s) in SIZES {
        let x = rng.vec(c * s);
        let w = rng.vec(c);
        let mut y = vec![f32::NAN; c * s];
        rmsnorm_forward(&mut y, &x, &w, c, s, EPS).unwrap();
        assert_close("y", &y, &ref_rmsnorm(&x, &w, c, s), s, 1e-6, 1e-5);
    }
}

#[test]
fn rmsnorm_backward_matches_reference_and_finite_differences() {
    let mut rng = Rng(4);
    for (c, s) in SIZES {
        let x = rng.vec(c * s);
        let w = rng.vec(c);
        let dy = rng.vec(c * s);
        let (dx0, dw0) = (rng.vec(c * s), rng.vec(c));
        let (mut dx, mut dw) = (dx0.clone(), dw0.clone());
        rmsnorm_backward(&mut dx, &mut dw, &dy, &x, &w, c, s, EPS).unwrap();
        let (want_dx, want_dw) = ref_rmsnorm_bwd(&dy, &x, &w, c, s);
        assert_close("dx", &dx, &plus(&dx0, &want_dx), s, 1e-5, 1e-4);
        assert_close("dw", &dw, &plus(&dw0, &want_dw), 1, 1e-5, 1e-4);

        let (mut gx, mut gw) = (vec![0.0; c * s], vec![0.0; c]);
        rmsnorm_backward(&mut gx, &mut gw, &dy, &x, &w, c, s, EPS).unwrap();
        let fwd = |x: &[f32], w: &[f32]| {
            let mut y = vec![0.0; c * s];
            rmsnorm_forward(&mut y, x, w, c, s, EPS).unwrap();
            dot(&dy, &y)
        };
        let fd_x = fd_grad(&x, FD_H / 4.0, |xp| fwd(xp, &w));
        let fd_w = fd_grad(&w, FD_H, |wp| fwd(&x, wp));
        assert_close("dx fd", &gx, &fd_x, s, FD_ATOL * 5.0, FD_RTOL * 2.0);
        assert_close("dw fd", &gw, &fd_w, 1, FD_ATOL, FD_RTOL);
    }
}

// ---------------------------------------------------------------------------------------------
// Residual.

#[test]
fn residual_forward_backward_match_reference_and_finite_differences() {
    let mut rng = Rng(5);
    let alpha = 0.2041f32;
    for (c, s) in SIZES {
        let n = c * s;
        let (x, y) = (rng.vec(n), rng.vec(n));
        let mut out = vec![f32::NAN; n];
        residual_forward(&mut out, &x, &y, alpha).unwrap();
        let want: Vec<f64> = (0..n)
            .map(|i| x[i] as f64 + alpha as f64 * y[i] as f64)
            .collect();
        assert_close("out", &out, &want, s, 1e-6, 1e-6);

        let dout = rng.vec(n);
        let (dx0, dy0) = (rng.vec(n), rng.vec(n));
        let (mut dx, mut dy) = (dx0.clone(), dy0.clone());
        residual_backward(&mut dx, &mut dy, &dout, alpha).unwrap();
        let want_dy: Vec<f64> = dout.iter().map(|&g| alpha as f64 * g as f64).collect();
        assert_close("dx", &dx, &plus(&dx0, &to_f64(&dout)), s, 1e-6, 1e-6);
        assert_close("dy", &dy, &plus(&dy0, &want_dy), s, 1e-6, 1e-6);

        let (mut gx, mut gy) = (vec![0.0; n], vec![0.0; n]);
        residual_backward(&mut gx, &mut gy, &dout, alpha).unwrap();
        let fwd = |x: &[f32], y: &[f32]| {
            let mut o = vec![0.0; n];
            residual_forward(&mut o, x, y, alpha).unwrap();
            dot(&dout, &o)
        };
        assert_close(
            "dx fd",
            &gx,
            &fd_grad(&x, FD_H, |p| fwd(p, &y)),
            s,
            FD_ATOL,
            FD_RTOL,
        );
        assert_close(
            "dy fd",
            &gy,
            &fd_grad(&y, FD_H, |p| fwd(&x, p)),
            s,
            FD_ATOL,
            FD_RTOL,
        );
    }
    let e = residual_forward(&mut [0.0; 3], &[0.0; 3], &[0.0; 2], 1.0).unwrap_err();
    assert_eq!(e.to_string(), "`y` has 2 elements, expected 3");
}

// ---------------------------------------------------------------------------------------------
// SwiGLU.

fn ref_silu(h: f64) -> f64 {
    h / (1.0 + (-h).exp())
}

#[test]
fn swiglu_forward_backward_match_reference_and_finite_differences() {
    let mut rng = Rng(6);
    for (c, s) in SIZES {
        let n = c * s;
        let h1: Vec<f32> = rng.vec(n).iter().map(|v| 4.0 * v).collect();
        let h3 = rng.vec(n);
        let mut gate = vec![f32::NAN; n];
        swiglu_forward(&mut gate, &h1, &h3).unwrap();
        let want: Vec<f64> = (0..n)
            .map(|i| ref_silu(h1[i] as f64) * h3[i] as f64)
            .collect();
        assert_close("gate", &gate, &want, s, 1e-6, 1e-5);

        let dgate = rng.vec(n);
        let (d10, d30) = (rng.vec(n), rng.vec(n));
        let (mut dh1, mut dh3) = (d10.clone(), d30.clone());
        swiglu_backward(&mut dh1, &mut dh3, &dgate, &h1, &h3).unwrap();
        // d silu(h)/dh = σ(h) + h·σ(h)(1 − σ(h)), derived here directly from the quotient form.
        let mut want1 = vec![0.0; n];
        let mut want3 = vec![0.0; n];
        for i in 0..n {
            let h = h1[i] as f64;
            let e = (-h).exp();
            let dsilu = 1.0 / (1.0 + e) + h * e / (1.0 + e).powi(2);
            want1[i] = dgate[i] as f64 * h3[i] as f64 * dsilu;
            want3[i] = dgate[i] as f64 * ref_silu(h);
        }
        assert_close("dh1", &dh1, &plus(&d10, &want1), s, 1e-6, 1e-5);
        assert_close("dh3", &dh3, &plus(&d30, &want3), s, 1e-6, 1e-5);

        let (mut g1, mut g3) = (vec![0.0; n], vec![0.0; n]);
        swiglu_backward(&mut g1, &mut g3, &dgate, &h1, &h3).unwrap();
        let fwd = |a: &[f32], b: &[f32]| {
            let mut g = vec![0.0; n];
            swiglu_forward(&mut g, a, b).unwrap();
            dot(&dgate, &g)
        };
        assert_close(
            "dh1 fd",
            &g1,
            &fd_grad(&h1, FD_H, |p| fwd(p, &h3)),
            s,
            FD_ATOL,
            FD_RTOL,
        );
        assert_close(
            "dh3 fd",
            &g3,
            &fd_grad(&h3, FD_H, |p| fwd(&h1, p)),
            s,
            FD_ATOL,
            FD_RTOL,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RoPE.

/// Rotates pair `(2i, 2i+1)` of each head at position `p` by `p·θ^(−2i/HD)`.
fn ref_rope(x: &[f32], n_heads: usize, hd: usize, s_len: usize, theta: f64) -> Vec<f64> {
    let mut y = vec![0.0; n_heads * hd * s_len];
    for h in 0..n_heads {
        for i in 0..hd / 2 {
            let freq = 1.0 / theta.powf((2 * i) as f64 / hd as f64);
            let (c0, c1) = (h * hd + 2 * i, h * hd + 2 * i + 1);
            for p in 0..s_len {
                let (sin, cos) = (p as f64 * freq).sin_cos();
                let (a, b) = (x[c0 * s_len + p] as f64, x[c1 * s_len + p] as f64);
                y[c0 * s_len + p] = a * cos - b * sin;
                y[c1 * s_len + p] = a * sin + b * cos;
            }
        }
    }
    y
}

/// (heads, head dim, seq, θ).
const ROPE_CASES: [(usize, usize, usize, f32); 4] = [
    (1, 2, 1, 10_000.0),
    (1, 8, 33, 10_000.0),
    (3, 6, 17, 500.0),
    (2, 16, 40, 1e6),
];

#[test]
fn rope_forward_matches_reference() {
    let mut rng = Rng(7);
    for (nh, hd, s, theta) in ROPE_CASES {
        let table = RopeTable::new(hd, s + 3, theta).unwrap();
        let x = rng.vec(nh * hd * s);
        let mut y = vec![f32::NAN; x.len()];
        rope_forward(&mut y, &x, &table, nh, hd, s).unwrap();
        assert_close(
            "rope y",
            &y,
            &ref_rope(&x, nh, hd, s, theta as f64),
            s,
            1e-5,
            1e-4,
        );
    }
}

#[test]
fn rope_backward_matches_reference_and_finite_differences() {
    let mut rng = Rng(8);
    for (nh, hd, s, theta) in ROPE_CASES {
        let table = RopeTable::new(hd, s, theta).unwrap();
        let n = nh * hd * s;
        let (x, dy, dx0) = (rng.vec(n), rng.vec(n), rng.vec(n));
        let mut dx = dx0.clone();
        rope_backward(&mut dx, &dy, &table, nh, hd, s).unwrap();
        // The rotation is orthogonal: the backward is the rotation by the negated angle,
        // i.e. the forward with every sin negated = transpose. Build Rᵀ·dy from R directly.
        let mut want = vec![0.0; n];
        for j in 0..n {
            let mut e = vec![0.0f32; n];
            e[j] = 1.0;
            let col = ref_rope(&e, nh, hd, s, theta as f64); // column j of R
            want[j] = col.iter().zip(&dy).map(|(&r, &g)| r * g as f64).sum();
        }
        assert_close("rope dx", &dx, &plus(&dx0, &want), s, 1e-5, 1e-4);

        let mut g = vec![0.0; n];
        rope_backward(&mut g, &dy, &table, nh, hd, s).unwrap();
        let fwd = |p: &[f32]| {
            let mut y = vec![0.0; n];
            rope_forward(&mut y, p, &table, nh, hd, s).unwrap();
            dot(&dy, &y)
        };
        assert_close(
            "rope dx fd",
            &g,
            &fd_grad(&x, FD_H, fwd),
            s,
            FD_ATOL,
            FD_RTOL,
        );

        // Backward undoes forward.
        let mut y = vec![0.0; n];
        rope_forward(&mut y, &x, &table, nh, hd, s).unwrap();
        let mut back = vec![0.0; n];
        rope_backward(&mut back, &y, &table, nh, hd, s).unwrap();
        assert_close("rope inverse", &back, &to_f64(&x), s, 1e-5, 1e-5);
    }
}

#[test]
fn rope_rejects_odd_head_dim_and_short_tables() {
    assert_eq!(
        RopeTable::new(7, 4, 1e4).unwrap_err(),
        HostError::HeadDimOdd { head_dim: 7 }
    );
    let table = RopeTable::new(8, 16, 1e4).unwrap();
    assert_eq!(
        (table.head_dim(), table.seq(), table.cos().len()),
        (8, 16, 64)
    );
    let mut y = vec![0.0; 8 * 32];
    let e = rope_forward(&mut y, &vec![0.0; 8 * 32], &table, 1, 8, 32).unwrap_err();
    assert_eq!(
        e.to_string(),
        "RoPE table is for head dim 8 and 16 positions, op needs 8 and 32"
    );
    let e = rope_forward(&mut y, &vec![0.0; 8 * 32], &table, 2, 4, 32).unwrap_err();
    assert!(matches!(e, HostError::RopeTable { head_dim: 4, .. }));
}

// ---------------------------------------------------------------------------------------------
// GQA.

#[test]
fn kv_head_mapping_is_hugging_face_repeat_kv() {
    // 8 query heads on 4 KV heads: consecutive pairs share a KV head.
    let map: Vec<usize> = (0..8).map(|h| kv_head_of(h, 8, 4)).collect();
    assert_eq!(map, [0, 0, 1, 1, 2, 2, 3, 3]);
    // Upstream's forward used h mod NKV = [0,1,2,3,0,1,2,3]: not this.
    assert_ne!(map, (0..8).map(|h| h % 4).collect::<Vec<_>>());
    // Qwen3-0.6B: 16 heads on 8.
    assert_eq!(kv_head_of(1, 16, 8), 0);
    assert_eq!(kv_head_of(15, 16, 8), 7);
    // Ratio 1 is the identity; a single KV head serves all.
    assert!((0..12).all(|h| kv_head_of(h, 12, 12) == h));
    assert!((0..6).all(|h| kv_head_of(h, 6, 1) == 0));
    assert_eq!(kv_head_of(5, 8, 2), 1);
    assert_eq!(host::gqa::kv_head_of(5, 8, 2), kv_head_of(5, 8, 2));
}

/// (NH, NKV, HD, S): single head, ratio 1, ratio 2, ratio 4.
const GQA_CASES: [(usize, usize, usize, usize); 5] = [
    (1, 1, 2, 1),
    (4, 4, 3, 5),
    (4, 2, 2, 17),
    (8, 4, 4, 33),
    (8, 2, 2, 3),
];

#[test]
fn gqa_tile_matches_reference() {
    let mut rng = Rng(9);
    for (nh, nkv, hd, s) in GQA_CASES {
        let kv = rng.vec(nkv * hd * s);
        let mut full = vec![f32::NAN; nh * hd * s];
        gqa_tile(&mut full, &kv, nh, nkv, hd, s).unwrap();
        let ratio = nh / nkv;
        let mut want = vec![0.0; nh * hd * s];
        for h in 0..nh {
            for j in 0..hd {
                for p in 0..s {
                    want[(h * hd + j) * s + p] = kv[((h / ratio) * hd + j) * s + p] as f64;
                }
            }
        }
        assert_close("tiled", &full, &want, s, 0.0, 0.0);
    }
}

#[test]
fn gqa_reduce_is_the_adjoint_of_tile() {
    let mut rng = Rng(10);
    for (nh, nkv, hd, s) in GQA_CASES {
        let a = rng.vec(nkv * hd * s);
        let b = rng.vec(nh * hd * s);
        let mut tiled = vec![0.0; b.len()];
        gqa_tile(&mut tiled, &a, nh, nkv, hd, s).unwrap();
        let start = rng.vec(a.len());
        let mut reduced = start.clone();
        gqa_reduce(&mut reduced, &b, nh, nkv, hd, s).unwrap();
        let delta: Vec<f32> = reduced.iter().zip(&start).map(|(r, s)| r - s).collect();
        // <tile(a), b> = <a, reduce(b)>.
        let (lhs, rhs) = (dot(&tiled, &b), dot(&a, &delta));
        assert!(
            (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
            "{lhs} vs {rhs}"
        );

        // And reduce against its own f64 reference (sum over the group).
        let ratio = nh / nkv;
        let mut want = vec![0.0; a.len()];
        for h in 0..nh {
            for j in 0..hd {
                for p in 0..s {
                    want[((h / ratio) * hd + j) * s + p] += b[(h * hd + j) * s + p] as f64;
                }
            }
        }
        assert_close("reduced", &reduced, &plus(&start, &want), s, 1e-6, 1e-6);

        // Finite differences of <tile(a), b> w.r.t. a.
        let mut g = vec![0.0; a.len()];
        gqa_reduce(&mut g, &b, nh, nkv, hd, s).unwrap();
        let fwd = |p: &[f32]| {
            let mut t = vec![0.0; b.len()];
            gqa_tile(&mut t, p, nh, nkv, hd, s).unwrap();
            dot(&b, &t)
        };
        assert_close(
            "reduce fd",
            &g,
            &fd_grad(&a, FD_H, fwd),
            s,
            FD_ATOL,
            FD_RTOL,
        );
    }
}

#[test]
fn gqa_rejects_uneven_heads() {
    let mut full = vec![0.0; 3 * 2];
    let e = gqa_tile(&mut full, &[0.0; 4], 3, 2, 2, 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "3 query heads cannot share 2 KV heads evenly"
    );
    let e = gqa_reduce(&mut [0.0; 4], &full, 3, 0, 2, 1).unwrap_err();
    assert_eq!(
        e,
        HostError::Heads {
            n_heads: 3,
            n_kv_heads: 0
        }
    );
}

// ---------------------------------------------------------------------------------------------
// GEMM.

/// `C = op(A)·op(B)` in f64 with explicit indexing of the stored layouts.
fn ref_matmul(a: &[f32], b: &[f32], g: Gemm) -> Vec<f64> {
    let mut c = vec![0.0; g.m * g.n];
    for i in 0..g.m {
        for j in 0..g.n {
            let mut acc = 0.0f64;
            for p in 0..g.k {
                let av = if g.trans_a {
                    a[p * g.m + i]
                } else {
                    a[i * g.k + p]
                };
                let bv = if g.trans_b {
                    b[j * g.k + p]
                } else {
                    b[p * g.n + j]
                };
                acc += av as f64 * bv as f64;
            }
            c[i * g.n + j] = acc;
        }
    }
    c
}

fn gemm_cases() -> Vec<Gemm> {
    let mut out = Vec::new();
    for (m, n, k) in [(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 48, 80), (1, 40, 3)] {
        for flags in 0..8 {
            let mut g = Gemm::new(m, n, k);
            if flags & 1 != 0 {
                g = g.a_transposed();
            }
            if flags & 2 != 0 {
                g = g.b_transposed();
            }
            if flags & 4 != 0 {
                g = g.accumulating();
            }
            out.push(g);
        }
    }
    out
}

#[test]
fn matmul_matches_reference_for_every_transpose_and_accumulate() {
    let mut rng = Rng(11);
    for g in gemm_cases() {
        let a = rng.vec(g.m * g.k);
        let b = rng.vec(g.k * g.n);
        let start = rng.vec(g.m * g.n);
        let mut c = start.clone();
        matmul(&mut c, &a, &b, g).unwrap();
        let prod = ref_matmul(&a, &b, g);
        let want = if g.accumulate {
            plus(&start, &prod)
        } else {
            prod
        };
        assert_close(&format!("{g:?}"), &c, &want, g.n, 1e-5, 1e-5);
    }
}

#[test]
fn matmul_zero_dims_and_length_errors() {
    // k = 0: C = 0, or unchanged when accumulating.
    let mut c = vec![1.0; 6];
    matmul(&mut c, &[], &[], Gemm::new(2, 3, 0).accumulating()).unwrap();
    assert_eq!(c, [1.0; 6]);
    matmul(&mut c, &[], &[], Gemm::new(2, 3, 0)).unwrap();
    assert_eq!(c, [0.0; 6]);
    matmul(&mut [], &[0.0; 4], &[], Gemm::new(2, 0, 2)).unwrap();

    let e = matmul(&mut [0.0; 6], &[0.0; 5], &[0.0; 12], Gemm::new(2, 3, 4)).unwrap_err();
    assert_eq!(
        e,
        HostError::Len {
            what: "a",
            got: 5,
            expected: 8
        }
    );
    let e = matmul(&mut [0.0; 6], &[0.0; 8], &[0.0; 11], Gemm::new(2, 3, 4)).unwrap_err();
    assert_eq!(e.to_string(), "`b` has 11 elements, expected 12");
    let e = matmul(&mut [0.0; 5], &[0.0; 8], &[0.0; 12], Gemm::new(2, 3, 4)).unwrap_err();
    assert_eq!(e.to_string(), "`c` has 5 elements, expected 6");
    let e = matmul(&mut [], &[], &[], Gemm::new(usize::MAX, 2, 0)).unwrap_err();
    assert_eq!(e, HostError::Overflow { what: "c" });
}

#[test]
fn overlap_dw_runs_the_gemms_and_the_work() {
    let mut rng = Rng(12);
    // dW1 += dh·xᵀ, dW2 += dy·hᵀ, while "device work" computes something else.
    let (d, hid, s) = (12, 20, 17);
    let (dh, x, dy, h) = (
        rng.vec(hid * s),
        rng.vec(d * s),
        rng.vec(d * s),
        rng.vec(hid * s),
    );
    let (w1_0, w2_0) = (rng.vec(hid * d), rng.vec(d * hid));
    let (mut dw1, mut dw2) = (w1_0.clone(), w2_0.clone());
    let g1 = Gemm::new(hid, d, s).b_transposed().accumulating();
    let g2 = Gemm::new(d, hid, s).b_transposed().accumulating();
    let jobs = [
        DwGemm {
            c: &mut dw1,
            a: &dh,
            b: &x,
            gemm: g1,
        },
        DwGemm {
            c: &mut dw2,
            a: &dy,
            b: &h,
            gemm: g2,
        },
    ];
    let work = overlap_dw(jobs, || (0..1000u64).sum::<u64>()).unwrap();
    assert_eq!(work, 499_500);
    assert_close(
        "dw1",
        &dw1,
        &plus(&w1_0, &ref_matmul(&dh, &x, g1)),
        d,
        1e-5,
        1e-5,
    );
    assert_close(
        "dw2",
        &dw2,
        &plus(&w2_0, &ref_matmul(&dy, &h, g2)),
        hid,
        1e-5,
        1e-5,
    );

    // A bad job is reported before anything runs.
    let ran = std::sync::atomic::AtomicBool::new(false);
    let mut c = vec![0.0; 4];
    let bad = [DwGemm {
        c: &mut c,
        a: &[0.0; 3],
        b: &[0.0; 4],
        gemm: Gemm::new(2, 2, 2),
    }];
    let e = overlap_dw(bad, || ran.store(true, std::sync::atomic::Ordering::SeqCst)).unwrap_err();
    assert!(matches!(e, HostError::Len { what: "a", .. }));
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
}

// ---------------------------------------------------------------------------------------------
// Classifier and cross-entropy.

/// Mean CE and `(softmax − onehot)/S · dloss` in f64, column by column.
fn ref_cross_entropy(logits: &[f32], targets: &[u32], v_len: usize, dloss: f64) -> (f64, Vec<f64>) {
    let s_len = targets.len();
    let mut d = vec![0.0; v_len * s_len];
    let mut loss = 0.0;
    for s in 0..s_len {
        let col: Vec<f64> = (0..v_len).map(|v| logits[v * s_len + s] as f64).collect();
        let m = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = col.iter().map(|l| (l - m).exp()).sum();
        let t = targets[s] as usize;
        loss += -((col[t] - m).exp() / z).ln();
        for v in 0..v_len {
            let p = (col[v] - m).exp() / z;
            let onehot = if v == t { 1.0 } else { 0.0 };
            d[v * s_len + s] = dloss * (p - onehot) / s_len as f64;
        }
    }
    (loss / s_len as f64, d)
}

/// (V, D, S).
const CE_CASES: [(usize, usize, usize); 4] = [(2, 1, 1), (13, 7, 5), (37, 12, 17), (64, 8, 33)];

#[test]
fn cross_entropy_matches_reference() {
    let mut rng = Rng(13);
    for (v, _, s) in CE_CASES {
        let logits: Vec<f32> = rng.vec(v * s).iter().map(|x| 8.0 * x).collect();
        let targets: Vec<u32> = (0..s).map(|_| rng.below(v)).collect();
        for dloss in [1.0f32, 256.0] {
            let mut d = logits.clone();
            let loss = cross_entropy(&mut d, &targets, v, dloss).unwrap();
            let (want_loss, want_d) = ref_cross_entropy(&logits, &targets, v, dloss as f64);
            assert!(
                (loss as f64 - want_loss).abs() < 1e-5 * (1.0 + want_loss),
                "{loss} vs {want_loss}"
            );
            assert_close("dlogits", &d, &want_d, s, 1e-6 * dloss as f64, 1e-4);
        }
    }
    // Huge logits do not overflow (max subtraction).
    let mut l = vec![1000.0, 0.0, -1000.0, 0.0];
    let loss = cross_entropy(&mut l, &[0, 1], 2, 1.0).unwrap();
    assert!(
        (loss as f64 - (0.0 + std::f64::consts::LN_2) / 2.0).abs() < 1e-6,
        "{loss}"
    );
}

#[test]
fn cross_entropy_rejects_bad_targets() {
    let mut l = vec![0.0; 6];
    let e = cross_entropy(&mut l, &[0, 3], 3, 1.0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "targets[1] = 3 is not a valid id (vocabulary size 3)"
    );
    assert_eq!(
        cross_entropy(&mut [], &[], 3, 1.0).unwrap_err(),
        HostError::Empty { what: "targets" }
    );
    let e = cross_entropy(&mut l, &[0, 1, 2], 3, 1.0).unwrap_err();
    assert_eq!(e.to_string(), "`logits` has 6 elements, expected 9");
}

/// The whole head: `loss(E, x) = CE(E·x)`.
fn head_loss(e: &[f32], x: &[f32], targets: &[u32], v: usize, d: usize) -> f64 {
    let s = targets.len();
    let mut logits = vec![0.0; v * s];
    classifier_forward(&mut logits, e, x, v, d, s).unwrap();
    cross_entropy(&mut logits, targets, v, 1.0).unwrap() as f64
}

#[test]
fn classifier_backward_matches_reference_and_finite_differences() {
    let mut rng = Rng(14);
    for (v, d, s) in CE_CASES {
        let e = rng.vec(v * d);
        let x = rng.vec(d * s);
        let targets: Vec<u32> = (0..s).map(|_| rng.below(v)).collect();

        let mut dlogits = vec![0.0; v * s];
        classifier_forward(&mut dlogits, &e, &x, v, d, s).unwrap();
        let want_logits = ref_matmul(&e, &x, Gemm::new(v, s, d));
        assert_close("logits", &dlogits, &want_logits, s, 1e-5, 1e-5);
        cross_entropy(&mut dlogits, &targets, v, 1.0).unwrap();

        let (dx0, de0) = (rng.vec(d * s), rng.vec(v * d));
        let (mut dx, mut de) = (dx0.clone(), de0.clone());
        classifier_backward(&mut dx, &mut de, &dlogits, &e, &x, v, d, s).unwrap();
        // dx[d, s] = Σ_v E[v, d]·dl[v, s];  dE[v, d] = Σ_s dl[v, s]·x[d, s].
        let mut want_dx = vec![0.0; d * s];
        let mut want_de = vec![0.0; v * d];
        for vi in 0..v {
            for di in 0..d {
                for si in 0..s {
                    let g = dlogits[vi * s + si] as f64;
                    want_dx[di * s + si] += e[vi * d + di] as f64 * g;
                    want_de[vi * d + di] += g * x[di * s + si] as f64;
                }
            }
        }
        assert_close("dx", &dx, &plus(&dx0, &want_dx), s, 1e-6, 1e-4);
        assert_close("dE", &de, &plus(&de0, &want_de), d, 1e-6, 1e-4);

        let (mut gx, mut ge) = (vec![0.0; d * s], vec![0.0; v * d]);
        classifier_backward(&mut gx, &mut ge, &dlogits, &e, &x, v, d, s).unwrap();
        let fd_x = fd_grad(&x, FD_H, |p| head_loss(&e, p, &targets, v, d));
        let fd_e = fd_grad(&e, FD_H, |p| head_loss(p, &x, &targets, v, d));
        assert_close("dx fd", &gx, &fd_x, s, FD_ATOL, FD_RTOL);
        assert_close("dE fd", &ge, &fd_e, d, FD_ATOL, FD_RTOL);
    }
}

// ---------------------------------------------------------------------------------------------
// Vocabulary compaction.

#[test]
fn vocab_compaction_maps_and_reports() {
    let tokens = [7u32, 3, 7, 9, 0, 3];
    let vc = VocabCompaction::from_tokens(&tokens, 12).unwrap();
    assert_eq!(vc.active_ids(), &[0, 3, 7, 9]);
    assert_eq!((vc.full_vocab(), vc.compact_vocab()), (12, 4));
    assert_eq!(vc.to_compact(7), Some(2));
    assert_eq!(vc.to_compact(8), None);
    assert_eq!(vc.to_compact(100), None);
    assert_eq!(vc.to_full(3), Some(9));
    assert_eq!(vc.to_full(4), None);
    let r = vc.report();
    assert_eq!((r.full_vocab, r.compact_vocab), (12, 4));
    assert_eq!(
        r.to_string(),
        "vocabulary compaction: 12 -> 4 active ids; softmax and loss run over the active ids \
         only (not comparable to a full-vocabulary loss)"
    );
    let mut out = [0u32; 3];
    vc.map_targets(&mut out, &[9, 0, 3]).unwrap();
    assert_eq!(out, [3, 0, 1]);
    assert_eq!(
        vc.map_targets(&mut out, &[9, 5, 3]).unwrap_err(),
        HostError::NotInCompaction { token: 5 }
    );
    assert!(matches!(
        VocabCompaction::from_tokens(&[1, 12], 12).unwrap_err(),
        HostError::TokenOutOfRange {
            index: 1,
            token: 12,
            vocab: 12,
            ..
        }
    ));
}

#[test]
fn compacted_head_is_the_full_head_restricted_to_active_rows() {
    let mut rng = Rng(15);
    let (v, d, s) = (40, 6, 19);
    let stream: Vec<u32> = (0..60).map(|_| rng.below(v) / 3 * 3).collect(); // ids ≡ 0 mod 3
    let vc = VocabCompaction::from_tokens(&stream, v).unwrap();
    let cv = vc.compact_vocab();
    let embed = rng.vec(v * d);
    let x = rng.vec(d * s);
    let targets: Vec<u32> = (0..s).map(|i| stream[i]).collect();

    let mut cembed = vec![0.0; cv * d];
    vc.gather_rows(&mut cembed, &embed, d).unwrap();
    let mut ctargets = vec![0; s];
    vc.map_targets(&mut ctargets, &targets).unwrap();
    let mut dl = vec![0.0; cv * s];
    classifier_forward(&mut dl, &cembed, &x, cv, d, s).unwrap();
    let logits_c = dl.clone();
    let loss = cross_entropy(&mut dl, &ctargets, cv, 1.0).unwrap();

    // Reference: full logits, keep the active rows, CE over them with compact targets.
    let full = ref_matmul(&embed, &x, Gemm::new(v, s, d));
    let mut active = Vec::new();
    for &id in vc.active_ids() {
        active.extend(full[id as usize * s..][..s].iter().map(|&l| l as f32));
    }
    assert_close("compact logits", &logits_c, &to_f64(&active), s, 1e-5, 1e-5);
    let (want_loss, want_dl) = ref_cross_entropy(&active, &ctargets, cv, 1.0);
    assert!(
        (loss as f64 - want_loss).abs() < 1e-5,
        "{loss} vs {want_loss}"
    );
    assert_close("compact dlogits", &dl, &want_dl, s, 1e-6, 1e-4);

    // The gradient lands on the active rows of the full embedding only.
    let mut dx = vec![0.0; d * s];
    let mut dcembed = vec![0.0; cv * d];
    classifier_backward(&mut dx, &mut dcembed, &dl, &cembed, &x, cv, d, s).unwrap();
    let start = rng.vec(v * d);
    let mut dembed = start.clone();
    vc.scatter_add_rows(&mut dembed, &dcembed, d).unwrap();
    for id in 0..v {
        for k in 0..d {
            let got = dembed[id * d + k] - start[id * d + k];
            let want = vc
                .to_compact(id as u32)
                .map_or(0.0, |c| dcembed[c as usize * d + k]);
            assert!((got - want).abs() < 1e-6, "row {id}: {got} vs {want}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Arbitrary (often inconsistent) sizes: every op returns Ok or a HostError, never panics.

mod no_panic {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn ops_never_panic(
            c in 0usize..6, s in 0usize..6, k in 0usize..6, heads in 0usize..4,
            kv in 0usize..4, lens in proptest::collection::vec(0usize..40, 6),
            tokens in proptest::collection::vec(0u32..8, 0..6), trans in 0u8..8,
        ) {
            let buf = |i: usize| vec![0.5f32; lens[i]];
            let (mut o0, mut o1) = (buf(0), buf(1));
            let _ = rmsnorm_forward(&mut o0, &buf(2), &buf(3), c, s, EPS);
            let _ = rmsnorm_backward(&mut o0, &mut o1, &buf(2), &buf(3), &buf(4), c, s, EPS);
            let _ = embedding_forward(&mut o0, &tokens, &buf(2), k, c);
            let _ = embedding_backward(&mut o0, &tokens, &buf(2), k, c);
            let _ = gqa_tile(&mut o0, &buf(2), heads, kv, c, s);
            let _ = gqa_reduce(&mut o0, &buf(2), heads, kv, c, s);
            if let Ok(table) = RopeTable::new(c, s, 1e4) {
                let _ = rope_forward(&mut o0, &buf(2), &table, heads, c, s);
                let _ = rope_backward(&mut o0, &buf(2), &table, heads, c, k);
            }
            let _ = cross_entropy(&mut o0, &tokens, k, 1.0);
            let _ = classifier_backward(&mut o0, &mut o1, &buf(2), &buf(3), &buf(4), k, c, s);
            let mut g = Gemm::new(c, s, k);
            g.trans_a = trans & 1 != 0;
            g.trans_b = trans & 2 != 0;
            g.accumulate = trans & 4 != 0;
            let _ = matmul(&mut o0, &buf(2), &buf(3), g);
            let _ = swiglu_backward(&mut o0, &mut o1, &buf(2), &buf(3), &buf(4));
            let _ = residual_backward(&mut o0, &mut o1, &buf(2), 0.5);
            if let Ok(vc) = VocabCompaction::from_tokens(&tokens, k) {
                let _ = vc.gather_rows(&mut o0, &buf(2), c);
                let _ = vc.scatter_add_rows(&mut o0, &buf(2), c);
            }
        }

        #[test]
        fn matmul_matches_reference_on_random_shapes(
            m in 1usize..20, n in 1usize..20, k in 1usize..20, trans in 0u8..8, seed in 0u64..1000,
        ) {
            let mut rng = Rng(seed);
            let mut g = Gemm::new(m, n, k);
            g.trans_a = trans & 1 != 0;
            g.trans_b = trans & 2 != 0;
            g.accumulate = trans & 4 != 0;
            let (a, b, start) = (rng.vec(m * k), rng.vec(k * n), rng.vec(m * n));
            let mut c = start.clone();
            matmul(&mut c, &a, &b, g).unwrap();
            let prod = ref_matmul(&a, &b, g);
            let want = if g.accumulate { plus(&start, &prod) } else { prod };
            assert_close("random matmul", &c, &want, n, 1e-5, 1e-5);
        }
    }
}
