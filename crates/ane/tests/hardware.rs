//! Smoke tests for a real Neural Engine. Ignored by default; on an Apple-silicon Mac run
//! `cargo test -p malus-ane --test hardware -- --ignored --nocapture`.
//! Off macOS they return early (the device is unavailable by design).
//!
//! NEVER RUN YET: written from docs/mil-dialect.md (§1 skeleton, §4 `conv`, §6 blob layout).

use malus_ane::{Ane, Error, IoDType, KernelSpec, TensorSpec};

const C: usize = 64;
const S: usize = 64;

fn open() -> Option<Ane> {
    match Ane::open() {
        Ok(a) => Some(a),
        Err(e) if e.is_unavailable() && !cfg!(target_os = "macos") => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// A weight file in Core ML's blob layout (docs/mil-dialect.md §6): 64-byte storage header
/// {count = 1, version = 2}, one 64-byte metadata record {0xDEADBEEF, dtype 1 = fp16,
/// u64 size, u64 data offset = 128}, data at 128. BLOBFILE offset = 64.
fn blob(fp16: &[half::f16]) -> Vec<u8> {
    let data: Vec<u8> = fp16.iter().flat_map(|h| h.to_le_bytes()).collect();
    let mut b = vec![0u8; 128];
    b[0..4].copy_from_slice(&1u32.to_le_bytes());
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    b[64..68].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
    b[68..72].copy_from_slice(&1u32.to_le_bytes());
    b[72..80].copy_from_slice(&(data.len() as u64).to_le_bytes());
    b[80..88].copy_from_slice(&128u64.to_le_bytes());
    b.extend(data);
    b
}

/// y = conv1x1(x, 0.5·I): every output equals half its input.
fn half_conv() -> KernelSpec {
    let mil = format!(
        r#"program(1.3)
[buildInfo = dict<string, string>({{{{"coremlc-component-MIL", "3510.2.1"}}, {{"coremlc-version", "3505.4.1"}}, {{"coremltools-component-milinternal", ""}}, {{"coremltools-version", "9.0"}}}})]
{{
    func main<ios18>(tensor<fp16, [1, {C}, 1, {S}]> x) {{
        string pt = const()[name = string("pt"), val = string("valid")];
        tensor<int32, [2]> st = const()[name = string("st"), val = tensor<int32, [2]>([1, 1])];
        tensor<int32, [4]> pd = const()[name = string("pd"), val = tensor<int32, [4]>([0, 0, 0, 0])];
        tensor<int32, [2]> dl = const()[name = string("dl"), val = tensor<int32, [2]>([1, 1])];
        int32 gr = const()[name = string("gr"), val = int32(1)];
        tensor<fp16, [{C}, {C}, 1, 1]> W = const()[name = string("W"), val = tensor<fp16, [{C}, {C}, 1, 1]>(BLOBFILE(path = string("@model_path/weights/w.bin"), offset = uint64(64)))];
        tensor<fp16, [1, {C}, 1, {S}]> y = conv(dilations = dl, groups = gr, pad = pd, pad_type = pt, strides = st, weight = W, x = x)[name = string("conv")];
    }} -> (y);
}}
"#
    );
    let w: Vec<half::f16> = (0..C * C)
        .map(|i| half::f16::from_f32(if i / C == i % C { 0.5 } else { 0.0 }))
        .collect();
    KernelSpec {
        name: "half_conv".into(),
        mil_text: mil,
        weights: vec![("@model_path/weights/w.bin".into(), blob(&w))],
        inputs: vec![TensorSpec::new("x", IoDType::Fp16, [1, C, 1, S])],
        outputs: vec![TensorSpec::new("y", IoDType::Fp16, [1, C, 1, S])],
    }
}

#[test]
#[ignore = "needs an Apple Neural Engine"]
fn conv_runs_and_halves_its_input() {
    let Some(ane) = open() else { return };
    eprintln!("device: {:?}", ane.device_info());
    let mut k = ane.compile(&half_conv()).unwrap();
    eprintln!("{k:?}");
    let x: Vec<f32> = (0..C * S).map(|i| (i % 97) as f32 - 48.0).collect();
    k.write_input_f32("x", &x).unwrap();
    k.run().unwrap();
    let mut y = vec![0f32; C * S];
    k.read_output_f32("y", &mut y).unwrap();
    for (i, (a, b)) in x.iter().zip(&y).enumerate() {
        assert!((a * 0.5 - b).abs() <= 0.02, "element {i}: {b} != {a} / 2");
    }
    let dir = k.program_dir().unwrap().to_path_buf();
    k.close().unwrap();
    assert!(!dir.exists(), "temp dir removed");
    assert_eq!(ane.compiles_used(), 1);
}

#[test]
#[ignore = "needs an Apple Neural Engine"]
fn malformed_mil_is_an_error_not_a_crash() {
    let Some(ane) = open() else { return };
    let mut spec = half_conv();
    spec.mil_text = "program(1.3) this is not MIL".into();
    match ane.compile(&spec) {
        Err(Error::Descriptor { .. } | Error::Model { .. } | Error::Compile { .. }) => {}
        other => panic!("expected a descriptor/compile error, got {other:?}"),
    }
}
