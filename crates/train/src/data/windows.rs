//! Token windows for training and evaluation.

use crate::rng::Rng;

use super::ByteTokenizer;
use crate::tokenizer::TextTokenizer;

/// What is wrong with the data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// Fewer tokens than one window needs.
    #[error(
        "the {part} data has {have} tokens, fewer than one window of seq_len + 1 = {need}; \
         use a longer corpus or a model with a shorter seq_len"
    )]
    TooShort {
        /// `train` or `eval`.
        part: &'static str,
        /// Tokens there are.
        have: usize,
        /// Tokens one window needs.
        need: usize,
    },
    /// The held-out fraction is outside `[0, 0.5]`.
    #[error("the held-out fraction must be in [0, 0.5], got {0}")]
    BadFraction(f64),
    /// A token id is not below the model's vocabulary size.
    #[error("token id {id} at position {at} is not below the vocabulary size {vocab}")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// Its position.
        at: usize,
        /// The vocabulary size.
        vocab: usize,
    },
}

/// A tokenized corpus split into a training part and a held-out evaluation tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenData {
    /// Training tokens.
    pub train: Vec<u32>,
    /// Held-out tokens (the last documents).
    pub eval: Vec<u32>,
}

/// The index of the first held-out document of `docs`: the one that starts at or after
/// `1 - eval_fraction` of the byte tokens (`BOS` + bytes per document), which is where
/// [`TokenData::from_text`] splits the same text. `docs.len()` when none does or the
/// fraction is 0; the fraction must be in `0..=0.5`.
pub fn held_out_start(docs: &[&[u8]], eval_fraction: f64) -> Result<usize, DataError> {
    if !(0.0..=0.5).contains(&eval_fraction) {
        return Err(DataError::BadFraction(eval_fraction));
    }
    if eval_fraction == 0.0 {
        return Ok(docs.len());
    }
    let total: usize = docs.iter().map(|d| d.len() + 1).sum();
    let want = ((total as f64) * (1.0 - eval_fraction)).round() as usize;
    let mut start = 0;
    for (i, d) in docs.iter().enumerate() {
        if start >= want {
            return Ok(i);
        }
        start += d.len() + 1;
    }
    Ok(docs.len())
}

impl TokenData {
    /// Splits `text` into documents at blank lines, encodes each as `BOS` + bytes, and holds
    /// out the documents that make up the last `eval_fraction` of the tokens (`0..=0.5`).
    pub fn from_text(text: &[u8], eval_fraction: f64) -> Result<TokenData, DataError> {
        Self::from_text_with(text, eval_fraction, &TextTokenizer::Bytes)
    }

    /// [`from_text`](Self::from_text) with any tokenizer: each document is `tok`'s ids of it,
    /// BOS first.
    pub fn from_text_with(
        text: &[u8],
        eval_fraction: f64,
        tok: &TextTokenizer,
    ) -> Result<TokenData, DataError> {
        let mut tokens = Vec::with_capacity(text.len() + text.len() / 64);
        for doc in split_documents(text) {
            tokens.extend(tok.encode(doc, true));
        }
        Self::from_ids(tokens, eval_fraction)
    }

    /// Encodes `docs` with `tok` (BOS first in each), holding out the documents from
    /// `first_held_out` on (see [`held_out_start`]).
    pub fn from_documents(docs: &[&[u8]], first_held_out: usize, tok: &TextTokenizer) -> TokenData {
        let at = first_held_out.min(docs.len());
        let encode = |part: &[&[u8]]| part.iter().flat_map(|d| tok.encode(d, true)).collect();
        TokenData {
            train: encode(&docs[..at]),
            eval: encode(&docs[at..]),
        }
    }

    /// Splits a token stream whose documents start with BOS: the held-out part starts at the
    /// first BOS at or after `1 - eval_fraction` of the tokens (none when there is no such BOS).
    pub fn from_ids(mut tokens: Vec<u32>, eval_fraction: f64) -> Result<TokenData, DataError> {
        if !(0.0..=0.5).contains(&eval_fraction) {
            return Err(DataError::BadFraction(eval_fraction));
        }
        let starts: Vec<usize> = tokens
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == ByteTokenizer::BOS)
            .map(|(i, _)| i)
            .collect();
        let want = ((tokens.len() as f64) * (1.0 - eval_fraction)).round() as usize;
        // Split at the first document start at or after `want`, so no document is cut.
        let at = if eval_fraction == 0.0 {
            tokens.len()
        } else {
            starts
                .iter()
                .copied()
                .find(|&s| s >= want)
                .unwrap_or(tokens.len())
        };
        let eval = tokens.split_off(at);
        Ok(TokenData {
            train: tokens,
            eval,
        })
    }

    /// Checks every id is below `vocab` and the training part holds a window of `seq + 1`.
    pub fn check(&self, vocab: usize, seq: usize) -> Result<(), DataError> {
        for (at, &id) in self.train.iter().chain(&self.eval).enumerate() {
            if id as usize >= vocab {
                return Err(DataError::TokenOutOfRange { id, at, vocab });
            }
        }
        if self.train.len() < seq + 1 {
            return Err(DataError::TooShort {
                part: "train",
                have: self.train.len(),
                need: seq + 1,
            });
        }
        Ok(())
    }

    /// Up to `n` windows of `seq + 1` held-out tokens at evenly spaced starts (the same every
    /// time); empty when the held-out part is shorter than one window.
    pub fn eval_windows(&self, seq: usize, n: usize) -> Vec<&[u32]> {
        let len = seq + 1;
        if self.eval.len() < len || n == 0 {
            return Vec::new();
        }
        let room = self.eval.len() - len;
        let n = n.min(room + 1);
        (0..n)
            .map(|i| {
                let start = if n == 1 { 0 } else { room * i / (n - 1) };
                &self.eval[start..start + len]
            })
            .collect()
    }
}

/// The non-empty documents of `text`, separated by blank lines (whitespace-only lines count
/// as blank), each trimmed of surrounding blank lines.
pub fn split_documents(text: &[u8]) -> Vec<&[u8]> {
    let mut docs = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    let mut pos = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let blank = line.iter().all(u8::is_ascii_whitespace);
        if blank {
            if let Some(s) = start.take() {
                docs.push(&text[s..end]);
            }
        } else {
            start.get_or_insert(pos);
            end = pos + line.len();
        }
        pos += line.len();
    }
    if let Some(s) = start {
        docs.push(&text[s..end]);
    }
    docs
}

/// Draws training windows at uniformly random starts. Its whole state is one `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSampler {
    rng: Rng,
}

impl WindowSampler {
    /// A sampler seeded from `seed`.
    pub fn new(seed: u64) -> WindowSampler {
        WindowSampler {
            rng: Rng::new(seed ^ 0xD1B5_4A32_D192_ED03),
        }
    }

    /// The sampler whose [`WindowSampler::state`] is `state` (`None` for an invalid state).
    pub fn from_state(state: u64) -> Option<WindowSampler> {
        Rng::from_state(state).map(|rng| WindowSampler { rng })
    }

    /// The state, for checkpoints.
    pub fn state(&self) -> u64 {
        self.rng.state()
    }

    /// The next window of `seq + 1` tokens of `tokens`.
    pub fn next<'a>(&mut self, tokens: &'a [u32], seq: usize) -> Result<&'a [u32], DataError> {
        let len = seq + 1;
        if tokens.len() < len {
            return Err(DataError::TooShort {
                part: "train",
                have: tokens.len(),
                need: len,
            });
        }
        let start = self.rng.below(tokens.len() - len + 1);
        Ok(&tokens[start..start + len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_split_matches_the_byte_token_split() {
        let text = crate::data::corpus::builtin();
        let docs = split_documents(text.as_bytes());
        for f in [0.0, 0.05, 0.3, 0.5] {
            let at = held_out_start(&docs, f).unwrap();
            let by_docs = TokenData::from_documents(&docs, at, &TextTokenizer::Bytes);
            let by_tokens = TokenData::from_text(text.as_bytes(), f).unwrap();
            assert_eq!(by_docs.train, by_tokens.train, "fraction {f}");
            assert_eq!(by_docs.eval, by_tokens.eval, "fraction {f}");
        }
        assert!(held_out_start(&docs, 0.6).is_err());
        assert_eq!(held_out_start(&[], 0.1).unwrap(), 0);
    }

    #[test]
    fn documents_split_at_blank_lines_and_hold_out_whole_documents() {
        let text = b"\n\nab\ncd\n\n \n\nef\n\n\ngh";
        assert_eq!(
            split_documents(text),
            vec![&b"ab\ncd\n"[..], &b"ef\n"[..], &b"gh"[..]]
        );
        let d = TokenData::from_text(text, 0.3).unwrap();
        assert_eq!(d.train[0], ByteTokenizer::BOS);
        assert_eq!(
            d.eval,
            vec![ByteTokenizer::BOS, b'g' as u32 + 3, b'h' as u32 + 3]
        );
        assert_eq!(d.train.len() + d.eval.len(), 7 + 4 + 3);
        let all = TokenData::from_text(text, 0.0).unwrap();
        assert!(all.eval.is_empty());
        assert!(matches!(
            TokenData::from_text(text, 0.9),
            Err(DataError::BadFraction(_))
        ));
    }

    #[test]
    fn check_rejects_short_data_and_large_ids() {
        let d = TokenData::from_text(b"hello", 0.0).unwrap();
        assert!(d.check(259, 5).is_ok());
        let e = d.check(259, 6).unwrap_err().to_string();
        assert!(
            e.contains("6 tokens, fewer than one window of seq_len + 1 = 7"),
            "{e}"
        );
        let e = d.check(100, 2).unwrap_err().to_string();
        assert!(e.contains("not below the vocabulary size 100"), "{e}");
    }

    #[test]
    fn windows_are_in_range_deterministic_and_resumable() {
        let tokens: Vec<u32> = (0..100).collect();
        let mut a = WindowSampler::new(5);
        let mut seen_first = false;
        let mut seen_last = false;
        for _ in 0..2000 {
            let w = a.next(&tokens, 9).unwrap();
            assert_eq!(w.len(), 10);
            assert_eq!(w[9], w[0] + 9);
            seen_first |= w[0] == 0;
            seen_last |= w[9] == 99;
        }
        assert!(seen_first && seen_last);
        let mut b = WindowSampler::from_state(a.state()).unwrap();
        assert_eq!(a.next(&tokens, 9).unwrap(), b.next(&tokens, 9).unwrap());
        assert!(a.next(&tokens[..5], 9).is_err());
    }

    #[test]
    fn eval_windows_are_fixed_and_cover_the_tail() {
        let d = TokenData {
            train: vec![],
            eval: (0..50).collect(),
        };
        let w = d.eval_windows(9, 3);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0][0], 0);
        assert_eq!(w[2][9], 49);
        assert!(d.eval_windows(60, 3).is_empty());
    }
}
