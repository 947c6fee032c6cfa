//! Kernel generator tests: golden MIL per kernel and mode, and numerics against naive f64
//! references on `cpu` (fp32 surfaces) and `ane-sim` (fp16 surfaces, every ANE rule enforced),
//! in all three weight modes.
//!
//! `UPDATE_GOLDEN=1 cargo test -p ane-train --test kernels` rewrites the golden files.

use std::collections::HashMap;
use std::path::PathBuf;

use ane_mil::DType;
use ane_runtime::{Surface, Weights};
use ane_train::kernels::{
    gqa_kv_head, BlockContent, KernelDims, KernelKind, KernelOptions, KernelSpec, LayerWeights,
    Matrix, WeightMode,
};
use half::f16;

/// Smallest config that obeys every surface rule: D 64, NH 4, NKV 2, HD 16, H 128, S 32.
const DIMS: KernelDims = KernelDims {
    dim: 64,
    q_dim: 64,
    kv_dim: 32,
    hidden: 128,
    n_heads: 4,
    n_kv_heads: 2,
    head_dim: 16,
    seq: 32,
    window: 32,
};
const ALPHA: f32 = 0.375;
const THETA: f32 = 10_000.0;

// ---------------------------------------------------------------------------------------------
// Data

/// xorshift64*, seeded per tensor name so every tensor is reproducible on its own.
struct Rng(u64);

impl Rng {
    fn for_name(name: &str) -> Rng {
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        Rng(h | 1)
    }

    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let u = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
}

/// `n` fp16-representable values uniform in `[lo, hi)`: the same numbers reach cpu and ane-sim.
fn rand16(name: &str, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut r = Rng::for_name(name);
    (0..n)
        .map(|_| f16::from_f32(r.uniform(lo, hi)).to_f32())
        .collect()
}

/// Random weights and activations, by name.
struct Data {
    w: HashMap<&'static str, Vec<f32>>,
}

impl Data {
    fn new() -> Data {
        let mut w = HashMap::new();
        for m in [
            Matrix::Wq,
            Matrix::Wk,
            Matrix::Wv,
            Matrix::Wo,
            Matrix::W1,
            Matrix::W2,
            Matrix::W3,
        ] {
            let (o, i) = DIMS.matrix_shape(m);
            let s = 1.0 / (i as f32).sqrt();
            w.insert(m.name(), rand16(m.name(), o * i, -s, s));
        }
        Data { w }
    }

    fn weights(&self) -> LayerWeights<'_> {
        LayerWeights {
            wq: &self.w["wq"],
            wk: &self.w["wk"],
            wv: &self.w["wv"],
            wo: &self.w["wo"],
            w1: &self.w["w1"],
            w2: &self.w["w2"],
            w3: &self.w["w3"],
        }
    }

    fn mat(&self, m: Matrix) -> &[f32] {
        &self.w[m.name()]
    }

    /// Activation `name` with `n` values (probabilities in [0, 1), the rest in [-1, 1)).
    fn act(&self, name: &str, n: usize) -> Vec<f32> {
        if name == "probs" {
            rand16(name, n, 0.0, 1.0)
        } else {
            rand16(name, n, -1.0, 1.0)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running a spec

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dev {
    Cpu,
    Sim,
}

impl Dev {
    fn name(self) -> &'static str {
        match self {
            Dev::Cpu => "cpu",
            Dev::Sim => "ane-sim",
        }
    }

    fn dtype(self) -> DType {
        match self {
            Dev::Cpu => DType::Fp32,
            Dev::Sim => DType::Fp16,
        }
    }
}

fn opts(dev: Dev) -> KernelOptions {
    KernelOptions {
        dtype: dev.dtype(),
        alpha: ALPHA,
        rope_theta: THETA,
        weights_as_stored: false,
    }
}

fn generate(kind: KernelKind, mode: WeightMode, dev: Dev, data: &Data) -> KernelSpec {
    kind.generate(&DIMS, &opts(dev), mode, Some(&data.weights()))
        .unwrap_or_else(|e| panic!("{} {}: {e}", kind.name(), mode.name()))
}

/// Compiles `spec` on `dev`, fills every input block from `data`, evaluates, and returns the
/// single output. Every input surface gets `input_alloc_bytes`, every output
/// `output_alloc_bytes` (rules 1–3).
fn run(dev: Dev, spec: &KernelSpec, data: &Data) -> Vec<f32> {
    let device = ane_runtime::open(dev.name()).unwrap();
    let mut weights = Weights::new();
    for (path, bytes) in &spec.weights {
        weights.insert(path.clone(), bytes.clone());
    }
    let kernel = device
        .compile(&spec.program, &weights)
        .unwrap_or_else(|e| panic!("compile on {}: {e}", dev.name()));
    let ins: Vec<Surface> = spec
        .inputs
        .iter()
        .map(|slot| {
            let mut buf = vec![0.0f32; slot.len()];
            for b in &slot.blocks {
                let src = match b.content {
                    BlockContent::Activation => {
                        data.act(&b.name, b.channels.len() * b.columns.len())
                    }
                    BlockContent::Weight { matrix, .. } => data.mat(matrix).to_vec(),
                };
                slot.write_block(&mut buf, &b.name, &src).unwrap();
            }
            let s = device
                .surface_with_alloc(&slot.shape, dev.dtype(), spec.input_alloc_bytes())
                .unwrap();
            s.write_f32(&buf).unwrap();
            s
        })
        .collect();
    let outs: Vec<Surface> = spec
        .outputs
        .iter()
        .map(|slot| {
            device
                .surface_with_alloc(&slot.shape, dev.dtype(), spec.output_alloc_bytes())
                .unwrap()
        })
        .collect();
    let in_pairs: Vec<(&str, &Surface)> = spec
        .inputs
        .iter()
        .zip(&ins)
        .map(|(slot, s)| (slot.name.as_str(), s))
        .collect();
    let out_pairs: Vec<(&str, &Surface)> = spec
        .outputs
        .iter()
        .zip(&outs)
        .map(|(slot, s)| (slot.name.as_str(), s))
        .collect();
    let binding = kernel
        .bind(&in_pairs, &out_pairs)
        .unwrap_or_else(|e| panic!("bind on {}: {e}", dev.name()));
    binding.eval().unwrap();
    outs[0].read_f32().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Naive f64 references (channel-first [C, S] matrices, W [out, in] row-major)

type M = Vec<f64>;

fn f64s(v: &[f32]) -> M {
    v.iter().map(|&x| x as f64).collect()
}

/// `W·x`: W `[o, n]`, x `[n, S]` → `[o, S]`.
fn mv(w: &[f32], o: usize, n: usize, x: &[f64]) -> M {
    let s = DIMS.seq;
    let mut y = vec![0.0; o * s];
    for r in 0..o {
        for c in 0..n {
            for t in 0..s {
                y[r * s + t] += w[r * n + c] as f64 * x[c * s + t];
            }
        }
    }
    y
}

/// `Wᵀ·x`: W `[o, n]`, x `[o, S]` → `[n, S]`.
fn mvt(w: &[f32], o: usize, n: usize, x: &[f64]) -> M {
    let s = DIMS.seq;
    let mut y = vec![0.0; n * s];
    for r in 0..o {
        for c in 0..n {
            for t in 0..s {
                y[c * s + t] += w[r * n + c] as f64 * x[r * s + t];
            }
        }
    }
    y
}

fn add(a: &[f64], b: &[f64]) -> M {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// RoPE on `x [nh·HD, S]`, interleaved pairs.
fn rope(x: &[f64], nh: usize) -> M {
    let (s, hd) = (DIMS.seq, DIMS.head_dim);
    let mut y = vec![0.0; x.len()];
    for h in 0..nh {
        for i in 0..hd / 2 {
            let freq = (THETA as f64).powf(-2.0 * i as f64 / hd as f64);
            for p in 0..s {
                let (c, sn) = ((p as f64 * freq).cos(), (p as f64 * freq).sin());
                let (e, o) = ((h * hd + 2 * i) * s + p, (h * hd + 2 * i + 1) * s + p);
                y[e] = x[e] * c - x[o] * sn;
                y[o] = x[o] * c + x[e] * sn;
            }
        }
    }
    y
}

/// Causal softmax probabilities `[NH][q][k]` of query head h against key head `kv(h)`.
fn probs(q: &[f64], k: &[f64], kv: impl Fn(usize) -> usize) -> Vec<f64> {
    let (s, hd, nh) = (DIMS.seq, DIMS.head_dim, DIMS.n_heads);
    let mut p = vec![0.0; nh * s * s];
    for h in 0..nh {
        let kh = kv(h);
        for qi in 0..s {
            let sc: Vec<f64> = (0..=qi)
                .map(|ki| {
                    (0..hd)
                        .map(|d| q[(h * hd + d) * s + qi] * k[(kh * hd + d) * s + ki])
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let mx = sc.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = sc.iter().map(|v| (v - mx).exp()).sum();
            for (ki, v) in sc.iter().enumerate() {
                p[(h * s + qi) * s + ki] = (v - mx).exp() / z;
            }
        }
    }
    p
}

/// The expected output parts of `kind` on `data`, in output order.
fn reference(kind: KernelKind, data: &Data) -> Vec<(&'static str, M)> {
    let d = DIMS;
    let (s, hd, nh) = (d.seq, d.head_dim, d.n_heads);
    let act = |name: &str, c: usize| f64s(&data.act(name, c * s));
    let w = |m: Matrix| data.mat(m);
    let g = d.n_heads / d.n_kv_heads;
    match kind {
        KernelKind::SdpaFwd => {
            let x = act("xnorm", d.dim);
            let q = mv(w(Matrix::Wq), d.q_dim, d.dim, &x);
            let k = mv(w(Matrix::Wk), d.kv_dim, d.dim, &x);
            let v = mv(w(Matrix::Wv), d.kv_dim, d.dim, &x);
            let (qr, kr) = (rope(&q, nh), rope(&k, d.n_kv_heads));
            let p = probs(&qr, &kr, |h| h / g);
            let mut att = vec![0.0; d.q_dim * s];
            for h in 0..nh {
                let kvh = h / g;
                for qi in 0..s {
                    for dd in 0..hd {
                        att[(h * hd + dd) * s + qi] = (0..s)
                            .map(|ki| p[(h * s + qi) * s + ki] * v[(kvh * hd + dd) * s + ki])
                            .sum();
                    }
                }
            }
            vec![
                ("attn_out", att),
                ("q_rope", qr),
                ("k_rope", kr),
                ("v", v),
                ("xnorm", x),
            ]
        }
        KernelKind::QkvFwd => {
            let x = act("xnorm", d.dim);
            let q = mv(w(Matrix::Wq), d.q_dim, d.dim, &x);
            let k = mv(w(Matrix::Wk), d.kv_dim, d.dim, &x);
            let v = mv(w(Matrix::Wv), d.kv_dim, d.dim, &x);
            vec![("q", q), ("k", k), ("v", v)]
        }
        KernelKind::WoFwd => {
            let a = act("attn_out", d.q_dim);
            vec![("o", mv(w(Matrix::Wo), d.dim, d.q_dim, &a))]
        }
        KernelKind::FfnFused => {
            let (xn, x2) = (act("x2norm", d.dim), act("x2", d.dim));
            let h1 = mv(w(Matrix::W1), d.hidden, d.dim, &xn);
            let h3 = mv(w(Matrix::W3), d.hidden, d.dim, &xn);
            let gate: M = h1
                .iter()
                .zip(&h3)
                .map(|(a, b)| a / (1.0 + (-a).exp()) * b)
                .collect();
            let ffn = mv(w(Matrix::W2), d.dim, d.hidden, &gate);
            let xn: M = x2
                .iter()
                .zip(&ffn)
                .map(|(a, b)| a + ALPHA as f64 * b)
                .collect();
            vec![("x_next", xn), ("h1", h1), ("h3", h3), ("gate", gate)]
        }
        KernelKind::FfnBwdW2t => {
            let dffn = act("dffn", d.dim);
            vec![("dgate", mvt(w(Matrix::W2), d.dim, d.hidden, &dffn))]
        }
        KernelKind::FfnBwdW13t => {
            let a = mvt(w(Matrix::W1), d.hidden, d.dim, &act("dh1", d.hidden));
            let b = mvt(w(Matrix::W3), d.hidden, d.dim, &act("dh3", d.hidden));
            vec![("dx_ffn", add(&a, &b))]
        }
        KernelKind::WotBwd => {
            let dx2 = act("dx2_scaled", d.dim);
            vec![("da", mvt(w(Matrix::Wo), d.dim, d.q_dim, &dx2))]
        }
        KernelKind::QBwd => {
            let dq = act("dq", d.q_dim);
            vec![("dx_q", mvt(w(Matrix::Wq), d.q_dim, d.dim, &dq))]
        }
        KernelKind::KvBwd => {
            let a = mvt(w(Matrix::Wk), d.kv_dim, d.dim, &act("dk", d.kv_dim));
            let b = mvt(w(Matrix::Wv), d.kv_dim, d.dim, &act("dv", d.kv_dim));
            vec![("dx_kv", add(&a, &b))]
        }
        KernelKind::SdpaBwd1 => {
            let (q, k) = (act("q_rope", d.q_dim), act("k_tiled", d.q_dim));
            let (v, da) = (act("v_tiled", d.q_dim), act("da", d.q_dim));
            let p = probs(&q, &k, |h| h);
            let mut dv = vec![0.0; d.q_dim * s];
            let mut dp = vec![0.0; nh * s * s];
            for h in 0..nh {
                for dd in 0..hd {
                    for ki in 0..s {
                        dv[(h * hd + dd) * s + ki] = (0..s)
                            .map(|qi| p[(h * s + qi) * s + ki] * da[(h * hd + dd) * s + qi])
                            .sum();
                    }
                }
                for qi in 0..s {
                    for ki in 0..s {
                        dp[(h * s + qi) * s + ki] = (0..hd)
                            .map(|dd| da[(h * hd + dd) * s + qi] * v[(h * hd + dd) * s + ki])
                            .sum();
                    }
                }
            }
            vec![("dv_full", dv), ("probs", p), ("dp", dp)]
        }
        KernelKind::SdpaBwd2 => {
            let (p, dp) = (act("probs", nh * s), act("dp", nh * s));
            let (q, k) = (act("q_rope", d.q_dim), act("k_tiled", d.q_dim));
            let mut ds = vec![0.0; nh * s * s];
            for row in 0..nh * s {
                let r = &p[row * s..(row + 1) * s];
                let dr = &dp[row * s..(row + 1) * s];
                let sum: f64 = r.iter().zip(dr).map(|(a, b)| a * b).sum();
                for ki in 0..s {
                    ds[row * s + ki] = r[ki] * (dr[ki] - sum) / (hd as f64).sqrt();
                }
            }
            let mut dq = vec![0.0; d.q_dim * s];
            let mut dk = vec![0.0; d.q_dim * s];
            for h in 0..nh {
                for dd in 0..hd {
                    for i in 0..s {
                        dq[(h * hd + dd) * s + i] = (0..s)
                            .map(|ki| ds[(h * s + i) * s + ki] * k[(h * hd + dd) * s + ki])
                            .sum();
                        dk[(h * hd + dd) * s + i] = (0..s)
                            .map(|qi| ds[(h * s + qi) * s + i] * q[(h * hd + dd) * s + qi])
                            .sum();
                    }
                }
            }
            vec![("dq_rope", dq), ("dk_full", dk)]
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Comparisons

/// `|g − w| ≤ abs + rel·(|w| + mean|w|)` for every element.
fn assert_close(what: &str, got: &[f32], want: &[f64], rel: f64, abs: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mean = want.iter().map(|x| x.abs()).sum::<f64>() / want.len().max(1) as f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let bound = abs + rel * (w.abs() + mean);
        assert!(
            err <= bound,
            "{what}: element {i} is {g}, expected {w} (|err| {err:e} > {bound:e})"
        );
    }
}

/// Runs `kind` in every mode on cpu (fp32) and ane-sim (fp16) against the f64 reference, and
/// checks that the three modes agree on cpu.
fn check_kernel(kind: KernelKind) {
    let data = Data::new();
    let want = reference(kind, &data);
    for dev in [Dev::Cpu, Dev::Sim] {
        let (rel, abs) = match dev {
            Dev::Cpu => (2e-5, 1e-6),
            Dev::Sim => (2e-2, 2e-3),
        };
        let mut by_mode = Vec::new();
        for mode in WeightMode::ALL {
            let spec = generate(kind, mode, dev, &data);
            let out = run(dev, &spec, &data);
            let slot = &spec.outputs[0];
            assert_eq!(
                slot.parts
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>(),
                want.iter().map(|p| p.0).collect::<Vec<_>>(),
                "{} output parts",
                kind.name()
            );
            for (name, w) in &want {
                let what = format!(
                    "{} {} on {} part {name}",
                    kind.name(),
                    mode.name(),
                    dev.name()
                );
                assert_close(&what, slot.read_part(&out, name).unwrap(), w, rel, abs);
            }
            by_mode.push(out);
        }
        if dev == Dev::Cpu {
            for (m, out) in WeightMode::ALL.iter().zip(&by_mode).skip(1) {
                let base = f64s(&by_mode[0]);
                let what = format!("{}: {} vs baked on cpu", kind.name(), m.name());
                assert_close(&what, out, &base, 1e-6, 1e-7);
            }
        }
    }
}

#[test]
fn sdpa_fwd_matches_reference_in_all_modes() {
    check_kernel(KernelKind::SdpaFwd);
}

#[test]
fn wo_fwd_matches_reference_in_all_modes() {
    check_kernel(KernelKind::WoFwd);
}

#[test]
fn ffn_fused_matches_reference_in_all_modes() {
    check_kernel(KernelKind::FfnFused);
}

#[test]
fn ffn_bwd_w2t_matches_reference_in_all_modes() {
    check_kernel(KernelKind::FfnBwdW2t);
}

#[test]
fn ffn_bwd_w13t_matches_reference_in_all_modes() {
    check_kernel(KernelKind::FfnBwdW13t);
}

#[test]
fn wot_bwd_matches_reference_in_all_modes() {
    check_kernel(KernelKind::WotBwd);
}

#[test]
fn sdpa_bwd1_matches_reference_in_all_modes() {
    check_kernel(KernelKind::SdpaBwd1);
}

#[test]
fn sdpa_bwd2_matches_reference_in_all_modes() {
    check_kernel(KernelKind::SdpaBwd2);
}

#[test]
fn q_bwd_matches_reference_in_all_modes() {
    check_kernel(KernelKind::QBwd);
}

#[test]
fn kv_bwd_matches_reference_in_all_modes() {
    check_kernel(KernelKind::KvBwd);
}

// ---------------------------------------------------------------------------------------------
// Layout and binding rules

#[test]
fn params_names_sort_in_declaration_order_and_blocks_tile_the_inputs() {
    let data = Data::new();
    for kind in KernelKind::ALL {
        for mode in WeightMode::ALL {
            let spec = generate(kind, mode, Dev::Sim, &data);
            let names: Vec<&str> = spec.inputs.iter().map(|s| s.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            assert_eq!(names, sorted, "{} {}", kind.name(), mode.name());
            let declared: Vec<&str> = spec
                .program
                .main()
                .unwrap()
                .params
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            assert_eq!(names, declared);
            for slot in &spec.inputs {
                let covered: usize = slot
                    .blocks
                    .iter()
                    .map(|b| b.channels.len() * b.columns.len())
                    .sum();
                assert_eq!(
                    covered,
                    slot.len(),
                    "{} {} {}",
                    kind.name(),
                    mode.name(),
                    slot.name
                );
            }
            assert!(spec.input_alloc_bytes() >= 49_152);
            let widest = spec.inputs.iter().map(|s| s.len() * 2).max().unwrap();
            assert!(spec.input_alloc_bytes() >= widest);
            let has_weights = spec
                .inputs
                .iter()
                .flat_map(|s| &s.blocks)
                .any(|b| matches!(b.content, BlockContent::Weight { .. }));
            let weight_free = matches!(kind, KernelKind::SdpaBwd1 | KernelKind::SdpaBwd2);
            assert_eq!(
                has_weights,
                mode != WeightMode::Baked && !weight_free,
                "{} {}",
                kind.name(),
                mode.name()
            );
        }
    }
}

#[test]
fn gqa_uses_consecutive_query_heads_per_kv_head() {
    // Query heads 0, 1 read KV head 0; 2, 3 read KV head 1 (upstream's forward used h mod 2).
    let map: Vec<usize> = (0..4).map(|h| gqa_kv_head(h, 4, 2).unwrap()).collect();
    assert_eq!(map, [0, 0, 1, 1]);
}

// ---------------------------------------------------------------------------------------------
// Golden MIL

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/kernels")
}

#[test]
fn golden_mil_per_kernel_and_mode() {
    let data = Data::new();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let dir = golden_dir();
    let mut stale = Vec::new();
    for kind in KernelKind::ALL {
        for mode in WeightMode::ALL {
            let spec = generate(kind, mode, Dev::Sim, &data);
            let text = ane_mil::print(&spec.program);
            let path = dir.join(format!("{}_{}.mil", kind.name(), mode.name()));
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(old) if old == text => {}
                _ => stale.push(path.display().to_string()),
            }
        }
    }
    assert!(
        stale.is_empty(),
        "emitted MIL differs from the golden files (or they are missing):\n  {}\n\
         If the change is intended, run `UPDATE_GOLDEN=1 cargo test -p ane-train --test kernels` \
         and review the diff.",
        stale.join("\n  ")
    );
}
