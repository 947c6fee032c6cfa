//! Compiling a Program into a static plan.
//!
//! Shapes are static, so every intermediate gets a place in one arena at compile time.
//! Reshape, transpose and slice become views where the strides allow; chains of elementwise
//! ops become one fused pass; matmul/conv/softmax/reduce/attention become single steps that
//! read their operands in place. A value returned by the function is computed straight into
//! the output buffer when its producer writes a fresh buffer; otherwise it is copied there.

use std::collections::HashMap;
use std::sync::Arc;

use ane_mil::blob::BlobFile;
use ane_mil::{Arg, DType, Literal, Op, Program, Statement, TensorData, TensorType};

use super::exec::{BufId, BufKind, Step, View};
use super::layout::{coalesce, Layout};
use super::ops::conv::Conv;
use super::ops::elementwise::{BinaryOp, Fused, Instr, Leaf, Opnd, UnaryOp};
use super::ops::matmul::Matmul;
use super::ops::reduce::{Reduce, ReduceKind, Softmax};
use super::ops::sdpa::Sdpa;
use crate::error::{Error, Result};
use crate::kernel::{KernelInfo, TensorDesc};
use crate::weights::Weights;

/// A compiled program: buffers, constants and steps. Shared by every Binding of a Kernel.
#[derive(Debug)]
pub struct Plan {
    /// Kernel interface.
    pub info: KernelInfo,
    /// Every buffer.
    pub bufs: Vec<BufKind>,
    /// Constant data, indexed by `BufKind::Const`.
    pub consts: Vec<Box<[f32]>>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Arena floats for temporaries (scratch comes after).
    pub temp_len: usize,
    /// Scratch floats per task.
    pub scratch_per_task: usize,
    /// Round op results to fp16.
    pub round: bool,
}

/// What a variable is during planning.
#[derive(Debug, Clone)]
enum Val {
    /// A tensor in a buffer.
    View(View),
    /// A constant not yet placed in a buffer.
    Const(Arc<[f32]>, TensorType),
    /// A non-numeric constant (string), only usable as an op option.
    Opaque,
    /// An elementwise expression not yet evaluated.
    Expr(Box<Expr>),
}

#[derive(Debug, Clone)]
struct Expr {
    shape: Vec<usize>,
    node: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Leaf(View),
    Scalar(f32),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
}

/// Builds a plan for `program`'s `main`, reading BLOBFILE constants from `weights`.
pub fn compile(program: &Program, weights: &Weights, round: bool) -> Result<Plan> {
    let f = program.main().ok_or(Error::NoMain)?;
    let mut p = Planner {
        weights,
        round,
        bufs: Vec::new(),
        consts: Vec::new(),
        steps: Vec::new(),
        vals: HashMap::new(),
        lits: HashMap::new(),
        dtypes: HashMap::new(),
        uses: HashMap::new(),
        matmul_of: HashMap::new(),
        temp_len: 0,
    };
    for s in &f.body {
        for (_, a) in &s.args {
            match a {
                Arg::Var(v) => *p.uses.entry(v.clone()).or_insert(0) += 1,
                Arg::Tuple(vs) => vs
                    .iter()
                    .for_each(|v| *p.uses.entry(v.clone()).or_insert(0) += 1),
                Arg::Literal(_) => {}
            }
        }
    }
    for r in &f.returns {
        *p.uses.entry(r.clone()).or_insert(0) += 1;
    }
    let mut inputs = Vec::new();
    for (i, param) in f.params.iter().enumerate() {
        check_numeric(&param.name, &param.ty)?;
        p.dtypes.insert(param.name.clone(), param.ty.dtype);
        let buf = p.buf(BufKind::Input(i));
        p.vals.insert(
            param.name.clone(),
            Val::View(View {
                buf,
                layout: Layout::contiguous(&param.ty.shape),
            }),
        );
        inputs.push(TensorDesc {
            name: param.name.clone(),
            ty: param.ty.clone(),
        });
    }
    for s in &f.body {
        p.statement(s)?;
    }
    let mut outputs = Vec::new();
    for (i, r) in f.returns.iter().enumerate() {
        if f.returns[..i].contains(r) {
            return Err(unsupported(format!(
                "`{r}` is returned twice; outputs are bound by name, so return distinct variables"
            )));
        }
        let ty = f
            .type_of(r)
            .cloned()
            .ok_or_else(|| Error::Program(ane_mil::Error::UnknownVariable { name: r.clone() }))?;
        check_numeric(r, &ty)?;
        p.output(i, r, &ty.shape)?;
        outputs.push(TensorDesc {
            name: r.clone(),
            ty,
        });
    }
    let scratch_per_task = p
        .steps
        .iter()
        .map(Step::scratch)
        .max()
        .unwrap_or(0)
        .next_multiple_of(16);
    Ok(Plan {
        info: KernelInfo { inputs, outputs },
        bufs: p.bufs,
        consts: p.consts,
        steps: p.steps,
        temp_len: p.temp_len,
        scratch_per_task,
        round,
    })
}

fn check_numeric(name: &str, ty: &TensorType) -> Result<()> {
    if ty.dtype == DType::String || ty.num_elements().unwrap_or(0) == 0 {
        return Err(Error::Unsupported {
            device: "cpu",
            detail: format!(
                "`{name}` is {ty}; kernel inputs and outputs must be non-empty numeric tensors"
            ),
        });
    }
    Ok(())
}

fn unsupported(detail: String) -> Error {
    Error::Unsupported {
        device: "cpu",
        detail,
    }
}

struct Planner<'w> {
    weights: &'w Weights,
    round: bool,
    bufs: Vec<BufKind>,
    consts: Vec<Box<[f32]>>,
    steps: Vec<Step>,
    vals: HashMap<String, Val>,
    /// Literals of `const` statements, for option arguments.
    lits: HashMap<String, Literal>,
    /// Declared dtype of every parameter and statement result.
    dtypes: HashMap<String, DType>,
    uses: HashMap<String, usize>,
    /// The Matmul step (and result variable) that writes each matmul result buffer, for
    /// relayout by a following transpose.
    matmul_of: HashMap<BufId, (usize, String)>,
    temp_len: usize,
}

impl Planner<'_> {
    fn buf(&mut self, kind: BufKind) -> BufId {
        self.bufs.push(kind);
        self.bufs.len() - 1
    }

    fn temp(&mut self, len: usize) -> BufId {
        let offset = self.temp_len;
        self.temp_len += len.next_multiple_of(16);
        self.buf(BufKind::Temp { offset, len })
    }

    fn statement(&mut self, s: &Statement) -> Result<()> {
        let val = match s.op {
            Op::Const => {
                let lit = s
                    .attr("val")
                    .cloned()
                    .ok_or_else(|| unsupported("const without val".into()))?;
                self.lits.insert(s.output.clone(), lit.clone());
                match self.literal_data(&lit)? {
                    Some(data) => Val::Const(data, lit.ty().clone()),
                    None => Val::Opaque,
                }
            }
            Op::ConstexprAffineDequantize => {
                let get = |k: &str| {
                    s.attr(k).ok_or_else(|| {
                        unsupported(format!("constexpr_affine_dequantize without {k}"))
                    })
                };
                let q = self
                    .literal_data(get("quantized_data")?)?
                    .unwrap_or_else(|| Arc::from(Vec::new()));
                let scale = self
                    .literal_data(get("scale")?)?
                    .unwrap_or_else(|| Arc::from(vec![1.0]));
                let zp = match s.attr("zero_point") {
                    Some(l) => self
                        .literal_data(l)?
                        .unwrap_or_else(|| Arc::from(vec![0.0])),
                    None => Arc::from(vec![0.0]),
                };
                let axis = match s
                    .attr("axis")
                    .and_then(Literal::data)
                    .and_then(TensorData::as_ints)
                {
                    Some(v) => ane_mil::ops::normalize_axis(v[0], s.ty.rank()).unwrap_or(0),
                    None => 0,
                };
                let inner: usize = s.ty.shape[axis + 1..].iter().product();
                let n = s.ty.shape[axis];
                let pick = |v: &[f32], i: usize| {
                    if v.len() == 1 {
                        v[0]
                    } else {
                        v[(i / inner) % n]
                    }
                };
                let data: Vec<f32> = q
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| self.r((x - pick(&zp, i)) * pick(&scale, i)))
                    .collect();
                Val::Const(data.into(), s.ty.clone())
            }
            Op::Reshape => {
                let x = self.view(s, "x")?;
                let shape = &s.ty.shape;
                match x.layout.reshape(shape) {
                    Some(layout) => Val::View(View { buf: x.buf, layout }),
                    None => {
                        let c = self.materialize_view(&x);
                        Val::View(View {
                            buf: c.buf,
                            layout: Layout::contiguous(shape),
                        })
                    }
                }
            }
            Op::Transpose => {
                let x = self.view(s, "x")?;
                let perm: Vec<usize> = self
                    .ints(s, "perm")?
                    .iter()
                    .map(|&p| ane_mil::ops::normalize_axis(p, x.layout.shape.len()).unwrap_or(0))
                    .collect();
                let only_user = match s.arg("x") {
                    Some(Arg::Var(v)) if self.uses.get(v) == Some(&1) => Some(v.clone()),
                    _ => None,
                };
                match self.relayout_matmul(&x, &perm, only_user) {
                    Some(v) => Val::View(v),
                    None => Val::View(View {
                        buf: x.buf,
                        layout: x.layout.transpose(&perm),
                    }),
                }
            }
            Op::SliceBySize => {
                let x = self.view(s, "x")?;
                let begin: Vec<usize> =
                    self.ints(s, "begin")?.iter().map(|&b| b as usize).collect();
                Val::View(View {
                    buf: x.buf,
                    layout: x.layout.slice(&begin, &s.ty.shape),
                })
            }
            Op::Add | Op::Sub | Op::Mul | Op::RealDiv | Op::Pow | Op::Maximum => {
                let op = match s.op {
                    Op::Add => BinaryOp::Add,
                    Op::Sub => BinaryOp::Sub,
                    Op::Mul => BinaryOp::Mul,
                    Op::RealDiv => BinaryOp::Div,
                    Op::Pow => BinaryOp::Pow,
                    _ => BinaryOp::Max,
                };
                let (a, b) = (self.expr(s, "x")?, self.expr(s, "y")?);
                self.node(&s.ty, Node::Binary(op, a, b))
            }
            Op::Sigmoid | Op::Silu | Op::Exp | Op::Log | Op::Rsqrt => {
                let eps = if s.arg("epsilon").is_some() {
                    self.floats(s, "epsilon")?[0] as f32
                } else {
                    0.0
                };
                let op = match s.op {
                    Op::Sigmoid => UnaryOp::Sigmoid,
                    Op::Silu => UnaryOp::Silu,
                    Op::Exp => UnaryOp::Exp,
                    Op::Log => UnaryOp::Log(eps),
                    _ => UnaryOp::Rsqrt(eps),
                };
                let x = self.expr(s, "x")?;
                self.node(&s.ty, Node::Unary(op, x))
            }
            Op::Select => {
                let (c, a, b) = (
                    self.expr(s, "cond")?,
                    self.expr(s, "a")?,
                    self.expr(s, "b")?,
                );
                self.node(&s.ty, Node::Select(c, a, b))
            }
            Op::Cast => {
                let x = self.expr(s, "x")?;
                match s.ty.dtype {
                    DType::Fp16 => self.node(&s.ty, Node::Unary(UnaryOp::RoundF16, x)),
                    DType::Int32 | DType::Int8 => self.node(&s.ty, Node::Unary(UnaryOp::Trunc, x)),
                    DType::Bool => self.node(&s.ty, Node::Unary(UnaryOp::NonZero, x)),
                    _ => Val::Expr(Box::new(Expr {
                        shape: s.ty.shape.clone(),
                        node: x.node,
                    })),
                }
            }
            Op::Quantize | Op::Dequantize => {
                let x = self.expr(s, "input")?;
                let axis = if s.arg("axis").is_some() {
                    Some(self.ints(s, "axis")?[0])
                } else {
                    None
                };
                let scale = self.quant_param(s, "scale", axis)?;
                let zp = if s.arg("zero_point").is_some() {
                    Some(self.quant_param(s, "zero_point", axis)?)
                } else {
                    None
                };
                let shape = s.ty.shape.clone();
                let e = |node| {
                    Box::new(Expr {
                        shape: shape.clone(),
                        node,
                    })
                };
                if s.op == Op::Quantize {
                    let mut t = e(Node::Binary(BinaryOp::Div, x, scale));
                    if let Some(z) = zp {
                        t = e(Node::Binary(BinaryOp::Add, t, z));
                    }
                    self.node(&s.ty, Node::Unary(UnaryOp::RoundClampI8, t))
                } else {
                    let t = match zp {
                        Some(z) => e(Node::Binary(BinaryOp::Sub, x, z)),
                        None => x,
                    };
                    self.node(&s.ty, Node::Binary(BinaryOp::Mul, t, scale))
                }
            }
            Op::Matmul => self.matmul(s)?,
            Op::Conv => self.conv(s)?,
            Op::Softmax => {
                let x = self.contiguous(s, "x")?;
                let rank = s.ty.rank();
                let axis = if s.arg("axis").is_some() {
                    self.ints(s, "axis")?[0]
                } else {
                    -1
                };
                let axis = ane_mil::ops::normalize_axis(axis, rank).unwrap_or(0);
                let out = self.temp(x.layout.len());
                self.emit(
                    Step::Softmax(Softmax {
                        x: (x.buf, x.layout.offset),
                        out,
                        outer: s.ty.shape[..axis].iter().product(),
                        len: s.ty.shape[axis],
                        inner: s.ty.shape[axis + 1..].iter().product(),
                    }),
                    out,
                    x.layout.len(),
                );
                Val::View(View {
                    buf: out,
                    layout: Layout::contiguous(&s.ty.shape),
                })
            }
            Op::ReduceSum | Op::ReduceMax => self.reduce(s)?,
            Op::Concat => self.concat(s)?,
            Op::ScaledDotProductAttention => self.sdpa(s)?,
        };
        self.vals.insert(s.output.clone(), val);
        self.dtypes.insert(s.output.clone(), s.ty.dtype);
        Ok(())
    }

    /// Rounds a constant to fp16 in ane-sim fidelity.
    fn r(&self, x: f32) -> f32 {
        if self.round {
            super::exec::round_f16(x)
        } else {
            x
        }
    }

    /// Emits a step writing `len` elements of `out`, plus fp16 rounding in ane-sim.
    fn emit(&mut self, step: Step, out: BufId, len: usize) {
        self.steps.push(step);
        if self.round {
            self.steps.push(Step::Round { buf: out, len });
        }
    }

    /// The f32 values of a literal (inline or BLOBFILE); `None` for strings.
    fn literal_data(&self, lit: &Literal) -> Result<Option<Arc<[f32]>>> {
        let data: Vec<f32> = match lit {
            Literal::Value { data, .. } => match data {
                TensorData::Fp16(v) => v.iter().map(|x| x.to_f32()).collect(),
                TensorData::Fp32(v) => v.iter().map(|&x| self.r(x)).collect(),
                TensorData::Int8(v) => v.iter().map(|&x| x as f32).collect(),
                TensorData::Int32(v) => v.iter().map(|&x| x as f32).collect(),
                TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
                TensorData::String(_) => return Ok(None),
            },
            Literal::BlobFile { ty, path, offset } => {
                let bytes = self.weights.get(path)?;
                let file = BlobFile::parse(&bytes).map_err(|source| Error::Blob {
                    path: path.clone(),
                    source,
                })?;
                let n = ty.num_elements().unwrap_or(0);
                let blob_err = |source| Error::Blob {
                    path: path.clone(),
                    source,
                };
                match ty.dtype {
                    DType::Int8 => file
                        .read_i8(*offset, n)
                        .map_err(blob_err)?
                        .into_iter()
                        .map(|x| x as f32)
                        .collect(),
                    DType::Fp16 => file
                        .read_f16(*offset, n)
                        .map_err(blob_err)?
                        .into_iter()
                        .map(|x| x.to_f32())
                        .collect(),
                    _ => file
                        .read_f32(*offset, n)
                        .map_err(blob_err)?
                        .into_iter()
                        .map(|x| self.r(x))
                        .collect(),
                }
            }
        };
        Ok(Some(data.into()))
    }

    fn arg_val(&mut self, s: &Statement, key: &str) -> Result<Val> {
        match s.arg(key) {
            Some(Arg::Var(v)) => {
                self.vals.get(v).cloned().ok_or_else(|| {
                    Error::Program(ane_mil::Error::UnknownVariable { name: v.clone() })
                })
            }
            Some(Arg::Literal(l)) => Ok(match self.literal_data(l)? {
                Some(d) => Val::Const(d, l.ty().clone()),
                None => Val::Opaque,
            }),
            _ => Err(unsupported(format!(
                "{}: argument `{key}` must be a tensor",
                s.op
            ))),
        }
    }

    fn lit_of(&self, s: &Statement, key: &str) -> Option<Literal> {
        match s.arg(key)? {
            Arg::Var(v) => self.lits.get(v).cloned(),
            Arg::Literal(l) => Some(l.clone()),
            Arg::Tuple(_) => None,
        }
    }

    fn ints(&self, s: &Statement, key: &str) -> Result<Vec<i64>> {
        self.lit_of(s, key)
            .and_then(|l| l.data().and_then(TensorData::as_ints))
            .ok_or_else(|| unsupported(format!("{}: `{key}` must be an integer constant", s.op)))
    }

    fn floats(&self, s: &Statement, key: &str) -> Result<Vec<f64>> {
        self.lit_of(s, key)
            .and_then(|l| l.data().and_then(TensorData::as_floats))
            .ok_or_else(|| unsupported(format!("{}: `{key}` must be a float constant", s.op)))
    }

    fn flag(&self, s: &Statement, key: &str) -> bool {
        matches!(self.lit_of(s, key).as_ref().and_then(Literal::data), Some(TensorData::Bool(v)) if v[0])
    }

    /// A constant placed in a buffer (once per variable).
    fn const_view(&mut self, data: Arc<[f32]>, ty: &TensorType) -> View {
        self.consts.push(data.to_vec().into_boxed_slice());
        let buf = self.buf(BufKind::Const(self.consts.len() - 1));
        View {
            buf,
            layout: Layout::contiguous(&ty.shape),
        }
    }

    /// The argument as a view in a buffer (evaluating an expression or placing a constant).
    fn view(&mut self, s: &Statement, key: &str) -> Result<View> {
        let var = match s.arg(key) {
            Some(Arg::Var(v)) => Some(v.clone()),
            _ => None,
        };
        let v = match self.arg_val(s, key)? {
            Val::View(v) => v,
            Val::Const(d, ty) => self.const_view(d, &ty),
            Val::Expr(e) => self.materialize(&e, None),
            Val::Opaque => return Err(unsupported(format!("{}: `{key}` is not numeric", s.op))),
        };
        if let Some(var) = var {
            self.vals.insert(var, Val::View(v.clone()));
        }
        Ok(v)
    }

    /// The argument as a contiguous view.
    fn contiguous(&mut self, s: &Statement, key: &str) -> Result<View> {
        let v = self.view(s, key)?;
        Ok(if v.layout.is_contiguous() {
            v
        } else {
            self.materialize_view(&v)
        })
    }

    /// Copies a view into a fresh contiguous temporary.
    fn materialize_view(&mut self, v: &View) -> View {
        let len = v.layout.len();
        let buf = self.temp(len);
        let dst = View {
            buf,
            layout: Layout::contiguous(&v.layout.shape),
        };
        self.steps.push(Step::Copy {
            src: v.clone(),
            dst: dst.clone(),
        });
        dst
    }

    /// The argument as an expression tree, fusing single-use elementwise producers.
    ///
    /// A producer is fused only when it has as many elements as the consumer's result: a
    /// smaller expression that the consumer broadcasts is evaluated once at its own size (fusing
    /// it would recompute it for every broadcast copy).
    fn expr(&mut self, s: &Statement, key: &str) -> Result<Box<Expr>> {
        let var = match s.arg(key) {
            Some(Arg::Var(v)) => Some(v.clone()),
            _ => None,
        };
        let single_use = var
            .as_ref()
            .is_some_and(|v| self.uses.get(v).copied().unwrap_or(0) <= 1);
        let out_len = s.ty.num_elements().unwrap_or(0);
        Ok(match self.arg_val(s, key)? {
            Val::Expr(e) if single_use && e.shape.iter().product::<usize>() == out_len => e,
            Val::Const(d, ty) if d.len() == 1 => Box::new(Expr {
                shape: ty.shape.clone(),
                node: Node::Scalar(d[0]),
            }),
            _ => {
                let v = self.view(s, key)?;
                Box::new(Expr {
                    shape: v.layout.shape.clone(),
                    node: Node::Leaf(v),
                })
            }
        })
    }

    fn node(&mut self, ty: &TensorType, node: Node) -> Val {
        Val::Expr(Box::new(Expr {
            shape: ty.shape.clone(),
            node,
        }))
    }

    /// Evaluates an expression into `into` (a contiguous buffer of its size) or a fresh
    /// temporary.
    fn materialize(&mut self, e: &Expr, into: Option<BufId>) -> View {
        let len: usize = e.shape.iter().product();
        let out = into.unwrap_or_else(|| self.temp(len));
        let out_layout = Layout::contiguous(&e.shape);
        let mut leaves: Vec<Layout> = Vec::new();
        let mut leaf_bufs: Vec<BufId> = Vec::new();
        let mut instrs = Vec::new();
        let mut regs = 0u16;
        let result = self.lower(e, &mut leaves, &mut leaf_bufs, &mut instrs, &mut regs);
        let result = match result {
            Opnd::Reg(r) => r,
            Opnd::Scalar(v) => {
                instrs.push(Instr::Binary {
                    op: BinaryOp::Add,
                    dst: regs,
                    a: Opnd::Scalar(v),
                    b: Opnd::Scalar(0.0),
                });
                regs += 1;
                regs - 1
            }
        };
        let broadcast: Vec<Layout> = leaves
            .iter()
            .map(|l| l.broadcast_to(&e.shape).unwrap_or_else(|| l.clone()))
            .collect();
        let mut all: Vec<&Layout> = vec![&out_layout];
        all.extend(broadcast.iter());
        let (shape, strides) = coalesce(&all);
        let leaves = broadcast
            .iter()
            .zip(&leaf_bufs)
            .zip(strides.iter().skip(1))
            .map(|((l, &buf), st)| Leaf {
                buf,
                offset: l.offset,
                strides: st.clone(),
            })
            .collect();
        self.steps.push(Step::Fused(Fused {
            out,
            shape,
            leaves,
            instrs,
            regs: regs as usize,
            result,
        }));
        View {
            buf: out,
            layout: out_layout,
        }
    }

    fn lower(
        &self,
        e: &Expr,
        leaves: &mut Vec<Layout>,
        bufs: &mut Vec<BufId>,
        instrs: &mut Vec<Instr>,
        regs: &mut u16,
    ) -> Opnd {
        let out = match &e.node {
            Node::Scalar(v) => return Opnd::Scalar(*v),
            Node::Leaf(v) => {
                leaves.push(v.layout.clone());
                bufs.push(v.buf);
                let dst = *regs;
                *regs += 1;
                instrs.push(Instr::Load {
                    dst,
                    leaf: (leaves.len() - 1) as u16,
                });
                return Opnd::Reg(dst);
            }
            Node::Unary(op, x) => {
                let src = self.lower(x, leaves, bufs, instrs, regs);
                let dst = *regs;
                *regs += 1;
                instrs.push(Instr::Unary { op: *op, dst, src });
                dst
            }
            Node::Binary(op, a, b) => {
                let a = self.lower(a, leaves, bufs, instrs, regs);
                let b = self.lower(b, leaves, bufs, instrs, regs);
                let dst = *regs;
                *regs += 1;
                instrs.push(Instr::Binary { op: *op, dst, a, b });
                dst
            }
            Node::Select(c, a, b) => {
                let c = self.lower(c, leaves, bufs, instrs, regs);
                let a = self.lower(a, leaves, bufs, instrs, regs);
                let b = self.lower(b, leaves, bufs, instrs, regs);
                let dst = *regs;
                *regs += 1;
                instrs.push(Instr::Select { dst, c, a, b });
                dst
            }
        };
        if self.round {
            instrs.push(Instr::Round { reg: out });
        }
        Opnd::Reg(out)
    }

    /// A quantization parameter as an expression broadcast along `axis`.
    fn quant_param(&mut self, s: &Statement, key: &str, axis: Option<i64>) -> Result<Box<Expr>> {
        let e = self.expr(s, key)?;
        let rank = s.ty.rank();
        match (e.shape.len(), axis, &e.node) {
            (1, Some(ax), Node::Leaf(v)) => {
                let ax = ane_mil::ops::normalize_axis(ax, rank).unwrap_or(0);
                let mut shape = vec![1; rank];
                shape[ax] = e.shape[0];
                let layout = v.layout.reshape(&shape).unwrap_or_else(|| v.layout.clone());
                Ok(Box::new(Expr {
                    shape,
                    node: Node::Leaf(View { buf: v.buf, layout }),
                }))
            }
            _ => Ok(e),
        }
    }

    /// When `x` is the whole contiguous result of a matmul used only by this transpose, makes
    /// the matmul write its result directly in the transposed order, so the transpose is
    /// contiguous and any reshape after it is a free view (no copy, ever).
    fn relayout_matmul(&mut self, x: &View, perm: &[usize], var: Option<String>) -> Option<View> {
        let (idx, result) = self.matmul_of.get(&x.buf)?.clone();
        let whole = matches!(self.bufs[x.buf], BufKind::Temp { len, .. } if len == x.layout.len());
        if var.as_ref() != Some(&result)
            || !whole
            || x.layout.offset != 0
            || x.layout != Layout::contiguous(&x.layout.shape)
        {
            return None;
        }
        let Step::Matmul(mm) = &mut self.steps[idx] else {
            return None;
        };
        let t = x.layout.transpose(perm);
        let target = Layout::contiguous(&t.shape);
        let mut strides = vec![0isize; perm.len()];
        for (d, &p) in perm.iter().enumerate() {
            strides[p] = target.strides[d];
        }
        let r = strides.len();
        mm.batch_strides[2] = strides[..r - 2].to_vec();
        mm.dst = (strides[r - 2], strides[r - 1]);
        self.matmul_of.remove(&x.buf);
        Some(View {
            buf: x.buf,
            layout: target,
        })
    }

    fn matmul(&mut self, s: &Statement) -> Result<Val> {
        let (x, y) = (self.view(s, "x")?, self.view(s, "y")?);
        let (tx, ty) = (self.flag(s, "transpose_x"), self.flag(s, "transpose_y"));
        let r = s.ty.rank();
        let batch = s.ty.shape[..r - 2].to_vec();
        let (m, n) = (s.ty.shape[r - 2], s.ty.shape[r - 1]);
        let xr = x.layout.shape.len();
        let k = if tx {
            x.layout.shape[xr - 2]
        } else {
            x.layout.shape[xr - 1]
        };
        let bstrides = |l: &Layout| -> Vec<isize> {
            let lb = Layout {
                shape: l.shape[..l.shape.len() - 2].to_vec(),
                strides: l.strides[..l.strides.len() - 2].to_vec(),
                offset: 0,
            };
            lb.broadcast_to(&batch)
                .map(|b| b.strides)
                .unwrap_or_else(|| vec![0; batch.len()])
        };
        let mat = |l: &Layout, t: bool| -> (isize, isize) {
            let n = l.strides.len();
            if t {
                (l.strides[n - 1], l.strides[n - 2])
            } else {
                (l.strides[n - 2], l.strides[n - 1])
            }
        };
        let len: usize = s.ty.shape.iter().product();
        let out = self.temp(len);
        let out_layout = Layout::contiguous(&s.ty.shape);
        let step = Matmul {
            x: (x.buf, x.layout.offset),
            y: (y.buf, y.layout.offset),
            out: (out, 0),
            batch_strides: [
                bstrides(&x.layout),
                bstrides(&y.layout),
                out_layout.strides[..r - 2].to_vec(),
            ],
            batch,
            m,
            n,
            k,
            lhs: mat(&x.layout, tx),
            rhs: mat(&y.layout, ty),
            dst: (n as isize, 1),
        };
        self.matmul_of
            .insert(out, (self.steps.len(), s.output.clone()));
        self.emit(Step::Matmul(step), out, len);
        Ok(Val::View(View {
            buf: out,
            layout: out_layout,
        }))
    }

    fn conv(&mut self, s: &Statement) -> Result<Val> {
        let x = self.contiguous(s, "x")?;
        let w = self.contiguous(s, "weight")?;
        let bias = if s.arg("bias").is_some() {
            Some(self.contiguous(s, "bias")?)
        } else {
            None
        };
        let pair = |p: &Self, k: &str| -> Result<[usize; 2]> {
            if s.arg(k).is_none() {
                return Ok([1, 1]);
            }
            let v = p.ints(s, k)?;
            Ok([v[0] as usize, v[1] as usize])
        };
        let pad_type = self
            .lit_of(s, "pad_type")
            .and_then(|l| l.as_str().map(str::to_string))
            .unwrap_or_else(|| "valid".into());
        let [h, wd] = [x.layout.shape[2], x.layout.shape[3]];
        let strides = pair(self, "strides")?;
        let dil = pair(self, "dilations")?;
        let [oh, ow] = [s.ty.shape[2], s.ty.shape[3]];
        let pad = match pad_type.as_str() {
            "custom" => {
                let p = self.ints(s, "pad")?;
                [p[0] as usize, p[2] as usize]
            }
            "same" => {
                let total = |o: usize, st: usize, k: usize, d: usize, i: usize| {
                    ((o - 1) * st + (k - 1) * d + 1).saturating_sub(i)
                };
                [
                    total(oh, strides[0], w.layout.shape[2], dil[0], h) / 2,
                    total(ow, strides[1], w.layout.shape[3], dil[1], wd) / 2,
                ]
            }
            _ => [0, 0],
        };
        let groups = if s.arg("groups").is_some() {
            self.ints(s, "groups")?[0] as usize
        } else {
            1
        };
        let len: usize = s.ty.shape.iter().product();
        let out = self.temp(len);
        let dims = |l: &Layout| [l.shape[0], l.shape[1], l.shape[2], l.shape[3]];
        let step = Conv {
            x: (x.buf, x.layout.offset),
            w: (w.buf, w.layout.offset),
            bias: bias.map(|b| (b.buf, b.layout.offset)),
            out,
            in_shape: dims(&x.layout),
            w_shape: dims(&w.layout),
            out_hw: [oh, ow],
            strides,
            dilations: dil,
            pad,
            groups,
        };
        self.emit(Step::Conv(step), out, len);
        Ok(Val::View(View {
            buf: out,
            layout: Layout::contiguous(&s.ty.shape),
        }))
    }

    fn reduce(&mut self, s: &Statement) -> Result<Val> {
        let x = self.view(s, "x")?;
        let rank = x.layout.shape.len();
        let axes: Vec<usize> = if s.arg("axes").is_some() {
            self.ints(s, "axes")?
                .iter()
                .map(|&a| ane_mil::ops::normalize_axis(a, rank).unwrap_or(0))
                .collect()
        } else {
            (0..rank).collect()
        };
        let kept: Vec<usize> = (0..rank)
            .map(|d| {
                if axes.contains(&d) {
                    1
                } else {
                    x.layout.shape[d]
                }
            })
            .collect();
        let mut ob = Layout::contiguous(&kept);
        for &a in &axes {
            ob.strides[a] = 0;
        }
        ob.shape = x.layout.shape.clone();
        let (shape, strides) = coalesce(&[&x.layout, &ob]);
        let out_len: usize = s.ty.shape.iter().product();
        let out = self.temp(out_len);
        let kind = if s.op == Op::ReduceSum {
            ReduceKind::Sum
        } else {
            ReduceKind::Max
        };
        self.emit(
            Step::Reduce(Reduce {
                kind,
                x: (x.buf, x.layout.offset),
                out,
                out_len,
                shape,
                x_strides: strides[0].clone(),
                out_strides: strides[1].clone(),
            }),
            out,
            out_len,
        );
        Ok(Val::View(View {
            buf: out,
            layout: Layout::contiguous(&s.ty.shape),
        }))
    }

    fn concat(&mut self, s: &Statement) -> Result<Val> {
        let names = match s.arg("values") {
            Some(Arg::Tuple(v)) => v.clone(),
            _ => return Err(unsupported("concat needs a tuple of values".into())),
        };
        let rank = s.ty.rank();
        let axis = ane_mil::ops::normalize_axis(self.ints(s, "axis")?[0], rank).unwrap_or(0);
        let interleave = self.flag(s, "interleave");
        let len: usize = s.ty.shape.iter().product();
        let out = self.temp(len);
        let full = Layout::contiguous(&s.ty.shape);
        let count = names.len();
        let mut at = 0;
        for (i, name) in names.iter().enumerate() {
            let st = Statement {
                args: vec![("x".into(), Arg::Var(name.clone()))],
                ..s.clone()
            };
            let src = self.view(&st, "x")?;
            let mut dst = full.clone();
            dst.shape[axis] = src.layout.shape[axis];
            if interleave {
                dst.offset = i * full.strides[axis] as usize;
                dst.strides[axis] *= count as isize;
            } else {
                dst.offset = at * full.strides[axis] as usize;
                at += src.layout.shape[axis];
            }
            self.steps.push(Step::Copy {
                src,
                dst: View {
                    buf: out,
                    layout: dst,
                },
            });
        }
        Ok(Val::View(View {
            buf: out,
            layout: full,
        }))
    }

    fn sdpa(&mut self, s: &Statement) -> Result<Val> {
        let q = self.view(s, "query")?;
        let k = self.view(s, "key")?;
        let v = self.view(s, "value")?;
        let r = s.ty.rank();
        let batch = s.ty.shape[..r - 2].to_vec();
        let (l, ev) = (s.ty.shape[r - 2], s.ty.shape[r - 1]);
        let (sl, e) = (k.layout.shape[r - 2], k.layout.shape[r - 1]);
        let bs = |lay: &Layout| lay.strides[..lay.strides.len() - 2].to_vec();
        let rc = |lay: &Layout| {
            (
                lay.strides[lay.strides.len() - 2],
                lay.strides[lay.strides.len() - 1],
            )
        };
        let len: usize = s.ty.shape.iter().product();
        let out = self.temp(len);
        let out_layout = Layout::contiguous(&s.ty.shape);
        let (mask, bool_mask) = if s.arg("attn_mask").is_some() {
            let m = self.view(s, "attn_mask")?;
            let dtype = match s.arg("attn_mask") {
                Some(Arg::Var(n)) => self.dtypes.get(n).copied(),
                Some(Arg::Literal(l)) => Some(l.ty().dtype),
                _ => None,
            };
            let full: Vec<usize> = batch.iter().copied().chain([l, sl]).collect();
            let b = m
                .layout
                .broadcast_to(&full)
                .unwrap_or_else(|| m.layout.clone());
            (
                Some(((m.buf, b.offset), bs(&b), rc(&b))),
                dtype == Some(DType::Bool),
            )
        } else {
            (None, false)
        };
        let step = Sdpa {
            qkv: [
                (q.buf, q.layout.offset),
                (k.buf, k.layout.offset),
                (v.buf, v.layout.offset),
            ],
            batch_strides: [bs(&q.layout), bs(&k.layout), bs(&v.layout), bs(&out_layout)],
            batch,
            mat_strides: [rc(&q.layout), rc(&k.layout), rc(&v.layout)],
            mask,
            bool_mask,
            out,
            dims: [l, sl, e, ev],
        };
        self.emit(Step::Sdpa(step), out, len);
        Ok(Val::View(View {
            buf: out,
            layout: out_layout,
        }))
    }

    /// Places returned variable `name` in output buffer `i`.
    fn output(&mut self, i: usize, name: &str, shape: &[usize]) -> Result<()> {
        let val =
            self.vals.get(name).cloned().ok_or_else(|| {
                Error::Program(ane_mil::Error::UnknownVariable { name: name.into() })
            })?;
        let len: usize = shape.iter().product();
        match val {
            Val::Expr(e) => {
                let buf = self.buf(BufKind::Output(i));
                let v = self.materialize(&e, Some(buf));
                self.vals.insert(name.into(), Val::View(v));
            }
            Val::View(v) => {
                let whole = v.layout.offset == 0 && v.layout.is_contiguous();
                let fresh = matches!(self.bufs[v.buf], BufKind::Temp { len: l, .. } if l == len);
                if whole && fresh {
                    self.bufs[v.buf] = BufKind::Output(i);
                } else {
                    let buf = self.buf(BufKind::Output(i));
                    self.steps.push(Step::Copy {
                        src: v,
                        dst: View {
                            buf,
                            layout: Layout::contiguous(shape),
                        },
                    });
                }
            }
            Val::Const(d, ty) => {
                let src = self.const_view(d, &ty);
                let buf = self.buf(BufKind::Output(i));
                self.steps.push(Step::Copy {
                    src,
                    dst: View {
                        buf,
                        layout: Layout::contiguous(shape),
                    },
                });
            }
            Val::Opaque => return Err(unsupported(format!("output `{name}` is not numeric"))),
        }
        Ok(())
    }
}
