//! malus-mil: the MIL language (Core ML's Model Intermediate Language) as malus uses it.
//!
//! - [`types`], [`value`], [`ir`]: the typed program representation.
//! - [`parse`] and [`print`]: text in the `program(1.0)` and `program(1.3)` spellings.
//! - [`builder::FunctionBuilder`]: write programs in Rust with type and shape inference.
//! - [`validate()`]: check a parsed program with the same inference.
//! - [`blob::Weights`]: Core ML weight blob files.
//! - [`lint`]: the published ANE restrictions, per chip family.

pub mod blob;
pub mod builder;
pub mod error;
pub mod infer;
pub mod ir;
mod lexer;
pub mod lint;
pub mod parser;
pub mod printer;
pub mod shapes;
pub mod types;
pub mod validate;
pub mod value;

pub use blob::Weights;
pub use builder::{ConvParams, FunctionBuilder, Var};
pub use error::{Diagnostic, InferError, ParseError, Severity};
pub use ir::{Function, Operation, Program, Span};
pub use parser::parse;
pub use printer::{Spelling, print, print_with};
pub use types::{DType, Dim, Type};
pub use validate::validate;
pub use value::{Lit, Literal, Value};
