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
    /// f32 master weights.
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
}

impl MemoryEstimate {
    /// The estimate for training `c` with kernels of `elem_bytes` per element.
    pub fn training(
        c: &Config,
        s: &Shape,
        elem_bytes: usize,
        optimizer: OptimizerKind,
        dw: Dw,
    ) -> MemoryEstimate {
        let params = c.checked_num_params().map_or(u128::MAX / 16, |p| p as u128);
        let pad = (s.vocab_chunks * s.vocab_chunk - s.vocab) as u128 * s.dim as u128;
        let mut outs = vec![classifier::dw_input(s), attention::dw_input(s), ffn::dw_input(s)];
        if dw != Dw::Host {
            outs.extend([
                attention::dw_output(s),
                ffn::dw_output(s),
                classifier::dw_output(s),
            ]);
        }
        MemoryEstimate {
            params: 4 * params,
            grads: 4 * (params + pad),
            moments: 4 * moments(optimizer) * params,
            ..MemoryEstimate::device(c, s, elem_bytes, &outs)
        }
    }

    /// The estimate for training LoRA adapters `l` on a frozen `c` (`s` with the adapters'
    /// blocks): the base once on the host in f32 and once staged, gradients and moments for
    /// the adapters only, no dW buffers.
    pub fn lora(
        c: &Config,
        s: &Shape,
        elem_bytes: usize,
        l: &Lora,
        optimizer: OptimizerKind,
    ) -> MemoryEstimate {
        let base = c.checked_num_params().map_or(u128::MAX / 16, |p| p as u128);
        let adapters = l.num_params(c).map_or(u128::MAX / 16, |p| p as u128);
        MemoryEstimate {
            params: 4 * (base + adapters),
            grads: 4 * adapters,
            moments: 4 * moments(optimizer) * adapters,
            ..MemoryEstimate::device(c, s, elem_bytes, &[])
        }
    }

    /// The device side of a run: staged inputs, kernel outputs (and the dW buffers `extra`),
    /// the executor's attention scores, the logits.
    fn device(c: &Config, s: &Shape, elem_bytes: usize, extra: &[Packing]) -> MemoryEstimate {
        let n = |p: &Packing| p.elements() as u128;
        let e = elem_bytes as u128;
        let layers = c.layers as u128;
        let chunks = s.vocab_chunks as u128;
        let staged = e
            * (layers * (n(&attention::input(s)) + n(&ffn::input(s)))
                + chunks * (n(&classifier::forward_input(s)) + n(&classifier::backward_input(s))));
        let outs = [
            attention::forward_output(s),
            attention::backward_output(s),
            ffn::forward_output(s),
            ffn::backward_output(s),
            classifier::forward_output(s),
            classifier::backward_output(s),
            classifier::norm_input(s),
            classifier::norm_output(s),
        ];
        let scores = s.heads as u128 * (s.seq as u128) * (s.seq as u128);
        let buffers = outs.iter().chain(extra).map(n).sum::<u128>();
        MemoryEstimate {
            params: 0,
            grads: 0,
            moments: 0,
            staged,
            kernels: e * (buffers + 4 * scores),
            logits: 4 * s.seq as u128 * s.vocab as u128,
        }
    }

    pub fn total(&self) -> u128 {
        self.params + self.grads + self.moments + self.staged + self.kernels + self.logits
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
            "{} (weights {}, gradients {}, optimizer moments {}, staged kernel inputs {}, kernel buffers {}, logits {})",
            gb(self.total()),
            gb(self.params),
            gb(self.grads),
            gb(self.moments),
            gb(self.staged),
            gb(self.kernels),
            gb(self.logits)
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
        let m = MemoryEstimate::training(&c, &s, 4, OptimizerKind::AdamW, Dw::Device);
        let p = c.num_params() as u128 * 4;
        assert_eq!((m.params, m.moments), (p, 2 * p));
        assert!(m.grads >= p && m.grads < p + p / 50);
        // Every weight staged once (the classifier twice, in two orientations), plus activations.
        assert!(m.staged > p && m.staged < 2 * p, "{m}");
        assert!(m.total() > 4 * p && m.total() < 7 * p, "{m}");
        let sgd = MemoryEstimate::training(&c, &s, 4, OptimizerKind::Sgd, Dw::Host);
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
