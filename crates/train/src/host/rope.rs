//! Rotary position embedding on interleaved channel pairs (llama2.c / Meta convention).
//!
//! Activations are `[NH·HD, S]`: head `h` owns channels `h·HD .. (h+1)·HD`, pair `i` of a head
//! is channels `(h·HD + 2i, h·HD + 2i + 1)`, and column `p` is position `p`. Pair `i` at
//! position `p` rotates by `p·θ^(-2i/HD)`.
//!
//! Reference: Su et al., "RoFormer" (2021), <https://arxiv.org/abs/2104.09864>.

use rayon::prelude::*;

use super::{check_len, HostError};

/// cos/sin of every (pair, position) angle, `[HD/2, S]` row-major: entry `(i, p)` at `i·S + p`
/// is `cos(p·θ^(-2i/HD))` (resp. `sin`), computed in f64 and rounded once to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeTable {
    head_dim: usize,
    seq: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    /// The table for heads of `head_dim` channels (even), positions `0..seq`, base `theta`.
    pub fn new(head_dim: usize, seq: usize, theta: f32) -> Result<RopeTable, HostError> {
        RopeTable::windows(head_dim, seq, 1, theta)
    }

    /// The table for `windows` windows of `seq` positions side by side: column `p` is
    /// position `p mod seq` (`windows·seq` columns in all).
    pub fn windows(
        head_dim: usize,
        seq: usize,
        windows: usize,
        theta: f32,
    ) -> Result<RopeTable, HostError> {
        let cols = seq
            .checked_mul(windows)
            .ok_or(HostError::Overflow { what: "rope table" })?;
        if !head_dim.is_multiple_of(2) {
            return Err(HostError::HeadDimOdd { head_dim });
        }
        let half = head_dim / 2;
        let n = half
            .checked_mul(cols)
            .ok_or(HostError::Overflow { what: "rope table" })?;
        let (mut cos, mut sin) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..half {
            let freq = Self::freq(i, head_dim, theta);
            for p in 0..cols {
                let angle = (p % seq.max(1)) as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(RopeTable {
            head_dim,
            seq: cols,
            cos,
            sin,
        })
    }

    /// The rotation frequency of pair `i`, `θ^(-2i/HD)` (radians per position).
    pub fn freq(i: usize, head_dim: usize, theta: f32) -> f64 {
        (theta as f64).powf(-2.0 * i as f64 / head_dim as f64)
    }

    /// Head dimension `HD` the table is for.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Number of positions the table covers.
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// cos of every angle, `[HD/2, S]`.
    pub fn cos(&self) -> &[f32] {
        &self.cos
    }

    /// sin of every angle, `[HD/2, S]`.
    pub fn sin(&self) -> &[f32] {
        &self.sin
    }

    fn check(&self, head_dim: usize, seq: usize) -> Result<(), HostError> {
        if !head_dim.is_multiple_of(2) {
            return Err(HostError::HeadDimOdd { head_dim });
        }
        if head_dim != self.head_dim || seq > self.seq {
            return Err(HostError::RopeTable {
                table_head_dim: self.head_dim,
                table_seq: self.seq,
                head_dim,
                seq,
            });
        }
        Ok(())
    }
}

/// Rotates every pair: `y0 = x0·cos − x1·sin`, `y1 = x0·sin + x1·cos`.
///
/// - out: `y [NH·HD, S]` (overwritten);
/// - in: `x [NH·HD, S]`, `table` for `HD` and at least `S` positions.
pub fn rope_forward(
    y: &mut [f32],
    x: &[f32],
    table: &RopeTable,
    n_heads: usize,
    head_dim: usize,
    seq: usize,
) -> Result<(), HostError> {
    check_len("y", y.len(), &[n_heads, head_dim, seq])?;
    check_len("x", x.len(), &[n_heads, head_dim, seq])?;
    table.check(head_dim, seq)?;
    rotate(y, x, table, seq, 1.0, false);
    Ok(())
}

/// Backward of [`rope_forward`] (the inverse rotation):
/// `dx0 += dy0·cos + dy1·sin`, `dx1 += −dy0·sin + dy1·cos`.
///
/// - out: `dx [NH·HD, S]` (accumulated);
/// - in: `dy [NH·HD, S]`, `table` for `HD` and at least `S` positions.
pub fn rope_backward(
    dx: &mut [f32],
    dy: &[f32],
    table: &RopeTable,
    n_heads: usize,
    head_dim: usize,
    seq: usize,
) -> Result<(), HostError> {
    check_len("dx", dx.len(), &[n_heads, head_dim, seq])?;
    check_len("dy", dy.len(), &[n_heads, head_dim, seq])?;
    table.check(head_dim, seq)?;
    rotate(dx, dy, table, seq, -1.0, true);
    Ok(())
}

/// `out (=|+=) R(sign·angle)·inp` for every pair row of every head.
fn rotate(out: &mut [f32], inp: &[f32], table: &RopeTable, seq: usize, sign: f32, acc: bool) {
    if seq == 0 {
        return;
    }
    let half = table.head_dim / 2;
    // Channel pairs across the rayon pool (elementwise: the result does not depend on it).
    let pairs_out = out.par_chunks_exact_mut(2 * seq);
    let pairs_in = inp.par_chunks_exact(2 * seq);
    pairs_out
        .zip(pairs_in)
        .enumerate()
        .for_each(|(row, (o, x))| {
            let i = row % half;
            let cos = &table.cos[i * table.seq..][..seq];
            let sin = &table.sin[i * table.seq..][..seq];
            let (o0, o1) = o.split_at_mut(seq);
            let (x0, x1) = x.split_at(seq);
            for p in 0..seq {
                let (c, s) = (cos[p], sign * sin[p]);
                let y0 = x0[p] * c - x1[p] * s;
                let y1 = x0[p] * s + x1[p] * c;
                if acc {
                    o0[p] += y0;
                    o1[p] += y1;
                } else {
                    o0[p] = y0;
                    o1[p] = y1;
                }
            }
        });
}
