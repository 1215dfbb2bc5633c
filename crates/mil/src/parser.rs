//! Recursive-descent parser for MIL text (both the `program(1.0)` and `program(1.3)` spellings).

use crate::error::ParseError;
use crate::ir::{Function, Named, Operation, Program, Span};
use crate::lexer::{Tok, Token, tokenize};
use crate::types::{DType, Dim, Type};
use crate::value::{Lit, Literal, Value};

/// Parses a whole program.
pub fn parse(src: &str) -> Result<Program, ParseError> {
    let toks = tokenize(src)?;
    let mut p = Parser { toks, pos: 0 };
    let prog = p.program()?;
    p.expect_eof()?;
    Ok(prog)
}

/// Parses a single type, e.g. `tensor<fp16, [1, 64, 1, 256]>`.
pub fn parse_type(src: &str) -> Result<Type, ParseError> {
    let toks = tokenize(src)?;
    let mut p = Parser { toks, pos: 0 };
    let t = p.ty()?;
    p.expect_eof()?;
    Ok(t)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

/// Nesting limit: deeper literal or type nesting is refused rather than overflowing the stack.
const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.pos + k).min(self.toks.len() - 1)].tok
    }

    fn span(&self) -> Span {
        self.toks[self.pos].span
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            span: self.span(),
            msg: msg.into(),
        })
    }

    fn describe(t: &Tok) -> String {
        match t {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Number(s) => format!("number `{s}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::Arrow => "`->`".into(),
            Tok::Eof => "end of input".into(),
        }
    }

    fn is_punct(&self, c: char) -> bool {
        *self.peek() == Tok::Punct(c)
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if self.is_punct(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, c: char) -> Result<(), ParseError> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            self.err(format!("expected `{c}`, found {}", Self::describe(self.peek())))
        }
    }

    fn expect_eof(&self) -> Result<(), ParseError> {
        match self.peek() {
            Tok::Eof => Ok(()),
            t => self.err(format!("expected end of input, found {}", Self::describe(t))),
        }
    }

    fn ident(&mut self) -> Result<String, ParseError> {
        match self.peek().clone() {
            Tok::Ident(s) => {
                self.bump();
                Ok(s)
            }
            t => self.err(format!("expected a name, found {}", Self::describe(&t))),
        }
    }

    fn keyword(&mut self, kw: &str) -> Result<(), ParseError> {
        match self.peek() {
            Tok::Ident(s) if s == kw => {
                self.bump();
                Ok(())
            }
            t => self.err(format!("expected `{kw}`, found {}", Self::describe(t))),
        }
    }

    /// `item (, item)*`: one or more comma-separated items.
    fn separated<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        let mut out = vec![item(self)?];
        while self.eat_punct(',') {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// Zero or more comma-separated items before `close` (which is not consumed).
    fn list_until<T>(
        &mut self,
        close: char,
        item: impl FnMut(&mut Self) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        if self.is_punct(close) {
            Ok(Vec::new())
        } else {
            self.separated(item)
        }
    }

    /// `TYPE name`, as in parameters and op results.
    fn typed_name(&mut self) -> Result<(String, Type), ParseError> {
        let ty = self.ty()?;
        Ok((self.ident()?, ty))
    }

    fn program(&mut self) -> Result<Program, ParseError> {
        self.keyword("program")?;
        self.expect_punct('(')?;
        let version = match self.bump().tok {
            Tok::Number(n) => n,
            t => {
                return self.err(format!(
                    "expected a program version, found {}",
                    Self::describe(&t)
                ));
            }
        };
        self.expect_punct(')')?;
        let attrs = self.opt_attr_block()?;
        self.expect_punct('{')?;
        let mut functions = Vec::new();
        while !self.is_punct('}') {
            functions.push(self.function()?);
        }
        self.expect_punct('}')?;
        Ok(Program {
            version,
            attrs,
            functions,
        })
    }

    fn function(&mut self) -> Result<Function, ParseError> {
        let span = self.span();
        self.keyword("func")?;
        let name = self.ident()?;
        self.expect_punct('<')?;
        let opset = self.ident()?;
        self.expect_punct('>')?;
        self.expect_punct('(')?;
        let inputs = self.list_until(')', Self::typed_name)?;
        self.expect_punct(')')?;
        let attrs = self.opt_attr_block()?;
        self.expect_punct('{')?;
        let mut body = Vec::new();
        while !self.is_punct('}') {
            body.push(self.operation()?);
        }
        self.expect_punct('}')?;
        if *self.peek() != Tok::Arrow {
            return self.err(format!(
                "expected `->` and the function's return list, found {}",
                Self::describe(self.peek())
            ));
        }
        self.bump();
        self.expect_punct('(')?;
        let outputs = self.list_until(')', Self::ident)?;
        self.expect_punct(')')?;
        self.expect_punct(';')?;
        Ok(Function {
            name,
            opset,
            inputs,
            attrs,
            body,
            outputs,
            span,
        })
    }

    fn operation(&mut self) -> Result<Operation, ParseError> {
        let span = self.span();
        let outputs = self.separated(Self::typed_name)?;
        self.expect_punct('=')?;
        let op = self.ident()?;
        self.expect_punct('(')?;
        let inputs = self.named_list(')', 0)?;
        self.expect_punct(')')?;
        let attrs = self.opt_attr_block()?;
        self.expect_punct(';')?;
        Ok(Operation {
            outputs,
            op,
            inputs,
            attrs,
            span,
        })
    }

    /// An attribute block if one follows, else no attributes.
    fn opt_attr_block(&mut self) -> Result<Vec<Named>, ParseError> {
        if self.is_punct('[') {
            self.attr_block()
        } else {
            Ok(Vec::new())
        }
    }

    fn attr_block(&mut self) -> Result<Vec<Named>, ParseError> {
        self.expect_punct('[')?;
        let a = self.named_list(']', 0)?;
        self.expect_punct(']')?;
        Ok(a)
    }

    /// `name = value, …` up to (not including) the closing bracket; `depth` is the nesting of the
    /// list itself (BLOBFILE arguments nest inside literals).
    fn named_list(&mut self, close: char, depth: usize) -> Result<Vec<Named>, ParseError> {
        let mut out: Vec<Named> = Vec::new();
        if self.is_punct(close) {
            return Ok(out);
        }
        let mut seen = std::collections::HashSet::new();
        loop {
            let span = self.span();
            let n = self.ident()?;
            if !seen.insert(n.clone()) {
                return Err(ParseError {
                    span,
                    msg: format!("argument `{n}` given twice"),
                });
            }
            self.expect_punct('=')?;
            let v = self.value(depth)?;
            out.push((n, v));
            if !self.eat_punct(',') {
                break;
            }
        }
        Ok(out)
    }

    fn starts_type(&self) -> bool {
        match self.peek() {
            Tok::Ident(s) => {
                let next = self.peek_at(1);
                let type_word = DType::from_name(s).is_some()
                    || matches!(s.as_str(), "tensor" | "tuple" | "dict" | "list");
                type_word && (*next == Tok::Punct('(') || *next == Tok::Punct('<'))
            }
            _ => false,
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        if depth > MAX_DEPTH {
            return self.err("values nested too deeply");
        }
        if self.starts_type() {
            return Ok(Value::Literal(self.typed_literal(depth)?));
        }
        if self.eat_punct('(') {
            let items = self.list_until(')', |p| p.value(depth + 1))?;
            self.expect_punct(')')?;
            return Ok(Value::Tuple(items));
        }
        match self.peek().clone() {
            Tok::Ident(s) => {
                self.bump();
                Ok(Value::Var(s))
            }
            t => self.err(format!(
                "expected a variable, a typed literal or a tuple, found {}",
                Self::describe(&t)
            )),
        }
    }

    fn typed_literal(&mut self, depth: usize) -> Result<Literal, ParseError> {
        let ty = self.ty()?;
        self.expect_punct('(')?;
        let lit = if matches!(self.peek(), Tok::Ident(s) if s == "BLOBFILE") {
            self.blobfile(depth)?
        } else {
            self.lit(depth + 1)?
        };
        self.expect_punct(')')?;
        Ok(Literal { ty, lit })
    }

    fn blobfile(&mut self, depth: usize) -> Result<Lit, ParseError> {
        self.keyword("BLOBFILE")?;
        self.expect_punct('(')?;
        let args = self.named_list(')', depth + 1)?;
        let span = self.span();
        self.expect_punct(')')?;
        let get = |n: &str| args.iter().find(|(k, _)| k == n).map(|(_, v)| v);
        let path = get("path")
            .and_then(|v| v.as_literal())
            .and_then(|l| l.as_str())
            .map(str::to_string);
        let offset = get("offset")
            .and_then(|v| v.as_literal())
            .and_then(|l| match l.lit {
                Lit::Int(i) => u64::try_from(i).ok(),
                _ => None,
            });
        match (path, offset, args.len()) {
            (Some(path), Some(offset), 2) => Ok(Lit::Blob { path, offset }),
            _ => Err(ParseError {
                span,
                msg: "BLOBFILE needs exactly `path = string(…)` and `offset = uint64(…)`".into(),
            }),
        }
    }

    fn lit(&mut self, depth: usize) -> Result<Lit, ParseError> {
        if depth > MAX_DEPTH {
            return self.err("literal nested too deeply");
        }
        let span = self.span();
        match self.peek().clone() {
            Tok::Number(n) => {
                self.bump();
                parse_number(&n).ok_or(ParseError {
                    span,
                    msg: format!("malformed number `{n}`"),
                })
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Lit::Str(s))
            }
            Tok::Ident(s) => {
                self.bump();
                match s.as_str() {
                    "true" => Ok(Lit::Bool(true)),
                    "false" => Ok(Lit::Bool(false)),
                    "inf" => Ok(Lit::Float(f64::INFINITY)),
                    "nan" => Ok(Lit::Float(f64::NAN)),
                    _ => Err(ParseError {
                        span,
                        msg: format!("expected a literal value, found `{s}`"),
                    }),
                }
            }
            Tok::Punct('-') => {
                self.bump();
                match self.peek() {
                    Tok::Ident(s) if s == "inf" => {
                        self.bump();
                        Ok(Lit::Float(f64::NEG_INFINITY))
                    }
                    Tok::Ident(s) if s == "nan" => {
                        self.bump();
                        Ok(Lit::Float(-f64::NAN))
                    }
                    t => self.err(format!(
                        "expected a number after `-`, found {}",
                        Self::describe(t)
                    )),
                }
            }
            Tok::Punct('[') => {
                self.bump();
                let items = self.lit_list(']', depth)?;
                Ok(Lit::List(items))
            }
            Tok::Punct('(') => {
                self.bump();
                let items = self.lit_list(')', depth)?;
                Ok(Lit::Tuple(items))
            }
            Tok::Punct('{') => {
                self.bump();
                let mut entries = Vec::new();
                if !self.is_punct('}') {
                    loop {
                        self.expect_punct('{')?;
                        let k = self.lit(depth + 1)?;
                        self.expect_punct(',')?;
                        let v = self.lit(depth + 1)?;
                        self.expect_punct('}')?;
                        entries.push((k, v));
                        if !self.eat_punct(',') {
                            break;
                        }
                    }
                }
                self.expect_punct('}')?;
                Ok(Lit::Dict(entries))
            }
            t => self.err(format!("expected a literal value, found {}", Self::describe(&t))),
        }
    }

    fn lit_list(&mut self, close: char, depth: usize) -> Result<Vec<Lit>, ParseError> {
        let items = self.list_until(close, |p| p.lit(depth + 1))?;
        self.expect_punct(close)?;
        Ok(items)
    }

    fn ty(&mut self) -> Result<Type, ParseError> {
        self.ty_depth(0)
    }

    fn ty_depth(&mut self, depth: usize) -> Result<Type, ParseError> {
        if depth > MAX_DEPTH {
            return self.err("type nested too deeply");
        }
        let span = self.span();
        let word = self.ident()?;
        if let Some(d) = DType::from_name(&word) {
            return Ok(Type::scalar(d));
        }
        match word.as_str() {
            "tensor" => {
                self.expect_punct('<')?;
                let dspan = self.span();
                let dn = self.ident()?;
                let dtype = DType::from_name(&dn).ok_or(ParseError {
                    span: dspan,
                    msg: format!("unknown dtype `{dn}`"),
                })?;
                self.expect_punct(',')?;
                self.expect_punct('[')?;
                let shape = self.list_until(']', Self::dim)?;
                self.expect_punct(']')?;
                self.expect_punct('>')?;
                Ok(Type::Tensor { dtype, shape })
            }
            "tuple" => {
                self.expect_punct('<')?;
                let items = self.list_until('>', |p| p.ty_depth(depth + 1))?;
                self.expect_punct('>')?;
                Ok(Type::Tuple(items))
            }
            "dict" => {
                self.expect_punct('<')?;
                let k = self.ty_depth(depth + 1)?;
                self.expect_punct(',')?;
                let v = self.ty_depth(depth + 1)?;
                self.expect_punct('>')?;
                Ok(Type::Dict(Box::new(k), Box::new(v)))
            }
            "list" => {
                self.expect_punct('<')?;
                let e = self.ty_depth(depth + 1)?;
                self.expect_punct(',')?;
                let n = self.dim()?;
                self.expect_punct('>')?;
                Ok(Type::List(Box::new(e), n))
            }
            _ => Err(ParseError {
                span,
                msg: format!("expected a type, found `{word}`"),
            }),
        }
    }

    fn dim(&mut self) -> Result<Dim, ParseError> {
        let span = self.span();
        match self.bump().tok {
            Tok::Punct('?') => Ok(Dim::Unknown),
            Tok::Number(n) => n
                .parse::<usize>()
                .ok()
                .filter(|&v| v <= u32::MAX as usize)
                .map(Dim::Known)
                .ok_or(ParseError {
                    span,
                    msg: format!("a dimension must be a non-negative integer or `?`, found `{n}`"),
                }),
            t => Err(ParseError {
                span,
                msg: format!("expected a dimension, found {}", Self::describe(&t)),
            }),
        }
    }
}

/// Parses a decimal integer, a decimal float or a C99 hex float (`0x1.8p-3`).
pub fn parse_number(s: &str) -> Option<Lit> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let sign = if neg { -1.0 } else { 1.0 };
    // One sign at most, and only in front (the integer and float parsers below take their own).
    if body.starts_with(['-', '+']) {
        return None;
    }
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        if !hex.contains(['p', 'P', '.']) {
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let v = i128::from_str_radix(hex, 16).ok()?;
            return Some(Lit::Int(if neg { -v } else { v }));
        }
        return parse_hex_float(hex).map(|v| Lit::Float(sign * v));
    }
    if body.bytes().all(|b| b.is_ascii_digit()) && !body.is_empty() {
        let v: i128 = body.parse().ok()?;
        return Some(Lit::Int(if neg { -v } else { v }));
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
    {
        return None;
    }
    body.parse::<f64>().ok().map(|v| Lit::Float(sign * v))
}

/// Hex-float digits after `0x`: `h[.h*]p[+-]d+` (the exponent is optional).
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = match s.find(['p', 'P']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (int_part, frac_part) = mant.split_once('.').unwrap_or((mant, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut m: u128 = 0;
    let mut shift: i32 = 0;
    for (k, c) in int_part.chars().chain(frac_part.chars()).enumerate() {
        let d = c.to_digit(16)? as u128;
        if m >> 120 != 0 {
            // Further digits cannot change an f64; count integer digits only.
            if k < int_part.len() {
                shift += 4;
            }
            continue;
        }
        m = m * 16 + d;
        if k >= int_part.len() {
            shift -= 4;
        }
    }
    Some(scale_pow2(m as f64, exp.checked_add(shift)?))
}

/// `x · 2^e` without intermediate overflow or underflow of the power.
fn scale_pow2(mut x: f64, mut e: i32) -> f64 {
    while e > 1000 {
        x *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        x *= 2f64.powi(-1000);
        e += 1000;
    }
    x * 2f64.powi(e)
}
