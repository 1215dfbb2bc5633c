//! Test models for the generation tests: random weights far from the initialisation's, so a
//! wrong cache position or a skipped op shows in the logits.

use crate::model::{Config, Params};
use crate::rng::Rng;

/// A tiny GQA model with every tensor random (norms around 1, not 1) and weights large
/// enough that attention is far from uniform, so a wrong cache position would show.
pub fn model(seq: usize, tied: bool, seed: u64) -> (Config, Params) {
    model_qk(seq, tied, false, seed)
}

/// [`model`] with or without Qwen3's q/k norm.
pub fn model_qk(seq: usize, tied: bool, qk_norm: bool, seed: u64) -> (Config, Params) {
    let mut c = Config::preset("tiny").unwrap();
    c.kv_heads = 2;
    c.seq = seq;
    c.tied = tied;
    c.qk_norm = qk_norm;
    c.residual_scale = 0.7;
    let p = random_params(&c, seed);
    (c, p)
}

pub fn random_params(c: &Config, seed: u64) -> Params {
    let mut p = Params::zeros(c);
    let mut rng = Rng::new(seed);
    let norms: Vec<usize> = p
        .layers
        .iter()
        .flat_map(|l| [Some(l.attn_norm), Some(l.ffn_norm), l.q_norm, l.k_norm])
        .flatten()
        .chain([p.final_norm])
        .collect();
    for (i, t) in p.tensors.iter_mut().enumerate() {
        let fan_in = *t.shape.last().unwrap() as f64;
        for v in &mut t.data {
            *v = if norms.contains(&i) {
                1.0 + rng.uniform(0.5)
            } else if i == p.embed || Some(i) == p.cls {
                rng.uniform(1.0)
            } else {
                rng.uniform(2.0 / fan_in.sqrt())
            };
        }
    }
    p
}

pub fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(vocab as u64) as u32).collect()
}

/// Host f32 logits against the f64 reference's, relative to the largest.
pub fn assert_close(got: &[f32], want: &[f64], what: &str) {
    let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (&g, w)| m.max((g as f64 - w).abs()));
    assert!(err <= 1e-4 * scale, "{what}: max error {err} vs scale {scale}");
}
