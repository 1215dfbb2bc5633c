//! A typed API for writing MIL functions. Each op method infers its result type and refuses an
//! invalid op with an error naming the op, the argument and the mismatch.
//!
//! Parameters such as axes, permutations and transpose flags become named `const` ops (inline
//! literals are rejected for some of them by the ANE compiler), deduplicated per function.

mod constants;
mod elementwise;
mod linalg;
mod quant;
mod reduce;
mod shape;

use std::collections::HashMap;

use crate::error::InferError;
use crate::infer::{self, Arg, ArgVal};
use crate::ir::{Function, Named, Operation, Program, Span};
use crate::types::{DType, Type};
use crate::value::{Lit, Literal, Value};

pub use linalg::ConvParams;

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

    fn v(x: &Var) -> Value {
        Value::Var(x.name.clone())
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
