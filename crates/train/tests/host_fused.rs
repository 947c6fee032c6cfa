//! The fused host ops of the `cpu` kernel set — causal attention and the chunked classifier +
//! cross-entropy — against plain f64 references written here, and their backward passes
//! against central finite differences of those references.

use ane_train::host::{
    self, attention_backward, attention_forward, classifier_loss, AttentionDims,
    AttentionWorkspace, LossGrads, LossWorkspace,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// f64 causal attention: `out [NH·HD, B·S]` for `q [NH·HD, B·S]`, `k, v [NKV·HD, B·S]`,
/// query head `h` reading KV head `h / (NH/NKV)`, each window of `S` columns on its own.
fn ref_attention(q: &[f64], k: &[f64], v: &[f64], d: AttentionDims) -> Vec<f64> {
    let (nh, hd, s) = (d.n_heads, d.head_dim, d.seq);
    let st = s * d.windows;
    let g = nh / d.n_kv_heads;
    let mut out = vec![0.0; nh * hd * st];
    for w in 0..d.windows {
        let at = |ch: usize, t: usize| ch * st + w * s + t;
        for h in 0..nh {
            let kv = h / g;
            for i in 0..s {
                let sc: Vec<f64> = (0..=i)
                    .map(|j| {
                        (0..hd)
                            .map(|c| q[at(h * hd + c, i)] * k[at(kv * hd + c, j)])
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = sc.iter().map(|x| (x - m).exp()).sum();
                for c in 0..hd {
                    out[at(h * hd + c, i)] = (0..=i)
                        .map(|j| (sc[j] - m).exp() / z * v[at(kv * hd + c, j)])
                        .sum();
                }
            }
        }
    }
    out
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn close(got: f32, want: f64, tol: f64) -> bool {
    (got as f64 - want).abs() <= tol * (1.0 + want.abs())
}

const LAYOUTS: [AttentionDims; 5] = [
    AttentionDims {
        n_heads: 2,
        n_kv_heads: 2,
        head_dim: 8,
        seq: 37,
        windows: 1,
    },
    AttentionDims {
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 6,
        seq: 19,
        windows: 2,
    },
    AttentionDims {
        n_heads: 3,
        n_kv_heads: 1,
        head_dim: 4,
        seq: 5,
        windows: 3,
    },
    // Head dims from 32 run on GEMM tiles of 64 queries: a partial last tile, GQA, windows.
    AttentionDims {
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 32,
        seq: 70,
        windows: 2,
    },
    AttentionDims {
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 64,
        seq: 130,
        windows: 1,
    },
];

#[test]
fn attention_forward_matches_f64_reference_with_gqa() {
    let mut rng = Rng(0x9e37_79b9);
    for d in LAYOUTS {
        let (qd, kvd, s) = (
            d.n_heads * d.head_dim,
            d.n_kv_heads * d.head_dim,
            d.columns(),
        );
        let (q, k, v) = (rng.vec(qd * s), rng.vec(kvd * s), rng.vec(kvd * s));
        let (mut out, mut lse) = (vec![f32::NAN; qd * s], vec![f32::NAN; d.n_heads * s]);
        let mut ws = AttentionWorkspace::default();
        attention_forward(&mut out, &mut lse, (&q, &k, &v), d, &mut ws).unwrap();
        let want = ref_attention(&f64s(&q), &f64s(&k), &f64s(&v), d);
        for (i, (&g, &w)) in out.iter().zip(&want).enumerate() {
            assert!(close(g, w, 1e-5), "{d:?} out[{i}] {g} vs {w}");
        }
        // Row 0 attends to itself only: lse = its one score.
        let s00: f32 =
            (0..d.head_dim).map(|c| q[c * s] * k[c * s]).sum::<f32>() / (d.head_dim as f32).sqrt();
        assert!((lse[0] - s00).abs() < 1e-5);
    }
}

/// The loss `Σ w ⊙ out` of the reference attention, for finite differences.
fn attention_objective(q: &[f64], k: &[f64], v: &[f64], w: &[f64], d: AttentionDims) -> f64 {
    ref_attention(q, k, v, d)
        .iter()
        .zip(w)
        .map(|(a, b)| a * b)
        .sum()
}

#[test]
fn attention_backward_matches_finite_differences_and_accumulates() {
    let mut rng = Rng(0x1234_5678);
    for d in LAYOUTS {
        let (qd, kvd, s) = (
            d.n_heads * d.head_dim,
            d.n_kv_heads * d.head_dim,
            d.columns(),
        );
        let (q, k, v) = (rng.vec(qd * s), rng.vec(kvd * s), rng.vec(kvd * s));
        let dout = rng.vec(qd * s);
        let (mut out, mut lse) = (vec![0.0; qd * s], vec![0.0; d.n_heads * s]);
        let mut ws = AttentionWorkspace::default();
        attention_forward(&mut out, &mut lse, (&q, &k, &v), d, &mut ws).unwrap();
        // Start from 1.0 everywhere: the op must add, not overwrite.
        let (mut dq, mut dk, mut dv) = (vec![1.0; qd * s], vec![1.0; kvd * s], vec![1.0; kvd * s]);
        attention_backward(
            (&mut dq, &mut dk, &mut dv),
            &dout,
            (&q, &k, &v),
            &out,
            &lse,
            d,
            &mut ws,
        )
        .unwrap();
        let (q64, k64, v64, w64) = (f64s(&q), f64s(&k), f64s(&v), f64s(&dout));
        let eps = 1e-5;
        for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
            let n = grad.len();
            for idx in (0..n).step_by((n / 23).max(1)) {
                let bump = |delta: f64| {
                    let (mut a, mut b, mut c) = (q64.clone(), k64.clone(), v64.clone());
                    [&mut a, &mut b, &mut c][which][idx] += delta;
                    attention_objective(&a, &b, &c, &w64, d)
                };
                let fd = (bump(eps) - bump(-eps)) / (2.0 * eps);
                let got = grad[idx] - 1.0;
                assert!(
                    close(got, fd, 2e-4),
                    "{d:?} grad {which}[{idx}] {got} vs finite difference {fd}"
                );
            }
        }
    }
}

#[test]
fn attention_rejects_bad_layouts() {
    let mut ws = AttentionWorkspace::default();
    let d = AttentionDims {
        n_heads: 3,
        n_kv_heads: 2,
        head_dim: 2,
        seq: 2,
        windows: 1,
    };
    let e = attention_forward(
        &mut [0.0; 12],
        &mut [0.0; 6],
        (&[0.0; 12], &[0.0; 8], &[0.0; 8]),
        d,
        &mut ws,
    )
    .unwrap_err();
    assert!(e.to_string().contains("3 query heads"), "{e}");
    let d = AttentionDims { n_kv_heads: 3, ..d };
    let e = attention_forward(
        &mut [0.0; 12],
        &mut [0.0; 6],
        (&[0.0; 12], &[0.0; 11], &[0.0; 12]),
        d,
        &mut ws,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`k` has 11"), "{e}");
}

/// f64 mean cross-entropy of `W·x` (`W [V, D]`, `x [D, S]`) against `targets`.
fn ref_loss(w: &[f64], x: &[f64], targets: &[u32], v: usize, d: usize) -> f64 {
    let s = targets.len();
    let mut total = 0.0;
    for (col, &t) in targets.iter().enumerate() {
        let logits: Vec<f64> = (0..v)
            .map(|r| (0..d).map(|c| w[r * d + c] * x[c * s + col]).sum())
            .collect();
        let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
        total += z.ln() + m - logits[t as usize];
    }
    total / s as f64
}

#[test]
fn fused_classifier_loss_matches_reference_in_several_chunks() {
    let mut rng = Rng(42);
    // V large enough that a chunk holds fewer positions than the window.
    let (v, d, s) = (host::fused_loss::CHUNK_BUDGET / 3 + 1, 3, 7);
    let w: Vec<f32> = rng.vec(v * d).iter().map(|x| x * 4.0).collect();
    let x = rng.vec(d * s);
    let targets: Vec<u32> = (0..s as u32).map(|i| i * 7919 % v as u32).collect();
    let mut ws = LossWorkspace::default();
    let loss = classifier_loss(None, &x, &w, &targets, v, d, 1.0, &mut ws).unwrap();
    let want = ref_loss(&f64s(&w), &f64s(&x), &targets, v, d);
    assert!(close(loss, want, 1e-5), "{loss} vs {want}");
    // Gradients (scaled by dloss = 4) against the unfused ops, which have their own
    // f64 and finite-difference tests.
    let (mut dx, mut dw) = (vec![0.5; d * s], vec![0.25; v * d]);
    let grads = LossGrads {
        dx: &mut dx,
        dweight: &mut dw,
    };
    let l2 = classifier_loss(Some(grads), &x, &w, &targets, v, d, 4.0, &mut ws).unwrap();
    assert_eq!(l2, loss);
    let mut logits = vec![0.0; v * s];
    host::classifier_forward(&mut logits, &w, &x, v, d, s).unwrap();
    host::cross_entropy(&mut logits, &targets, v, 4.0).unwrap();
    let (mut rdx, mut rdw) = (vec![0.5; d * s], vec![0.25; v * d]);
    host::classifier_backward(&mut rdx, &mut rdw, &logits, &w, &x, v, d, s).unwrap();
    // dx sums ~1.4M terms per entry in f32, in another order than the unfused GEMM.
    for (a, b) in dx.iter().zip(&rdx) {
        assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "dx {a} vs {b}");
    }
    let worst = dw
        .iter()
        .zip(&rdw)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-6, "dW differs by {worst}");
}

#[test]
fn fused_classifier_loss_gradient_matches_finite_differences() {
    let mut rng = Rng(7);
    let (v, d, s) = (11, 4, 5);
    let (w, x) = (rng.vec(v * d), rng.vec(d * s));
    let targets = [3u32, 0, 10, 3, 7];
    let (mut dx, mut dw) = (vec![0.0; d * s], vec![0.0; v * d]);
    let mut ws = LossWorkspace::default();
    let grads = LossGrads {
        dx: &mut dx,
        dweight: &mut dw,
    };
    classifier_loss(Some(grads), &x, &w, &targets, v, d, 1.0, &mut ws).unwrap();
    let (w64, x64) = (f64s(&w), f64s(&x));
    let eps = 1e-6;
    for i in 0..d * s {
        let f = |delta: f64| {
            let mut x = x64.clone();
            x[i] += delta;
            ref_loss(&w64, &x, &targets, v, d)
        };
        let fd = (f(eps) - f(-eps)) / (2.0 * eps);
        assert!(close(dx[i], fd, 1e-4), "dx[{i}] {} vs {fd}", dx[i]);
    }
    for i in 0..v * d {
        let f = |delta: f64| {
            let mut w = w64.clone();
            w[i] += delta;
            ref_loss(&w, &x64, &targets, v, d)
        };
        let fd = (f(eps) - f(-eps)) / (2.0 * eps);
        assert!(close(dw[i], fd, 1e-4), "dW[{i}] {} vs {fd}", dw[i]);
    }
}

#[test]
fn fused_classifier_loss_rejects_bad_input() {
    let mut ws = LossWorkspace::default();
    let e = classifier_loss(None, &[0.0; 4], &[0.0; 6], &[0, 3], 3, 2, 1.0, &mut ws).unwrap_err();
    assert!(e.to_string().contains("targets[1] = 3"), "{e}");
    let e = classifier_loss(None, &[], &[0.0; 6], &[], 3, 2, 1.0, &mut ws).unwrap_err();
    assert!(e.to_string().contains("no columns"), "{e}");
    let e = classifier_loss(None, &[0.0; 5], &[0.0; 6], &[0, 1], 3, 2, 1.0, &mut ws).unwrap_err();
    assert!(e.to_string().contains("`x` has 5"), "{e}");
}
