//! RMSNorm over the channels of each column.
//!
//! Reference: Zhang & Sennrich, "Root Mean Square Layer Normalization" (2019),
//! <https://arxiv.org/abs/1910.07467>.

use super::{check_len, HostError};

/// Columns per block: each op works on blocks of columns whose per-column factors live on
/// the stack, so it allocates nothing.
const BLOCK: usize = 256;

/// `r[j] = 1 / sqrt(mean_c x[c, s0 + j]² + eps)` for the `r.len()` columns from `s0`, summed
/// row by row so every pass over `x` is contiguous.
fn inv_rms(r: &mut [f32], x: &[f32], s0: usize, channels: usize, seq: usize, eps: f32) {
    r.fill(0.0);
    let n = r.len();
    for row in x.chunks_exact(seq) {
        for (acc, &v) in r.iter_mut().zip(&row[s0..s0 + n]) {
            *acc += v * v;
        }
    }
    let inv_c = 1.0 / channels as f32;
    r.iter_mut()
        .for_each(|s| *s = 1.0 / (*s * inv_c + eps).sqrt());
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
    let mut rb = [0.0f32; BLOCK];
    for s0 in (0..seq).step_by(BLOCK) {
        let n = BLOCK.min(seq - s0);
        let r = &mut rb[..n];
        inv_rms(r, x, s0, channels, seq, eps);
        for ((yrow, xrow), &wc) in y.chunks_exact_mut(seq).zip(x.chunks_exact(seq)).zip(w) {
            let cols = s0..s0 + n;
            for ((yv, &xv), &rs) in yrow[cols.clone()].iter_mut().zip(&xrow[cols]).zip(&*r) {
                *yv = xv * wc * rs;
            }
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
    let inv_c = 1.0 / channels as f32;
    let (mut rb, mut kb) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
    for s0 in (0..seq).step_by(BLOCK) {
        let n = BLOCK.min(seq - s0);
        let cols = s0..s0 + n;
        let (r, k) = (&mut rb[..n], &mut kb[..n]);
        inv_rms(r, x, s0, channels, seq, eps);
        // k[s] = Σ_c dy·w·x, then r³·k / C; and dw.
        k.fill(0.0);
        for (((dyrow, xrow), &wc), dwc) in dy
            .chunks_exact(seq)
            .zip(x.chunks_exact(seq))
            .zip(w)
            .zip(dw.iter_mut())
        {
            let mut acc = 0.0f32;
            let lanes = dyrow[cols.clone()].iter().zip(&xrow[cols.clone()]);
            for (((&g, &xv), &rs), d) in lanes.zip(&*r).zip(k.iter_mut()) {
                *d += g * wc * xv;
                acc += g * xv * rs;
            }
            *dwc += acc;
        }
        k.iter_mut()
            .zip(&*r)
            .for_each(|(d, &rs)| *d *= rs * rs * rs * inv_c);
        for (((dxrow, dyrow), xrow), &wc) in dx
            .chunks_exact_mut(seq)
            .zip(dy.chunks_exact(seq))
            .zip(x.chunks_exact(seq))
            .zip(w)
        {
            let lanes = dxrow[cols.clone()]
                .iter_mut()
                .zip(&dyrow[cols.clone()])
                .zip(&xrow[cols.clone()]);
            for (((g, &d), &xv), (&rs, &kk)) in lanes.zip(r.iter().zip(k.iter())) {
                *g += rs * wc * d - xv * kk;
            }
        }
    }
    Ok(())
}
