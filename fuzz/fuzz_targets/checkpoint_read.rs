//! Fuzz the checkpoint reader: arbitrary bytes must never panic or allocate beyond the input's
//! size, and every checkpoint it accepts must write back to the same bytes.

#![no_main]

use ane_train::checkpoint::{read_from, write_to};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(ck) = read_from(bytes, bytes.len() as u64) else {
        return;
    };
    let out = write_to(Vec::new(), &ck.header, &ck.params, &ck.m, &ck.v, &ck.tokenizer).expect("in-memory write");
    let again = read_from(&out[..], out.len() as u64).expect("re-read of a written checkpoint");
    assert_eq!(again.header, ck.header);
    assert_eq!(again.tokenizer, ck.tokenizer);
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&again.params), bits(&ck.params));
    assert_eq!(bits(&again.m), bits(&ck.m));
    assert_eq!(bits(&again.v), bits(&ck.v));
});
