//! Fuzz the llama2.c `tokenizer.bin` reader and the encoder: arbitrary bytes must never panic
//! or allocate beyond the input's size; an accepted file writes back to the same bytes, and
//! encoding any text gives ids inside the vocabulary.

#![no_main]

use ane_train::tokenizer::Llama2cTokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(t) = Llama2cTokenizer::from_bytes(bytes, "fuzz") else {
        return;
    };
    assert_eq!(t.to_bytes(), bytes);
    let text = &bytes[bytes.len() / 2..];
    let ids = t.encode(text, true, true);
    assert!(ids.iter().all(|&id| (id as usize) < t.vocab_size()));
    let _ = t.decode(&ids, true);
});
