//! RMSNorm over the channels of each column.
//!
//! Reference: Zhang & Sennrich, "Root Mean Square Layer Normalization" (2019),
//! <https://arxiv.org/abs/1910.07467>.

use super::{check_len, HostError};

/// `r[s] = 1 / sqrt(mean_c x[c, s]² + eps)` for every column, summed row by row so every
/// pass over `x` is contiguous.
fn inv_rms(x: &[f32], channels: usize, seq: usize, eps: f32) -> Vec<f32> {
    let mut ss = vec![0.0f32; seq];
    for row in x.chunks_exact(seq) {
        for (acc, &v) in ss.iter_mut().zip(row) {
            *acc += v * v;
        }
    }
    let inv_c = 1.0 / channels as f32;
    ss.iter().map(|&s| 1.0 / (s * inv_c + eps).sqrt()).collect()
}

/// `y[c, s] = x[c, s] · w[c] · r[s]`, `r[s] = 1 / sqrt(mean_c x[c, s]² + eps)`.
///
/// - out: `y [C, S]` (overwritten);
/// - in: `x [C, S]`, `w [C]`.
pub fn rmsnorm_forward(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    channels: usize,
    seq: usize,
    eps: f32,
) -> Result<(), HostError> {
    check_len("y", y.len(), &[channels, seq])?;
    check_len("x", x.len(), &[channels, seq])?;
    check_len("w", w.len(), &[channels])?;
    if seq == 0 {
        return Ok(());
    }
    let r = inv_rms(x, channels, seq, eps);
    for ((yrow, xrow), &wc) in y.chunks_exact_mut(seq).zip(x.chunks_exact(seq)).zip(w) {
        for ((yv, &xv), &rs) in yrow.iter_mut().zip(xrow).zip(&r) {
            *yv = xv * wc * rs;
        }
    }
    Ok(())
}

/// Backward of [`rmsnorm_forward`]. In the forward pass this was `y_c = x_c·w_c·r`,
/// `r = (mean x² + eps)^-½`, so per column
/// `dx_c += r·w_c·dy_c − x_c·r³/C · Σ_k dy_k·w_k·x_k` and `dw_c += Σ_s dy_c·x_c·r`.
///
/// - out: `dx [C, S]` (accumulated), `dw [C]` (accumulated);
/// - in: `dy [C, S]`, `x [C, S]` (the forward input), `w [C]`.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_backward(
    dx: &mut [f32],
    dw: &mut [f32],
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    channels: usize,
    seq: usize,
    eps: f32,
) -> Result<(), HostError> {
    check_len("dx", dx.len(), &[channels, seq])?;
    check_len("dw", dw.len(), &[channels])?;
    check_len("dy", dy.len(), &[channels, seq])?;
    check_len("x", x.len(), &[channels, seq])?;
    check_len("w", w.len(), &[channels])?;
    if seq == 0 {
        return Ok(());
    }
    let r = inv_rms(x, channels, seq, eps);
    // dot[s] = Σ_c dy·w·x, and dw.
    let mut dot = vec![0.0f32; seq];
    for (((dyrow, xrow), &wc), dwc) in dy
        .chunks_exact(seq)
        .zip(x.chunks_exact(seq))
        .zip(w)
        .zip(dw.iter_mut())
    {
        let mut acc = 0.0f32;
        for (((&g, &xv), &rs), d) in dyrow.iter().zip(xrow).zip(&r).zip(dot.iter_mut()) {
            *d += g * wc * xv;
            acc += g * xv * rs;
        }
        *dwc += acc;
    }
    // coef[s] = r³·dot / C.
    let inv_c = 1.0 / channels as f32;
    let coef: Vec<f32> = r
        .iter()
        .zip(&dot)
        .map(|(&rs, &d)| rs * rs * rs * d * inv_c)
        .collect();
    for (((dxrow, dyrow), xrow), &wc) in dx
        .chunks_exact_mut(seq)
        .zip(dy.chunks_exact(seq))
        .zip(x.chunks_exact(seq))
        .zip(w)
    {
        for ((((g, &d), &xv), &rs), &k) in dxrow.iter_mut().zip(dyrow).zip(xrow).zip(&r).zip(&coef)
        {
            *g += rs * wc * d - xv * k;
        }
    }
    Ok(())
}
