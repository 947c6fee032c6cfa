//! Errors of the MIL layer.
//!
//! [`Error`] is a semantic error: a wrong rank, mismatched dims, an unknown variable, a duplicate
//! name. The builder and [`crate::verify`] return it directly; the parser wraps it in a
//! [`ParseError`] that adds the line and column where the offending statement starts.

use crate::ir::{DType, TensorType};

/// A semantic error in a Program. Every message names the op (or variable) and says what was
/// expected and what was found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A variable was used before (or without) being defined.
    #[error("unknown variable `{name}`")]
    UnknownVariable {
        /// The name used.
        name: String,
    },
    /// A parameter or statement result reuses a name already defined in the function.
    #[error("variable `{name}` is defined twice")]
    DuplicateVariable {
        /// The repeated name.
        name: String,
    },
    /// Two statements of one function carry the same `name` attribute.
    #[error("op name \"{name}\" is used twice (each op's [name=...] must be unique)")]
    DuplicateOpName {
        /// The repeated op name.
        name: String,
    },
    /// Two functions share a name.
    #[error("function `{name}` is defined twice")]
    DuplicateFunction {
        /// The repeated function name.
        name: String,
    },
    /// A name is not a valid MIL identifier (`[A-Za-z_][A-Za-z0-9_]*`).
    #[error("`{name}` is not a valid identifier (use letters, digits and `_`, not starting with a digit)")]
    BadIdentifier {
        /// The offending name.
        name: String,
    },
    /// A required argument is absent.
    #[error("{op}: missing argument `{arg}`")]
    MissingArgument {
        /// Op name.
        op: &'static str,
        /// Argument key.
        arg: &'static str,
    },
    /// An argument the op does not take.
    #[error("{op}: unexpected argument `{arg}` (it takes {allowed})")]
    UnexpectedArgument {
        /// Op name.
        op: &'static str,
        /// Argument key as written.
        arg: String,
        /// The keys the op accepts, comma separated.
        allowed: String,
    },
    /// The same argument key appears twice in one call.
    #[error("{op}: argument `{arg}` is given twice")]
    DuplicateArgument {
        /// Op name.
        op: &'static str,
        /// Argument key.
        arg: String,
    },
    /// A required attribute (inside `[...]`) is absent.
    #[error("{op}: missing attribute `{attr}`")]
    MissingAttribute {
        /// Op name.
        op: &'static str,
        /// Attribute key.
        attr: &'static str,
    },
    /// An attribute the op does not take, or one given twice.
    #[error("{op}: unexpected attribute `{attr}`")]
    UnexpectedAttribute {
        /// Op name.
        op: &'static str,
        /// Attribute key as written.
        attr: String,
    },
    /// An argument of the wrong form (a tuple where a tensor is needed, or the reverse).
    #[error("{op}: argument `{arg}` must be {expected}")]
    ArgumentForm {
        /// Op name.
        op: &'static str,
        /// Argument key.
        arg: &'static str,
        /// What the op needs, e.g. "a tuple of variables".
        expected: &'static str,
    },
    /// An argument whose value must be known when the program is built (shape, axis, perm, ...).
    #[error("{op}: argument `{arg}` must be a constant (a literal or a `const` variable)")]
    NotConstant {
        /// Op name.
        op: &'static str,
        /// Argument key.
        arg: &'static str,
    },
    /// An operand of the wrong rank.
    #[error("{op}: `{arg}` must have rank {expected}, got rank {got} ({ty})")]
    WrongRank {
        /// Op name.
        op: &'static str,
        /// Argument key.
        arg: &'static str,
        /// Accepted rank(s), e.g. "4" or ">= 2".
        expected: String,
        /// Actual rank.
        got: usize,
        /// Actual type.
        ty: Box<TensorType>,
    },
    /// An operand of the wrong element type.
    #[error("{op}: `{arg}` must be {expected}, got {got}")]
    WrongDType {
        /// Op name.
        op: &'static str,
        /// Argument key.
        arg: &'static str,
        /// Accepted dtype(s).
        expected: String,
        /// Actual dtype.
        got: DType,
    },
    /// Operand shapes that do not fit together.
    #[error("{op}: {detail}")]
    ShapeMismatch {
        /// Op name.
        op: &'static str,
        /// What does not fit, with the shapes involved.
        detail: String,
    },
    /// A constant argument with a value the op cannot use.
    #[error("{op}: bad `{arg}`: {detail}")]
    BadValue {
        /// Op name.
        op: &'static str,
        /// Argument or attribute key.
        arg: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A statement's declared type differs from what its op produces.
    #[error("`{var}` is declared {declared} but {op} produces {inferred}")]
    TypeMismatch {
        /// Result variable.
        var: String,
        /// Op name.
        op: &'static str,
        /// Type written in the statement.
        declared: Box<TensorType>,
        /// Type the op produces.
        inferred: Box<TensorType>,
    },
    /// An inline literal whose values do not match its declared type.
    #[error("bad literal: {detail}")]
    BadLiteral {
        /// What is wrong.
        detail: String,
    },
    /// A function returns nothing.
    #[error("function `{function}` returns no values")]
    EmptyReturn {
        /// Function name.
        function: String,
    },
    /// A program without functions.
    #[error("program has no functions")]
    NoFunctions,
}

/// A position in MIL text, counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Byte offset from the start of the text (0-based).
    pub offset: usize,
    /// Line number, from 1.
    pub line: usize,
    /// Column number in characters, from 1.
    pub column: usize,
}

/// What went wrong while parsing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The text does not follow the MIL grammar.
    #[error("expected {expected}, found {found}")]
    Syntax {
        /// What the parser was looking for.
        expected: String,
        /// What it found instead (a quoted token or "end of input").
        found: String,
    },
    /// An op name the IR does not know.
    #[error("unknown op `{name}`")]
    UnknownOp {
        /// Name as written.
        name: String,
    },
    /// A dtype name the IR does not know.
    #[error("unknown dtype `{name}` (expected fp16, fp32, int8, int32, bool or string)")]
    UnknownDType {
        /// Name as written.
        name: String,
    },
    /// A number that does not fit its type.
    #[error("number `{text}` is not a valid {ty} value")]
    BadNumber {
        /// Text of the number.
        text: String,
        /// The type it had to fit.
        ty: String,
    },
    /// The header and the function opset belong to different dialects.
    #[error(
        "`{found}` does not match the dialect of `program({version})` (expected `{expected}`)"
    )]
    DialectMismatch {
        /// The program version written.
        version: String,
        /// The opset the version requires.
        expected: String,
        /// The opset written.
        found: String,
    },
    /// A program version other than 1.0 and 1.3.
    #[error("unsupported program version `{version}` (expected 1.3 for ios18 or 1.0 for ios16)")]
    UnsupportedVersion {
        /// Version as written.
        version: String,
    },
    /// A nesting or size limit was exceeded.
    #[error("{what} exceeds the limit of {limit}")]
    TooLarge {
        /// What grew too large.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The program is well formed but semantically wrong.
    #[error(transparent)]
    Semantic(#[from] Error),
}

/// A parse error with the position it refers to. `Display` prints `LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}:{}: {kind}", pos.line, pos.column)]
pub struct ParseError {
    /// Where the error is.
    pub pos: Position,
    /// What the error is.
    pub kind: ParseErrorKind,
}
