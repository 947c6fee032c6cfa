//! The encoder against an independent, naive implementation of llama2.c's rules written
//! here (linear vocabulary search, full rescans for the best pair, `char`-based splitting),
//! on tokenizers generated for the test.

use super::*;
use crate::rng::Rng;

/// The texts every check runs on.
const TEXTS: &[&str] = &[
    "",
    "a",
    " ",
    "Once upon a time, there was a little girl named Lily.",
    "Héllo, naïve café — déjà vu!",
    "日本語のテキストと中文字符",
    "emoji 🙂👍🏽 and 🧑‍💻 mixed",
    "tabs\tand\nnewlines\n\n  double  spaces   triple",
    "     ",
    "\u{7f}\u{1}control\u{1b}[0m",
    "the the the then there these",
    "ab abab ababab aaaa bbbb",
];

/// The pieces: specials, 256 byte pieces, every char of the texts, then substrings of up to
/// 4 chars of their words, scored pseudo-randomly from few values (so ties happen), some
/// below llama2.c's merge floor.
fn test_tokenizer(seed: u64, with_space: bool) -> Llama2cTokenizer {
    let mut rng = Rng::new(seed);
    let mut pieces: Vec<Vec<u8>> =
        vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
    pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()));
    let mut scores = vec![0.0f32; pieces.len()];
    let add = |p: Vec<u8>, rng: &mut Rng, scores: &mut Vec<f32>, pieces: &mut Vec<Vec<u8>>| {
        if !with_space && p == b" " {
            return;
        }
        if pieces.contains(&p) && rng.below(4) != 0 {
            return;
        }
        let s = match rng.below(10) {
            0 => -2e10,
            k => -(k as f32),
        };
        pieces.push(p);
        scores.push(s);
    };
    for t in TEXTS {
        for c in t.chars() {
            if rng.below(5) != 0 {
                add(
                    c.to_string().into_bytes(),
                    &mut rng,
                    &mut scores,
                    &mut pieces,
                );
            }
        }
        let spaced = format!(" {t}");
        let chars: Vec<(usize, char)> = spaced.char_indices().collect();
        for i in 0..chars.len() {
            for len in 2..=4 {
                if i + len <= chars.len() && rng.below(3) == 0 {
                    let end = chars.get(i + len).map_or(spaced.len(), |c| c.0);
                    add(
                        spaced.as_bytes()[chars[i].0..end].to_vec(),
                        &mut rng,
                        &mut scores,
                        &mut pieces,
                    );
                }
            }
        }
    }
    Llama2cTokenizer::new(pieces, scores).unwrap()
}

/// llama2.c's rules, written naively.
fn naive_encode(t: &Llama2cTokenizer, text: &str, bos: bool, eos: bool) -> Vec<u32> {
    let lookup = |s: &[u8]| (0..t.vocab_size() as u32).find(|&i| t.piece(i) == Some(s));
    let mut ids = Vec::new();
    if bos {
        ids.push(1);
    }
    if !text.is_empty() {
        ids.push(lookup(b" ").unwrap_or(35));
    }
    for c in text.chars() {
        let mut buf = [0u8; 4];
        let s = c.encode_utf8(&mut buf).as_bytes();
        match lookup(s) {
            Some(id) => ids.push(id),
            None => ids.extend(s.iter().map(|&b| b as u32 + 3)),
        }
    }
    let start = usize::from(bos);
    loop {
        let mut best: Option<(f32, usize, u32)> = None;
        for i in start..ids.len().saturating_sub(1) {
            let mut cat = t.piece(ids[i]).unwrap().to_vec();
            cat.extend_from_slice(t.piece(ids[i + 1]).unwrap());
            if let Some(id) = lookup(&cat) {
                let s = t.score(id).unwrap();
                if s > best.map_or(-1e10, |b| b.0) {
                    best = Some((s, i, id));
                }
            }
        }
        let Some((_, i, id)) = best else { break };
        ids[i] = id;
        ids.remove(i + 1);
    }
    if eos {
        ids.push(2);
    }
    ids
}

#[test]
fn encode_matches_the_independent_implementation_on_varied_text() {
    for seed in 1..=6 {
        let t = test_tokenizer(seed, seed % 3 != 0);
        for (k, text) in TEXTS.iter().enumerate() {
            let (bos, eos) = (k % 2 == 0, k % 3 == 0);
            let got = t.encode(text.as_bytes(), bos, eos);
            assert_eq!(
                got,
                naive_encode(&t, text, bos, eos),
                "seed {seed}, text {text:?}"
            );
            assert!(got.iter().all(|&id| (id as usize) < t.vocab_size()));
        }
    }
}

#[test]
fn decode_inverts_encode_and_drops_the_space_after_bos() {
    let t = test_tokenizer(7, true);
    for text in TEXTS {
        let ids = t.encode(text.as_bytes(), true, false);
        // After BOS, the dummy prefix's leading space is dropped, as llama2.c prints it.
        assert_eq!(t.decode(&ids[1..], true), text.as_bytes(), "{text:?}");
    }
    let space = t.id_of(b" ").unwrap();
    assert_eq!(t.decode_piece(BOS, space), b"");
    assert_eq!(t.decode_piece(5, space), b" ");
    assert_eq!(t.decode_piece(0, 3 + 0x41), b"A");
    assert_eq!(t.decode_piece(0, u32::MAX), b"");
    assert!(!is_printable(b"\x01") && is_printable(b"\n") && is_printable(b"ab"));
    assert!(!is_printable(b""));
}

#[test]
fn invalid_utf8_and_nul_follow_the_c_rules() {
    let bytes = TextTokenizer::Bytes.to_llama2c();
    let mut pieces: Vec<Vec<u8>> = (0..259).map(|i| bytes.piece(i).unwrap().to_vec()).collect();
    pieces.push("🙂".as_bytes().to_vec());
    let t = Llama2cTokenizer::new(pieces, vec![0.0; 260]).unwrap();
    // A lead byte with five continuation bytes: the character is cut after 4 bytes (the
    // emoji piece), the fifth continuation byte stands alone; nothing after the NUL counts.
    let ids = t.encode(b"\xf0\x9f\x99\x82\x80\0ignored", false, false);
    assert_eq!(ids, vec![35, 259, 0x80 + 3]);
    // A character not in the vocabulary falls back to its bytes.
    assert_eq!(
        t.encode("é".as_bytes(), false, false),
        vec![35, 0xc3 + 3, 0xa9 + 3]
    );
    assert_eq!(t.encode(b"\0abc", true, true), vec![BOS, EOS]);
}

#[test]
fn files_round_trip_byte_exact_and_bad_files_are_refused() {
    let t = test_tokenizer(3, true);
    let bytes = t.to_bytes();
    let back = Llama2cTokenizer::from_bytes(&bytes, "t.bin").unwrap();
    assert_eq!(back, t);
    assert_eq!(back.to_bytes(), bytes);
    for cut in [0, 3, 4, 7, 11, bytes.len() - 1] {
        let e = Llama2cTokenizer::from_bytes(&bytes[..cut], "t.bin")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.bin: `"), "{e}");
    }
    let mut long = bytes.clone();
    long[4 + 4..4 + 8].copy_from_slice(&i32::MAX.to_le_bytes());
    let e = Llama2cTokenizer::from_bytes(&long, "t.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("pieces[0].len"), "{e}");
    let mut neg = bytes.clone();
    neg[..4].copy_from_slice(&(-1i32).to_le_bytes());
    let e = Llama2cTokenizer::from_bytes(&neg, "t.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_token_length"), "{e}");
    let small = TextTokenizer::Bytes.to_bytes();
    let few = &small[..small.len() - 14];
    let e = Llama2cTokenizer::from_bytes(few, "t.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("vocab_size"), "{e}");
}

#[test]
fn the_byte_tokenizer_as_tokenizer_bin_decodes_every_byte() {
    let t = TextTokenizer::Bytes.to_llama2c();
    assert_eq!(t.vocab_size(), 259);
    let all: Vec<u32> = (3..259).collect();
    assert_eq!(t.decode(&all, false), (0..=255u8).collect::<Vec<u8>>());
    // Every printable character is its own piece; nothing merges.
    assert_eq!(
        t.encode(b"hi!", false, false),
        vec![35, 3 + 104, 3 + 105, 3 + 33]
    );
}
