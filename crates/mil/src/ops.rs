//! The op catalogue: every MIL op the IR knows, its arguments, and its shape/dtype rule.
//!
//! [`infer`] is the one place where an op's result type is computed from its operands. The
//! builder, the parser and [`crate::verify`] all call it, so a Program that passes any of them
//! has the same, checked types. Broadcasting follows MIL (NumPy) rules: shapes are aligned on the
//! right and each pair of dims must be equal or contain a 1.
//!
//! Arguments that fix a shape (axes, perms, begin/size, strides, ...) must be constants: an
//! inline literal or a variable defined by `const`.

use crate::error::Error;
use crate::ir::{DType, Literal, TensorData, TensorType};

macro_rules! ops {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// A MIL operation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Op {
            $(#[doc = $doc] $variant,)*
        }

        impl Op {
            /// Every op, in catalogue order.
            pub const ALL: &'static [Op] = &[$(Op::$variant,)*];

            /// The MIL spelling of the op.
            pub fn name(self) -> &'static str {
                match self { $(Op::$variant => $name,)* }
            }
        }
    };
}

ops! {
    Const => "const", "A constant; its value is the `val` attribute.";
    Conv => "conv", "2-D convolution `[N,IC,H,W] * [OC,IC/groups,KH,KW] -> [N,OC,H',W']` (a 1x1 conv is a linear layer).";
    Matmul => "matmul", "Batched matrix product of the last two dims, with optional transposes.";
    Softmax => "softmax", "Softmax along `axis`.";
    SliceBySize => "slice_by_size", "Static slice: `size[i]` elements from `begin[i]` (-1 = to the end).";
    Reshape => "reshape", "Reinterpret the row-major data with a new shape (one -1 allowed).";
    Transpose => "transpose", "Permute dims by `perm`.";
    Concat => "concat", "Join `values` along `axis` (or interleave them).";
    ReduceSum => "reduce_sum", "Sum over `axes`.";
    ReduceMax => "reduce_max", "Maximum over `axes`.";
    Pow => "pow", "Elementwise `x^y` with broadcasting.";
    Mul => "mul", "Elementwise `x*y` with broadcasting.";
    Add => "add", "Elementwise `x+y` with broadcasting.";
    Sub => "sub", "Elementwise `x-y` with broadcasting.";
    RealDiv => "real_div", "Elementwise `x/y` with broadcasting.";
    Maximum => "maximum", "Elementwise `max(x,y)` with broadcasting.";
    Sigmoid => "sigmoid", "Elementwise `1/(1+e^-x)`.";
    Silu => "silu", "Elementwise `x*sigmoid(x)`.";
    Exp => "exp", "Elementwise `e^x`.";
    Log => "log", "Elementwise `ln(x + epsilon)`.";
    Rsqrt => "rsqrt", "Elementwise `1/sqrt(x + epsilon)`.";
    Select => "select", "Elementwise `cond ? a : b` with broadcasting.";
    Cast => "cast", "Convert to the dtype named by `dtype`.";
    ScaledDotProductAttention => "scaled_dot_product_attention", "`softmax(q k^T / sqrt(E) + mask) v` over the last two dims.";
    ConstexprAffineDequantize => "constexpr_affine_dequantize", "A constant `(quantized_data - zero_point) * scale`, all given as attributes.";
    Quantize => "quantize", "`round(input / scale + zero_point)` to int8.";
    Dequantize => "dequantize", "`(input - zero_point) * scale` to float.";
}

impl Op {
    /// Looks an op up by its MIL name.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.iter().copied().find(|o| o.name() == name)
    }

    /// Whether the op takes an argument list (`false` for `const` and
    /// `constexpr_affine_dequantize`, whose inputs are attributes).
    pub fn takes_arguments(self) -> bool {
        !matches!(self, Op::Const | Op::ConstexprAffineDequantize)
    }

    /// The argument keys the op accepts, required ones first, in canonical print order.
    pub fn arguments(self) -> &'static [(&'static str, ArgSpec)] {
        use ArgSpec::{Optional as O, Required as R, Tuple as T};
        match self {
            Op::Const | Op::ConstexprAffineDequantize => &[],
            Op::Conv => &[
                ("dilations", O),
                ("groups", O),
                ("pad", O),
                ("pad_type", O),
                ("strides", O),
                ("weight", R),
                ("x", R),
                ("bias", O),
            ],
            Op::Matmul => &[("transpose_x", O), ("transpose_y", O), ("x", R), ("y", R)],
            Op::Softmax => &[("axis", O), ("x", R)],
            Op::SliceBySize => &[("x", R), ("begin", R), ("size", R)],
            Op::Reshape => &[("shape", R), ("x", R)],
            Op::Transpose => &[("perm", R), ("x", R)],
            Op::Concat => &[("axis", R), ("interleave", O), ("values", T)],
            Op::ReduceSum | Op::ReduceMax => &[("x", R), ("axes", O), ("keep_dims", O)],
            Op::Pow | Op::Mul | Op::Add | Op::Sub | Op::RealDiv | Op::Maximum => {
                &[("x", R), ("y", R)]
            }
            Op::Sigmoid | Op::Silu | Op::Exp => &[("x", R)],
            Op::Log | Op::Rsqrt => &[("epsilon", O), ("x", R)],
            Op::Select => &[("a", R), ("b", R), ("cond", R)],
            Op::Cast => &[("dtype", R), ("x", R)],
            Op::ScaledDotProductAttention => {
                &[("attn_mask", O), ("key", R), ("query", R), ("value", R)]
            }
            Op::Quantize => &[
                ("axis", O),
                ("input", R),
                ("output_dtype", R),
                ("scale", R),
                ("zero_point", O),
            ],
            Op::Dequantize => &[("axis", O), ("input", R), ("scale", R), ("zero_point", O)],
        }
    }

    /// The attribute keys the op accepts besides `name`, and whether each is required.
    pub fn attributes(self) -> &'static [(&'static str, bool)] {
        match self {
            Op::Const => &[("val", true)],
            Op::ConstexprAffineDequantize => &[
                ("axis", false),
                ("quantized_data", true),
                ("scale", true),
                ("zero_point", false),
            ],
            _ => &[],
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How an op argument may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgSpec {
    /// A tensor operand that must be present.
    Required,
    /// A tensor operand with a default.
    Optional,
    /// A required tuple of variables (`values=(a,b)`).
    Tuple,
}

/// One resolved operand: its type, and its value when it is a known constant.
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    /// Operand type.
    pub ty: &'a TensorType,
    /// The operand's values when it is an inline literal or a `const` variable.
    pub value: Option<&'a TensorData>,
}

/// A resolved argument: one operand or a tuple of them.
#[derive(Debug, Clone)]
pub enum Resolved<'a> {
    /// A single tensor operand.
    One(Operand<'a>),
    /// A tuple of operands.
    Tuple(Vec<Operand<'a>>),
}

/// Computes the result type of `op` applied to `args` (keyed as written) and `attrs` (without
/// `name`). Checks argument keys, ranks, dims, dtypes and constant values.
pub fn infer(
    op: Op,
    args: &[(&str, Resolved<'_>)],
    attrs: &[(&str, &Literal)],
) -> Result<TensorType, Error> {
    let a = Args::check(op, args, attrs)?;
    match op {
        Op::Const => Ok(a.attr("val")?.ty().clone()),
        Op::ConstexprAffineDequantize => infer_constexpr_dequant(&a),
        Op::Conv => infer_conv(&a),
        Op::Matmul => infer_matmul(&a),
        Op::Softmax => {
            let x = a.float("x")?;
            a.axis_of("axis", x, -1)?;
            Ok(x.clone())
        }
        Op::SliceBySize => infer_slice(&a),
        Op::Reshape => infer_reshape(&a),
        Op::Transpose => {
            let x = a.tensor("x")?;
            let perm = a.ints("perm")?;
            let shape = permute(op, &x.shape, &perm)?;
            Ok(TensorType::new(x.dtype, shape))
        }
        Op::Concat => infer_concat(&a),
        Op::ReduceSum | Op::ReduceMax => infer_reduce(&a),
        Op::Pow | Op::Mul | Op::Add | Op::Sub | Op::RealDiv | Op::Maximum => {
            let (x, y) = (a.numeric("x")?, a.numeric("y")?);
            a.same_dtype("y", x.dtype, y)?;
            Ok(TensorType::new(x.dtype, broadcast(op, &x.shape, &y.shape)?))
        }
        Op::Sigmoid | Op::Silu | Op::Exp => Ok(a.float("x")?.clone()),
        Op::Log | Op::Rsqrt => {
            let x = a.float("x")?;
            if a.has("epsilon") {
                a.scalar_float("epsilon")?;
            }
            Ok(x.clone())
        }
        Op::Select => {
            let cond = a.tensor("cond")?;
            if cond.dtype != DType::Bool {
                return Err(a.dtype_err("cond", "bool", cond.dtype));
            }
            let (x, y) = (a.tensor("a")?, a.tensor("b")?);
            a.same_dtype("b", x.dtype, y)?;
            let ab = broadcast(op, &x.shape, &y.shape)?;
            Ok(TensorType::new(x.dtype, broadcast(op, &cond.shape, &ab)?))
        }
        Op::Cast => {
            let x = a.tensor("x")?;
            let name = a.string("dtype")?;
            let dtype = DType::from_name(&name)
                .filter(|d| *d != DType::String)
                .ok_or_else(|| a.bad("dtype", format!("`{name}` is not a numeric dtype")))?;
            Ok(TensorType::new(dtype, x.shape.clone()))
        }
        Op::ScaledDotProductAttention => infer_sdpa(&a),
        Op::Quantize => {
            let x = a.float("input")?;
            a.quant_params(x, "input")?;
            let name = a.string("output_dtype")?;
            if name != "int8" {
                return Err(a.bad(
                    "output_dtype",
                    format!("`{name}` is not supported (use \"int8\")"),
                ));
            }
            Ok(TensorType::new(DType::Int8, x.shape.clone()))
        }
        Op::Dequantize => {
            let x = a.tensor("input")?;
            if x.dtype != DType::Int8 {
                return Err(a.dtype_err("input", "int8", x.dtype));
            }
            let scale = a.quant_params(x, "input")?;
            Ok(TensorType::new(scale, x.shape.clone()))
        }
    }
}

/// Checked view of an op's arguments and attributes.
struct Args<'a, 'b> {
    op: Op,
    args: &'b [(&'b str, Resolved<'a>)],
    attrs: &'b [(&'b str, &'b Literal)],
}

impl<'a, 'b> Args<'a, 'b> {
    /// Rejects unknown, duplicate and missing keys.
    fn check(
        op: Op,
        args: &'b [(&'b str, Resolved<'a>)],
        attrs: &'b [(&'b str, &'b Literal)],
    ) -> Result<Self, Error> {
        let spec = op.arguments();
        for (i, (key, value)) in args.iter().enumerate() {
            let Some((_, kind)) = spec.iter().find(|(k, _)| k == key) else {
                let allowed = spec.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
                return Err(Error::UnexpectedArgument {
                    op: op.name(),
                    arg: key.to_string(),
                    allowed: if allowed.is_empty() {
                        "no arguments".into()
                    } else {
                        allowed
                    },
                });
            };
            if args[..i].iter().any(|(k, _)| k == key) {
                return Err(Error::DuplicateArgument {
                    op: op.name(),
                    arg: key.to_string(),
                });
            }
            let arg = spec
                .iter()
                .find(|(k, _)| k == key)
                .map(|(k, _)| *k)
                .unwrap_or("?");
            match (kind, value) {
                (ArgSpec::Tuple, Resolved::One(_)) => {
                    return Err(Error::ArgumentForm {
                        op: op.name(),
                        arg,
                        expected: "a tuple of variables, e.g. (a, b)",
                    })
                }
                (ArgSpec::Required | ArgSpec::Optional, Resolved::Tuple(_)) => {
                    return Err(Error::ArgumentForm {
                        op: op.name(),
                        arg,
                        expected: "a single variable or literal, not a tuple",
                    })
                }
                _ => {}
            }
        }
        for (key, kind) in spec {
            if *kind != ArgSpec::Optional && !args.iter().any(|(k, _)| k == key) {
                return Err(Error::MissingArgument {
                    op: op.name(),
                    arg: key,
                });
            }
        }
        let allowed = op.attributes();
        for (i, (key, _)) in attrs.iter().enumerate() {
            if !allowed.iter().any(|(k, _)| k == key) || attrs[..i].iter().any(|(k, _)| k == key) {
                return Err(Error::UnexpectedAttribute {
                    op: op.name(),
                    attr: key.to_string(),
                });
            }
        }
        for (key, required) in allowed {
            if *required && !attrs.iter().any(|(k, _)| k == key) {
                return Err(Error::MissingAttribute {
                    op: op.name(),
                    attr: key,
                });
            }
        }
        Ok(Args { op, args, attrs })
    }

    fn name(&self) -> &'static str {
        self.op.name()
    }

    /// The static key from the op's spec (keys are checked in [`Args::check`]).
    fn key(&self, key: &str) -> &'static str {
        self.op
            .arguments()
            .iter()
            .map(|(k, _)| *k)
            .chain(self.op.attributes().iter().map(|(k, _)| *k))
            .find(|k| *k == key)
            .unwrap_or("?")
    }

    fn has(&self, key: &str) -> bool {
        self.args.iter().any(|(k, _)| *k == key)
    }

    fn operand(&self, key: &str) -> Result<Operand<'a>, Error> {
        match self.args.iter().find(|(k, _)| *k == key) {
            Some((_, Resolved::One(o))) => Ok(*o),
            _ => Err(Error::MissingArgument {
                op: self.name(),
                arg: self.key(key),
            }),
        }
    }

    fn tensor(&self, key: &str) -> Result<&'a TensorType, Error> {
        let ty = self.operand(key)?.ty;
        if ty.dtype == DType::String {
            return Err(self.dtype_err(key, "a numeric or bool tensor", ty.dtype));
        }
        Ok(ty)
    }

    fn numeric(&self, key: &str) -> Result<&'a TensorType, Error> {
        let ty = self.operand(key)?.ty;
        if matches!(ty.dtype, DType::String | DType::Bool) {
            return Err(self.dtype_err(key, "fp16, fp32, int8 or int32", ty.dtype));
        }
        Ok(ty)
    }

    fn float(&self, key: &str) -> Result<&'a TensorType, Error> {
        let ty = self.operand(key)?.ty;
        if !ty.dtype.is_float() {
            return Err(self.dtype_err(key, "fp16 or fp32", ty.dtype));
        }
        Ok(ty)
    }

    fn dtype_err(&self, key: &str, expected: &str, got: DType) -> Error {
        Error::WrongDType {
            op: self.name(),
            arg: self.key(key),
            expected: expected.into(),
            got,
        }
    }

    fn same_dtype(&self, key: &str, want: DType, got: &TensorType) -> Result<(), Error> {
        if got.dtype != want {
            return Err(self.dtype_err(key, want.name(), got.dtype));
        }
        Ok(())
    }

    fn bad(&self, key: &str, detail: String) -> Error {
        Error::BadValue {
            op: self.name(),
            arg: self.key(key),
            detail,
        }
    }

    fn rank_err(&self, key: &str, expected: impl Into<String>, ty: &TensorType) -> Error {
        Error::WrongRank {
            op: self.name(),
            arg: self.key(key),
            expected: expected.into(),
            got: ty.rank(),
            ty: Box::new(ty.clone()),
        }
    }

    fn constant(&self, key: &str) -> Result<&'a TensorData, Error> {
        self.operand(key)?.value.ok_or(Error::NotConstant {
            op: self.name(),
            arg: self.key(key),
        })
    }

    /// A constant int32 vector (rank 1) or scalar, as i64s.
    fn ints(&self, key: &str) -> Result<Vec<i64>, Error> {
        let ty = self.operand(key)?.ty;
        if ty.dtype != DType::Int32 {
            return Err(self.dtype_err(key, "int32", ty.dtype));
        }
        if ty.rank() > 1 {
            return Err(self.rank_err(key, "0 or 1", ty));
        }
        Ok(self.constant(key)?.as_ints().unwrap_or_default())
    }

    fn scalar_int(&self, key: &str, default: i64) -> Result<i64, Error> {
        if !self.has(key) {
            return Ok(default);
        }
        let ty = self.operand(key)?.ty;
        if !ty.is_scalar() {
            return Err(self.rank_err(key, "0 (a scalar)", ty));
        }
        Ok(self.ints(key)?[0])
    }

    fn bool_flag(&self, key: &str) -> Result<bool, Error> {
        if !self.has(key) {
            return Ok(false);
        }
        let ty = self.operand(key)?.ty;
        if ty.dtype != DType::Bool {
            return Err(self.dtype_err(key, "bool", ty.dtype));
        }
        if !ty.is_scalar() {
            return Err(self.rank_err(key, "0 (a scalar)", ty));
        }
        match self.constant(key)? {
            TensorData::Bool(v) => Ok(v[0]),
            _ => Err(self.dtype_err(key, "bool", ty.dtype)),
        }
    }

    fn string(&self, key: &str) -> Result<String, Error> {
        let ty = self.operand(key)?.ty;
        if ty.dtype != DType::String || !ty.is_scalar() {
            return Err(self.dtype_err(key, "a string scalar", ty.dtype));
        }
        match self.constant(key)? {
            TensorData::String(v) => Ok(v[0].clone()),
            _ => Err(self.dtype_err(key, "a string scalar", ty.dtype)),
        }
    }

    fn scalar_float(&self, key: &str) -> Result<f64, Error> {
        let ty = self.float(key)?;
        if !ty.is_scalar() {
            return Err(self.rank_err(key, "0 (a scalar)", ty));
        }
        Ok(self.constant(key)?.as_floats().unwrap_or_default()[0])
    }

    /// A constant axis into a tensor of `x`'s rank, normalised to `0..rank`.
    fn axis_of(&self, key: &str, x: &TensorType, default: i64) -> Result<usize, Error> {
        let axis = self.scalar_int(key, default)?;
        normalize_axis(axis, x.rank()).ok_or_else(|| {
            self.bad(
                key,
                format!("axis {axis} is out of range for rank {}", x.rank()),
            )
        })
    }

    fn attr(&self, key: &str) -> Result<&'b Literal, Error> {
        self.attrs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, l)| *l)
            .ok_or(Error::MissingAttribute {
                op: self.name(),
                attr: self.key(key),
            })
    }

    /// Checks `scale`, `zero_point` and `axis` of quantize/dequantize against `x`; returns the
    /// float dtype of `scale`.
    fn quant_params(&self, x: &TensorType, _input: &str) -> Result<DType, Error> {
        let scale = self.float("scale")?;
        self.constant("scale")?;
        let axis = if self.has("axis") {
            Some(self.axis_of("axis", x, 0)?)
        } else {
            None
        };
        check_per_axis(self, "scale", scale, x, axis)?;
        if self.has("zero_point") {
            let zp = self.tensor("zero_point")?;
            if zp.dtype != DType::Int8 {
                return Err(self.dtype_err("zero_point", "int8", zp.dtype));
            }
            self.constant("zero_point")?;
            check_per_axis(self, "zero_point", zp, x, axis)?;
        }
        Ok(scale.dtype)
    }
}

/// A quantization parameter is a scalar, or a vector with one entry per element of `axis`.
fn check_per_axis(
    a: &Args<'_, '_>,
    key: &str,
    p: &TensorType,
    x: &TensorType,
    axis: Option<usize>,
) -> Result<(), Error> {
    match (p.rank(), axis) {
        (0, _) => Ok(()),
        (1, Some(ax)) if p.shape[0] == x.shape[ax] => Ok(()),
        (1, Some(ax)) => Err(a.bad(
            key,
            format!(
                "has {} entries but axis {ax} has size {}",
                p.shape[0], x.shape[ax]
            ),
        )),
        _ => Err(a.rank_err(key, "0, or 1 together with `axis`", p)),
    }
}

/// Maps a possibly negative axis into `0..rank`.
pub fn normalize_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_shapes(x: &[usize], y: &[usize]) -> Option<Vec<usize>> {
    let n = x.len().max(y.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let dx = if i < n - x.len() {
            1
        } else {
            x[i - (n - x.len())]
        };
        let dy = if i < n - y.len() {
            1
        } else {
            y[i - (n - y.len())]
        };
        out[i] = match (dx, dy) {
            (a, b) if a == b => a,
            (1, b) => b,
            (a, 1) => a,
            _ => return None,
        };
    }
    Some(out)
}

fn broadcast(op: Op, x: &[usize], y: &[usize]) -> Result<Vec<usize>, Error> {
    broadcast_shapes(x, y).ok_or_else(|| Error::ShapeMismatch {
        op: op.name(),
        detail: format!("shapes {x:?} and {y:?} do not broadcast"),
    })
}

fn permute(op: Op, shape: &[usize], perm: &[i64]) -> Result<Vec<usize>, Error> {
    let mut seen = vec![false; shape.len()];
    let ok = perm.len() == shape.len()
        && perm.iter().all(|&p| {
            normalize_axis(p, shape.len())
                .map(|a| !std::mem::replace(&mut seen[a], true))
                .unwrap_or(false)
        });
    if !ok {
        return Err(Error::BadValue {
            op: op.name(),
            arg: "perm",
            detail: format!(
                "{perm:?} is not a permutation of the {} dims of {shape:?}",
                shape.len()
            ),
        });
    }
    Ok(perm
        .iter()
        .map(|&p| shape[normalize_axis(p, shape.len()).unwrap_or(0)])
        .collect())
}

fn infer_conv(a: &Args<'_, '_>) -> Result<TensorType, Error> {
    let x = a.float("x")?;
    let w = a.float("weight")?;
    if x.rank() != 4 {
        return Err(a.rank_err("x", "4 ([N,C,H,W])", x));
    }
    if w.rank() != 4 {
        return Err(a.rank_err("weight", "4 ([OC,IC/groups,KH,KW])", w));
    }
    a.same_dtype("weight", x.dtype, w)?;
    let groups = a.scalar_int("groups", 1)?;
    if groups < 1 || x.shape[1] % groups as usize != 0 || w.shape[0] % groups as usize != 0 {
        return Err(a.bad(
            "groups",
            format!(
                "{groups} must be >= 1 and divide both {} input and {} output channels",
                x.shape[1], w.shape[0]
            ),
        ));
    }
    if w.shape[1] * groups as usize != x.shape[1] {
        return Err(Error::ShapeMismatch {
            op: a.name(),
            detail: format!(
                "weight {:?} expects {} input channels, x {:?} has {}",
                w.shape,
                w.shape[1] * groups as usize,
                x.shape,
                x.shape[1]
            ),
        });
    }
    let pair = |key: &str| -> Result<[usize; 2], Error> {
        if !a.has(key) {
            return Ok([1, 1]);
        }
        let v = a.ints(key)?;
        match v[..] {
            [h, w] if h >= 1 && w >= 1 => Ok([h as usize, w as usize]),
            _ => Err(a.bad(key, format!("{v:?} must be two values >= 1"))),
        }
    };
    let strides = pair("strides")?;
    let dil = pair("dilations")?;
    let pad_type = if a.has("pad_type") {
        a.string("pad_type")?
    } else {
        "valid".to_string()
    };
    let pad: [usize; 4] = if a.has("pad") {
        let v = a.ints("pad")?;
        match v[..] {
            [t, b, l, r] if v.iter().all(|&p| p >= 0) => {
                [t as usize, b as usize, l as usize, r as usize]
            }
            _ => return Err(a.bad("pad", format!("{v:?} must be four values >= 0"))),
        }
    } else {
        [0; 4]
    };
    if a.has("bias") {
        let b = a.float("bias")?;
        if b.shape != [w.shape[0]] {
            return Err(a.rank_err("bias", format!("1 with shape [{}]", w.shape[0]), b));
        }
    }
    let mut out = vec![x.shape[0], w.shape[0], 0, 0];
    for i in 0..2 {
        let size = x.shape[2 + i];
        let k = dil[i] * w.shape[2 + i].saturating_sub(1) + 1;
        out[2 + i] = match pad_type.as_str() {
            "valid" => {
                if size < k {
                    0
                } else {
                    (size - k) / strides[i] + 1
                }
            }
            "same" => size.div_ceil(strides[i]),
            "custom" => {
                let padded = size + pad[2 * i] + pad[2 * i + 1];
                if padded < k {
                    0
                } else {
                    (padded - k) / strides[i] + 1
                }
            }
            other => {
                return Err(a.bad(
                    "pad_type",
                    format!("`{other}` (expected \"valid\", \"same\" or \"custom\")"),
                ))
            }
        };
        if out[2 + i] == 0 || w.shape[2 + i] == 0 {
            return Err(Error::ShapeMismatch {
                op: a.name(),
                detail: format!("kernel {:?} does not fit input {:?}", w.shape, x.shape),
            });
        }
    }
    Ok(TensorType::new(x.dtype, out))
}

fn infer_matmul(a: &Args<'_, '_>) -> Result<TensorType, Error> {
    let x = a.numeric("x")?;
    let y = a.numeric("y")?;
    a.same_dtype("y", x.dtype, y)?;
    for (key, t) in [("x", x), ("y", y)] {
        if t.rank() < 2 {
            return Err(a.rank_err(key, ">= 2", t));
        }
    }
    let (tx, ty) = (a.bool_flag("transpose_x")?, a.bool_flag("transpose_y")?);
    let (xr, yr) = (x.rank(), y.rank());
    let (m, kx) = if tx {
        (x.shape[xr - 1], x.shape[xr - 2])
    } else {
        (x.shape[xr - 2], x.shape[xr - 1])
    };
    let (ky, n) = if ty {
        (y.shape[yr - 1], y.shape[yr - 2])
    } else {
        (y.shape[yr - 2], y.shape[yr - 1])
    };
    if kx != ky {
        return Err(Error::ShapeMismatch {
            op: a.name(),
            detail: format!(
                "inner dims differ: x {:?} (transpose_x={tx}) gives {kx}, y {:?} (transpose_y={ty}) gives {ky}",
                x.shape, y.shape
            ),
        });
    }
    let mut shape = broadcast(a.op, &x.shape[..xr - 2], &y.shape[..yr - 2]).map_err(|_| {
        Error::ShapeMismatch {
            op: a.name(),
            detail: format!(
                "batch dims of x {:?} and y {:?} do not broadcast",
                x.shape, y.shape
            ),
        }
    })?;
    shape.extend([m, n]);
    Ok(TensorType::new(x.dtype, shape))
}

fn infer_slice(a: &Args<'_, '_>) -> Result<TensorType, Error> {
    let x = a.tensor("x")?;
    let begin = a.ints("begin")?;
    let size = a.ints("size")?;
    for (key, v) in [("begin", &begin), ("size", &size)] {
        if v.len() != x.rank() {
            return Err(a.bad(
                key,
                format!(
                    "has {} entries but x {:?} has rank {}",
                    v.len(),
                    x.shape,
                    x.rank()
                ),
            ));
        }
    }
    let mut out = Vec::with_capacity(x.rank());
    for (i, (&b, &s)) in begin.iter().zip(&size).enumerate() {
        let dim = x.shape[i] as i64;
        let len = if s == -1 { dim - b } else { s };
        if b < 0 || b >= dim || len < 1 || b + len > dim {
            return Err(Error::ShapeMismatch {
                op: a.name(),
                detail: format!(
                    "slice begin {begin:?} size {size:?} runs outside x {:?} on axis {i}",
                    x.shape
                ),
            });
        }
        out.push(len as usize);
    }
    Ok(TensorType::new(x.dtype, out))
}

fn infer_reshape(a: &Args<'_, '_>) -> Result<TensorType, Error> {
    let x = a.tensor("x")?;
    let shape = a.ints("shape")?;
    let total = x.num_elements().unwrap_or(usize::MAX);
    let bad = |why: &str| a.bad("shape", format!("{shape:?} for x {:?}: {why}", x.shape));
    if shape.iter().filter(|&&d| d == -1).count() > 1 {
        return Err(bad("at most one -1 is allowed"));
    }
    if shape.iter().any(|&d| d == 0 || d < -1) {
        return Err(bad("dims must be >= 1 (or a single -1)"));
    }
    let known = shape
        .iter()
        .filter(|&&d| d > 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        .ok_or_else(|| bad("element count overflows"))?;
    let out: Vec<usize> = if shape.contains(&-1) {
        if total % known != 0 {
            return Err(bad("element count is not divisible"));
        }
        shape
            .iter()
            .map(|&d| if d == -1 { total / known } else { d as usize })
            .collect()
    } else {
        shape.iter().map(|&d| d as usize).collect()
    };
    if out.iter().product::<usize>() != total || known == 0 {
        return Err(Error::ShapeMismatch {
            op: a.name(),
            detail: format!(
                "cannot reshape x {:?} ({total} elements) to {out:?}",
                x.shape
            ),
        });
    }
    Ok(TensorType::new(x.dtype, out))
}

fn infer_concat(a: &Args<'_, '_>) -> Result<TensorType, Error> {
    let values = match a.args.iter().find(|(k, _)| *k == "values") {
        Some((_, Resolved::Tuple(v))) => v,
        _ => {
            return Err(Error::MissingArgument {
                op: a.name(),
                arg: "values",
            })
        }
    };
    let Some(first) = values.first() else {
        return Err(a.bad("values", "the tuple is empty".into()));
    };
    let first = first.ty;
    let axis = a.axis_of("axis", first, 0)?;
    let interleave = a.bool_flag("interleave")?;
    let mut out = first.shape.clone();
    for (i, v) in values.iter().enumerate().skip(1) {
        if v.ty.dtype != first.dtype {
            return Err(a.dtype_err("values", first.dtype.name(), v.ty.dtype));
        }
        let fits = v.ty.rank() == first.rank()
            && (0..first.rank())
                .all(|d| d == axis && !interleave || v.ty.shape[d] == first.shape[d]);
        if !fits {
            return Err(Error::ShapeMismatch {
                op: a.name(),
                detail: format!(
                    "value {i} {:?} does not match value 0 {:?} outside axis {axis}{}",
                    v.ty.shape,
                    first.shape,
                    if interleave {
                        " (interleave needs equal shapes)"
                    } else {
                        ""
                    }
                ),
            });
        }
        out[axis] += v.ty.shape[axis];
    }
    Ok(TensorType::new(first.dtype, out))
}

fn infer_reduce(a: &Args<'_, '_>) -> Result<TensorType, Error> {
    let x = a.numeric("x")?;
    let keep = a.bool_flag("keep_dims")?;
    let axes: Vec<usize> = if a.has("axes") {
        let raw = a.ints("axes")?;
        let mut axes = Vec::new();
        for &ax in &raw {
            let n = normalize_axis(ax, x.rank()).ok_or_else(|| {
                a.bad(
                    "axes",
                    format!("axis {ax} is out of range for rank {}", x.rank()),
                )
            })?;
            if axes.contains(&n) {
                return Err(a.bad("axes", format!("{raw:?} names axis {n} twice")));
            }
            axes.push(n);
        }
        axes
    } else {
        (0..x.rank()).collect()
    };
    let shape = (0..x.rank())
        .filter_map(|d| match (axes.contains(&d), keep) {
            (true, true) => Some(1),
            (true, false) => None,
            (false, _) => Some(x.shape[d]),
        })
        .collect::<Vec<_>>();
    Ok(TensorType::new(x.dtype, shape))
}

fn infer_sdpa(a: &Args<'_, '_>) -> Result<TensorType, Error> {
    let q = a.float("query")?;
    let k = a.float("key")?;
    let v = a.float("value")?;
    for (key, t) in [("query", q), ("key", k), ("value", v)] {
        if t.rank() < 3 {
            return Err(a.rank_err(key, ">= 3 ([..., L, E])", t));
        }
        a.same_dtype(key, q.dtype, t)?;
    }
    let r = q.rank();
    if k.rank() != r || v.rank() != r {
        return Err(Error::ShapeMismatch {
            op: a.name(),
            detail: format!(
                "query {:?}, key {:?} and value {:?} must have one rank",
                q.shape, k.shape, v.shape
            ),
        });
    }
    let (l, e) = (q.shape[r - 2], q.shape[r - 1]);
    let (s, ek) = (k.shape[r - 2], k.shape[r - 1]);
    if ek != e
        || v.shape[r - 2] != s
        || q.shape[..r - 2] != k.shape[..r - 2]
        || k.shape[..r - 2] != v.shape[..r - 2]
    {
        return Err(Error::ShapeMismatch {
            op: a.name(),
            detail: format!(
                "query {:?} key {:?} value {:?} do not fit [...,L,E] [...,S,E] [...,S,Ev]",
                q.shape, k.shape, v.shape
            ),
        });
    }
    if a.has("attn_mask") {
        let m = a.tensor("attn_mask")?;
        let scores: Vec<usize> = q.shape[..r - 2].iter().copied().chain([l, s]).collect();
        if m.dtype != DType::Bool && m.dtype != q.dtype {
            return Err(a.dtype_err("attn_mask", &format!("bool or {}", q.dtype), m.dtype));
        }
        if broadcast_shapes(&m.shape, &scores).as_deref() != Some(&scores[..]) {
            return Err(Error::ShapeMismatch {
                op: a.name(),
                detail: format!(
                    "attn_mask {:?} does not broadcast to scores {scores:?}",
                    m.shape
                ),
            });
        }
    }
    let mut out = q.shape.clone();
    out[r - 1] = v.shape[r - 1];
    Ok(TensorType::new(q.dtype, out))
}

fn infer_constexpr_dequant(a: &Args<'_, '_>) -> Result<TensorType, Error> {
    let data = a.attr("quantized_data")?;
    let dty = data.ty();
    if dty.dtype != DType::Int8 {
        return Err(a.dtype_err("quantized_data", "int8", dty.dtype));
    }
    let scale = a.attr("scale")?.ty();
    if !scale.dtype.is_float() {
        return Err(a.dtype_err("scale", "fp16 or fp32", scale.dtype));
    }
    let axis = match a.attrs.iter().find(|(k, _)| *k == "axis") {
        None => None,
        Some((_, lit)) => {
            let ax = match lit.data() {
                Some(TensorData::Int32(v)) if lit.ty().is_scalar() => v[0] as i64,
                _ => return Err(a.dtype_err("axis", "an int32 scalar", lit.ty().dtype)),
            };
            Some(normalize_axis(ax, dty.rank()).ok_or_else(|| {
                a.bad(
                    "axis",
                    format!("axis {ax} is out of range for rank {}", dty.rank()),
                )
            })?)
        }
    };
    check_per_axis(a, "scale", scale, dty, axis)?;
    if let Some((_, zp)) = a.attrs.iter().find(|(k, _)| *k == "zero_point") {
        if zp.ty().dtype != DType::Int8 {
            return Err(a.dtype_err("zero_point", "int8", zp.ty().dtype));
        }
        check_per_axis(a, "zero_point", zp.ty(), dty, axis)?;
    }
    Ok(TensorType::new(scale.dtype, dty.shape.clone()))
}
