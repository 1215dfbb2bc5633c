//! Errors of the CPU executor. Errors about an op name the op (its `name` attribute or its first
//! result) and its source position, so a user can find it in the MIL text.

use malus_mil::{Operation, Span};

/// What went wrong with an op, for callers that want to react to the kind rather than the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpErrorKind {
    /// The op type has no CPU kernel (e.g. `lstm`, `gather`).
    UnsupportedOp,
    /// The op is known but not for this dtype or this argument combination.
    Unsupported,
    /// A dimension is `?` and no input shape resolves it.
    UnknownDim,
    /// A `BLOBFILE` constant could not be read from the weights.
    Blob,
    /// The op is malformed: a bad argument, a failed type check, a non-constant parameter.
    Invalid,
}

/// Every error `compile` or a kernel method can return.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("{span}: {op} `{name}`: {msg}")]
    Op {
        op: String,
        name: String,
        span: Span,
        kind: OpErrorKind,
        msg: String,
    },
    #[error("no function `{name}` in the program (functions: {})", available.join(", "))]
    NoFunction { name: String, available: Vec<String> },
    #[error("{span}: function parameter or result `{name}`: {msg}")]
    Signature { name: String, span: Span, msg: String },
    #[error("unknown {what} `{name}` (known: {})", known.join(", "))]
    UnknownName {
        what: &'static str,
        name: String,
        known: Vec<String>,
    },
    #[error("cannot allocate a {bytes}-byte buffer for the kernel")]
    OutOfMemory { bytes: usize },
    #[error("output `{name}` has not been computed yet: run the kernel first")]
    NotRun { name: String },
    #[error("{got} {what} buffers given, the kernel has {expected} {what}s")]
    BufferCount {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("`{name}`: buffer holds {got} {unit}, the tensor needs {expected}")]
    Length {
        name: String,
        expected: usize,
        got: usize,
        unit: &'static str,
    },
}

impl CpuError {
    /// An error about `op`, named by its `name` attribute or else its first result.
    pub(crate) fn op(op: &Operation, kind: OpErrorKind, msg: impl Into<String>) -> CpuError {
        CpuError::Op {
            op: op.op.clone(),
            name: op_label(op).to_string(),
            span: op.span,
            kind,
            msg: msg.into(),
        }
    }

    /// The error kind for op errors.
    pub fn kind(&self) -> Option<OpErrorKind> {
        match self {
            CpuError::Op { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// The name an error uses for an op.
pub(crate) fn op_label(op: &Operation) -> &str {
    op.name_attr()
        .or_else(|| op.outputs.first().map(|(n, _)| n.as_str()))
        .unwrap_or("")
}

pub type Result<T, E = CpuError> = std::result::Result<T, E>;
