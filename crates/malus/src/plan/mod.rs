//! The plan: which kernels a configuration needs and how often each runs per micro-step, its
//! accounting (`report`) and its predicted time on a Neural Engine (`cost`) — what `malus plan`
//! prints.

pub mod cost;
pub mod memory;
pub mod report;

use anyhow::Result;
use malus_ane::ChipFamily;
use malus_mil::DType;

use crate::device::Device;
use crate::kernels::{KERNELS, KernelDef, KernelId, Shape};
use crate::model::{Config, Lora};
use crate::settings::Dw;

/// The compiled-once kernel set of a model.
pub struct Plan {
    pub config: Config,
    pub shape: Shape,
    /// Where the weight-gradient matmuls run: [`Dw::Device`] or [`Dw::Host`], never `Auto`.
    pub dw: Dw,
    /// The adapters of a LoRA run on a frozen base.
    pub lora: Option<Lora>,
    /// Indexed by [`KernelId`]; the dW kernels are absent when dW runs on the host.
    kernels: Vec<Option<KernelDef>>,
}

impl Plan {
    /// The kernels of `config` in `dtype`, with dW where `dw` says (`Auto` is the device: the
    /// cost model needs a chip to choose, see [`Plan::for_device`]).
    pub fn new(config: &Config, dtype: DType, dw: Dw) -> Result<Plan> {
        let dw = match dw {
            Dw::Host => Dw::Host,
            Dw::Auto | Dw::Device => Dw::Device,
        };
        Plan::build(config, Shape::new(config, dtype)?, dw, None)
    }

    /// The kernels of a LoRA run: `config` frozen, the attention and FFN kernels with the
    /// low-rank paths of `lora`, and no dW kernels (the base has no gradients; the adapters'
    /// are rank-r products on the host, see `train::lora`).
    pub fn lora(config: &Config, dtype: DType, lora: &Lora) -> Result<Plan> {
        lora.validate(config)?;
        let shape = Shape::new(config, dtype)?.with_lora(lora);
        Plan::build(config, shape, Dw::Host, Some(lora.clone()))
    }

    fn build(config: &Config, shape: Shape, dw: Dw, lora: Option<Lora>) -> Result<Plan> {
        let kernels = KERNELS
            .iter()
            .map(|e| {
                if e.dw && dw == Dw::Host {
                    Ok(None)
                } else {
                    (e.build)(&shape).map(Some)
                }
            })
            .collect::<Result<_>>()?;
        Ok(Plan {
            config: config.clone(),
            shape,
            dw,
            lora,
            kernels,
        })
    }

    /// The plan for training on `device`: its element type, and for `Dw::Auto` on a Neural
    /// Engine the placement the cost model predicts faster for its chip.
    pub fn for_device(config: &Config, device: &Device, dw: Dw) -> Result<Plan> {
        Plan::for_chip(config, device.dtype(), dw, device.chip_family())
    }

    /// [`Plan::for_device`] for a device of `chip` (`None`: not a Neural Engine).
    pub fn for_chip(config: &Config, dtype: DType, dw: Dw, chip: Option<ChipFamily>) -> Result<Plan> {
        match (dw, chip.and_then(cost::Chip::for_family)) {
            (Dw::Auto, Some(chip)) => Ok(cost::auto_plan(config, dtype, chip)?.0),
            _ => Plan::new(config, dtype, dw),
        }
    }

    /// A kernel of the plan (`None`: a dW kernel when dW runs on the host).
    pub fn kernel(&self, id: KernelId) -> Option<&KernelDef> {
        self.kernels[id as usize].as_ref()
    }

    /// Every kernel of the plan with its calls per micro-step, in table order.
    pub fn calls(&self) -> Vec<(&KernelDef, usize)> {
        self.kernels
            .iter()
            .flatten()
            .map(|k| (k, k.id.calls(&self.shape, self.config.layers)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_plans_without_lint_errors() {
        for name in ["tiny", "stories15m", "stories110m", "qwen3-0.6b"] {
            let c = Config::preset(name).unwrap();
            let p = Plan::new(&c, DType::Fp16, Dw::Device).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(p.calls().len(), 10);
            for (k, _) in p.calls() {
                assert!(k.input.width <= crate::kernels::MAX_EXTENT, "{name} {}", k.name);
                assert_eq!(k.output.width % 32, 0, "{name} {}", k.name);
            }
        }
    }

    #[test]
    fn classifier_is_split_into_equal_chunks_under_the_extent_cap() {
        let c = Config::preset("stories110m").unwrap();
        let s = Shape::new(&c, DType::Fp16).unwrap();
        assert_eq!(s.vocab_chunks, 2);
        assert!(s.vocab_chunk * 2 >= 32000 && s.vocab_chunk + s.seq <= 16384);
        assert_eq!(s.vocab_chunk % 32, 0);
    }

    /// The table's order is the enum's, so `KernelId::entry` finds its own row.
    #[test]
    fn the_table_is_indexed_by_kernel_id() {
        for (i, e) in KERNELS.iter().enumerate() {
            assert_eq!(e.id as usize, i, "{}", e.name);
            assert_eq!(e.id.name(), e.name);
        }
    }

    /// `--dw auto` asks the cost model for the detected chip; with no chip (the CPU executor)
    /// or one the table does not know, dW goes on the device.
    #[test]
    fn dw_auto_asks_the_cost_model_for_the_detected_chip() {
        let c = Config::preset("stories110m").unwrap();
        let dw = |f| Plan::for_chip(&c, DType::Fp16, Dw::Auto, f).unwrap().dw;
        assert_eq!(dw(Some(ChipFamily::M1)), Dw::Host);
        assert_eq!(dw(Some(ChipFamily::M5)), Dw::Device);
        assert_eq!(dw(None), Dw::Device);
        assert_eq!(dw(Some(ChipFamily::Unknown)), Dw::Device);
    }
}
