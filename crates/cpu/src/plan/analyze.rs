//! Whole-function analysis before planning: which ops are live, every result type (re-inferred
//! with malus-mil's rules so executor and type checker agree), which ops are constant, which
//! elementwise ops fuse into their consumer, and where each variable is used last.

use std::collections::{HashMap, HashSet};

use malus_mil::infer::{self, Arg, ArgVal};
use malus_mil::shapes::fmt_shape;
use malus_mil::{Function, Literal, Operation, Type, Value};

use crate::error::{CpuError, OpErrorKind, Result};

/// Position used as the last use of function results: they live to the end.
pub(crate) const END: usize = usize::MAX;

/// Unary float ops the fused elementwise kernel evaluates.
pub(crate) const UNARY: &[&str] = &[
    "sqrt", "rsqrt", "exp", "log", "sigmoid", "silu", "tanh", "relu", "gelu",
];
/// Binary ops with numpy broadcasting.
pub(crate) const BINARY: &[&str] = &["add", "sub", "mul", "real_div", "maximum", "minimum", "pow"];

#[derive(Debug, Default)]
pub(crate) struct Analysis {
    pub live: Vec<bool>,
    /// Evaluated once at compile time (const, constexpr_*, or only constant operands).
    pub konst: Vec<bool>,
    /// The consumer op an elementwise op is fused into.
    pub fused_into: Vec<Option<usize>>,
    /// Position (op index, or [`END`]) after which a variable is dead.
    pub last_use: HashMap<String, usize>,
    /// Fully known type of every parameter and live result.
    pub types: HashMap<String, Type>,
    /// Values of `const` ops, for parameters such as axes and permutations.
    pub lits: HashMap<String, Literal>,
}

/// The variables an op reads.
pub(crate) fn operand_vars(op: &Operation) -> impl Iterator<Item = &str> {
    op.operands().flat_map(|(_, v)| match v {
        Value::Var(n) => vec![n.as_str()],
        Value::Tuple(items) => items.iter().filter_map(Value::as_var).collect(),
        Value::Literal(_) => Vec::new(),
    })
}

/// A float op the fused elementwise kernel can evaluate.
pub(crate) fn is_fusable(op: &Operation, types: &HashMap<String, Type>) -> bool {
    let float_out = op
        .outputs
        .first()
        .and_then(|(n, _)| types.get(n))
        .and_then(Type::dtype)
        .is_some_and(|d| d.is_float());
    float_out && (UNARY.contains(&op.op.as_str()) || BINARY.contains(&op.op.as_str()))
}

pub(crate) fn analyze(f: &Function, inputs: &[(String, Type)]) -> Result<Analysis> {
    let n = f.body.len();
    let mut a = Analysis {
        live: vec![false; n],
        konst: vec![false; n],
        fused_into: vec![None; n],
        ..Analysis::default()
    };
    // Live ops: walk backwards from the returned variables.
    let mut needed: HashMap<&str, ()> = f.outputs.iter().map(|o| (o.as_str(), ())).collect();
    for (i, op) in f.body.iter().enumerate().rev() {
        if op.outputs.iter().any(|(o, _)| needed.contains_key(o.as_str())) {
            a.live[i] = true;
            needed.extend(operand_vars(op).map(|v| (v, ())));
        }
    }
    for (name, ty) in inputs {
        a.types.insert(name.clone(), ty.clone());
    }
    let mut konst_vars: HashSet<&str> = HashSet::new();
    for (i, op) in f.body.iter().enumerate() {
        if a.live[i] {
            type_op(op, &mut a)?;
            a.konst[i] = operand_vars(op).all(|v| konst_vars.contains(v));
            if a.konst[i] {
                konst_vars.extend(op.outputs.iter().map(|(o, _)| o.as_str()));
            }
        }
    }
    for o in &f.outputs {
        if !a.types.contains_key(o) {
            return Err(CpuError::Signature {
                name: o.clone(),
                span: f.span,
                msg: "returned but never defined".into(),
            });
        }
    }
    mark_fusion(f, &mut a);
    // Last uses, at the position where the consumer (or the group it is fused into) runs.
    for (i, op) in f.body.iter().enumerate() {
        if a.live[i] {
            let at = root(&a, i);
            for v in operand_vars(op) {
                let e = a.last_use.entry(v.to_string()).or_insert(at);
                *e = (*e).max(at);
            }
        }
    }
    for o in &f.outputs {
        a.last_use.insert(o.clone(), END);
    }
    Ok(a)
}

/// The op whose position a (possibly fused) op runs at.
pub(crate) fn root(a: &Analysis, mut i: usize) -> usize {
    while let Some(c) = a.fused_into[i] {
        i = c;
    }
    i
}

/// Infers the op's result types, checks them against the declared ones and records them.
fn type_op(op: &Operation, a: &mut Analysis) -> Result<()> {
    if infer::op_spec(&op.op).is_none() {
        return Err(CpuError::op(
            op,
            OpErrorKind::UnsupportedOp,
            format!("the CPU executor has no kernel for `{}`", op.op),
        ));
    }
    fn resolve<'x>(a: &'x Analysis, op: &Operation, v: &'x Value) -> Result<Arg<'x>> {
        match v {
            Value::Var(name) => a
                .types
                .get(name)
                .map(|ty| Arg {
                    ty,
                    value: a.lits.get(name),
                })
                .ok_or_else(|| {
                    CpuError::op(
                        op,
                        OpErrorKind::Invalid,
                        format!("`{name}` is not defined before use"),
                    )
                }),
            Value::Literal(l) => Ok(Arg {
                ty: &l.ty,
                value: Some(l),
            }),
            Value::Tuple(_) => Err(CpuError::op(op, OpErrorKind::Invalid, "nested tuple")),
        }
    }
    let mut args: Vec<(&str, ArgVal)> = Vec::new();
    for (name, v) in op.operands() {
        let val = match v {
            Value::Tuple(items) => {
                ArgVal::Many(items.iter().map(|v| resolve(a, op, v)).collect::<Result<_>>()?)
            }
            v => ArgVal::One(resolve(a, op, v)?),
        };
        args.push((name.as_str(), val));
    }
    let inferred = infer::infer(&op.op, &args)
        .map_err(|e| CpuError::op(op, OpErrorKind::Invalid, e.to_string()))?
        .unwrap_or_default();
    if inferred.len() != op.outputs.len() {
        return Err(CpuError::op(
            op,
            OpErrorKind::Invalid,
            format!(
                "declares {} results, inference gives {}",
                op.outputs.len(),
                inferred.len()
            ),
        ));
    }
    for ((name, declared), ty) in op.outputs.iter().zip(inferred) {
        if !declared.compatible(&ty) {
            return Err(CpuError::op(
                op,
                OpErrorKind::Invalid,
                format!("`{name}` is declared {declared:?} but its arguments give {ty:?}"),
            ));
        }
        if ty.known_shape().is_none() {
            let shape = ty.shape().map(fmt_shape).unwrap_or_default();
            return Err(CpuError::op(
                op,
                OpErrorKind::UnknownDim,
                format!("result `{name}` has shape {shape} with unknown dimensions; give the input shapes"),
            ));
        }
        if !fits_in_memory(&ty.known_shape().unwrap_or_default(), ty.dtype()) {
            return Err(CpuError::op(
                op,
                OpErrorKind::Unsupported,
                format!("result `{name}` is too large to hold"),
            ));
        }
        a.types.insert(name.clone(), ty);
    }
    if let (Some(l), [(name, _)]) = (op.const_value(), op.outputs.as_slice()) {
        a.lits.insert(name.clone(), l.clone());
    }
    Ok(())
}

/// Marks elementwise float ops whose only consumer is another one of the same shape.
fn mark_fusion(f: &Function, a: &mut Analysis) {
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, op) in f.body.iter().enumerate() {
        if a.live[i] {
            for v in operand_vars(op) {
                let c = consumers.entry(v).or_default();
                if !c.contains(&i) {
                    c.push(i);
                }
            }
        }
    }
    let runtime_fusable = |i: usize| a.live[i] && !a.konst[i] && is_fusable(&f.body[i], &a.types);
    let mut fused = vec![None; f.body.len()];
    for (p, op) in f.body.iter().enumerate() {
        let [(out, _)] = op.outputs.as_slice() else {
            continue;
        };
        if !runtime_fusable(p) || f.outputs.contains(out) {
            continue;
        }
        let Some([c]) = consumers.get(out.as_str()).map(Vec::as_slice) else {
            continue;
        };
        let shape_of = |v: &str| a.types.get(v).and_then(Type::known_shape);
        let c_out = &f.body[*c].outputs[0].0;
        let softmax_input =
            f.body[*c].op == "softmax" && !a.konst[*c] && softmax_on_last_axis(&f.body[*c], a);
        if (runtime_fusable(*c) || softmax_input) && shape_of(out) == shape_of(c_out) {
            fused[p] = Some(*c);
        }
    }
    a.fused_into = fused;
}

/// A softmax over the last axis: its input group can be evaluated row by row inside it.
fn softmax_on_last_axis(op: &Operation, a: &Analysis) -> bool {
    let rank = op
        .arg("x")
        .and_then(Value::as_var)
        .and_then(|x| a.types.get(x))
        .and_then(Type::rank);
    let axis = match op.arg("axis") {
        None => Some(-1),
        Some(Value::Literal(l)) => l.as_scalar_i64(),
        Some(Value::Var(v)) => a.lits.get(v).and_then(Literal::as_scalar_i64),
        Some(Value::Tuple(_)) => None,
    };
    matches!((rank, axis), (Some(r), Some(x)) if r > 0 && (x == -1 || x == r as i64 - 1))
}

/// Whether a tensor's element count and byte size fit in memory sizes (no overflow).
pub(crate) fn fits_in_memory(shape: &[usize], dtype: Option<malus_mil::DType>) -> bool {
    let size = dtype.map_or(8, |d| d.size_bytes().max(4));
    shape
        .iter()
        .try_fold(size, |a, &d| a.checked_mul(d))
        .is_some_and(|b| b <= isize::MAX as usize)
}
