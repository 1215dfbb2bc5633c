//! Quantization: `quantize`, `dequantize`, `constexpr_affine_dequantize` and their parameters.

use super::tensor;
use crate::error::InferError;
use crate::infer::Ctx;
use crate::shapes::fmt_shape;
use crate::types::{DType, Dim, Type};

/// Checks a per-tensor or per-axis quantization parameter against the data shape.
pub(in crate::infer) fn check_qparam(
    c: &Ctx,
    name: &str,
    data: &[Dim],
    axis: Option<usize>,
) -> Result<DType, InferError> {
    let (d, s) = c.tensor(name)?;
    let ok = match (s, axis) {
        ([], _) => true,
        ([n], Some(a)) => n.compatible(data[a]),
        _ => false,
    };
    if !ok {
        return c.err(
            name,
            format!(
                "must be a scalar or a vector along the axis, found {}",
                fmt_shape(s)
            ),
        );
    }
    Ok(d)
}

pub(in crate::infer) fn opt_axis(c: &Ctx, rank: usize) -> Result<Option<usize>, InferError> {
    if c.has("axis") {
        Ok(Some(c.axis("axis", c.const_int("axis")?, rank)?))
    } else {
        Ok(None)
    }
}

pub(in crate::infer) fn infer_quantize(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (_, s) = c.float_tensor("input")?;
    let axis = opt_axis(c, s.len())?;
    let out = c.const_str("output_dtype")?;
    let od = match out.as_str() {
        "int8" => DType::Int8,
        "uint8" => DType::Uint8,
        o => {
            return c.err(
                "output_dtype",
                format!("must be \"int8\" or \"uint8\", found {o:?}"),
            );
        }
    };
    let sd = check_qparam(c, "scale", s, axis)?;
    if !sd.is_float() {
        return c.err("scale", "must be floating point");
    }
    if c.has("zero_point") && check_qparam(c, "zero_point", s, axis)? != od {
        return c.err("zero_point", format!("must have dtype {od}"));
    }
    Ok(vec![tensor(od, s.to_vec())])
}

pub(in crate::infer) fn infer_dequantize(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("input")?;
    if !matches!(d, DType::Int8 | DType::Uint8) {
        return c.err("input", format!("expected int8 or uint8, found {d}"));
    }
    let axis = opt_axis(c, s.len())?;
    let sd = check_qparam(c, "scale", s, axis)?;
    if !sd.is_float() {
        return c.err("scale", "must be floating point");
    }
    if c.has("zero_point") && check_qparam(c, "zero_point", s, axis)? != d {
        return c.err("zero_point", format!("must have dtype {d}"));
    }
    Ok(vec![tensor(sd, s.to_vec())])
}

pub(in crate::infer) fn infer_affine_dequantize(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = c.tensor("quantized_data")?;
    if !matches!(d, DType::Int8 | DType::Uint8) {
        return c.err("quantized_data", format!("expected int8 or uint8, found {d}"));
    }
    let axis = Some(c.axis("axis", c.const_int("axis")?, s.len())?);
    let sd = check_qparam(c, "scale", s, axis)?;
    if !sd.is_float() {
        return c.err("scale", "must be floating point");
    }
    if check_qparam(c, "zero_point", s, axis)? != d {
        return c.err("zero_point", format!("must have dtype {d}"));
    }
    Ok(vec![tensor(sd, s.to_vec())])
}
