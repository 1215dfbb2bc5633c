//! Errors of the MIL crate. Every error names where it happened: a source position for text,
//! an op and argument for inference, a file and offset for blobs.

use crate::ir::Span;

/// An op that cannot be typed: names the op, the argument at fault and what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{op}{}: {msg}", arg.as_ref().map(|a| format!(": argument `{a}`")).unwrap_or_default())]
pub struct InferError {
    pub op: String,
    pub arg: Option<String>,
    pub msg: String,
}

impl InferError {
    pub fn new(op: &str, arg: Option<&str>, msg: impl Into<String>) -> InferError {
        InferError {
            op: op.to_string(),
            arg: arg.map(str::to_string),
            msg: msg.into(),
        }
    }
}

/// A syntax error with its position.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{span}: {msg}")]
pub struct ParseError {
    pub span: Span,
    pub msg: String,
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

/// A positioned finding of validation or lint.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    /// Short rule id, e.g. `undefined-var` or `ane-width-align`.
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {sev}[{}]: {}", self.span, self.code, self.message)
    }
}

/// Errors reading or writing weight blob files.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{file}: {msg}")]
    Corrupt { file: String, msg: String },
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}
