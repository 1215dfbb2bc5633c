//! Validation of a parsed program: names are defined once before use, arguments are known,
//! literals match their types, and every declared type equals the inferred one.

use std::collections::HashMap;

use crate::error::{Diagnostic, Severity};
use crate::infer::{self, Arg, ArgVal};
use crate::ir::{Function, Operation, Program, Span};
use crate::printer::{Spelling, type_str};
use crate::types::{DType, Type};
use crate::value::{Lit, Literal, Value};

/// Checks every function of a program; returns all errors found (empty when valid).
pub fn validate(p: &Program) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in &p.functions {
        if !seen.insert(&f.name) {
            out.push(error(
                f.span,
                "duplicate-function",
                format!("function `{}` is defined twice", f.name),
            ));
        }
        validate_function(f, &mut out);
    }
    out
}

fn error(span: Span, code: &'static str, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        span,
        code,
        message,
    }
}

/// What is known about a defined variable.
struct VarInfo<'a> {
    ty: &'a Type,
    value: Option<&'a Literal>,
}

fn validate_function(f: &Function, out: &mut Vec<Diagnostic>) {
    let mut env: HashMap<&str, VarInfo> = HashMap::new();
    for (name, ty) in &f.inputs {
        if env.insert(name, VarInfo { ty, value: None }).is_some() {
            out.push(error(
                f.span,
                "redefined-var",
                format!("parameter `{name}` is declared twice"),
            ));
        }
    }
    for op in &f.body {
        validate_op(op, &mut env, out);
    }
    for o in &f.outputs {
        if !env.contains_key(o.as_str()) {
            out.push(error(
                f.span,
                "undefined-var",
                format!("function `{}` returns `{o}`, which is never defined", f.name),
            ));
        }
    }
}

fn validate_op<'a>(op: &'a Operation, env: &mut HashMap<&'a str, VarInfo<'a>>, out: &mut Vec<Diagnostic>) {
    let label = match op.name_attr() {
        Some(n) => format!("{} `{n}`", op.op),
        None => format!(
            "{} defining `{}`",
            op.op,
            op.outputs.first().map_or("", |o| o.0.as_str())
        ),
    };
    let before = out.len();
    if let Some((_, v)) = op.attrs.iter().find(|(n, _)| n == "name") {
        let ok = matches!(v, Value::Literal(l) if l.ty == Type::scalar(DType::String) && matches!(l.lit, Lit::Str(_)));
        if !ok {
            out.push(error(
                op.span,
                "bad-name",
                format!("{label}: the `name` attribute must be a string"),
            ));
        }
    }
    let mut args: Vec<(&str, ArgVal)> = Vec::new();
    for (name, v) in op.operands() {
        let resolved = match v {
            Value::Tuple(items) => items
                .iter()
                .map(|it| resolve(it, env))
                .collect::<Result<Vec<_>, _>>()
                .map(ArgVal::Many),
            other => resolve(other, env).map(ArgVal::One),
        };
        match resolved {
            Ok(a) => args.push((name, a)),
            Err(msg) => out.push(error(
                op.span,
                "bad-argument",
                format!("{label}: argument `{name}`: {msg}"),
            )),
        }
    }
    if out.len() == before {
        match infer::infer(&op.op, &args) {
            Ok(Some(types)) => check_declared(op, &label, &types, out),
            Ok(None) => {}
            Err(e) => out.push(error(op.span, "type-error", format!("{label}: {e}"))),
        }
    }
    let value = op.const_value();
    for (name, ty) in &op.outputs {
        if env.contains_key(name.as_str()) {
            out.push(error(
                op.span,
                "redefined-var",
                format!("{label}: variable `{name}` is already defined"),
            ));
        }
        env.insert(name, VarInfo { ty, value });
    }
}

fn check_declared(op: &Operation, label: &str, inferred: &[Type], out: &mut Vec<Diagnostic>) {
    if inferred.len() != op.outputs.len() {
        out.push(error(
            op.span,
            "result-count",
            format!(
                "{label}: declares {} results, the op produces {}",
                op.outputs.len(),
                inferred.len()
            ),
        ));
        return;
    }
    for ((name, declared), got) in op.outputs.iter().zip(inferred) {
        if !declared.compatible(got) {
            out.push(error(
                op.span,
                "type-mismatch",
                format!(
                    "{label}: `{name}` is declared {} but the op produces {}",
                    type_str(declared, Spelling::Rank0Tensors),
                    type_str(got, Spelling::Rank0Tensors)
                ),
            ));
        }
    }
}

fn resolve<'a>(v: &'a Value, env: &HashMap<&str, VarInfo<'a>>) -> Result<Arg<'a>, String> {
    match v {
        Value::Var(name) => env
            .get(name.as_str())
            .map(|i| Arg {
                ty: i.ty,
                value: i.value,
            })
            .ok_or_else(|| format!("undefined variable `{name}`")),
        Value::Literal(l) => {
            check_literal(l)?;
            Ok(Arg {
                ty: &l.ty,
                value: Some(l),
            })
        }
        Value::Tuple(_) => Err("nested tuples are not allowed".into()),
    }
}

/// Checks that a literal's value fits its declared type (element count, value kinds, ranges).
pub fn check_literal(l: &Literal) -> Result<(), String> {
    let Type::Tensor { dtype, shape } = &l.ty else {
        return Ok(()); // dict/tuple/list attribute literals are checked structurally only
    };
    if let Lit::Blob { .. } = l.lit {
        return match dtype {
            DType::String | DType::Bool => Err(format!("a {dtype} tensor cannot live in a blob file")),
            _ if l.ty.known_shape().is_none() => Err("a blob constant needs a fully known shape".into()),
            _ if l
                .ty
                .num_elements()
                .and_then(|n| n.checked_mul(dtype.size_bytes()))
                .is_none() =>
            {
                Err("a blob constant of this shape has more bytes than fit in memory".into())
            }
            _ => Ok(()),
        };
    }
    let leaves = l.lit.leaves();
    if shape.is_empty() && !matches!(l.lit, Lit::List(_)) && leaves.len() != 1 {
        return Err("a scalar literal needs exactly one value".into());
    }
    if l.ty.known_shape().is_some() && l.ty.num_elements().is_none() {
        return Err(format!(
            "literal of type {} has more elements than fit in memory",
            type_str(&l.ty, Spelling::Rank0Tensors)
        ));
    }
    if let Some(n) = l.ty.num_elements() {
        if leaves.len() != n {
            return Err(format!(
                "literal of type {} has {} values, expected {n}",
                type_str(&l.ty, Spelling::Rank0Tensors),
                leaves.len()
            ));
        }
    }
    for leaf in leaves {
        let ok = match (dtype, leaf) {
            (DType::String, Lit::Str(_)) => true,
            (DType::Bool, Lit::Bool(_)) => true,
            (d, Lit::Int(i)) if d.is_int() => d.int_range().is_some_and(|(lo, hi)| (lo..=hi).contains(i)),
            (d, Lit::Int(_) | Lit::Float(_)) if d.is_float() => true,
            _ => false,
        };
        if !ok {
            return Err(format!("value {leaf:?} does not fit dtype {dtype}"));
        }
    }
    Ok(())
}
