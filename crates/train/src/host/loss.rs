//! Classifier and cross-entropy over the vocabulary (full, or compacted by
//! [`super::VocabCompaction`]).
//!
//! Reference: PyTorch `torch.nn.functional.cross_entropy` (mean reduction),
//! <https://pytorch.org/docs/stable/generated/torch.nn.functional.cross_entropy.html>.

use super::embedding::check_ids;
use super::gemm::{check_gemm, matmul, overlap_dw, DwGemm, Gemm};
use super::{check_len, HostError};

/// `logits = W·x`, with `W` the classifier weight (the embedding when tied).
///
/// - out: `logits [V, S]` (overwritten);
/// - in: `weight [V, D]`, `x [D, S]` (the final-norm output).
pub fn classifier_forward(
    logits: &mut [f32],
    weight: &[f32],
    x: &[f32],
    vocab: usize,
    dim: usize,
    seq: usize,
) -> Result<(), HostError> {
    matmul(logits, weight, x, Gemm::new(vocab, seq, dim))
}

/// Mean cross-entropy over the `S` columns, and its gradient in place of the logits.
///
/// Per column `s`: `p = softmax(logits[:, s])` (max-subtracted),
/// `loss_s = logsumexp(logits[:, s]) − logits[targets[s], s]` (exact log-softmax, no `+1e-10`),
/// `loss = mean_s loss_s`; then `logits[:, s]` is overwritten with
/// `dlogits = dloss · (p − onehot(targets[s])) / S`, the gradient of `dloss·loss`
/// (`dloss` = 1, or the loss scale for fp16 backward).
///
/// - in/out: `logits [V, S]` in, `dlogits [V, S]` out (overwritten);
/// - in: `targets [S]` (each `< V`, else [`HostError::TokenOutOfRange`]); `S > 0`.
///
/// Returns the mean loss (natural log).
pub fn cross_entropy(
    logits: &mut [f32],
    targets: &[u32],
    vocab: usize,
    dloss: f32,
) -> Result<f32, HostError> {
    let seq = targets.len();
    if seq == 0 {
        return Err(HostError::Empty { what: "targets" });
    }
    check_len("logits", logits.len(), &[vocab, seq])?;
    check_ids("targets", targets, vocab)?;
    // Pass 1: per-column max.
    let mut max = vec![f32::NEG_INFINITY; seq];
    for row in logits.chunks_exact(seq) {
        for (m, &l) in max.iter_mut().zip(row) {
            *m = m.max(l);
        }
    }
    // Pass 2: the target logits, then exp(l − max) in place and per-column sums.
    let picked: Vec<f32> = targets
        .iter()
        .enumerate()
        .map(|(s, &t)| logits[t as usize * seq + s])
        .collect();
    let mut sum = vec![0.0f64; seq];
    for row in logits.chunks_exact_mut(seq) {
        for ((l, &m), acc) in row.iter_mut().zip(&max).zip(sum.iter_mut()) {
            *l = (*l - m).exp();
            *acc += *l as f64;
        }
    }
    let loss = sum
        .iter()
        .zip(&max)
        .zip(&picked)
        .map(|((&z, &m), &t)| z.ln() + m as f64 - t as f64)
        .sum::<f64>()
        / seq as f64;
    // Pass 3: dlogits = dloss·(p − onehot)/S.
    let scale = dloss as f64 / seq as f64;
    let col_scale: Vec<f32> = sum.iter().map(|&z| (scale / z) as f32).collect();
    for row in logits.chunks_exact_mut(seq) {
        for (l, &k) in row.iter_mut().zip(&col_scale) {
            *l *= k;
        }
    }
    for (s, &t) in targets.iter().enumerate() {
        logits[t as usize * seq + s] -= scale as f32;
    }
    Ok(loss as f32)
}

/// Backward of [`classifier_forward`]: `dx += Wᵀ·dlogits` and `dweight += dlogits·xᵀ`, the
/// weight-gradient GEMM overlapped with the input-gradient one ([`overlap_dw`]).
///
/// - out: `dx [D, S]` (accumulated), `dweight [V, D]` (accumulated);
/// - in: `dlogits [V, S]`, `weight [V, D]`, `x [D, S]`.
#[allow(clippy::too_many_arguments)]
pub fn classifier_backward(
    dx: &mut [f32],
    dweight: &mut [f32],
    dlogits: &[f32],
    weight: &[f32],
    x: &[f32],
    vocab: usize,
    dim: usize,
    seq: usize,
) -> Result<(), HostError> {
    let dx_gemm = Gemm::new(dim, seq, vocab).a_transposed().accumulating();
    check_gemm(&dx_gemm, dx.len(), weight.len(), dlogits.len())?;
    let dw = DwGemm {
        c: dweight,
        a: dlogits,
        b: x,
        gemm: Gemm::new(vocab, dim, seq).b_transposed().accumulating(),
    };
    overlap_dw([dw], || matmul(dx, weight, dlogits, dx_gemm))?
}
