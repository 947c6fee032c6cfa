//! The grouped-query-attention head mapping, shared by the host ops and the device kernels.

/// The KV head that query head `h` reads: `h / (n_heads / n_kv_heads)`, i.e. consecutive
/// groups of `n_heads / n_kv_heads` query heads share one KV head (Hugging Face `repeat_kv`).
///
/// Every GQA op — the host tile/reduce in [`crate::host::gqa`] and the device kernels — uses
/// this function, so forward and backward agree. Upstream's forward kernel used
/// `h mod n_kv_heads` while its backward used `h / ratio` (`ane-pitfalls.md` §B): for
/// `n_heads / n_kv_heads > 1` the two disagree, and the gradients were of a different model.
///
/// Requires `n_kv_heads` to divide `n_heads` ([`crate::model::ModelConfig::validate`] checks
/// it); computed as `h·n_kv_heads / n_heads`, equal to `h / ratio` then, and 0 when
/// `n_heads` is 0 (no query head exists).
pub const fn kv_head_of(h: usize, n_heads: usize, n_kv_heads: usize) -> usize {
    match (h * n_kv_heads).checked_div(n_heads) {
        Some(kv) => kv,
        None => 0,
    }
}
