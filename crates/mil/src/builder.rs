//! Building functions op by op, with shape and dtype inference.
//!
//! Every method checks its operands at once and returns a typed [`Error`] — never panics — for a
//! wrong rank, mismatched dims, an unknown variable or a duplicate name. Each op's result variable
//! and its `name` attribute are the same string.
//!
//! Literal operands (axes, shapes, flags, scalars) become named `const` statements, as coremltools
//! and upstream emit them: the const is named `<op name>_<argument>` and an identical literal used
//! again later reuses the first const.
//!
//! ```
//! use ane_mil::builder::FunctionBuilder;
//! use ane_mil::ir::{DType, Dialect, Program, TensorType};
//!
//! let mut f = FunctionBuilder::new("main");
//! let x = f.input("x", TensorType::new(DType::Fp16, [1, 64, 1, 32])).unwrap();
//! let sq = f.mul("sq", x, x).unwrap();
//! let ss = f.reduce_sum("ss", sq, &[1], true).unwrap();
//! assert_eq!(f.ty(ss).unwrap().shape, vec![1, 1, 1, 32]);
//! let program = Program::new(Dialect::Ios18, f.finish(&[ss]).unwrap());
//! assert!(ane_mil::verify::verify(&program).is_ok());
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;
use crate::ir::{Arg, DType, Function, Literal, Param, Statement, TensorType};
use crate::ops::Op;
use crate::verify::Scope;

/// A variable defined in a [`FunctionBuilder`]: a parameter or an op result.
///
/// A `Var` belongs to the builder that made it; handing it to another builder gives
/// [`Error::UnknownVariable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Var {
    builder: u64,
    index: usize,
}

/// Source of distinct builder ids.
static NEXT_BUILDER: AtomicU64 = AtomicU64::new(0);

/// An operand given to a builder method: a variable, or a literal that becomes a `const`.
#[derive(Debug, Clone, PartialEq)]
pub enum In {
    /// An existing variable.
    Var(Var),
    /// A constant value.
    Lit(Literal),
}

impl From<Var> for In {
    fn from(v: Var) -> Self {
        In::Var(v)
    }
}

impl From<Literal> for In {
    fn from(l: Literal) -> Self {
        In::Lit(l)
    }
}

/// One argument of a generic [`FunctionBuilder::op`] call.
#[derive(Debug, Clone, PartialEq)]
pub enum BuildArg {
    /// A single operand.
    One(In),
    /// A tuple of variables (`concat`'s `values`).
    Tuple(Vec<Var>),
}

impl<T: Into<In>> From<T> for BuildArg {
    fn from(v: T) -> Self {
        BuildArg::One(v.into())
    }
}

/// Builds one [`Function`], checking each statement as it is added.
#[derive(Debug, Clone)]
pub struct FunctionBuilder {
    id: u64,
    name: String,
    params: Vec<Param>,
    body: Vec<Statement>,
    scope: Scope,
    /// Variable names and types, indexed by [`Var`].
    vars: Vec<(String, TensorType)>,
    /// Literals already materialised as consts, for reuse.
    consts: Vec<(Literal, Var)>,
}

impl FunctionBuilder {
    /// Starts an empty function called `name` (the Neural Engine runs `main`).
    pub fn new(name: impl Into<String>) -> Self {
        FunctionBuilder {
            id: NEXT_BUILDER.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            params: Vec::new(),
            body: Vec::new(),
            scope: Scope::default(),
            vars: Vec::new(),
            consts: Vec::new(),
        }
    }

    /// Declares a function parameter (a kernel input).
    pub fn input(&mut self, name: &str, ty: TensorType) -> Result<Var, Error> {
        let p = Param {
            name: name.into(),
            ty,
        };
        self.scope.add_param(&p)?;
        self.params.push(p.clone());
        Ok(self.push_var(p.name, p.ty))
    }

    /// The type of a variable.
    pub fn ty(&self, v: Var) -> Result<&TensorType, Error> {
        Ok(&self.var(v)?.1)
    }

    /// The name of a variable.
    pub fn name_of(&self, v: Var) -> Result<&str, Error> {
        Ok(&self.var(v)?.0)
    }

    fn var(&self, v: Var) -> Result<&(String, TensorType), Error> {
        self.vars
            .get(v.index)
            .filter(|_| v.builder == self.id)
            .ok_or_else(|| Error::UnknownVariable {
                name: format!("<variable #{} of another function builder>", v.index),
            })
    }

    /// Adds `name = const()[val=lit]`.
    pub fn constant(&mut self, name: &str, lit: Literal) -> Result<Var, Error> {
        let v = self.push_statement(Statement {
            output: name.into(),
            ty: lit.ty().clone(),
            op: Op::Const,
            args: Vec::new(),
            attrs: vec![
                ("name".into(), Literal::string(name)),
                ("val".into(), lit.clone()),
            ],
        })?;
        self.consts.push((lit, v));
        Ok(v)
    }

    /// Adds a `const` whose values live in a weight blob file: `path` as written in the MIL
    /// (e.g. `@model_path/weights/wq.bin`), `offset` = the blob's metadata offset in that file.
    pub fn blob_constant(
        &mut self,
        name: &str,
        ty: TensorType,
        path: &str,
        offset: u64,
    ) -> Result<Var, Error> {
        let lit = Literal::BlobFile {
            ty,
            path: path.into(),
            offset,
        };
        self.constant(name, lit)
    }

    /// Adds any op. `args` are keyed as in MIL; literal operands become consts named
    /// `<name>_<key>` (or reuse an identical earlier const).
    pub fn op(&mut self, name: &str, op: Op, args: Vec<(&str, BuildArg)>) -> Result<Var, Error> {
        self.op_with_attrs(name, op, args, Vec::new())
    }

    /// Adds any op with extra bracketed attributes besides `name`.
    pub fn op_with_attrs(
        &mut self,
        name: &str,
        op: Op,
        args: Vec<(&str, BuildArg)>,
        attrs: Vec<(&str, Literal)>,
    ) -> Result<Var, Error> {
        let mut out_args = Vec::with_capacity(args.len());
        for (key, arg) in args {
            let arg = match arg {
                BuildArg::One(In::Var(v)) => Arg::Var(self.name_of(v)?.into()),
                BuildArg::One(In::Lit(lit)) => {
                    let v = self.const_for(&format!("{name}_{key}"), lit)?;
                    Arg::Var(self.name_of(v)?.into())
                }
                BuildArg::Tuple(vs) => Arg::Tuple(
                    vs.iter()
                        .map(|v| self.name_of(*v).map(str::to_string))
                        .collect::<Result<_, _>>()?,
                ),
            };
            out_args.push((key.to_string(), arg));
        }
        let mut all_attrs = vec![("name".to_string(), Literal::string(name))];
        all_attrs.extend(attrs.into_iter().map(|(k, l)| (k.to_string(), l)));
        let mut s = Statement {
            output: name.into(),
            ty: TensorType::scalar(DType::Bool),
            op,
            args: out_args,
            attrs: all_attrs,
        };
        s.ty = self.scope.infer(&s)?;
        self.push_statement(s)
    }

    /// Finishes the function, returning `returns` in order.
    pub fn finish(self, returns: &[Var]) -> Result<Function, Error> {
        let returns: Vec<String> = returns
            .iter()
            .map(|v| self.name_of(*v).map(str::to_string))
            .collect::<Result<_, _>>()?;
        self.scope.check_returns(&self.name, &returns)?;
        Ok(Function {
            name: self.name,
            params: self.params,
            body: self.body,
            returns,
        })
    }

    fn const_for(&mut self, name: &str, lit: Literal) -> Result<Var, Error> {
        if let Some((_, v)) = self.consts.iter().find(|(l, _)| *l == lit) {
            return Ok(*v);
        }
        self.constant(name, lit)
    }

    fn push_statement(&mut self, s: Statement) -> Result<Var, Error> {
        self.scope.add_statement(&s)?;
        let v = self.push_var(s.output.clone(), s.ty.clone());
        self.body.push(s);
        Ok(v)
    }

    fn push_var(&mut self, name: String, ty: TensorType) -> Var {
        self.vars.push((name, ty));
        Var {
            builder: self.id,
            index: self.vars.len() - 1,
        }
    }
}

/// Typed helpers, one per op. Literal parameters become shared consts.
impl FunctionBuilder {
    /// `conv` with all options spelled out: `[N,IC,H,W] * weight [OC,IC/groups,KH,KW]`, valid
    /// padding, unit strides and dilations. A `[OC,IC,1,1]` weight makes it a linear layer.
    pub fn conv(&mut self, name: &str, x: Var, weight: Var, groups: i32) -> Result<Var, Error> {
        self.op(
            name,
            Op::Conv,
            vec![
                ("dilations", Literal::int32s(&[1, 1]).into()),
                ("groups", Literal::int32(groups).into()),
                ("pad", Literal::int32s(&[0, 0, 0, 0]).into()),
                ("pad_type", Literal::string("valid").into()),
                ("strides", Literal::int32s(&[1, 1]).into()),
                ("weight", weight.into()),
                ("x", x.into()),
            ],
        )
    }

    /// `matmul` of the last two dims (batched, broadcasting leading dims).
    pub fn matmul(
        &mut self,
        name: &str,
        x: Var,
        y: Var,
        transpose_x: bool,
        transpose_y: bool,
    ) -> Result<Var, Error> {
        self.op(
            name,
            Op::Matmul,
            vec![
                ("transpose_x", Literal::bool(transpose_x).into()),
                ("transpose_y", Literal::bool(transpose_y).into()),
                ("x", x.into()),
                ("y", y.into()),
            ],
        )
    }

    /// `softmax` along `axis` (negative counts from the end).
    pub fn softmax(&mut self, name: &str, x: Var, axis: i32) -> Result<Var, Error> {
        self.op(
            name,
            Op::Softmax,
            vec![("axis", Literal::int32(axis).into()), ("x", x.into())],
        )
    }

    /// `slice_by_size`: `size[i]` elements from `begin[i]` on every axis (-1 = to the end).
    pub fn slice_by_size(
        &mut self,
        name: &str,
        x: Var,
        begin: &[i32],
        size: &[i32],
    ) -> Result<Var, Error> {
        self.op(
            name,
            Op::SliceBySize,
            vec![
                ("x", x.into()),
                ("begin", Literal::int32s(begin).into()),
                ("size", Literal::int32s(size).into()),
            ],
        )
    }

    /// `reshape` to `shape` (one -1 allowed).
    pub fn reshape(&mut self, name: &str, x: Var, shape: &[i32]) -> Result<Var, Error> {
        self.op(
            name,
            Op::Reshape,
            vec![("shape", Literal::int32s(shape).into()), ("x", x.into())],
        )
    }

    /// `transpose` by `perm`.
    pub fn transpose(&mut self, name: &str, x: Var, perm: &[i32]) -> Result<Var, Error> {
        self.op(
            name,
            Op::Transpose,
            vec![("perm", Literal::int32s(perm).into()), ("x", x.into())],
        )
    }

    /// `concat` of `values` along `axis`.
    pub fn concat(
        &mut self,
        name: &str,
        values: &[Var],
        axis: i32,
        interleave: bool,
    ) -> Result<Var, Error> {
        self.op(
            name,
            Op::Concat,
            vec![
                ("axis", Literal::int32(axis).into()),
                ("interleave", Literal::bool(interleave).into()),
                ("values", BuildArg::Tuple(values.to_vec())),
            ],
        )
    }

    /// `reduce_sum` over `axes`.
    pub fn reduce_sum(
        &mut self,
        name: &str,
        x: Var,
        axes: &[i32],
        keep_dims: bool,
    ) -> Result<Var, Error> {
        self.reduce(name, Op::ReduceSum, x, axes, keep_dims)
    }

    /// `reduce_max` over `axes`.
    pub fn reduce_max(
        &mut self,
        name: &str,
        x: Var,
        axes: &[i32],
        keep_dims: bool,
    ) -> Result<Var, Error> {
        self.reduce(name, Op::ReduceMax, x, axes, keep_dims)
    }

    fn reduce(
        &mut self,
        name: &str,
        op: Op,
        x: Var,
        axes: &[i32],
        keep: bool,
    ) -> Result<Var, Error> {
        self.op(
            name,
            op,
            vec![
                ("x", x.into()),
                ("axes", Literal::int32s(axes).into()),
                ("keep_dims", Literal::bool(keep).into()),
            ],
        )
    }

    /// An elementwise binary op (`add`, `sub`, `mul`, `real_div`, `pow`, `maximum`) with
    /// broadcasting.
    pub fn binary(
        &mut self,
        name: &str,
        op: Op,
        x: impl Into<In>,
        y: impl Into<In>,
    ) -> Result<Var, Error> {
        self.op(
            name,
            op,
            vec![
                ("x", BuildArg::One(x.into())),
                ("y", BuildArg::One(y.into())),
            ],
        )
    }

    /// `add(x, y)`.
    pub fn add(&mut self, name: &str, x: impl Into<In>, y: impl Into<In>) -> Result<Var, Error> {
        self.binary(name, Op::Add, x, y)
    }

    /// `sub(x, y)`.
    pub fn sub(&mut self, name: &str, x: impl Into<In>, y: impl Into<In>) -> Result<Var, Error> {
        self.binary(name, Op::Sub, x, y)
    }

    /// `mul(x, y)`.
    pub fn mul(&mut self, name: &str, x: impl Into<In>, y: impl Into<In>) -> Result<Var, Error> {
        self.binary(name, Op::Mul, x, y)
    }

    /// `real_div(x, y)`.
    pub fn real_div(
        &mut self,
        name: &str,
        x: impl Into<In>,
        y: impl Into<In>,
    ) -> Result<Var, Error> {
        self.binary(name, Op::RealDiv, x, y)
    }

    /// `pow(x, y)`.
    pub fn pow(&mut self, name: &str, x: impl Into<In>, y: impl Into<In>) -> Result<Var, Error> {
        self.binary(name, Op::Pow, x, y)
    }

    /// `maximum(x, y)`.
    pub fn maximum(
        &mut self,
        name: &str,
        x: impl Into<In>,
        y: impl Into<In>,
    ) -> Result<Var, Error> {
        self.binary(name, Op::Maximum, x, y)
    }

    /// An elementwise unary op without options (`sigmoid`, `silu`, `exp`).
    pub fn unary(&mut self, name: &str, op: Op, x: Var) -> Result<Var, Error> {
        self.op(name, op, vec![("x", x.into())])
    }

    /// `log(x + epsilon)`; the Neural Engine requires the epsilon.
    pub fn log(&mut self, name: &str, x: Var, epsilon: Literal) -> Result<Var, Error> {
        self.op(
            name,
            Op::Log,
            vec![("epsilon", epsilon.into()), ("x", x.into())],
        )
    }

    /// `1/sqrt(x + epsilon)`; the Neural Engine requires the epsilon.
    pub fn rsqrt(&mut self, name: &str, x: Var, epsilon: Literal) -> Result<Var, Error> {
        self.op(
            name,
            Op::Rsqrt,
            vec![("epsilon", epsilon.into()), ("x", x.into())],
        )
    }

    /// `select(cond, a, b)`: `a` where `cond` is true, else `b`.
    pub fn select(
        &mut self,
        name: &str,
        cond: Var,
        a: impl Into<In>,
        b: impl Into<In>,
    ) -> Result<Var, Error> {
        self.op(
            name,
            Op::Select,
            vec![
                ("a", BuildArg::One(a.into())),
                ("b", BuildArg::One(b.into())),
                ("cond", cond.into()),
            ],
        )
    }

    /// `cast(x)` to `dtype`.
    pub fn cast(&mut self, name: &str, x: Var, dtype: DType) -> Result<Var, Error> {
        self.op(
            name,
            Op::Cast,
            vec![
                ("dtype", Literal::string(dtype.name()).into()),
                ("x", x.into()),
            ],
        )
    }

    /// `scaled_dot_product_attention(query, key, value[, attn_mask])`. The Neural Engine
    /// ignores `attn_mask`; training kernels add the mask explicitly instead.
    pub fn scaled_dot_product_attention(
        &mut self,
        name: &str,
        query: Var,
        key: Var,
        value: Var,
        attn_mask: Option<Var>,
    ) -> Result<Var, Error> {
        let mut args: Vec<(&str, BuildArg)> = Vec::new();
        if let Some(m) = attn_mask {
            args.push(("attn_mask", m.into()));
        }
        args.extend([
            ("key", key.into()),
            ("query", query.into()),
            ("value", value.into()),
        ]);
        self.op(name, Op::ScaledDotProductAttention, args)
    }

    /// `constexpr_affine_dequantize()`: a constant `(quantized_data - zero_point) * scale`, with
    /// every operand an attribute (the int8 data usually a BLOBFILE).
    pub fn constexpr_affine_dequantize(
        &mut self,
        name: &str,
        quantized_data: Literal,
        scale: Literal,
        zero_point: Literal,
        axis: i32,
    ) -> Result<Var, Error> {
        self.op_with_attrs(
            name,
            Op::ConstexprAffineDequantize,
            Vec::new(),
            vec![
                ("axis", Literal::int32(axis)),
                ("quantized_data", quantized_data),
                ("scale", scale),
                ("zero_point", zero_point),
            ],
        )
    }

    /// `quantize(input)` to int8 with a scalar `scale`.
    pub fn quantize(&mut self, name: &str, input: Var, scale: Literal) -> Result<Var, Error> {
        self.op(
            name,
            Op::Quantize,
            vec![
                ("input", input.into()),
                ("output_dtype", Literal::string("int8").into()),
                ("scale", scale.into()),
            ],
        )
    }

    /// `dequantize(input)` from int8 with a scalar `scale`.
    pub fn dequantize(&mut self, name: &str, input: Var, scale: Literal) -> Result<Var, Error> {
        self.op(
            name,
            Op::Dequantize,
            vec![("input", input.into()), ("scale", scale.into())],
        )
    }
}
