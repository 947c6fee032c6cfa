//! Times the host ops that dominate a step outside the GEMMs, at a preset's dims (S = 256):
//! `cargo run --release -p ane-train --example host_speed [preset [repeats [attention|optimizer]]]`.
//! Prints the
//! median [min, max] ms of the fused attention forward and backward (all heads of one
//! layer), and of the optimizer's passes (gradient norm, AdamW update that clears the
//! gradient) over the whole parameter vector.

use std::time::Instant;

use ane_train::host::{attention_backward, attention_forward, AttentionDims, AttentionWorkspace};
use ane_train::model::ModelConfig;
use ane_train::optim::{global_norm, AdamW, AdamWConfig};

fn stats(mut xs: Vec<f64>) -> String {
    xs.sort_by(f64::total_cmp);
    format!(
        "{:7.2} ms [{:.2}, {:.2}]",
        xs[xs.len() / 2],
        xs[0],
        xs[xs.len() - 1]
    )
}

fn time(repeats: usize, mut f: impl FnMut()) -> String {
    f();
    stats(
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

/// `n` deterministic values in [-1, 1).
fn fill(n: usize, k: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * k % 977) as f32 / 977.0 - 0.5) * 2.0)
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let preset = args.next().unwrap_or_else(|| "stories110m".into());
    let repeats: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(9);
    let only = args.next();
    let run = |what: &str| only.as_deref().is_none_or(|o| o == what);
    let cfg = ModelConfig::preset(&preset).expect("a preset name");
    let s = 256;
    let dims = AttentionDims {
        n_heads: cfg.n_heads,
        n_kv_heads: cfg.n_kv_heads,
        head_dim: cfg.head_dim,
        seq: s,
        windows: 1,
    };
    println!(
        "{preset}: {} heads × {} (kv {}), S = {s}, {} threads",
        cfg.n_heads,
        cfg.head_dim,
        cfg.n_kv_heads,
        rayon::current_num_threads()
    );
    if run("attention") {
        attention(&cfg, dims, repeats);
    }
    if run("optimizer") {
        optimizer(&cfg, repeats);
    }
}

/// Times the fused attention forward and backward of one layer.
fn attention(cfg: &ModelConfig, dims: AttentionDims, repeats: usize) {
    let s = dims.seq;
    let (qd, kvd) = (cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim);
    let (q, k, v) = (fill(qd * s, 7), fill(kvd * s, 11), fill(kvd * s, 13));
    let (mut out, mut lse) = (vec![0.0; qd * s], vec![0.0; cfg.n_heads * s]);
    let mut ws = AttentionWorkspace::for_dims(dims);
    let fwd = time(repeats, || {
        attention_forward(&mut out, &mut lse, (&q, &k, &v), dims, &mut ws).unwrap()
    });
    println!("  attention forward   {fwd}");
    let dout = fill(qd * s, 17);
    let (mut dq, mut dk, mut dv) = (vec![0.0; qd * s], vec![0.0; kvd * s], vec![0.0; kvd * s]);
    let bwd = time(repeats, || {
        attention_backward(
            (&mut dq, &mut dk, &mut dv),
            &dout,
            (&q, &k, &v),
            &out,
            &lse,
            dims,
            &mut ws,
        )
        .unwrap()
    });
    println!("  attention backward  {bwd}");
}

/// Times the optimizer's two passes over the whole parameter vector.
fn optimizer(cfg: &ModelConfig, repeats: usize) {
    let table = cfg.params();
    let n = table.last().map_or(0, |t| t.range().end);
    let mut p = vec![0.01f32; n];
    let mut g = fill(n, 3);
    let mut opt = AdamW::new(AdamWConfig::default(), &table);
    println!(
        "  gradient norm       {}",
        time(repeats, || {
            std::hint::black_box(global_norm(&g));
        })
    );
    println!(
        "  update + clear      {}",
        time(repeats, || {
            opt.update_scaled_and_clear(&mut p, &mut g, 1e-3, 1.0, 1e-3);
        })
    );
}
