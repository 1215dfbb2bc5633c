//! User mistakes give errors that name the op and its line:col — never panics.

use malus_cpu::{CompileOptions, CpuError, OpErrorKind, compile};
use malus_mil::{DType, FunctionBuilder, Program, Type, Weights, parse};

const PROGRAM: &str = r#"program(1.3)
{
    func main<ios18>(tensor<fp32, [2, 3]> x, tensor<int32, [4]> idx) {
            tensor<fp32, [2, 3]> a = relu(x = x)[name = string("first_relu")];
            tensor<fp32, [4, 3]> g = gather(x = a, indices = idx, axis = int32(0))[name = string("my_gather")];
        } -> (g);
}
"#;

fn kernel() -> malus_cpu::CpuKernel {
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp16, &[2, 3]));
    let y = b.name("y").relu(&x).unwrap();
    compile(
        &Program::new(vec![b.build(&[&y])]),
        &Weights::new(),
        &CompileOptions::default(),
    )
    .unwrap()
}

#[test]
fn unsupported_op_names_op_and_position() {
    let p = parse(PROGRAM).unwrap();
    let e = compile(&p, &Weights::new(), &CompileOptions::default()).unwrap_err();
    assert_eq!(e.kind(), Some(OpErrorKind::UnsupportedOp));
    let msg = e.to_string();
    assert!(msg.starts_with("5:"), "{msg}");
    assert!(msg.contains("gather") && msg.contains("my_gather"), "{msg}");
}

#[test]
fn wrong_buffer_lengths() {
    let mut k = kernel();
    let e = k.write_input_f32("x", &[1.0; 5]).unwrap_err();
    assert!(
        matches!(
            e,
            CpuError::Length {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{e}"
    );
    let e = k.write_input_bytes("x", &[0u8; 13]).unwrap_err();
    assert!(
        matches!(
            e,
            CpuError::Length {
                expected: 12,
                got: 13,
                ..
            }
        ),
        "{e}"
    );
    k.run().unwrap();
    let mut out = [0f32; 7];
    assert!(matches!(
        k.read_output_f32("y", &mut out),
        Err(CpuError::Length { expected: 6, .. })
    ));
}

#[test]
fn unknown_names() {
    let mut k = kernel();
    let e = k.write_input_f32("nope", &[]).unwrap_err();
    assert!(
        matches!(&e, CpuError::UnknownName { what: "input", name, known } if name == "nope" && known == &["x"]),
        "{e}"
    );
    assert!(matches!(
        k.output_f32("x"),
        Err(CpuError::UnknownName { what: "output", .. })
    ));
    assert!(k.read_output_bytes("zzz").is_err());
    let p = parse(PROGRAM).unwrap();
    let e = compile(&p, &Weights::new(), &CompileOptions::default().function("other")).unwrap_err();
    assert!(matches!(e, CpuError::NoFunction { .. }), "{e}");
    let e = compile(
        &p,
        &Weights::new(),
        &CompileOptions::default().input_shape("q", &[1]),
    )
    .unwrap_err();
    assert!(matches!(e, CpuError::UnknownName { what: "input", .. }), "{e}");
}

#[test]
fn unsupported_dtype_names_the_op() {
    let text = r#"program(1.3)
{
    func main<ios18>(tensor<int32, [2, 2]> x) {
            tensor<int32, [2, 2]> m = matmul(x = x, y = x)[name = string("int_mm")];
        } -> (m);
}
"#;
    let e = compile(&parse(text).unwrap(), &Weights::new(), &CompileOptions::default()).unwrap_err();
    assert_eq!(e.kind(), Some(OpErrorKind::Unsupported));
    let msg = e.to_string();
    assert!(
        msg.starts_with("4:") && msg.contains("int_mm") && msg.contains("int32"),
        "{msg}"
    );
}

#[test]
fn unknown_dims_need_input_shapes() {
    let text = r#"program(1.3)
{
    func main<ios18>(tensor<fp32, [?, 3]> x) {
            tensor<fp32, [?, 3]> y = relu(x = x)[name = string("y")];
        } -> (y);
}
"#;
    let p = parse(text).unwrap();
    let e = compile(&p, &Weights::new(), &CompileOptions::default()).unwrap_err();
    assert!(
        matches!(&e, CpuError::Signature { name, .. } if name == "x"),
        "{e}"
    );
    assert!(e.to_string().contains("input_shapes"), "{e}");
    let e = compile(
        &p,
        &Weights::new(),
        &CompileOptions::default().input_shape("x", &[2, 4]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    assert!(
        compile(
            &p,
            &Weights::new(),
            &CompileOptions::default().input_shape("x", &[5, 3])
        )
        .is_ok()
    );
}

#[test]
fn missing_blob_names_the_op() {
    let text = r#"program(1.3)
{
    func main<ios18>(tensor<fp16, [4]> x) {
            tensor<fp16, [4]> w = const()[name = string("w_blob"), val = tensor<fp16, [4]>(BLOBFILE(path = string("@model_path/weights/weight.bin"), offset = uint64(64)))];
            tensor<fp16, [4]> y = add(x = x, y = w)[name = string("y")];
        } -> (y);
}
"#;
    let p = parse(text).unwrap();
    let e = compile(&p, &Weights::new(), &CompileOptions::default()).unwrap_err();
    assert_eq!(e.kind(), Some(OpErrorKind::Blob));
    let msg = e.to_string();
    assert!(
        msg.starts_with("4:") && msg.contains("w_blob") && msg.contains("weight.bin"),
        "{msg}"
    );
    // With the blob present (but the wrong size) the error says so.
    let mut w = Weights::new();
    w.add_f16("@model_path/weights/weight.bin", &[1.0, 2.0]);
    let e = compile(&p, &w, &CompileOptions::default()).unwrap_err();
    assert!(e.to_string().contains("bytes"), "{e}");
    // And with the right blob it runs.
    let mut w = Weights::new();
    w.add_f16("@model_path/weights/weight.bin", &[1.0, 2.0, 3.0, 4.0]);
    let mut k = compile(&p, &w, &CompileOptions::default()).unwrap();
    k.write_input_f32("x", &[1.0; 4]).unwrap();
    k.run().unwrap();
    assert_eq!(k.output_f32("y").unwrap(), vec![2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn declared_types_must_match_inference() {
    let text = r#"program(1.3)
{
    func main<ios18>(tensor<fp32, [2, 3]> x) {
            tensor<fp32, [3, 2]> y = relu(x = x)[name = string("liar")];
        } -> (y);
}
"#;
    let e = compile(&parse(text).unwrap(), &Weights::new(), &CompileOptions::default()).unwrap_err();
    assert_eq!(e.kind(), Some(OpErrorKind::Invalid));
    assert!(e.to_string().contains("liar"), "{e}");
}

#[test]
fn absurd_shapes_are_errors_not_aborts() {
    let text = r#"program(1.3)
{
    func main<ios18>(tensor<fp32, [2000000000, 2000000000, 2000000000]> x) {
            tensor<fp32, [2000000000, 2000000000, 2000000000]> y = relu(x = x)[name = string("y")];
        } -> (y);
}
"#;
    let e = compile(&parse(text).unwrap(), &Weights::new(), &CompileOptions::default()).unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
    let text = r#"program(1.3)
{
    func main<ios18>(tensor<fp32, [2]> x) {
            tensor<fp32, [65536, 65536, 65536, 65536]> y = const()[name = string("big"), val = tensor<fp32, [65536, 65536, 65536, 65536]>(BLOBFILE(path = string("@model_path/weights/w.bin"), offset = uint64(64)))];
            tensor<fp32, [65536, 65536, 65536, 65536]> z = relu(x = y)[name = string("z")];
        } -> (z);
}
"#;
    let e = compile(&parse(text).unwrap(), &Weights::new(), &CompileOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("too large") || e.kind() == Some(OpErrorKind::Blob),
        "{e}"
    );
}
