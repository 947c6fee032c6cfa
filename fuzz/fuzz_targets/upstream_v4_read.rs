//! Fuzz the maderix/ANE checkpoint reader: arbitrary bytes must never panic or allocate
//! beyond the input's size, and an accepted file has three arrays of the model's size.

#![no_main]

use ane_train::formats::upstream_v4::UpstreamCheckpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(u) = UpstreamCheckpoint::from_bytes(bytes, "fuzz") else {
        return;
    };
    let n = u.config.param_count();
    assert!(u.params.len() == n && u.m.len() == n && u.v.len() == n);
});
