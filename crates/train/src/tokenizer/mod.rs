//! Tokenizers: llama2.c's `tokenizer.bin` format ([`Llama2cTokenizer`]: read, write, encode,
//! decode exactly as llama2.c does), BPE training ([`train_bpe`]) and [`TextTokenizer`], the
//! one a model is trained with (the byte tokenizer or a `tokenizer.bin`).
//!
//! `tokenizer.bin` layout (little-endian): `i32 max_token_length`, then for each id in order
//! until the end of the file: `f32 score`, `i32 len`, `len` bytes of the piece (no NUL).
//! Ids 0, 1, 2 are `<unk>`, BOS and EOS; ids `3 + b` are the byte-fallback pieces `<0xBB>`.
//! Pieces spell a word-initial space as a plain space (llama2.c's export turns `▁` into ` `).

mod encode;
mod text;
mod train;

pub use text::TextTokenizer;
pub use train::{train_bpe, TrainError};

use std::collections::HashMap;
use std::path::Path;

use crate::formats::{count, read_file, write_file_atomic, Cursor, FormatError};

/// Beginning-of-sequence id.
pub const BOS: u32 = 1;
/// End-of-sequence id.
pub const EOS: u32 = 2;
/// Id of byte 0 in byte fallback (`byte + 3`).
pub const BYTE_OFFSET: u32 = 3;
/// Fewest pieces a `tokenizer.bin` must have: 3 specials and 256 byte-fallback pieces.
pub const MIN_VOCAB: usize = 259;
/// Most pieces accepted (the largest preset vocabulary is 151,936; the bound keeps a damaged
/// file from building a huge table).
pub const MAX_VOCAB: usize = 1 << 20;

/// Every byte value once, so a byte-fallback piece can be returned as a slice.
static BYTES: [u8; 256] = {
    let mut b = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        b[i] = i as u8;
        i += 1;
    }
    b
};

/// A llama2.c tokenizer: pieces (byte strings) with scores, in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct Llama2cTokenizer {
    pieces: Vec<Vec<u8>>,
    scores: Vec<f32>,
    max_token_length: u32,
    /// Piece → lowest id spelling it.
    index: HashMap<Vec<u8>, u32>,
}

impl Llama2cTokenizer {
    /// A tokenizer of `pieces` and their `scores` (same length, at least [`MIN_VOCAB`]);
    /// `max_token_length` is the longest piece.
    pub fn new(pieces: Vec<Vec<u8>>, scores: Vec<f32>) -> Result<Self, FormatError> {
        let max = pieces.iter().map(Vec::len).max().unwrap_or(0);
        let max = u32::try_from(max)
            .ok()
            .filter(|&m| m <= i32::MAX as u32)
            .ok_or_else(|| FormatError::invalid("tokenizer", "max_token_length", "too long"))?;
        Self::from_parts(pieces, scores, max, "tokenizer")
    }

    fn from_parts(
        pieces: Vec<Vec<u8>>,
        scores: Vec<f32>,
        max_token_length: u32,
        file: &str,
    ) -> Result<Self, FormatError> {
        if pieces.len() != scores.len() {
            return Err(FormatError::invalid(
                file,
                "scores",
                format!("{} scores for {} pieces", scores.len(), pieces.len()),
            ));
        }
        if !(MIN_VOCAB..=MAX_VOCAB).contains(&pieces.len()) {
            return Err(FormatError::invalid(
                file,
                "vocab_size",
                format!(
                    "{} pieces; a llama2.c tokenizer has {MIN_VOCAB}..={MAX_VOCAB} (3 specials \
                     and 256 byte-fallback pieces at least)",
                    pieces.len()
                ),
            ));
        }
        let mut index = HashMap::with_capacity(pieces.len());
        for (id, p) in pieces.iter().enumerate().rev() {
            index.insert(p.clone(), id as u32);
        }
        Ok(Llama2cTokenizer {
            pieces,
            scores,
            max_token_length,
            index,
        })
    }

    /// Parses `tokenizer.bin` bytes; `file` names them in errors.
    pub fn from_bytes(bytes: &[u8], file: &str) -> Result<Self, FormatError> {
        let mut c = Cursor::new(bytes, file);
        let max = c.i32("max_token_length")?;
        let max = count(&c, max, "max_token_length")?;
        let (mut pieces, mut scores) = (Vec::new(), Vec::new());
        while c.remaining() > 0 {
            let id = pieces.len();
            if id >= MAX_VOCAB {
                return Err(c.err("vocab_size", format!("more than {MAX_VOCAB} pieces")));
            }
            scores.push(c.f32(&format!("pieces[{id}].score"))?);
            let field = format!("pieces[{id}].len");
            let len = c.i32(&field)?;
            let len = count(&c, len, &field)?;
            if len > max {
                return Err(c.err(
                    field,
                    format!("{len} is longer than max_token_length {max}"),
                ));
            }
            pieces.push(c.take(len, &format!("pieces[{id}].bytes"))?.to_vec());
        }
        Self::from_parts(pieces, scores, max as u32, file)
    }

    /// Reads a `tokenizer.bin` file.
    pub fn read(path: &Path) -> Result<Self, FormatError> {
        Self::from_bytes(&read_file(path)?, &path.display().to_string())
    }

    /// The file bytes; [`from_bytes`](Self::from_bytes) of them gives back an equal
    /// tokenizer, and of a file read, the same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let total: usize = self.pieces.iter().map(|p| 8 + p.len()).sum();
        let mut out = Vec::with_capacity(4 + total);
        out.extend_from_slice(&(self.max_token_length as i32).to_le_bytes());
        for (p, s) in self.pieces.iter().zip(&self.scores) {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&(p.len() as i32).to_le_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    /// Writes the file atomically.
    pub fn write(&self, path: &Path) -> Result<(), FormatError> {
        write_file_atomic(path, &self.to_bytes())
    }

    /// Number of pieces (ids).
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The piece of `id` as stored (`None` past the vocabulary).
    pub fn piece(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id as usize).map(Vec::as_slice)
    }

    /// The score of `id`.
    pub fn score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// The lowest id whose piece is `piece`.
    pub fn id_of(&self, piece: &[u8]) -> Option<u32> {
        self.index.get(piece).copied()
    }

    /// The bytes `id` stands for after `prev`, as llama2.c decodes: a piece `<0xHH>` (`<0x`
    /// and one or two hex digits) is that byte; after BOS a leading space is dropped; ids past
    /// the vocabulary give nothing.
    pub fn decode_piece(&self, prev: u32, id: u32) -> &[u8] {
        let Some(mut p) = self.piece(id) else {
            return &[];
        };
        if prev == BOS && p.first() == Some(&b' ') {
            p = &p[1..];
        }
        match byte_piece(p) {
            Some(b) => &BYTES[b as usize..=b as usize],
            None => p,
        }
    }

    /// The text of `ids` (each piece decoded after the one before it, the first after BOS
    /// when `after_bos`), as bytes.
    pub fn decode(&self, ids: &[u32], after_bos: bool) -> Vec<u8> {
        let mut prev = if after_bos { BOS } else { 0 };
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.decode_piece(prev, id));
            prev = id;
        }
        out
    }
}

/// Whether llama2.c's `run.c` prints a decoded piece: not when it is empty, nor when it is
/// one byte that is neither printable ASCII nor whitespace (raw control bytes).
pub fn is_printable(piece: &[u8]) -> bool {
    match piece {
        [] => false,
        [b] => (0x20..=0x7e).contains(b) || matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        _ => true,
    }
}

/// The byte a piece `<0xH>` / `<0xHH>` names (hex digits of either case).
fn byte_piece(p: &[u8]) -> Option<u8> {
    let rest = p.strip_prefix(b"<0x")?;
    let digits = rest
        .iter()
        .take(2)
        .take_while(|b| b.is_ascii_hexdigit())
        .count();
    if digits == 0 {
        return None;
    }
    let s = std::str::from_utf8(&rest[..digits]).ok()?;
    u8::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests;
