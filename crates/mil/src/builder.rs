//! A typed API for writing MIL functions. Each op method infers its result type and refuses an
//! invalid op with an error naming the op, the argument and the mismatch.
//!
//! Parameters such as axes, permutations and transpose flags become named `const` ops (inline
//! literals are rejected for some of them by the ANE compiler), deduplicated per function.

use std::collections::HashMap;

use crate::error::InferError;
use crate::infer::{self, Arg, ArgVal};
use crate::ir::{Function, Named, Operation, Program, Span};
use crate::printer::{Spelling, literal_str};
use crate::types::{DType, Type};
use crate::value::{Lit, Literal, Value};

/// A variable of the function being built.
#[derive(Clone, Debug, PartialEq)]
pub struct Var {
    pub name: String,
    pub ty: Type,
}

impl Var {
    pub fn shape(&self) -> Vec<usize> {
        self.ty.known_shape().unwrap_or_default()
    }

    pub fn dtype(&self) -> DType {
        self.ty.dtype().unwrap_or(DType::Fp32)
    }
}

/// Builds one function.
pub struct FunctionBuilder {
    name: String,
    opset: String,
    inputs: Vec<(String, Type)>,
    body: Vec<Operation>,
    vars: HashMap<String, (Type, Option<Literal>)>,
    const_cache: HashMap<String, Var>,
    next_name: Option<String>,
    counter: usize,
}

type R = Result<Var, InferError>;

impl FunctionBuilder {
    /// A function `name<opset>`, e.g. `("main", "ios18")`.
    pub fn new(name: &str, opset: &str) -> FunctionBuilder {
        FunctionBuilder {
            name: name.into(),
            opset: opset.into(),
            inputs: Vec::new(),
            body: Vec::new(),
            vars: HashMap::new(),
            const_cache: HashMap::new(),
            next_name: None,
            counter: 0,
        }
    }

    /// Declares a function parameter.
    pub fn input(&mut self, name: &str, ty: Type) -> Var {
        self.inputs.push((name.into(), ty.clone()));
        self.vars.insert(name.into(), (ty.clone(), None));
        Var {
            name: name.into(),
            ty,
        }
    }

    /// Names the result of the next op (otherwise a name is generated).
    pub fn name(&mut self, name: &str) -> &mut FunctionBuilder {
        self.next_name = Some(name.into());
        self
    }

    fn fresh(&mut self, op: &str) -> String {
        loop {
            self.counter += 1;
            let n = format!("{op}_{}", self.counter);
            if !self.vars.contains_key(&n) {
                return n;
            }
        }
    }

    /// Appends any op with named arguments; returns its results. Known ops are type-checked;
    /// unknown ops need `result_types`.
    pub fn op(
        &mut self,
        op: &str,
        args: &[(&str, Value)],
        result_types: Option<Vec<Type>>,
    ) -> Result<Vec<Var>, InferError> {
        // The requested name belongs to this op whether or not it types.
        let requested = self.next_name.take();
        let types = {
            let mut resolved: Vec<(&str, ArgVal)> = Vec::new();
            for (n, v) in args {
                let a = match v {
                    Value::Tuple(items) => ArgVal::Many(
                        items
                            .iter()
                            .map(|it| resolve_arg(&self.vars, op, n, it))
                            .collect::<Result<_, _>>()?,
                    ),
                    v => ArgVal::One(resolve_arg(&self.vars, op, n, v)?),
                };
                resolved.push((n, a));
            }
            match (infer::infer(op, &resolved)?, result_types) {
                (Some(t), _) => t,
                (None, Some(t)) if !t.is_empty() => t,
                (None, Some(_)) => {
                    return Err(InferError::new(op, None, "an op needs at least one result"));
                }
                (None, None) => {
                    return Err(InferError::new(op, None, "unknown op: give its result types"));
                }
            }
        };
        let base = match requested {
            Some(n) => n,
            None => self.fresh(op),
        };
        let names: Vec<String> = if types.len() == 1 {
            vec![base.clone()]
        } else {
            (0..types.len()).map(|i| format!("{base}_{i}")).collect()
        };
        for n in &names {
            if self.vars.contains_key(n) {
                return Err(InferError::new(
                    op,
                    None,
                    format!("variable `{n}` is already defined"),
                ));
            }
        }
        let is_const = op == "const" || op.starts_with("constexpr_");
        let operands: Vec<Named> = args.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
        let (inputs, mut attrs) = if is_const {
            (Vec::new(), operands)
        } else {
            (operands, Vec::new())
        };
        attrs.insert(0, ("name".into(), Value::Literal(Literal::string(&base))));
        if is_const {
            attrs.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let value = if op == "const" {
            args.iter()
                .find(|(n, _)| *n == "val")
                .and_then(|(_, v)| v.as_literal().cloned())
        } else {
            None
        };
        for (n, t) in names.iter().zip(&types) {
            self.vars.insert(n.clone(), (t.clone(), value.clone()));
        }
        self.body.push(Operation {
            outputs: names.iter().cloned().zip(types.iter().cloned()).collect(),
            op: op.into(),
            inputs,
            attrs,
            span: Span::default(),
        });
        Ok(names
            .into_iter()
            .zip(types)
            .map(|(name, ty)| Var { name, ty })
            .collect())
    }

    fn op1(&mut self, op: &str, args: &[(&str, Value)]) -> R {
        Ok(self.op(op, args, None)?.remove(0))
    }

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
    fn param(&mut self, op: &str, arg: &str, lit: Literal) -> R {
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

    fn v(x: &Var) -> Value {
        Value::Var(x.name.clone())
    }

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

    pub fn linear(&mut self, x: &Var, weight: &Var, bias: Option<&Var>) -> R {
        let mut args = Vec::new();
        if let Some(b) = bias {
            args.push(("bias", Self::v(b)));
        }
        args.push(("weight", Self::v(weight)));
        args.push(("x", Self::v(x)));
        self.op1("linear", &args)
    }

    pub fn matmul(&mut self, x: &Var, y: &Var, transpose_x: bool, transpose_y: bool) -> R {
        let tx = self.param("matmul", "transpose_x", Literal::scalar_bool(transpose_x))?;
        let ty = self.param("matmul", "transpose_y", Literal::scalar_bool(transpose_y))?;
        self.op1(
            "matmul",
            &[
                ("transpose_x", Self::v(&tx)),
                ("transpose_y", Self::v(&ty)),
                ("x", Self::v(x)),
                ("y", Self::v(y)),
            ],
        )
    }

    /// Convolution with `pad_type = "custom"` and explicit pads (`[begin0, end0, begin1, end1, …]`).
    pub fn conv(&mut self, x: &Var, weight: &Var, params: &ConvParams, bias: Option<&Var>) -> R {
        let nsp = x.ty.rank().unwrap_or(2).saturating_sub(2);
        let ones = vec![1i64; nsp];
        let zeros = vec![0; 2 * nsp];
        let strides = self.param(
            "conv",
            "strides",
            ints_lit(params.strides.as_deref().unwrap_or(&ones)),
        )?;
        let dil = self.param(
            "conv",
            "dilations",
            ints_lit(params.dilations.as_deref().unwrap_or(&ones)),
        )?;
        let pad = self.param("conv", "pad", ints_lit(params.pad.as_deref().unwrap_or(&zeros)))?;
        let groups = self.param("conv", "groups", int_lit(params.groups))?;
        let pad_type = self.param("conv", "pad_type", Literal::string(&params.pad_type))?;
        let mut args = Vec::new();
        if let Some(b) = bias {
            args.push(("bias", Self::v(b)));
        }
        args.extend([
            ("dilations", Self::v(&dil)),
            ("groups", Self::v(&groups)),
            ("pad", Self::v(&pad)),
            ("pad_type", Self::v(&pad_type)),
            ("strides", Self::v(&strides)),
            ("weight", Self::v(weight)),
            ("x", Self::v(x)),
        ]);
        self.op1("conv", &args)
    }

    pub fn select(&mut self, cond: &Var, a: &Var, b: &Var) -> R {
        self.op1(
            "select",
            &[("a", Self::v(a)), ("b", Self::v(b)), ("cond", Self::v(cond))],
        )
    }

    /// Quantizes to `int8`/`uint8` with a scalar scale (and optional zero point).
    pub fn quantize(&mut self, input: &Var, scale: &Var, zero_point: Option<&Var>, output_dtype: DType) -> R {
        let od = self.param("quantize", "output_dtype", Literal::string(output_dtype.name()))?;
        let mut args = vec![
            ("input", Self::v(input)),
            ("output_dtype", Self::v(&od)),
            ("scale", Self::v(scale)),
        ];
        if let Some(z) = zero_point {
            args.push(("zero_point", Self::v(z)));
        }
        self.op1("quantize", &args)
    }

    pub fn dequantize(&mut self, input: &Var, scale: &Var, zero_point: Option<&Var>) -> R {
        let mut args = vec![("input", Self::v(input)), ("scale", Self::v(scale))];
        if let Some(z) = zero_point {
            args.push(("zero_point", Self::v(z)));
        }
        self.op1("dequantize", &args)
    }

    /// `constexpr_affine_dequantize` with all operands as literals, as Core ML writes it.
    pub fn constexpr_affine_dequantize(
        &mut self,
        quantized: Literal,
        scale: Literal,
        zero_point: Literal,
        axis: i32,
    ) -> R {
        self.op1(
            "constexpr_affine_dequantize",
            &[
                ("axis", Value::Literal(Literal::scalar_i32(axis))),
                ("quantized_data", Value::Literal(quantized)),
                ("scale", Value::Literal(scale)),
                ("zero_point", Value::Literal(zero_point)),
            ],
        )
    }

    /// Finishes the function, returning the given variables.
    pub fn build(self, outputs: &[&Var]) -> Function {
        Function {
            name: self.name,
            opset: self.opset,
            inputs: self.inputs,
            attrs: Vec::new(),
            body: self.body,
            outputs: outputs.iter().map(|v| v.name.clone()).collect(),
            span: Span::default(),
        }
    }
}

/// An `int32` scalar literal (checked against the range when it is used).
fn int_lit(v: i64) -> Literal {
    Literal::new(Type::scalar(DType::Int32), Lit::Int(v as i128))
}

/// An `int32` tensor literal (checked against the range when it is used).
fn ints_lit(v: &[i64]) -> Literal {
    Literal::ints(DType::Int32, v)
}

fn resolve_arg<'a>(
    vars: &'a HashMap<String, (Type, Option<Literal>)>,
    op: &str,
    arg: &str,
    v: &'a Value,
) -> Result<Arg<'a>, InferError> {
    match v {
        Value::Var(name) => vars
            .get(name)
            .map(|(ty, value)| Arg {
                ty,
                value: value.as_ref(),
            })
            .ok_or_else(|| InferError::new(op, Some(arg), format!("undefined variable `{name}`"))),
        Value::Literal(l) => {
            crate::validate::check_literal(l).map_err(|m| InferError::new(op, Some(arg), m))?;
            Ok(Arg {
                ty: &l.ty,
                value: Some(l),
            })
        }
        Value::Tuple(_) => Err(InferError::new(op, Some(arg), "nested tuples are not allowed")),
    }
}

/// Convolution parameters beyond input and weight.
#[derive(Clone, Debug)]
pub struct ConvParams {
    pub strides: Option<Vec<i64>>,
    pub dilations: Option<Vec<i64>>,
    /// `[begin, end]` per spatial axis (used with `pad_type = "custom"`).
    pub pad: Option<Vec<i64>>,
    pub pad_type: String,
    pub groups: i64,
}

impl Default for ConvParams {
    fn default() -> ConvParams {
        ConvParams {
            strides: None,
            dilations: None,
            pad: None,
            pad_type: "valid".into(),
            groups: 1,
        }
    }
}

/// The `buildInfo` attribute every generator writes (the values Apple's tools write).
pub fn build_info() -> Named {
    let entries = [
        ("coremlc-component-MIL", "3510.2.1"),
        ("coremlc-version", "3505.4.1"),
        ("coremltools-component-milinternal", ""),
        ("coremltools-version", "9.0"),
    ];
    let s = Type::scalar(DType::String);
    (
        "buildInfo".into(),
        Value::Literal(Literal::new(
            Type::Dict(Box::new(s.clone()), Box::new(s)),
            Lit::Dict(
                entries
                    .iter()
                    .map(|(k, v)| (Lit::Str((*k).into()), Lit::Str((*v).into())))
                    .collect(),
            ),
        )),
    )
}

impl Program {
    /// A `program(1.3)` with the standard `buildInfo` and the given functions.
    pub fn new(functions: Vec<Function>) -> Program {
        Program {
            version: "1.3".into(),
            attrs: vec![build_info()],
            functions,
        }
    }
}
