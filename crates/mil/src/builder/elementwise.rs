//! Elementwise ops: casts, unary and binary arithmetic, activations, `select`.

use super::{FunctionBuilder, R, Var};
use crate::types::DType;
use crate::value::Literal;

impl FunctionBuilder {
    pub fn cast(&mut self, x: &Var, dtype: DType) -> R {
        let d = self.param("cast", "dtype", Literal::string(dtype.name()))?;
        self.op1("cast", &[("dtype", Self::v(&d)), ("x", Self::v(x))])
    }

    pub fn identity(&mut self, x: &Var) -> R {
        self.op1("identity", &[("x", Self::v(x))])
    }

    fn unary(&mut self, op: &str, x: &Var) -> R {
        self.op1(op, &[("x", Self::v(x))])
    }

    pub fn sqrt(&mut self, x: &Var) -> R {
        self.unary("sqrt", x)
    }
    pub fn rsqrt(&mut self, x: &Var) -> R {
        self.unary("rsqrt", x)
    }
    pub fn exp(&mut self, x: &Var) -> R {
        self.unary("exp", x)
    }
    pub fn log(&mut self, x: &Var) -> R {
        self.unary("log", x)
    }
    pub fn sigmoid(&mut self, x: &Var) -> R {
        self.unary("sigmoid", x)
    }
    pub fn silu(&mut self, x: &Var) -> R {
        self.unary("silu", x)
    }
    pub fn tanh(&mut self, x: &Var) -> R {
        self.unary("tanh", x)
    }
    pub fn relu(&mut self, x: &Var) -> R {
        self.unary("relu", x)
    }

    /// `gelu` with mode `EXACT`, `TANH_APPROXIMATION` or `SIGMOID_APPROXIMATION`.
    pub fn gelu(&mut self, x: &Var, mode: &str) -> R {
        let m = self.param("gelu", "mode", Literal::string(mode))?;
        self.op1("gelu", &[("mode", Self::v(&m)), ("x", Self::v(x))])
    }

    fn binary(&mut self, op: &str, x: &Var, y: &Var) -> R {
        self.op1(op, &[("x", Self::v(x)), ("y", Self::v(y))])
    }

    pub fn add(&mut self, x: &Var, y: &Var) -> R {
        self.binary("add", x, y)
    }
    pub fn sub(&mut self, x: &Var, y: &Var) -> R {
        self.binary("sub", x, y)
    }
    pub fn mul(&mut self, x: &Var, y: &Var) -> R {
        self.binary("mul", x, y)
    }
    pub fn real_div(&mut self, x: &Var, y: &Var) -> R {
        self.binary("real_div", x, y)
    }
    pub fn maximum(&mut self, x: &Var, y: &Var) -> R {
        self.binary("maximum", x, y)
    }
    pub fn minimum(&mut self, x: &Var, y: &Var) -> R {
        self.binary("minimum", x, y)
    }
    pub fn pow(&mut self, x: &Var, y: &Var) -> R {
        self.binary("pow", x, y)
    }

    pub fn select(&mut self, cond: &Var, a: &Var, b: &Var) -> R {
        self.op1(
            "select",
            &[("a", Self::v(a)), ("b", Self::v(b)), ("cond", Self::v(cond))],
        )
    }
}
