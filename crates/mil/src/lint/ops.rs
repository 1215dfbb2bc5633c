//! Op-specific rules: ops the ANE does not run, and per-op restrictions (conv, matmul, concat, …).

use super::target::{E, N, PerChip, W};
use super::{Ctx, Linter};
use crate::ir::Operation;
use crate::types::{DType, Dim, Type};
use crate::value::Value;

/// Ops reported unsupported on every family (ANEForge "walled everywhere"; ane-bridge for the
/// state ops).
const WALLED: &[&str] = &[
    "reduce_prod",
    "logical_and",
    "logical_or",
    "logical_xor",
    "logical_not",
    "mod",
    "band_part",
    "lstm",
    "rnn",
    "gru",
    "nan_to_num",
    "read_state",
    "write_state",
];

/// Ops rejected by code generation on M1 (ANEForge; docs/ane-restrictions.md, other lint rules).
const WALLED_M1: &[&str] = &["topk", "sort", "dynamic_slice"];

impl Linter {
    /// Op-specific rules.
    pub(super) fn op(&mut self, op: &Operation, ctx: &Ctx) {
        let out_name = op.outputs.first().map(|(n, _)| n.as_str()).unwrap_or("");
        if WALLED.contains(&op.op.as_str()) {
            self.emit(
                PerChip::all(E),
                op.span,
                "ane-unsupported-op",
                format!("`{}` is not supported by the ANE", op.op),
            );
        }
        if WALLED_M1.contains(&op.op.as_str()) {
            self.emit(
                PerChip { m12: E, m3: N, m4: N },
                op.span,
                "ane-unsupported-op",
                format!("`{}` is rejected by code generation on M1", op.op),
            );
        }
        let fp32_compute = !matches!(op.op.as_str(), "const" | "cast" | "identity")
            && !op.op.starts_with("constexpr_")
            && op.outputs.iter().any(|(_, t)| t.dtype() == Some(DType::Fp32));
        if fp32_compute {
            // All sources: the ANE computes in fp16; fp32 appears only as a boundary cast.
            self.emit(
                PerChip::all(W),
                op.span,
                "ane-fp32-compute",
                format!(
                    "{} `{out_name}` computes in fp32; the ANE computes in fp16",
                    op.op
                ),
            );
        }
        match op.op.as_str() {
            "gelu" => {
                // Orion (M4 Max, macOS 15): gelu rejected; ANEForge: native LUT gelu on M1.
                self.emit(
                    PerChip { m12: W, m3: W, m4: E },
                    op.span,
                    "ane-gelu",
                    "gelu is reported rejected; use the tanh approximation built from tanh/mul/add".into(),
                );
            }
            "sqrt" | "rsqrt" => {
                if let Some(x) = op.arg("x").and_then(Value::as_var) {
                    if ctx.follows_reduce(x, 3) {
                        // rustane (M4 Max): sqrt/rsqrt after a reduce fails to compile;
                        // ANEForge lists both native on M1+.
                        self.emit(
                            PerChip { m12: W, m3: W, m4: E },
                            op.span,
                            "ane-rsqrt-after-reduce",
                            format!(
                                "{} of a reduction fails to compile on some chips; use pow(x, -0.5)",
                                op.op
                            ),
                        );
                    }
                }
            }
            "reduce_mean" => {
                // ane-bridge (M5, 26.5.2): compiles, fails at dispatch; ANEForge: native.
                self.emit(
                    PerChip::all(W),
                    op.span,
                    "ane-reduce-mean",
                    "reduce_mean is reported to fail at dispatch on M5; use reduce_sum and a scale".into(),
                );
            }
            "scaled_dot_product_attention" if op.arg("attn_mask").is_some() => {
                // maderix test_ane_sdpa5.m; Orion #6: the mask is ignored.
                self.emit(
                    PerChip::all(E),
                    op.span,
                    "ane-sdpa-mask",
                    "the ANE ignores scaled_dot_product_attention's attn_mask; decompose the attention"
                        .into(),
                );
            }
            "conv" => self.conv(op, ctx),
            "matmul" => {
                for flag in ["transpose_x", "transpose_y"] {
                    if matches!(op.arg(flag), Some(Value::Literal(_))) {
                        // Orion #15: inline true/false is rejected; use named consts.
                        self.emit(
                            PerChip::all(E),
                            op.span,
                            "ane-inline-flag",
                            format!(
                                "matmul `{flag}` is an inline literal; the ANE compiler needs a named const"
                            ),
                        );
                    }
                }
                // [PR] 709b602: matmul fails on M1/M2; the report trains with matmul on M1.
                self.emit(
                    PerChip { m12: W, m3: N, m4: N },
                    op.span,
                    "ane-matmul-m1",
                    "matmul is reported (unverified) to fail on M1/M2".into(),
                );
            }
            "cast" => {
                let to_int = ctx
                    .literal_str(op.arg("dtype"))
                    .is_some_and(|d| d.starts_with("int"));
                // [PR] M1/M2 reject cast (unverified); ANEForge: cast→int32 walled on M1.
                let sev = PerChip {
                    m12: if to_int { E } else { W },
                    m3: N,
                    m4: N,
                };
                self.emit(
                    sev,
                    op.span,
                    "ane-cast",
                    "cast is reported to fail on M1/M2; prefer fp16 I/O".into(),
                );
            }
            "concat" => self.concat(op, ctx),
            "softmax" => {
                let axis = ctx.literal_int(op.arg("axis")).unwrap_or(-1);
                if let Some(Type::Tensor { shape, .. }) = op.arg("x").and_then(|v| ctx.type_of(v)) {
                    let r = shape.len() as i64;
                    let a = if axis < 0 { axis + r } else { axis };
                    if r == 4 && a == 1 {
                        if let Some(Dim::Known(c)) = shape.get(1) {
                            if !c.is_power_of_two() {
                                // Espresso validation pass (a rule, no measurement cited).
                                self.emit(
                                    PerChip::all(W),
                                    op.span,
                                    "ane-softmax-channels",
                                    format!("softmax over {c} channels; Espresso requires a power of two"),
                                );
                            }
                        }
                    }
                }
            }
            "slice_by_size" | "slice_by_index" => {
                let begin = ctx.literal_ints(op.arg("begin"));
                if begin.as_ref().and_then(|b| b.last()).is_some_and(|&b| b != 0) {
                    // ANEForge numeric-cliffs (M2 Pro): a width-offset slice turns |x| > 4094
                    // into ±inf before A16; rustane PR #9: width slices rejected on M3 Ultra.
                    self.emit(
                        PerChip { m12: W, m3: W, m4: N },
                        op.span,
                        "ane-width-slice",
                        "slice at a non-zero last-axis offset: values above 4094 saturate to inf on pre-M4 chips"
                            .into(),
                    );
                }
            }
            "mul" => {
                let zero = |v: Option<&Value>| {
                    ctx.literal_f64s(v)
                        .is_some_and(|vals| !vals.is_empty() && vals.iter().all(|&x| x == 0.0))
                };
                let reduced = |v: Option<&Value>| {
                    v.and_then(Value::as_var)
                        .is_some_and(|x| ctx.follows_reduce(x, 0))
                };
                let (x, y) = (op.arg("x"), op.arg("y"));
                if (reduced(x) && zero(y)) || (reduced(y) && zero(x)) {
                    // ANEForge: mul(reduce_output, 0.0) fails to compile.
                    self.emit(
                        PerChip::all(E),
                        op.span,
                        "ane-mul-reduce-zero",
                        "multiplying a reduction by 0 fails to compile".into(),
                    );
                }
            }
            _ => {}
        }
    }

    fn conv(&mut self, op: &Operation, ctx: &Ctx) {
        if let Some(w) = op.arg("weight").and_then(Value::as_var) {
            let is_const = ctx
                .producers
                .get(w)
                .is_some_and(|p| p.op == "const" || p.op.starts_with("constexpr_"));
            if !is_const {
                // maderix test_weight_patch.m: a conv weight must be a compile-time constant.
                self.emit(
                    PerChip::all(E),
                    op.span,
                    "ane-conv-weight",
                    format!("conv weight `{w}` is not a constant; use matmul for weights that change"),
                );
            }
        }
        if op.arg("bias").is_some() {
            // Orion #16: conv has no bias=; the `ane` crate emits one. Disputed.
            self.emit(
                PerChip::all(W),
                op.span,
                "ane-conv-bias",
                "conv bias is reported unsupported; add it separately".into(),
            );
        }
        if let Some(Type::Tensor { shape, .. }) = op.arg("weight").and_then(|v| ctx.type_of(v)) {
            if shape.len() >= 3 {
                if let Some(Dim::Known(kw)) = shape.last() {
                    let cap = self.target.max_conv_kernel_width();
                    if *kw > 13 {
                        // ANEForge; ane-bridge (M5): kernel width ≤ 13 on M1, ≤ 15 on M5.
                        self.emit(
                            PerChip::past_limit(*kw, 15, PerChip { m12: E, m3: W, m4: N }),
                            op.span,
                            "ane-conv-kernel",
                            format!("conv kernel width {kw} exceeds {cap}"),
                        );
                    }
                }
            }
        }
    }

    fn concat(&mut self, op: &Operation, ctx: &Ctx) {
        let n = match op.arg("values") {
            Some(Value::Tuple(items)) => items.len(),
            _ => 1,
        };
        if n > 2 {
            // ANEForge (e5rt path): concat takes exactly 2 inputs; maderix trains with 2–6 on
            // M4/M5; Orion: concat rejected on M4 Max. Disputed.
            self.emit(
                PerChip::all(W),
                op.span,
                "ane-concat-inputs",
                format!("concat of {n} tensors; some paths accept exactly 2"),
            );
        }
        let axis = ctx.literal_int(op.arg("axis"));
        let rank = op.outputs.first().and_then(|(_, t)| t.rank());
        if let (Some(a), Some(r)) = (axis, rank) {
            if a == -1 || a == r as i64 - 1 {
                // rustane PR #9 (M3 Ultra, 26.3.1): width-axis concat rejected.
                self.emit(
                    PerChip { m12: N, m3: W, m4: N },
                    op.span,
                    "ane-width-concat",
                    "concat along the last axis is reported rejected on M3".into(),
                );
            }
        }
    }
}
