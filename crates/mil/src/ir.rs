//! The program IR: a program holds functions, a function holds typed parameters, a body of
//! operations and a return list.

use crate::types::Type;
use crate::value::{Literal, Value};

/// A source position (1-based). Positions never take part in equality, so a parsed program
/// compares equal to the same program built in code.
#[derive(Clone, Copy, Debug, Default)]
pub struct Span {
    pub line: u32,
    pub col: u32,
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A named attribute or argument: `name = value`.
pub type Named = (String, Value);

/// One operation: `T1 a, T2 b = op(arg = value, …)[attr = value, …];`
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    /// Results with their declared types (several for `split`, `lstm`, …).
    pub outputs: Vec<(String, Type)>,
    /// The op type, e.g. `matmul`.
    pub op: String,
    /// Arguments inside `(…)`, in written order.
    pub inputs: Vec<Named>,
    /// Attributes inside `[…]`, in written order (`name`, and `val` for `const`).
    pub attrs: Vec<Named>,
    pub span: Span,
}

impl Operation {
    /// The argument with this name, whether written in `(…)` or in the attribute block
    /// (`const` and `constexpr_*` ops put their operands in the attribute block).
    pub fn arg(&self, name: &str) -> Option<&Value> {
        self.inputs
            .iter()
            .chain(&self.attrs)
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The op's `name` attribute, if any.
    pub fn name_attr(&self) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == "name")
            .and_then(|(_, v)| v.as_literal())
            .and_then(|l| l.as_str())
    }

    /// The literal value of a `const` op.
    pub fn const_value(&self) -> Option<&Literal> {
        if self.op == "const" {
            self.arg("val").and_then(|v| v.as_literal())
        } else {
            None
        }
    }

    /// All named operands: inputs and attributes except `name`.
    pub fn operands(&self) -> impl Iterator<Item = &Named> {
        self.inputs
            .iter()
            .chain(self.attrs.iter().filter(|(n, _)| n != "name"))
    }
}

/// `func NAME<OPSET>(params) [attrs] { body } -> (returns);`
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    /// Opset, e.g. `ios18`.
    pub opset: String,
    pub inputs: Vec<(String, Type)>,
    pub attrs: Vec<Named>,
    pub body: Vec<Operation>,
    pub outputs: Vec<String>,
    pub span: Span,
}

impl Function {
    /// Finds the op that defines a variable.
    pub fn producer(&self, var: &str) -> Option<&Operation> {
        self.body
            .iter()
            .find(|op| op.outputs.iter().any(|(n, _)| n == var))
    }

    /// The declared type of a parameter or op result.
    pub fn var_type(&self, var: &str) -> Option<&Type> {
        self.inputs
            .iter()
            .find(|(n, _)| n == var)
            .map(|(_, t)| t)
            .or_else(|| {
                self.body
                    .iter()
                    .flat_map(|op| op.outputs.iter())
                    .find(|(n, _)| n == var)
                    .map(|(_, t)| t)
            })
    }

    /// Types of the returned variables, in return order.
    pub fn output_types(&self) -> Vec<Option<&Type>> {
        self.outputs.iter().map(|o| self.var_type(o)).collect()
    }
}

/// A whole MIL program.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// The version in `program(…)`, e.g. `1.3`.
    pub version: String,
    pub attrs: Vec<Named>,
    pub functions: Vec<Function>,
}

impl Program {
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// `main`, or the only function when there is exactly one.
    pub fn main(&self) -> Option<&Function> {
        self.function("main").or(match self.functions.as_slice() {
            [f] => Some(f),
            _ => None,
        })
    }
}
