//! Damaged files never panic a reader: valid files are mutated at random (bytes flipped,
//! 4-byte fields set to extreme values, cut, extended) and every reader must return either an
//! error or a model whose arrays match its shape. (The fuzz targets do this at scale.)

use ane_train::formats::llama2c::Llama2cModel;
use ane_train::formats::safetensors::{config_from_json, hf_config, params_from, write_dir};
use ane_train::model::ModelConfig;
use ane_train::rng::Rng;
use ane_train::tokenizer::{Llama2cTokenizer, TextTokenizer};
use safetensors::tensor::SafeTensors;

fn mutate(good: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = good.to_vec();
    match rng.below(4) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            let i = rng.below(b.len().saturating_sub(4).max(1)) & !3;
            let v = [i32::MAX, -1, 0, i32::MIN, 1 << 20][rng.below(5)];
            if i + 4 <= b.len() {
                b[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        2 => b.truncate(rng.below(b.len())),
        _ => b.extend((0..1 + rng.below(16)).map(|_| rng.below(256) as u8)),
    }
    b
}

fn small() -> ModelConfig {
    ModelConfig::from_toml_str(
        "name = \"m\"\ndim = 16\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\nhidden_dim = 32\nvocab_size = 30\nseq_len = 32\n",
    )
    .unwrap()
}

#[test]
fn mutated_tokenizers_and_model_files_are_refused_or_consistent() {
    let mut rng = Rng::new(77);
    let tok = TextTokenizer::Bytes.to_bytes();
    let cfg = small();
    let params: Vec<f32> = (0..cfg.param_count()).map(|i| i as f32).collect();
    let model = ane_train::formats::llama2c::to_v0_bytes(&cfg, &params, None).unwrap();
    for _ in 0..3000 {
        let b = mutate(&tok, &mut rng);
        if let Ok(t) = Llama2cTokenizer::from_bytes(&b, "t") {
            assert_eq!(t.to_bytes(), b);
            let ids = t.encode(&b[..b.len().min(200)], true, true);
            assert!(ids.iter().all(|&id| (id as usize) < t.vocab_size()));
        }
        let b = mutate(&model, &mut rng);
        if let Ok(m) = Llama2cModel::from_bytes(&b, "m") {
            assert_eq!(m.params.len(), m.config.param_count());
        }
    }
}

#[test]
fn mutated_safetensors_and_configs_are_refused_or_consistent() {
    let mut rng = Rng::new(78);
    let cfg = small();
    let params: Vec<f32> = (0..cfg.param_count()).map(|i| i as f32).collect();
    let dir = std::env::temp_dir().join(format!("ane-mut-{}", std::process::id()));
    write_dir(&dir, &cfg, &params).unwrap();
    let st = std::fs::read(dir.join("model.safetensors")).unwrap();
    let json = serde_json::to_vec(&hf_config(&cfg)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    for _ in 0..1500 {
        let j = mutate(&json, &mut rng);
        let text = String::from_utf8_lossy(&j);
        let c = config_from_json(&text, "config.json").unwrap_or_else(|_| cfg.clone());
        let b = mutate(&st, &mut rng);
        if let Ok(parsed) = SafeTensors::deserialize(&b) {
            if let Ok(p) = params_from(&c, &[parsed], &["model.safetensors".into()]) {
                assert_eq!(p.len(), c.param_count());
            }
        }
    }
}
