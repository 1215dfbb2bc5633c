//! `run_with`: a kernel run on the caller's input and output buffers gives exactly what `run`
//! gives on the kernel's own, whatever the buffers' alignment, and wrong buffers are errors.

use malus_cpu::{CompileOptions, CpuError, CpuKernel, Numerics, compile};
use malus_mil::{DType, FunctionBuilder, Program, Type, Weights};

/// `y = softmax(x·xᵀ-ish product) + 1` over two inputs, with `dtype` I/O.
fn kernel(dtype: DType) -> CpuKernel {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(dtype, &[1, 4, 8]));
    let w = b.input("w", Type::tensor(dtype, &[1, 8, 4]));
    let p = b.matmul(&x, &w, false, false).unwrap();
    let s = b.softmax(&p, -1).unwrap();
    let y = b.name("y").relu(&s).unwrap();
    let z = b.name("z").mul(&p, &p).unwrap();
    let opts = CompileOptions::default().numerics(Numerics::F32);
    compile(&Program::new(vec![b.build(&[&y, &z])]), &Weights::new(), &opts).unwrap()
}

fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 0.37 + seed).sin() * 2.0).collect()
}

fn encode(dtype: DType, v: &[f32]) -> Vec<u8> {
    match dtype {
        DType::Fp16 => v
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

#[test]
fn caller_buffers_give_the_same_outputs_as_owned_ones() {
    for dtype in [DType::Fp32, DType::Fp16] {
        let (x, w) = (values(32, 0.1), values(32, 0.7));
        let mut owned = kernel(dtype);
        owned.write_input_f32("x", &x).unwrap();
        owned.write_input_f32("w", &w).unwrap();
        owned.run().unwrap();
        let want_y = owned.read_output_bytes("y").unwrap().to_vec();
        let want_z = owned.read_output_bytes("z").unwrap().to_vec();
        assert!(want_z.iter().any(|&b| b != 0));

        // Offsets 0 and 1: aligned buffers take the bulk path, misaligned ones the per-element one.
        for shift in [0, 1] {
            let mut k = kernel(dtype);
            let pad = |mut b: Vec<u8>| {
                b.splice(0..0, std::iter::repeat_n(0u8, shift));
                b
            };
            let (xb, wb) = (pad(encode(dtype, &x)), pad(encode(dtype, &w)));
            let mut yb = vec![0u8; want_y.len() + shift];
            let mut zb = vec![0u8; want_z.len() + shift];
            k.run_with(
                &[&xb[shift..], &wb[shift..]],
                &mut [&mut yb[shift..], &mut zb[shift..]],
            )
            .unwrap();
            assert_eq!(&yb[shift..], &want_y[..], "{dtype:?} shift {shift}");
            assert_eq!(&zb[shift..], &want_z[..], "{dtype:?} shift {shift}");
            // The kernel's own outputs were never computed.
            assert!(matches!(k.read_output_bytes("y"), Err(CpuError::NotRun { .. })));
        }
    }
}

#[test]
fn wrong_caller_buffers_are_errors() {
    let mut k = kernel(DType::Fp32);
    let x = vec![0u8; 128];
    let mut y = vec![0u8; 64];
    let mut z = vec![0u8; 64];
    let e = k.run_with(&[&x], &mut [&mut y, &mut z]).unwrap_err();
    assert!(e.to_string().contains("input buffers"), "{e}");
    let e = k.run_with(&[&x, &x[..127]], &mut [&mut y, &mut z]).unwrap_err();
    assert!(
        e.to_string().contains("`w`") && e.to_string().contains("127"),
        "{e}"
    );
    let e = k.run_with(&[&x, &x], &mut [&mut y]).unwrap_err();
    assert!(e.to_string().contains("output buffers"), "{e}");
    let mut short = vec![0u8; 60];
    let e = k.run_with(&[&x, &x], &mut [&mut y, &mut short]).unwrap_err();
    assert!(e.to_string().contains("`z`"), "{e}");
}

#[test]
fn reading_an_output_before_any_run_is_an_error() {
    let k = kernel(DType::Fp32);
    let e = k.output_f32("y").unwrap_err();
    assert!(e.to_string().contains("run the kernel first"), "{e}");
}
