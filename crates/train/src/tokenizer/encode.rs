//! llama2.c's encoder: the ids its `encode` gives for any byte string.
//!
//! 1. BOS when asked; then, when the text is not empty, the id of the piece `" "` (the
//!    dummy prefix that makes the first word look like every other word).
//! 2. The text is cut into UTF-8 characters: a byte that is not a continuation byte
//!    (`10xxxxxx`) starts a new character, and a character ends before a non-continuation
//!    byte or after 4 bytes. A character that is a piece becomes its id; otherwise each of its
//!    bytes becomes `byte + 3` (byte fallback).
//! 3. While some adjacent pair concatenates to a piece whose score is above `-1e10`, the pair
//!    with the highest score — the leftmost among equals — is merged into that piece.
//! 4. EOS when asked.
//!
//! The text ends at its first NUL byte, as a C string does. Step 3 runs with a heap over
//! candidate pairs (O(n log n)) rather than llama2.c's rescans (O(n²)); it merges the same
//! pairs in the same order, because the left end of a merged symbol keeps the position of
//! its first character, so "leftmost" is the same order in both. Deviation: when the
//! tokenizer has no `" "` piece llama2.c emits the invalid id -1 as dummy prefix; we emit
//! the byte fallback of a space (`35`). Where several ids spell the same piece, the lowest
//! is used (llama2.c's binary search may find any of them).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::{Llama2cTokenizer, BOS, BYTE_OFFSET, EOS};

/// Pairs scoring at or below this never merge (llama2.c's initial best score).
const NO_MERGE: f32 = -1e10;

/// A mergeable adjacent pair: the symbol at `left` and the next one form `id`.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    left: usize,
    /// Lengths of the two symbols when the pair was found (stale if either changed).
    len_left: usize,
    len_right: usize,
    id: u32,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// Higher score first, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// One symbol of the sequence being merged, in a linked list over character positions.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    id: u32,
    /// Bytes of text it covers (0 once merged into its left neighbour).
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl Llama2cTokenizer {
    /// The ids llama2.c's `encode` gives for `text`, with BOS first when `bos` and EOS last
    /// when `eos` (see the module documentation for the rules).
    pub fn encode(&self, text: &[u8], bos: bool, eos: bool) -> Vec<u32> {
        let text = &text[..text.iter().position(|&b| b == 0).unwrap_or(text.len())];
        let mut out = Vec::with_capacity(text.len() + 3);
        if bos {
            out.push(BOS);
        }
        let mut syms = Vec::with_capacity(text.len() + 1);
        if !text.is_empty() {
            let id = self.id_of(b" ").unwrap_or(u32::from(b' ') + BYTE_OFFSET);
            syms.push((id, 1));
        }
        let mut start = 0;
        while start < text.len() {
            let mut end = start + 1;
            while end < text.len() && end - start < 4 && text[end] & 0xC0 == 0x80 {
                end += 1;
            }
            match self.id_of(&text[start..end]) {
                Some(id) => syms.push((id, end - start)),
                None => syms.extend(
                    text[start..end]
                        .iter()
                        .map(|&b| (u32::from(b) + BYTE_OFFSET, 1)),
                ),
            }
            start = end;
        }
        out.extend(self.merge(&syms));
        if eos {
            out.push(EOS);
        }
        out
    }

    /// Merges `(id, length)` symbols by score (step 3).
    fn merge(&self, initial: &[(u32, usize)]) -> Vec<u32> {
        let n = initial.len();
        let mut syms: Vec<Symbol> = initial
            .iter()
            .enumerate()
            .map(|(i, &(id, len))| Symbol {
                id,
                len,
                prev: i.checked_sub(1),
                next: (i + 1 < n).then_some(i + 1),
            })
            .collect();
        let mut heap = BinaryHeap::new();
        let mut buf = Vec::new();
        for i in 0..n.saturating_sub(1) {
            self.push_pair(&mut heap, &syms, i, &mut buf);
        }
        while let Some(c) = heap.pop() {
            let Some(r) = syms[c.left].next else {
                continue;
            };
            if syms[c.left].len != c.len_left || syms[c.left].len == 0 || syms[r].len != c.len_right
            {
                continue;
            }
            // The pair is current: merge right into left.
            syms[c.left].id = c.id;
            syms[c.left].len += syms[r].len;
            syms[r].len = 0;
            let after = syms[r].next;
            syms[c.left].next = after;
            if let Some(a) = after {
                syms[a].prev = Some(c.left);
            }
            if let Some(p) = syms[c.left].prev {
                self.push_pair(&mut heap, &syms, p, &mut buf);
            }
            self.push_pair(&mut heap, &syms, c.left, &mut buf);
        }
        let mut out = Vec::with_capacity(n);
        let mut at = (n > 0).then_some(0);
        while let Some(i) = at {
            out.push(syms[i].id);
            at = syms[i].next;
        }
        out
    }

    /// Adds the pair starting at `left` when it concatenates to a piece that may merge.
    fn push_pair(
        &self,
        heap: &mut BinaryHeap<Candidate>,
        syms: &[Symbol],
        left: usize,
        buf: &mut Vec<u8>,
    ) {
        let Some(right) = syms[left].next else {
            return;
        };
        let (a, b) = (syms[left].id, syms[right].id);
        let (Some(pa), Some(pb)) = (self.piece(a), self.piece(b)) else {
            return;
        };
        buf.clear();
        buf.extend_from_slice(pa);
        buf.extend_from_slice(pb);
        if let Some(id) = self.id_of(buf) {
            let score = self.scores[id as usize];
            if score > NO_MERGE {
                heap.push(Candidate {
                    score,
                    left,
                    len_left: syms[left].len,
                    len_right: syms[right].len,
                    id,
                });
            }
        }
    }
}
