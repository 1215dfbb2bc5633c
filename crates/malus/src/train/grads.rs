//! Gradient accumulators in the orientation the kernels produce them, and the conversion to
//! parameter gradients (undoing the RMSNorm-weight folding) once per optimizer step.

use crate::kernels::Shape;
use crate::model::{Config, Params};

/// One layer's accumulated weight gradients, as the dW kernels emit them.
#[derive(Clone, Debug)]
pub struct LayerAcc {
    /// dW̃q `[q, dim]`, dW̃k and dW̃v `[kv, dim]`.
    pub wq: Vec<f32>,
    pub wk: Vec<f32>,
    pub wv: Vec<f32>,
    /// dWoᵀ `[q, dim]`.
    pub wo_t: Vec<f32>,
    /// dW2 `[dim, hidden]`.
    pub w2: Vec<f32>,
    /// dW̃1ᵀ and dW̃3ᵀ `[dim, hidden]`.
    pub w1_t: Vec<f32>,
    pub w3_t: Vec<f32>,
    /// With q/k norm, the q_norm then the k_norm weight gradient as `dim`-wide rows (the first
    /// `head_dim` entries used), as `attn_dw` emits them; empty otherwise.
    pub qk_norm: Vec<f32>,
}

/// All accumulators of a model.
#[derive(Clone, Debug)]
pub struct Accum {
    pub layers: Vec<LayerAcc>,
    /// dẼ for the classifier `[chunks·chunk, dim]` (rows ≥ vocab are padding).
    pub cls: Vec<f32>,
    /// Scatter-added embedding gradient `[vocab, dim]`.
    pub embed: Vec<f32>,
}

impl Accum {
    pub fn new(c: &Config, s: &Shape) -> Accum {
        let z = |n: usize| vec![0.0f32; n];
        Accum {
            layers: (0..c.layers)
                .map(|_| LayerAcc {
                    wq: z(s.q * s.dim),
                    wk: z(s.kv * s.dim),
                    wv: z(s.kv * s.dim),
                    wo_t: z(s.q * s.dim),
                    w2: z(s.dim * s.hidden),
                    w1_t: z(s.dim * s.hidden),
                    w3_t: z(s.dim * s.hidden),
                    qk_norm: z(if s.qk_norm { 2 * s.dim } else { 0 }),
                })
                .collect(),
            cls: z(s.vocab_chunks * s.vocab_chunk * s.dim),
            embed: z(s.vocab * s.dim),
        }
    }

    pub fn zero(&mut self) {
        for l in &mut self.layers {
            for v in [
                &mut l.wq,
                &mut l.wk,
                &mut l.wv,
                &mut l.wo_t,
                &mut l.w2,
                &mut l.w1_t,
                &mut l.w3_t,
                &mut l.qk_norm,
            ] {
                v.fill(0.0);
            }
        }
        self.cls.fill(0.0);
        self.embed.fill(0.0);
    }

    /// Parameter gradients `∂L/∂θ · 1/scale` (divide out loss scaling and accumulation).
    pub fn to_grads(&self, p: &Params, scale: f32) -> Params {
        let mut g = p.clone();
        self.to_grads_into(p, scale, &mut g);
        g
    }

    /// [`Accum::to_grads`] into `g` (shaped like `p`), so a training loop reuses one buffer.
    pub fn to_grads_into(&self, p: &Params, scale: f32, g: &mut Params) {
        g.tensors.iter_mut().for_each(|t| t.data.fill(0.0));
        let k = 1.0 / scale;
        for (l, acc) in p.layers.iter().zip(&self.layers) {
            let w = &p.tensors[l.attn_norm].data;
            let mut dw = vec![0.0f32; w.len()];
            for (wi, ai) in [(l.wq, &acc.wq), (l.wk, &acc.wk), (l.wv, &acc.wv)] {
                unfold_rows(&p.tensors[wi].data, ai, w, &mut g.tensors[wi].data, &mut dw, k);
            }
            g.tensors[l.attn_norm].data.copy_from_slice(&dw);
            // wo_t is [q, dim]: dim columns.
            transpose_into(&acc.wo_t, p.tensors[l.wo].shape[0], &mut g.tensors[l.wo].data, k);
            g.tensors[l.w2]
                .data
                .iter_mut()
                .zip(&acc.w2)
                .for_each(|(d, a)| *d = a * k);
            let w = &p.tensors[l.ffn_norm].data;
            let mut dw = vec![0.0f32; w.len()];
            for (wi, ai) in [(l.w1, &acc.w1_t), (l.w3, &acc.w3_t)] {
                // ai is [dim, hidden]: hidden columns.
                let mut rows = vec![0.0f32; ai.len()];
                transpose_into(ai, p.tensors[wi].shape[0], &mut rows, 1.0);
                unfold_rows(&p.tensors[wi].data, &rows, w, &mut g.tensors[wi].data, &mut dw, k);
            }
            g.tensors[l.ffn_norm].data.copy_from_slice(&dw);
            if let (Some(qn), Some(kn)) = (l.q_norm, l.k_norm) {
                let dim = acc.qk_norm.len() / 2;
                for (ti, row) in [(qn, &acc.qk_norm[..dim]), (kn, &acc.qk_norm[dim..])] {
                    let out = &mut g.tensors[ti].data;
                    out.iter_mut().zip(row).for_each(|(d, a)| *d = a * k);
                }
            }
        }
        let cls = p.classifier();
        let w = &p.tensors[p.final_norm].data;
        let n = p.tensors[cls].data.len();
        let mut dw = vec![0.0f32; w.len()];
        let mut dcls = vec![0.0f32; n];
        unfold_rows(&p.tensors[cls].data, &self.cls[..n], w, &mut dcls, &mut dw, k);
        g.tensors[p.final_norm].data.copy_from_slice(&dw);
        g.tensors[cls]
            .data
            .iter_mut()
            .zip(&dcls)
            .for_each(|(d, a)| *d += a);
        g.tensors[p.embed]
            .data
            .iter_mut()
            .zip(&self.embed)
            .for_each(|(d, a)| *d += a * k);
    }
}

/// For W̃ = W·diag(w) with gradient `acc` = ∂L/∂W̃ (row-major `[rows, dim]`):
/// ∂L/∂W = acc·diag(w)·k into `dw_out`, and ∂L/∂w += Σ_rows W ⊙ acc · k into `dnorm`.
fn unfold_rows(wmat: &[f32], acc: &[f32], w: &[f32], dw_out: &mut [f32], dnorm: &mut [f32], k: f32) {
    let dim = w.len();
    for ((row_w, row_a), row_o) in wmat
        .chunks_exact(dim)
        .zip(acc.chunks_exact(dim))
        .zip(dw_out.chunks_exact_mut(dim))
    {
        for d in 0..dim {
            row_o[d] = row_a[d] * w[d] * k;
            dnorm[d] += row_w[d] * row_a[d] * k;
        }
    }
}

/// `out = k·srcᵀ` for a row-major `src` with `cols` columns.
pub fn transpose_into(src: &[f32], cols: usize, out: &mut [f32], k: f32) {
    let rows = src.len() / cols;
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = src[r * cols + c] * k;
        }
    }
}
