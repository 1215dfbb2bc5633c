//! Tokenizer for MIL text. Tokens carry their source position for diagnostics.

use crate::error::ParseError;
use crate::ir::Span;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    /// A number as written (decimal, C99 hex float, possibly signed).
    Number(String),
    Str(String),
    Punct(char),
    /// `->`
    Arrow,
    Eof,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// Splits MIL text into tokens. `//` line comments are skipped.
pub fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    let advance = |i: &mut usize, line: &mut u32, col: &mut u32, c: char| {
        *i += 1;
        if c == '\n' {
            *line += 1;
            *col = 1;
        } else {
            *col += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let span = Span { line, col };
        if c.is_whitespace() {
            advance(&mut i, &mut line, &mut col, c);
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                let ch = chars[i];
                advance(&mut i, &mut line, &mut col, ch);
            }
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'>') {
            out.push(Token {
                tok: Tok::Arrow,
                span,
            });
            advance(&mut i, &mut line, &mut col, c);
            advance(&mut i, &mut line, &mut col, '>');
            continue;
        }
        let starts_number = c.is_ascii_digit()
            || ((c == '-' || c == '+' || c == '.')
                && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit() || *n == '.'));
        if starts_number {
            let start = i;
            let hex = {
                let j = if c == '-' || c == '+' { i + 1 } else { i };
                chars.get(j) == Some(&'0') && matches!(chars.get(j + 1), Some('x' | 'X'))
            };
            advance(&mut i, &mut line, &mut col, c);
            while i < chars.len() {
                let d = chars[i];
                let prev = chars[i - 1];
                let ok = d.is_ascii_alphanumeric()
                    || d == '.'
                    || ((d == '-' || d == '+')
                        && (if hex {
                            matches!(prev, 'p' | 'P')
                        } else {
                            matches!(prev, 'e' | 'E')
                        }));
                if !ok {
                    break;
                }
                advance(&mut i, &mut line, &mut col, d);
            }
            out.push(Token {
                tok: Tok::Number(chars[start..i].iter().collect()),
                span,
            });
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '@' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '@' | '.')) {
                let ch = chars[i];
                advance(&mut i, &mut line, &mut col, ch);
            }
            out.push(Token {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                span,
            });
            continue;
        }
        if c == '"' {
            advance(&mut i, &mut line, &mut col, c);
            let mut s = String::new();
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err(ParseError {
                        span,
                        msg: "unterminated string literal".into(),
                    });
                };
                advance(&mut i, &mut line, &mut col, d);
                match d {
                    '"' => break,
                    '\\' => {
                        let Some(&e) = chars.get(i) else {
                            return Err(ParseError {
                                span,
                                msg: "unterminated string literal".into(),
                            });
                        };
                        advance(&mut i, &mut line, &mut col, e);
                        s.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            '0' => '\0',
                            other => other,
                        });
                    }
                    _ => s.push(d),
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                span,
            });
            continue;
        }
        if "()[]{}<>,=;?-".contains(c) {
            out.push(Token {
                tok: Tok::Punct(c),
                span,
            });
            advance(&mut i, &mut line, &mut col, c);
            continue;
        }
        return Err(ParseError {
            span,
            msg: format!("unexpected character {c:?}"),
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        span: Span { line, col },
    });
    Ok(out)
}
