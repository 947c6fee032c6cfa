//! Batched matrix product on strided operands, through the `gemm` crate.
//!
//! `out[b, i, j] = Σ_k X[b, i, k] · Y[b, k, j]` where `X` is `x` or its transpose over the last
//! two dims (`transpose_x`), likewise `Y`; batch dims broadcast. Operands are read in place with
//! their strides — transposed and sliced views cost nothing.

use gemm::Parallelism;
use rayon::prelude::*;

use super::super::exec::{BufId, Ctx, Ptr};

/// A matmul step: operand views described by strides, output contiguous.
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

/// Products at least this many multiply-adds use all threads inside gemm.
const PARALLEL_FLOPS: usize = 1 << 18;

impl Matmul {
    /// Runs every batch.
    pub fn run(&self, ctx: &Ctx<'_>) {
        let nb: usize = self.batch.iter().product();
        let x = Ptr(ctx.buf_ptr(self.x.0));
        let y = Ptr(ctx.buf_ptr(self.y.0));
        let o = Ptr(ctx.buf_ptr(self.out.0));
        let work = self.m * self.n * self.k;
        let one = |b: usize, par: Parallelism| {
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
            // writes a disjoint output block.
            unsafe {
                gemm::gemm(
                    self.m,
                    self.n,
                    self.k,
                    o.get().offset(oo),
                    self.dst.1,
                    self.dst.0,
                    false,
                    x.get().offset(ox),
                    self.lhs.1,
                    self.lhs.0,
                    y.get().offset(oy),
                    self.rhs.1,
                    self.rhs.0,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                )
            };
        };
        if nb == 1 || (work >= PARALLEL_FLOPS && nb < ctx.tasks) {
            let par = if work >= PARALLEL_FLOPS && ctx.tasks > 1 {
                Parallelism::Rayon(ctx.tasks)
            } else {
                Parallelism::None
            };
            for b in 0..nb {
                one(b, par);
            }
        } else if work * nb < PARALLEL_FLOPS || ctx.tasks == 1 {
            for b in 0..nb {
                one(b, Parallelism::None);
            }
        } else {
            (0..nb)
                .into_par_iter()
                .for_each(|b| one(b, Parallelism::None));
        }
    }
}
