//! Fused elementwise chains: one pass over the output evaluates a whole expression tree.
//!
//! Semantics (the reference for every elementwise MIL op): operands broadcast NumPy-style to
//! the output shape; `add/sub/mul/real_div` are IEEE f32 ops; `pow(x, y) = x^y` (`powf`);
//! `maximum` returns the larger (NaN-propagating like `f32::max` does not: NaN loses);
//! `sigmoid(x) = 1/(1+e^-x)`; `silu(x) = x·sigmoid(x)`; `exp`; `log(x) = ln(x + eps)`;
//! `rsqrt(x) = 1/√(x + eps)`; `select(c, a, b) = c ≠ 0 ? a : b`; `cast` to fp16 rounds to
//! nearest even, to int32 truncates toward zero, to bool gives `x ≠ 0`; `quantize` is
//! `clamp(round_ties_even(x/scale + zp), -128, 127)`, `dequantize` is `(x - zp)·scale`.
//! In ane-sim fidelity every op's result is rounded to fp16.
//!
//! The output is walked in tiles of at most [`TILE`] elements of its innermost (coalesced) dim;
//! each tile loads the leaves into registers, runs the instructions over whole registers (tight
//! loops the compiler vectorizes), and stores the result.

use super::super::exec::{round_f16, row_offset, split, BufId, Ctx, Ptr};
use super::math::exp_f32;

/// Elements per tile (per register).
pub const TILE: usize = 1024;

/// Elementwise functions of one operand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// `1/(1+e^-x)`.
    Sigmoid,
    /// `x·sigmoid(x)`.
    Silu,
    /// `e^x`.
    Exp,
    /// `ln(x + eps)`.
    Log(f32),
    /// `1/√(x + eps)`.
    Rsqrt(f32),
    /// Nearest fp16 value (cast to fp16).
    RoundF16,
    /// Toward zero (cast to int32).
    Trunc,
    /// `x ≠ 0` as 1/0 (cast to bool).
    NonZero,
    /// `clamp(round_ties_even(x), -128, 127)` (the last step of quantize).
    RoundClampI8,
}

impl UnaryOp {
    #[inline]
    fn apply(self, x: f32) -> f32 {
        match self {
            UnaryOp::Sigmoid => 1.0 / (1.0 + exp_f32(-x)),
            UnaryOp::Silu => x / (1.0 + exp_f32(-x)),
            UnaryOp::Exp => exp_f32(x),
            UnaryOp::Log(eps) => (x + eps).ln(),
            UnaryOp::Rsqrt(eps) => 1.0 / (x + eps).sqrt(),
            UnaryOp::RoundF16 => round_f16(x),
            UnaryOp::Trunc => x.trunc(),
            UnaryOp::NonZero => (x != 0.0) as u8 as f32,
            UnaryOp::RoundClampI8 => x.round_ties_even().clamp(-128.0, 127.0),
        }
    }
}

/// Elementwise functions of two operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `x + y`.
    Add,
    /// `x - y`.
    Sub,
    /// `x · y`.
    Mul,
    /// `x / y`.
    Div,
    /// `x^y`.
    Pow,
    /// `max(x, y)`.
    Max,
}

impl BinaryOp {
    #[inline]
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Pow => a.powf(b),
            BinaryOp::Max => a.max(b),
        }
    }
}

/// An instruction operand: a register or a constant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Opnd {
    /// Register index.
    Reg(u16),
    /// Scalar broadcast to every element.
    Scalar(f32),
}

/// One instruction over whole registers.
#[derive(Debug, Clone, PartialEq)]
pub enum Instr {
    /// `dst = leaf` (gathered with the leaf's strides).
    Load {
        /// Destination register.
        dst: u16,
        /// Leaf index.
        leaf: u16,
    },
    /// `dst = op(src)`.
    Unary {
        /// Function.
        op: UnaryOp,
        /// Destination register.
        dst: u16,
        /// Operand.
        src: Opnd,
    },
    /// `dst = op(a, b)`.
    Binary {
        /// Function.
        op: BinaryOp,
        /// Destination register.
        dst: u16,
        /// Left operand.
        a: Opnd,
        /// Right operand.
        b: Opnd,
    },
    /// `dst = c ≠ 0 ? a : b`.
    Select {
        /// Destination register.
        dst: u16,
        /// Condition.
        c: Opnd,
        /// Value where true.
        a: Opnd,
        /// Value where false.
        b: Opnd,
    },
    /// Round a register to fp16 precision (ane-sim).
    Round {
        /// Register.
        reg: u16,
    },
}

/// An input of a fused chain: a buffer walked with strides coalesced to the output's dims.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// Buffer.
    pub buf: BufId,
    /// Element offset of index 0.
    pub offset: usize,
    /// Stride per (coalesced) output dim.
    pub strides: Vec<isize>,
}

/// A fused elementwise step writing a contiguous output buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    /// Output buffer (contiguous from its start).
    pub out: BufId,
    /// Coalesced output shape (rank >= 1).
    pub shape: Vec<usize>,
    /// Inputs.
    pub leaves: Vec<Leaf>,
    /// Program.
    pub instrs: Vec<Instr>,
    /// Number of registers.
    pub regs: usize,
    /// Register holding the result.
    pub result: u16,
}

impl Fused {
    /// Scratch floats per task: one tile per register.
    pub fn scratch(&self) -> usize {
        self.regs * TILE
    }

    /// Runs the chain over the whole output.
    pub fn run(&self, ctx: &Ctx<'_>) {
        let inner = *self.shape.last().unwrap_or(&1);
        let rows: usize = self.shape[..self.shape.len() - 1].iter().product();
        let chunks = inner.div_ceil(TILE);
        let out = Ptr(ctx.buf_ptr(self.out));
        let min_items = (32 * 1024usize).div_ceil(TILE.min(inner).max(1));
        split(rows * chunks, ctx.tasks, min_items, |task, range| {
            let regs = Ptr(ctx.scratch(task));
            for item in range {
                let (row, c0) = (item / chunks, (item % chunks) * TILE);
                let n = TILE.min(inner - c0);
                // SAFETY: each item writes its own `n` output elements; registers are this
                // task's scratch.
                unsafe { self.tile(ctx, regs, out, row, c0, n, inner) };
            }
        });
    }

    /// Evaluates elements `[c0, c0+n)` of row `row`.
    ///
    /// # Safety
    /// `regs` must hold `regs * TILE` floats owned by the caller; output elements of this tile
    /// must not be touched concurrently.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        &self,
        ctx: &Ctx<'_>,
        regs: Ptr,
        out: Ptr,
        row: usize,
        c0: usize,
        n: usize,
        inner: usize,
    ) {
        // SAFETY: see the function contract; every pointer below stays inside its buffer.
        unsafe {
            let reg = |r: u16| -> *mut f32 { regs.get().add(r as usize * TILE) };
            let last = self.shape.len() - 1;
            for ins in &self.instrs {
                match *ins {
                    Instr::Load { dst, leaf } => {
                        let l = &self.leaves[leaf as usize];
                        let s = l.strides[last];
                        let start = l.offset as isize
                            + row_offset(row, &self.shape, &l.strides)
                            + c0 as isize * s;
                        let src = ctx.buf_ptr(l.buf).offset(start);
                        let d = std::slice::from_raw_parts_mut(reg(dst), n);
                        match s {
                            0 => d.fill(*src),
                            1 => d.copy_from_slice(std::slice::from_raw_parts(src, n)),
                            _ => {
                                for (i, x) in d.iter_mut().enumerate() {
                                    *x = *src.offset(i as isize * s);
                                }
                            }
                        }
                    }
                    Instr::Unary { op, dst, src } => {
                        let d = std::slice::from_raw_parts_mut(reg(dst), n);
                        match src {
                            Opnd::Scalar(v) => d.fill(op.apply(v)),
                            Opnd::Reg(r) => {
                                let a = std::slice::from_raw_parts(reg(r), n);
                                unary_loop(op, d, a);
                            }
                        }
                    }
                    Instr::Binary { op, dst, a, b } => {
                        let d = std::slice::from_raw_parts_mut(reg(dst), n);
                        match (a, b) {
                            (Opnd::Reg(x), Opnd::Reg(y)) => {
                                let (x, y) = (
                                    std::slice::from_raw_parts(reg(x), n),
                                    std::slice::from_raw_parts(reg(y), n),
                                );
                                binary_loop(op, d, x, y);
                            }
                            (Opnd::Reg(x), Opnd::Scalar(v)) => {
                                let x = std::slice::from_raw_parts(reg(x), n);
                                for (o, &a) in d.iter_mut().zip(x) {
                                    *o = op.apply(a, v);
                                }
                            }
                            (Opnd::Scalar(v), Opnd::Reg(y)) => {
                                let y = std::slice::from_raw_parts(reg(y), n);
                                for (o, &b) in d.iter_mut().zip(y) {
                                    *o = op.apply(v, b);
                                }
                            }
                            (Opnd::Scalar(u), Opnd::Scalar(v)) => d.fill(op.apply(u, v)),
                        }
                    }
                    Instr::Select { dst, c, a, b } => {
                        let get = |o: Opnd, i: usize| -> f32 {
                            match o {
                                Opnd::Scalar(v) => v,
                                Opnd::Reg(r) => *reg(r).add(i),
                            }
                        };
                        let d = reg(dst);
                        for i in 0..n {
                            *d.add(i) = if get(c, i) != 0.0 {
                                get(a, i)
                            } else {
                                get(b, i)
                            };
                        }
                    }
                    Instr::Round { reg: r } => {
                        for x in std::slice::from_raw_parts_mut(reg(r), n) {
                            *x = round_f16(*x);
                        }
                    }
                }
            }
            let res = std::slice::from_raw_parts(reg(self.result), n);
            let dst = out.get().add(row * inner + c0);
            std::ptr::copy_nonoverlapping(res.as_ptr(), dst, n);
        }
    }
}

fn unary_loop(op: UnaryOp, d: &mut [f32], a: &[f32]) {
    macro_rules! each {
        ($f:expr) => {
            for (o, &x) in d.iter_mut().zip(a) {
                *o = $f(x);
            }
        };
    }
    match op {
        UnaryOp::Exp => each!(exp_f32),
        UnaryOp::Sigmoid => each!(|x: f32| 1.0 / (1.0 + exp_f32(-x))),
        UnaryOp::Silu => each!(|x: f32| x / (1.0 + exp_f32(-x))),
        other => each!(|x| other.apply(x)),
    }
}

fn binary_loop(op: BinaryOp, d: &mut [f32], x: &[f32], y: &[f32]) {
    macro_rules! each {
        ($f:expr) => {
            for ((o, &a), &b) in d.iter_mut().zip(x).zip(y) {
                *o = $f(a, b);
            }
        };
    }
    match op {
        BinaryOp::Add => each!(|a: f32, b: f32| a + b),
        BinaryOp::Sub => each!(|a: f32, b: f32| a - b),
        BinaryOp::Mul => each!(|a: f32, b: f32| a * b),
        BinaryOp::Div => each!(|a: f32, b: f32| a / b),
        other => each!(|a, b| other.apply(a, b)),
    }
}
