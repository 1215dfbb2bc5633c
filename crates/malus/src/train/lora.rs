//! The adapters of a LoRA run on the device: staging `Ãᵀ` and `B` into the per-layer kernel
//! inputs (beside the frozen base, staged once), and their gradients, computed on the host from
//! the taps the backward kernels emit anyway — for a target `y = W·x` (`x` `[in, S]`, the
//! incoming gradient `dy` `[out, S]`): `u = Ã·x`, `∂B = s·dy·uᵀ`, `∂A = s·(Bᵀ·dy)·(n⊙x)ᵀ`, where
//! `n` is the RMSNorm weight folded into `Ã = A·diag(n)`. Rank-`r` products, a fraction
//! `r/in` of the layer's own FLOPs, so no device kernel is worth its dispatch.

use anyhow::{Result, ensure};

use super::staging::Inputs;
use crate::device::Packed;
use crate::kernels::block::*;
use crate::kernels::dw::accumulate_nt;
use crate::kernels::{Block, Shape, lora};
use crate::model::{Adapter, Adapters, Params, Target};

/// Where a target's input `x` and incoming gradient `dy` are among its block's taps, and
/// whether `dy` is the residual branch's (times the residual scale α).
fn taps_of(t: Target) -> (Block, Block, bool) {
    match t {
        Target::Q => (XHAT, DQ, false),
        Target::K => (XHAT, DK, false),
        Target::V => (XHAT, DV, false),
        Target::O => (O, DX2, true),
        Target::Gate => (XHAT, DH1, false),
        Target::Up => (XHAT, DH3, false),
        Target::Down => (G, DY, true),
    }
}

/// A run's adapters on the device: their values (staged beside the frozen base), the base's
/// RMSNorm weights they fold in, and their accumulated gradients.
pub struct LoraRun {
    adapters: Adapters,
    /// Per layer, the attention and FFN RMSNorm weights.
    norms: Vec<[Vec<f32>; 2]>,
    /// One buffer per tensor of [`Adapters::tensors`].
    grads: Vec<Vec<f32>>,
}

impl LoraRun {
    pub fn new(base: &Params, adapters: Adapters) -> LoraRun {
        let t = |i: usize| base.tensors[i].data.clone();
        LoraRun {
            norms: base
                .layers
                .iter()
                .map(|l| [t(l.attn_norm), t(l.ffn_norm)])
                .collect(),
            grads: adapters.tensors.iter().map(|t| vec![0.0; t.data.len()]).collect(),
            adapters,
        }
    }

    pub fn adapters(&self) -> &Adapters {
        &self.adapters
    }

    /// The RMSNorm weight folded into a target's input, if any.
    fn norm(&self, layer: usize, t: Target) -> Option<&[f32]> {
        let [attn, ffn] = &self.norms[layer];
        t.after_norm()
            .then_some(if t.in_attention() { attn } else { ffn })
    }

    /// Takes new adapter values (same layout) for the next stage.
    pub fn set(&mut self, ad: &Adapters) -> Result<()> {
        ensure!(
            ad.adapters == self.adapters.adapters
                && ad
                    .tensors
                    .iter()
                    .zip(&self.adapters.tensors)
                    .all(|(a, b)| a.shape == b.shape),
            "these adapters are not laid out like the ones the model was compiled with"
        );
        self.adapters.tensors.clone_from(&ad.tensors);
        Ok(())
    }

    /// Writes every adapter's blocks into its layer's kernel input.
    pub fn stage(&self, inputs: &mut Inputs, s: &Shape) -> Result<()> {
        let ad = &self.adapters;
        let r = ad.lora.rank;
        for a in &ad.adapters {
            let (ab, bb) = lora::blocks(a.target);
            let input = if a.target.in_attention() {
                &mut inputs.attn[a.layer]
            } else {
                &mut inputs.ffn[a.layer]
            };
            let norm = self.norm(a.layer, a.target);
            input.write(ab, &lora::stage_a(s, &ad.tensors[a.a].data, r, norm))?;
            input.write(bb, &lora::stage_b(s, &ad.tensors[a.b].data, r))?;
        }
        Ok(())
    }

    /// Adds the gradients of the adapters of `layer` among `of` after that block's backward:
    /// `taps` its output, `input` its input (which holds the incoming gradient).
    pub fn add_grads(
        &mut self,
        s: &Shape,
        layer: usize,
        of: &[Target],
        taps: &Packed,
        input: &Packed,
    ) -> Result<()> {
        let read = |b: Block| {
            if taps.packing().has(b) {
                taps.read_vec(b)
            } else {
                input.read_vec(b)
            }
        };
        for &t in of {
            let Some(&a) = self.adapters.get(layer, t) else {
                continue;
            };
            let (xb, dyb, residual) = taps_of(t);
            let mut x = read(xb)?;
            if let Some(n) = self.norm(layer, t) {
                for (row, w) in x.chunks_exact_mut(s.seq).zip(n) {
                    row.iter_mut().for_each(|v| *v *= w);
                }
            }
            let dy = read(dyb)?;
            let k = self.adapters.lora.scale() * if residual { s.residual_scale } else { 1.0 };
            self.add_one(&a, &x, &dy, s.seq, k as f32)?;
        }
        Ok(())
    }

    /// `∂B += k·dy·(A·x)ᵀ` and `∂A += k·(Bᵀ·dy)·xᵀ` for `x` `[in, S]`, `dy` `[out, S]`.
    fn add_one(&mut self, a: &Adapter, x: &[f32], dy: &[f32], seq: usize, k: f32) -> Result<()> {
        let (at, bt) = (&self.adapters.tensors[a.a], &self.adapters.tensors[a.b]);
        let (r, inp, out) = (self.adapters.lora.rank, at.shape[1], bt.shape[0]);
        ensure!(
            x.len() == inp * seq && dy.len() == out * seq,
            "LoRA taps of {} do not match its adapter",
            at.name
        );
        let mut u = vec![0.0f32; r * seq];
        malus_cpu::gemm_f32_row_major(r, seq, inp, &mut u, &at.data, x, false);
        accumulate_nt(&mut self.grads[a.b], dy, &u, seq, k);
        let mut b_t = vec![0.0f32; r * out];
        for o in 0..out {
            for j in 0..r {
                b_t[j * out + o] = bt.data[o * r + j];
            }
        }
        let mut v = vec![0.0f32; r * seq];
        malus_cpu::gemm_f32_row_major(r, seq, out, &mut v, &b_t, dy, false);
        accumulate_nt(&mut self.grads[a.a], &v, x, seq, k);
        Ok(())
    }

    /// The gradients `∂L/∂θ · 1/scale` as adapter tensors (the accumulators stay).
    pub fn grads(&self, scale: f32) -> Adapters {
        let mut g = self.adapters.clone();
        for (t, acc) in g.tensors.iter_mut().zip(&self.grads) {
            t.data = acc.iter().map(|v| v / scale).collect();
        }
        g
    }

    pub fn zero_grads(&mut self) {
        self.grads.iter_mut().for_each(|g| g.fill(0.0));
    }
}
