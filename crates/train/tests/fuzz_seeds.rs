//! The seeds of the format fuzz targets are valid files (so fuzzing starts past the checks)
//! and write back byte for byte.

use ane_train::formats::llama2c::{to_v0_bytes, Llama2cModel};
use ane_train::tokenizer::{Llama2cTokenizer, TextTokenizer};

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../fuzz/seeds/{target}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_llama2c_seed_is_a_version_0_model_that_writes_back_exactly() {
    let bytes = seed("llama2c_read", "micro.bin");
    let m = Llama2cModel::from_bytes(&bytes, "micro.bin").unwrap();
    assert_eq!(
        (m.config.dim, m.config.n_kv_heads, m.config.vocab_size),
        (16, 1, 259)
    );
    assert_eq!(
        to_v0_bytes(&m.config, &m.params, m.rope_tables.as_deref()).unwrap(),
        bytes
    );
}

#[test]
fn the_tokenizer_seed_is_the_byte_tokenizer() {
    let bytes = seed("tokenizer_read", "bytes.bin");
    let t = Llama2cTokenizer::from_bytes(&bytes, "bytes.bin").unwrap();
    assert_eq!(t, TextTokenizer::Bytes.to_llama2c());
    assert_eq!(t.to_bytes(), bytes);
}
