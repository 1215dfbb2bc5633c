//! Linear algebra: `linear`, `matmul`, `conv` and its parameters.

use super::constants::{int_lit, ints_lit};
use super::{FunctionBuilder, R, Var};
use crate::value::Literal;

impl FunctionBuilder {
    pub fn linear(&mut self, x: &Var, weight: &Var, bias: Option<&Var>) -> R {
        let mut args = Vec::new();
        if let Some(b) = bias {
            args.push(("bias", Self::v(b)));
        }
        args.push(("weight", Self::v(weight)));
        args.push(("x", Self::v(x)));
        self.op1("linear", &args)
    }

    pub fn matmul(&mut self, x: &Var, y: &Var, transpose_x: bool, transpose_y: bool) -> R {
        let tx = self.param("matmul", "transpose_x", Literal::scalar_bool(transpose_x))?;
        let ty = self.param("matmul", "transpose_y", Literal::scalar_bool(transpose_y))?;
        self.op1(
            "matmul",
            &[
                ("transpose_x", Self::v(&tx)),
                ("transpose_y", Self::v(&ty)),
                ("x", Self::v(x)),
                ("y", Self::v(y)),
            ],
        )
    }

    /// Convolution with `pad_type = "custom"` and explicit pads (`[begin0, end0, begin1, end1, …]`).
    pub fn conv(&mut self, x: &Var, weight: &Var, params: &ConvParams, bias: Option<&Var>) -> R {
        let nsp = x.ty.rank().unwrap_or(2).saturating_sub(2);
        let ones = vec![1i64; nsp];
        let zeros = vec![0; 2 * nsp];
        let strides = self.param(
            "conv",
            "strides",
            ints_lit(params.strides.as_deref().unwrap_or(&ones)),
        )?;
        let dil = self.param(
            "conv",
            "dilations",
            ints_lit(params.dilations.as_deref().unwrap_or(&ones)),
        )?;
        let pad = self.param("conv", "pad", ints_lit(params.pad.as_deref().unwrap_or(&zeros)))?;
        let groups = self.param("conv", "groups", int_lit(params.groups))?;
        let pad_type = self.param("conv", "pad_type", Literal::string(&params.pad_type))?;
        let mut args = Vec::new();
        if let Some(b) = bias {
            args.push(("bias", Self::v(b)));
        }
        args.extend([
            ("dilations", Self::v(&dil)),
            ("groups", Self::v(&groups)),
            ("pad", Self::v(&pad)),
            ("pad_type", Self::v(&pad_type)),
            ("strides", Self::v(&strides)),
            ("weight", Self::v(weight)),
            ("x", Self::v(x)),
        ]);
        self.op1("conv", &args)
    }
}

/// Convolution parameters beyond input and weight.
#[derive(Clone, Debug)]
pub struct ConvParams {
    pub strides: Option<Vec<i64>>,
    pub dilations: Option<Vec<i64>>,
    /// `[begin, end]` per spatial axis (used with `pad_type = "custom"`).
    pub pad: Option<Vec<i64>>,
    pub pad_type: String,
    pub groups: i64,
}

impl Default for ConvParams {
    fn default() -> ConvParams {
        ConvParams {
            strides: None,
            dilations: None,
            pad: None,
            pad_type: "valid".into(),
            groups: 1,
        }
    }
}
