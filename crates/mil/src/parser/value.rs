//! Values: variables, tuples and typed literals (including `BLOBFILE`).

use super::number::parse_number;
use super::{MAX_DEPTH, Parser};
use crate::error::ParseError;
use crate::lexer::Tok;
use crate::types::DType;
use crate::value::{Lit, Literal, Value};

impl Parser {
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

    pub(super) fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
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
}
