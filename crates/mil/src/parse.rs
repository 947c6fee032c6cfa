//! MIL text → Program, for both dialects, with errors that carry line and column.
//!
//! Accepts everything [`crate::print`] emits (so `print(parse(text)) == text` for printed text)
//! and the spellings upstream writes by hand: any whitespace, scalars typed either `fp16` or
//! `tensor<fp16, []>` in either dialect, floats in `%f` / `%g` form (`0.125000`, `1e-05`),
//! integers for floats (`fp16(-1)`, `-65504`) and C hex floats (`0x1p-3`, `-0x1.8p+1`).
//!
//! Every statement is checked as it is read (see [`crate::verify::Scope`]): a semantic error is
//! reported at the token it concerns (the unknown variable, the redefined name, the declared
//! type), not at the end of the file.

use half::f16;

use crate::error::{Error, ParseError, ParseErrorKind, Position};
use crate::ir::{
    Arg, DType, Dialect, Function, Literal, Param, Program, Statement, TensorData, TensorType,
};
use crate::ops::Op;
use crate::verify::Scope;

/// The most dims a tensor type may list.
pub const MAX_RANK: usize = 16;

/// Parses MIL text into a checked Program.
pub fn parse(text: &str) -> Result<Program, ParseError> {
    let tokens = lex(text)?;
    Parser { text, tokens, i: 0 }.program()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Ident,
    Number,
    Str,
    Punct(char),
    Arrow,
    Eof,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Tok,
    start: usize,
    end: usize,
}

fn position(text: &str, offset: usize) -> Position {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        offset,
        line,
        column: text[line_start..offset].chars().count() + 1,
    }
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let kind = if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            Tok::Ident
        } else if c.is_ascii_digit()
            || c == b'.'
            || (c == b'-'
                && bytes
                    .get(i + 1)
                    .is_some_and(|b| b.is_ascii_digit() || *b == b'.'))
        {
            i += 1;
            while i < bytes.len() {
                let b = bytes[i];
                let hex = bytes[start..].starts_with(b"0x") || bytes[start..].starts_with(b"-0x");
                let prev = bytes[i - 1];
                let exp_sign = (b == b'-' || b == b'+')
                    && if hex {
                        matches!(prev, b'p' | b'P')
                    } else {
                        matches!(prev, b'e' | b'E')
                    };
                if b.is_ascii_alphanumeric() || b == b'.' || exp_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            Tok::Number
        } else if c == b'"' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => {
                        return Err(ParseError {
                            pos: position(text, start),
                            kind: ParseErrorKind::Syntax {
                                expected: "a closing `\"`".into(),
                                found: "end of input".into(),
                            },
                        })
                    }
                    Some(b'\\') => i += 2,
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            Tok::Str
        } else if c == b'-' && bytes.get(i + 1) == Some(&b'>') {
            i += 2;
            Tok::Arrow
        } else if b"()[]{}<>,=;".contains(&c) {
            i += 1;
            Tok::Punct(c as char)
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(ParseError {
                pos: position(text, start),
                kind: ParseErrorKind::Syntax {
                    expected: "a token".into(),
                    found: format!("`{ch}`"),
                },
            });
        };
        tokens.push(Token {
            kind,
            start,
            end: i.min(bytes.len()),
        });
    }
    tokens.push(Token {
        kind: Tok::Eof,
        start: text.len(),
        end: text.len(),
    });
    Ok(tokens)
}

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Token>,
    i: usize,
}

type PResult<T> = Result<T, ParseError>;

impl<'t> Parser<'t> {
    fn peek(&self) -> Token {
        self.tokens[self.i]
    }

    fn peek_at(&self, n: usize) -> Token {
        self.tokens[(self.i + n).min(self.tokens.len() - 1)]
    }

    fn text_of(&self, t: Token) -> &'t str {
        &self.text[t.start..t.end]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek();
        if t.kind != Tok::Eof {
            self.i += 1;
        }
        t
    }

    fn err_at(&self, t: Token, kind: ParseErrorKind) -> ParseError {
        ParseError {
            pos: position(self.text, t.start),
            kind,
        }
    }

    fn found(&self, t: Token) -> String {
        if t.kind == Tok::Eof {
            return "end of input".into();
        }
        let s = self.text_of(t);
        let short: String = s.chars().take(24).collect();
        if short.len() < s.len() {
            format!("`{short}...`")
        } else {
            format!("`{short}`")
        }
    }

    fn expected(&self, what: &str) -> ParseError {
        let t = self.peek();
        self.err_at(
            t,
            ParseErrorKind::Syntax {
                expected: what.into(),
                found: self.found(t),
            },
        )
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek().kind == Tok::Punct(c)
    }

    fn punct(&mut self, c: char) -> PResult<()> {
        if self.is_punct(c) {
            self.bump();
            Ok(())
        } else {
            Err(self.expected(&format!("`{c}`")))
        }
    }

    fn keyword(&mut self, word: &str) -> PResult<()> {
        let t = self.peek();
        if t.kind == Tok::Ident && self.text_of(t) == word {
            self.bump();
            Ok(())
        } else {
            Err(self.expected(&format!("`{word}`")))
        }
    }

    fn ident(&mut self, what: &str) -> PResult<(String, Token)> {
        let t = self.peek();
        if t.kind != Tok::Ident {
            return Err(self.expected(what));
        }
        self.bump();
        Ok((self.text_of(t).to_string(), t))
    }

    fn string(&mut self) -> PResult<String> {
        let t = self.peek();
        if t.kind != Tok::Str {
            return Err(self.expected("a string in double quotes"));
        }
        self.bump();
        let raw = &self.text[t.start + 1..t.end - 1];
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some(e @ ('"' | '\\')) => out.push(e),
                    other => {
                        return Err(self.err_at(
                            t,
                            ParseErrorKind::Syntax {
                                expected: "`\\\"` or `\\\\` in a string".into(),
                                found: format!(
                                    "`\\{}`",
                                    other.map(String::from).unwrap_or_default()
                                ),
                            },
                        ))
                    }
                }
            } else {
                out.push(c);
            }
        }
        Ok(out)
    }

    fn semantic(&self, t: Token, e: Error) -> ParseError {
        self.err_at(t, ParseErrorKind::Semantic(e))
    }

    /// `program(1.3) [buildInfo ...] { func ... }` — the whole input.
    fn program(&mut self) -> PResult<Program> {
        self.keyword("program")?;
        self.punct('(')?;
        let vt = self.peek();
        if vt.kind != Tok::Number {
            return Err(self.expected("a program version such as 1.3"));
        }
        self.bump();
        let version = self.text_of(vt);
        let dialect = match version {
            "1.3" => Dialect::Ios18,
            "1.0" => Dialect::Ios16,
            _ => {
                return Err(self.err_at(
                    vt,
                    ParseErrorKind::UnsupportedVersion {
                        version: version.into(),
                    },
                ))
            }
        };
        self.punct(')')?;
        let build_info = if self.is_punct('[') {
            self.build_info()?
        } else {
            Vec::new()
        };
        self.punct('{')?;
        let mut functions: Vec<Function> = Vec::new();
        while !self.is_punct('}') {
            let start = self.peek();
            let f = self.function(dialect, version)?;
            if functions.iter().any(|g| g.name == f.name) {
                return Err(self.semantic(start, Error::DuplicateFunction { name: f.name }));
            }
            functions.push(f);
        }
        let close = self.peek();
        self.punct('}')?;
        if functions.is_empty() {
            return Err(self.semantic(close, Error::NoFunctions));
        }
        if self.peek().kind != Tok::Eof {
            return Err(self.expected("end of input"));
        }
        Ok(Program {
            dialect,
            build_info,
            functions,
        })
    }

    /// `[buildInfo = dict<string, string>({{"k", "v"}, ...})]`
    fn build_info(&mut self) -> PResult<Vec<(String, String)>> {
        self.punct('[')?;
        self.keyword("buildInfo")?;
        self.punct('=')?;
        self.keyword("dict")?;
        self.punct('<')?;
        self.string_type()?;
        self.punct(',')?;
        self.string_type()?;
        self.punct('>')?;
        self.punct('(')?;
        self.punct('{')?;
        let mut entries = Vec::new();
        while !self.is_punct('}') {
            if !entries.is_empty() {
                self.punct(',')?;
            }
            self.punct('{')?;
            let k = self.string()?;
            self.punct(',')?;
            let v = self.string()?;
            self.punct('}')?;
            entries.push((k, v));
        }
        self.punct('}')?;
        self.punct(')')?;
        self.punct(']')?;
        Ok(entries)
    }

    /// `string` or `tensor<string, []>`.
    fn string_type(&mut self) -> PResult<()> {
        let t = self.peek();
        let ty = self.ty()?;
        if ty != TensorType::scalar(DType::String) {
            return Err(self.err_at(
                t,
                ParseErrorKind::Syntax {
                    expected: "`string`".into(),
                    found: format!("`{ty}`"),
                },
            ));
        }
        Ok(())
    }

    /// `func NAME<opset>(PARAMS) { BODY } -> (RETURNS);`
    fn function(&mut self, dialect: Dialect, version: &str) -> PResult<Function> {
        self.keyword("func")?;
        let (name, name_tok) = self.ident("a function name")?;
        if !crate::verify::is_identifier(&name) {
            return Err(self.semantic(name_tok, Error::BadIdentifier { name }));
        }
        self.punct('<')?;
        let (opset, opset_tok) = self.ident("an opset such as ios18")?;
        if opset != dialect.opset() {
            return Err(self.err_at(
                opset_tok,
                ParseErrorKind::DialectMismatch {
                    version: version.into(),
                    expected: dialect.opset().into(),
                    found: opset,
                },
            ));
        }
        self.punct('>')?;
        self.punct('(')?;
        let mut scope = Scope::default();
        let mut params = Vec::new();
        while !self.is_punct(')') {
            if !params.is_empty() {
                self.punct(',')?;
            }
            let ty = self.ty()?;
            let (pname, pt) = self.ident("a parameter name")?;
            let p = Param { name: pname, ty };
            scope.add_param(&p).map_err(|e| self.semantic(pt, e))?;
            params.push(p);
        }
        self.punct(')')?;
        self.punct('{')?;
        let mut body = Vec::new();
        while !self.is_punct('}') {
            body.push(self.statement(&mut scope)?);
        }
        self.punct('}')?;
        if self.peek().kind != Tok::Arrow {
            return Err(self.expected("`->` and the returned values"));
        }
        self.bump();
        let ret_tok = self.peek();
        self.punct('(')?;
        let mut returns = Vec::new();
        while !self.is_punct(')') {
            if !returns.is_empty() {
                self.punct(',')?;
            }
            let (r, rt) = self.ident("a returned variable")?;
            scope
                .check_returns(&name, std::slice::from_ref(&r))
                .map_err(|e| self.semantic(rt, e))?;
            returns.push(r);
        }
        self.punct(')')?;
        scope
            .check_returns(&name, &returns)
            .map_err(|e| self.semantic(ret_tok, e))?;
        self.punct(';')?;
        Ok(Function {
            name,
            params,
            body,
            returns,
        })
    }

    /// `TYPE OUT = OP(ARGS)[ATTRS];`
    fn statement(&mut self, scope: &mut Scope) -> PResult<Statement> {
        let ty_tok = self.peek();
        let ty = self.ty()?;
        let (output, out_tok) = self.ident("a variable name")?;
        self.punct('=')?;
        let (op_name, op_tok) = self.ident("an op name")?;
        let op = Op::from_name(&op_name)
            .ok_or_else(|| self.err_at(op_tok, ParseErrorKind::UnknownOp { name: op_name }))?;
        self.punct('(')?;
        let mut args = Vec::new();
        let mut refs: Vec<(String, Token)> = Vec::new();
        while !self.is_punct(')') {
            if !args.is_empty() {
                self.punct(',')?;
            }
            let (key, _) = self.ident("an argument name")?;
            self.punct('=')?;
            let arg = self.arg(&mut refs)?;
            args.push((key, arg));
        }
        self.punct(')')?;
        self.punct('[')?;
        let mut attrs = Vec::new();
        while !self.is_punct(']') {
            if !attrs.is_empty() {
                self.punct(',')?;
            }
            let (key, _) = self.ident("an attribute name")?;
            self.punct('=')?;
            attrs.push((key, self.literal()?));
        }
        self.punct(']')?;
        self.punct(';')?;
        let s = Statement {
            output,
            ty,
            op,
            args,
            attrs,
        };
        scope.add_statement(&s).map_err(|e| {
            let at = match &e {
                Error::UnknownVariable { name } => refs
                    .iter()
                    .find(|(r, _)| r == name)
                    .map_or(op_tok, |(_, t)| *t),
                Error::DuplicateVariable { .. } | Error::BadIdentifier { .. } => out_tok,
                Error::TypeMismatch { .. } => ty_tok,
                _ => op_tok,
            };
            self.semantic(at, e)
        })?;
        Ok(s)
    }

    /// A variable, a literal, or a tuple of variables.
    fn arg(&mut self, refs: &mut Vec<(String, Token)>) -> PResult<Arg> {
        if self.is_punct('(') {
            self.bump();
            let mut vs = Vec::new();
            while !self.is_punct(')') {
                if !vs.is_empty() {
                    self.punct(',')?;
                }
                let (v, t) = self.ident("a variable in the tuple")?;
                refs.push((v.clone(), t));
                vs.push(v);
            }
            self.punct(')')?;
            return Ok(Arg::Tuple(vs));
        }
        let t = self.peek();
        let next = self.peek_at(1).kind;
        if t.kind == Tok::Ident && next != Tok::Punct('(') && next != Tok::Punct('<') {
            self.bump();
            let v = self.text_of(t).to_string();
            refs.push((v.clone(), t));
            return Ok(Arg::Var(v));
        }
        Ok(Arg::Literal(self.literal()?))
    }

    /// `fp16` | `tensor<fp16, []>` | `tensor<fp16, [1, 2]>`.
    fn ty(&mut self) -> PResult<TensorType> {
        let (name, t) = self.ident("a type such as fp16 or tensor<fp16, [...]>")?;
        if name != "tensor" {
            let dtype = self.dtype(&name, t)?;
            return Ok(TensorType::scalar(dtype));
        }
        self.punct('<')?;
        let (dname, dt) = self.ident("a dtype")?;
        let dtype = self.dtype(&dname, dt)?;
        self.punct(',')?;
        self.punct('[')?;
        let mut shape = Vec::new();
        while !self.is_punct(']') {
            if !shape.is_empty() {
                self.punct(',')?;
            }
            if shape.len() == MAX_RANK {
                return Err(self.err_at(
                    self.peek(),
                    ParseErrorKind::TooLarge {
                        what: "tensor rank",
                        limit: MAX_RANK,
                    },
                ));
            }
            let nt = self.peek();
            if nt.kind != Tok::Number {
                return Err(self.expected("a dimension (a non-negative integer)"));
            }
            self.bump();
            let d = self.text_of(nt).parse::<usize>().map_err(|_| {
                self.err_at(
                    nt,
                    ParseErrorKind::BadNumber {
                        text: self.text_of(nt).into(),
                        ty: "dimension".into(),
                    },
                )
            })?;
            shape.push(d);
        }
        self.punct(']')?;
        self.punct('>')?;
        Ok(TensorType::new(dtype, shape))
    }

    fn dtype(&self, name: &str, t: Token) -> PResult<DType> {
        DType::from_name(name).ok_or_else(|| {
            self.err_at(
                t,
                ParseErrorKind::UnknownDType {
                    name: name.to_string(),
                },
            )
        })
    }

    /// `TYPE(value)`, `TYPE([v, ...])` or `TYPE(BLOBFILE(path=..., offset=...))`.
    fn literal(&mut self) -> PResult<Literal> {
        let ty_tok = self.peek();
        let ty = self.ty()?;
        self.punct('(')?;
        let t = self.peek();
        if t.kind == Tok::Ident && self.text_of(t) == "BLOBFILE" {
            self.bump();
            self.punct('(')?;
            self.keyword("path")?;
            self.punct('=')?;
            self.scalar_type_named("string")?;
            self.punct('(')?;
            let path = self.string()?;
            self.punct(')')?;
            self.punct(',')?;
            self.keyword("offset")?;
            self.punct('=')?;
            self.scalar_type_named("uint64")?;
            self.punct('(')?;
            let nt = self.peek();
            let offset = self.number_token()?.parse::<u64>().map_err(|_| {
                self.err_at(
                    nt,
                    ParseErrorKind::BadNumber {
                        text: self.text_of(nt).into(),
                        ty: "uint64".into(),
                    },
                )
            })?;
            self.punct(')')?;
            self.punct(')')?;
            self.punct(')')?;
            let lit = Literal::BlobFile { ty, path, offset };
            crate::verify::check_literal(&lit).map_err(|e| self.semantic(ty_tok, e))?;
            return Ok(lit);
        }
        let mut raw = Vec::new();
        let bracketed = self.is_punct('[');
        if bracketed {
            self.bump();
            while !self.is_punct(']') {
                if !raw.is_empty() {
                    self.punct(',')?;
                }
                raw.push(self.bump());
            }
            self.bump();
        } else {
            raw.push(self.bump());
        }
        self.punct(')')?;
        if bracketed == ty.is_scalar() {
            return Err(self.err_at(
                ty_tok,
                ParseErrorKind::Syntax {
                    expected: if ty.is_scalar() {
                        "a single value for a scalar type".into()
                    } else {
                        "a bracketed list `[...]` for a tensor type".into()
                    },
                    found: self.found(raw.first().copied().unwrap_or(ty_tok)),
                },
            ));
        }
        let data = self.values(ty.dtype, &raw)?;
        let lit = Literal::Value { ty, data };
        crate::verify::check_literal(&lit).map_err(|e| self.semantic(ty_tok, e))?;
        Ok(lit)
    }

    /// `string` / `uint64`, or their `tensor<T, []>` spelling (only inside BLOBFILE).
    fn scalar_type_named(&mut self, want: &str) -> PResult<()> {
        let (name, _) = self.ident(&format!("`{want}`"))?;
        if name == want {
            return Ok(());
        }
        if name != "tensor" {
            self.i -= 1;
            return Err(self.expected(&format!("`{want}`")));
        }
        self.punct('<')?;
        self.keyword(want)?;
        self.punct(',')?;
        self.punct('[')?;
        self.punct(']')?;
        self.punct('>')
    }

    fn number_token(&mut self) -> PResult<&'t str> {
        let t = self.peek();
        if t.kind != Tok::Number {
            return Err(self.expected("a number"));
        }
        self.bump();
        Ok(self.text_of(t))
    }

    fn values(&self, dtype: DType, raw: &[Token]) -> PResult<TensorData> {
        let bad = |t: Token| {
            self.err_at(
                t,
                ParseErrorKind::BadNumber {
                    text: self.text_of(t).chars().take(24).collect(),
                    ty: dtype.name().into(),
                },
            )
        };
        let want = |t: Token, kind: Tok, what: &str| -> PResult<&'t str> {
            if t.kind == kind {
                Ok(self.text_of(t))
            } else {
                Err(self.err_at(
                    t,
                    ParseErrorKind::Syntax {
                        expected: what.into(),
                        found: self.found(t),
                    },
                ))
            }
        };
        Ok(match dtype {
            DType::Fp16 | DType::Fp32 => {
                let mut v = Vec::with_capacity(raw.len());
                for &t in raw {
                    let x = parse_float(want(t, Tok::Number, "a number")?).ok_or_else(|| bad(t))?;
                    v.push(x);
                }
                if dtype == DType::Fp16 {
                    let h: Vec<f16> = v.iter().map(|&x| f16::from_f64(x)).collect();
                    if let Some(i) = h.iter().position(|x| !x.is_finite()) {
                        return Err(bad(raw[i]));
                    }
                    TensorData::Fp16(h)
                } else {
                    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                    if let Some(i) = f.iter().position(|x| !x.is_finite()) {
                        return Err(bad(raw[i]));
                    }
                    TensorData::Fp32(f)
                }
            }
            DType::Int8 | DType::Int32 => {
                let mut v = Vec::with_capacity(raw.len());
                for &t in raw {
                    let x = want(t, Tok::Number, "an integer")?
                        .parse::<i64>()
                        .map_err(|_| bad(t))?;
                    v.push(x);
                }
                if dtype == DType::Int8 {
                    TensorData::Int8(
                        raw.iter()
                            .zip(&v)
                            .map(|(&t, &x)| i8::try_from(x).map_err(|_| bad(t)))
                            .collect::<PResult<_>>()?,
                    )
                } else {
                    TensorData::Int32(
                        raw.iter()
                            .zip(&v)
                            .map(|(&t, &x)| i32::try_from(x).map_err(|_| bad(t)))
                            .collect::<PResult<_>>()?,
                    )
                }
            }
            DType::Bool => TensorData::Bool(
                raw.iter()
                    .map(|&t| match (t.kind, self.text_of(t)) {
                        (Tok::Ident, "true") => Ok(true),
                        (Tok::Ident, "false") => Ok(false),
                        _ => Err(self.err_at(
                            t,
                            ParseErrorKind::Syntax {
                                expected: "`true` or `false`".into(),
                                found: self.found(t),
                            },
                        )),
                    })
                    .collect::<PResult<_>>()?,
            ),
            DType::String => {
                let mut v = Vec::with_capacity(raw.len());
                for &t in raw {
                    want(t, Tok::Str, "a string in double quotes")?;
                    let mut sub = Parser {
                        text: self.text,
                        tokens: vec![
                            t,
                            Token {
                                kind: Tok::Eof,
                                start: t.end,
                                end: t.end,
                            },
                        ],
                        i: 0,
                    };
                    v.push(sub.string()?);
                }
                TensorData::String(v)
            }
        })
    }
}

/// Parses a decimal (`0.125000`, `1e-05`, `-65504`) or C hex float (`0x1p-3`, `-0x1.8p+1`).
pub fn parse_float(s: &str) -> Option<f64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let v = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        parse_hex_float(hex)?
    } else {
        if body.is_empty()
            || !body
                .bytes()
                .all(|b| b.is_ascii_digit() || b"eE.+-".contains(&b))
        {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// The part of a hex float after `0x`: hex digits, optional `.` and hex fraction, optional
/// `p`/`P` and a decimal binary exponent.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = match s.find(['p', 'P']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars() {
        v = v * 16.0 + c.to_digit(16)? as f64;
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        v += c.to_digit(16)? as f64 * scale;
        scale /= 16.0;
    }
    Some(v * 2f64.powi(exp.clamp(-2000, 2000)))
}
