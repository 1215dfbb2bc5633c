//! Quantization: `quantize`, `dequantize`, `constexpr_affine_dequantize`.

use super::{FunctionBuilder, R, Var};
use crate::types::DType;
use crate::value::{Literal, Value};

impl FunctionBuilder {
    /// Quantizes to `int8`/`uint8` with a scalar scale (and optional zero point).
    pub fn quantize(&mut self, input: &Var, scale: &Var, zero_point: Option<&Var>, output_dtype: DType) -> R {
        let od = self.param("quantize", "output_dtype", Literal::string(output_dtype.name()))?;
        let mut args = vec![
            ("input", Self::v(input)),
            ("output_dtype", Self::v(&od)),
            ("scale", Self::v(scale)),
        ];
        if let Some(z) = zero_point {
            args.push(("zero_point", Self::v(z)));
        }
        self.op1("quantize", &args)
    }

    pub fn dequantize(&mut self, input: &Var, scale: &Var, zero_point: Option<&Var>) -> R {
        let mut args = vec![("input", Self::v(input)), ("scale", Self::v(scale))];
        if let Some(z) = zero_point {
            args.push(("zero_point", Self::v(z)));
        }
        self.op1("dequantize", &args)
    }

    /// `constexpr_affine_dequantize` with all operands as literals, as Core ML writes it.
    pub fn constexpr_affine_dequantize(
        &mut self,
        quantized: Literal,
        scale: Literal,
        zero_point: Literal,
        axis: i32,
    ) -> R {
        self.op1(
            "constexpr_affine_dequantize",
            &[
                ("axis", Value::Literal(Literal::scalar_i32(axis))),
                ("quantized_data", Value::Literal(quantized)),
                ("scale", Value::Literal(scale)),
                ("zero_point", Value::Literal(zero_point)),
            ],
        )
    }
}
