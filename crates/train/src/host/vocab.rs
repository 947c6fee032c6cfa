//! Vocabulary compaction: train the classifier over only the token ids that occur in the data.
//!
//! With a 32K–152K vocabulary and TinyStories-like data, ~9K ids are active; the classifier
//! GEMMs and the softmax then cost a fraction of the full-vocabulary ones. What it changes:
//! the softmax, and so the loss, run over the ACTIVE ids only — inactive ids get no
//! probability mass and their classifier rows no gradient — so the loss is not the
//! full-vocabulary loss (it is lower or equal) and is only comparable between runs that use
//! the same compaction. The embedding itself stays full-size.

use std::fmt;

use super::embedding::check_ids;
use super::{check_len, HostError};

/// The active ids of a token stream, and the maps between full and compact ids.
/// Compact id `c` is the `c`-th smallest active full id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocabCompaction {
    full_vocab: usize,
    compact_to_full: Vec<u32>,
    /// `u32::MAX` for ids that are not active.
    full_to_compact: Vec<u32>,
}

/// What a [`VocabCompaction`] changes, for the run report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionReport {
    /// Vocabulary size before (the model's `V`).
    pub full_vocab: usize,
    /// Vocabulary size after: the number of distinct ids in the data.
    pub compact_vocab: usize,
}

impl fmt::Display for CompactionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vocabulary compaction: {} -> {} active ids; softmax and loss run over the active \
             ids only (not comparable to a full-vocabulary loss)",
            self.full_vocab, self.compact_vocab
        )
    }
}

const INACTIVE: u32 = u32::MAX;

impl VocabCompaction {
    /// The compaction of `tokens` (a whole training stream) for a vocabulary of
    /// `full_vocab` ids; every id must be `< full_vocab` (else
    /// [`HostError::TokenOutOfRange`]).
    pub fn from_tokens(tokens: &[u32], full_vocab: usize) -> Result<VocabCompaction, HostError> {
        check_ids("tokens", tokens, full_vocab)?;
        let mut seen = vec![false; full_vocab];
        for &t in tokens {
            seen[t as usize] = true;
        }
        let mut full_to_compact = vec![INACTIVE; full_vocab];
        let mut compact_to_full = Vec::new();
        for (id, _) in seen.iter().enumerate().filter(|(_, &s)| s) {
            // `id < full_vocab`, and every token (< full_vocab) is a u32, so both fit u32.
            full_to_compact[id] = compact_to_full.len() as u32;
            compact_to_full.push(id as u32);
        }
        Ok(VocabCompaction {
            full_vocab,
            compact_to_full,
            full_to_compact,
        })
    }

    /// Vocabulary size before compaction.
    pub fn full_vocab(&self) -> usize {
        self.full_vocab
    }

    /// Vocabulary size after compaction `CV` (number of active ids).
    pub fn compact_vocab(&self) -> usize {
        self.compact_to_full.len()
    }

    /// The active full ids, ascending (`compact → full`).
    pub fn active_ids(&self) -> &[u32] {
        &self.compact_to_full
    }

    /// The compact id of full id `id`, `None` when it is not active.
    pub fn to_compact(&self, id: u32) -> Option<u32> {
        self.full_to_compact
            .get(id as usize)
            .copied()
            .filter(|&c| c != INACTIVE)
    }

    /// The full id of compact id `c`, `None` when `c >= CV`.
    pub fn to_full(&self, c: u32) -> Option<u32> {
        self.compact_to_full.get(c as usize).copied()
    }

    /// `out[s] = compact id of targets[s]`.
    ///
    /// - out: `out [S]` (overwritten); in: `targets [S]` (each active, else
    ///   [`HostError::NotInCompaction`]).
    pub fn map_targets(&self, out: &mut [u32], targets: &[u32]) -> Result<(), HostError> {
        check_len("out", out.len(), &[targets.len()])?;
        for (o, &t) in out.iter_mut().zip(targets) {
            *o = self
                .to_compact(t)
                .ok_or(HostError::NotInCompaction { token: t })?;
        }
        Ok(())
    }

    /// `cembed[c, :] = embed[active[c], :]`: the compact classifier weight.
    ///
    /// - out: `cembed [CV, D]` (overwritten); in: `embed [V, D]`.
    pub fn gather_rows(
        &self,
        cembed: &mut [f32],
        embed: &[f32],
        dim: usize,
    ) -> Result<(), HostError> {
        check_len("cembed", cembed.len(), &[self.compact_vocab(), dim])?;
        check_len("embed", embed.len(), &[self.full_vocab, dim])?;
        if dim == 0 {
            return Ok(());
        }
        for (row, &id) in cembed.chunks_exact_mut(dim).zip(&self.compact_to_full) {
            row.copy_from_slice(&embed[id as usize * dim..][..dim]);
        }
        Ok(())
    }

    /// `dembed[active[c], :] += dcembed[c, :]`: the compact classifier gradient, scattered
    /// back.
    ///
    /// - out: `dembed [V, D]` (accumulated); in: `dcembed [CV, D]`.
    pub fn scatter_add_rows(
        &self,
        dembed: &mut [f32],
        dcembed: &[f32],
        dim: usize,
    ) -> Result<(), HostError> {
        check_len("dembed", dembed.len(), &[self.full_vocab, dim])?;
        check_len("dcembed", dcembed.len(), &[self.compact_vocab(), dim])?;
        if dim == 0 {
            return Ok(());
        }
        for (row, &id) in dcembed.chunks_exact(dim).zip(&self.compact_to_full) {
            for (d, &g) in dembed[id as usize * dim..][..dim].iter_mut().zip(row) {
                *d += g;
            }
        }
        Ok(())
    }

    /// What this compaction changes.
    pub fn report(&self) -> CompactionReport {
        CompactionReport {
            full_vocab: self.full_vocab,
            compact_vocab: self.compact_vocab(),
        }
    }
}
