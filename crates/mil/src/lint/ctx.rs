//! Lookups over one function for the rules: types, producing ops, constant values.

use std::collections::HashMap;

use crate::ir::Operation;
use crate::types::Type;
use crate::value::{Lit, Value};

/// Lookups over one function.
pub(super) struct Ctx<'a> {
    pub(super) types: HashMap<&'a str, &'a Type>,
    pub(super) producers: HashMap<&'a str, &'a Operation>,
}

impl<'a> Ctx<'a> {
    pub(super) fn type_of(&self, v: &'a Value) -> Option<&'a Type> {
        match v {
            Value::Var(n) => self.types.get(n.as_str()).copied(),
            Value::Literal(l) => Some(&l.ty),
            Value::Tuple(_) => None,
        }
    }

    /// The literal behind a value: inline, or the `val` of the const op that defines it.
    pub(super) fn literal(&self, v: Option<&'a Value>) -> Option<&'a crate::value::Literal> {
        match v? {
            Value::Literal(l) => Some(l),
            Value::Var(n) => self.producers.get(n.as_str())?.const_value(),
            Value::Tuple(_) => None,
        }
    }

    pub(super) fn literal_ints(&self, v: Option<&'a Value>) -> Option<Vec<i64>> {
        self.literal(v)?.to_i64s()
    }

    pub(super) fn literal_int(&self, v: Option<&'a Value>) -> Option<i64> {
        self.literal(v)?.as_scalar_i64()
    }

    pub(super) fn literal_f64s(&self, v: Option<&'a Value>) -> Option<Vec<f64>> {
        self.literal(v)?.to_f64s()
    }

    pub(super) fn literal_str(&self, v: Option<&'a Value>) -> Option<&'a str> {
        match &self.literal(v)?.lit {
            Lit::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether `var` is a reduction's result, possibly through up to `depth` elementwise ops
    /// with a constant other operand (e.g. `reduce_sum → mul(1/D) → add(eps)`).
    pub(super) fn follows_reduce(&self, var: &str, depth: usize) -> bool {
        let Some(op) = self.producers.get(var) else {
            return false;
        };
        if op.op.starts_with("reduce_") {
            return true;
        }
        if depth == 0 || !matches!(op.op.as_str(), "add" | "sub" | "mul" | "real_div") {
            return false;
        }
        let (x, y) = (op.arg("x"), op.arg("y"));
        let is_const = |v: Option<&'a Value>| self.literal(v).is_some();
        let next = match (x.and_then(Value::as_var), y.and_then(Value::as_var)) {
            (Some(a), _) if is_const(y) => a,
            (_, Some(b)) if is_const(x) => b,
            _ => return false,
        };
        self.follows_reduce(next, depth - 1)
    }
}
