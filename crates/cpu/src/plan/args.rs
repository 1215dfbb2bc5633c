//! Constant parameters of an op (axes, permutations, flags, modes): read from inline literals or
//! from `const` ops, with errors that name the op.

use std::collections::HashMap;

use malus_mil::shapes::norm_axis;
use malus_mil::{Literal, Operation, Value};

use crate::error::{CpuError, OpErrorKind, Result};

pub(crate) struct Args<'a> {
    op: &'a Operation,
    lits: &'a HashMap<String, Literal>,
}

impl<'a> Args<'a> {
    pub(crate) fn new(op: &'a Operation, lits: &'a HashMap<String, Literal>) -> Args<'a> {
        Args { op, lits }
    }

    fn err<T>(&self, msg: String) -> Result<T> {
        Err(CpuError::op(self.op, OpErrorKind::Invalid, msg))
    }

    /// The constant value of an argument; `None` when absent, an error when not constant.
    pub(crate) fn lit(&self, name: &str) -> Result<Option<&'a Literal>> {
        match self.op.arg(name) {
            None => Ok(None),
            Some(Value::Literal(l)) => Ok(Some(l)),
            Some(Value::Var(v)) => match self.lits.get(v) {
                Some(l) => Ok(Some(l)),
                None => Err(CpuError::op(
                    self.op,
                    OpErrorKind::Unsupported,
                    format!("argument `{name}` must be a constant (it is computed by `{v}`)"),
                )),
            },
            Some(Value::Tuple(_)) => self.err(format!("argument `{name}` is a tuple")),
        }
    }

    pub(crate) fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.lit(name)? {
            None => Ok(None),
            Some(l) => l
                .to_i64s()
                .map(Some)
                .map_or_else(|| self.err(format!("`{name}` must be integers")), Ok),
        }
    }

    pub(crate) fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.ints(name)?.as_deref() {
            None => Ok(default),
            Some([v]) => Ok(*v),
            Some(_) => self.err(format!("`{name}` must be a single integer")),
        }
    }

    pub(crate) fn bool(&self, name: &str, default: bool) -> Result<bool> {
        match self.lit(name)? {
            None => Ok(default),
            Some(l) => l
                .as_scalar_bool()
                .map_or_else(|| self.err(format!("`{name}` must be a bool")), Ok),
        }
    }

    pub(crate) fn bools(&self, name: &str, n: usize) -> Result<Vec<bool>> {
        match self.lit(name)? {
            None => Ok(vec![false; n]),
            Some(l) => match l.to_bools() {
                Some(v) if v.len() == n => Ok(v),
                _ => self.err(format!("`{name}` must be {n} bools")),
            },
        }
    }

    pub(crate) fn f64(&self, name: &str) -> Result<Option<f64>> {
        match self.lit(name)? {
            None => Ok(None),
            Some(l) => l
                .as_scalar_f64()
                .map(Some)
                .map_or_else(|| self.err(format!("`{name}` must be a number")), Ok),
        }
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<String>> {
        match self.lit(name)? {
            None => Ok(None),
            Some(l) => l
                .as_str()
                .map(|s| Some(s.to_string()))
                .map_or_else(|| self.err(format!("`{name}` must be a string")), Ok),
        }
    }

    /// Normalised axes (negative counted from the end).
    pub(crate) fn axes(&self, name: &str, rank: usize) -> Result<Option<Vec<usize>>> {
        match self.ints(name)? {
            None => Ok(None),
            Some(v) => v
                .iter()
                .map(|&a| norm_axis(a, rank).or_else(|m| self.err(format!("`{name}`: {m}"))))
                .collect::<Result<Vec<_>>>()
                .map(Some),
        }
    }

    pub(crate) fn axis(&self, name: &str, default: i64, rank: usize) -> Result<usize> {
        let a = self.int(name, default)?;
        norm_axis(a, rank).or_else(|m| self.err(format!("`{name}`: {m}")))
    }
}
