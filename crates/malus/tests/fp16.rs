//! The training step with the ANE's fp16 numerics (CPU executor in fp16 mode, fp16 kernels)
//! against the same step in f32, which tests/gradcheck.rs checks against finite differences.
//!
//! Tolerance: fp16 carries 11 significant bits (unit roundoff 2⁻¹¹ ≈ 4.9e-4). Every op result is
//! rounded, and a gradient passes through some 30–60 rounded ops per layer (recomputed forward,
//! attention and RMSNorm backward, the dW matmul), so errors of a few 1e-3 per element are
//! expected and they partly cancel in norms. We require each tensor's gradient to agree in
//! direction (cosine ≥ 0.999) and in norm-wise relative error ≤ 3e-2, and the loss to 1e-2.

mod common;

use common::{loss_and_grads, tokens};
use malus::{Config, Device, Dw, Numerics, Params};

fn compare(c: &Config, scale: f32) -> (f64, f64) {
    let p = Params::init(c, 21);
    let toks = tokens(c, 4);
    let (l32, g32) = loss_and_grads(c, &p, &toks, &Device::cpu(Numerics::F32), Dw::Device, 1.0);
    let (l16, g16) = loss_and_grads(c, &p, &toks, &Device::cpu(Numerics::Fp16), Dw::Device, scale);
    assert!((l16 - l32).abs() < 1e-2 * l32, "loss fp16 {l16} vs f32 {l32}");
    let mut worst_rel: f64 = 0.0;
    let mut worst_cos: f64 = 1.0;
    for (a, b) in g16.tensors.iter().zip(&g32.tensors) {
        let dot: f64 = a
            .data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| *x as f64 * *y as f64)
            .sum();
        let na: f64 = a.data.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.data.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let diff: f64 = a
            .data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let (rel, cos) = (diff / nb, dot / (na * nb));
        assert!(
            a.data.iter().all(|x| x.is_finite()),
            "{}: non-finite fp16 gradient",
            a.name
        );
        assert!(
            rel <= 3e-2 && cos >= 0.999,
            "{}: relative error {rel:.3e}, cosine {cos:.6}",
            a.name
        );
        worst_rel = worst_rel.max(rel);
        worst_cos = worst_cos.min(cos);
    }
    (worst_rel, worst_cos)
}

#[test]
fn tiny_fp16_gradients_follow_f32_with_loss_scaling() {
    let (rel, cos) = compare(&Config::preset("tiny").unwrap(), 1024.0);
    eprintln!("tiny fp16: worst relative error {rel:.2e}, worst cosine {cos:.6}");
}

#[test]
fn one_stories110m_layer_in_fp16() {
    let mut c = Config::preset("stories110m").unwrap();
    c.layers = 1;
    c.vocab = 4096; // the layer's shape is what matters; a smaller vocabulary keeps CI fast
    let (rel, cos) = compare(&c, 1024.0);
    eprintln!("stories110m layer fp16: worst relative error {rel:.2e}, worst cosine {cos:.6}");
}

#[test]
fn qk_norm_gqa_fp16_gradients_follow_f32() {
    let mut c = Config::preset("tiny").unwrap();
    c.kv_heads = 2;
    c.head_dim = 32;
    c.qk_norm = true;
    let (rel, cos) = compare(&c, 1024.0);
    eprintln!("tiny q/k norm fp16: worst relative error {rel:.2e}, worst cosine {cos:.6}");
}

#[test]
fn one_qwen3_layer_in_fp16() {
    let mut c = Config::preset("qwen3-0.6b").unwrap();
    c.layers = 1;
    c.vocab = 4096; // as for Stories110M: the layer's shape is what matters
    let (rel, cos) = compare(&c, 1024.0);
    eprintln!("qwen3 layer fp16: worst relative error {rel:.2e}, worst cosine {cos:.6}");
}
