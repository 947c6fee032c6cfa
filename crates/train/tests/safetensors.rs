//! Hugging Face export/import: the written directory is read back with the `safetensors`
//! crate and run through an independent f64 LLaMA forward written here the way
//! `transformers` computes it (rotate-half RoPE, `repeat_kv`, no residual scale); its logits
//! must equal our decoder's on our own layout. Import must give back a model with the same
//! logits.

use ane_train::formats::safetensors::{read_dir, write_dir};
use ane_train::generate::Decoder;
use ane_train::model::ModelConfig;
use ane_train::rng::Rng;
use safetensors::tensor::{Dtype, SafeTensors};

fn config(tied: bool) -> ModelConfig {
    ModelConfig {
        name: "st".into(),
        dim: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 16,
        hidden_dim: 48,
        vocab_size: 40,
        seq_len: 32,
        rope_theta: 10_000.0,
        norm_eps: 1e-5,
        tied_classifier: tied,
        residual_scale: Some(0.5),
    }
}

/// A written Hugging Face directory: the safetensors bytes and `config.json`.
struct Hf {
    bytes: Vec<u8>,
    cfg: serde_json::Value,
}

impl Hf {
    /// Tensor `name` as f64, read with the `safetensors` crate.
    fn get(&self, name: &str) -> Vec<f64> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("no tensor {name}"));
        assert_eq!(t.dtype(), Dtype::F32);
        t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect()
    }
}

fn matvec(w: &[f64], x: &[f64]) -> Vec<f64> {
    w.chunks_exact(x.len())
        .map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

fn rmsnorm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let r = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + eps).sqrt();
    x.iter().zip(w).map(|(a, b)| a * r * b).collect()
}

/// `transformers`' rotate-half RoPE on one head `[HD]` at position `p`.
fn rotate_half(x: &mut [f64], p: usize, theta: f64) {
    let half = x.len() / 2;
    let old = x.to_vec();
    for i in 0..half {
        let a = p as f64 * theta.powf(-2.0 * i as f64 / x.len() as f64);
        x[i] = old[i] * a.cos() - old[i + half] * a.sin();
        x[i + half] = old[i + half] * a.cos() + old[i] * a.sin();
    }
}

/// Logits at every position of `tokens`, `[S][V]`, from the Hugging Face tensors.
fn hf_forward(hf: &Hf, tokens: &[u32]) -> Vec<Vec<f64>> {
    let c = &hf.cfg;
    let n = |k: &str| c[k].as_u64().unwrap() as usize;
    let (d, nl, nh, nkv, hd, v) = (
        n("hidden_size"),
        n("num_hidden_layers"),
        n("num_attention_heads"),
        n("num_key_value_heads"),
        n("head_dim"),
        n("vocab_size"),
    );
    let (eps, theta) = (
        c["rms_norm_eps"].as_f64().unwrap(),
        c["rope_theta"].as_f64().unwrap(),
    );
    let embed = hf.get("model.embed_tokens.weight");
    let mut xs: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&t| embed[t as usize * d..][..d].to_vec())
        .collect();
    for l in 0..nl {
        let w = |name: &str| hf.get(&format!("model.layers.{l}.{name}.weight"));
        let (wq, wk, wv, wo) = (
            w("self_attn.q_proj"),
            w("self_attn.k_proj"),
            w("self_attn.v_proj"),
            w("self_attn.o_proj"),
        );
        let (ln1, ln2) = (w("input_layernorm"), w("post_attention_layernorm"));
        let (g, u, dn) = (w("mlp.gate_proj"), w("mlp.up_proj"), w("mlp.down_proj"));
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (p, x) in xs.iter().enumerate() {
            let h = rmsnorm(x, &ln1, eps);
            let mut q = matvec(&wq, &h);
            let mut k = matvec(&wk, &h);
            q.chunks_exact_mut(hd)
                .for_each(|hh| rotate_half(hh, p, theta));
            k.chunks_exact_mut(hd)
                .for_each(|hh| rotate_half(hh, p, theta));
            qs.push(q);
            ks.push(k);
            vs.push(matvec(&wv, &h));
        }
        for p in 0..xs.len() {
            let mut att = vec![0.0; nh * hd];
            for h in 0..nh {
                let kvh = h / (nh / nkv);
                let sc: Vec<f64> = (0..=p)
                    .map(|t| {
                        (0..hd)
                            .map(|i| qs[p][h * hd + i] * ks[t][kvh * hd + i])
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = sc.iter().map(|s| (s - m).exp()).sum();
                for (t, s) in sc.iter().enumerate() {
                    for i in 0..hd {
                        att[h * hd + i] += (s - m).exp() / z * vs[t][kvh * hd + i];
                    }
                }
            }
            let o = matvec(&wo, &att);
            xs[p].iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let h = rmsnorm(&xs[p], &ln2, eps);
            let (a, b) = (matvec(&g, &h), matvec(&u, &h));
            let act: Vec<f64> = a
                .iter()
                .zip(&b)
                .map(|(a, b)| a / (1.0 + (-a).exp()) * b)
                .collect();
            let f = matvec(&dn, &act);
            xs[p].iter_mut().zip(&f).for_each(|(a, b)| *a += b);
        }
    }
    let norm = hf.get("model.norm.weight");
    let head = if c["tie_word_embeddings"].as_bool().unwrap() {
        embed
    } else {
        hf.get("lm_head.weight")
    };
    assert_eq!(head.len(), v * d);
    xs.iter()
        .map(|x| matvec(&head, &rmsnorm(x, &norm, eps)))
        .collect()
}

#[test]
fn exported_tensors_run_as_hugging_face_llama_and_import_back() {
    for tied in [true, false] {
        let cfg = config(tied);
        let mut rng = Rng::new(11 + tied as u64);
        let params: Vec<f32> = (0..cfg.param_count())
            .map(|_| 0.4 * rng.symmetric())
            .collect();
        let dir = std::env::temp_dir().join(format!("ane-st-{}-{tied}", std::process::id()));
        write_dir(&dir, &cfg, &params).unwrap();
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let hf_cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(hf_cfg["architectures"][0], "LlamaForCausalLM");
        assert_eq!(hf_cfg["rms_norm_eps"].as_f64(), Some(1e-5));
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(
            st.tensor("model.layers.1.self_attn.k_proj.weight")
                .unwrap()
                .shape(),
            &[32, 32]
        );
        assert_eq!(st.names().contains(&"lm_head.weight"), !tied);
        let hf = Hf {
            bytes: bytes.clone(),
            cfg: hf_cfg,
        };
        let mut rng = Rng::new(5);
        let tokens: Vec<u32> = (0..12).map(|_| rng.below(cfg.vocab_size) as u32).collect();
        let want = hf_forward(&hf, &tokens);
        let mut ours = Decoder::new(&cfg, &params).unwrap();
        let (icfg, iparams) = read_dir(&dir).unwrap();
        assert_eq!(icfg.residual_scale, None);
        assert_eq!(
            (icfg.norm_eps, icfg.rope_theta),
            (cfg.norm_eps, cfg.rope_theta)
        );
        assert_eq!(
            (
                icfg.dim,
                icfg.head_dim,
                icfg.n_kv_heads,
                icfg.tied_classifier
            ),
            (32, 16, 2, tied)
        );
        let mut imported = Decoder::new(&icfg, &iparams).unwrap();
        for (p, &t) in tokens.iter().enumerate() {
            let a = ours.step(t).unwrap().to_vec();
            let b = imported.step(t).unwrap().to_vec();
            for i in 0..cfg.vocab_size {
                assert!(
                    (a[i] as f64 - want[p][i]).abs() < 1e-4,
                    "pos {p} id {i}: {} vs {}",
                    a[i],
                    want[p][i]
                );
                assert!(
                    (a[i] - b[i]).abs() < 1e-5,
                    "import differs at pos {p} id {i}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn unsupported_or_damaged_directories_are_refused_naming_the_field() {
    let cfg = config(true);
    let params = vec![0.1f32; cfg.param_count()];
    let dir = std::env::temp_dir().join(format!("ane-st-bad-{}", std::process::id()));
    write_dir(&dir, &cfg, &params).unwrap();
    let cfg_path = dir.join("config.json");
    let good = std::fs::read_to_string(&cfg_path).unwrap();
    for (from, to, want) in [
        (
            "\"rope_scaling\": null",
            "\"rope_scaling\": {\"type\": \"linear\"}",
            "rope_scaling",
        ),
        (
            "\"model_type\": \"llama\"",
            "\"model_type\": \"gpt2\"",
            "model_type",
        ),
        (
            "\"hidden_size\": 32",
            "\"hidden_size\": 48",
            "model.embed_tokens.weight",
        ),
        (
            "\"num_hidden_layers\": 2",
            "\"num_hidden_layers\": 1",
            "model.layers.1",
        ),
    ] {
        assert!(good.contains(from), "{from}");
        std::fs::write(&cfg_path, good.replace(from, to)).unwrap();
        let e = read_dir(&dir).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
    std::fs::write(&cfg_path, &good).unwrap();
    let st = dir.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 3]).unwrap();
    let e = read_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("header"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
