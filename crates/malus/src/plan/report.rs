//! Accounting of a plan: per kernel FLOPs and bytes, per micro-step device and host work,
//! dispatches and host↔device traffic — what `malus plan` prints.

use std::fmt;

use super::Plan;
use crate::kernels::{KernelDef, Role};
use crate::settings::Dw;

/// One kernel's line of the report.
#[derive(Clone, Debug)]
pub struct KernelLine {
    pub name: &'static str,
    pub calls: usize,
    pub flops: u64,
    pub in_bytes: usize,
    pub out_bytes: usize,
    /// Elements of the input written per call (activations and gradients, not weights).
    pub act_in: usize,
    /// Elements of staged weights in the input.
    pub weights: usize,
    pub out: usize,
    pub lint_warnings: usize,
}

/// The whole report.
#[derive(Clone, Debug)]
pub struct PlanReport {
    pub model: String,
    pub dw: Dw,
    pub elem_bytes: usize,
    pub kernels: Vec<KernelLine>,
    pub device_flops: u64,
    pub dispatches: usize,
    /// Host floating-point work per micro-step, by class: (class, flops).
    pub host: Vec<(&'static str, u64)>,
    /// Elements converted between f32 and the device type per micro-step.
    pub converted: u64,
    /// Bytes written to and read from kernel buffers per micro-step.
    pub traffic: u64,
    /// Host work per micro-step by the cost model's op classes (docs/cost-model.md): f32 GEMM
    /// FLOPs (`--dw host`), logits through the cross-entropy, elements of one-pass elementwise
    /// work, bytes of activations copied between kernel buffers.
    pub host_gemm_flops: u64,
    pub ce_elements: u64,
    pub elementwise_elements: u64,
    pub memcpy_bytes: u64,
    /// Per optimizer update: AdamW, RMSNorm-weight unfolding, re-staging.
    pub update_flops: u64,
    /// Elements the RMSNorm-weight unfolding touches per update.
    pub unfold_elements: u64,
    pub staged_weight_elems: u64,
    /// Parameters the optimizer updates (with LoRA: the adapters').
    pub params: usize,
    /// With LoRA, the frozen base's parameters (else 0).
    pub frozen: usize,
}

/// The host work of a LoRA plan's adapters per micro-step.
struct LoraWork {
    params: usize,
    /// For each adapter (`x` `[in, S]`, `dy` `[out, S]`): `u = Ã·x`, `∂B += dy·uᵀ`,
    /// `v = Bᵀ·dy`, `∂A += v·xᵀ`, 4·r·S·(in + out) flops.
    gemm_flops: u64,
    /// Tap elements read back (and norm-scaled) for them.
    taps: u64,
}

fn lora_work(c: &crate::model::Config, l: &crate::model::Lora, seq: u64) -> LoraWork {
    let layers = (c.layers - l.first_layer(c)) as u64;
    let io: u64 = l
        .targets
        .iter()
        .map(|t| {
            let (out, inp) = t.dims(c);
            (out + inp) as u64
        })
        .sum();
    LoraWork {
        params: l.num_params(c).unwrap_or(usize::MAX),
        gemm_flops: layers * 4 * l.rank as u64 * seq * io,
        taps: layers * seq * io,
    }
}

fn line(k: &KernelDef, calls: usize, elem: usize) -> KernelLine {
    let weights = k.input.elements_of(Role::Weight);
    KernelLine {
        name: k.name,
        calls,
        flops: k.flops,
        in_bytes: k.input.elements() * elem,
        out_bytes: k.output.elements() * elem,
        act_in: k.input.elements() - weights,
        weights,
        out: k.output.elements(),
        lint_warnings: k.lint_warnings().len(),
    }
}

impl PlanReport {
    pub fn new(plan: &Plan, model: &str) -> PlanReport {
        let s = &plan.shape;
        let c = &plan.config;
        let elem = s.dtype.size_bytes();
        let kernels: Vec<KernelLine> = plan.calls().into_iter().map(|(k, n)| line(k, n, elem)).collect();
        let device_flops = kernels.iter().map(|k| k.calls as u64 * k.flops).sum();
        let dispatches = kernels.iter().map(|k| k.calls).sum();
        let (v, d, sq) = (s.vocab as u64, s.dim as u64, s.seq as u64);
        let vpad = (s.vocab_chunks * s.vocab_chunk) as u64;
        let layer_w = (2 * s.q_dim + 2 * s.kv_dim) as u64 * d + 3 * d * s.hidden as u64;
        // q/k norm: two `dim`-wide gradient rows per layer from `attn_dw`, or on the host the
        // sum over tokens of the two `[head_dim, seq]` taps.
        let (qk_dw, qk_staged) = if s.qk_norm {
            let row = if plan.dw == Dw::Device {
                d
            } else {
                s.head_dim as u64
            };
            (2 * row, d * crate::kernels::attention::NORM_BLOCK as u64)
        } else {
            (0, 0)
        };
        let lora = plan.lora.as_ref().map(|l| lora_work(c, l, sq));
        // A LoRA plan accumulates no base gradients: its adapters' are host products.
        let dw_elems = match &lora {
            Some(_) => 0,
            None => c.layers as u64 * (layer_w + qk_dw) + vpad * d,
        };
        let mut host = vec![
            ("softmax cross-entropy (≈5 flops/logit)", 5 * v * sq),
            ("loss-scale dlogits", v * sq),
            (
                "sum classifier dx̂ over vocab chunks",
                s.vocab_chunks as u64 * d * sq,
            ),
        ];
        if lora.is_none() {
            host.push(("accumulate dW into f32", dw_elems));
            host.push(("embedding scatter-add", d * sq));
        }
        // Everything but the cross-entropy is one flop per element.
        let mut elementwise_elements: u64 = host.iter().skip(1).map(|(_, f)| f).sum();
        let mut host_gemm_flops = 0;
        if let Some(w) = &lora {
            host_gemm_flops = w.gemm_flops;
            elementwise_elements += w.taps;
            host.push(("LoRA adapter gradients (rank-r products)", w.gemm_flops));
        } else if plan.dw == Dw::Host {
            let qk_sums = if s.qk_norm {
                c.layers as u64 * 2 * s.head_dim as u64 * sq
            } else {
                0
            };
            host_gemm_flops = 2 * sq * (c.layers as u64 * layer_w + vpad * d);
            elementwise_elements += qk_sums;
            host.push(("dW matmuls (--dw host)", host_gemm_flops + qk_sums));
        }
        // Conversions: first activations in, logits out, dlogits in (bwd and dW), dx̂ in, dW out,
        // final dx out.
        let dlogit_writes = if plan.dw == Dw::Device { 2 } else { 1 };
        let taps = lora.as_ref().map_or(0, |w| w.taps);
        let converted = d * sq + vpad * sq + dlogit_writes * vpad * sq + d * sq + dw_elems + d * sq + taps;
        let traffic = kernels
            .iter()
            .map(|k| k.calls as u64 * ((k.act_in + k.out) * elem) as u64)
            .sum();
        let memcpy_bytes = kernels.iter().map(|k| (k.calls * k.act_in * elem) as u64).sum();
        let (params, frozen, norm_unfold, staged_weight_elems) = match &lora {
            // Only the adapters update and are re-staged (Ã and B, as many values as A and B).
            Some(w) => (w.params, c.num_params(), 0, w.params as u64),
            None => (
                c.num_params(),
                0,
                2 * (c.layers as u64 * layer_w + v * d),
                c.layers as u64 * (layer_w + qk_staged) + 2 * vpad * d,
            ),
        };
        PlanReport {
            model: model.to_string(),
            dw: plan.dw,
            elem_bytes: elem,
            kernels,
            device_flops,
            dispatches,
            host,
            converted,
            traffic,
            host_gemm_flops,
            ce_elements: v * sq,
            elementwise_elements,
            memcpy_bytes,
            update_flops: 12 * params as u64 + norm_unfold,
            unfold_elements: norm_unfold,
            staged_weight_elems,
            params,
            frozen,
        }
    }

    pub fn host_flops(&self) -> u64 {
        self.host.iter().map(|(_, f)| f).sum()
    }
}

fn mb(b: usize) -> f64 {
    b as f64 / 1048576.0
}

impl fmt::Display for PlanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.frozen > 0 {
            writeln!(
                f,
                "plan for LoRA on {} ({:.2}M frozen parameters, {:.3}M adapter parameters), adapter gradients on the host",
                self.model,
                self.frozen as f64 / 1e6,
                self.params as f64 / 1e6
            )?;
        } else {
            writeln!(
                f,
                "plan for {} ({:.2}M parameters), dW on the {}",
                self.model,
                self.params as f64 / 1e6,
                self.dw.name()
            )?;
        }
        writeln!(
            f,
            "{:<10} {:>5} {:>10} {:>10} {:>10} {:>10} {:>9}",
            "kernel", "calls", "GFLOP/call", "in MB", "out MB", "weights MB", "lint warn"
        )?;
        for k in &self.kernels {
            writeln!(
                f,
                "{:<10} {:>5} {:>10.3} {:>10.2} {:>10.2} {:>10.2} {:>9}",
                k.name,
                k.calls,
                k.flops as f64 / 1e9,
                mb(k.in_bytes),
                mb(k.out_bytes),
                mb(k.weights * self.elem_bytes),
                k.lint_warnings
            )?;
        }
        writeln!(f, "per micro-step (one sequence, forward + backward):")?;
        writeln!(
            f,
            "  device: {:.2} GFLOP in {} dispatches",
            self.device_flops as f64 / 1e9,
            self.dispatches
        )?;
        writeln!(f, "  host:   {:.3} GFLOP", self.host_flops() as f64 / 1e9)?;
        for (class, flops) in &self.host {
            writeln!(f, "          {:>8.3} GFLOP  {class}", *flops as f64 / 1e9)?;
        }
        writeln!(
            f,
            "          {:>8.1} M elements converted f32 <-> device type",
            self.converted as f64 / 1e6
        )?;
        writeln!(
            f,
            "  host <-> device traffic: {:.1} MB",
            self.traffic as f64 / 1048576.0
        )?;
        writeln!(
            f,
            "per optimizer update (amortised over gradient accumulation): {:.3} GFLOP (AdamW, norm-weight unfolding), {:.1} M weight elements re-staged",
            self.update_flops as f64 / 1e9,
            self.staged_weight_elems as f64 / 1e6
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Config;
    use malus_mil::DType;

    #[test]
    fn stories110m_host_work_is_under_a_gigaflop() {
        let c = Config::preset("stories110m").unwrap();
        let plan = Plan::new(&c, DType::Fp16, Dw::Device).unwrap();
        let r = PlanReport::new(&plan, "stories110m");
        assert!(r.host_flops() < 1_000_000_000, "{r}");
        // Forward + backward matmuls are ≈ 6·params·tokens (the embedding gather is not a matmul,
        // but the tied classifier is); the device also recomputes the forward in the backward.
        assert!(r.device_flops >= 6 * c.num_params() as u64 * 256 * 9 / 10, "{r}");
        assert_eq!(r.dispatches, 12 * 4 + 12 * 2 + 3 * 2 + 1);
        let host = Plan::new(&c, DType::Fp16, Dw::Host).unwrap();
        assert!(PlanReport::new(&host, "x").host_flops() > 40_000_000_000);
    }

    /// The update's re-staging count is the weight blocks the kernels read (forward inputs are
    /// shared with the backward; the classifier's two orientations are staged separately),
    /// including Qwen3's q/k-norm block.
    #[test]
    fn staged_weights_are_the_kernels_weight_blocks() {
        for name in ["stories15m", "qwen3-0.6b"] {
            let c = Config::preset(name).unwrap();
            let plan = Plan::new(&c, DType::Fp16, Dw::Host).unwrap();
            let r = PlanReport::new(&plan, name);
            let staged: u64 = r
                .kernels
                .iter()
                .filter(|k| ["attn_fwd", "ffn_fwd", "cls_fwd", "cls_bwd"].contains(&k.name))
                .map(|k| (k.calls * k.weights) as u64)
                .sum();
            assert_eq!(staged, r.staged_weight_elems, "{name}");
        }
    }
}
