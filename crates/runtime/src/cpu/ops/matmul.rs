//! Batched matrix product on strided operands.
//!
//! `out[b, i, j] = Σ_k X[b, i, k] · Y[b, k, j]` where `X` is `x` or its transpose over the last
//! two dims (`transpose_x`), likewise `Y`; batch dims broadcast. Operands are read in place with
//! their strides — transposed and sliced views cost nothing — and the output may be written
//! with any strides (the planner uses that to store a product directly in the layout of a
//! following transpose). Runs on [`crate::cpu::sgemm`], packing into the arena's scratch.

use super::super::exec::{split, BufId, Ctx, Ptr};
use super::super::sgemm::{scratch_len, sgemm, Mat};

/// A matmul step: operand views described by strides.
#[derive(Debug, Clone, PartialEq)]
pub struct Matmul {
    /// Lhs buffer and element offset.
    pub x: (BufId, usize),
    /// Rhs buffer and element offset.
    pub y: (BufId, usize),
    /// Output buffer and element offset.
    pub out: (BufId, usize),
    /// Broadcast batch shape.
    pub batch: Vec<usize>,
    /// Batch strides of x, y and out (0 where broadcast).
    pub batch_strides: [Vec<isize>; 3],
    /// Rows of the product.
    pub m: usize,
    /// Columns of the product.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// Row and column strides of the (possibly transposed) lhs `[m, k]`.
    pub lhs: (isize, isize),
    /// Row and column strides of the (possibly transposed) rhs `[k, n]`.
    pub rhs: (isize, isize),
    /// Row and column strides of the output `[m, n]`.
    pub dst: (isize, isize),
}

/// Products of at least this many multiply-adds split one GEMM across tasks.
const PARALLEL_FLOPS: usize = 1 << 18;

impl Matmul {
    /// Scratch floats per task.
    pub fn scratch(&self) -> usize {
        scratch_len(self.m, self.n, 1)
    }

    /// Runs every batch.
    pub fn run(&self, ctx: &Ctx<'_>) {
        let nb: usize = self.batch.iter().product();
        let x = Ptr(ctx.buf_ptr(self.x.0));
        let y = Ptr(ctx.buf_ptr(self.y.0));
        let o = Ptr(ctx.buf_ptr(self.out.0));
        let one = |b: usize, scratch: Ptr, tasks: usize| {
            let (mut ox, mut oy, mut oo) =
                (self.x.1 as isize, self.y.1 as isize, self.out.1 as isize);
            let mut rem = b;
            for d in (0..self.batch.len()).rev() {
                let i = (rem % self.batch[d]) as isize;
                rem /= self.batch[d];
                ox += i * self.batch_strides[0][d];
                oy += i * self.batch_strides[1][d];
                oo += i * self.batch_strides[2][d];
            }
            // SAFETY: the planner sized every buffer for these offsets and strides; each batch
            // writes a disjoint output block; `scratch` is reserved for this call.
            unsafe {
                sgemm(
                    self.m,
                    self.n,
                    self.k,
                    Mat {
                        ptr: Ptr(x.get().offset(ox)),
                        rs: self.lhs.0,
                        cs: self.lhs.1,
                    },
                    Mat {
                        ptr: Ptr(y.get().offset(oy)),
                        rs: self.rhs.0,
                        cs: self.rhs.1,
                    },
                    Mat {
                        ptr: Ptr(o.get().offset(oo)),
                        rs: self.dst.0,
                        cs: self.dst.1,
                    },
                    scratch,
                    tasks,
                )
            };
        };
        let work = self.m * self.n * self.k;
        if nb < ctx.tasks && work >= PARALLEL_FLOPS {
            // Few large products: split each one across all tasks (the whole scratch area).
            for b in 0..nb {
                one(b, Ptr(ctx.scratch(0)), ctx.tasks);
            }
        } else {
            let min = PARALLEL_FLOPS.div_ceil(work.max(1)).max(1);
            split(nb, ctx.tasks, min, |task, range| {
                let scratch = Ptr(ctx.scratch(task));
                for b in range {
                    one(b, scratch, 1);
                }
            });
        }
    }
}
