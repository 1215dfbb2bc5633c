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

/// Checks `scale` (floating point) and, when given, `zero_point` (of dtype `zero_dtype`) against
/// the data shape; returns the scale's dtype.
fn check_scale_and_zero_point(
    c: &Ctx,
    data: &[Dim],
    axis: Option<usize>,
    zero_dtype: DType,
) -> Result<DType, InferError> {
    let sd = check_qparam(c, "scale", data, axis)?;
    if !sd.is_float() {
        return c.err("scale", "must be floating point");
    }
    if c.has("zero_point") && check_qparam(c, "zero_point", data, axis)? != zero_dtype {
        return c.err("zero_point", format!("must have dtype {zero_dtype}"));
    }
    Ok(sd)
}

/// A quantized tensor argument: `int8` or `uint8`.
fn quantized_tensor<'a>(c: &Ctx<'_, 'a>, name: &str) -> Result<(DType, &'a [Dim]), InferError> {
    let (d, s) = c.tensor(name)?;
    if !matches!(d, DType::Int8 | DType::Uint8) {
        return c.err(name, format!("expected int8 or uint8, found {d}"));
    }
    Ok((d, s))
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
    check_scale_and_zero_point(c, s, axis, od)?;
    Ok(vec![tensor(od, s.to_vec())])
}

pub(in crate::infer) fn infer_dequantize(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = quantized_tensor(c, "input")?;
    let axis = opt_axis(c, s.len())?;
    let sd = check_scale_and_zero_point(c, s, axis, d)?;
    Ok(vec![tensor(sd, s.to_vec())])
}

pub(in crate::infer) fn infer_affine_dequantize(c: &Ctx) -> Result<Vec<Type>, InferError> {
    let (d, s) = quantized_tensor(c, "quantized_data")?;
    let axis = Some(c.axis("axis", c.const_int("axis")?, s.len())?);
    // zero_point is required here: `infer` has checked it is present.
    let sd = check_scale_and_zero_point(c, s, axis, d)?;
    Ok(vec![tensor(sd, s.to_vec())])
}
