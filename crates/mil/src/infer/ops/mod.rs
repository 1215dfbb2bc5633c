//! Inference rules, one function per op (or op family).

mod elementwise;
mod linalg;
mod quant;
mod reduce;
mod shape;

pub(super) use elementwise::*;
pub(super) use linalg::*;
pub(super) use quant::*;
pub(super) use reduce::*;
pub(super) use shape::*;

use crate::types::{DType, Shape, Type};

pub(super) fn tensor(dtype: DType, shape: Shape) -> Type {
    Type::Tensor { dtype, shape }
}
