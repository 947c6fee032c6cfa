//! The Program IR: dialects, types, literals, statements and functions.
//!
//! A [`Program`] is plain data: it can be built by hand, by the [`crate::builder`] (which checks
//! shapes and dtypes as it goes), or by the [`crate::parse`] module, and printed back to MIL text
//! with [`crate::print`]. [`crate::verify::verify`] checks a hand-made Program the same way the
//! builder and parser do.
//!
//! Shapes are static: every dimension is a known `usize`. A tensor of rank 0 is a scalar.

use half::f16;

use crate::ops::Op;

/// The MIL text dialect a Program is printed in.
///
/// Both dialects describe the same IR; they differ only in spelling (see [`crate::print`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// `program(1.3)` with `func main<ios18>`: scalars spelled `fp16`, `string`, ...; what
    /// upstream's training kernels emit and what M3/M4/M5 accept.
    Ios18,
    /// `program(1.0)` with `func main<ios16>`: scalars spelled `tensor<fp16, []>`; needed on M1/M2.
    Ios16,
}

impl Dialect {
    /// The version written in `program(...)`: `"1.3"` or `"1.0"`.
    pub fn program_version(self) -> &'static str {
        match self {
            Dialect::Ios18 => "1.3",
            Dialect::Ios16 => "1.0",
        }
    }

    /// The opset tag written after the function name: `"ios18"` or `"ios16"`.
    pub fn opset(self) -> &'static str {
        match self {
            Dialect::Ios18 => "ios18",
            Dialect::Ios16 => "ios16",
        }
    }

    /// The build-info entries coremltools writes for this dialect (what upstream copies).
    pub fn default_build_info(self) -> Vec<(String, String)> {
        let pairs: &[(&str, &str)] = match self {
            Dialect::Ios18 => &[
                ("coremlc-component-MIL", "3510.2.1"),
                ("coremlc-version", "3505.4.1"),
                ("coremltools-component-milinternal", ""),
                ("coremltools-version", "9.0"),
            ],
            Dialect::Ios16 => &[("coremlc-version", "3505.4.1")],
        };
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// Element type of a tensor or scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE 754 binary16; the Neural Engine's compute type.
    Fp16,
    /// IEEE 754 binary32.
    Fp32,
    /// Signed 8-bit integer (quantized weights and activations).
    Int8,
    /// Signed 32-bit integer (shapes, axes, indices).
    Int32,
    /// Boolean.
    Bool,
    /// UTF-8 string (op options such as `pad_type`).
    String,
}

impl DType {
    /// Every dtype, in a fixed order.
    pub const ALL: [DType; 6] = [
        DType::Fp16,
        DType::Fp32,
        DType::Int8,
        DType::Int32,
        DType::Bool,
        DType::String,
    ];

    /// The MIL spelling: `fp16`, `fp32`, `int8`, `int32`, `bool`, `string`.
    pub fn name(self) -> &'static str {
        match self {
            DType::Fp16 => "fp16",
            DType::Fp32 => "fp32",
            DType::Int8 => "int8",
            DType::Int32 => "int32",
            DType::Bool => "bool",
            DType::String => "string",
        }
    }

    /// Parses a MIL dtype name (the inverse of [`DType::name`]).
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// True for `fp16` and `fp32`.
    pub fn is_float(self) -> bool {
        matches!(self, DType::Fp16 | DType::Fp32)
    }

    /// Bytes per element in a device buffer, or `None` for strings.
    pub fn size_bytes(self) -> Option<usize> {
        match self {
            DType::Fp16 => Some(2),
            DType::Fp32 | DType::Int32 => Some(4),
            DType::Int8 | DType::Bool => Some(1),
            DType::String => None,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A static tensor type: dtype plus shape. Rank 0 (`shape == []`) is a scalar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first; the Neural Engine's activations are `[1, C, 1, S]`.
    pub shape: Vec<usize>,
}

impl TensorType {
    /// A tensor type with the given dtype and shape.
    pub fn new(dtype: DType, shape: impl Into<Vec<usize>>) -> Self {
        TensorType {
            dtype,
            shape: shape.into(),
        }
    }

    /// A rank-0 (scalar) type.
    pub fn scalar(dtype: DType) -> Self {
        TensorType {
            dtype,
            shape: Vec::new(),
        }
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// True for rank 0.
    pub fn is_scalar(&self) -> bool {
        self.shape.is_empty()
    }

    /// Number of elements (1 for a scalar), or `None` on overflow.
    pub fn num_elements(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }
}

impl std::fmt::Display for TensorType {
    /// Formats as the ios18 body spelling: `fp16` for scalars, `tensor<fp16, [1,2]>` otherwise.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_scalar() {
            return write!(f, "{}", self.dtype);
        }
        write!(f, "tensor<{}, [", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]>")
    }
}

/// Element values of an inline constant, flat in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// `fp16` values.
    Fp16(Vec<f16>),
    /// `fp32` values.
    Fp32(Vec<f32>),
    /// `int8` values.
    Int8(Vec<i8>),
    /// `int32` values.
    Int32(Vec<i32>),
    /// `bool` values.
    Bool(Vec<bool>),
    /// `string` values.
    String(Vec<String>),
}

impl TensorData {
    /// The dtype of the values.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::Fp16(_) => DType::Fp16,
            TensorData::Fp32(_) => DType::Fp32,
            TensorData::Int8(_) => DType::Int8,
            TensorData::Int32(_) => DType::Int32,
            TensorData::Bool(_) => DType::Bool,
            TensorData::String(_) => DType::String,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            TensorData::Fp16(v) => v.len(),
            TensorData::Fp32(v) => v.len(),
            TensorData::Int8(v) => v.len(),
            TensorData::Int32(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::String(v) => v.len(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as `i64`, for integer data (`int8`, `int32`); `None` otherwise.
    pub fn as_ints(&self) -> Option<Vec<i64>> {
        match self {
            TensorData::Int32(v) => Some(v.iter().map(|&x| x as i64).collect()),
            TensorData::Int8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            _ => None,
        }
    }

    /// The values as `f64`, for float data (`fp16`, `fp32`); `None` otherwise.
    pub fn as_floats(&self) -> Option<Vec<f64>> {
        match self {
            TensorData::Fp16(v) => Some(v.iter().map(|x| x.to_f64()).collect()),
            TensorData::Fp32(v) => Some(v.iter().map(|&x| x as f64).collect()),
            _ => None,
        }
    }
}

/// A constant value written in MIL text: an inline tensor/scalar, or a reference into a weight
/// blob file.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// Inline values, e.g. `int32(1)` or `tensor<int32, [4]>([0,0,0,256])`.
    ///
    /// Invariant (checked by [`crate::verify`]): `data.len()` equals the element count of `ty`,
    /// `data.dtype() == ty.dtype`, rank is 0 or 1, and float values are finite.
    Value {
        /// Declared type.
        ty: TensorType,
        /// Flat values.
        data: TensorData,
    },
    /// `tensor<fp16, [..]>(BLOBFILE(path=string("@model_path/weights/w.bin"), offset=uint64(64)))`:
    /// the values live in a coremltools blob file; `offset` is the byte offset of the blob's
    /// 64-byte metadata record in that file (see [`crate::blob`]).
    BlobFile {
        /// Declared type of the tensor stored in the blob.
        ty: TensorType,
        /// Path as written, usually starting with `@model_path/`.
        path: String,
        /// Offset of the metadata record inside the file.
        offset: u64,
    },
}

impl Literal {
    /// The type of the constant.
    pub fn ty(&self) -> &TensorType {
        match self {
            Literal::Value { ty, .. } | Literal::BlobFile { ty, .. } => ty,
        }
    }

    /// A scalar `fp16` literal (the value is rounded to nearest even).
    pub fn fp16(v: f32) -> Self {
        Self::scalar(TensorData::Fp16(vec![f16::from_f32(v)]))
    }

    /// A scalar `fp32` literal.
    pub fn fp32(v: f32) -> Self {
        Self::scalar(TensorData::Fp32(vec![v]))
    }

    /// A scalar `int32` literal.
    pub fn int32(v: i32) -> Self {
        Self::scalar(TensorData::Int32(vec![v]))
    }

    /// A scalar `int8` literal.
    pub fn int8(v: i8) -> Self {
        Self::scalar(TensorData::Int8(vec![v]))
    }

    /// A scalar `bool` literal.
    pub fn bool(v: bool) -> Self {
        Self::scalar(TensorData::Bool(vec![v]))
    }

    /// A scalar `string` literal.
    pub fn string(v: impl Into<String>) -> Self {
        Self::scalar(TensorData::String(vec![v.into()]))
    }

    /// A rank-1 `int32` tensor literal, e.g. a shape or `begin` vector.
    pub fn int32s(v: &[i32]) -> Self {
        Literal::Value {
            ty: TensorType::new(DType::Int32, [v.len()]),
            data: TensorData::Int32(v.to_vec()),
        }
    }

    /// A scalar literal holding the single value in `data`.
    ///
    /// `data` should hold exactly one value; [`crate::verify`] rejects anything else.
    pub fn scalar(data: TensorData) -> Self {
        Literal::Value {
            ty: TensorType::scalar(data.dtype()),
            data,
        }
    }

    /// The inline values, or `None` for a BLOBFILE reference.
    pub fn data(&self) -> Option<&TensorData> {
        match self {
            Literal::Value { data, .. } => Some(data),
            Literal::BlobFile { .. } => None,
        }
    }

    /// The single string value of a scalar string literal.
    pub fn as_str(&self) -> Option<&str> {
        match self.data()? {
            TensorData::String(v) if v.len() == 1 => Some(&v[0]),
            _ => None,
        }
    }
}

/// One argument of an op call: `key=value` inside the parentheses.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A reference to a function parameter or an earlier statement's result.
    Var(String),
    /// An inline constant, e.g. `y=fp16(-0.5)`.
    Literal(Literal),
    /// A tuple of variable references, e.g. `values=(a,b,c)` for `concat`.
    Tuple(Vec<String>),
}

/// One statement: `TYPE OUTPUT = OP(ARGS)[ATTRS];`.
///
/// `attrs` always contains `name` (a scalar string literal), usually first; `const` statements
/// carry their value in the `val` attribute, `constexpr_affine_dequantize` carries all its
/// operands as attributes. Argument and attribute order is kept as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// Name of the result variable (distinct from the `name` attribute, which may differ).
    pub output: String,
    /// Declared type of the result.
    pub ty: TensorType,
    /// The operation.
    pub op: Op,
    /// Call arguments, in written order.
    pub args: Vec<(String, Arg)>,
    /// Bracketed attributes, in written order (includes `name`).
    pub attrs: Vec<(String, Literal)>,
}

impl Statement {
    /// The argument with the given key.
    pub fn arg(&self, key: &str) -> Option<&Arg> {
        self.args.iter().find(|(k, _)| k == key).map(|(_, a)| a)
    }

    /// The attribute with the given key.
    pub fn attr(&self, key: &str) -> Option<&Literal> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, a)| a)
    }

    /// The `name` attribute's value, if present.
    pub fn name(&self) -> Option<&str> {
        self.attr("name").and_then(Literal::as_str)
    }
}

/// A typed function parameter: `tensor<fp16, [1, 768, 1, 256]> x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Parameter name (on the Neural Engine, inputs bind in alphabetical order of these names).
    pub name: String,
    /// Parameter type (the Neural Engine accepts fp16, fp32 and bool inputs).
    pub ty: TensorType,
}

/// One function: `func NAME<opset>(PARAMS) { BODY } -> (RETURNS);`.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    /// Function name; the Neural Engine runs `main`.
    pub name: String,
    /// Parameters in declaration order.
    pub params: Vec<Param>,
    /// Statements in program order (single static assignment: each output is defined once).
    pub body: Vec<Statement>,
    /// Names of the returned variables, in order.
    pub returns: Vec<String>,
}

impl Function {
    /// The type of a parameter or statement result named `var`.
    pub fn type_of(&self, var: &str) -> Option<&TensorType> {
        self.params
            .iter()
            .find(|p| p.name == var)
            .map(|p| &p.ty)
            .or_else(|| self.body.iter().find(|s| s.output == var).map(|s| &s.ty))
    }

    /// Types of the returned values, in order (`None` for a name that is not defined).
    pub fn return_types(&self) -> Vec<Option<&TensorType>> {
        self.returns.iter().map(|r| self.type_of(r)).collect()
    }
}

/// A whole MIL program.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// Text dialect (and with it the opset of every function).
    pub dialect: Dialect,
    /// The `[buildInfo = dict<...>({...})]` entries, in order.
    pub build_info: Vec<(String, String)>,
    /// Functions; the Neural Engine runs the one named `main`.
    pub functions: Vec<Function>,
}

impl Program {
    /// A program holding one function, with the dialect's default build info.
    pub fn new(dialect: Dialect, function: Function) -> Self {
        Program {
            dialect,
            build_info: dialect.default_build_info(),
            functions: vec![function],
        }
    }

    /// The function named `main`, if any.
    pub fn main(&self) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == "main")
    }
}
