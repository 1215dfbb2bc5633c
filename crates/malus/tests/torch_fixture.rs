//! Agreement with PyTorch autograd: tests/fixtures/torch/make_fixture.py builds the same tiny
//! GQA model in PyTorch (f64) and saves weights, tokens, loss and every gradient; the device step
//! (f32 kernels on the CPU executor) must reproduce them; `--qk-norm` makes the Qwen3 variant
//! (per-head q/k RMSNorm before RoPE, as Hugging Face's Qwen3Attention). CI needs no PyTorch: the
//! fixtures are committed with the script that made them.

mod common;

use std::path::PathBuf;

use malus::model::{Config, Params};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;

fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|_| panic!("fixture lacks {name}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn device_step_matches_pytorch_autograd() {
    matches_fixture("tiny_gqa.safetensors", false);
}

#[test]
fn qk_norm_step_matches_pytorch_autograd() {
    matches_fixture("tiny_gqa_qknorm.safetensors", true);
}

fn matches_fixture(file: &str, qk_norm: bool) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch")
        .join(file);
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let c = Config {
        dim: 64,
        hidden: 128,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        head_dim: 32,
        vocab: 256,
        seq: 64,
        qk_norm,
        ..Config::preset("tiny").unwrap()
    };
    let mut p = Params::zeros(&c);
    for t in p.tensors.iter_mut() {
        t.data = f32s(&st, &format!("param.{}", t.name));
    }
    let in_fixture = st.names().iter().filter(|n| n.starts_with("param.")).count();
    assert_eq!(
        in_fixture,
        p.tensors.len(),
        "the fixture's parameters are the model's"
    );
    let toks: Vec<u32> = st
        .tensor("tokens")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect();
    let want_loss = f64::from_le_bytes(st.tensor("loss").unwrap().data().try_into().unwrap());

    let mut step = common::f32_step(&c, &p);
    let loss = step.forward(&p, &toks).unwrap();
    assert!(
        (loss - want_loss).abs() < 1e-5 * want_loss,
        "loss {loss} vs PyTorch {want_loss}"
    );
    step.backward(1.0).unwrap();
    let g = step.take_grads(&p, 1.0).unwrap();
    for t in &g.tensors {
        let want = f32s(&st, &format!("grad.{}", t.name));
        let norm: f64 = want.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let diff: f64 = t
            .data
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            diff <= 1e-4 * norm,
            "{}: norm-wise relative error {:.2e}",
            t.name,
            diff / norm
        );
        for (i, (a, b)) in t.data.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs() + 1e-6 * norm as f32,
                "{}[{i}]: {a:e} vs PyTorch {b:e}",
                t.name
            );
        }
    }
}
