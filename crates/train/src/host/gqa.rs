//! Grouped-query attention: widen K/V from `NKV` heads to `NH` heads (tile) and sum the
//! gradients back (reduce). Query head `h` reads KV head [`kv_head_of`]`(h, NH, NKV)` —
//! the one mapping the device kernels use too.

pub use crate::model::kv_head_of;

use super::{check_len, HostError};

fn check_heads(n_heads: usize, n_kv_heads: usize) -> Result<(), HostError> {
    if n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(HostError::Heads {
            n_heads,
            n_kv_heads,
        });
    }
    Ok(())
}

/// `full[h·HD + j, s] = kv[kv_head_of(h)·HD + j, s]`.
///
/// - out: `full [NH·HD, S]` (overwritten);
/// - in: `kv [NKV·HD, S]`; `NKV` must divide `NH` (else [`HostError::Heads`]).
pub fn gqa_tile(
    full: &mut [f32],
    kv: &[f32],
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    seq: usize,
) -> Result<(), HostError> {
    check_heads(n_heads, n_kv_heads)?;
    check_len("full", full.len(), &[n_heads, head_dim, seq])?;
    check_len("kv", kv.len(), &[n_kv_heads, head_dim, seq])?;
    let block = head_dim * seq;
    if block == 0 {
        return Ok(());
    }
    for (h, dst) in full.chunks_exact_mut(block).enumerate() {
        let g = kv_head_of(h, n_heads, n_kv_heads);
        dst.copy_from_slice(&kv[g * block..][..block]);
    }
    Ok(())
}

/// The adjoint of [`gqa_tile`]: `dkv[g·HD + j, s] += Σ_{h: kv_head_of(h) = g} dfull[h·HD + j, s]`.
///
/// - out: `dkv [NKV·HD, S]` (accumulated);
/// - in: `dfull [NH·HD, S]`; `NKV` must divide `NH` (else [`HostError::Heads`]).
pub fn gqa_reduce(
    dkv: &mut [f32],
    dfull: &[f32],
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    seq: usize,
) -> Result<(), HostError> {
    check_heads(n_heads, n_kv_heads)?;
    check_len("dkv", dkv.len(), &[n_kv_heads, head_dim, seq])?;
    check_len("dfull", dfull.len(), &[n_heads, head_dim, seq])?;
    let block = head_dim * seq;
    if block == 0 {
        return Ok(());
    }
    for (h, src) in dfull.chunks_exact(block).enumerate() {
        let g = kv_head_of(h, n_heads, n_kv_heads);
        for (d, &v) in dkv[g * block..][..block].iter_mut().zip(src) {
            *d += v;
        }
    }
    Ok(())
}
