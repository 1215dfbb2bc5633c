//! Constants: literals declared once per function, and op parameters as named consts.

use super::{FunctionBuilder, R, Var};
use crate::error::InferError;
use crate::printer::{Spelling, literal_str};
use crate::types::{DType, Type};
use crate::value::{Lit, Literal, Value};

impl FunctionBuilder {
    /// A named constant; identical literals are declared once per function.
    ///
    /// # Panics
    /// When the literal does not fit its type or the name given with [`FunctionBuilder::name`] is
    /// taken; [`FunctionBuilder::try_constant`] returns those errors instead.
    pub fn constant(&mut self, lit: Literal) -> Var {
        self.try_constant(lit).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A constant whose literal may be invalid (returns the error instead of panicking).
    pub fn try_constant(&mut self, lit: Literal) -> R {
        let key = literal_str(&lit, Spelling::BareScalars);
        let explicit = self.next_name.is_some();
        if !explicit {
            if let Some(v) = self.const_cache.get(&key) {
                return Ok(v.clone());
            }
        }
        let v = self.op1("const", &[("val", Value::Literal(lit))])?;
        if !explicit {
            self.const_cache.insert(key, v.clone());
        }
        Ok(v)
    }

    /// A parameter constant of an op method (axes, flags, …): it does not take the name given with
    /// [`FunctionBuilder::name`] (that names the op's result), and an invalid literal is refused
    /// with an error naming the op and the argument.
    pub(super) fn param(&mut self, op: &str, arg: &str, lit: Literal) -> R {
        if let Err(m) = crate::validate::check_literal(&lit) {
            self.next_name = None;
            return Err(InferError::new(op, Some(arg), m));
        }
        let requested = self.next_name.take();
        let v = self.constant(lit);
        self.next_name = requested;
        Ok(v)
    }

    /// A scalar constant: floats for float dtypes, `v != 0` for bool, `v` truncated to an integer
    /// otherwise.
    ///
    /// # Panics
    /// For `string`, and when `v` does not fit an integer dtype.
    pub fn scalar(&mut self, dtype: DType, v: f64) -> Var {
        let lit = if dtype.is_float() {
            Literal::scalar_f(dtype, v)
        } else if dtype == DType::Bool {
            Literal::scalar_bool(v != 0.0)
        } else {
            Literal::new(Type::scalar(dtype), Lit::Int(v as i128))
        };
        self.constant(lit)
    }

    /// An `int32` scalar constant.
    ///
    /// # Panics
    /// When `v` does not fit `int32` (use [`FunctionBuilder::try_constant`] for unchecked values).
    pub fn int(&mut self, v: i64) -> Var {
        self.constant(int_lit(v))
    }

    /// An `int32` tensor constant.
    ///
    /// # Panics
    /// When a value does not fit `int32`.
    pub fn ints(&mut self, v: &[i64]) -> Var {
        self.constant(ints_lit(v))
    }

    pub fn bool(&mut self, v: bool) -> Var {
        self.constant(Literal::scalar_bool(v))
    }

    pub fn string(&mut self, s: &str) -> Var {
        self.constant(Literal::string(s))
    }

    /// A constant stored in a weight blob file.
    pub fn blob(&mut self, ty: Type, path: &str, offset: u64) -> R {
        self.try_constant(Literal::blob(ty, path, offset))
    }
}

/// An `int32` scalar literal (checked against the range when it is used).
pub(super) fn int_lit(v: i64) -> Literal {
    Literal::new(Type::scalar(DType::Int32), Lit::Int(v as i128))
}

/// An `int32` tensor literal (checked against the range when it is used).
pub(super) fn ints_lit(v: &[i64]) -> Literal {
    Literal::ints(DType::Int32, v)
}
