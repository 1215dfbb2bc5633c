//! The compute kernels and the step list a compiled kernel runs.

pub(crate) mod conv;
pub(crate) mod data;
pub(crate) mod fused;
pub(crate) mod math;
pub(crate) mod matmul;
pub(crate) mod reduce;
pub(crate) mod simd;

use crate::layout::Class;
use crate::storage::{Ctx, Storage};

/// One planned unit of work. Everything a step needs (shapes, strides, walks) was computed at
/// compile time, so executing it allocates nothing.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    Fused(fused::Fused),
    Copy(Class, data::Copy),
    Select(Class, data::Select),
    IntBin(data::IntBin),
    Cast(data::Cast),
    Quantize(data::Quantize),
    Dequantize(data::Affine),
    Reduce(Class, reduce::Reduce),
    Softmax(reduce::Softmax),
    LayerNorm(reduce::LayerNorm),
    Matmul(matmul::Matmul),
    Conv(conv::Conv),
}

impl Step {
    pub(crate) fn exec(&self, st: &mut Storage, ctx: &Ctx) {
        match self {
            Step::Fused(f) => st.with_out::<f32, _>(f.out, |out, st| fused::run(f, st, out, ctx)),
            Step::Copy(Class::F, c) => data::copy::<f32>(c, st),
            Step::Copy(Class::I, c) => data::copy::<i64>(c, st),
            Step::Copy(Class::B, c) => data::copy::<u8>(c, st),
            Step::Select(Class::F, s) => data::select::<f32>(s, st),
            Step::Select(Class::I, s) => data::select::<i64>(s, st),
            Step::Select(Class::B, s) => data::select::<u8>(s, st),
            Step::IntBin(s) => data::int_bin(s, st),
            Step::Cast(c) => data::cast(c, st, ctx),
            Step::Quantize(q) => data::quantize(q, st),
            Step::Dequantize(q) => data::dequantize(q, st, ctx),
            Step::Reduce(Class::F, r) => {
                reduce::reduce::<f32>(r, st);
                st.with_out::<f32, _>(r.out, |o, _| ctx.round(&mut o[..r.out_len]));
            }
            Step::Reduce(_, r) => reduce::reduce::<i64>(r, st),
            Step::Softmax(s) => reduce::softmax(s, st, ctx),
            Step::LayerNorm(l) => reduce::layer_norm(l, st, ctx),
            Step::Matmul(m) => matmul::matmul(m, st, ctx),
            Step::Conv(c) => conv::conv(c, st, ctx),
        }
    }

    /// A short name for plan summaries.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Step::Fused(_) => "elementwise",
            Step::Copy(..) => "copy",
            Step::Select(..) => "select",
            Step::IntBin(_) => "int-elementwise",
            Step::Cast(_) => "cast",
            Step::Quantize(_) => "quantize",
            Step::Dequantize(_) => "dequantize",
            Step::Reduce(..) => "reduce",
            Step::Softmax(_) => "softmax",
            Step::LayerNorm(_) => "layer_norm",
            Step::Matmul(_) => "matmul",
            Step::Conv(_) => "conv",
        }
    }
}
