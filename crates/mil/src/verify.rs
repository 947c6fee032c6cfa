//! Whole-program checks shared by the builder, the parser and hand-made Programs.
//!
//! A [`Scope`] grows one function statement by statement; each addition is checked for
//! well-formed names, single definition, valid literals and a declared type equal to the type
//! [`crate::ops::infer`] computes. [`verify`] runs the same checks over a finished Program.

use std::collections::{HashMap, HashSet};

use crate::error::Error;
use crate::ir::{Arg, DType, Function, Literal, Param, Program, Statement, TensorData, TensorType};
use crate::ops::{infer, Op, Operand, Resolved};

/// Checks every function of `program`. Returns the first error found.
pub fn verify(program: &Program) -> Result<(), Error> {
    if program.functions.is_empty() {
        return Err(Error::NoFunctions);
    }
    let mut names = HashSet::new();
    for f in &program.functions {
        if !names.insert(f.name.as_str()) {
            return Err(Error::DuplicateFunction {
                name: f.name.clone(),
            });
        }
        verify_function(f)?;
    }
    Ok(())
}

/// Checks one function: parameters, every statement in order, and the return tuple.
pub fn verify_function(f: &Function) -> Result<(), Error> {
    check_identifier(&f.name)?;
    let mut scope = Scope::default();
    for p in &f.params {
        scope.add_param(p)?;
    }
    for s in &f.body {
        scope.add_statement(s)?;
    }
    scope.check_returns(&f.name, &f.returns)
}

/// True when `name` is a MIL identifier: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_identifier(name: &str) -> Result<(), Error> {
    if is_identifier(name) {
        Ok(())
    } else {
        Err(Error::BadIdentifier { name: name.into() })
    }
}

/// Checks that an inline literal's values match its type, or that a BLOBFILE reference names a
/// dtype a blob can hold.
pub fn check_literal(lit: &Literal) -> Result<(), Error> {
    match lit {
        Literal::Value { ty, data } => {
            if data.dtype() != ty.dtype {
                return Err(Error::BadLiteral {
                    detail: format!("{} values in a literal of type {ty}", data.dtype()),
                });
            }
            if ty.rank() > 1 {
                return Err(Error::BadLiteral {
                    detail: format!(
                        "inline tensor {ty} has rank {}; inline values must be scalars or vectors (store larger constants in a BLOBFILE)",
                        ty.rank()
                    ),
                });
            }
            if Some(data.len()) != ty.num_elements() {
                return Err(Error::BadLiteral {
                    detail: format!(
                        "{ty} needs {} values, got {}",
                        ty.num_elements().unwrap_or(0),
                        data.len()
                    ),
                });
            }
            let finite = match data {
                TensorData::Fp16(v) => v.iter().all(|x| x.is_finite()),
                TensorData::Fp32(v) => v.iter().all(|x| x.is_finite()),
                _ => true,
            };
            if !finite {
                return Err(Error::BadLiteral {
                    detail: format!("{ty} holds an infinite or NaN value; MIL text has no spelling for it (use -65504 for fp16 -inf)"),
                });
            }
            Ok(())
        }
        Literal::BlobFile { ty, path, .. } => {
            if !matches!(ty.dtype, DType::Fp16 | DType::Fp32 | DType::Int8) {
                return Err(Error::BadLiteral {
                    detail: format!(
                        "BLOBFILE cannot hold {} data (fp16, fp32 or int8 only)",
                        ty.dtype
                    ),
                });
            }
            if path.is_empty() {
                return Err(Error::BadLiteral {
                    detail: "BLOBFILE path is empty".into(),
                });
            }
            Ok(())
        }
    }
}

/// The variables visible at one point of a function, with their types and constant values.
#[derive(Debug, Default, Clone)]
pub struct Scope {
    vars: HashMap<String, (TensorType, Option<TensorData>)>,
    op_names: HashSet<String>,
}

impl Scope {
    /// Declares a function parameter.
    pub fn add_param(&mut self, p: &Param) -> Result<(), Error> {
        check_identifier(&p.name)?;
        self.define(&p.name, p.ty.clone(), None)
    }

    /// Checks `s` against the variables defined so far and defines its result.
    pub fn add_statement(&mut self, s: &Statement) -> Result<(), Error> {
        check_identifier(&s.output)?;
        let inferred = self.infer(s)?;
        if inferred != s.ty {
            return Err(Error::TypeMismatch {
                var: s.output.clone(),
                op: s.op.name(),
                declared: Box::new(s.ty.clone()),
                inferred: Box::new(inferred),
            });
        }
        let name = s.name().ok_or(Error::MissingAttribute {
            op: s.op.name(),
            attr: "name",
        })?;
        if self.op_names.contains(name) {
            return Err(Error::DuplicateOpName { name: name.into() });
        }
        let value = match (s.op, s.attr("val")) {
            (Op::Const, Some(lit)) => lit.data().cloned(),
            _ => None,
        };
        self.define(&s.output, s.ty.clone(), value)?;
        self.op_names.insert(name.to_string());
        Ok(())
    }

    /// The result type `s` would have, given the variables defined so far.
    pub fn infer(&self, s: &Statement) -> Result<TensorType, Error> {
        let mut args = Vec::with_capacity(s.args.len());
        for (key, arg) in &s.args {
            let resolved = match arg {
                Arg::Var(v) => Resolved::One(self.operand(v)?),
                Arg::Literal(lit) => {
                    check_literal(lit)?;
                    Resolved::One(Operand {
                        ty: lit.ty(),
                        value: lit.data(),
                    })
                }
                Arg::Tuple(vs) => Resolved::Tuple(
                    vs.iter()
                        .map(|v| self.operand(v))
                        .collect::<Result<_, _>>()?,
                ),
            };
            args.push((key.as_str(), resolved));
        }
        let mut attrs = Vec::with_capacity(s.attrs.len());
        for (key, lit) in &s.attrs {
            check_literal(lit)?;
            if key == "name" {
                if lit.as_str().is_none() || !lit.ty().is_scalar() {
                    return Err(Error::BadValue {
                        op: s.op.name(),
                        arg: "name",
                        detail: "the name attribute must be a string scalar".into(),
                    });
                }
                continue;
            }
            attrs.push((key.as_str(), lit));
        }
        infer(s.op, &args, &attrs)
    }

    /// The type of a defined variable.
    pub fn type_of(&self, name: &str) -> Option<&TensorType> {
        self.vars.get(name).map(|(t, _)| t)
    }

    /// The constant value of a variable defined by `const` with inline values.
    pub fn value_of(&self, name: &str) -> Option<&TensorData> {
        self.vars.get(name).and_then(|(_, v)| v.as_ref())
    }

    /// True when an op with this `name` attribute was already added.
    pub fn has_op_name(&self, name: &str) -> bool {
        self.op_names.contains(name)
    }

    /// Checks a return tuple: non-empty, every name defined.
    pub fn check_returns(&self, function: &str, returns: &[String]) -> Result<(), Error> {
        if returns.is_empty() {
            return Err(Error::EmptyReturn {
                function: function.into(),
            });
        }
        for r in returns {
            self.operand(r)?;
        }
        Ok(())
    }

    fn operand(&self, name: &str) -> Result<Operand<'_>, Error> {
        let (ty, value) = self
            .vars
            .get(name)
            .ok_or_else(|| Error::UnknownVariable { name: name.into() })?;
        Ok(Operand {
            ty,
            value: value.as_ref(),
        })
    }

    fn define(
        &mut self,
        name: &str,
        ty: TensorType,
        value: Option<TensorData>,
    ) -> Result<(), Error> {
        if self.vars.contains_key(name) {
            return Err(Error::DuplicateVariable { name: name.into() });
        }
        self.vars.insert(name.to_string(), (ty, value));
        Ok(())
    }
}
