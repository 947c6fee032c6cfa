//! `model.bin` files written by an independent writer (the layouts spelled out by hand),
//! read, compared tensor by tensor, and written back byte for byte.

use super::*;

const D: usize = 16;
const HID: usize = 24;
const L: usize = 2;
const NH: usize = 4;
const NKV: usize = 2;
const V: usize = 40;
const S: usize = 32;
const HD: usize = D / NH;
const KV: usize = NKV * HD;

/// A tensor whose values say where they come from: `kind + layer/10 + index/1e5`.
fn tensor(kind: usize, layer: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| kind as f32 + layer as f32 / 10.0 + i as f32 / 1e5)
        .collect()
}

struct Tensors {
    embed: Vec<f32>,
    per_layer: Vec<[Vec<f32>; 9]>,
    final_norm: Vec<f32>,
    classifier: Vec<f32>,
}

/// Per layer, in llama2.c's kind order: attn_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3.
fn tensors() -> Tensors {
    let sizes = [
        D,
        D * D,
        KV * D,
        KV * D,
        D * D,
        D,
        HID * D,
        D * HID,
        HID * D,
    ];
    Tensors {
        embed: tensor(20, 0, V * D),
        per_layer: (0..L)
            .map(|l| std::array::from_fn(|k| tensor(k + 1, l, sizes[k])))
            .collect(),
        final_norm: tensor(30, 0, D),
        classifier: tensor(31, 0, V * D),
    }
}

fn put(out: &mut Vec<u8>, x: &[f32]) {
    for v in x {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn header(out: &mut Vec<u8>, vocab: i32) {
    for v in [
        D as i32, HID as i32, L as i32, NH as i32, NKV as i32, vocab, S as i32,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn write_v0(t: &Tensors, tied: bool) -> Vec<u8> {
    let mut out = Vec::new();
    header(&mut out, if tied { V as i32 } else { -(V as i32) });
    put(&mut out, &t.embed);
    for k in 0..9 {
        for l in 0..L {
            put(&mut out, &t.per_layer[l][k]);
        }
    }
    put(&mut out, &t.final_norm);
    // RoPE tables: any bytes (llama2.c ignores them; a round trip must keep them).
    put(&mut out, &tensor(40, 0, S * HD));
    if !tied {
        put(&mut out, &t.classifier);
    }
    out
}

fn write_v1(t: &Tensors, tied: bool) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0x616b_3432u32.to_le_bytes());
    out.extend_from_slice(&1i32.to_le_bytes());
    header(&mut out, V as i32);
    out.push(u8::from(tied));
    out.resize(256, 0);
    for k in [0, 5] {
        for l in 0..L {
            put(&mut out, &t.per_layer[l][k]);
        }
    }
    put(&mut out, &t.final_norm);
    put(&mut out, &t.embed);
    for k in [1, 2, 3, 4, 6, 7, 8] {
        for l in 0..L {
            put(&mut out, &t.per_layer[l][k]);
        }
    }
    if !tied {
        put(&mut out, &t.classifier);
    }
    out
}

fn check_tensors(m: &Llama2cModel, t: &Tensors, tied: bool) {
    let cfg = &m.config;
    assert_eq!((cfg.dim, cfg.hidden_dim, cfg.n_layers), (D, HID, L));
    assert_eq!((cfg.n_heads, cfg.n_kv_heads, cfg.head_dim), (NH, NKV, HD));
    assert_eq!(
        (cfg.vocab_size, cfg.seq_len, cfg.tied_classifier),
        (V, S, tied)
    );
    for spec in cfg.params() {
        let want: &[f32] = match (spec.kind, spec.layer) {
            (ParamKind::Embed, _) => &t.embed,
            (ParamKind::FinalNorm, _) => &t.final_norm,
            (ParamKind::Classifier, _) => &t.classifier,
            (k, Some(l)) => {
                let i = ParamKind::PER_LAYER.iter().position(|&p| p == k).unwrap();
                &t.per_layer[l][i]
            }
            (k, None) => panic!("{k:?} without a layer"),
        };
        assert_eq!(&m.params[spec.range()], want, "{}", spec.name);
    }
}

#[test]
fn version_0_reads_tensor_by_tensor_and_writes_back_byte_exact() {
    let t = tensors();
    for tied in [true, false] {
        let file = write_v0(&t, tied);
        let m = Llama2cModel::from_bytes(&file, "m.bin").unwrap();
        assert_eq!(m.version, Llama2cVersion::V0);
        check_tensors(&m, &t, tied);
        let back = to_v0_bytes(&m.config, &m.params, m.rope_tables.as_deref()).unwrap();
        assert!(back == file, "round trip differs (tied {tied})");
        // Without stored tables they are computed; the weights read back the same.
        let fresh = to_v0_bytes(&m.config, &m.params, None).unwrap();
        assert_eq!(fresh.len(), file.len());
        let again = Llama2cModel::from_bytes(&fresh, "m.bin").unwrap();
        assert_eq!(again.params, m.params);
        let rope = again.rope_tables.unwrap();
        // Position 1, pair 0: cos(1) and sin(1).
        let at = |i: usize| f32::from_le_bytes(rope[4 * i..4 * i + 4].try_into().unwrap());
        assert_eq!(at(HD / 2), 1f64.cos() as f32);
        assert_eq!(at(S * HD / 2 + HD / 2), 1f64.sin() as f32);
    }
}

#[test]
fn version_1_reads_tensor_by_tensor_and_exports_as_version_0() {
    let t = tensors();
    for tied in [true, false] {
        let m = Llama2cModel::from_bytes(&write_v1(&t, tied), "m.bin").unwrap();
        assert_eq!(m.version, Llama2cVersion::V1);
        check_tensors(&m, &t, tied);
        let v0 = to_v0_bytes(&m.config, &m.params, None).unwrap();
        let again = Llama2cModel::from_bytes(&v0, "m.bin").unwrap();
        assert_eq!(again.params, m.params);
        assert_eq!(again.config, m.config);
    }
}

#[test]
fn damaged_files_are_refused_naming_the_field() {
    let t = tensors();
    let file = write_v0(&t, false);
    let err = |b: &[u8]| {
        Llama2cModel::from_bytes(b, "m.bin")
            .unwrap_err()
            .to_string()
    };
    for cut in [0, 2, 27, 28, 29, file.len() - 1] {
        let e = err(&file[..cut]);
        assert!(e.starts_with("m.bin: "), "{e}");
    }
    assert!(err(&file[..file.len() - 1]).contains("file size"));
    let mut long = file.clone();
    long.push(0);
    assert!(err(&long).contains("oversized"));
    // A header asking for a huge model is refused before any allocation.
    let mut huge = file.clone();
    huge[8..12].copy_from_slice(&1_000_000i32.to_le_bytes());
    assert!(err(&huge).contains("truncated"), "{}", err(&huge));
    let mut neg = file.clone();
    neg[0..4].copy_from_slice(&(-5i32).to_le_bytes());
    assert!(err(&neg).contains("`dim`"), "{}", err(&neg));
    let mut heads = file.clone();
    heads[12..16].copy_from_slice(&3i32.to_le_bytes());
    assert!(err(&heads).contains("`n_heads`"), "{}", err(&heads));
    let mut v2 = write_v1(&t, true);
    v2[4..8].copy_from_slice(&2i32.to_le_bytes());
    assert!(err(&v2).contains("version 2 is int8"), "{}", err(&v2));
}

#[test]
fn only_llama2c_shaped_models_export() {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    let params = vec![1.0; cfg.param_count()];
    assert!(to_v0_bytes(&cfg, &params, None).is_ok());
    // A residual scale is folded into wo and w2.
    cfg.residual_scale = Some(0.5);
    let m = Llama2cModel::from_bytes(&to_v0_bytes(&cfg, &params, None).unwrap(), "m").unwrap();
    assert_eq!(m.config.residual_scale, None);
    for spec in m.config.params() {
        let want = if matches!(spec.kind, ParamKind::Wo | ParamKind::W2) {
            0.5
        } else {
            1.0
        };
        assert!(
            m.params[spec.range()].iter().all(|&v| v == want),
            "{}",
            spec.name
        );
    }
    cfg.rope_theta = 500.0;
    let e = to_v0_bytes(&cfg, &params, None).unwrap_err().to_string();
    assert!(e.contains("rope_theta"), "{e}");
    let q = ModelConfig::preset("qwen3-0.6b").unwrap();
    let e = to_v0_bytes(&q, &[], None).unwrap_err().to_string();
    assert!(e.contains("head_dim"), "{e}");
}
