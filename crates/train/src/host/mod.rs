//! Host ops: the parts of a training step that run on the CPU, on channel-first `[C, S]`
//! row-major f32 slices (element `(c, s)` at `c·S + s`, the layout of a device Surface).
//!
//! Legend: `D` dim, `S` seq (columns = positions), `HID` hidden, `NH` heads, `NKV` KV heads,
//! `HD` head dim, `V` vocab.
//!
//! Conventions (llm.c style):
//! - arguments go outputs, then inputs, then dims;
//! - forward ops OVERWRITE their outputs;
//! - backward ops ACCUMULATE (`+=`) into every `d*` buffer they are given, weight gradients
//!   and activation gradients alike; the caller zeroes weight gradients once per optimizer
//!   step and activation-gradient buffers before their first use in a step;
//! - every slice length is checked against its dims: a mismatch is a [`HostError`], never a
//!   panic.
//!
//! Each op has a plain f64 reference in `tests/host_ops.rs`, and each backward is also
//! checked by central finite differences of its forward.

pub mod attention;
mod attention_tiled;
pub mod embedding;
pub mod fused_loss;
pub mod gemm;
pub mod gqa;
mod isa;
pub mod loss;
pub mod residual;
pub mod rmsnorm;
pub mod rope;
pub mod silu;
pub mod vocab;

pub use attention::{attention_backward, attention_forward, AttentionDims, AttentionWorkspace};
pub use embedding::{embedding_backward, embedding_forward};
pub use fused_loss::{classifier_loss, LossGrads, LossWorkspace};
pub use gemm::{matmul, overlap_dw, DwGemm, Gemm};
pub use gqa::{gqa_reduce, gqa_tile};
pub use loss::{classifier_backward, classifier_forward, cross_entropy};
pub use residual::{residual_backward, residual_forward};
pub use rmsnorm::{rmsnorm_backward, rmsnorm_forward};
pub use rope::{rope_backward, rope_forward, RopeTable};
pub use silu::{swiglu_backward, swiglu_forward};
pub use vocab::{CompactionReport, VocabCompaction};

/// What is wrong with the arguments of a host op.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// A buffer does not have the length its dims imply.
    #[error("`{what}` has {got} elements, expected {expected}")]
    Len {
        /// The argument.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length its dims imply.
        expected: usize,
    },
    /// The dims of a buffer overflow `usize`.
    #[error("the dims of `{what}` overflow usize")]
    Overflow {
        /// The argument.
        what: &'static str,
    },
    /// A token id is not below the vocabulary size.
    #[error("{what}[{index}] = {token} is not a valid id (vocabulary size {vocab})")]
    TokenOutOfRange {
        /// `tokens` or `targets`.
        what: &'static str,
        /// Position in the slice.
        index: usize,
        /// The id.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// A token id is not among the active ids of a vocabulary compaction.
    #[error(
        "token {token} does not occur in the data the vocabulary was compacted from; \
         rebuild the compaction from the full token stream"
    )]
    NotInCompaction {
        /// The id.
        token: u32,
    },
    /// The head counts do not form a grouped-query layout.
    #[error("{n_heads} query heads cannot share {n_kv_heads} KV heads evenly")]
    Heads {
        /// Query heads.
        n_heads: usize,
        /// KV heads.
        n_kv_heads: usize,
    },
    /// RoPE needs an even head dimension.
    #[error("head dim {head_dim} must be even for RoPE")]
    HeadDimOdd {
        /// The head dimension.
        head_dim: usize,
    },
    /// A RoPE table does not cover the op's head dim or sequence length.
    #[error("RoPE table is for head dim {table_head_dim} and {table_seq} positions, op needs {head_dim} and {seq}")]
    RopeTable {
        /// Head dim of the table.
        table_head_dim: usize,
        /// Positions in the table.
        table_seq: usize,
        /// Head dim of the op.
        head_dim: usize,
        /// Positions of the op.
        seq: usize,
    },
    /// An op that averages over columns was given none.
    #[error("`{what}` has no columns to average over")]
    Empty {
        /// The argument.
        what: &'static str,
    },
}

/// Checks that `got` equals the product of `dims`.
pub(crate) fn check_len(what: &'static str, got: usize, dims: &[usize]) -> Result<(), HostError> {
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or(HostError::Overflow { what })?;
    if got == expected {
        Ok(())
    } else {
        Err(HostError::Len {
            what,
            got,
            expected,
        })
    }
}
