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

    /// A constant argument converted by `conv`; `None` when absent, an error saying what it
    /// must be when `conv` refuses it.
    fn typed<T>(
        &self,
        name: &str,
        what: impl std::fmt::Display,
        conv: impl FnOnce(&'a Literal) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.lit(name)? {
            None => Ok(None),
            Some(l) => match conv(l) {
                Some(v) => Ok(Some(v)),
                None => self.err(format!("`{name}` must be {what}")),
            },
        }
    }

    pub(crate) fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        self.typed(name, "integers", Literal::to_i64s)
    }

    pub(crate) fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.ints(name)?.as_deref() {
            None => Ok(default),
            Some([v]) => Ok(*v),
            Some(_) => self.err(format!("`{name}` must be a single integer")),
        }
    }

    pub(crate) fn bool(&self, name: &str, default: bool) -> Result<bool> {
        Ok(self
            .typed(name, "a bool", Literal::as_scalar_bool)?
            .unwrap_or(default))
    }

    pub(crate) fn bools(&self, name: &str, n: usize) -> Result<Vec<bool>> {
        let v = self.typed(name, format_args!("{n} bools"), |l| {
            l.to_bools().filter(|v| v.len() == n)
        })?;
        Ok(v.unwrap_or_else(|| vec![false; n]))
    }

    pub(crate) fn f64(&self, name: &str) -> Result<Option<f64>> {
        self.typed(name, "a number", Literal::as_scalar_f64)
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<String>> {
        self.typed(name, "a string", |l| l.as_str().map(str::to_string))
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

#[cfg(test)]
mod tests {
    use super::*;
    use malus_mil::{DType, Span};

    fn op(args: &[(&str, Literal)]) -> Operation {
        Operation {
            outputs: Vec::new(),
            op: "t".into(),
            inputs: args
                .iter()
                .map(|(n, l)| (n.to_string(), Value::Literal(l.clone())))
                .collect(),
            attrs: Vec::new(),
            span: Span::default(),
        }
    }

    fn msg<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r.unwrap_err() {
            CpuError::Op { msg, .. } => msg,
            e => panic!("{e}"),
        }
    }

    #[test]
    fn typed_args_convert_default_and_say_what_they_expect() {
        let o = op(&[
            ("i", Literal::ints(DType::Int32, &[1, -2])),
            ("b", Literal::scalar_bool(true)),
            ("m", Literal::bools(&[true, false])),
            ("f", Literal::scalar_f(DType::Fp32, 0.5)),
            ("s", Literal::string("same")),
        ]);
        let lits = HashMap::new();
        let a = Args::new(&o, &lits);
        assert_eq!(a.ints("i").unwrap(), Some(vec![1, -2]));
        assert_eq!(a.ints("absent").unwrap(), None);
        assert!(a.bool("b", false).unwrap());
        assert!(a.bool("absent", true).unwrap());
        assert_eq!(a.bools("m", 2).unwrap(), vec![true, false]);
        assert_eq!(a.bools("absent", 3).unwrap(), vec![false; 3]);
        assert_eq!(a.f64("f").unwrap(), Some(0.5));
        assert_eq!(a.f64("absent").unwrap(), None);
        assert_eq!(a.string("s").unwrap().as_deref(), Some("same"));
        assert_eq!(a.string("absent").unwrap(), None);

        assert_eq!(msg(a.ints("s")), "`s` must be integers");
        assert_eq!(msg(a.bool("i", false)), "`i` must be a bool");
        assert_eq!(msg(a.bools("m", 3)), "`m` must be 3 bools");
        assert_eq!(msg(a.f64("s")), "`s` must be a number");
        assert_eq!(msg(a.string("f")), "`f` must be a string");
    }
}
