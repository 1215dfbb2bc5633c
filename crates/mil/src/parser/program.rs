//! Program structure: `program`, functions, operations, attribute blocks, named arguments.

use super::Parser;
use crate::error::ParseError;
use crate::ir::{Function, Named, Operation, Program};
use crate::lexer::Tok;

impl Parser {
    pub(super) fn program(&mut self) -> Result<Program, ParseError> {
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
    pub(super) fn named_list(&mut self, close: char, depth: usize) -> Result<Vec<Named>, ParseError> {
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
}
