//! Gradient accumulators in the orientation the dW kernels emit them (one buffer per dW
//! output block), and their conversion to parameter gradients once per optimizer step
//! (through [`staging`](super::staging), which undoes the folding).

use anyhow::{Result, anyhow};

use super::staging::{LAYER_FOLDS, unfold_rows};
use crate::kernels::{Block, Packing, Shape, attention, ffn};
use crate::model::{Params, Tensor};

/// One layer's accumulated weight gradients: a buffer per block of the attention and FFN dW
/// outputs (`[rows, width]` of that block).
#[derive(Clone, Debug)]
pub struct LayerAcc {
    blocks: Vec<(Block, Vec<f32>)>,
}

impl LayerAcc {
    fn new(packings: &[Packing]) -> LayerAcc {
        let blocks = packings
            .iter()
            .flat_map(|p| {
                p.slots
                    .iter()
                    .map(move |s| (s.block, vec![0.0f32; s.len * p.width]))
            })
            .collect();
        LayerAcc { blocks }
    }

    pub fn get_mut(&mut self, b: Block) -> Result<&mut Vec<f32>> {
        self.blocks
            .iter_mut()
            .find(|(x, _)| *x == b)
            .map(|(_, v)| v)
            .ok_or_else(|| anyhow!("no gradient accumulator for block `{b}`"))
    }

    pub fn get(&self, b: Block) -> Option<&[f32]> {
        self.blocks
            .iter()
            .find(|(x, _)| *x == b)
            .map(|(_, v)| v.as_slice())
    }
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
    pub fn new(s: &Shape, layers: usize) -> Accum {
        let outs = [attention::dw_output(s), ffn::dw_output(s)];
        let cls_len = s.vocab_chunks * s.vocab_chunk * s.dim;
        Accum {
            layers: (0..layers).map(|_| LayerAcc::new(&outs)).collect(),
            cls: vec![0.0; cls_len],
            embed: vec![0.0; s.vocab * s.dim],
            cls_len,
            lent: None,
            scratch: Vec::new(),
        }
    }

    fn zero(&mut self) {
        for l in &mut self.layers {
            l.blocks.iter_mut().for_each(|(_, v)| v.fill(0.0));
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
        let t = |i: usize| &p.tensors[i];
        for (l, acc) in p.layers.iter().zip(self.layers.iter_mut()) {
            let mut dnorms = [(l.attn_norm, None), (l.ffn_norm, None)];
            for f in &LAYER_FOLDS {
                let wi = (f.param)(l);
                let mut a = std::mem::take(acc.get_mut(f.grad).expect("every fold has a dW block"));
                let (w, cols) = (&t(wi).data, t(wi).shape[1]);
                let norm = f.norm.map(|n| {
                    let ni = n(l);
                    let slot = dnorms.iter_mut().find(|(i, _)| *i == ni).expect("a layer norm");
                    let d = slot.1.get_or_insert_with(|| vec![0.0f32; t(ni).data.len()]);
                    (t(ni).data.as_slice(), d.as_mut_slice())
                });
                f.unfold(&mut a, w, cols, norm, k, &mut self.scratch);
                g.tensors[wi].data = a;
            }
            for (ni, d) in dnorms {
                g.tensors[ni].data = d.unwrap_or_else(|| vec![0.0; t(ni).data.len()]);
            }
            if let (Some(qn), Some(kn)) = (l.q_norm, l.k_norm) {
                for (ti, b) in [
                    (qn, crate::kernels::block::DQ_NORM),
                    (kn, crate::kernels::block::DK_NORM),
                ] {
                    let row = acc.get(b).expect("q/k-norm dW block");
                    g.tensors[ti].data = row[..t(ti).data.len()].iter().map(|a| a * k).collect();
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
            let layers = g.layers.clone();
            for (l, acc) in layers.iter().zip(self.layers.iter_mut()) {
                for f in &LAYER_FOLDS {
                    let data = std::mem::take(&mut g.tensors[(f.param)(l)].data);
                    *acc.get_mut(f.grad).expect("every fold has a dW block") = data;
                }
            }
            if cls != embed {
                self.embed = std::mem::take(&mut g.tensors[embed].data);
            }
            self.cls = std::mem::take(&mut g.tensors[cls].data);
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
