//! Fuzz the training-text reader: any bytes split into documents and tokens without panicking,
//! every token is a byte id or BOS, the held-out split keeps every token, and the byte tokens
//! decode back to the document bytes.

#![no_main]

use ane_train::data::{ByteTokenizer, TokenData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((&frac, text)) = bytes.split_first() else {
        return;
    };
    let fraction = f64::from(frac) / 510.0; // 0 ..= 0.5
    let d = TokenData::from_text(text, fraction).expect("fraction in range");
    let all: Vec<u32> = d.train.iter().chain(&d.eval).copied().collect();
    assert!(all.iter().all(|&t| t == ByteTokenizer::BOS || (3..259).contains(&t)));
    let non_blank = text.iter().filter(|b| !b.is_ascii_whitespace()).count();
    let decoded = ByteTokenizer.decode_bytes(&all);
    assert_eq!(decoded.iter().filter(|b| !b.is_ascii_whitespace()).count(), non_blank);
    let _ = d.check(259, 15);
    let _ = d.eval_windows(15, 4);
});
