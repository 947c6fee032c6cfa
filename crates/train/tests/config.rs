//! Model configs: presets, parameter counts and table, TOML round trip, and each rule of
//! `ModelConfig::validate` with its exact error.

use ane_train::model::{ConfigError, ModelConfig, ParamKind, PRESETS};

/// A valid small config in TOML, with `extra` lines replacing/adding keys.
fn toml_with(extra: &[(&str, &str)]) -> String {
    let mut keys = vec![
        ("name", "\"tiny\""),
        ("dim", "64"),
        ("n_layers", "2"),
        ("n_heads", "4"),
        ("n_kv_heads", "2"),
        ("hidden_dim", "172"),
        ("vocab_size", "512"),
        ("seq_len", "32"),
    ];
    for &(k, v) in extra {
        match keys.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = v,
            None => keys.push((k, v)),
        }
    }
    keys.iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect()
}

fn err_of(extra: &[(&str, &str)]) -> ConfigError {
    ModelConfig::from_toml_str(&toml_with(extra)).expect_err("config should be rejected")
}

#[test]
fn every_preset_validates_with_its_parameter_count() {
    // (name, transformer params incl. final norm, embedding params), hand-computed from the
    // shapes; Stories110M matches the reference table (84.95 M + 24.58 M = 109.53 M) and
    // Qwen3-0.6B (440.46 M + 155.58 M = 596.0 M).
    let want = [
        ("tiny", 231_104, 32_768),
        ("stories260k", 227_264, 32_768),
        ("stories15m", 5_975_712, 9_216_000),
        ("stories42m", 25_305_600, 16_384_000),
        ("stories110m", 84_953_856, 24_576_000),
        ("qwen3-0.6b", 440_460_288, 155_582_464),
    ];
    assert_eq!(PRESETS.len(), want.len());
    for (name, transformer, embed) in want {
        let cfg = ModelConfig::preset(name).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.name, name);
        assert!(cfg.tied_classifier, "{name}");
        assert_eq!(cfg.param_count(), transformer + embed, "{name}");
        assert_eq!(cfg.vocab_size * cfg.dim, embed, "{name}");
    }
    let s110 = ModelConfig::preset("stories110m").unwrap();
    assert_eq!((s110.param_count() as f64 / 1e4).round() / 100.0, 109.53);
    assert_eq!(s110.seq_len, 256);
    assert_eq!(s110.residual_alpha(), 1.0);
}

#[test]
fn preset_shapes_and_derived_widths() {
    let t = ModelConfig::preset("stories260k").unwrap();
    assert_eq!(
        (t.dim, t.n_layers, t.n_heads, t.n_kv_heads, t.head_dim),
        (64, 5, 8, 4, 8)
    );
    assert_eq!((t.hidden_dim, t.vocab_size, t.seq_len), (172, 512, 512));
    assert_eq!((t.q_dim(), t.kv_dim(), t.gqa_ratio()), (64, 32, 2));

    let q = ModelConfig::preset("qwen3-0.6b").unwrap();
    assert_eq!((q.q_dim(), q.kv_dim(), q.gqa_ratio()), (2048, 1024, 2));
    assert_eq!(
        (q.dim, q.hidden_dim, q.vocab_size, q.seq_len),
        (1024, 3072, 151_936, 256)
    );
    assert_eq!(q.rope_theta, 10_000.0);
    assert_eq!(q.norm_eps, 1e-5);
    assert!((q.residual_alpha() - 0.1336).abs() < 1e-4);
    assert_eq!(
        q.residual_scale,
        Some(ModelConfig::deepnet_residual_scale(28))
    );
    assert!((ModelConfig::deepnet_residual_scale(12) - 0.2041).abs() < 1e-4);

    for name in ["stories15m", "stories42m", "stories110m"] {
        let c = ModelConfig::preset(name).unwrap();
        assert_eq!((c.gqa_ratio(), c.q_dim()), (1, c.dim), "{name}");
        assert_eq!(c.residual_scale, None, "{name}");
    }
}

#[test]
fn unknown_preset_lists_the_known_ones() {
    let e = ModelConfig::preset("gpt2").unwrap_err();
    assert!(matches!(e, ConfigError::UnknownPreset { .. }));
    assert_eq!(
        e.to_string(),
        "unknown model preset `gpt2` (known presets: tiny, stories260k, stories15m, stories42m, \
         stories110m, qwen3-0.6b)"
    );
}

#[test]
fn toml_round_trip_of_every_preset() {
    for name in PRESETS {
        let cfg = ModelConfig::preset(name).unwrap();
        let text = cfg.to_toml_string().unwrap();
        assert_eq!(
            ModelConfig::from_toml_str(&text).unwrap(),
            cfg,
            "{name}:\n{text}"
        );
    }
    let untied = ModelConfig {
        tied_classifier: false,
        rope_theta: 1e6,
        norm_eps: 1e-6,
        residual_scale: Some(0.5),
        ..ModelConfig::preset("stories260k").unwrap()
    };
    let text = untied.to_toml_string().unwrap();
    assert_eq!(ModelConfig::from_toml_str(&text).unwrap(), untied);
}

#[test]
fn toml_defaults() {
    let cfg = ModelConfig::from_toml_str(&toml_with(&[("n_kv_heads", "")])).unwrap();
    assert_eq!(cfg.name, "tiny");
    assert_eq!((cfg.n_kv_heads, cfg.head_dim), (4, 16));
    assert_eq!((cfg.rope_theta, cfg.norm_eps), (10_000.0, 1e-5));
    assert!(cfg.tied_classifier);
    assert_eq!(cfg.residual_scale, None);
    assert_eq!(cfg.residual_alpha(), 1.0);
}

#[test]
fn explicit_head_dim_may_make_q_dim_differ_from_dim() {
    let cfg = ModelConfig::from_toml_str(&toml_with(&[("head_dim", "32")])).unwrap();
    assert_eq!((cfg.dim, cfg.q_dim(), cfg.kv_dim()), (64, 128, 64));
    // dim need not be a multiple of n_heads when head_dim is given.
    let cfg = ModelConfig::from_toml_str(&toml_with(&[("dim", "100"), ("head_dim", "16")]));
    assert_eq!(cfg.unwrap().q_dim(), 64);
}

#[test]
fn vocab_is_exempt_from_the_dimension_limit() {
    let cfg = ModelConfig::from_toml_str(&toml_with(&[("vocab_size", "151936")])).unwrap();
    assert_eq!(cfg.vocab_size, 151_936);
}

#[test]
fn toml_file_and_missing_file() {
    let dir = std::env::temp_dir().join(format!("ane-train-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.toml");
    std::fs::write(&path, toml_with(&[])).unwrap();
    assert_eq!(ModelConfig::from_toml_file(&path).unwrap().dim, 64);
    std::fs::remove_dir_all(&dir).unwrap();
    let e = ModelConfig::from_toml_file(&path).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }), "{e:?}");
    assert!(e
        .to_string()
        .starts_with(&format!("cannot read model config {}: ", path.display())));
}

#[test]
fn serde_deserialization_validates_too() {
    let ok: ModelConfig = toml::from_str(&toml_with(&[])).unwrap();
    assert_eq!(ok.n_kv_heads, 2);
    let bad = toml::from_str::<ModelConfig>(&toml_with(&[("seq_len", "40")])).unwrap_err();
    assert!(
        bad.to_string()
            .contains("`seq_len` 40 must be a multiple of 16"),
        "{bad}"
    );
}

#[test]
fn bad_configs_each_give_their_exact_error() {
    let cases: Vec<(&[(&str, &str)], &str)> = vec![
        (&[("name", "\"\"")], "model config `name` must not be empty"),
        (
            &[("dim", "0"), ("head_dim", "16")],
            "model config `dim` must be > 0",
        ),
        (&[("n_layers", "0")], "model config `n_layers` must be > 0"),
        (&[("n_heads", "0")], "model config `n_heads` must be > 0"),
        (
            &[("vocab_size", "0")],
            "model config `vocab_size` must be > 0",
        ),
        (
            &[("dim", "100"), ("n_heads", "8"), ("n_kv_heads", "8")],
            "`dim` 100 is not a multiple of `n_heads` 8: set `head_dim` explicitly (the query \
             width is then n_heads·head_dim, which may differ from dim)",
        ),
        (
            &[("dim", "60"), ("n_heads", "4"), ("n_kv_heads", "4")],
            "`head_dim` 15 must be even (RoPE rotates channel pairs)",
        ),
        (
            &[("n_heads", "8"), ("n_kv_heads", "3")],
            "`n_heads` 8 must be a multiple of `n_kv_heads` 3 (each KV head serves \
             n_heads/n_kv_heads query heads)",
        ),
        (
            &[("n_heads", "4"), ("n_kv_heads", "8"), ("head_dim", "16")],
            "`n_heads` 4 must be a multiple of `n_kv_heads` 8 (each KV head serves \
             n_heads/n_kv_heads query heads)",
        ),
        (
            &[("seq_len", "40")],
            "`seq_len` 40 must be a multiple of 16 (ANE surface width rule)",
        ),
        (
            &[("seq_len", "16")],
            "`seq_len` 16 must be >= 32 (ANE surface width rule)",
        ),
        (
            &[("hidden_dim", "70000")],
            "`hidden_dim` is 70000, above the device limit of 65536 per dimension",
        ),
        (
            &[("n_heads", "64"), ("n_kv_heads", "1"), ("head_dim", "2048")],
            "`q_dim` is 131072, above the device limit of 65536 per dimension",
        ),
        (
            &[("seq_len", "65552")],
            "`seq_len` is 65552, above the device limit of 65536 per dimension",
        ),
        (
            &[("norm_eps", "0.0")],
            "`norm_eps` is 0; it must be finite and > 0",
        ),
        (
            &[("rope_theta", "-1.0")],
            "`rope_theta` is -1; it must be finite and > 0",
        ),
        (
            &[("residual_scale", "nan")],
            "`residual_scale` is NaN; it must be finite and > 0",
        ),
    ];
    for (extra, want) in cases {
        let e = err_of(extra);
        assert_eq!(e.to_string(), want, "{extra:?}");
    }
    // The variants, for the ones a caller would match on.
    assert!(matches!(
        err_of(&[("seq_len", "40")]),
        ConfigError::SeqNotMultiple { seq_len: 40 }
    ));
    assert!(matches!(
        err_of(&[("n_heads", "8"), ("n_kv_heads", "3")]),
        ConfigError::HeadsNotDivisible {
            n_heads: 8,
            n_kv_heads: 3
        }
    ));
    assert!(matches!(
        err_of(&[("hidden_dim", "70000")]),
        ConfigError::TooLarge {
            field: "hidden_dim",
            value: 70000
        }
    ));
}

#[test]
fn unknown_and_missing_toml_keys_are_rejected() {
    let e = err_of(&[("dropout", "0.1")]);
    assert!(matches!(e, ConfigError::Toml(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("invalid model config TOML: "), "{msg}");
    assert!(msg.contains("unknown field `dropout`"), "{msg}");

    let e = err_of(&[("dim", "")]);
    assert!(e.to_string().contains("missing field `dim`"), "{e}");

    let e = err_of(&[("dim", "\"wide\"")]);
    assert!(matches!(e, ConfigError::Toml(_)), "{e:?}");
}

#[test]
fn validate_catches_hand_built_configs() {
    let mut cfg = ModelConfig::preset("stories15m").unwrap();
    cfg.head_dim = 47;
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::HeadDimOdd { head_dim: 47 })
    ));
    cfg.head_dim = 48;
    cfg.vocab_size = usize::MAX / 2;
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::VocabTooLarge { .. })
    ));
}

#[test]
fn param_table_is_contiguous_and_named_for_hugging_face() {
    for name in PRESETS {
        let cfg = ModelConfig::preset(name).unwrap();
        let table = cfg.params();
        assert_eq!(table.len(), 2 + 9 * cfg.n_layers, "{name}");
        let mut offset = 0;
        for p in &table {
            assert_eq!(p.offset, offset, "{name} {}", p.name);
            assert_eq!(p.range(), offset..offset + p.numel());
            assert_eq!(p.shape, p.kind.shape(&cfg));
            offset += p.numel();
        }
        assert_eq!(offset, cfg.param_count(), "{name}");
    }

    let q = ModelConfig::preset("qwen3-0.6b").unwrap();
    let table = q.params();
    let find = |hf: &str| table.iter().find(|p| p.hf_name == hf).unwrap();
    assert_eq!(find("model.embed_tokens.weight").shape, vec![151_936, 1024]);
    let wq = find("model.layers.3.self_attn.q_proj.weight");
    assert_eq!(
        (wq.kind, wq.layer, wq.shape.clone()),
        (ParamKind::Wq, Some(3), vec![2048, 1024])
    );
    assert_eq!(wq.name, "layers.3.attention.wq.weight");
    assert_eq!(
        find("model.layers.3.self_attn.k_proj.weight").shape,
        vec![1024, 1024]
    );
    assert_eq!(
        find("model.layers.27.self_attn.o_proj.weight").shape,
        vec![1024, 2048]
    );
    assert_eq!(
        find("model.layers.0.mlp.gate_proj.weight").shape,
        vec![3072, 1024]
    );
    assert_eq!(
        find("model.layers.0.mlp.up_proj.weight").shape,
        vec![3072, 1024]
    );
    assert_eq!(
        find("model.layers.0.mlp.down_proj.weight").shape,
        vec![1024, 3072]
    );
    assert_eq!(
        find("model.layers.0.input_layernorm.weight").shape,
        vec![1024]
    );
    assert_eq!(
        find("model.layers.0.post_attention_layernorm.weight").shape,
        vec![1024]
    );
    assert_eq!(find("model.norm.weight").shape, vec![1024]);
    assert!(table.iter().all(|p| p.hf_name != "lm_head.weight"));
    assert_eq!(
        table.iter().filter(|p| p.kind.is_norm()).count(),
        2 * 28 + 1
    );

    let untied = ModelConfig {
        tied_classifier: false,
        ..ModelConfig::preset("stories260k").unwrap()
    };
    let table = untied.params();
    let last = table.last().unwrap();
    assert_eq!(
        (last.hf_name.as_str(), last.name.as_str()),
        ("lm_head.weight", "output.weight")
    );
    assert_eq!(last.shape, vec![512, 64]);
    assert_eq!(untied.param_count(), 260_032 + 512 * 64);
}
