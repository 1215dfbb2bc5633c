//! Each lint rule fires on a program that breaks it, with the severity its evidence supports per
//! chip family, and stays quiet on a program that follows it.

use malus_mil::lint::{Target, lint};
use malus_mil::{DType, FunctionBuilder, Program, Severity, Type, parse};

/// Severity of the first finding with `code`, if any.
fn sev(p: &Program, t: Target, code: &str) -> Option<Severity> {
    lint(p, t)
        .iter()
        .filter(|d| d.code == code)
        .map(|d| d.severity)
        .max()
}

/// A maderix-style dynamic-weight matmul: one fp16 input [1, 768, 1, 256 + 512] with the
/// activations in spatial [0, 256) and Wᵀ (768 × 512) after them; output [1, 512, 1, 256].
fn packed_matmul() -> Program {
    let (c, s, o) = (768i64, 256i64, 512i64);
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input(
        "x",
        Type::tensor(DType::Fp16, &[1, c as usize, 1, (s + o) as usize]),
    );
    let act = b.slice_by_size(&x, &[0, 0, 0, 0], &[1, c, 1, s]).unwrap();
    let w = b.slice_by_size(&x, &[0, 0, 0, s], &[1, c, 1, o]).unwrap();
    let a = b.reshape(&act, &[1, 1, c, s]).unwrap();
    let a = b.transpose(&a, &[0, 1, 3, 2]).unwrap();
    let w = b.reshape(&w, &[1, 1, c, o]).unwrap();
    let y = b.matmul(&a, &w, false, false).unwrap();
    let y = b.transpose(&y, &[0, 1, 3, 2]).unwrap();
    let y = b.name("y").reshape(&y, &[1, o, 1, s]).unwrap();
    Program::new(vec![b.build(&[&y])])
}

#[test]
fn packed_matmul_has_no_errors_on_m4_and_is_warned_on_old_chips() {
    let p = packed_matmul();
    assert!(malus_mil::validate(&p).is_empty());
    let m4 = lint(&p, Target::M4Plus);
    assert!(m4.iter().all(|d| d.severity == Severity::Warning), "{m4:#?}");
    // The width-offset weight slice saturates on pre-A16 chips.
    assert_eq!(sev(&p, Target::M1M2, "ane-width-slice"), Some(Severity::Warning));
    assert_eq!(sev(&p, Target::M4Plus, "ane-width-slice"), None);
    assert_eq!(
        sev(&p, Target::M1M2, "ane-scalar-spelling"),
        Some(Severity::Warning)
    );
    assert_eq!(
        sev(&p, Target::Strictest, "ane-matmul-m1"),
        Some(Severity::Warning)
    );
    assert!(
        lint(&p, Target::Strictest)
            .iter()
            .all(|d| d.severity == Severity::Warning)
    );
}

fn one_op(input: &str, body: &str, out: &str) -> Program {
    let text =
        format!("program(1.3)\n{{\n    func main<ios18>({input}) {{\n{body}\n        }} -> ({out});\n}}\n");
    let p = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let diags = malus_mil::validate(&p);
    assert!(diags.is_empty(), "{diags:?}\n{text}");
    p
}

#[test]
fn width_alignment() {
    let p = one_op(
        "tensor<fp16, [1, 64, 1, 100]> x",
        "tensor<fp16, [1, 64, 1, 100]> y = relu(x = x);",
        "y",
    );
    assert_eq!(sev(&p, Target::M1M2, "ane-width-align"), Some(Severity::Error));
    let p = one_op(
        "tensor<fp16, [1, 64, 1, 80]> x",
        "tensor<fp16, [1, 64, 1, 80]> y = relu(x = x);",
        "y",
    );
    assert_eq!(sev(&p, Target::M1M2, "ane-width-align"), Some(Severity::Warning));
    assert_eq!(sev(&p, Target::M4Plus, "ane-width-align"), Some(Severity::Error));
    let p = one_op(
        "tensor<fp16, [1, 64, 1, 256]> x",
        "tensor<fp16, [1, 64, 1, 256]> y = relu(x = x);",
        "y",
    );
    assert_eq!(sev(&p, Target::Strictest, "ane-width-align"), None);
    assert_eq!(sev(&p, Target::Strictest, "ane-min-width"), None);
    let p = one_op(
        "tensor<fp16, [1, 64, 1, 32]> x",
        "tensor<fp16, [1, 64, 1, 32]> y = relu(x = x);",
        "y",
    );
    assert_eq!(
        sev(&p, Target::Strictest, "ane-min-width"),
        Some(Severity::Warning)
    );
}

#[test]
fn surface_size_rank_and_dtype() {
    let p = one_op(
        "tensor<fp16, [1, 16, 1, 64]> x",
        "tensor<fp16, [1, 16, 1, 64]> y = relu(x = x);",
        "y",
    );
    assert_eq!(
        sev(&p, Target::Strictest, "ane-min-surface"),
        Some(Severity::Warning)
    );
    let p = one_op(
        "tensor<fp16, [512, 256]> x",
        "tensor<fp16, [512, 256]> y = relu(x = x);",
        "y",
    );
    assert_eq!(sev(&p, Target::Strictest, "ane-io-rank"), Some(Severity::Warning));
    assert_eq!(sev(&p, Target::Strictest, "ane-min-surface"), None);
    let p = one_op(
        "tensor<int32, [1, 64, 1, 512]> x",
        "tensor<int32, [1, 64, 1, 512]> y = add(x = x, y = x);",
        "y",
    );
    assert_eq!(sev(&p, Target::M4Plus, "ane-io-dtype"), Some(Severity::Error));
}

#[test]
fn multiple_inputs_order_and_sizes() {
    let p = one_op(
        "tensor<fp16, [1, 64, 1, 512]> b, tensor<fp16, [1, 64, 1, 1]> a",
        "tensor<fp16, [1, 64, 1, 512]> y = add(x = b, y = a);",
        "y",
    );
    assert_eq!(
        sev(&p, Target::Strictest, "ane-multi-input"),
        Some(Severity::Warning)
    );
    assert_eq!(
        sev(&p, Target::Strictest, "ane-io-order"),
        Some(Severity::Warning)
    );
    assert_eq!(
        sev(&p, Target::Strictest, "ane-io-equal-size"),
        Some(Severity::Warning)
    );
}

#[test]
fn rsqrt_after_reduction() {
    let body = "tensor<int32, [1]> ax = const()[name = string(\"ax\"), val = tensor<int32, [1]>([1])];
            bool kd = const()[name = string(\"kd\"), val = bool(true)];
            tensor<fp16, [1, 1, 1, 512]> ss = reduce_sum(x = x, axes = ax, keep_dims = kd);
            fp16 eps = const()[name = string(\"eps\"), val = fp16(0x1p-10)];
            tensor<fp16, [1, 1, 1, 512]> se = add(x = ss, y = eps);
            tensor<fp16, [1, 1, 1, 512]> r = rsqrt(x = se);
            tensor<fp16, [1, 64, 1, 512]> y = mul(x = x, y = r);";
    let p = one_op("tensor<fp16, [1, 64, 1, 512]> x", body, "y");
    assert_eq!(
        sev(&p, Target::M4Plus, "ane-rsqrt-after-reduce"),
        Some(Severity::Error)
    );
    assert_eq!(
        sev(&p, Target::M1M2, "ane-rsqrt-after-reduce"),
        Some(Severity::Warning)
    );
    // pow(x, -0.5) is the accepted form.
    let ok = body.replace("rsqrt(x = se)", "pow(x = se, y = mh)").replace(
        "tensor<fp16, [1, 1, 1, 512]> r =",
        "fp16 mh = const()[name = string(\"mh\"), val = fp16(-0x1p-1)];\n            tensor<fp16, [1, 1, 1, 512]> r =",
    );
    let p = one_op("tensor<fp16, [1, 64, 1, 512]> x", &ok, "y");
    assert_eq!(sev(&p, Target::Strictest, "ane-rsqrt-after-reduce"), None);
}

#[test]
fn gelu_reduce_mean_and_walled_ops() {
    let p = one_op(
        "tensor<fp16, [1, 64, 1, 512]> x",
        "tensor<fp16, [1, 64, 1, 512]> y = gelu(x = x);",
        "y",
    );
    assert_eq!(sev(&p, Target::M4Plus, "ane-gelu"), Some(Severity::Error));
    assert_eq!(sev(&p, Target::M1M2, "ane-gelu"), Some(Severity::Warning));
    let p = one_op(
        "tensor<fp16, [1, 64, 1, 512]> x",
        "tensor<fp16, [1, 1, 1, 512]> y = reduce_mean(x = x, axes = tensor<int32, [1]>([1]), keep_dims = bool(true));",
        "y",
    );
    assert_eq!(
        sev(&p, Target::Strictest, "ane-reduce-mean"),
        Some(Severity::Warning)
    );
    let p = one_op(
        "tensor<fp16, [1, 64, 1, 512]> x",
        "tensor<fp16, [1, 64, 1, 512]> y = band_part(x = x);",
        "y",
    );
    assert_eq!(
        sev(&p, Target::M4Plus, "ane-unsupported-op"),
        Some(Severity::Error)
    );
    let p = one_op(
        "tensor<fp16, [1, 64, 1, 512]> x",
        "tensor<fp16, [1, 64, 1, 512]> y = topk(x = x);",
        "y",
    );
    assert_eq!(sev(&p, Target::M1M2, "ane-unsupported-op"), Some(Severity::Error));
    assert_eq!(sev(&p, Target::M4Plus, "ane-unsupported-op"), None);
}

#[test]
fn sdpa_mask_is_an_error() {
    let p = one_op(
        "tensor<fp16, [1, 4, 64, 64]> q",
        "tensor<fp16, [1, 4, 64, 64]> y = scaled_dot_product_attention(query = q, key = q, value = q, attn_mask = q);",
        "y",
    );
    assert_eq!(sev(&p, Target::M1M2, "ane-sdpa-mask"), Some(Severity::Error));
}

#[test]
fn conv_rules() {
    let p = one_op(
        "tensor<fp16, [1, 64, 1, 512]> x, tensor<fp16, [64, 64, 1, 1]> w",
        "tensor<fp16, [1, 64, 1, 512]> y = conv(x = x, weight = w);",
        "y",
    );
    assert_eq!(sev(&p, Target::M4Plus, "ane-conv-weight"), Some(Severity::Error));
    let body = "tensor<fp16, [64, 64, 1, 14]> w = const()[name = string(\"w\"), val = tensor<fp16, [64, 64, 1, 14]>(BLOBFILE(path = string(\"@model_path/weights/w.bin\"), offset = uint64(64)))];
            tensor<fp16, [64]> bb = const()[name = string(\"bb\"), val = tensor<fp16, [64]>(BLOBFILE(path = string(\"@model_path/weights/w.bin\"), offset = uint64(128)))];
            tensor<fp16, [1, 64, 1, 499]> y = conv(x = x, weight = w, bias = bb);";
    let p = one_op("tensor<fp16, [1, 64, 1, 512]> x", body, "y");
    assert_eq!(sev(&p, Target::M4Plus, "ane-conv-weight"), None);
    assert_eq!(sev(&p, Target::M1M2, "ane-conv-kernel"), Some(Severity::Error));
    assert_eq!(sev(&p, Target::M4Plus, "ane-conv-kernel"), None);
    assert_eq!(
        sev(&p, Target::Strictest, "ane-conv-bias"),
        Some(Severity::Warning)
    );
}

#[test]
fn matmul_inline_flags_and_cast() {
    let p = one_op(
        "tensor<fp16, [1, 1, 64, 512]> x",
        "tensor<fp16, [1, 1, 512, 512]> y = matmul(x = x, y = x, transpose_x = bool(true), transpose_y = bool(false));",
        "y",
    );
    assert_eq!(sev(&p, Target::M4Plus, "ane-inline-flag"), Some(Severity::Error));
    let body = "string d = const()[name = string(\"d\"), val = string(\"fp16\")];
            tensor<fp16, [1, 64, 1, 512]> y = cast(x = x, dtype = d);";
    let p = one_op("tensor<fp32, [1, 64, 1, 512]> x", body, "y");
    assert_eq!(sev(&p, Target::M1M2, "ane-cast"), Some(Severity::Warning));
    assert_eq!(sev(&p, Target::M4Plus, "ane-cast"), None);
}

#[test]
fn concat_and_extents() {
    let body = "int32 ax = const()[name = string(\"ax\"), val = int32(1)];
            bool il = const()[name = string(\"il\"), val = bool(false)];
            tensor<fp16, [1, 192, 1, 512]> y = concat(values = (x, x, x), axis = ax, interleave = il);";
    let p = one_op("tensor<fp16, [1, 64, 1, 512]> x", body, "y");
    assert_eq!(
        sev(&p, Target::Strictest, "ane-concat-inputs"),
        Some(Severity::Warning)
    );
    assert_eq!(sev(&p, Target::M3, "ane-width-concat"), None);
    let p = one_op(
        "tensor<fp16, [1, 1, 1, 20000]> x",
        "tensor<fp16, [1, 1, 1, 20000]> y = relu(x = x);",
        "y",
    );
    assert_eq!(sev(&p, Target::M3, "ane-extent"), Some(Severity::Error));
    assert_eq!(sev(&p, Target::M4Plus, "ane-extent"), None);
    // The channel axis of a 4-D tensor may reach 65536 on every family.
    let p = one_op(
        "tensor<fp16, [1, 20000, 1, 64]> x",
        "tensor<fp16, [1, 20000, 1, 64]> y = relu(x = x);",
        "y",
    );
    assert_eq!(sev(&p, Target::Strictest, "ane-extent"), None);
}

#[test]
fn dead_ops_unknown_dims_and_fp32_compute() {
    let p = one_op(
        "tensor<fp32, [1, 64, 1, ?]> x",
        "tensor<fp32, [1, 64, 1, ?]> z = relu(x = x);\n            tensor<fp32, [1, 64, 1, ?]> y = relu(x = x);",
        "y",
    );
    assert_eq!(sev(&p, Target::M4Plus, "ane-unknown-dim"), Some(Severity::Error));
    assert_eq!(sev(&p, Target::M4Plus, "ane-dead-op"), Some(Severity::Warning));
    assert_eq!(
        sev(&p, Target::M4Plus, "ane-fp32-compute"),
        Some(Severity::Warning)
    );
    assert_eq!(
        sev(&p, Target::M4Plus, "ane-elementwise-only"),
        Some(Severity::Warning)
    );
}

#[test]
fn mul_of_reduction_by_zero() {
    let body = "tensor<fp16, [1, 1, 1, 512]> s = reduce_sum(x = x, axes = tensor<int32, [1]>([1]), keep_dims = bool(true));
            fp16 z = const()[name = string(\"z\"), val = fp16(0x0p+0)];
            tensor<fp16, [1, 1, 1, 512]> y = mul(x = s, y = z);";
    let p = one_op("tensor<fp16, [1, 64, 1, 512]> x", body, "y");
    assert_eq!(
        sev(&p, Target::M4Plus, "ane-mul-reduce-zero"),
        Some(Severity::Error)
    );
}

#[test]
fn diagnostics_carry_positions_and_targets() {
    let p = one_op(
        "tensor<fp16, [1, 64, 1, 512]> x",
        "tensor<fp16, [1, 64, 1, 512]> y = relu(x = x);\n            tensor<fp16, [1, 64, 1, 512]> g = gelu(x = y);",
        "g",
    );
    let d = lint(&p, Target::M4Plus)
        .into_iter()
        .find(|d| d.code == "ane-gelu")
        .unwrap();
    assert_eq!((d.span.line, d.span.col), (5, 13));
    assert!(d.to_string().starts_with("5:13: error[ane-gelu]"), "{d}");
    assert!(d.message.contains("m4+"));
    assert_eq!(Target::from_name("strictest"), Some(Target::Strictest));
}
