//! The KV-cached decoder's logits against the full forward pass of [`Model::logits_at`] on
//! the CPU device, position by position, for grouped-query attention with `n_heads·head_dim
//! ≠ dim`, a residual scale, and tied and untied classifiers.

use ane_train::generate::{generate, Decoder, Sampler};
use ane_train::kernels::WeightMode;
use ane_train::llama::Model;
use ane_train::model::ModelConfig;
use ane_train::rng::Rng;

fn config(extra: &str) -> ModelConfig {
    ModelConfig::from_toml_str(&format!(
        r#"
        name = "gen"
        dim = 32
        n_layers = 2
        n_heads = 4
        n_kv_heads = 2
        head_dim = 16
        hidden_dim = 64
        vocab_size = 48
        seq_len = 32
        {extra}
        "#
    ))
    .unwrap()
}

fn params(cfg: &ModelConfig, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..cfg.param_count())
        .map(|_| 0.4 * rng.symmetric())
        .collect()
}

#[test]
fn cached_logits_equal_the_full_forward_pass() {
    let mha = ModelConfig {
        n_kv_heads: 4,
        head_dim: 8,
        rope_theta: 500.0,
        ..config("")
    };
    for (extra, seed) in [
        ("residual_scale = 0.5", 3),
        ("tied_classifier = false", 4),
        ("", 5),
    ] {
        let cfg = if seed == 5 {
            mha.clone()
        } else {
            config(extra)
        };
        let p = params(&cfg, seed);
        let dev = ane_runtime::open("cpu").unwrap();
        let mut model = Model::new(cfg.clone(), dev, WeightMode::Params, p.clone()).unwrap();
        let mut dec = Decoder::new(&cfg, &p).unwrap();
        let mut rng = Rng::new(seed);
        let tokens: Vec<u32> = (0..cfg.seq_len)
            .map(|_| rng.below(cfg.vocab_size) as u32)
            .collect();
        let mut worst = 0.0f32;
        for pos in 0..cfg.seq_len {
            let cached = dec.step(tokens[pos]).unwrap().to_vec();
            let full = model.logits_at(&tokens, pos).unwrap();
            let scale = full.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            for (a, b) in cached.iter().zip(&full) {
                worst = worst.max((a - b).abs() / scale);
            }
        }
        assert!(worst < 1e-4, "{extra}: worst relative difference {worst}");
        assert!(
            dec.step(0).is_err(),
            "the cache is full after seq_len positions"
        );
    }
}

#[test]
fn generation_forces_the_prompt_and_streams_greedy_tokens() {
    let cfg = config("");
    let p = params(&cfg, 9);
    let mut dec = Decoder::new(&cfg, &p).unwrap();
    let prompt = [1u32, 10, 11, 12];
    let mut streamed = Vec::new();
    let out = generate(
        &mut dec,
        &prompt,
        20,
        &mut Sampler::new(0.0, 0.9, 1),
        |prev, next| streamed.push((prev, next)),
    )
    .unwrap();
    assert_eq!(&out[..4], &prompt);
    assert_eq!(streamed.len(), out.len() - 1);
    // Every generated token is the argmax of the logits after the tokens before it.
    let mut check = Decoder::new(&cfg, &p).unwrap();
    for w in out.windows(2).enumerate() {
        let (i, pair) = w;
        let logits = check.step(pair[0]).unwrap();
        if i + 1 >= prompt.len() {
            let best = Sampler::new(0.0, 0.0, 1).sample(logits);
            assert_eq!(pair[1], best);
        }
    }
    assert!(
        out.len() <= 21,
        "20 steps give at most 20 tokens after the first"
    );
    let e = generate(&mut dec, &[], 5, &mut Sampler::new(0.0, 0.0, 1), |_, _| {});
    assert!(e.is_err());
}
