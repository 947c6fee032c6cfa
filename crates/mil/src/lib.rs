//! `ane-mil`: the MIL layer of ane-train.
//!
//! MIL ("Model Intermediate Language") is the text form in which programs reach the Apple
//! Neural Engine compiler. This crate knows nothing of devices; it provides:
//!
//! - [`ir`] — the Program IR: typed parameters, statements, constants (inline or BLOBFILE), returns;
//! - [`ops`] — the op catalogue and the one shape/dtype rule per op;
//! - [`builder`] — building functions op by op, with typed errors instead of panics;
//! - [`print`] and [`parse`] — Program ⇄ text in the `program(1.3)`/`ios18` dialect and the older
//!   `program(1.0)`/`ios16` dialect needed on M1/M2; `print(parse(t)) == t` for printed text;
//! - [`verify`] — the checks shared by the builder, the parser and hand-made Programs;
//! - [`blob`] — coremltools blob v2 weight files referenced by `BLOBFILE(path, offset)`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod blob;
pub mod builder;
pub mod error;
pub mod ir;
pub mod ops;
pub mod parse;
pub mod print;
pub mod samples;
pub mod testing;
pub mod verify;

pub use error::{Error, ParseError, ParseErrorKind, Position};
pub use ir::{
    Arg, DType, Dialect, Function, Literal, Param, Program, Statement, TensorData, TensorType,
};
pub use ops::Op;
pub use parse::parse;
pub use print::print;
