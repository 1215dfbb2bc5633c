//! Recursive-descent parser for MIL text (both the `program(1.0)` and `program(1.3)` spellings).

mod number;
mod program;
mod types;
mod value;

use crate::error::ParseError;
use crate::ir::{Program, Span};
use crate::lexer::{Tok, Token, tokenize};
use crate::types::Type;

pub use number::parse_number;

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
}
