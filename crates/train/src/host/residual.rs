//! Scaled residual add: `out = x + α·y`.

use super::{check_len, HostError};

/// `out = x + α·y`, elementwise.
///
/// - out: `out [C, S]` (overwritten);
/// - in: `x [C, S]`, `y [C, S]` (all the same length `n`).
pub fn residual_forward(
    out: &mut [f32],
    x: &[f32],
    y: &[f32],
    alpha: f32,
) -> Result<(), HostError> {
    let n = out.len();
    check_len("x", x.len(), &[n])?;
    check_len("y", y.len(), &[n])?;
    for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
        *o = a + alpha * b;
    }
    Ok(())
}

/// Backward of [`residual_forward`]: `dx += dout`, `dy += α·dout`.
///
/// - out: `dx [C, S]`, `dy [C, S]` (both accumulated);
/// - in: `dout [C, S]` (all the same length).
pub fn residual_backward(
    dx: &mut [f32],
    dy: &mut [f32],
    dout: &[f32],
    alpha: f32,
) -> Result<(), HostError> {
    let n = dout.len();
    check_len("dx", dx.len(), &[n])?;
    check_len("dy", dy.len(), &[n])?;
    for ((a, b), &g) in dx.iter_mut().zip(dy.iter_mut()).zip(dout) {
        *a += g;
        *b += alpha * g;
    }
    Ok(())
}
