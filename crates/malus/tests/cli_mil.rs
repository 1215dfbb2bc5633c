//! `malus mil check` and `malus mil fmt` as a user runs them.

use std::path::PathBuf;
mod common;

use common::malus;

// The .npy reader/writer is the command's code; compile it in here too.
#[allow(dead_code)]
#[path = "../src/bin/malus/npy.rs"]
mod npy;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mil/tests/fixtures/mil-real")
}

fn fixtures() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mil"))
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn check_accepts_every_real_fixture() {
    let files = fixtures();
    let mut args = vec!["mil", "check", "--quiet"];
    args.extend(files.iter().map(String::as_str));
    let (code, out) = malus(&args);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("valid MIL").count(), files.len(), "{out}");
    // ANE findings are reported even though the files are valid MIL: lstm is not an ANE op.
    assert!(out.contains("error[ane-unsupported-op]: `lstm`"), "{out}");
}

#[test]
fn check_strict_fails_on_ane_errors() {
    let files = fixtures();
    let (code, _) = malus(&["mil", "check", "--strict", &files[0]]);
    assert_eq!(code, 1);
}

#[test]
fn check_rejects_broken_programs_with_positions() {
    let dir = std::env::temp_dir().join(format!("malus-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = std::fs::read_to_string(fixture_dir().join("apple_coremltools_add_model.mil")).unwrap();
    // A declared shape that contradicts the op (line 5).
    let bad_type = dir.join("bad_type.mil");
    std::fs::write(
        &bad_type,
        src.replace("tensor<fp16, [1, 10]> var_3", "tensor<fp16, [1, 11]> var_3"),
    )
    .unwrap();
    let (code, out) = malus(&["mil", "check", bad_type.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bad_type.mil:5:13: error[type-mismatch]"), "{out}");
    // A syntax error (line 5: the `=` is missing).
    let bad_syntax = dir.join("bad_syntax.mil");
    std::fs::write(&bad_syntax, src.replace("var_3 = mul", "var_3 mul")).unwrap();
    let (code, out) = malus(&["mil", "check", bad_syntax.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("bad_syntax.mil:5:41: error[syntax]: expected `=`"),
        "{out}"
    );
    // A file that does not exist is named.
    let (code, out) = malus(&["mil", "check", "/nonexistent/x.mil"]);
    assert_eq!(code, 1);
    assert!(out.contains("cannot read /nonexistent/x.mil"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fmt_prints_a_fixed_point_in_either_spelling() {
    for f in fixtures() {
        let (code, once) = malus(&["mil", "fmt", &f]);
        assert_eq!(code, 0, "{once}");
        let p = malus_mil::parse(&once).unwrap();
        assert_eq!(
            p,
            malus_mil::parse(&std::fs::read_to_string(&f).unwrap()).unwrap()
        );
        let (_, bare) = malus(&["mil", "fmt", "--spelling", "bare", &f]);
        assert_eq!(malus_mil::parse(&bare).unwrap(), p);
        assert!(!bare.contains("tensor<string, []>"), "{f}");
    }
}

#[test]
fn run_executes_a_real_program_with_npy_inputs_and_outputs() {
    use npy::Array;
    let dir = std::env::temp_dir().join(format!("malus-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x: Vec<f32> = (0..10).map(|i| i as f32 * 0.5).collect();
    let y: Vec<f32> = (0..10).map(|i| 2.0 - i as f32).collect();
    npy::write(
        &dir.join("x.npy"),
        &Array {
            shape: vec![1, 10],
            data: x.clone(),
        },
    )
    .unwrap();
    npy::write(
        &dir.join("y.npy"),
        &Array {
            shape: vec![1, 10],
            data: y.clone(),
        },
    )
    .unwrap();
    let file = fixture_dir().join("apple_coremltools_add_model.mil");
    let xi = format!("x={}", dir.join("x.npy").display());
    let yi = format!("y={}", dir.join("y.npy").display());
    let out = dir.join("out");
    let (code, text) = malus(&[
        "mil",
        "run",
        file.to_str().unwrap(),
        "--input",
        &xi,
        "--input",
        &yi,
        "--numerics",
        "fp16",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("var_3 fp16 [1, 10]"), "{text}");
    let got = npy::read(&out.join("var_3.npy")).unwrap();
    assert_eq!(got.shape, vec![1, 10]);
    for i in 0..10 {
        assert_eq!(got.data[i], x[i] * y[i], "element {i}");
    }
    // A bad --input is named.
    let (code, text) = malus(&["mil", "run", file.to_str().unwrap(), "--input", "x"]);
    assert_eq!(code, 1);
    assert!(text.contains("expected NAME=random|zeros|FILE.npy"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
