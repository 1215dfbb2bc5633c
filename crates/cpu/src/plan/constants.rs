//! Constants: inline literals and `BLOBFILE` data become constant slots at compile time.
//! fp16-typed constants are rounded to fp16 in both numerics (they are fp16 data); in fp16
//! numerics every float constant is.

use malus_mil::blob::BlobDType;
use malus_mil::{DType, Lit, Literal, Operation};

use super::{Planner, Tensor};
use crate::error::{CpuError, OpErrorKind, Result};
use crate::layout::{Class, View};
use crate::storage::round_f16;

/// A constant tensor holding a literal's values; `None` for strings (parameters only).
pub(crate) fn literal_tensor(p: &mut Planner, op: &Operation, l: &Literal) -> Result<Option<Tensor>> {
    let (Some(dtype), Some(shape)) = (l.ty.dtype(), l.ty.known_shape()) else {
        return Err(CpuError::op(
            op,
            OpErrorKind::Unsupported,
            format!("constant of type {:?} is not a tensor of known shape", l.ty),
        ));
    };
    let Some(class) = Class::of(dtype) else {
        return Ok(None);
    };
    let n: usize = shape.iter().product();
    let count_err = |got: usize| {
        CpuError::op(
            op,
            OpErrorKind::Invalid,
            format!("constant has {got} values, its type {:?} needs {n}", l.ty),
        )
    };
    let slot = match (&l.lit, class) {
        (Lit::Blob { .. }, _) => {
            let blob = p
                .weights
                .resolve(l)
                .map_err(|e| CpuError::op(op, OpErrorKind::Blob, e.to_string()))?;
            let vals = blob.to_f32();
            match (class, blob.dtype) {
                (Class::F, _) => p.st.push_f(vals),
                (Class::I, BlobDType::Int8 | BlobDType::Uint8) => {
                    p.st.push_i(vals.iter().map(|&v| v as i64).collect())
                }
                _ => {
                    return Err(CpuError::op(
                        op,
                        OpErrorKind::Unsupported,
                        format!("blob of dtype {dtype}"),
                    ));
                }
            }
        }
        (_, Class::F) => {
            let v = l.to_f64s().ok_or_else(|| count_err(0))?;
            p.st.push_f(splat(v.iter().map(|&x| x as f32).collect(), n).ok_or_else(|| count_err(v.len()))?)
        }
        (_, Class::I) => {
            let v = l.to_i64s().ok_or_else(|| count_err(0))?;
            p.st.push_i(splat(v.clone(), n).ok_or_else(|| count_err(v.len()))?)
        }
        (_, Class::B) => {
            let v = l.to_bools().ok_or_else(|| count_err(0))?;
            p.st.push_b(splat(v.iter().map(|&b| b as u8).collect(), n).ok_or_else(|| count_err(v.len()))?)
        }
    };
    if class == Class::F && (dtype == DType::Fp16 || p.ctx.fp16) {
        round_f16(&mut p.st.f[slot.idx]);
    }
    p.register_const(slot, n);
    Ok(Some(Tensor {
        dtype,
        view: View::dense(slot, &shape),
    }))
}

/// The values, or one value repeated `n` times.
fn splat<T: Clone>(v: Vec<T>, n: usize) -> Option<Vec<T>> {
    match v.len() {
        l if l == n => Some(v),
        1 => Some(vec![v[0].clone(); n]),
        _ => None,
    }
}
