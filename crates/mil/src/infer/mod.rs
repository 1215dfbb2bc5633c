//! Type and shape inference for the MIL ops malus knows. The builder and the validator both call
//! [`infer`], so a program built in code and the same program parsed from text are checked alike.

mod ops;

use ops::*;

use crate::error::InferError;
use crate::shapes;
use crate::types::{DType, Dim, Type};
use crate::value::Literal;

/// One argument as inference sees it: its type and, when it is a constant, its value.
#[derive(Clone, Copy, Debug)]
pub struct Arg<'a> {
    pub ty: &'a Type,
    pub value: Option<&'a Literal>,
}

/// An argument value: a single operand or a tuple of them (`values = (a, b)`).
#[derive(Clone, Debug)]
pub enum ArgVal<'a> {
    One(Arg<'a>),
    Many(Vec<Arg<'a>>),
}

/// Whether an argument must be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Req {
    Required,
    Optional,
}

use Req::{Optional as O, Required as R};

type InferFn = fn(&Ctx) -> Result<Vec<Type>, InferError>;

/// The signature of a known op: its arguments and its inference rule.
pub struct OpSpec {
    pub name: &'static str,
    pub args: &'static [(&'static str, Req)],
    infer: InferFn,
}

macro_rules! spec {
    ($name:literal, [$($arg:literal : $req:ident),*], $f:expr) => {
        OpSpec { name: $name, args: &[$(($arg, $req)),*], infer: $f }
    };
}

/// Every op with an inference rule.
pub static OPS: &[OpSpec] = &[
    spec!("const", ["val": R], |c| Ok(vec![c.arg("val")?.ty.clone()])),
    spec!("cast", ["x": R, "dtype": R], infer_cast),
    spec!("identity", ["x": R], |c| Ok(vec![c.arg("x")?.ty.clone()])),
    spec!("sqrt", ["x": R], unary_float),
    spec!("rsqrt", ["x": R, "epsilon": O], unary_float),
    spec!("exp", ["x": R], unary_float),
    spec!("log", ["x": R, "epsilon": O], unary_float),
    spec!("sigmoid", ["x": R], unary_float),
    spec!("silu", ["x": R], unary_float),
    spec!("tanh", ["x": R], unary_float),
    spec!("relu", ["x": R], unary_float),
    spec!("gelu", ["x": R, "mode": O], infer_gelu),
    spec!("add", ["x": R, "y": R], binary),
    spec!("sub", ["x": R, "y": R], binary),
    spec!("mul", ["x": R, "y": R], binary),
    spec!("real_div", ["x": R, "y": R], binary),
    spec!("maximum", ["x": R, "y": R], binary),
    spec!("minimum", ["x": R, "y": R], binary),
    spec!("pow", ["x": R, "y": R], binary),
    spec!("softmax", ["x": R, "axis": O], infer_softmax),
    spec!("reduce_sum", ["x": R, "axes": O, "keep_dims": O], infer_reduce),
    spec!("reduce_mean", ["x": R, "axes": O, "keep_dims": O], infer_reduce),
    spec!("reduce_max", ["x": R, "axes": O, "keep_dims": O], infer_reduce),
    spec!("slice_by_size", ["x": R, "begin": R, "size": R], infer_slice_by_size),
    spec!(
        "slice_by_index",
        ["x": R, "begin": R, "end": R, "stride": O, "begin_mask": O, "end_mask": O, "squeeze_mask": O],
        infer_slice_by_index
    ),
    spec!("reshape", ["x": R, "shape": R], infer_reshape),
    spec!("transpose", ["x": R, "perm": R], infer_transpose),
    spec!("concat", ["values": R, "axis": R, "interleave": O], infer_concat),
    spec!("split", ["x": R, "num_splits": O, "split_sizes": O, "axis": R], infer_split),
    spec!("expand_dims", ["x": R, "axes": R], infer_expand_dims),
    spec!("squeeze", ["x": R, "axes": O], infer_squeeze),
    spec!(
        "layer_norm",
        ["x": R, "axes": O, "gamma": O, "beta": O, "epsilon": O],
        infer_layer_norm
    ),
    spec!("linear", ["x": R, "weight": R, "bias": O], infer_linear),
    spec!("matmul", ["x": R, "y": R, "transpose_x": O, "transpose_y": O], infer_matmul),
    spec!(
        "conv",
        ["x": R, "weight": R, "bias": O, "strides": O, "pad_type": O, "pad": O, "dilations": O, "groups": O],
        infer_conv
    ),
    spec!("select", ["cond": R, "a": R, "b": R], infer_select),
    spec!(
        "quantize",
        ["input": R, "zero_point": O, "scale": R, "axis": O, "output_dtype": R],
        infer_quantize
    ),
    spec!("dequantize", ["input": R, "zero_point": O, "scale": R, "axis": O], infer_dequantize),
    spec!(
        "constexpr_affine_dequantize",
        ["quantized_data": R, "zero_point": R, "scale": R, "axis": R],
        infer_affine_dequantize
    ),
];

/// The spec of a known op.
pub fn op_spec(op: &str) -> Option<&'static OpSpec> {
    OPS.iter().find(|s| s.name == op)
}

/// Infers the result types of `op` from its named arguments. Returns `Ok(None)` for ops without an
/// inference rule (they are checked only structurally).
pub fn infer(op: &str, args: &[(&str, ArgVal<'_>)]) -> Result<Option<Vec<Type>>, InferError> {
    let Some(spec) = op_spec(op) else {
        return Ok(None);
    };
    for (name, _) in args {
        if !spec.args.iter().any(|(a, _)| a == name) {
            let known: Vec<&str> = spec.args.iter().map(|(a, _)| *a).collect();
            return Err(InferError::new(
                op,
                Some(name),
                format!("unknown argument (known: {})", known.join(", ")),
            ));
        }
    }
    for (a, req) in spec.args {
        if *req == Req::Required && !args.iter().any(|(n, _)| n == a) {
            return Err(InferError::new(op, Some(a), "missing required argument"));
        }
    }
    (spec.infer)(&Ctx { op, args }).map(Some)
}

/// Access to an op's arguments with errors that name the op and argument.
pub(crate) struct Ctx<'c, 'a> {
    op: &'c str,
    args: &'c [(&'c str, ArgVal<'a>)],
}

impl<'a> Ctx<'_, 'a> {
    pub(crate) fn err<T>(&self, arg: &str, msg: impl Into<String>) -> Result<T, InferError> {
        Err(InferError::new(self.op, Some(arg), msg))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&ArgVal<'a>> {
        self.args.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub(crate) fn arg(&self, name: &str) -> Result<Arg<'a>, InferError> {
        match self.get(name) {
            Some(ArgVal::One(a)) => Ok(*a),
            Some(ArgVal::Many(_)) => self.err(name, "expected a single value, found a tuple"),
            None => self.err(name, "missing required argument"),
        }
    }

    /// A tensor argument's dtype and shape.
    pub(crate) fn tensor(&self, name: &str) -> Result<(DType, &'a [Dim]), InferError> {
        let a = self.arg(name)?;
        match a.ty {
            Type::Tensor { dtype, shape } => Ok((*dtype, shape.as_slice())),
            other => self.err(name, format!("expected a tensor, found {other:?}")),
        }
    }

    pub(crate) fn float_tensor(&self, name: &str) -> Result<(DType, &'a [Dim]), InferError> {
        let (d, s) = self.tensor(name)?;
        if !d.is_float() {
            return self.err(name, format!("expected a floating-point tensor, found {d}"));
        }
        Ok((d, s))
    }

    /// A constant integer list (scalar accepted as a one-element list). `None` when the argument
    /// is present but not a constant.
    pub(crate) fn ints_if_const(&self, name: &str) -> Result<Option<Vec<i64>>, InferError> {
        let a = self.arg(name)?;
        match a.ty.dtype() {
            Some(d) if d.is_int() => {}
            _ => return self.err(name, format!("expected an integer tensor, found {:?}", a.ty)),
        }
        match a.value {
            None => Ok(None),
            Some(l) => match l.to_i64s() {
                Some(v) => Ok(Some(v)),
                None => self.err(name, "expected integer values"),
            },
        }
    }

    pub(crate) fn const_ints(&self, name: &str) -> Result<Vec<i64>, InferError> {
        self.ints_if_const(name)?
            .map_or_else(|| self.err(name, "must be a constant"), Ok)
    }

    pub(crate) fn opt_const_ints(&self, name: &str) -> Result<Option<Vec<i64>>, InferError> {
        if self.has(name) {
            self.const_ints(name).map(Some)
        } else {
            Ok(None)
        }
    }

    pub(crate) fn const_int(&self, name: &str) -> Result<i64, InferError> {
        let v = self.const_ints(name)?;
        match v.as_slice() {
            [x] if self.arg(name)?.ty.rank().unwrap_or(0) <= 1 => Ok(*x),
            _ => self.err(name, "expected a single integer"),
        }
    }

    pub(crate) fn opt_const_int(&self, name: &str, default: i64) -> Result<i64, InferError> {
        if self.has(name) {
            self.const_int(name)
        } else {
            Ok(default)
        }
    }

    pub(crate) fn opt_const_bool(&self, name: &str, default: bool) -> Result<bool, InferError> {
        if !self.has(name) {
            return Ok(default);
        }
        let a = self.arg(name)?;
        if a.ty.dtype() != Some(DType::Bool) {
            return self.err(name, format!("expected bool, found {:?}", a.ty));
        }
        match a.value.and_then(|l| l.as_scalar_bool()) {
            Some(b) => Ok(b),
            None => self.err(name, "must be a constant bool"),
        }
    }

    pub(crate) fn opt_const_bools(&self, name: &str, n: usize) -> Result<Vec<bool>, InferError> {
        if !self.has(name) {
            return Ok(vec![false; n]);
        }
        let a = self.arg(name)?;
        match a.value.and_then(|l| l.to_bools()) {
            Some(v) if v.len() == n => Ok(v),
            Some(v) => self.err(name, format!("expected {n} values, found {}", v.len())),
            None => self.err(name, "must be a constant bool tensor"),
        }
    }

    pub(crate) fn const_str(&self, name: &str) -> Result<String, InferError> {
        let a = self.arg(name)?;
        match a.value.and_then(|l| l.as_str()) {
            Some(s) => Ok(s.to_string()),
            None => self.err(name, "must be a constant string"),
        }
    }

    pub(crate) fn axis(&self, name: &str, axis: i64, rank: usize) -> Result<usize, InferError> {
        shapes::norm_axis(axis, rank).or_else(|m| self.err(name, m))
    }

    pub(crate) fn axes(&self, name: &str, axes: &[i64], rank: usize) -> Result<Vec<usize>, InferError> {
        let mut out = Vec::with_capacity(axes.len());
        let mut seen = vec![false; rank];
        for &a in axes {
            let n = self.axis(name, a, rank)?;
            if std::mem::replace(&mut seen[n], true) {
                return self.err(name, format!("axis {a} is given twice"));
            }
            out.push(n);
        }
        Ok(out)
    }

    /// The axes as a mask over `rank` (a lookup per axis instead of a search).
    pub(crate) fn axes_mask(&self, name: &str, axes: &[i64], rank: usize) -> Result<Vec<bool>, InferError> {
        let mut mask = vec![false; rank];
        for n in self.axes(name, axes, rank)? {
            mask[n] = true;
        }
        Ok(mask)
    }
}
