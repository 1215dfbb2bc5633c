//! A lower bound of the memory a training run needs (the CPU executor's intermediates beyond
//! an allowance for the attention scores, and the process itself, come on top), computed from
//! the config alone (no allocation, no kernel
//! built) with overflow-proof arithmetic, so a run that cannot fit is refused before it
//! allocates; and the memory this machine has available to compare it with.

use std::fmt;

use anyhow::{Result, bail};

use crate::kernels::{Packing, Shape, attention, classifier, ffn};
use crate::model::{Config, Lora};
use crate::settings::{Dw, OptimizerKind};

/// Bytes a run holds, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Weights on the host: f32 master weights (with LoRA: the adapters, the base's RMSNorm
    /// weights and its embedding as stored).
    pub params: u128,
    /// f32 gradient accumulators (classifier padding included).
    pub grads: u128,
    /// Optimizer moments (two f32 per parameter for AdamW, one for SGD).
    pub moments: u128,
    /// Staged kernel inputs: one per layer per block, one per vocabulary chunk per orientation.
    pub staged: u128,
    /// Kernel output buffers, dW inputs and an allowance for the executor's intermediates
    /// (the attention scores of every head, a few times over).
    pub kernels: u128,
    /// The logits and their gradient for one sequence, f32.
    pub logits: u128,
    /// The CPU executor's own storage: every compiled kernel holds its input and output in f32
    /// plus its intermediates ([`EXECUTOR_SLACK`]); none on the Neural Engine, whose kernels
    /// read the staged inputs themselves.
    pub executor: u128,
}

/// What runs the kernels, as far as memory goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    /// The CPU executor, with fp16 or f32 kernel buffers.
    Cpu { fp16: bool },
    /// The Neural Engine (fp16 buffers).
    Ane,
}

impl Executor {
    /// Bytes per element of kernel inputs and outputs.
    pub fn elem_bytes(self) -> usize {
        match self {
            Executor::Cpu { fp16: false } => 4,
            _ => 2,
        }
    }
}

/// The CPU executor's storage per kernel over the f32 size of its input and output: its
/// intermediates after slot reuse (1.2–1.28× on the LoRA kernels of an 8-layer, dim-256 model,
/// measured from `PlanStats::runtime_bytes`), rounded up.
pub const EXECUTOR_SLACK: (u128, u128) = (3, 2);

impl MemoryEstimate {
    /// The estimate for training `c` with kernels run by `ex`.
    pub fn training(c: &Config, s: &Shape, ex: Executor, optimizer: OptimizerKind, dw: Dw) -> MemoryEstimate {
        let params = c.checked_num_params().map_or(u128::MAX / 16, |p| p as u128);
        let pad = (s.vocab_chunks * s.vocab_chunk - s.vocab) as u128 * s.dim as u128;
        let mut bufs = vec![classifier::dw_input(s), attention::dw_input(s), ffn::dw_input(s)];
        let mut dw_kernels = Vec::new();
        if dw != Dw::Host {
            dw_kernels = vec![
                (classifier::dw_input(s), classifier::dw_output(s)),
                (attention::dw_input(s), attention::dw_output(s)),
                (ffn::dw_input(s), ffn::dw_output(s)),
            ];
            bufs.extend(dw_kernels.iter().map(|(_, o)| o.clone()));
        }
        MemoryEstimate {
            params: 4 * params,
            grads: 4 * (params + pad),
            moments: 4 * moments(optimizer) * params,
            ..MemoryEstimate::device(c, s, ex, &bufs, &dw_kernels)
        }
    }

    /// The estimate for training LoRA adapters `l` on a frozen `c` (`s` with the adapters'
    /// blocks): the base once, staged (its matrices exist nowhere else); on the host its RMSNorm
    /// weights and the adapters in f32 and its embedding at `embed_bytes` per value, as stored;
    /// gradients and moments for the adapters only; no dW buffers.
    pub fn lora(
        c: &Config,
        s: &Shape,
        ex: Executor,
        l: &Lora,
        optimizer: OptimizerKind,
        embed_bytes: usize,
    ) -> MemoryEstimate {
        let big = u128::MAX / 16;
        let adapters = l.num_params(c).map_or(big, |p| p as u128);
        let qk = if c.qk_norm { 2 * c.head_dim } else { 0 };
        let norms = c.layers as u128 * (2 * c.dim + qk) as u128 + c.dim as u128;
        let embedding = c.vocab as u128 * c.dim as u128 * embed_bytes as u128;
        MemoryEstimate {
            params: 4 * (adapters + norms) + embedding,
            grads: 4 * adapters,
            moments: 4 * moments(optimizer) * adapters,
            ..MemoryEstimate::device(c, s, ex, &[], &[])
        }
    }

    /// The device side of a run: staged inputs, kernel outputs (and the dW buffers `extra`,
    /// the dW kernels' input and output `dw_kernels`), the executor's attention scores and
    /// storage, the logits.
    fn device(
        c: &Config,
        s: &Shape,
        ex: Executor,
        extra: &[Packing],
        dw_kernels: &[(Packing, Packing)],
    ) -> MemoryEstimate {
        let n = |p: &Packing| p.elements() as u128;
        let e = ex.elem_bytes() as u128;
        let layers = c.layers as u128;
        let chunks = s.vocab_chunks as u128;
        let staged = e
            * (layers * (n(&attention::input(s)) + n(&ffn::input(s)))
                + chunks * (n(&classifier::forward_input(s)) + n(&classifier::backward_input(s))));
        let kernels = [
            (attention::input(s), attention::forward_output(s)),
            (attention::input(s), attention::backward_output(s)),
            (ffn::input(s), ffn::forward_output(s)),
            (ffn::input(s), ffn::backward_output(s)),
            (classifier::forward_input(s), classifier::forward_output(s)),
            (classifier::backward_input(s), classifier::backward_output(s)),
            (classifier::norm_input(s), classifier::norm_output(s)),
        ];
        let scores = s.heads as u128 * (s.seq as u128) * (s.seq as u128);
        // The outputs, and the one unstaged input written per call (the final norm's).
        let outs = kernels.iter().map(|(_, o)| o).chain(extra);
        let buffers = outs.map(n).sum::<u128>() + n(&classifier::norm_input(s));
        let io = kernels
            .iter()
            .chain(dw_kernels)
            .map(|(i, o)| n(i) + n(o))
            .sum::<u128>();
        let (num, den) = EXECUTOR_SLACK;
        MemoryEstimate {
            params: 0,
            grads: 0,
            moments: 0,
            staged,
            kernels: e * (buffers + 4 * scores),
            logits: 4 * s.seq as u128 * s.vocab as u128,
            executor: match ex {
                Executor::Cpu { .. } => 4 * io * num / den,
                Executor::Ane => 0,
            },
        }
    }

    pub fn total(&self) -> u128 {
        self.params + self.grads + self.moments + self.staged + self.kernels + self.logits + self.executor
    }

    /// Refuses the run when it needs more than `available` bytes (from `source`).
    pub fn admit(&self, available: u64, source: &str) -> Result<()> {
        if self.total() > available as u128 {
            bail!(
                "this run needs at least {self} but {} are available ({source}): use a smaller model, --seq or vocabulary",
                gb(available as u128)
            );
        }
        Ok(())
    }
}

/// f32 moments per parameter.
fn moments(o: OptimizerKind) -> u128 {
    match o {
        OptimizerKind::AdamW => 2,
        OptimizerKind::Sgd => 1,
    }
}

fn gb(b: u128) -> String {
    if b < 1_000_000_000 {
        format!("{:.1} MB", b as f64 / 1e6)
    } else {
        format!("{:.2} GB", b as f64 / 1e9)
    }
}

impl fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (weights {}, gradients {}, optimizer moments {}, staged kernel inputs {}, kernel buffers {}, logits {}, CPU executor {})",
            gb(self.total()),
            gb(self.params),
            gb(self.grads),
            gb(self.moments),
            gb(self.staged),
            gb(self.kernels),
            gb(self.logits),
            gb(self.executor)
        )
    }
}

/// Memory this machine can give a new process, and where the number comes from: Linux's
/// `MemAvailable`, macOS's physical memory (`sysctl hw.memsize`); `None` elsewhere.
pub fn available() -> Option<(u64, &'static str)> {
    if let Ok(info) = std::fs::read_to_string("/proc/meminfo") {
        let kb = info
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())?;
        return Some((kb.saturating_mul(1024), "MemAvailable in /proc/meminfo"));
    }
    let out = std::process::Command::new("sysctl")
        .args(["-n", "hw.memsize"])
        .output()
        .ok()?;
    let bytes = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some((bytes, "physical memory, sysctl hw.memsize"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use malus_mil::DType;

    #[test]
    fn the_estimate_counts_weights_gradients_and_moments() {
        let c = Config::preset("stories110m").unwrap();
        let s = Shape::new(&c, DType::Fp32).unwrap();
        let cpu = Executor::Cpu { fp16: false };
        let m = MemoryEstimate::training(&c, &s, cpu, OptimizerKind::AdamW, Dw::Device);
        let p = c.num_params() as u128 * 4;
        assert_eq!((m.params, m.moments), (p, 2 * p));
        assert!(m.grads >= p && m.grads < p + p / 50);
        // Every weight staged once (the classifier twice, in two orientations), plus activations.
        assert!(m.staged > p && m.staged < 2 * p, "{m}");
        assert!(m.total() > 4 * p && m.total() < 7 * p, "{m}");
        let sgd = MemoryEstimate::training(&c, &s, cpu, OptimizerKind::Sgd, Dw::Host);
        assert_eq!(sgd.moments, p);
        assert!(sgd.kernels < m.kernels);
        assert!(m.admit(u64::MAX, "test").is_ok());
        let err = m.admit(1 << 30, "test").unwrap_err().to_string();
        assert!(
            err.contains("1.07 GB are available (test)")
                && err.contains("needs at least")
                && err.contains("optimizer moments"),
            "{err}"
        );
    }
}
