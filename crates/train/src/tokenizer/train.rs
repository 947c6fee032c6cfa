//! BPE training: merges learned by Hugging Face's `tokenizers` BPE trainer on SentencePiece-
//! style words, converted here into a llama2.c `tokenizer.bin` (what no crate writes).
//!
//! Words: a space starts a word and belongs to it (`" upon"`), as SentencePiece's `▁` does
//! and as llama2.c's dummy prefix expects; other whitespace characters (newline, tab) are
//! words of their own, so no piece spans a line break. The vocabulary: `<unk>`, `\n<s>\n`,
//! `\n</s>\n`, the 256 byte-fallback pieces `<0xBB>` (score 0), then the trainer's pieces in
//! the order it created them — its alphabet, then each merge — scored `-order`, so llama2.c's
//! "highest score first" merges in the order training learned them.

use std::collections::HashSet;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::Trainer;

use super::{Llama2cTokenizer, MIN_VOCAB};

/// What went wrong training a tokenizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The requested size cannot hold the fixed pieces or does not fit `u16` token files.
    #[error("vocabulary size {0} must be in {min}..=65536 (3 specials + 256 byte pieces + at least one learned piece)", min = MIN_VOCAB + 1)]
    VocabSize(usize),
    /// The corpus has no text to learn from.
    #[error("the corpus has no words to learn from")]
    EmptyCorpus,
    /// The BPE trainer failed.
    #[error("BPE training failed: {0}")]
    Bpe(String),
}

/// Splits a document into training words (see the module documentation).
fn words(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in doc.chars() {
        if c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if c != ' ' {
                out.push(c.to_string());
                continue;
            }
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Learns a tokenizer of `vocab_size` ids from `documents` (each gets llama2.c's dummy-prefix
/// space, as encoding will give it). Fewer ids result when the corpus has too few distinct
/// merges; the tokenizer is always valid.
pub fn train_bpe<S: AsRef<str> + Send>(
    documents: impl Iterator<Item = S> + Send,
    vocab_size: usize,
) -> Result<Llama2cTokenizer, TrainError> {
    if !(MIN_VOCAB + 1..=1 << 16).contains(&vocab_size) {
        return Err(TrainError::VocabSize(vocab_size));
    }
    let learned = vocab_size - MIN_VOCAB;
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(learned)
        .min_frequency(2)
        .show_progress(false)
        .limit_alphabet(learned)
        .initial_alphabet(HashSet::from([' ']))
        .max_token_length(Some(32))
        .build();
    let bpe_err = |e: Box<dyn std::error::Error + Send + Sync>| TrainError::Bpe(e.to_string());
    trainer
        .feed(documents, |doc| {
            let text = if doc.is_empty() {
                String::new()
            } else {
                format!(" {doc}")
            };
            Ok(words(&text))
        })
        .map_err(bpe_err)?;
    let mut model = BPE::default();
    trainer.train(&mut model).map_err(bpe_err)?;
    let mut learned: Vec<(u32, String)> =
        model.get_vocab().into_iter().map(|(s, i)| (i, s)).collect();
    if learned.is_empty() {
        return Err(TrainError::EmptyCorpus);
    }
    learned.sort();
    let mut pieces: Vec<Vec<u8>> =
        vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
    pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()));
    let mut scores = vec![0.0f32; pieces.len()];
    let mut seen: HashSet<Vec<u8>> = pieces.iter().cloned().collect();
    for (order, piece) in learned {
        let bytes = piece.into_bytes();
        if seen.insert(bytes.clone()) {
            pieces.push(bytes);
            scores.push(-(order as f32));
        }
    }
    Llama2cTokenizer::new(pieces, scores).map_err(|e| TrainError::Bpe(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{corpus, split_documents};

    #[test]
    fn words_keep_their_leading_space_and_isolate_other_whitespace() {
        assert_eq!(
            words(" Once upon\na  time"),
            [" Once", " upon", "\n", "a", " ", " time"]
        );
    }

    #[test]
    fn a_trained_tokenizer_compresses_the_corpus_and_round_trips_it() {
        let text = corpus::builtin();
        let docs: Vec<&str> = split_documents(text.as_bytes())
            .into_iter()
            .take(300)
            .filter_map(|d| std::str::from_utf8(d).ok())
            .collect();
        let t = train_bpe(docs.iter(), 512).unwrap();
        assert_eq!(t.vocab_size(), 512);
        assert!(t.id_of(b" ").is_some(), "the dummy-prefix piece exists");
        let bytes = t.to_bytes();
        assert_eq!(Llama2cTokenizer::from_bytes(&bytes, "t").unwrap(), t);
        let (mut n_bytes, mut n_ids) = (0, 0);
        for doc in &docs[..50] {
            let ids = t.encode(doc.as_bytes(), true, false);
            assert_eq!(t.decode(&ids[1..], true), doc.as_bytes());
            n_bytes += doc.len();
            n_ids += ids.len();
        }
        assert!(
            n_bytes as f64 / n_ids as f64 > 2.0,
            "{n_bytes} bytes -> {n_ids} ids"
        );
        assert!(matches!(
            train_bpe(docs.iter(), 259),
            Err(TrainError::VocabSize(259))
        ));
    }
}
