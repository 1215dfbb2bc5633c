//! One training micro-step on a device, as a schedule over the kernel table: forward to the
//! loss, then backward into the gradient accumulators. Every matmul runs in a device kernel
//! (or, with `--dw host`, the weight gradients run as host GEMMs over the same taps); the host
//! does the embedding, the cross-entropy and the accumulation. Staging of weights lives in
//! [`staging`](super::staging), the accumulators in [`grads`](super::grads).

use anyhow::{Result, bail, ensure};

use super::dw_pass::DwPass;
use super::frozen;
use super::grads::Accum;
use super::kernels::Kernels;
use super::lora::LoraRun;
use super::staging::Inputs;
use crate::device::{Device, Packed};
use crate::host;
use crate::kernels::block::*;
use crate::kernels::dw;
use crate::kernels::{Block, KernelId, Shape, attention, classifier, ffn};
use crate::model::hf_weights::WeightReader;
use crate::model::{Adapters, Config, Params, Stored};
use crate::plan::Plan;

/// A model compiled on a device: kernels, staged weights, taps and gradient accumulators.
pub struct CompiledModel {
    config: Config,
    shape: Shape,
    kernels: Kernels,
    inputs: Inputs,
    /// Inputs without staged weights, written per call.
    norm_in: Packed,
    cls_dw_in: Packed,
    ffn_dw_in: Packed,
    attn_dw_in: Packed,
    /// Position-major `[seq, vocab]`: the logits after the forward, their gradient after the
    /// loss (one buffer for both).
    probs: Vec<f32>,
    tokens: Vec<u32>,
    scratch: Vec<f32>,
    /// The base's gradient accumulators; none when the base is frozen (LoRA).
    acc: Option<Accum>,
    /// The adapters of a LoRA run, once staged.
    lora: Option<LoraRun>,
    /// The embedding of a frozen base staged by [`CompiledModel::stage_frozen`], at its stored
    /// precision; forward passes look tokens up here instead of in their parameters.
    frozen_embedding: Option<Stored>,
}

impl CompiledModel {
    /// Compiles the plan's kernels on `device` (once; every layer shares them). Weights are
    /// staged by [`CompiledModel::stage`].
    pub fn new(plan: &Plan, device: &Device) -> Result<CompiledModel> {
        let s = plan.shape.clone();
        ensure!(
            device.dtype() == s.dtype,
            "the plan's kernels are {:?} but the device {} runs {:?}",
            s.dtype,
            device.name(),
            device.dtype()
        );
        let new = |p| Packed::new(s.dtype, &p);
        Ok(CompiledModel {
            kernels: Kernels::compile(plan, device)?,
            inputs: Inputs::new(&s, plan.config.layers),
            norm_in: new(classifier::norm_input(&s)),
            cls_dw_in: new(classifier::dw_input(&s)),
            ffn_dw_in: new(ffn::dw_input(&s)),
            attn_dw_in: new(attention::dw_input(&s)),
            probs: vec![0.0; s.seq * s.vocab],
            tokens: Vec::new(),
            scratch: Vec::new(),
            acc: s.lora.is_none().then(|| Accum::new(&s, plan.config.layers)),
            lora: None,
            frozen_embedding: None,
            config: plan.config.clone(),
            shape: s,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Writes every weight into the kernel inputs (after initialisation or loading), once the
    /// set is checked to be this config's.
    pub fn stage(&mut self, p: &Params) -> Result<()> {
        p.check(&self.config)?;
        self.restage(p, &vec![true; p.tensors.len()])
    }

    /// Stages a frozen base (a LoRA run's) straight from its files, a tensor at a time, and
    /// keeps its embedding; returns the base's layout with its RMSNorm weights (what
    /// [`CompiledModel::stage_adapters`] and the forward's `p` need of it) and its fingerprint.
    pub fn stage_frozen(&mut self, r: &WeightReader) -> Result<(Params, String)> {
        ensure!(
            self.shape.lora.is_some(),
            "a frozen base is staged only for a LoRA plan (Plan::lora)"
        );
        let base = frozen::stage(&mut self.inputs, &self.shape, r)?;
        self.frozen_embedding = Some(base.embedding);
        Ok((base.norms, base.fingerprint))
    }

    /// Re-stages only the blocks whose tensors changed (see [`Inputs::restage`]).
    pub fn restage(&mut self, p: &Params, changed: &[bool]) -> Result<()> {
        self.inputs.restage(&self.shape, p, changed)
    }

    /// Stages the adapters of a LoRA plan (the first time beside the frozen base `p`, which must
    /// be staged already; afterwards `p` is only read for its layout). Their gradients start at
    /// zero the first time and accumulate until [`CompiledModel::take_lora_grads`].
    pub fn stage_adapters(&mut self, p: &Params, ad: &Adapters) -> Result<()> {
        let Some(l) = &self.shape.lora else {
            bail!("this model was compiled without LoRA: build its plan with Plan::lora")
        };
        ensure!(
            l.rank == ad.lora.rank && l.targets == ad.lora.targets && l.scale == ad.lora.scale(),
            "the adapters' rank, targets or scale differ from the plan's"
        );
        match &mut self.lora {
            Some(run) => run.set(ad)?,
            None => self.lora = Some(LoraRun::new(p, ad.clone())),
        }
        let run = self.lora.as_ref().expect("set above");
        run.stage(&mut self.inputs, &self.shape)
    }

    /// Forward pass over `tokens[..seq]` predicting `tokens[1..]`; returns the mean loss.
    pub fn forward(&mut self, p: &Params, tokens: &[u32]) -> Result<f64> {
        let mean = vec![1.0 / self.shape.seq as f32; self.shape.seq];
        self.forward_weighted(p, tokens, &mean)
    }

    /// [`CompiledModel::forward`] with one loss weight per target: returns `Σ wᵢ·ℓᵢ`, and the
    /// backward pass differentiates that sum. Targets of weight 0 (a masked prompt) add exactly
    /// nothing to the loss or to any gradient; [`host::batch_loss_weights`] makes a batch's
    /// weights give the mean over its counted targets.
    pub fn forward_weighted(&mut self, p: &Params, tokens: &[u32], weights: &[f32]) -> Result<f64> {
        let s = &self.shape;
        ensure!(
            tokens.len() == s.seq + 1,
            "a micro-step takes seq + 1 = {} tokens, got {}",
            s.seq + 1,
            tokens.len()
        );
        ensure!(
            weights.len() == s.seq,
            "a micro-step takes seq = {} loss weights, got {}",
            s.seq,
            weights.len()
        );
        if let Some(bad) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
            bail!("loss weight {bad} is not a finite number ≥ 0");
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= s.vocab) {
            bail!("token id {bad} is not below the vocabulary size {}", s.vocab);
        }
        self.tokens = tokens.to_vec();
        let Inputs {
            attn, ffn, cls_fwd, ..
        } = &mut self.inputs;
        let mut x = vec![0.0f32; s.dim * s.seq];
        match &self.frozen_embedding {
            Some(e) => host::embed(|at, row| e.read_into(at, row), s.dim, &tokens[..s.seq], &mut x),
            None => {
                let e = &p.tensors[p.embed].data;
                let row = |at: usize, row: &mut [f32]| row.copy_from_slice(&e[at..at + row.len()]);
                host::embed(row, s.dim, &tokens[..s.seq], &mut x)
            }
        }
        attn[0].write(X, &x)?;
        let last = self.config.layers - 1;
        for l in 0..=last {
            self.kernels
                .run(KernelId::AttnFwd, &attn[l])?
                .send(X2, &mut ffn[l], X2)?;
            let out = self.kernels.run(KernelId::FfnFwd, &ffn[l])?;
            if l < last {
                out.send(X_NEXT, &mut attn[l + 1], X)?;
            } else {
                for input in cls_fwd.iter_mut() {
                    out.send(X_NEXT, input, X)?;
                }
                out.send(X_NEXT, &mut self.norm_in, X)?;
            }
        }
        let (vc, seq) = (s.vocab_chunk, s.seq);
        self.scratch.resize(vc * seq, 0.0);
        for (c, input) in cls_fwd.iter().enumerate() {
            let out = self.kernels.run(KernelId::ClsFwd, input)?;
            out.read(LOGITS, &mut self.scratch)?;
            // Channel-major chunk rows → position-major rows (padding rows past vocab dropped).
            for v in 0..vc.min(s.vocab - c * vc) {
                for (i, &x) in self.scratch[v * seq..(v + 1) * seq].iter().enumerate() {
                    self.probs[i * s.vocab + c * vc + v] = x;
                }
            }
            if self.acc.is_some() {
                out.send(XHAT, &mut self.cls_dw_in, XHAT)?;
            }
        }
        let loss = host::cross_entropy_in_place(&mut self.probs, s.vocab, &tokens[1..], weights, 1.0);
        ensure!(
            loss.is_finite(),
            "loss is {loss} (the forward overflowed or the weights are not finite)"
        );
        Ok(loss)
    }

    /// Backward pass of the last forward; adds `loss_scale · ∂L/∂θ` (in the dW kernels'
    /// orientation) to the accumulators.
    pub fn backward(&mut self, loss_scale: f32) -> Result<()> {
        if let Some(acc) = &mut self.acc {
            acc.reclaim();
        } else {
            ensure!(
                self.lora.is_some(),
                "stage the adapters before the first backward"
            );
        }
        let s = self.shape.clone();
        let (vc, seq) = (s.vocab_chunk, s.seq);
        let mut dxhat = vec![0.0f32; s.dim * seq];
        let mut dl = vec![0.0f32; vc * seq];
        for c in 0..s.vocab_chunks {
            // The chunk's rows of loss_scale·∂L/∂logits, channel-major, zero on padding rows.
            dl.fill(0.0);
            for v in 0..vc.min(s.vocab - c * vc) {
                for (i, d) in dl[v * seq..(v + 1) * seq].iter_mut().enumerate() {
                    *d = self.probs[i * s.vocab + c * vc + v] * loss_scale;
                }
            }
            let input = &mut self.inputs.cls_bwd[c];
            input.write(DLOGITS, &dl)?;
            let out = self.kernels.run(KernelId::ClsBwd, input)?;
            out.add_to(DXHAT, &mut dxhat, &mut self.scratch)?;
            let Some(acc) = &mut self.acc else { continue };
            let rows = vc * s.dim;
            let acc = &mut acc.cls[c * rows..(c + 1) * rows];
            if self.kernels.has(KernelId::ClsDw) {
                self.cls_dw_in.write(DLOGITS, &dl)?;
                let out = self.kernels.run(KernelId::ClsDw, &self.cls_dw_in)?;
                out.add_to(DE, acc, &mut self.scratch)?;
            } else {
                let xhat = &self.cls_dw_in;
                let mut tap = |b: Block| {
                    if b == DLOGITS {
                        Ok(dl.clone())
                    } else {
                        xhat.read_vec(b)
                    }
                };
                dw::add_on_host(&classifier::dw_terms()[0], &s, &mut tap, acc)?;
            }
        }
        self.norm_in.write(DXHAT, &dxhat)?;
        let Inputs { attn, ffn, .. } = &mut self.inputs;
        let last = self.config.layers - 1;
        self.kernels
            .run(KernelId::NormBwd, &self.norm_in)?
            .send(DX, &mut ffn[last], DY)?;
        for l in (0..=last).rev() {
            let out = self.kernels.run(KernelId::FfnBwd, &ffn[l])?;
            out.send(DX2, &mut attn[l], DX2)?;
            let Some(acc) = &mut self.acc else {
                let run = self.lora.as_mut().expect("checked above");
                run.add_grads(&s, l, &ffn::TARGETS, out, &ffn[l])?;
                let out = self.kernels.run(KernelId::AttnBwd, &attn[l])?;
                run.add_grads(&s, l, &attention::TARGETS, out, &attn[l])?;
                if l > 0 {
                    out.send(DX, &mut ffn[l - 1], DY)?;
                }
                continue;
            };
            let acc = &mut acc.layers[l];
            let ffn_dw = DwPass {
                id: KernelId::FfnDw,
                terms: &ffn::dw_terms(),
            };
            ffn_dw.add(
                &mut self.kernels,
                KernelId::FfnBwd,
                &ffn[l],
                &mut self.ffn_dw_in,
                acc,
                &s,
                &mut self.scratch,
            )?;
            self.kernels.run(KernelId::AttnBwd, &attn[l])?;
            let attn_dw = DwPass {
                id: KernelId::AttnDw,
                terms: &attention::dw_terms(&s),
            };
            attn_dw.add(
                &mut self.kernels,
                KernelId::AttnBwd,
                &attn[l],
                &mut self.attn_dw_in,
                acc,
                &s,
                &mut self.scratch,
            )?;
            let out = self.kernels.output(KernelId::AttnBwd)?;
            if l > 0 {
                out.send(DX, &mut ffn[l - 1], DY)?;
            } else {
                let dx = out.read_vec(DX)?;
                let acc = self.acc.as_mut().expect("the full path");
                host::embed_backward(&mut acc.embed, s.dim, &self.tokens[..seq], &dx);
            }
        }
        Ok(())
    }

    /// The accumulated gradients as parameter gradients (`1/scale` undoes loss scaling and
    /// averages over accumulated micro-steps). They are the accumulators themselves, converted
    /// in place ([`Accum::lend`]); the next backward takes them back, cleared.
    pub fn take_grads(&mut self, p: &Params, scale: f32) -> Result<&mut Params> {
        Ok(self.full()?.lend(p, scale))
    }

    /// A copy of the accumulated gradients as parameter gradients, leaving the accumulators.
    pub fn grads(&self, p: &Params, scale: f32) -> Result<Params> {
        let Some(acc) = &self.acc else {
            bail!("the base of a LoRA model is frozen: it has no gradients")
        };
        Ok(acc.to_grads(p, scale))
    }

    fn full(&mut self) -> Result<&mut Accum> {
        match &mut self.acc {
            Some(acc) => Ok(acc),
            None => bail!("the base of a LoRA model is frozen: it has no gradients"),
        }
    }

    /// The adapters' accumulated gradients `∂L/∂θ · 1/scale`; the accumulators restart at zero.
    pub fn take_lora_grads(&mut self, scale: f32) -> Result<Adapters> {
        let g = self.lora_grads(scale)?;
        self.lora.as_mut().expect("checked").zero_grads();
        Ok(g)
    }

    /// A copy of the adapters' accumulated gradients, leaving the accumulators.
    pub fn lora_grads(&self, scale: f32) -> Result<Adapters> {
        match &self.lora {
            Some(run) => Ok(run.grads(scale)),
            None => bail!("this model has no adapters staged"),
        }
    }
}
