//! Softmax along an axis and sum/max reductions over axes, on contiguous inputs.
//!
//! A contiguous tensor is viewed as `[outer, len, inner]` around the axis: softmax computes
//! `e^(x - max) / Σ e^(x - max)` along `len` for every `(outer, inner)` pair. A reduction walks
//! the input once, accumulating each element into the output element that keeps its
//! non-reduced coordinates (`reduce_max` starts from -∞, `reduce_sum` from 0).

use super::super::exec::{row_offset, split, BufId, Ctx, Ptr};
use super::math::exp_f32;

/// Softmax of a contiguous `[outer, len, inner]` tensor into a contiguous output.
#[derive(Debug, Clone, PartialEq)]
pub struct Softmax {
    /// Input buffer and offset.
    pub x: (BufId, usize),
    /// Output buffer (from its start).
    pub out: BufId,
    /// Product of dims before the axis.
    pub outer: usize,
    /// Size of the axis.
    pub len: usize,
    /// Product of dims after the axis.
    pub inner: usize,
}

impl Softmax {
    /// Scratch per task: running max and sum for one `inner` row.
    pub fn scratch(&self) -> usize {
        if self.inner == 1 {
            0
        } else {
            2 * self.inner
        }
    }

    /// Runs the softmax.
    pub fn run(&self, ctx: &Ctx<'_>) {
        let x = Ptr(ctx.buf_ptr(self.x.0).wrapping_add(self.x.1));
        let out = Ptr(ctx.buf_ptr(self.out));
        let (len, inner) = (self.len, self.inner);
        split(
            self.outer,
            ctx.tasks,
            (16 * 1024 / (len * inner).max(1)).max(1),
            |task, range| {
                for o in range {
                    let base = o * len * inner;
                    // SAFETY: block `o` is inside both buffers and written by this task only.
                    unsafe {
                        let src = std::slice::from_raw_parts(x.get().add(base), len * inner);
                        let dst = std::slice::from_raw_parts_mut(out.get().add(base), len * inner);
                        if inner == 1 {
                            let m = src.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                            for (d, &v) in dst.iter_mut().zip(src) {
                                *d = exp_f32(v - m);
                            }
                            let s: f32 = dst.iter().fold(0.0, |acc, &d| acc + d);
                            let r = 1.0 / s;
                            dst.iter_mut().for_each(|d| *d *= r);
                        } else {
                            let scratch = ctx.scratch(task);
                            let m = std::slice::from_raw_parts_mut(scratch, inner);
                            let s = std::slice::from_raw_parts_mut(scratch.add(inner), inner);
                            m.copy_from_slice(&src[..inner]);
                            for l in 1..len {
                                for (a, &b) in m.iter_mut().zip(&src[l * inner..(l + 1) * inner]) {
                                    *a = a.max(b);
                                }
                            }
                            s.fill(0.0);
                            for l in 0..len {
                                let row = l * inner..(l + 1) * inner;
                                for ((d, &v), (&mx, acc)) in dst[row.clone()]
                                    .iter_mut()
                                    .zip(&src[row])
                                    .zip(m.iter().zip(s.iter_mut()))
                                {
                                    *d = exp_f32(v - mx);
                                    *acc += *d;
                                }
                            }
                            for v in s.iter_mut() {
                                *v = 1.0 / *v;
                            }
                            for l in 0..len {
                                for (d, &r) in
                                    dst[l * inner..(l + 1) * inner].iter_mut().zip(s.iter())
                                {
                                    *d *= r;
                                }
                            }
                        }
                    }
                }
            },
        );
    }
}

/// Which reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceKind {
    /// Sum.
    Sum,
    /// Maximum.
    Max,
}

/// A reduction of a contiguous input into a contiguous output.
#[derive(Debug, Clone, PartialEq)]
pub struct Reduce {
    /// Sum or max.
    pub kind: ReduceKind,
    /// Input buffer and offset.
    pub x: (BufId, usize),
    /// Output buffer (from its start).
    pub out: BufId,
    /// Output element count.
    pub out_len: usize,
    /// Coalesced input shape.
    pub shape: Vec<usize>,
    /// Input strides for `shape`.
    pub x_strides: Vec<isize>,
    /// Output strides for `shape` (0 on reduced dims).
    pub out_strides: Vec<isize>,
}

impl Reduce {
    /// Runs the reduction.
    pub fn run(&self, ctx: &Ctx<'_>) {
        let x = ctx.buf_ptr(self.x.0).wrapping_add(self.x.1);
        let out = ctx.buf_ptr(self.out);
        let init = match self.kind {
            ReduceKind::Sum => 0.0,
            ReduceKind::Max => f32::NEG_INFINITY,
        };
        // SAFETY: the output buffer holds out_len elements; offsets below come from the
        // coalesced shape and strides of views inside their buffers. Single-threaded.
        unsafe {
            std::slice::from_raw_parts_mut(out, self.out_len).fill(init);
            let last = self.shape.len() - 1;
            let inner = self.shape[last];
            let rows: usize = self.shape[..last].iter().product();
            let (sx, so) = (self.x_strides[last], self.out_strides[last]);
            for r in 0..rows {
                let px = x.offset(row_offset(r, &self.shape, &self.x_strides));
                let po = out.offset(row_offset(r, &self.shape, &self.out_strides));
                match (self.kind, so) {
                    (ReduceKind::Sum, 0) => {
                        let mut acc = 0.0;
                        for i in 0..inner {
                            acc += *px.offset(i as isize * sx);
                        }
                        *po += acc;
                    }
                    (ReduceKind::Max, 0) => {
                        let mut acc = *po;
                        for i in 0..inner {
                            acc = acc.max(*px.offset(i as isize * sx));
                        }
                        *po = acc;
                    }
                    (kind, _) => {
                        for i in 0..inner as isize {
                            let (d, v) = (po.offset(i * so), *px.offset(i * sx));
                            *d = match kind {
                                ReduceKind::Sum => *d + v,
                                ReduceKind::Max => d.read().max(v),
                            };
                        }
                    }
                }
            }
        }
    }
}
