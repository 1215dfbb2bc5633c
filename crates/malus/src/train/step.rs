//! One training micro-step on a device: forward to the loss, then backward into the gradient
//! accumulators. Every matmul runs in a device kernel; the host does the embedding, the
//! cross-entropy and the accumulation of weight gradients.

use anyhow::{Context, Result, ensure};

use super::grads::{Accum, transpose_into};
use super::host_dw::{accumulate_nt, block};
use crate::device::{Device, Exec};
use crate::host::{self, Buf};
use crate::kernels::common::Layout;
use crate::kernels::plan::Plan;
use crate::kernels::{KernelDef, Shape};
use crate::model::{Config, Params};

/// A compiled kernel with its layouts and reusable output buffer.
struct Kernel {
    exec: Box<dyn Exec>,
    name: &'static str,
    input: Layout,
    output: Layout,
    out: Buf,
}

impl Kernel {
    fn new(device: &dyn Device, def: &KernelDef, s: &Shape) -> Result<Kernel> {
        let exec = device
            .compile(def)
            .with_context(|| format!("compiling kernel {}", def.name))?;
        Ok(Kernel {
            exec,
            name: def.name,
            input: def.input.clone(),
            output: def.output.clone(),
            out: Buf::for_layout(s.dtype, &def.output),
        })
    }

    fn run(&mut self, input: &Buf) -> Result<()> {
        self.exec
            .exec(input.as_bytes(), self.out.as_bytes_mut())
            .with_context(|| format!("running kernel {}", self.name))
    }
}

/// Adds a block of a buffer into an f32 accumulator.
fn accumulate(buf: &Buf, l: &Layout, name: &str, acc: &mut [f32], scratch: &mut Vec<f32>) -> Result<()> {
    scratch.resize(acc.len(), 0.0);
    buf.read_block(l, name, scratch)?;
    acc.iter_mut().zip(scratch.iter()).for_each(|(a, b)| *a += b);
    Ok(())
}

/// Kernels, staged inputs and scratch of one model on one device.
pub struct Step {
    pub config: Config,
    pub shape: Shape,
    attn_fwd: Kernel,
    attn_bwd: Kernel,
    attn_dw: Option<Kernel>,
    ffn_fwd: Kernel,
    ffn_bwd: Kernel,
    ffn_dw: Option<Kernel>,
    cls_fwd: Kernel,
    cls_bwd: Kernel,
    cls_dw: Option<Kernel>,
    norm_bwd: Kernel,
    /// Per layer: one input shared by the block's forward and backward (weights staged once).
    attn_in: Vec<Buf>,
    ffn_in: Vec<Buf>,
    /// Per vocabulary chunk.
    cls_fwd_in: Vec<Buf>,
    cls_bwd_in: Vec<Buf>,
    cls_dw_in: Buf,
    norm_in: Buf,
    ffn_dw_in: Buf,
    attn_dw_in: Buf,
    /// Position-major `[seq, vocab]`: the logits after the forward, their gradient after the
    /// loss (one buffer for both).
    probs: Vec<f32>,
    tokens: Vec<u32>,
    scratch: Vec<f32>,
    pub acc: Accum,
}

impl Step {
    /// Compiles the plan's kernels on `device` (once; every layer shares them).
    pub fn new(plan: &Plan, device: &dyn Device) -> Result<Step> {
        let s = plan.shape.clone();
        let c = plan.config.clone();
        let k = |d: &KernelDef| Kernel::new(device, d, &s);
        let ko = |d: &Option<KernelDef>| d.as_ref().map(|d| Kernel::new(device, d, &s)).transpose();
        let step = Step {
            attn_fwd: k(&plan.attn_fwd)?,
            attn_bwd: k(&plan.attn_bwd)?,
            attn_dw: ko(&plan.attn_dw)?,
            ffn_fwd: k(&plan.ffn_fwd)?,
            ffn_bwd: k(&plan.ffn_bwd)?,
            ffn_dw: ko(&plan.ffn_dw)?,
            cls_fwd: k(&plan.cls_fwd)?,
            cls_bwd: k(&plan.cls_bwd)?,
            cls_dw: ko(&plan.cls_dw)?,
            norm_bwd: k(&plan.norm_bwd)?,
            attn_in: (0..c.layers)
                .map(|_| Buf::for_layout(s.dtype, &plan.attn_bwd.input))
                .collect(),
            ffn_in: (0..c.layers)
                .map(|_| Buf::for_layout(s.dtype, &plan.ffn_bwd.input))
                .collect(),
            cls_fwd_in: (0..s.vocab_chunks)
                .map(|_| Buf::for_layout(s.dtype, &plan.cls_fwd.input))
                .collect(),
            cls_bwd_in: (0..s.vocab_chunks)
                .map(|_| Buf::for_layout(s.dtype, &plan.cls_bwd.input))
                .collect(),
            cls_dw_in: Buf::for_layout(s.dtype, &crate::kernels::classifier::dw_layout(&s)),
            norm_in: Buf::for_layout(s.dtype, &plan.norm_bwd.input),
            ffn_dw_in: Buf::for_layout(s.dtype, &crate::kernels::ffn::dw_layout(&s)),
            attn_dw_in: Buf::for_layout(s.dtype, &crate::kernels::attention::dw_layout(&s)),
            probs: vec![0.0; s.seq * s.vocab],
            tokens: Vec::new(),
            scratch: Vec::new(),
            acc: Accum::new(&c, &s),
            config: c,
            shape: s,
        };
        ensure!(
            step.attn_fwd.input == step.attn_bwd.input && step.ffn_fwd.input == step.ffn_bwd.input,
            "forward and backward kernels must share their input layout"
        );
        Ok(step)
    }

    /// Writes every weight into the kernel inputs (after initialisation or loading), folding
    /// each RMSNorm weight into the matrices that follow it.
    pub fn stage(&mut self, p: &Params) -> Result<()> {
        self.restage(p, &vec![true; p.tensors.len()])
    }

    /// Re-stages, after an optimizer step, only the blocks whose tensors changed (`changed[i]`
    /// for `p.tensors[i]`, as [`crate::train::optim::Optimizer::step`] reports): a block is
    /// rewritten when its matrix or the norm weight folded into it changed.
    pub fn restage(&mut self, p: &Params, changed: &[bool]) -> Result<()> {
        ensure!(
            changed.len() == p.tensors.len(),
            "restage: {} change flags for {} tensors",
            changed.len(),
            p.tensors.len()
        );
        let s = &self.shape;
        let t = |i: usize| &p.tensors[i].data;
        for (l, ids) in p.layers.iter().enumerate() {
            let li = &self.attn_bwd.input;
            let w = t(ids.attn_norm);
            for (name, id) in [("wq", ids.wq), ("wk", ids.wk), ("wv", ids.wv)] {
                if changed[id] || changed[ids.attn_norm] {
                    self.attn_in[l].write_block(li, name, &fold_transpose(t(id), w))?;
                }
            }
            if changed[ids.wo] {
                self.attn_in[l].write_block(li, "wo", t(ids.wo))?;
            }
            if let (Some(qn), Some(kn)) = (ids.q_norm, ids.k_norm)
                && (changed[qn] || changed[kn])
            {
                let b = crate::kernels::attention::norm_block(s, t(qn), t(kn));
                self.attn_in[l].write_block(li, "qk_norm", &b)?;
            }
            let lf = &self.ffn_bwd.input;
            let w = t(ids.ffn_norm);
            for (name, id) in [("w1", ids.w1), ("w3", ids.w3)] {
                if changed[id] || changed[ids.ffn_norm] {
                    self.ffn_in[l].write_block(lf, name, &fold_transpose(t(id), w))?;
                }
            }
            if changed[ids.w2] {
                self.ffn_in[l].write_block(lf, "w2", t(ids.w2))?;
            }
        }
        if !(changed[p.classifier()] || changed[p.final_norm]) {
            return Ok(());
        }
        let cls = &p.tensors[p.classifier()].data;
        let w = &p.tensors[p.final_norm].data;
        let (vc, d) = (s.vocab_chunk, s.dim);
        for c in 0..s.vocab_chunks {
            let mut rows = vec![0.0f32; vc * d];
            for v in 0..vc {
                let gv = c * vc + v;
                if gv < s.vocab {
                    for j in 0..d {
                        rows[v * d + j] = cls[gv * d + j] * w[j];
                    }
                }
            }
            self.cls_bwd_in[c].write_block(&self.cls_bwd.input, "e", &rows)?;
            let mut cols = vec![0.0f32; vc * d];
            transpose_into(&rows, d, &mut cols, 1.0);
            self.cls_fwd_in[c].write_block(&self.cls_fwd.input, "e", &cols)?;
        }
        Ok(())
    }

    /// Forward pass over `tokens[..seq]` predicting `tokens[1..]`; returns the mean loss.
    pub fn forward(&mut self, p: &Params, tokens: &[u32]) -> Result<f64> {
        let s = self.shape.clone();
        ensure!(
            tokens.len() == s.seq + 1,
            "a micro-step takes seq + 1 = {} tokens, got {}",
            s.seq + 1,
            tokens.len()
        );
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= s.vocab) {
            anyhow::bail!("token id {bad} is not below the vocabulary size {}", s.vocab);
        }
        self.tokens = tokens.to_vec();
        let mut x = vec![0.0f32; s.dim * s.seq];
        host::embed(&p.tensors[p.embed].data, s.dim, &tokens[..s.seq], &mut x);
        let la = self.attn_bwd.input.clone();
        let lf = self.ffn_bwd.input.clone();
        self.attn_in[0].write_block(&la, "x", &x)?;
        for l in 0..self.config.layers {
            self.attn_fwd.run(&self.attn_in[l])?;
            let out = &self.attn_fwd.out;
            out.copy_block(&self.attn_fwd.output, "x2", &mut self.ffn_in[l], &lf, "x2")?;
            self.ffn_fwd.run(&self.ffn_in[l])?;
            let out = &self.ffn_fwd.out;
            if l + 1 < self.config.layers {
                out.copy_block(&self.ffn_fwd.output, "x_next", &mut self.attn_in[l + 1], &la, "x")?;
            } else {
                for c in 0..s.vocab_chunks {
                    out.copy_block(
                        &self.ffn_fwd.output,
                        "x_next",
                        &mut self.cls_fwd_in[c],
                        &self.cls_fwd.input,
                        "x",
                    )?;
                }
                out.copy_block(
                    &self.ffn_fwd.output,
                    "x_next",
                    &mut self.norm_in,
                    &self.norm_bwd.input,
                    "x",
                )?;
            }
        }
        let (vc, seq) = (s.vocab_chunk, s.seq);
        self.scratch.resize(vc * seq, 0.0);
        for c in 0..s.vocab_chunks {
            self.cls_fwd.run(&self.cls_fwd_in[c])?;
            self.cls_fwd
                .out
                .read_block(&self.cls_fwd.output, "logits", &mut self.scratch)?;
            // Channel-major chunk rows → position-major rows (padding rows past vocab dropped).
            for v in 0..vc.min(s.vocab - c * vc) {
                let gv = c * vc + v;
                for (i, &x) in self.scratch[v * seq..(v + 1) * seq].iter().enumerate() {
                    self.probs[i * s.vocab + gv] = x;
                }
            }
        }
        let lc = crate::kernels::classifier::dw_layout(&s);
        self.cls_fwd
            .out
            .copy_block(&self.cls_fwd.output, "xhat", &mut self.cls_dw_in, &lc, "xhat")?;
        let loss = host::cross_entropy_in_place(&mut self.probs, s.vocab, &tokens[1..], 1.0);
        ensure!(loss.is_finite() || loss.is_nan(), "loss is not finite");
        Ok(loss)
    }

    /// Backward pass of the last forward; adds `loss_scale · ∂L/∂θ` (in kernel orientation) to
    /// the accumulators.
    pub fn backward(&mut self, loss_scale: f32) -> Result<()> {
        self.acc.reclaim();
        let s = self.shape.clone();
        let (vc, seq) = (s.vocab_chunk, s.seq);
        let lb = self.cls_bwd.input.clone();
        let lc = crate::kernels::classifier::dw_layout(&s);
        let mut dxhat = vec![0.0f32; s.dim * s.seq];
        let mut dl = vec![0.0f32; vc * seq];
        for c in 0..s.vocab_chunks {
            // The chunk's rows of loss_scale·∂L/∂logits, channel-major, zero on padding rows.
            dl.fill(0.0);
            for v in 0..vc.min(s.vocab - c * vc) {
                let gv = c * vc + v;
                for (i, d) in dl[v * seq..(v + 1) * seq].iter_mut().enumerate() {
                    *d = self.probs[i * s.vocab + gv] * loss_scale;
                }
            }
            self.cls_bwd_in[c].write_block(&lb, "dlogits", &dl)?;
            self.cls_bwd.run(&self.cls_bwd_in[c])?;
            accumulate(
                &self.cls_bwd.out,
                &self.cls_bwd.output,
                "dxhat",
                &mut dxhat,
                &mut self.scratch,
            )?;
            let rows = s.vocab_chunk * s.dim;
            let acc = &mut self.acc.cls[c * rows..(c + 1) * rows];
            if let Some(k) = &mut self.cls_dw {
                self.cls_dw_in.write_block(&lc, "dlogits", &dl)?;
                k.run(&self.cls_dw_in)?;
                accumulate(&k.out, &k.output, "de", acc, &mut self.scratch)?;
            } else {
                accumulate_nt(acc, &dl, &block(&self.cls_dw_in, &lc, "xhat")?, s.seq, 1.0);
            }
        }
        let ln = self.norm_bwd.input.clone();
        self.norm_in.write_block(&ln, "dxhat", &dxhat)?;
        self.norm_bwd.run(&self.norm_in)?;
        let la = self.attn_bwd.input.clone();
        let lf = self.ffn_bwd.input.clone();
        let (lfd, lad) = (
            crate::kernels::ffn::dw_layout(&s),
            crate::kernels::attention::dw_layout(&s),
        );
        let last = self.config.layers - 1;
        self.norm_bwd
            .out
            .copy_block(&self.norm_bwd.output, "dx", &mut self.ffn_in[last], &lf, "dy")?;
        for l in (0..self.config.layers).rev() {
            self.ffn_bwd.run(&self.ffn_in[l])?;
            let out = &self.ffn_bwd.out;
            out.copy_block(&self.ffn_bwd.output, "dx2", &mut self.attn_in[l], &la, "dx2")?;
            if let Some(k) = &mut self.ffn_dw {
                self.ffn_dw_in.copy_from(out)?;
                self.ffn_in[l].copy_block(&lf, "dy", &mut self.ffn_dw_in, &lfd, "dy")?;
                k.run(&self.ffn_dw_in)?;
                let acc = &mut self.acc.layers[l];
                accumulate(&k.out, &k.output, "dw2", &mut acc.w2, &mut self.scratch)?;
                accumulate(&k.out, &k.output, "dw1_t", &mut acc.w1_t, &mut self.scratch)?;
                accumulate(&k.out, &k.output, "dw3_t", &mut acc.w3_t, &mut self.scratch)?;
            } else {
                let lo = &self.ffn_bwd.output;
                let (xhat, g) = (block(out, lo, "xhat")?, block(out, lo, "g")?);
                let dy = block(&self.ffn_in[l], &lf, "dy")?;
                let acc = &mut self.acc.layers[l];
                accumulate_nt(&mut acc.w2, &dy, &g, s.seq, s.alpha as f32);
                accumulate_nt(&mut acc.w1_t, &xhat, &block(out, lo, "dh1")?, s.seq, 1.0);
                accumulate_nt(&mut acc.w3_t, &xhat, &block(out, lo, "dh3")?, s.seq, 1.0);
            }
            self.attn_bwd.run(&self.attn_in[l])?;
            let out = &self.attn_bwd.out;
            if let Some(k) = &mut self.attn_dw {
                self.attn_dw_in.copy_from(out)?;
                self.attn_in[l].copy_block(&la, "dx2", &mut self.attn_dw_in, &lad, "dx2")?;
                k.run(&self.attn_dw_in)?;
                let acc = &mut self.acc.layers[l];
                accumulate(&k.out, &k.output, "dwq", &mut acc.wq, &mut self.scratch)?;
                accumulate(&k.out, &k.output, "dwk", &mut acc.wk, &mut self.scratch)?;
                accumulate(&k.out, &k.output, "dwv", &mut acc.wv, &mut self.scratch)?;
                accumulate(&k.out, &k.output, "dwo_t", &mut acc.wo_t, &mut self.scratch)?;
                if s.qk_norm {
                    let (q, k_) = acc.qk_norm.split_at_mut(s.dim);
                    accumulate(&k.out, &k.output, "dq_norm", q, &mut self.scratch)?;
                    accumulate(&k.out, &k.output, "dk_norm", k_, &mut self.scratch)?;
                }
            } else {
                let lo = &self.attn_bwd.output;
                let xhat = block(out, lo, "xhat")?;
                let dx2 = block(&self.attn_in[l], &la, "dx2")?;
                let acc = &mut self.acc.layers[l];
                accumulate_nt(&mut acc.wq, &block(out, lo, "dq")?, &xhat, s.seq, 1.0);
                accumulate_nt(&mut acc.wk, &block(out, lo, "dk")?, &xhat, s.seq, 1.0);
                accumulate_nt(&mut acc.wv, &block(out, lo, "dv")?, &xhat, s.seq, 1.0);
                accumulate_nt(&mut acc.wo_t, &block(out, lo, "o")?, &dx2, s.seq, s.alpha as f32);
                if s.qk_norm {
                    // Σ over tokens of the taps (O(head_dim·seq)): a product with a ones column.
                    let ones = vec![1.0f32; s.seq];
                    let (q, k) = acc.qk_norm.split_at_mut(s.dim);
                    accumulate_nt(&mut q[..s.head_dim], &block(out, lo, "gq")?, &ones, s.seq, 1.0);
                    accumulate_nt(&mut k[..s.head_dim], &block(out, lo, "gk")?, &ones, s.seq, 1.0);
                }
            }
            if l > 0 {
                out.copy_block(&self.attn_bwd.output, "dx", &mut self.ffn_in[l - 1], &lf, "dy")?;
            } else {
                let mut dx = vec![0.0f32; s.dim * s.seq];
                out.read_block(&self.attn_bwd.output, "dx", &mut dx)?;
                host::embed_backward(&mut self.acc.embed, s.dim, &self.tokens[..s.seq], &dx);
            }
        }
        Ok(())
    }
}

impl Step {
    /// The accumulated gradients as parameter gradients (`1/scale` undoes loss scaling and
    /// averages over accumulated micro-steps). They are the accumulators themselves, converted
    /// in place ([`Accum::lend`]); the next backward takes them back, cleared.
    pub fn take_grads(&mut self, p: &Params, scale: f32) -> &mut Params {
        self.acc.lend(p, scale)
    }
}

/// `(W·diag(w))ᵀ` for a row-major `[rows, dim]` W: the staged form `[dim, rows]`.
fn fold_transpose(wmat: &[f32], w: &[f32]) -> Vec<f32> {
    let dim = w.len();
    let rows = wmat.len() / dim;
    let mut out = vec![0.0f32; wmat.len()];
    for r in 0..rows {
        for d in 0..dim {
            out[d * rows + r] = wmat[r * dim + d] * w[d];
        }
    }
    out
}
