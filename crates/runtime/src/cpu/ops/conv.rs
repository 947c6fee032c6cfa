//! 2-D convolution, NCHW, weight `[OC, IC/groups, KH, KW]`, optional bias `[OC]`.
//!
//! `out[n, o, y, x] = bias[o] + Σ_{c, i, j} w[o, c, i, j] · in[n, g·ICg + c, y·sy + i·dy - pt,
//! x·sx + j·dx - pl]` (zero outside the input), where `g` is output channel `o`'s group. A 1x1,
//! stride-1, unpadded, single-group conv (a linear layer) runs as one GEMM per batch item.

use rayon::prelude::*;

use super::super::exec::{BufId, Ctx, Ptr};
use super::super::sgemm::{scratch_len, sgemm, Mat};

/// A conv step over contiguous input, weight and output buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    /// Input buffer and offset (`[N, IC, H, W]` contiguous).
    pub x: (BufId, usize),
    /// Weight buffer and offset (`[OC, IC/groups, KH, KW]` contiguous).
    pub w: (BufId, usize),
    /// Bias buffer and offset (`[OC]`), if any.
    pub bias: Option<(BufId, usize)>,
    /// Output buffer (`[N, OC, OH, OW]` contiguous from its start).
    pub out: BufId,
    /// `[N, IC, H, W]`.
    pub in_shape: [usize; 4],
    /// `[OC, ICg, KH, KW]`.
    pub w_shape: [usize; 4],
    /// `[OH, OW]`.
    pub out_hw: [usize; 2],
    /// Strides `[sy, sx]`.
    pub strides: [usize; 2],
    /// Dilations `[dy, dx]`.
    pub dilations: [usize; 2],
    /// Padding before `[top, left]`.
    pub pad: [usize; 2],
    /// Groups.
    pub groups: usize,
}

impl Conv {
    /// Scratch floats per task (for the GEMM of the 1x1 fast path).
    pub fn scratch(&self) -> usize {
        scratch_len(self.w_shape[0], self.in_shape[2] * self.in_shape[3], 1)
    }

    /// Runs the convolution.
    pub fn run(&self, ctx: &Ctx<'_>) {
        let [n, ic, h, w] = self.in_shape;
        let [oc, icg, kh, kw] = self.w_shape;
        let [oh, ow] = self.out_hw;
        let x = Ptr(unsafe_add(ctx.buf_ptr(self.x.0), self.x.1));
        let wt = Ptr(unsafe_add(ctx.buf_ptr(self.w.0), self.w.1));
        let out = Ptr(ctx.buf_ptr(self.out));
        let linear =
            kh == 1 && kw == 1 && self.strides == [1, 1] && self.pad == [0, 0] && self.groups == 1;
        if linear {
            let hw = h * w;
            for b in 0..n {
                // SAFETY: buffers were sized by the planner for these shapes; batch b writes its
                // own output block; the whole scratch area is reserved for this step.
                unsafe {
                    sgemm(
                        oc,
                        hw,
                        ic,
                        Mat {
                            ptr: wt,
                            rs: ic as isize,
                            cs: 1,
                        },
                        Mat {
                            ptr: Ptr(x.get().add(b * ic * hw)),
                            rs: hw as isize,
                            cs: 1,
                        },
                        Mat {
                            ptr: Ptr(out.get().add(b * oc * hw)),
                            rs: hw as isize,
                            cs: 1,
                        },
                        Ptr(ctx.scratch(0)),
                        ctx.tasks,
                    )
                };
            }
        } else {
            let ocg = oc / self.groups;
            (0..n * oc).into_par_iter().for_each(|no| {
                let (b, o) = (no / oc, no % oc);
                let g = o / ocg;
                for y in 0..oh {
                    for xo in 0..ow {
                        let mut acc = 0f32;
                        for c in 0..icg {
                            let ci = g * icg + c;
                            for i in 0..kh {
                                let iy = (y * self.strides[0] + i * self.dilations[0]) as isize
                                    - self.pad[0] as isize;
                                if iy < 0 || iy >= h as isize {
                                    continue;
                                }
                                for j in 0..kw {
                                    let ix = (xo * self.strides[1] + j * self.dilations[1])
                                        as isize
                                        - self.pad[1] as isize;
                                    if ix < 0 || ix >= w as isize {
                                        continue;
                                    }
                                    // SAFETY: indices are inside the input and weight shapes.
                                    unsafe {
                                        acc += *wt.get().add(((o * icg + c) * kh + i) * kw + j)
                                            * *x.get().add(
                                                ((b * ic + ci) * h + iy as usize) * w + ix as usize,
                                            );
                                    }
                                }
                            }
                        }
                        // SAFETY: task `no` alone writes output channel o of batch b.
                        unsafe { *out.get().add(((b * oc + o) * oh + y) * ow + xo) = acc };
                    }
                }
            });
        }
        if let Some((bb, bo)) = self.bias {
            let bias = Ptr(unsafe_add(ctx.buf_ptr(bb), bo));
            let plane = oh * ow;
            for b in 0..n {
                for o in 0..oc {
                    // SAFETY: bias has oc elements; the output block is inside the buffer.
                    unsafe {
                        let v = *bias.get().add(o);
                        let row = std::slice::from_raw_parts_mut(
                            out.get().add((b * oc + o) * plane),
                            plane,
                        );
                        row.iter_mut().for_each(|e| *e += v);
                    }
                }
            }
        }
    }
}

fn unsafe_add(p: *mut f32, off: usize) -> *mut f32 {
    // SAFETY: offsets come from views the planner placed inside their buffers.
    unsafe { p.add(off) }
}
