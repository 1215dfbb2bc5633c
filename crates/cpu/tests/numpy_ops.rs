//! Every op against vectors computed independently with numpy (tests/fixtures/gen_numpy.py
//! writes tests/fixtures/ops.json; each case is a whole MIL program, its inputs and expected
//! outputs). Each case runs single-threaded and on the thread pool.

use malus_cpu::{CompileOptions, compile};
use malus_mil::{Weights, parse, validate};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn numpy_vectors() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ops.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 70, "fixture lost cases");
    let mut failures = Vec::new();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let program = parse(c["mil"].as_str().unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(validate(&program).is_empty(), "{name}: {:?}", validate(&program));
        for threads in [Some(1), None] {
            let opts = CompileOptions {
                threads,
                ..CompileOptions::default()
            };
            let mut k = match compile(&program, &Weights::new(), &opts) {
                Ok(k) => k,
                Err(e) => {
                    failures.push(format!("{name}: compile: {e}"));
                    continue;
                }
            };
            for i in c["inputs"].as_array().unwrap() {
                let data: Vec<f32> = floats(&i["data"]).iter().map(|&v| v as f32).collect();
                k.write_input_f32(i["name"].as_str().unwrap(), &data).unwrap();
            }
            k.run().unwrap();
            let (rtol, atol) = (c["rtol"].as_f64().unwrap(), c["atol"].as_f64().unwrap());
            for o in c["outputs"].as_array().unwrap() {
                let oname = o["name"].as_str().unwrap();
                let want = floats(&o["data"]);
                let shape: Vec<usize> = o["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                let info = k.outputs().iter().find(|t| t.name == oname).unwrap();
                if info.shape != shape {
                    failures.push(format!("{name}/{oname}: shape {:?} != {shape:?}", info.shape));
                    continue;
                }
                let got = k.output_f32(oname).unwrap();
                let bad = got.iter().zip(&want).enumerate().find(|(_, (g, w))| {
                    let (g, w) = (**g as f64, **w);
                    !((g - w).abs() <= atol + rtol * w.abs() || (g.is_nan() && w.is_nan()))
                });
                if let Some((i, (g, w))) = bad {
                    failures.push(format!(
                        "{name}/{oname} (threads {threads:?}): element {i}: got {g}, want {w}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
