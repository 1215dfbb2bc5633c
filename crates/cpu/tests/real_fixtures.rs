//! The real `model.mil` files in crates/mil/tests/fixtures/mil-real run with synthetic weights
//! (their weight.bin files are not available): blobs of the declared dtype and size are laid out
//! at exactly the offsets the programs name.
//!
//! What runs:
//! - apple_coremltools_add_model: the whole program (fp16 `mul`), checked by hand.
//! - rebeckerspecialties flexible_multifunction: both functions (`first`, `second`), with their
//!   `?` input extent given at compile time.
//!
//! What is skipped, and why:
//! - FluidInference parakeet preprocessor: `floor_div`, `pad`, `stack`, `shape`, `gather`,
//!   `range_1d`, `greater_equal` have no CPU kernel (malus-mil has no inference rule for them).
//! - FluidInference silero VAD: `pad`, `clip`, `lstm`, `constexpr_sparse_to_dense` likewise.
//!   For these two, every result whose inputs need only supported ops is compiled and run on
//!   its own (e.g. the int8 `constexpr_affine_dequantize` weights read from the synthetic blob),
//!   and the whole program fails with an unsupported-op error naming the first such op.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use half::f16;
use malus_cpu::{CompileOptions, OpErrorKind, compile};
use malus_mil::{DType, Function, Lit, Program, Type, Value, Weights, parse};

fn fixture(prefix: &str) -> Program {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mil/tests/fixtures/mil-real");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no fixture {prefix}"));
    parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Weight files holding deterministic data for every BLOBFILE the function names.
fn synthetic_weights(f: &Function) -> Weights {
    let mut blobs: BTreeMap<String, BTreeMap<u64, Type>> = BTreeMap::new();
    for op in &f.body {
        for (_, v) in op.operands() {
            if let Value::Literal(l) = v
                && let Lit::Blob { path, offset } = &l.lit
            {
                blobs
                    .entry(path.clone())
                    .or_default()
                    .insert(*offset, l.ty.clone());
            }
        }
    }
    let mut w = Weights::new();
    for (path, entries) in blobs {
        let mut file = vec![0u8; 64];
        file[0..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        file[4..8].copy_from_slice(&2u32.to_le_bytes());
        for (offset, ty) in entries {
            let (dtype, n) = (ty.dtype().unwrap(), ty.num_elements().unwrap());
            let (code, data): (u32, Vec<u8>) = match dtype {
                DType::Fp16 => (
                    1,
                    (0..n)
                        .flat_map(|i| f16::from_f32(((i % 17) as f32 - 8.0) / 64.0).to_le_bytes())
                        .collect(),
                ),
                DType::Fp32 => (
                    2,
                    (0..n)
                        .flat_map(|i| (((i % 13) as f32 - 6.0) / 32.0).to_le_bytes())
                        .collect(),
                ),
                DType::Uint8 => (3, (0..n).map(|i| (i * 7 % 256) as u8).collect()),
                DType::Int8 => (4, (0..n).map(|i| ((i * 5 % 41) as i8 - 20) as u8).collect()),
                d => panic!("blob dtype {d}"),
            };
            let at = offset as usize;
            file.resize(file.len().max(at + 64 + data.len()), 0);
            file[at..at + 4].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
            file[at + 4..at + 8].copy_from_slice(&code.to_le_bytes());
            file[at + 8..at + 16].copy_from_slice(&(data.len() as u64).to_le_bytes());
            file[at + 16..at + 24].copy_from_slice(&(offset + 64).to_le_bytes());
            file[at + 64..at + 64 + data.len()].copy_from_slice(&data);
        }
        w.insert_file(&path, file);
    }
    w
}

/// Compiles and runs, for every op result, the program cut down to return just that result.
/// Returns (results that ran, results that could not compile, op types that ran).
fn run_supported_results(p: &Program, opts: &CompileOptions) -> (usize, usize, BTreeSet<String>) {
    let f = p.main().unwrap();
    let w = synthetic_weights(f);
    let (mut ran, mut skipped, mut kinds) = (0, 0, BTreeSet::new());
    for op in &f.body {
        for (name, ty) in &op.outputs {
            if ty.dtype() == Some(DType::String) {
                continue; // parameters such as pad modes, not tensors
            }
            let mut g = f.clone();
            g.outputs = vec![name.clone()];
            let cut = Program {
                functions: vec![g],
                ..p.clone()
            };
            match compile(&cut, &w, opts) {
                Ok(mut k) => {
                    for t in k.inputs().to_vec() {
                        k.write_input_f32(&t.name, &vec![0.25; t.len()]).unwrap();
                    }
                    k.run().unwrap();
                    assert_eq!(k.outputs()[0].name, *name);
                    ran += 1;
                    kinds.insert(op.op.clone());
                }
                Err(e) => {
                    assert!(
                        matches!(
                            e.kind(),
                            Some(OpErrorKind::UnsupportedOp | OpErrorKind::UnknownDim)
                        ),
                        "{name}: unexpected error {e}"
                    );
                    skipped += 1;
                }
            }
        }
    }
    (ran, skipped, kinds)
}

#[test]
fn add_model_runs() {
    let p = fixture("apple_coremltools_add_model");
    let mut k = compile(&p, &Weights::new(), &CompileOptions::default()).unwrap();
    let x: Vec<f32> = (0..10).map(|i| i as f32 * 0.5).collect();
    let y: Vec<f32> = (0..10).map(|i| 3.0 - i as f32).collect();
    k.write_input_f32("x", &x).unwrap();
    k.write_input_f32("y", &y).unwrap();
    k.run().unwrap();
    let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
    assert_eq!(k.output_f32("var_3").unwrap(), want);
    assert_eq!(k.outputs()[0].dtype, DType::Fp16);
}

#[test]
fn flexible_multifunction_runs_both_functions() {
    let p = fixture("rebeckerspecialties");
    for (func, n) in [("first", 4), ("second", 2)] {
        let opts = CompileOptions::default()
            .function(func)
            .input_shape("input", &[n]);
        let mut k = compile(&p, &Weights::new(), &opts).unwrap();
        let x: Vec<f32> = (0..n).map(|i| i as f32 - 1.5).collect();
        k.write_input_f32("input", &x).unwrap();
        k.run().unwrap();
        let want: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
        assert_eq!(k.output_f32("output").unwrap(), want);
    }
}

#[test]
fn silero_vad_supported_parts_run() {
    let p = fixture("FluidInference_mobius_silero");
    let opts = CompileOptions::default();
    let e = compile(&p, &synthetic_weights(p.main().unwrap()), &opts).unwrap_err();
    assert_eq!(e.kind(), Some(OpErrorKind::UnsupportedOp), "{e}");
    assert!(e.to_string().contains("`pad`"), "{e}");
    let (ran, skipped, kinds) = run_supported_results(&p, &opts);
    println!("silero: {ran} results ran ({kinds:?}), {skipped} need unsupported ops");
    assert!(ran >= 70 && skipped >= 10, "ran {ran}, skipped {skipped}");
    for k in ["constexpr_affine_dequantize", "cast"] {
        assert!(kinds.contains(k), "{kinds:?}");
    }
}

#[test]
fn parakeet_preprocessor_supported_parts_run() {
    let p = fixture("FluidInference_FluidAudio_parakeet");
    let opts = CompileOptions::default().input_shape("audio_signal", &[1, 4000]);
    let e = compile(&p, &synthetic_weights(p.main().unwrap()), &opts).unwrap_err();
    assert_eq!(e.kind(), Some(OpErrorKind::UnsupportedOp), "{e}");
    let (ran, skipped, kinds) = run_supported_results(&p, &opts);
    println!("parakeet: {ran} results ran ({kinds:?}), {skipped} need unsupported ops");
    assert!(ran >= 50 && skipped >= 10, "ran {ran}, skipped {skipped}");
}
