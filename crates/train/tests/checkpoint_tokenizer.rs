//! Checkpoints carry the tokenizer the model was trained with (format version 2).

use ane_train::checkpoint::{self, CorpusInfo, TrainSettings};
use ane_train::kernels::WeightMode;
use ane_train::llama::{init_params, Model};
use ane_train::model::ModelConfig;
use ane_train::optim::{AdamWConfig, Schedule};
use ane_train::tokenizer::{Llama2cTokenizer, TextTokenizer};
use ane_train::trainer::Trainer;

fn bpe() -> Llama2cTokenizer {
    let base = TextTokenizer::Bytes.to_llama2c();
    let mut pieces: Vec<Vec<u8>> = (0..259).map(|i| base.piece(i).unwrap().to_vec()).collect();
    pieces.extend([b"he".to_vec(), b" the".to_vec(), b"th".to_vec()]);
    let scores = (0..pieces.len()).map(|i| -(i as f32)).collect();
    Llama2cTokenizer::new(pieces, scores).unwrap()
}

#[test]
fn a_saved_checkpoint_reads_back_with_its_tokenizer() {
    let cfg = ModelConfig::from_toml_str(
        "name = \"c\"\ndim = 16\nn_layers = 1\nn_heads = 2\nhidden_dim = 32\nvocab_size = 270\nseq_len = 32\n",
    )
    .unwrap();
    let dev = ane_runtime::open("cpu").unwrap();
    let model = Model::new(cfg.clone(), dev, WeightMode::Params, init_params(&cfg, 1)).unwrap();
    let settings = TrainSettings {
        steps: 5,
        accum: 1,
        batch: 1,
        schedule: Schedule {
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 0,
            total: 5,
        },
        adamw: AdamWConfig::default(),
        seed: 1,
    };
    let tok = TextTokenizer::Llama2c(bpe());
    let t = Trainer::new(model, settings, CorpusInfo::of("x", b"x"))
        .unwrap()
        .with_tokenizer(tok.clone());
    let path = std::env::temp_dir().join(format!("ane-ckpt-tok-{}.bin", std::process::id()));
    t.save(&path).unwrap();
    let ck = checkpoint::read(&path).unwrap();
    assert_eq!(ck.tokenizer, tok);
    assert_eq!(ck.header, t.header());
    assert_eq!(ck.header.tokenizer_bytes as usize, bpe().to_bytes().len());
    // A damaged tokenizer section is refused (the digest is recomputed so only the section is wrong).
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.len() - 32;
    let start = end - ck.header.tokenizer_bytes as usize;
    bytes[start..start + 4].copy_from_slice(&(-1i32).to_le_bytes());
    use sha2::Digest;
    let digest = sha2::Sha256::digest(&bytes[..end]);
    bytes[end..].copy_from_slice(&digest);
    let e = checkpoint::read_from(&bytes[..], bytes.len() as u64)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tokenizer section") && e.contains("max_token_length"),
        "{e}"
    );
    let _ = std::fs::remove_file(&path);
}
