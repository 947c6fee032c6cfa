//! The SwiGLU activation of the FFN: `gate = silu(h1) · h3`, `silu(h) = h·σ(h)`.
//!
//! Reference: Shazeer, "GLU Variants Improve Transformer" (2020),
//! <https://arxiv.org/abs/2002.05202>.

use rayon::prelude::*;

use super::{check_len, HostError};

/// Elements per parallel chunk of [`swiglu_backward`].
const CHUNK: usize = 1 << 14;

fn sigmoid(h: f32) -> f32 {
    1.0 / (1.0 + (-h).exp())
}

/// `gate = silu(h1) · h3`, elementwise.
///
/// - out: `gate [HID, S]` (overwritten);
/// - in: `h1 = W1·x [HID, S]`, `h3 = W3·x [HID, S]`.
pub fn swiglu_forward(gate: &mut [f32], h1: &[f32], h3: &[f32]) -> Result<(), HostError> {
    let n = gate.len();
    check_len("h1", h1.len(), &[n])?;
    check_len("h3", h3.len(), &[n])?;
    for ((g, &a), &b) in gate.iter_mut().zip(h1).zip(h3) {
        *g = a * sigmoid(a) * b;
    }
    Ok(())
}

/// Backward of [`swiglu_forward`]. With `σ = sigmoid(h1)`:
/// `dh3 += dgate·h1·σ`, `dh1 += dgate·h3·σ·(1 + h1·(1 − σ))`.
///
/// - out: `dh1 [HID, S]`, `dh3 [HID, S]` (both accumulated);
/// - in: `dgate [HID, S]`, `h1 [HID, S]`, `h3 [HID, S]` (the forward inputs).
pub fn swiglu_backward(
    dh1: &mut [f32],
    dh3: &mut [f32],
    dgate: &[f32],
    h1: &[f32],
    h3: &[f32],
) -> Result<(), HostError> {
    let n = dgate.len();
    check_len("dh1", dh1.len(), &[n])?;
    check_len("dh3", dh3.len(), &[n])?;
    check_len("h1", h1.len(), &[n])?;
    check_len("h3", h3.len(), &[n])?;
    // Fixed chunks across the rayon pool (elementwise: the result does not depend on it).
    dh1.par_chunks_mut(CHUNK)
        .zip(dh3.par_chunks_mut(CHUNK))
        .zip(dgate.par_chunks(CHUNK))
        .zip(h1.par_chunks(CHUNK).zip(h3.par_chunks(CHUNK)))
        .for_each(|(((dh1, dh3), dgate), (h1, h3))| {
            for ((((d1, d3), &g), &a), &b) in dh1
                .iter_mut()
                .zip(dh3.iter_mut())
                .zip(dgate)
                .zip(h1)
                .zip(h3)
            {
                let sig = sigmoid(a);
                *d3 += g * a * sig;
                *d1 += g * b * sig * (1.0 + a * (1.0 - sig));
            }
        });
    Ok(())
}
