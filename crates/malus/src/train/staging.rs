//! Staging: how parameters become the weight blocks of kernel inputs — the RMSNorm fold
//! W̃ = W·diag(w), transposes, the classifier's vocabulary chunks — and its adjoint, how the
//! gradients the dW kernels emit for those blocks become parameter gradients. Both directions
//! are driven by one table ([`LAYER_FOLDS`]), so they cannot disagree.

use anyhow::{Result, ensure};

use crate::device::Packed;
use crate::kernels::block::*;
use crate::kernels::{Block, Packing, Shape, attention, classifier, ffn};
use crate::model::{LayerIds, Params};

/// Which per-layer kernel input a block is staged into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Attn,
    Ffn,
}

/// How one layer matrix (a Linear weight `[out, in]`) is staged, and how its gradient returns.
pub struct Fold {
    pub param: fn(&LayerIds) -> usize,
    /// The RMSNorm weight folded into its columns, if any.
    pub norm: Option<fn(&LayerIds) -> usize>,
    pub input: Input,
    pub staged: Block,
    /// The staged block is W̃ᵀ (`[in, out]`) rather than W̃.
    pub staged_t: bool,
    /// The dW block holding ∂L/∂W̃.
    pub grad: Block,
    /// The dW block is `[in, out]` rather than `[out, in]`.
    pub grad_t: bool,
}

const fn fold(
    param: fn(&LayerIds) -> usize,
    norm: Option<fn(&LayerIds) -> usize>,
    input: Input,
    (staged, staged_t): (Block, bool),
    (grad, grad_t): (Block, bool),
) -> Fold {
    Fold {
        param,
        norm,
        input,
        staged,
        staged_t,
        grad,
        grad_t,
    }
}

/// Every layer matrix, with the orientation its kernels read it in and emit its gradient in.
pub const LAYER_FOLDS: [Fold; 7] = [
    fold(
        |l| l.wq,
        Some(|l| l.attn_norm),
        Input::Attn,
        (WQ, true),
        (DWQ, false),
    ),
    fold(
        |l| l.wk,
        Some(|l| l.attn_norm),
        Input::Attn,
        (WK, true),
        (DWK, false),
    ),
    fold(
        |l| l.wv,
        Some(|l| l.attn_norm),
        Input::Attn,
        (WV, true),
        (DWV, false),
    ),
    fold(|l| l.wo, None, Input::Attn, (WO, false), (DWO_T, true)),
    fold(
        |l| l.w1,
        Some(|l| l.ffn_norm),
        Input::Ffn,
        (W1, true),
        (DW1_T, true),
    ),
    fold(
        |l| l.w3,
        Some(|l| l.ffn_norm),
        Input::Ffn,
        (W3, true),
        (DW3_T, true),
    ),
    fold(|l| l.w2, None, Input::Ffn, (W2, false), (DW2, false)),
];

impl Fold {
    /// The staged block of `wmat` (`[rows, cols]`), with `norm` folded into its columns.
    pub fn stage(&self, wmat: &[f32], cols: usize, norm: Option<&[f32]>) -> Vec<f32> {
        let rows = wmat.len() / cols;
        let mut out = vec![0.0f32; wmat.len()];
        for r in 0..rows {
            for c in 0..cols {
                let v = wmat[r * cols + c] * norm.map_or(1.0, |w| w[c]);
                let at = if self.staged_t { c * rows + r } else { r * cols + c };
                out[at] = v;
            }
        }
        out
    }

    /// Turns `g` = k⁻¹·∂L/∂W̃ as the dW kernel emits it into ∂L/∂W (`[rows, cols]`, in place),
    /// adding ∂L/∂w into `dnorm` when a norm weight is folded in.
    pub fn unfold(
        &self,
        g: &mut [f32],
        wmat: &[f32],
        cols: usize,
        norm: Option<(&[f32], &mut [f32])>,
        k: f32,
        scratch: &mut Vec<f32>,
    ) {
        let rows = wmat.len() / cols;
        match norm {
            Some((w, dnorm)) => {
                if self.grad_t {
                    transpose_in_place(g, rows, scratch, 1.0);
                }
                unfold_rows(wmat, g, w, dnorm, k);
            }
            None if self.grad_t => transpose_in_place(g, rows, scratch, k),
            None => g.iter_mut().for_each(|v| *v *= k),
        }
    }
}

/// The kernel inputs that carry staged weights: per layer one attention and one FFN input
/// (shared by each block's forward and backward, so weights are staged once per update), per
/// vocabulary chunk one input of each classifier orientation.
pub struct Inputs {
    pub attn: Vec<Packed>,
    pub ffn: Vec<Packed>,
    pub cls_fwd: Vec<Packed>,
    pub cls_bwd: Vec<Packed>,
}

impl Inputs {
    pub fn new(s: &Shape, layers: usize) -> Inputs {
        let bufs = |n: usize, p: Packing| (0..n).map(|_| Packed::new(s.dtype, &p)).collect();
        Inputs {
            attn: bufs(layers, attention::input(s)),
            ffn: bufs(layers, ffn::input(s)),
            cls_fwd: bufs(s.vocab_chunks, classifier::forward_input(s)),
            cls_bwd: bufs(s.vocab_chunks, classifier::backward_input(s)),
        }
    }

    /// Writes the weight blocks whose tensors changed (`changed[i]` for `p.tensors[i]`, as
    /// [`crate::train::optim::Optimizer::step`] reports): a block is rewritten when its matrix
    /// or the norm weight folded into it changed.
    pub fn restage(&mut self, s: &Shape, p: &Params, changed: &[bool]) -> Result<()> {
        ensure!(
            changed.len() == p.tensors.len(),
            "restage: {} change flags for {} tensors",
            changed.len(),
            p.tensors.len()
        );
        let t = |i: usize| &p.tensors[i];
        for (l, ids) in p.layers.iter().enumerate() {
            for f in &LAYER_FOLDS {
                let (wi, ni) = ((f.param)(ids), f.norm.map(|n| n(ids)));
                if changed[wi] || ni.is_some_and(|n| changed[n]) {
                    let w = t(wi);
                    self.stage_fold(l, f, &w.data, w.shape[1], ni.map(|n| t(n).data.as_slice()))?;
                }
            }
            if let (Some(qn), Some(kn)) = (ids.q_norm, ids.k_norm)
                && (changed[qn] || changed[kn])
            {
                self.stage_qk_norm(s, l, &t(qn).data, &t(kn).data)?;
            }
        }
        if changed[p.classifier()] || changed[p.final_norm] {
            let cls = &t(p.classifier()).data;
            self.stage_classifier(
                s,
                |start, out| {
                    out.copy_from_slice(&cls[start..start + out.len()]);
                    Ok(())
                },
                &t(p.final_norm).data,
            )?;
        }
        Ok(())
    }

    /// Writes the staged block of layer matrix `f` of `layer`: `w` `[rows, cols]`, with the
    /// RMSNorm weight `norm` folded into its columns.
    pub fn stage_fold(
        &mut self,
        layer: usize,
        f: &Fold,
        w: &[f32],
        cols: usize,
        norm: Option<&[f32]>,
    ) -> Result<()> {
        let input = match f.input {
            Input::Attn => &mut self.attn[layer],
            Input::Ffn => &mut self.ffn[layer],
        };
        input.write(f.staged, &f.stage(w, cols, norm))
    }

    /// Writes a layer's q/k RMSNorm weights.
    pub fn stage_qk_norm(&mut self, s: &Shape, layer: usize, q: &[f32], k: &[f32]) -> Result<()> {
        self.attn[layer].write(QK_NORM, &attention::norm_block(s, q, k))
    }

    /// Writes both orientations of every vocabulary chunk of Ẽ = E·diag(w_final), with
    /// `rows(start, out)` filling `out` with E's values from `start` on (row-major
    /// `[vocab, dim]`; called once per chunk, in order), so E need not be in memory whole.
    pub fn stage_classifier(
        &mut self,
        s: &Shape,
        mut rows: impl FnMut(usize, &mut [f32]) -> Result<()>,
        w: &[f32],
    ) -> Result<()> {
        let (vc, d) = (s.vocab_chunk, s.dim);
        let mut chunk = vec![0.0f32; vc * d];
        let mut cols = vec![0.0f32; vc * d];
        for c in 0..s.vocab_chunks {
            let n = vc.min(s.vocab.saturating_sub(c * vc)) * d;
            rows(c * vc * d, &mut chunk[..n])?;
            // Zero past the vocabulary.
            chunk[n..].fill(0.0);
            for row in chunk[..n].chunks_exact_mut(d) {
                row.iter_mut().zip(w).for_each(|(v, w)| *v *= w);
            }
            self.cls_bwd[c].write(E, &chunk)?;
            transpose_into(&chunk, d, &mut cols, 1.0);
            self.cls_fwd[c].write(E, &cols)?;
        }
        Ok(())
    }
}

/// For W̃ = W·diag(w) with gradient `acc` = ∂L/∂W̃ (row-major `[rows, dim]`), in place:
/// ∂L/∂w += Σ_rows W ⊙ acc · k into `dnorm`, then `acc` ← ∂L/∂W = acc·diag(w)·k.
pub fn unfold_rows(wmat: &[f32], acc: &mut [f32], w: &[f32], dnorm: &mut [f32], k: f32) {
    let dim = w.len();
    for (row_w, row_a) in wmat.chunks_exact(dim).zip(acc.chunks_exact_mut(dim)) {
        for d in 0..dim {
            dnorm[d] += row_w[d] * row_a[d] * k;
            row_a[d] *= w[d] * k;
        }
    }
}

/// `m ← k·mᵀ` for a row-major `m` with `cols` columns, through `scratch`.
pub fn transpose_in_place(m: &mut [f32], cols: usize, scratch: &mut Vec<f32>, k: f32) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    /// Unfold is the adjoint of the fold, for every row of the table: with S = stage(W, w) and
    /// G a gradient block, ⟨S, G⟩ = ⟨W, ∂W⟩ and, where a norm weight is folded in, = ⟨w, ∂w⟩
    /// (S is linear in W and in w separately).
    #[test]
    fn unfold_is_the_adjoint_of_the_fold() {
        let mut r = Rng::new(3);
        let (rows, cols) = (5, 4);
        for f in &LAYER_FOLDS {
            let (wmat, w, g) = (
                r.uniform_vec(rows * cols, 1.0),
                r.uniform_vec(cols, 1.0),
                r.uniform_vec(rows * cols, 1.0),
            );
            let norm = f.norm.map(|_| w.as_slice());
            let staged = f.stage(&wmat, cols, norm);
            // G in the staged block's orientation.
            let mut g_staged = g.clone();
            if f.staged_t != f.grad_t {
                let gcols = if f.grad_t { rows } else { cols };
                transpose_into(&g, gcols, &mut g_staged, 1.0);
            }
            let lhs = dot(&staged, &g_staged);
            let (mut dw, mut dnorm, mut scratch) = (g.clone(), vec![0.0f32; cols], Vec::new());
            f.unfold(
                &mut dw,
                &wmat,
                cols,
                f.norm.map(|_| (w.as_slice(), dnorm.as_mut_slice())),
                1.0,
                &mut scratch,
            );
            let tol = 1e-5 * lhs.abs().max(1.0);
            assert!(
                (dot(&wmat, &dw) - lhs).abs() < tol,
                "{}: ⟨W, ∂W⟩ ≠ ⟨S, G⟩",
                f.staged
            );
            if f.norm.is_some() {
                assert!(
                    (dot(&w, &dnorm) - lhs).abs() < tol,
                    "{}: ⟨w, ∂w⟩ ≠ ⟨S, G⟩",
                    f.staged
                );
            }
        }
    }

    /// The loss scale k divides out the same way whichever branch of `unfold` runs.
    #[test]
    fn unfold_scales_by_k() {
        let mut r = Rng::new(4);
        for f in &LAYER_FOLDS {
            let (wmat, w, g) = (
                r.uniform_vec(12, 1.0),
                r.uniform_vec(3, 1.0),
                r.uniform_vec(12, 1.0),
            );
            let run = |k: f32| {
                let (mut dw, mut dn) = (g.clone(), vec![0.0f32; 3]);
                f.unfold(
                    &mut dw,
                    &wmat,
                    3,
                    f.norm.map(|_| (w.as_slice(), dn.as_mut_slice())),
                    k,
                    &mut Vec::new(),
                );
                (dw, dn)
            };
            let ((a, an), (b, bn)) = (run(1.0), run(0.25));
            for (x, y) in a.iter().zip(&b).chain(an.iter().zip(&bn)) {
                assert!((x * 0.25 - y).abs() <= 1e-6 * x.abs().max(1.0), "{}", f.staged);
            }
        }
    }
}
