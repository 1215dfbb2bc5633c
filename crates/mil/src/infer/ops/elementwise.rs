//! Elementwise ops: `cast`, unary float ops, `gelu`, binary arithmetic, `select`.

use super::tensor;
use crate::error::InferError;
use crate::infer::Ctx;
use crate::shapes;
use crate::types::{DType, Type};

pub(in crate::infer) fn infer_cast(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (_, s) = c.tensor("x")?;
    let name = c.const_str("dtype")?;
    let d = DType::from_name(&name)
        .filter(|d| *d != DType::String)
        .map_or_else(|| c.err("dtype", format!("unknown target dtype {name:?}")), Ok)?;
    Ok(vec![tensor(d, s.to_vec())])
}

pub(in crate::infer) fn unary_float(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.float_tensor("x")?;
    if c.has("epsilon") {
        let (ed, es) = c.tensor("epsilon")?;
        if ed != d || !es.is_empty() {
            return c.err("epsilon", format!("expected a {d} scalar"));
        }
    }
    Ok(vec![tensor(d, s.to_vec())])
}

pub(in crate::infer) fn infer_gelu(c: &Ctx) -> Result<Vec<Type>, InferError> {
    if c.has("mode") {
        let m = c.const_str("mode")?;
        if !["EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION"].contains(&m.as_str()) {
            return c.err("mode", format!("unknown gelu mode {m:?}"));
        }
    }
    unary_float(c)
}

pub(in crate::infer) fn binary(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (dx, sx) = c.tensor("x")?;
    let (dy, sy) = c.tensor("y")?;
    if dx != dy {
        return c.err("y", format!("dtype {dy} differs from x's {dx}"));
    }
    if dx == DType::String || dx == DType::Bool {
        return c.err("x", format!("{dx} is not a numeric dtype"));
    }
    let s = shapes::broadcast(sx, sy).or_else(|m| c.err("y", m))?;
    Ok(vec![tensor(dx, s)])
}

pub(in crate::infer) fn infer_select(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (cd, cs) = c.tensor("cond")?;
    let (ad, as_) = c.tensor("a")?;
    let (bd, bs) = c.tensor("b")?;
    if cd != DType::Bool {
        return c.err("cond", format!("expected bool, found {cd}"));
    }
    if ad != bd {
        return c.err("b", format!("dtype {bd} differs from a's {ad}"));
    }
    let s = shapes::broadcast(as_, bs).or_else(|m| c.err("b", m))?;
    let s = shapes::broadcast(cs, &s).or_else(|m| c.err("cond", m))?;
    Ok(vec![tensor(ad, s)])
}
