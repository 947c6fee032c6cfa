//! Program → MIL text, in the exact spelling the Neural Engine compiler is fed upstream.
//!
//! Two dialects:
//! - [`Dialect::Ios18`] — `program(1.3)`, `func main<ios18>`, scalars typed `fp16`, `string`, ...,
//!   compact statements as upstream's training kernels write them:
//!   `tensor<fp16, [1,64,1,32]> y = mul(x=a,y=b)[name=string("y")];`
//! - [`Dialect::Ios16`] — `program(1.0)`, `func main<ios16>`, every scalar typed
//!   `tensor<T, []>`, and coremltools' spaced spelling:
//!   `tensor<fp16, [1, 64, 1, 32]> y = mul(x = a, y = b)[name = tensor<string, []>("y")];`
//!
//! Function headers always use spaced dims (`tensor<fp16, [1, 768, 1, 256]> x`). Floats are
//! printed in the shortest positional form that reads back to the same value (`0.125`, `-1.0`,
//! `-65504.0`), so `parse(print(p)) == p` and `print(parse(print(p))) == print(p)`.

use std::fmt::Write;

use half::f16;

use crate::ir::{Arg, Dialect, Function, Literal, Program, Statement, TensorData, TensorType};

/// Prints `program` in its own dialect.
pub fn print(program: &Program) -> String {
    let mut p = Printer {
        d: program.dialect,
        out: String::new(),
    };
    p.program(program);
    p.out
}

struct Printer {
    d: Dialect,
    out: String,
}

impl Printer {
    fn spaced(&self) -> bool {
        self.d == Dialect::Ios16
    }

    /// `=` between a key and its value.
    fn eq(&self) -> &'static str {
        if self.spaced() {
            " = "
        } else {
            "="
        }
    }

    fn program(&mut self, p: &Program) {
        let _ = writeln!(self.out, "program({})", self.d.program_version());
        let st = self.scalar_type_name("string");
        let _ = write!(self.out, "[buildInfo = dict<{st}, {st}>({{");
        for (i, (k, v)) in p.build_info.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            let _ = write!(self.out, "{{{}, {}}}", quote(k), quote(v));
        }
        self.out.push_str("})]\n{\n");
        for f in &p.functions {
            self.function(f);
        }
        self.out.push_str("}\n");
    }

    fn function(&mut self, f: &Function) {
        let _ = write!(self.out, "    func {}<{}>(", f.name, self.d.opset());
        for (i, p) in f.params.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            let ty = self.ty(&p.ty, true);
            let _ = write!(self.out, "{ty} {}", p.name);
        }
        self.out.push_str(") {\n");
        for s in &f.body {
            self.statement(s);
        }
        let _ = writeln!(self.out, "    }} -> ({});", f.returns.join(", "));
    }

    fn statement(&mut self, s: &Statement) {
        let ty = self.ty(&s.ty, self.spaced());
        let _ = write!(self.out, "        {ty} {} = {}(", s.output, s.op.name());
        let sep = if self.spaced() { ", " } else { "," };
        for (i, (k, a)) in s.args.iter().enumerate() {
            if i > 0 {
                self.out.push_str(sep);
            }
            let v = self.arg(a);
            let _ = write!(self.out, "{k}{}{v}", self.eq());
        }
        self.out.push_str(")[");
        for (i, (k, l)) in s.attrs.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            let v = self.literal(l);
            let _ = write!(self.out, "{k}{}{v}", self.eq());
        }
        self.out.push_str("];\n");
    }

    fn arg(&self, a: &Arg) -> String {
        match a {
            Arg::Var(v) => v.clone(),
            Arg::Literal(l) => self.literal(l),
            Arg::Tuple(vs) => format!("({})", vs.join(if self.spaced() { ", " } else { "," })),
        }
    }

    /// The spelling of a scalar type: `fp16` (ios18) or `tensor<fp16, []>` (ios16).
    fn scalar_type_name(&self, dtype: &str) -> String {
        if self.spaced() {
            format!("tensor<{dtype}, []>")
        } else {
            dtype.to_string()
        }
    }

    fn ty(&self, t: &TensorType, spaced_dims: bool) -> String {
        if t.is_scalar() {
            return self.scalar_type_name(t.dtype.name());
        }
        let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        let sep = if spaced_dims { ", " } else { "," };
        format!("tensor<{}, [{}]>", t.dtype, dims.join(sep))
    }

    fn literal(&self, l: &Literal) -> String {
        match l {
            Literal::Value { ty, data } => {
                let values = values(data);
                if ty.is_scalar() {
                    format!("{}({})", self.ty(ty, self.spaced()), values.join(""))
                } else {
                    let sep = if self.spaced() { ", " } else { "," };
                    format!("{}([{}])", self.ty(ty, self.spaced()), values.join(sep))
                }
            }
            Literal::BlobFile { ty, path, offset } => {
                let (st, u64t) = (
                    self.scalar_type_name("string"),
                    self.scalar_type_name("uint64"),
                );
                let eq = self.eq();
                format!(
                    "{}(BLOBFILE(path{eq}{st}({}), offset{eq}{u64t}({offset})))",
                    self.ty(ty, self.spaced()),
                    quote(path)
                )
            }
        }
    }
}

/// Each value of `data` as MIL text.
fn values(data: &TensorData) -> Vec<String> {
    match data {
        TensorData::Fp16(v) => v.iter().map(|x| format_f16(*x)).collect(),
        TensorData::Fp32(v) => v.iter().map(|x| format_f32(*x)).collect(),
        TensorData::Int8(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::Int32(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::Bool(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::String(v) => v.iter().map(|s| quote(s)).collect(),
    }
}

/// A string literal: `"..."` with `\` and `"` escaped by a backslash.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The shortest positional decimal (at least one fractional digit) that `accept` maps back to
/// the value; falls back to Rust's exponent form for extreme magnitudes.
fn shortest(v: f64, accept: impl Fn(f64) -> bool) -> String {
    for digits in 1..=60 {
        let s = format!("{v:.digits$}");
        if s.parse::<f64>().is_ok_and(&accept) {
            return s;
        }
    }
    format!("{v:e}")
}

/// An fp16 value as the shortest decimal that rounds back to the same fp16.
pub fn format_f16(x: f16) -> String {
    shortest(x.to_f64(), |p| f16::from_f64(p).to_bits() == x.to_bits())
}

/// An fp32 value as the shortest decimal that rounds back to the same fp32.
pub fn format_f32(x: f32) -> String {
    shortest(x as f64, |p| (p as f32).to_bits() == x.to_bits())
}
