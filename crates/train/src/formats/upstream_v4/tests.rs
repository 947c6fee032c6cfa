//! Version 4 files written by an independent writer (the C struct spelled out here).

use super::*;

const L: usize = 2;
const V: usize = 20;
const D: usize = 16;
const HID: usize = 32;
const NH: usize = 4;
const HD: usize = 4;
const S: usize = 32;

/// Value `base + index/1e4` marks where a float came from.
fn block(base: f32, n: usize) -> Vec<f32> {
    (0..n).map(|i| base + i as f32 / 1e4).collect()
}

fn write(nkv: usize, version: i32) -> Vec<u8> {
    let (q, kv) = (NH * HD, nkv * HD);
    let mut out = Vec::new();
    let i = |out: &mut Vec<u8>, v: i32| out.extend_from_slice(&v.to_le_bytes());
    i(&mut out, 0x424C_5A54);
    i(&mut out, version);
    for v in [
        7, 100, L as i32, V as i32, D as i32, HID as i32, NH as i32, S as i32,
    ] {
        i(&mut out, v);
    }
    out.extend_from_slice(&3e-4f32.to_le_bytes());
    out.extend_from_slice(&2.5f32.to_le_bytes());
    for _ in 0..3 {
        out.extend_from_slice(&1.0f64.to_le_bytes());
    }
    for v in [7, 0, 6, nkv as i32, HD as i32, q as i32] {
        i(&mut out, v);
    }
    assert_eq!(out.len(), 96);
    let put = |out: &mut Vec<u8>, x: &[f32]| {
        x.iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes()))
    };
    let sizes = [
        q * D,
        kv * D,
        kv * D,
        D * q,
        HID * D,
        D * HID,
        HID * D,
        D,
        D,
    ];
    for l in 0..L {
        for (k, &n) in sizes.iter().enumerate() {
            put(&mut out, &block((l * 100 + k * 10) as f32, n));
        }
        for (k, &n) in sizes.iter().enumerate() {
            put(&mut out, &block((l * 100 + k * 10 + 1) as f32, n));
            put(&mut out, &block((l * 100 + k * 10 + 2) as f32, n));
        }
    }
    for base in [1000.0, 1001.0, 1002.0] {
        put(&mut out, &block(base, D));
    }
    for base in [2000.0, 2001.0, 2002.0] {
        put(&mut out, &block(base, V * D));
    }
    out
}

#[test]
fn version_4_imports_weights_and_moments() {
    let u = UpstreamCheckpoint::from_bytes(&write(NH, 4), "u.bin").unwrap();
    let cfg = &u.config;
    assert_eq!(
        (cfg.n_layers, cfg.dim, cfg.hidden_dim, cfg.vocab_size),
        (L, D, HID, V)
    );
    assert_eq!(
        cfg.residual_scale,
        Some(ModelConfig::deepnet_residual_scale(L))
    );
    assert_eq!((u.adam_t, u.step, u.total_steps, u.loss), (6, 7, 100, 2.5));
    let kinds = [
        ParamKind::Wq,
        ParamKind::Wk,
        ParamKind::Wv,
        ParamKind::Wo,
        ParamKind::W1,
        ParamKind::W2,
        ParamKind::W3,
        ParamKind::AttnNorm,
        ParamKind::FfnNorm,
    ];
    for spec in cfg.params() {
        let base = match (spec.kind, spec.layer) {
            (ParamKind::FinalNorm, _) => 1000.0,
            (ParamKind::Embed, _) => 2000.0,
            (k, Some(l)) => (l * 100 + kinds.iter().position(|&x| x == k).unwrap() * 10) as f32,
            _ => unreachable!(),
        };
        assert_eq!(
            u.params[spec.range()],
            block(base, spec.numel()),
            "{}",
            spec.name
        );
        assert_eq!(
            u.m[spec.range()],
            block(base + 1.0, spec.numel()),
            "{}.m",
            spec.name
        );
        assert_eq!(
            u.v[spec.range()],
            block(base + 2.0, spec.numel()),
            "{}.v",
            spec.name
        );
    }
}

#[test]
fn gqa_query_heads_are_reordered_to_upstream_s_forward_mapping() {
    // 4 query heads on 2 KV heads: upstream head h read KV head h mod 2, ours h / 2, so our
    // heads 0, 1, 2, 3 are upstream's 0, 2, 1, 3.
    assert_eq!(
        (0..4)
            .map(|h| upstream_head_of(h, 4, 2))
            .collect::<Vec<_>>(),
        [0, 2, 1, 3]
    );
    let u = UpstreamCheckpoint::from_bytes(&write(2, 4), "u.bin").unwrap();
    let spec = u
        .config
        .params()
        .into_iter()
        .find(|s| s.kind == ParamKind::Wq)
        .unwrap();
    let wq = &u.params[spec.range()];
    let orig = block(0.0, NH * HD * D);
    for (ours, theirs) in [(0, 0), (1, 2), (2, 1), (3, 3)] {
        assert_eq!(
            wq[ours * HD * D..][..HD * D],
            orig[theirs * HD * D..][..HD * D]
        );
    }
    let spec = u
        .config
        .params()
        .into_iter()
        .find(|s| s.kind == ParamKind::Wo)
        .unwrap();
    let wo = &u.m[spec.range()];
    let orig = block(31.0, D * NH * HD);
    let q = NH * HD;
    assert_eq!(
        wo[q + HD..][..HD],
        orig[q + 2 * HD..][..HD],
        "row 1, our head 1 = upstream head 2"
    );
}

#[test]
fn other_versions_and_damaged_files_are_refused() {
    let err = |b: &[u8]| {
        UpstreamCheckpoint::from_bytes(b, "u.bin")
            .unwrap_err()
            .to_string()
    };
    let e = err(&write(NH, 2));
    assert!(
        e.contains("`version`") && e.contains("only version 4"),
        "{e}"
    );
    let good = write(NH, 4);
    for cut in [0, 3, 50, 95, 96, good.len() - 1] {
        assert!(
            err(&good[..cut]).starts_with("u.bin: `"),
            "{}",
            err(&good[..cut])
        );
    }
    let mut long = good.clone();
    long.extend([0; 4]);
    assert!(err(&long).contains("oversized"));
    let mut q = good.clone();
    q[92..96].copy_from_slice(&17i32.to_le_bytes());
    assert!(err(&q).contains("`q_dim`"), "{}", err(&q));
    let mut huge = good;
    huge[16..20].copy_from_slice(&i32::MAX.to_le_bytes());
    let e = err(&huge);
    assert!(e.contains("u.bin"), "{e}");
}
