//! Fuzz the llama2.c `model.bin` reader: arbitrary bytes must never panic or allocate beyond
//! the input's size, and a version 0 file it accepts writes back to the same bytes.

#![no_main]

use ane_train::formats::llama2c::{to_v0_bytes, Llama2cModel, Llama2cVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(m) = Llama2cModel::from_bytes(bytes, "fuzz") else {
        return;
    };
    if m.version == Llama2cVersion::V0 {
        let out = to_v0_bytes(&m.config, &m.params, m.rope_tables.as_deref()).expect("exportable");
        assert_eq!(out, bytes);
    }
});
