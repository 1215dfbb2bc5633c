//! Gradient accumulators in the orientation the kernels produce them, and the conversion to
//! parameter gradients (undoing the RMSNorm-weight folding) once per optimizer step.

use crate::kernels::Shape;
use crate::model::{Config, Params, Tensor};

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
    /// Length of `cls` with its padding rows.
    cls_len: usize,
    /// The gradients while lent out by [`Accum::lend`].
    lent: Option<Params>,
    scratch: Vec<f32>,
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
            cls_len: s.vocab_chunks * s.vocab_chunk * s.dim,
            lent: None,
            scratch: Vec::new(),
        }
    }

    fn zero(&mut self) {
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

    /// Parameter gradients `∂L/∂θ · 1/scale` (divide out loss scaling and accumulation), as a
    /// new set (the accumulators are left as they are).
    pub fn to_grads(&self, p: &Params, scale: f32) -> Params {
        self.clone().lend(p, scale).clone()
    }

    /// Turns the accumulators, in place, into parameter gradients `∂L/∂θ · 1/scale` and lends
    /// their buffers to the returned set, so a model's gradients exist once, not twice (the
    /// kernel-orientation accumulators and the parameter-orientation gradients). The next
    /// [`Accum::reclaim`] takes the buffers back, zeroed.
    pub fn lend(&mut self, p: &Params, scale: f32) -> &mut Params {
        // Lent twice without accumulating in between: the second set is all zeros.
        self.reclaim();
        let k = 1.0 / scale;
        let mut g = hollow(p);
        let scratch = &mut self.scratch;
        for (l, acc) in p.layers.iter().zip(self.layers.iter_mut()) {
            let t = |i: usize| &p.tensors[i].data;
            let mut dnorm = vec![0.0f32; t(l.attn_norm).len()];
            for (wi, a) in [(l.wq, &mut acc.wq), (l.wk, &mut acc.wk), (l.wv, &mut acc.wv)] {
                unfold_rows(t(wi), a, t(l.attn_norm), &mut dnorm, k);
                g.tensors[wi].data = std::mem::take(a);
            }
            g.tensors[l.attn_norm].data = dnorm;
            // wo_t is [q, dim]: dim columns.
            transpose_in_place(&mut acc.wo_t, p.tensors[l.wo].shape[0], scratch, k);
            g.tensors[l.wo].data = std::mem::take(&mut acc.wo_t);
            acc.w2.iter_mut().for_each(|a| *a *= k);
            g.tensors[l.w2].data = std::mem::take(&mut acc.w2);
            let mut dnorm = vec![0.0f32; t(l.ffn_norm).len()];
            for (wi, a) in [(l.w1, &mut acc.w1_t), (l.w3, &mut acc.w3_t)] {
                // [dim, hidden] → the parameter's [hidden, dim] rows, then unfold.
                transpose_in_place(a, p.tensors[wi].shape[0], scratch, 1.0);
                unfold_rows(t(wi), a, t(l.ffn_norm), &mut dnorm, k);
                g.tensors[wi].data = std::mem::take(a);
            }
            g.tensors[l.ffn_norm].data = dnorm;
            if let (Some(qn), Some(kn)) = (l.q_norm, l.k_norm) {
                let dim = acc.qk_norm.len() / 2;
                for (ti, row) in [(qn, &acc.qk_norm[..dim]), (kn, &acc.qk_norm[dim..])] {
                    g.tensors[ti].data = row[..t(ti).len()].iter().map(|a| a * k).collect();
                }
            }
        }
        let cls = p.classifier();
        let n = p.tensors[cls].data.len();
        let mut dnorm = vec![0.0f32; p.tensors[p.final_norm].data.len()];
        let mut dcls = std::mem::take(&mut self.cls);
        dcls.truncate(n); // rows past the vocabulary are padding
        unfold_rows(
            &p.tensors[cls].data,
            &mut dcls,
            &p.tensors[p.final_norm].data,
            &mut dnorm,
            k,
        );
        g.tensors[p.final_norm].data = dnorm;
        if cls == p.embed {
            dcls.iter_mut().zip(&self.embed).for_each(|(d, a)| *d += a * k);
        } else {
            let mut de = std::mem::take(&mut self.embed);
            de.iter_mut().for_each(|a| *a *= k);
            g.tensors[p.embed].data = de;
        }
        g.tensors[cls].data = dcls;
        self.lent.insert(g)
    }

    /// Takes back the buffers [`Accum::lend`] handed out, zeroed; does nothing when none are out.
    pub fn reclaim(&mut self) {
        if let Some(mut g) = self.lent.take() {
            let (cls, embed) = (g.classifier(), g.embed);
            let mut take = |i: usize| std::mem::take(&mut g.tensors[i].data);
            for (l, acc) in g.layers.clone().iter().zip(self.layers.iter_mut()) {
                acc.wq = take(l.wq);
                acc.wk = take(l.wk);
                acc.wv = take(l.wv);
                acc.wo_t = take(l.wo);
                acc.w2 = take(l.w2);
                acc.w1_t = take(l.w1);
                acc.w3_t = take(l.w3);
            }
            if cls != embed {
                self.embed = take(embed);
            }
            self.cls = take(cls);
            self.cls.resize(self.cls_len, 0.0);
            self.zero();
        }
    }
}

/// The structure of `p` (names, shapes, indices) with empty data, to be filled by [`Accum::lend`].
fn hollow(p: &Params) -> Params {
    Params {
        tensors: p
            .tensors
            .iter()
            .map(|t| Tensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                data: Vec::new(),
            })
            .collect(),
        embed: p.embed,
        final_norm: p.final_norm,
        cls: p.cls,
        layers: p.layers.clone(),
    }
}

/// For W̃ = W·diag(w) with gradient `acc` = ∂L/∂W̃ (row-major `[rows, dim]`), in place:
/// ∂L/∂w += Σ_rows W ⊙ acc · k into `dnorm`, then `acc` ← ∂L/∂W = acc·diag(w)·k.
fn unfold_rows(wmat: &[f32], acc: &mut [f32], w: &[f32], dnorm: &mut [f32], k: f32) {
    let dim = w.len();
    for (row_w, row_a) in wmat.chunks_exact(dim).zip(acc.chunks_exact_mut(dim)) {
        for d in 0..dim {
            dnorm[d] += row_w[d] * row_a[d] * k;
            row_a[d] *= w[d] * k;
        }
    }
}

/// `m ← k·mᵀ` for a row-major `m` with `cols` columns, through `scratch`.
fn transpose_in_place(m: &mut [f32], cols: usize, scratch: &mut Vec<f32>, k: f32) {
    scratch.resize(m.len(), 0.0);
    transpose_into(m, cols, scratch, k);
    m.copy_from_slice(scratch);
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
