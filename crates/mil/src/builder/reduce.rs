//! Ops along axes: reductions, `softmax`, `layer_norm`.

use super::constants::{int_lit, ints_lit};
use super::{FunctionBuilder, R, Var};
use crate::error::InferError;
use crate::value::Literal;

impl FunctionBuilder {
    pub fn softmax(&mut self, x: &Var, axis: i64) -> R {
        let a = self.param("softmax", "axis", int_lit(axis))?;
        self.op1("softmax", &[("axis", Self::v(&a)), ("x", Self::v(x))])
    }

    fn reduce(&mut self, op: &str, x: &Var, axes: &[i64], keep_dims: bool) -> R {
        let a = self.param(op, "axes", ints_lit(axes))?;
        let k = self.param(op, "keep_dims", Literal::scalar_bool(keep_dims))?;
        self.op1(
            op,
            &[
                ("axes", Self::v(&a)),
                ("keep_dims", Self::v(&k)),
                ("x", Self::v(x)),
            ],
        )
    }

    pub fn reduce_sum(&mut self, x: &Var, axes: &[i64], keep_dims: bool) -> R {
        self.reduce("reduce_sum", x, axes, keep_dims)
    }
    pub fn reduce_mean(&mut self, x: &Var, axes: &[i64], keep_dims: bool) -> R {
        self.reduce("reduce_mean", x, axes, keep_dims)
    }
    pub fn reduce_max(&mut self, x: &Var, axes: &[i64], keep_dims: bool) -> R {
        self.reduce("reduce_max", x, axes, keep_dims)
    }

    pub fn layer_norm(
        &mut self,
        x: &Var,
        axes: &[i64],
        gamma: Option<&Var>,
        beta: Option<&Var>,
        epsilon: f64,
    ) -> R {
        if let Some(d) = x.ty.dtype().filter(|d| !d.is_float()) {
            self.next_name = None;
            return Err(InferError::new(
                "layer_norm",
                Some("x"),
                format!("expected a floating-point tensor, found {d}"),
            ));
        }
        let a = self.param("layer_norm", "axes", ints_lit(axes))?;
        let e = self.param("layer_norm", "epsilon", Literal::scalar_f(x.dtype(), epsilon))?;
        let mut args = vec![("axes", Self::v(&a))];
        if let Some(b) = beta {
            args.push(("beta", Self::v(b)));
        }
        args.push(("epsilon", Self::v(&e)));
        if let Some(g) = gamma {
            args.push(("gamma", Self::v(g)));
        }
        args.push(("x", Self::v(x)));
        self.op1("layer_norm", &args)
    }
}
