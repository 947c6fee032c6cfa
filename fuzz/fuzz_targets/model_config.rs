//! Fuzz the model-config reader (TOML): arbitrary text must never panic, and every config it
//! accepts must print back to TOML that reads as the same config.

#![no_main]

use ane_train::model::ModelConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(cfg) = ModelConfig::from_toml_str(text) else {
        return;
    };
    let again = cfg.to_toml_string().expect("a valid config prints");
    let back = ModelConfig::from_toml_str(&again).expect("printed config reads back");
    assert_eq!(back, cfg);
    // Derived sizes of an accepted config never overflow or panic.
    let _ = (cfg.param_count(), cfg.params().len(), cfg.q_dim(), cfg.kv_dim());
});
