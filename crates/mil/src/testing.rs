//! A deterministic generator of random, valid Programs driven by a byte string, for property
//! tests and fuzzing (`fuzz/fuzz_targets/mil_roundtrip.rs`).
//!
//! Every byte string maps to a Program that passes [`crate::verify::verify`]. The generator
//! proposes statements of every op with operands drawn from the variables defined so far, inline
//! literals or named consts, odd identifiers, BLOBFILE references and awkward strings and
//! floats; proposals the type rules reject are dropped, so what remains is exactly what a user
//! could write.

use half::f16;

use crate::ir::{
    Arg, DType, Dialect, Function, Literal, Param, Program, Statement, TensorData, TensorType,
};
use crate::ops::Op;
use crate::verify::Scope;

/// Reads choices from a byte string; yields zeros once it is exhausted.
struct Source<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Source<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// A number in `0..n` (`n >= 1`).
    fn pick(&mut self, n: usize) -> usize {
        self.byte() as usize % n.max(1)
    }

    fn coin(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
}

const NAMES: &[&str] = &[
    "x", "W", "w", "a_1", "_t", "fp16", "tensor", "BLOBFILE", "q", "y0",
];
const STRINGS: &[&str] = &[
    "valid",
    "fp16",
    "",
    "a \"quoted\" word",
    "back\\slash",
    "ünï",
    "same",
];

fn name(src: &mut Source<'_>, taken: &dyn Fn(&str) -> bool) -> String {
    let base = NAMES[src.pick(NAMES.len())];
    let mut n = 0;
    loop {
        let candidate = if n == 0 {
            base.to_string()
        } else {
            format!("{base}_{n}")
        };
        if !taken(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

fn float(src: &mut Source<'_>) -> f32 {
    let nice = [
        0.0, -0.0, 1.0, -1.0, 0.125, -65504.0, 1e-5, 3.0e38, 6.0e-8, 0.1,
    ];
    if src.coin() {
        return nice[src.pick(nice.len())];
    }
    let v = f32::from_bits(src.u32());
    if v.is_finite() {
        v
    } else {
        2.5
    }
}

fn data(src: &mut Source<'_>, dtype: DType, n: usize) -> TensorData {
    match dtype {
        DType::Fp16 => TensorData::Fp16(
            (0..n)
                .map(|_| {
                    let h = f16::from_f32(float(src));
                    if h.is_finite() {
                        h
                    } else {
                        f16::from_f32(-65504.0)
                    }
                })
                .collect(),
        ),
        DType::Fp32 => TensorData::Fp32((0..n).map(|_| float(src)).collect()),
        DType::Int8 => TensorData::Int8((0..n).map(|_| src.byte() as i8).collect()),
        DType::Int32 => TensorData::Int32((0..n).map(|_| src.u32() as i32).collect()),
        DType::Bool => TensorData::Bool((0..n).map(|_| src.coin()).collect()),
        DType::String => TensorData::String(
            (0..n)
                .map(|_| STRINGS[src.pick(STRINGS.len())].into())
                .collect(),
        ),
    }
}

fn random_literal(src: &mut Source<'_>) -> Literal {
    let dtype = DType::ALL[src.pick(DType::ALL.len())];
    match src.pick(4) {
        0 | 1 => Literal::scalar(data(src, dtype, 1)),
        2 => {
            let n = src.pick(5);
            Literal::Value {
                ty: TensorType::new(dtype, [n]),
                data: data(src, dtype, n),
            }
        }
        _ => {
            let rank = 1 + src.pick(4);
            let shape: Vec<usize> = (0..rank).map(|_| 1 + src.pick(8)).collect();
            let blob_dtype = [DType::Fp16, DType::Fp32, DType::Int8][src.pick(3)];
            Literal::BlobFile {
                ty: TensorType::new(blob_dtype, shape),
                path: format!(
                    "@model_path/weights/{}.bin",
                    STRINGS[src.pick(STRINGS.len())]
                ),
                offset: 64 * (1 + src.pick(4) as u64),
            }
        }
    }
}

fn int32s(v: &[i64]) -> Literal {
    Literal::int32s(&v.iter().map(|&x| x as i32).collect::<Vec<_>>())
}

/// Builds one function from the source.
struct Gen<'s, 'a> {
    src: &'s mut Source<'a>,
    scope: Scope,
    vars: Vec<(String, TensorType)>,
    params: Vec<Param>,
    body: Vec<Statement>,
    op_names: Vec<String>,
}

impl Gen<'_, '_> {
    fn taken(&self, n: &str) -> bool {
        self.vars.iter().any(|(v, _)| v == n)
    }

    fn var(&mut self) -> (String, TensorType) {
        let i = self.src.pick(self.vars.len());
        self.vars[i].clone()
    }

    /// An argument holding `lit`, inline or through a fresh named const.
    fn lit_arg(&mut self, lit: Literal) -> Arg {
        if self.src.coin() {
            return Arg::Literal(lit);
        }
        let out = name(self.src, &|n| self.vars.iter().any(|(v, _)| v == n));
        let s = Statement {
            output: out.clone(),
            ty: lit.ty().clone(),
            op: Op::Const,
            args: Vec::new(),
            attrs: vec![
                ("name".into(), Literal::string(self.op_name(&out))),
                ("val".into(), lit),
            ],
        };
        self.try_add(s);
        if self.taken(&out) {
            Arg::Var(out)
        } else {
            Arg::Literal(Literal::bool(false))
        }
    }

    fn op_name(&mut self, output: &str) -> String {
        let mut n = if self.src.pick(4) == 0 {
            format!("op_{output}")
        } else {
            output.to_string()
        };
        while self.op_names.contains(&n) || self.scope.has_op_name(&n) {
            n.push('_');
        }
        n
    }

    fn try_add(&mut self, mut s: Statement) {
        if let Ok(ty) = self.scope.infer(&s) {
            s.ty = ty;
            if self.scope.add_statement(&s).is_ok() {
                self.op_names.push(s.name().unwrap_or_default().to_string());
                self.vars.push((s.output.clone(), s.ty.clone()));
                self.body.push(s);
            }
        }
    }

    /// Proposes one statement.
    fn step(&mut self) {
        let op = Op::ALL[self.src.pick(Op::ALL.len())];
        let (xn, xt) = self.var();
        let x = Arg::Var(xn.clone());
        let rank = xt.rank() as i64;
        let mut args: Vec<(String, Arg)> = Vec::new();
        let mut attrs: Vec<(String, Literal)> = Vec::new();
        let mut push = |k: &str, a: Arg| args.push((k.to_string(), a));
        match op {
            Op::Const => attrs.push(("val".into(), random_literal(self.src))),
            Op::ConstexprAffineDequantize => {
                let shape: Vec<usize> = (0..1 + self.src.pick(4))
                    .map(|_| 1 + self.src.pick(6))
                    .collect();
                attrs.push(("axis".into(), Literal::int32(0)));
                attrs.push((
                    "quantized_data".into(),
                    Literal::BlobFile {
                        ty: TensorType::new(DType::Int8, shape),
                        path: "@model_path/weights/q.bin".into(),
                        offset: 64,
                    },
                ));
                attrs.push(("scale".into(), Literal::fp16(0.125)));
                attrs.push(("zero_point".into(), Literal::int8(0)));
            }
            Op::Softmax | Op::ReduceSum | Op::ReduceMax => {
                let axis = self.src.pick(rank.max(1) as usize) as i64
                    - if self.src.coin() { rank } else { 0 };
                push("x", x);
                if op == Op::Softmax {
                    push("axis", self.lit_arg(Literal::int32(axis as i32)));
                } else {
                    push("axes", self.lit_arg(int32s(&[axis])));
                    let keep = Literal::bool(self.src.coin());
                    push("keep_dims", self.lit_arg(keep));
                }
            }
            Op::Transpose => {
                let mut perm: Vec<i64> = (0..rank).collect();
                for i in (1..perm.len()).rev() {
                    let j = self.src.pick(i + 1);
                    perm.swap(i, j);
                }
                push("perm", self.lit_arg(int32s(&perm)));
                push("x", x);
            }
            Op::Reshape => {
                let n = xt.num_elements().unwrap_or(1) as i64;
                let shape = match self.src.pick(3) {
                    0 => vec![n],
                    1 => vec![1, -1],
                    _ => vec![1, n, 1, 1],
                };
                push("shape", self.lit_arg(int32s(&shape)));
                push("x", x);
            }
            Op::SliceBySize => {
                let begin: Vec<i64> = xt.shape.iter().map(|&d| self.src.pick(d) as i64).collect();
                let size: Vec<i64> = xt
                    .shape
                    .iter()
                    .zip(&begin)
                    .map(|(&d, &b)| {
                        if self.src.coin() {
                            -1
                        } else {
                            1 + self.src.pick(d - b as usize) as i64
                        }
                    })
                    .collect();
                push("x", x);
                push("begin", self.lit_arg(int32s(&begin)));
                push("size", self.lit_arg(int32s(&size)));
            }
            Op::Concat => {
                let axis = self.src.pick(rank.max(1) as usize) as i32;
                push("axis", self.lit_arg(Literal::int32(axis)));
                let interleave = Literal::bool(self.src.coin());
                push("interleave", self.lit_arg(interleave));
                push("values", Arg::Tuple(vec![xn.clone(), xn]));
            }
            Op::Matmul => {
                push("transpose_x", self.lit_arg(Literal::bool(false)));
                push("transpose_y", self.lit_arg(Literal::bool(true)));
                push("x", x.clone());
                push("y", x);
            }
            Op::Conv => {
                let ic = xt.shape.get(1).copied().unwrap_or(1);
                let w = Literal::BlobFile {
                    ty: TensorType::new(xt.dtype, [1 + self.src.pick(4), ic, 1, 1]),
                    path: "@model_path/weights/w.bin".into(),
                    offset: 64,
                };
                push("pad_type", self.lit_arg(Literal::string("valid")));
                push("weight", self.lit_arg(w));
                push("x", x);
            }
            Op::Pow | Op::Mul | Op::Add | Op::Sub | Op::RealDiv | Op::Maximum => {
                let (yn, _) = self.var();
                push("x", x);
                let y = if self.src.coin() {
                    Arg::Var(yn)
                } else {
                    Arg::Literal(Literal::scalar(data(self.src, xt.dtype, 1)))
                };
                push("y", y);
            }
            Op::Sigmoid | Op::Silu | Op::Exp => push("x", x),
            Op::Log | Op::Rsqrt => {
                push("epsilon", self.lit_arg(Literal::fp16(1e-5)));
                push("x", x);
            }
            Op::Select => {
                let (cn, _) = self.var();
                push("a", x.clone());
                push("b", x);
                push("cond", Arg::Var(cn));
            }
            Op::Cast => {
                let to = ["fp16", "fp32", "int32", "bool"][self.src.pick(4)];
                push("dtype", self.lit_arg(Literal::string(to)));
                push("x", x);
            }
            Op::ScaledDotProductAttention => {
                push("key", x.clone());
                push("query", x.clone());
                push("value", x);
            }
            Op::Quantize | Op::Dequantize => {
                push("input", x);
                if op == Op::Quantize {
                    push("output_dtype", self.lit_arg(Literal::string("int8")));
                }
                push("scale", self.lit_arg(Literal::fp16(0.5)));
            }
        }
        let output = name(self.src, &|n| self.vars.iter().any(|(v, _)| v == n));
        let mut all_attrs = vec![("name".to_string(), Literal::string(self.op_name(&output)))];
        if self.src.coin() {
            all_attrs.reverse();
            all_attrs.splice(0..0, attrs);
        } else {
            all_attrs.extend(attrs);
        }
        self.try_add(Statement {
            output,
            ty: TensorType::scalar(DType::Bool),
            op,
            args,
            attrs: all_attrs,
        });
    }
}

fn function(src: &mut Source<'_>, fname: String) -> Function {
    let mut g = Gen {
        src,
        scope: Scope::default(),
        vars: Vec::new(),
        params: Vec::new(),
        body: Vec::new(),
        op_names: Vec::new(),
    };
    for _ in 0..1 + g.src.pick(3) {
        let dtype = [DType::Fp16, DType::Fp32, DType::Int32, DType::Bool][g.src.pick(4)];
        let shape: Vec<usize> = (0..g.src.pick(5)).map(|_| 1 + g.src.pick(6)).collect();
        let pname = name(g.src, &|n| g.vars.iter().any(|(v, _)| v == n));
        let p = Param {
            name: pname.clone(),
            ty: TensorType::new(dtype, shape),
        };
        if g.scope.add_param(&p).is_ok() {
            g.vars.push((pname, p.ty.clone()));
            g.params.push(p);
        }
    }
    let steps = 1 + g.src.pick(40);
    for _ in 0..steps {
        if g.src.done() {
            break;
        }
        g.step();
    }
    let n_ret = 1 + g.src.pick(2);
    let returns = (0..n_ret).map(|_| g.var().0).collect();
    Function {
        name: fname,
        params: g.params,
        body: g.body,
        returns,
    }
}

/// Generates a valid Program from `bytes` (any bytes, including none).
pub fn program_from_bytes(bytes: &[u8]) -> Program {
    let mut src = Source { bytes, pos: 0 };
    let dialect = if src.coin() {
        Dialect::Ios16
    } else {
        Dialect::Ios18
    };
    let mut build_info = dialect.default_build_info();
    if src.coin() {
        build_info.push((
            STRINGS[src.pick(STRINGS.len())].into(),
            STRINGS[src.pick(STRINGS.len())].into(),
        ));
    }
    let mut functions = vec![function(&mut src, "main".into())];
    if src.pick(4) == 0 {
        functions.push(function(&mut src, "helper_fn".into()));
    }
    Program {
        dialect,
        build_info,
        functions,
    }
}
