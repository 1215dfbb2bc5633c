//! Fp16 numerics: every op result is an IEEE fp16 value — overflow to ±inf, gradual underflow
//! through fp16 subnormals — while f32 numerics keep the exact values. Matmuls and reductions
//! accumulate in f32 before rounding.

use half::f16;
use malus_cpu::{CompileOptions, CpuKernel, Numerics, compile};
use malus_mil::{DType, FunctionBuilder, Program, Type, Var, Weights};

fn build(f: impl FnOnce(&mut FunctionBuilder) -> Vec<Var>) -> Program {
    let mut b = FunctionBuilder::new("main", "ios18");
    let outs = f(&mut b);
    Program::new(vec![b.build(&outs.iter().collect::<Vec<_>>())])
}

fn run(p: &Program, n: Numerics, inputs: &[(&str, &[f32])]) -> CpuKernel {
    let mut k = compile(p, &Weights::new(), &CompileOptions::default().numerics(n)).unwrap();
    for (name, v) in inputs {
        k.write_input_f32(name, v).unwrap();
    }
    k.run().unwrap();
    k
}

/// IEEE fp16 product of two fp16 values (exact in f32, then one rounding).
fn fp16_mul(a: f32, b: f32) -> f32 {
    f16::from_f32(f16::from_f32(a).to_f32() * f16::from_f32(b).to_f32()).to_f32()
}

#[test]
fn overflow_and_gradual_underflow() {
    // out = cast(x * y, fp32): the product is an fp16 tensor, the result fp32.
    let p = build(|b| {
        let x = b.input("x", Type::tensor(DType::Fp16, &[6]));
        let y = b.input("y", Type::tensor(DType::Fp16, &[6]));
        let m = b.mul(&x, &y).unwrap();
        vec![b.name("out").cast(&m, DType::Fp32).unwrap()]
    });
    let t = 2f32.powi(-14); // smallest normal fp16
    let x = [300.0, -300.0, t, t, t, t];
    let y = [300.0, 300.0, 2f32.powi(-5), 0.3, 2f32.powi(-11), 2f32.powi(-12)];
    let f32_out = run(&p, Numerics::F32, &[("x", &x), ("y", &y)])
        .output_f32("out")
        .unwrap();
    let h_out = run(&p, Numerics::Fp16, &[("x", &x), ("y", &y)])
        .output_f32("out")
        .unwrap();
    let exact: Vec<f32> = x
        .iter()
        .zip(&y)
        .map(|(a, b)| f16::from_f32(*a).to_f32() * f16::from_f32(*b).to_f32())
        .collect();
    // f32 numerics: the exact products, 90000 included (beyond fp16's 65504).
    assert_eq!(f32_out, exact);
    // fp16 numerics: ±inf, then subnormals: 2^-19 exactly, 0.3·2^-14 rounded to a multiple
    // of 2^-24, 2^-25 a tie that rounds to even (0), 2^-26 flushed by rounding, never by FTZ.
    assert_eq!(h_out[0], f32::INFINITY);
    assert_eq!(h_out[1], f32::NEG_INFINITY);
    assert_eq!(h_out[2], 2f32.powi(-19));
    assert!(h_out[2] < t && h_out[2] > 0.0, "a subnormal survives");
    assert_eq!(h_out[3], fp16_mul(t, 0.3));
    assert_eq!(h_out[3] / 2f32.powi(-24), (h_out[3] / 2f32.powi(-24)).round());
    assert_eq!(h_out[4], 0.0);
    assert_eq!(h_out[5], 0.0);
    assert!(exact[4] > 0.0 && exact[5] > 0.0);
}

#[test]
fn fused_ops_round_one_by_one() {
    // (x + 1024) - 1024: fp16 has spacing 1 at 1024, so 0.3 is lost in fp16 but not in f32 —
    // even though both ops run in one fused pass.
    let p = build(|b| {
        let x = b.input("x", Type::tensor(DType::Fp16, &[2]));
        let c = b.scalar(DType::Fp16, 1024.0);
        let a = b.add(&x, &c).unwrap();
        let s = b.sub(&a, &c).unwrap();
        vec![b.name("out").cast(&s, DType::Fp32).unwrap()]
    });
    let k = run(&p, Numerics::Fp16, &[("x", &[0.3, 0.75])]);
    assert_eq!(k.stats().steps, 1, "{:?}", k.stats());
    assert_eq!(k.stats().fused_ops, 1, "{:?}", k.stats());
    assert_eq!(k.output_f32("out").unwrap(), vec![0.0, 1.0]);
    let f = run(&p, Numerics::F32, &[("x", &[0.3, 0.75])])
        .output_f32("out")
        .unwrap();
    assert_eq!(f, vec![f16::from_f32(0.3).to_f32(), 0.75]);
}

#[test]
fn matmul_and_reductions_accumulate_in_f32() {
    // 4096 ones summed: an fp16 accumulator stalls at 2048 (spacing 2), an f32 one does not.
    let p = build(|b| {
        let x = b.input("x", Type::tensor(DType::Fp16, &[1, 4096]));
        let y = b.input("y", Type::tensor(DType::Fp16, &[4096, 1]));
        let m = b.name("m").matmul(&x, &y, false, false).unwrap();
        let r = b.name("r").reduce_sum(&x, &[1], false).unwrap();
        vec![m, r]
    });
    let ones = vec![1.0f32; 4096];
    let k = run(&p, Numerics::Fp16, &[("x", &ones), ("y", &ones)]);
    assert_eq!(k.output_f32("m").unwrap(), vec![4096.0]);
    assert_eq!(k.output_f32("r").unwrap(), vec![4096.0]);
}

#[test]
fn fp16_mode_rounds_fp32_inputs_and_outputs_of_every_op() {
    let p = build(|b| {
        let x = b.input("x", Type::tensor(DType::Fp32, &[3]));
        vec![b.name("out").exp(&x).unwrap()]
    });
    let x = [0.1f32, 12.0, -20.0];
    let h = run(&p, Numerics::Fp16, &[("x", &x)]).output_f32("out").unwrap();
    let f = run(&p, Numerics::F32, &[("x", &x)]).output_f32("out").unwrap();
    for i in 0..3 {
        let want = f16::from_f32(f16::from_f32(x[i]).to_f32().exp()).to_f32();
        assert!(h[i] == want || (h[i] - want).abs() <= want * 1e-3, "{h:?}");
        assert_eq!(h[i], f16::from_f32(h[i]).to_f32(), "not an fp16 value: {}", h[i]);
    }
    // exp(12) = 162754.8 overflows fp16; exp(-20) = 2.06e-9 underflows to 0.
    assert_eq!(h[1], f32::INFINITY);
    assert_eq!(h[2], 0.0);
    assert!(f[1] > 162_000.0 && f[2] > 0.0);
}
