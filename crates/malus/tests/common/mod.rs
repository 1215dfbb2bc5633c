//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use malus::rng::Rng;
use malus::{CompiledModel, Config, Device, Dw, Numerics, Params, Plan};
use malus_ane::fake::{FakeBackend, FakeConfig, FakeModel};

/// A model compiled for `device` with dW where `dw` says, staged with `p`.
pub fn compiled(c: &Config, p: &Params, device: &Device, dw: Dw) -> CompiledModel {
    let plan = Plan::new(c, device.dtype(), dw).unwrap();
    let mut model = CompiledModel::new(&plan, device).unwrap();
    model.stage(p).unwrap();
    model
}

/// A training step on the CPU executor in f32 with dW on the device, staged with `p`: the
/// configuration the reference comparisons run in.
pub fn f32_step(c: &Config, p: &Params) -> CompiledModel {
    compiled(c, p, &Device::cpu(Numerics::F32), Dw::Device)
}

/// One forward and backward on `device`: the loss and the parameter gradients (loss scaling
/// divided out).
pub fn loss_and_grads(
    c: &Config,
    p: &Params,
    toks: &[u32],
    device: &Device,
    dw: Dw,
    scale: f32,
) -> (f64, Params) {
    let mut model = compiled(c, p, device, dw);
    let loss = model.forward(p, toks).unwrap();
    model.backward(scale).unwrap();
    (loss, model.grads(p, scale).unwrap())
}

/// Runs the `malus` command; returns its exit code and what it printed (stdout, then stderr).
pub fn malus(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_malus"))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Random init with norm weights moved away from 1, so the RMSNorm-weight folding is exercised.
pub fn params_off_one(c: &Config) -> Params {
    let mut p = Params::init(c, 11);
    let mut r = Rng::new(5);
    for t in p.tensors.iter_mut().filter(|t| t.shape.len() == 1) {
        t.data
            .iter_mut()
            .for_each(|v| *v = 0.6 + r.uniform(0.5).abs() * 1.6);
    }
    p
}

/// A word-level tokenizer of `n` tokens (`w0`, `w1`, …), for model fixtures that ship none.
pub fn word_tokenizer(path: &std::path::Path, n: usize) {
    let vocab: serde_json::Map<String, serde_json::Value> =
        (0..n).map(|i| (format!("w{i}"), i.into())).collect();
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null, "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"}
    });
    std::fs::write(path, tok.to_string()).unwrap();
}

/// Compares `got`, a device gradient of entry `i` of `data`, with the central finite difference
/// of `loss` (the f64 reference evaluated with that entry set to a value) over the step the f32
/// entry really takes; asserts a relative error under 1e-3 and returns it.
pub fn check_against_fd(name: &str, data: &[f32], i: usize, got: f32, loss: impl Fn(f32) -> f64) -> f64 {
    let h = 1e-4;
    let (up_v, down_v) = ((data[i] as f64 + h) as f32, (data[i] as f64 - h) as f32);
    let fd = (loss(up_v) - loss(down_v)) / (up_v as f64 - down_v as f64);
    let got = got as f64;
    let rel = (got - fd).abs() / (got.abs() + fd.abs()).max(1e-4);
    assert!(
        rel < 1e-3,
        "{name}[{i}]: device {got:e} vs finite difference {fd:e} (rel {rel:e})"
    );
    rel
}

/// `seq + 1` random token ids below the vocabulary.
pub fn tokens(c: &Config, seed: u64) -> Vec<u32> {
    let mut r = Rng::new(seed);
    (0..=c.seq).map(|_| r.below(c.vocab as u64) as u32).collect()
}

/// A Neural Engine device on `malus-ane`'s recording fake whose evaluate computes each program
/// with the CPU executor in fp16 (the ANE's stand-in): everything of the ANE path above the
/// private framework — kernel specs, compile and load, surface I/O — runs as on a Mac.
pub fn fake_ane() -> Device {
    let kernels: Mutex<HashMap<String, malus_cpu::CpuKernel>> = Mutex::default();
    let eval = move |m: &FakeModel, surfaces: &[Vec<u8>]| -> Vec<Vec<u8>> {
        let mut kernels = kernels.lock().unwrap();
        let k = kernels.entry(m.mil.clone()).or_insert_with(|| {
            let program = malus_mil::parse(&m.mil).expect("the ANE got valid MIL");
            let mut w = malus_mil::Weights::new();
            for (key, bytes) in &m.weights {
                w.insert_file(key, bytes.clone());
            }
            let opts = malus_cpu::CompileOptions::default().numerics(malus_cpu::Numerics::Fp16);
            malus_cpu::compile(&program, &w, &opts).expect("the CPU executor compiles it")
        });
        // Surfaces are whole allocations: the tensors are their first bytes.
        let ins: Vec<&[u8]> = k
            .inputs()
            .iter()
            .zip(surfaces)
            .map(|(t, s)| &s[..t.byte_len()])
            .collect();
        let mut outs: Vec<Vec<u8>> = k.outputs().iter().map(|t| vec![0u8; t.byte_len()]).collect();
        let mut views: Vec<&mut [u8]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
        k.run_with(&ins, &mut views).expect("the kernel runs");
        outs
    };
    let fake = FakeBackend::with_config(FakeConfig {
        ane_subtype: Some("H16G".into()),
        on_evaluate_model: Some(Arc::new(eval)),
        ..FakeConfig::default()
    });
    Device::Ane(malus_ane::Ane::open_with(fake).unwrap())
}

/// Runs a test body once per device the step can be checked on: the CPU executor in f32 and in
/// fp16 (the ANE's stand-in), and the Neural Engine path on the fake of [`fake_ane`].
#[macro_export]
macro_rules! test_device {
    ($name:ident, |$dev:ident| $body:block) => {
        mod $name {
            use super::*;
            #[test]
            fn cpu_f32() {
                let $dev = malus::Device::cpu(malus::Numerics::F32);
                $body
            }
            #[test]
            fn cpu_fp16() {
                let $dev = malus::Device::cpu(malus::Numerics::Fp16);
                $body
            }
            #[test]
            fn fake_ane() {
                let $dev = $crate::common::fake_ane();
                $body
            }
        }
    };
}

/// The chat markers the fixture templates use, added to the shipped tokenizer (as plain added
/// tokens, so decoding shows them).
pub const MARKERS: [&str; 8] = [
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<s>",
    "</s>",
];

/// A Hugging Face style model directory: the shipped tokenizer plus [`MARKERS`], and a
/// tokenizer_config.json with `template` and bos/eos.
pub fn model_dir(dir: &std::path::Path, template: &str, bos: &str, eos: &str) -> std::path::PathBuf {
    let mut t: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/tokenizer.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let added = t["added_tokens"].as_array_mut().unwrap();
    for (i, m) in MARKERS.iter().enumerate() {
        added.push(
            serde_json::json!({"id": 4096 + i, "content": m, "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": false}),
        );
    }
    let d = dir.join("model");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("tokenizer.json"), t.to_string()).unwrap();
    let cfg = serde_json::json!({"chat_template": template, "bos_token": {"content": bos}, "eos_token": eos});
    std::fs::write(d.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    d
}

/// A fixture tensor (F64, F32 or I64, as the Python scripts store them) widened to f64.
pub fn tensor_f64(name: &str, v: &safetensors::tensor::TensorView) -> Vec<f64> {
    use safetensors::tensor::Dtype;
    let b = v.data();
    match v.dtype() {
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        Dtype::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        d => panic!("{name}: unexpected dtype {d:?}"),
    }
}
