//! Fuzz the Hugging Face import: the first bytes (up to a NUL) are `config.json`, the rest a
//! safetensors file. Nothing may panic; accepted tensors give exactly the model's parameters.

#![no_main]

use ane_train::formats::safetensors::{config_from_json, params_from};
use libfuzzer_sys::fuzz_target;
use safetensors::tensor::SafeTensors;

fuzz_target!(|bytes: &[u8]| {
    let split = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let Ok(text) = std::str::from_utf8(&bytes[..split]) else {
        return;
    };
    let Ok(cfg) = config_from_json(text, "config.json") else {
        return;
    };
    let rest = bytes.get(split + 1..).unwrap_or_default();
    let Ok(st) = SafeTensors::deserialize(rest) else {
        return;
    };
    if let Ok(p) = params_from(&cfg, &[st], &["model.safetensors".to_string()]) {
        assert_eq!(p.len(), cfg.param_count());
    }
});
