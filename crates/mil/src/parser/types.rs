//! Types and dimensions: `fp16`, `tensor<…>`, `tuple<…>`, `dict<…>`, `list<…>`.

use super::{MAX_DEPTH, Parser};
use crate::error::ParseError;
use crate::lexer::Tok;
use crate::types::{DType, Dim, Type};

impl Parser {
    pub(super) fn ty(&mut self) -> Result<Type, ParseError> {
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
