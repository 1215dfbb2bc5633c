//! Ops along axes: `softmax`, the reductions, `layer_norm`.

use super::tensor;
use crate::error::InferError;
use crate::infer::Ctx;
use crate::shapes::fmt_shape;
use crate::types::{Dim, Type};

pub(in crate::infer) fn infer_softmax(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.float_tensor("x")?;
    let axis = c.opt_const_int("axis", -1)?;
    c.axis("axis", axis, s.len())?;
    Ok(vec![tensor(d, s.to_vec())])
}

pub(in crate::infer) fn infer_reduce(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("x")?;
    let keep = c.opt_const_bool("keep_dims", false)?;
    let axes = match c.opt_const_ints("axes")? {
        Some(a) => c.axes_mask("axes", &a, s.len())?,
        None => vec![true; s.len()],
    };
    let out = s
        .iter()
        .enumerate()
        .filter_map(|(i, &dim)| match (axes[i], keep) {
            (false, _) => Some(dim),
            (true, true) => Some(Dim::Known(1)),
            (true, false) => None,
        })
        .collect();
    Ok(vec![tensor(d, out)])
}

pub(in crate::infer) fn infer_layer_norm(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.float_tensor("x")?;
    let axes = match c.opt_const_ints("axes")? {
        Some(a) => c.axes("axes", &a, s.len())?,
        None => (0..s.len()).collect(),
    };
    let norm_shape: Vec<Dim> = axes.iter().map(|&a| s[a]).collect();
    for p in ["gamma", "beta"] {
        if c.has(p) {
            let (pd, ps) = c.tensor(p)?;
            if pd != d {
                return c.err(p, format!("dtype {pd} differs from x's {d}"));
            }
            if ps.len() != norm_shape.len() || ps.iter().zip(&norm_shape).any(|(a, b)| !a.compatible(*b)) {
                return c.err(
                    p,
                    format!(
                        "shape {} must equal the normalised shape {}",
                        fmt_shape(ps),
                        fmt_shape(&norm_shape)
                    ),
                );
            }
        }
    }
    if c.has("epsilon") {
        let (_, es) = c.tensor("epsilon")?;
        if !es.is_empty() {
            return c.err("epsilon", "must be a scalar");
        }
    }
    Ok(vec![tensor(d, s.to_vec())])
}
