//! The static plan's steps and how they run.
//!
//! Every tensor is f32 in one of four kinds of buffer: an input, an output, a constant, or a
//! temporary in the binding's arena. A [`View`] is a buffer plus a [`Layout`]. Steps read views
//! and write fresh contiguous buffers; nothing is allocated while a plan runs (each step's
//! scratch space is reserved in the arena at compile time).

use rayon::prelude::*;

use super::layout::Layout;
use super::ops;

/// Index into the plan's buffer table.
pub type BufId = usize;

/// Where a buffer lives.
#[derive(Debug, Clone, PartialEq)]
pub enum BufKind {
    /// Kernel input `i` (declaration order).
    Input(usize),
    /// Kernel output `i` (return order).
    Output(usize),
    /// Constant `i` of the plan.
    Const(usize),
    /// Arena range `[offset, offset + len)` in elements.
    Temp {
        /// Start, in f32 elements, 16-aligned.
        offset: usize,
        /// Length in elements.
        len: usize,
    },
}

/// A strided view of a buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The buffer.
    pub buf: BufId,
    /// Its layout inside the buffer.
    pub layout: Layout,
}

/// A raw f32 pointer that may cross threads; the plan guarantees disjoint writes.
#[derive(Debug, Clone, Copy)]
pub struct Ptr(pub *mut f32);

// SAFETY: a Ptr is only dereferenced inside a step, whose construction guarantees that
// concurrent tasks write disjoint elements and read elements nobody writes.
unsafe impl Send for Ptr {}
// SAFETY: as above.
unsafe impl Sync for Ptr {}

impl Ptr {
    /// The raw pointer (a method, so closures capture the whole `Send` wrapper).
    #[inline]
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

/// Base pointers of every buffer for one evaluation, plus the scratch area.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// Base pointer of each buffer, by [`BufId`].
    pub bases: &'a [Ptr],
    /// Start of the scratch area (per-task regions of `scratch_per_task` floats).
    pub scratch: Ptr,
    /// Scratch floats per task.
    pub scratch_per_task: usize,
    /// Number of parallel tasks a step may split into.
    pub tasks: usize,
    /// Round results to fp16 (ane-sim).
    pub round: bool,
}

impl Ctx<'_> {
    /// Pointer to element `[0, ...]` of `v`.
    pub fn ptr(&self, v: &View) -> *mut f32 {
        // SAFETY: the planner only builds views whose offset lies inside their buffer.
        unsafe { self.bases[v.buf].0.add(v.layout.offset) }
    }

    /// Pointer to element `[0, ...]` of the contiguous buffer region starting at `offset` of
    /// buffer `buf`.
    pub fn buf_ptr(&self, buf: BufId) -> *mut f32 {
        self.bases[buf].0
    }

    /// The scratch region of task `t`.
    pub fn scratch(&self, t: usize) -> *mut f32 {
        // SAFETY: the arena reserves `tasks * scratch_per_task` floats at `scratch`.
        unsafe { self.scratch.0.add(t * self.scratch_per_task) }
    }
}

/// One step of a plan.
#[derive(Debug, Clone)]
pub enum Step {
    /// A fused chain of elementwise ops.
    Fused(ops::elementwise::Fused),
    /// Batched matrix product.
    Matmul(ops::matmul::Matmul),
    /// 2-D convolution.
    Conv(ops::conv::Conv),
    /// Softmax along one axis of a contiguous tensor.
    Softmax(ops::reduce::Softmax),
    /// Sum or max over axes.
    Reduce(ops::reduce::Reduce),
    /// Attention `softmax(q kᵀ/√E + mask) v`.
    Sdpa(ops::sdpa::Sdpa),
    /// Strided copy between views of one shape.
    Copy {
        /// Source.
        src: View,
        /// Destination.
        dst: View,
    },
    /// Round a contiguous range to fp16 precision (ane-sim).
    Round {
        /// Buffer.
        buf: BufId,
        /// Elements from the start of the buffer.
        len: usize,
    },
}

impl Step {
    /// Runs the step.
    pub fn run(&self, ctx: &Ctx<'_>) {
        match self {
            Step::Fused(f) => f.run(ctx),
            Step::Matmul(m) => m.run(ctx),
            Step::Conv(c) => c.run(ctx),
            Step::Softmax(s) => s.run(ctx),
            Step::Reduce(r) => r.run(ctx),
            Step::Sdpa(s) => s.run(ctx),
            Step::Copy { src, dst } => ops::copy::strided_copy(ctx, src, dst),
            Step::Round { buf, len } => round_range(Ptr(ctx.buf_ptr(*buf)), *len, ctx.tasks),
        }
    }

    /// Scratch floats per task the step needs.
    pub fn scratch(&self) -> usize {
        match self {
            Step::Fused(f) => f.scratch(),
            Step::Softmax(s) => s.scratch(),
            Step::Sdpa(s) => s.scratch(),
            Step::Matmul(m) => m.scratch(),
            Step::Conv(c) => c.scratch(),
            _ => 0,
        }
    }
}

/// Rounds `x` to the nearest fp16 value (ties to even), returned as f32.
#[inline]
pub fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// Rounds `len` floats at `p` to fp16 precision, in parallel for long ranges.
pub fn round_range(p: Ptr, len: usize, tasks: usize) {
    let chunk = len.div_ceil(tasks.max(1)).max(4096);
    let n = len.div_ceil(chunk);
    (0..n).into_par_iter().for_each(|t| {
        let start = t * chunk;
        let end = (start + chunk).min(len);
        // SAFETY: `[start, end)` ranges of different tasks are disjoint and inside the buffer.
        let s = unsafe { std::slice::from_raw_parts_mut(p.get().add(start), end - start) };
        for x in s {
            *x = round_f16(*x);
        }
    });
}

/// Splits `items` work items into at most `tasks` contiguous ranges of at least `min` items
/// and runs `f(task, range)` on each, in parallel when there is more than one.
pub fn split<F>(items: usize, tasks: usize, min: usize, f: F)
where
    F: Fn(usize, std::ops::Range<usize>) + Sync + Send,
{
    let parts = (items / min.max(1)).clamp(1, tasks.max(1));
    if parts == 1 {
        f(0, 0..items);
        return;
    }
    let per = items.div_ceil(parts);
    (0..parts).into_par_iter().for_each(|t| {
        let start = t * per;
        let end = (start + per).min(items);
        if start < end {
            f(t, start..end);
        }
    });
}

/// Offset of the start of row `row` (rows = all dims but the last, row-major) for a layout
/// with `shape` and `strides`.
#[inline]
pub fn row_offset(mut row: usize, shape: &[usize], strides: &[isize]) -> isize {
    let mut off = 0isize;
    for d in (0..shape.len().saturating_sub(1)).rev() {
        off += (row % shape[d]) as isize * strides[d];
        row /= shape[d];
    }
    off
}
