//! Shape ops: slices, reshape, transpose, concat, split, expand and squeeze.

use super::constants::{int_lit, ints_lit};
use super::{FunctionBuilder, R, Var};
use crate::error::InferError;
use crate::value::{Literal, Value};

impl FunctionBuilder {
    pub fn slice_by_size(&mut self, x: &Var, begin: &[i64], size: &[i64]) -> R {
        let b = self.param("slice_by_size", "begin", ints_lit(begin))?;
        let s = self.param("slice_by_size", "size", ints_lit(size))?;
        self.op1(
            "slice_by_size",
            &[("begin", Self::v(&b)), ("size", Self::v(&s)), ("x", Self::v(x))],
        )
    }

    /// `slice_by_index` with begin/end/stride and masks (`None` = default).
    #[allow(clippy::too_many_arguments)] // one per argument of the op
    pub fn slice_by_index(
        &mut self,
        x: &Var,
        begin: &[i64],
        end: &[i64],
        stride: Option<&[i64]>,
        begin_mask: Option<&[bool]>,
        end_mask: Option<&[bool]>,
        squeeze_mask: Option<&[bool]>,
    ) -> R {
        let mut args = vec![
            (
                "begin",
                Self::v(&self.param("slice_by_index", "begin", ints_lit(begin))?),
            ),
            (
                "end",
                Self::v(&self.param("slice_by_index", "end", ints_lit(end))?),
            ),
        ];
        if let Some(s) = stride {
            args.push((
                "stride",
                Self::v(&self.param("slice_by_index", "stride", ints_lit(s))?),
            ));
        }
        for (n, m) in [
            ("begin_mask", begin_mask),
            ("end_mask", end_mask),
            ("squeeze_mask", squeeze_mask),
        ] {
            if let Some(m) = m {
                let c = self.param("slice_by_index", n, Literal::bools(m))?;
                args.push((n, Self::v(&c)));
            }
        }
        args.push(("x", Self::v(x)));
        self.op1("slice_by_index", &args)
    }

    pub fn reshape(&mut self, x: &Var, shape: &[i64]) -> R {
        let s = self.param("reshape", "shape", ints_lit(shape))?;
        self.op1("reshape", &[("shape", Self::v(&s)), ("x", Self::v(x))])
    }

    pub fn transpose(&mut self, x: &Var, perm: &[i64]) -> R {
        let p = self.param("transpose", "perm", ints_lit(perm))?;
        self.op1("transpose", &[("perm", Self::v(&p)), ("x", Self::v(x))])
    }

    pub fn concat(&mut self, values: &[&Var], axis: i64) -> R {
        let a = self.param("concat", "axis", int_lit(axis))?;
        let i = self.param("concat", "interleave", Literal::scalar_bool(false))?;
        let vals = Value::Tuple(values.iter().map(|v| Self::v(v)).collect());
        self.op1(
            "concat",
            &[
                ("axis", Self::v(&a)),
                ("interleave", Self::v(&i)),
                ("values", vals),
            ],
        )
    }

    /// Splits into `num_splits` equal parts.
    pub fn split(&mut self, x: &Var, num_splits: i64, axis: i64) -> Result<Vec<Var>, InferError> {
        let a = self.param("split", "axis", int_lit(axis))?;
        let n = self.param("split", "num_splits", int_lit(num_splits))?;
        self.op(
            "split",
            &[
                ("axis", Self::v(&a)),
                ("num_splits", Self::v(&n)),
                ("x", Self::v(x)),
            ],
            None,
        )
    }

    /// Splits into parts of the given sizes.
    pub fn split_sizes(&mut self, x: &Var, sizes: &[i64], axis: i64) -> Result<Vec<Var>, InferError> {
        let a = self.param("split", "axis", int_lit(axis))?;
        let s = self.param("split", "split_sizes", ints_lit(sizes))?;
        self.op(
            "split",
            &[
                ("axis", Self::v(&a)),
                ("split_sizes", Self::v(&s)),
                ("x", Self::v(x)),
            ],
            None,
        )
    }

    pub fn expand_dims(&mut self, x: &Var, axes: &[i64]) -> R {
        let a = self.param("expand_dims", "axes", ints_lit(axes))?;
        self.op1("expand_dims", &[("axes", Self::v(&a)), ("x", Self::v(x))])
    }

    pub fn squeeze(&mut self, x: &Var, axes: &[i64]) -> R {
        let a = self.param("squeeze", "axes", ints_lit(axes))?;
        self.op1("squeeze", &[("axes", Self::v(&a)), ("x", Self::v(x))])
    }
}
