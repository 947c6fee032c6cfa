//! [`TextTokenizer`]: the tokenizer a model is trained with — the byte tokenizer or a
//! llama2.c `tokenizer.bin` — behind one interface for training, tokenizing and generation.

use crate::data::ByteTokenizer;

use super::{Llama2cTokenizer, BOS, BYTE_OFFSET};

/// The tokenizer of a model.
#[derive(Debug, Clone, PartialEq)]
pub enum TextTokenizer {
    /// Every byte is a token ([`ByteTokenizer`]; no dummy prefix, no merges).
    Bytes,
    /// A llama2.c tokenizer (BPE pieces with scores, byte fallback).
    Llama2c(Llama2cTokenizer),
}

impl TextTokenizer {
    /// Number of ids.
    pub fn vocab_size(&self) -> usize {
        match self {
            TextTokenizer::Bytes => ByteTokenizer::VOCAB_SIZE,
            TextTokenizer::Llama2c(t) => t.vocab_size(),
        }
    }

    /// The ids of one document: BOS when `bos`, then the text's ids (a llama2.c tokenizer
    /// adds its dummy-prefix space before non-empty text, as llama2.c does).
    pub fn encode(&self, text: &[u8], bos: bool) -> Vec<u32> {
        match self {
            TextTokenizer::Bytes => {
                let mut ids = Vec::with_capacity(text.len() + 1);
                if bos {
                    ids.push(ByteTokenizer::BOS);
                }
                ids.extend(ByteTokenizer.encode(text));
                ids
            }
            TextTokenizer::Llama2c(t) => t.encode(text, bos, false),
        }
    }

    /// The bytes `id` stands for when it follows `prev` (specials give nothing for the byte
    /// tokenizer; see [`Llama2cTokenizer::decode_piece`] for the other).
    pub fn decode_piece(&self, prev: u32, id: u32) -> Vec<u8> {
        match self {
            TextTokenizer::Bytes => ByteTokenizer.decode_bytes(&[id]),
            TextTokenizer::Llama2c(t) => t.decode_piece(prev, id).to_vec(),
        }
    }

    /// The text of `ids` that follow `prev`.
    pub fn decode(&self, prev: u32, ids: &[u32]) -> Vec<u8> {
        let mut prev = prev;
        let mut out = Vec::new();
        for &id in ids {
            out.extend(self.decode_piece(prev, id));
            prev = id;
        }
        out
    }

    /// This tokenizer as a llama2.c `tokenizer.bin`. For the byte tokenizer: `<unk>`,
    /// `\n<s>\n`, `\n</s>\n`, then byte `b` at id `b + 3` spelled as itself when printable
    /// ASCII (so llama2.c finds the `" "` piece it prefixes), else as `<0xBB>`; all scores 0,
    /// and no piece is the concatenation of two others, so nothing ever merges. (llama2.c's
    /// encoder adds its dummy-prefix space before a prompt, which ours does not.)
    pub fn to_llama2c(&self) -> Llama2cTokenizer {
        match self {
            TextTokenizer::Llama2c(t) => t.clone(),
            TextTokenizer::Bytes => {
                let mut pieces: Vec<Vec<u8>> =
                    vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
                pieces.extend((0..=255u8).map(|b| {
                    if (0x20..=0x7e).contains(&b) {
                        vec![b]
                    } else {
                        format!("<0x{b:02X}>").into_bytes()
                    }
                }));
                let scores = vec![0.0; pieces.len()];
                debug_assert_eq!(pieces.len(), BYTE_OFFSET as usize + 256);
                // 259 pieces, none longer than i32::MAX: `new` cannot fail.
                Llama2cTokenizer::new(pieces, scores).unwrap_or_else(|_| unreachable!())
            }
        }
    }

    /// The `tokenizer.bin` bytes of [`to_llama2c`](Self::to_llama2c).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_llama2c().to_bytes()
    }

    /// The first id of a document ([`BOS`] for both kinds).
    pub fn bos(&self) -> u32 {
        BOS
    }
}
