//! Ops checked against values worked out by hand, and plan properties (views, folding, reuse).

use malus_cpu::{CompileOptions, CpuKernel, compile};
use malus_mil::{DType, FunctionBuilder, Literal, Program, Type, Var, Weights, parse};

fn kernel(b: FunctionBuilder, outs: &[&Var]) -> CpuKernel {
    compile(
        &Program::new(vec![b.build(outs)]),
        &Weights::new(),
        &CompileOptions::default(),
    )
    .unwrap()
}

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-6 + 1e-6 * w.abs(), "{got:?} vs {want:?}");
    }
}

#[test]
fn softmax_layer_norm_and_reductions_by_hand() {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp32, &[2, 2]));
    let s = b.name("s").softmax(&x, 0).unwrap();
    let l = b.name("l").layer_norm(&x, &[-1], None, None, 0.0).unwrap();
    let r = b.name("r").reduce_sum(&x, &[0, 1], false).unwrap();
    let m = b.name("m").reduce_max(&x, &[-1], true).unwrap();
    let mut k = kernel(b, &[&s, &l, &r, &m]);
    // x = [[0, 1], [ln 3, 3]]
    let ln3 = 3f32.ln();
    k.write_input_f32("x", &[0.0, 1.0, ln3, 3.0]).unwrap();
    k.run().unwrap();
    // Column 0: e^0 : e^ln3 = 1 : 3; column 1: e^1 : e^3.
    let e2 = (2f32).exp();
    close(
        &k.output_f32("s").unwrap(),
        &[0.25, 1.0 / (1.0 + e2), 0.75, e2 / (1.0 + e2)],
    );
    // Two-element rows normalise to [-1, 1] (or [1, -1]) with eps = 0.
    close(&k.output_f32("l").unwrap(), &[-1.0, 1.0, -1.0, 1.0]);
    close(&k.output_f32("r").unwrap(), &[4.0 + ln3]);
    assert_eq!(k.outputs()[2].shape, Vec::<usize>::new());
    close(&k.output_f32("m").unwrap(), &[1.0, 3.0]);
    assert_eq!(k.outputs()[3].shape, vec![2, 1]);
}

#[test]
fn matmul_transposes_and_vectors_by_hand() {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp32, &[2, 3]));
    let v = b.input("v", Type::tensor(DType::Fp32, &[3]));
    let xxt = b.name("xxt").matmul(&x, &x, false, true).unwrap();
    let xtx = b.name("xtx").matmul(&x, &x, true, false).unwrap();
    let xv = b.name("xv").matmul(&x, &v, false, false).unwrap();
    let vv = b.name("vv").matmul(&v, &v, false, false).unwrap();
    let mut k = kernel(b, &[&xxt, &xtx, &xv, &vv]);
    k.write_input_f32("x", &[1., 2., 3., 4., 5., 6.]).unwrap();
    k.write_input_f32("v", &[1., 0., -1.]).unwrap();
    k.run().unwrap();
    close(&k.output_f32("xxt").unwrap(), &[14., 32., 32., 77.]);
    close(
        &k.output_f32("xtx").unwrap(),
        &[17., 22., 27., 22., 29., 36., 27., 36., 45.],
    );
    close(&k.output_f32("xv").unwrap(), &[-2., -2.]);
    close(&k.output_f32("vv").unwrap(), &[2.]);
}

#[test]
fn constants_and_constant_ops_fold_at_compile_time() {
    let text = r#"program(1.3)
{
    func main<ios18>(tensor<fp32, [2, 2]> x) {
            tensor<fp32, [2, 2]> w = const()[name = string("w"), val = tensor<fp32, [2, 2]>([[1.0, 2.0], [3.0, 4.0]])];
            tensor<fp32, [2, 2]> wt = transpose(x = w, perm = tensor<int32, [2]>([1, 0]))[name = string("wt")];
            tensor<fp32, [2, 2]> w2 = mul(x = wt, y = fp32(2.0))[name = string("w2")];
            tensor<fp32, [2, 2]> out = add(x = x, y = w2)[name = string("out")];
        } -> (out);
}
"#;
    let p = parse(text).unwrap();
    let mut k = compile(&p, &Weights::new(), &CompileOptions::default()).unwrap();
    assert_eq!(k.stats().steps, 1, "{:?}", k.stats());
    assert_eq!(k.stats().const_ops, 3);
    k.write_input_f32("x", &[10., 20., 30., 40.]).unwrap();
    k.run().unwrap();
    close(&k.output_f32("out").unwrap(), &[12., 26., 34., 48.]);
}

#[test]
fn slices_reshapes_and_transposes_are_views() {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp32, &[4, 6]));
    let s = b
        .slice_by_index(&x, &[3, 0], &[0, 6], Some(&[-1, 2]), None, None, None)
        .unwrap(); // rows 3..1, cols 0,2,4
    let t = b.transpose(&s, &[1, 0]).unwrap(); // [3, 3]
    let e = b.expand_dims(&t, &[0]).unwrap();
    let q = b.squeeze(&e, &[0]).unwrap();
    let out = b.name("out").relu(&q).unwrap();
    let mut k = kernel(b, &[&out]);
    assert_eq!(k.stats().steps, 1, "{:?}", k.stats());
    let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
    k.write_input_f32("x", &x).unwrap();
    k.run().unwrap();
    // s = rows 3,2,1 × cols 0,2,4; t = sᵀ.
    close(
        &k.output_f32("out").unwrap(),
        &[18., 12., 6., 20., 14., 8., 22., 16., 10.],
    );
}

#[test]
fn buffers_are_reused_along_a_chain() {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp32, &[64, 64]));
    let mut h = x.clone();
    for _ in 0..20 {
        h = b.softmax(&h, -1).unwrap();
    }
    let out = b.name("out").identity(&h).unwrap();
    let k = kernel(b, &[&out]);
    // Input slot plus two alternating buffers, however long the chain.
    assert_eq!(k.stats().steps, 20);
    assert!(k.stats().runtime_slots <= 3, "{:?}", k.stats());
}

#[test]
fn transposed_matmul_output_is_written_in_place() {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp32, &[1, 3, 2]));
    let y = b.input("y", Type::tensor(DType::Fp32, &[1, 2, 4]));
    let m = b.matmul(&x, &y, false, false).unwrap();
    let t = b.transpose(&m, &[0, 2, 1]).unwrap();
    let out = b.name("out").reshape(&t, &[4, 3]).unwrap();
    let mut k = kernel(b, &[&out]);
    // The matmul writes its result transposed, so neither transpose nor reshape copies.
    assert_eq!(k.stats().steps, 1, "{:?}", k.stats());
    k.write_input_f32("x", &[1., 2., 3., 4., 5., 6.]).unwrap();
    k.write_input_f32("y", &[1., 0., 1., 2., 0., 1., 1., -1.])
        .unwrap();
    k.run().unwrap();
    // x·y = [[1,2,3,0],[3,4,7,2],[5,6,11,4]]; out = (x·y)ᵀ.
    close(
        &k.output_f32("out").unwrap(),
        &[1., 3., 5., 2., 4., 6., 3., 7., 11., 0., 2., 4.],
    );
}

#[test]
fn int_and_bool_ops_are_exact() {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Int32, &[3]));
    let big = b.constant(Literal::ints(DType::Int32, &[2_000_000_000, 7, -7]));
    let s = b.name("s").add(&x, &big).unwrap(); // wraps like int32
    let d = b.name("d").real_div(&x, &big).unwrap();
    let r = b.name("r").reduce_sum(&x, &[0], false).unwrap();
    let c = b.cast(&x, DType::Bool).unwrap();
    let sel = b.name("sel").select(&c, &x, &big).unwrap();
    let mut k = kernel(b, &[&s, &d, &r, &sel]);
    k.write_input_f32("x", &[2_000_000_000.0, 0.0, 20.0]).unwrap();
    k.run().unwrap();
    let ints = |name: &str| -> Vec<i32> {
        k.read_output_bytes(name)
            .unwrap()
            .chunks(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    assert_eq!(ints("s"), vec![(4_000_000_000i64 as i32), 7, 13]);
    assert_eq!(ints("d"), vec![1, 0, -2]);
    assert_eq!(ints("r"), vec![2_000_000_020]);
    assert_eq!(ints("sel"), vec![2_000_000_000, 7, 20]);
}

#[test]
fn flexible_shapes_are_resolved_from_options() {
    let text = r#"program(1.3)
{
    func main<ios18>(tensor<fp32, [?, 3]> x) {
            tensor<fp32, [?, 3]> y = relu(x = x)[name = string("y")];
            tensor<fp32, [?]> out = reduce_sum(x = y, axes = tensor<int32, [1]>([1]))[name = string("out")];
        } -> (out);
}
"#;
    let p = parse(text).unwrap();
    let mut k = compile(
        &p,
        &Weights::new(),
        &CompileOptions::default().input_shape("x", &[2, 3]),
    )
    .unwrap();
    assert_eq!(k.outputs()[0].shape, vec![2]);
    k.write_input_f32("x", &[1., -2., 3., -4., 5., 6.]).unwrap();
    k.run().unwrap();
    close(&k.output_f32("out").unwrap(), &[4., 11.]);
}

#[test]
fn empty_tensors_run() {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp32, &[2, 3]));
    let e = b.slice_by_size(&x, &[0, 0], &[2, 0]).unwrap();
    let s = b.softmax(&e, -1).unwrap();
    let l = b.layer_norm(&s, &[-1], None, None, 1e-5).unwrap();
    let m = b.matmul(&x, &e, true, false).unwrap(); // [3, 0]
    let r = b.name("r").reduce_sum(&m, &[1], false).unwrap(); // [3] of zeros
    let l = b.name("l").identity(&l).unwrap();
    let mut k = kernel(b, &[&l, &r]);
    k.write_input_f32("x", &[1.0; 6]).unwrap();
    k.run().unwrap();
    assert_eq!(k.output_f32("l").unwrap(), Vec::<f32>::new());
    assert_eq!(k.output_f32("r").unwrap(), vec![0.0; 3]);
}

#[test]
fn kernel_is_send_and_lists_its_steps() {
    fn send<T: Send>(_: &T) {}
    let text = r#"program(1.3)
{
    func main<ios18>(tensor<fp32, [2, 2]> x) {
            tensor<fp32, [2, 2]> a = exp(x = x)[name = string("e")];
            tensor<fp32, [2, 2]> out = softmax(x = a, axis = int32(0))[name = string("sm")];
        } -> (out);
}
"#;
    let k = compile(&parse(text).unwrap(), &Weights::new(), &CompileOptions::default()).unwrap();
    send(&k);
    let steps: Vec<_> = k.steps().collect();
    assert_eq!(
        steps,
        vec![
            ("elementwise", "exp `e` (4:13)"),
            ("softmax", "softmax `sm` (5:13)")
        ]
    );
}

#[test]
fn quantize_and_dequantize_by_hand() {
    let text = r#"program(1.3)
{
    func main<ios18>(tensor<fp32, [2, 3]> x) {
            tensor<uint8, [2, 3]> q = quantize(input = x, scale = tensor<fp32, [3]>([0.5, 0.25, 2.0]), zero_point = tensor<uint8, [3]>([10, 0, 128]), axis = int32(1), output_dtype = string("uint8"))[name = string("q")];
            tensor<fp32, [2, 3]> back = dequantize(input = q, scale = tensor<fp32, [3]>([0.5, 0.25, 2.0]), zero_point = tensor<uint8, [3]>([10, 0, 128]), axis = int32(1))[name = string("back")];
            tensor<int8, [2, 3]> s = quantize(input = x, scale = fp32(0.5), output_dtype = string("int8"))[name = string("s")];
            tensor<fp32, [2, 3]> d = dequantize(input = s, scale = tensor<fp32, [2]>([1.0, 0.5]), axis = int32(0))[name = string("d")];
        } -> (q, back, s, d);
}
"#;
    let mut k = compile(&parse(text).unwrap(), &Weights::new(), &CompileOptions::default()).unwrap();
    k.write_input_f32("x", &[1.25, -0.3, 3.0, -6.0, 100.0, -1000.0])
        .unwrap();
    k.run().unwrap();
    // Per column: 2.5 → 2 (ties to even) + 10; -1.2 → -1, clipped to 0; 1.5 → 2 + 128.
    // Row 2: -12 + 10 → 0; 400 → 255; -500 + 128 → 0.
    assert_eq!(k.output_f32("q").unwrap(), [12., 0., 130., 0., 255., 0.]);
    assert_eq!(k.output_f32("back").unwrap(), [1., 0., 4., -5., 63.75, -256.]);
    // One scale, no zero point, int8 saturation; then a scale per row and no zero point.
    assert_eq!(k.output_f32("s").unwrap(), [2., -1., 6., -12., 127., -128.]);
    assert_eq!(k.output_f32("d").unwrap(), [2., -1., 6., -6., 63.5, -64.]);
}
