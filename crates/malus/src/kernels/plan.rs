//! The plan: which kernels a configuration needs, how often each runs per micro-step, and the
//! accounting of FLOPs, bytes and host work that `malus plan` prints.

use anyhow::Result;
use malus_mil::DType;

use super::{KernelDef, Shape, attention, classifier, ffn};
use crate::model::Config;

/// Where the weight-gradient matmuls run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DwPlacement {
    Device,
    Host,
}

impl DwPlacement {
    /// `device` or `host`, as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            DwPlacement::Device => "device",
            DwPlacement::Host => "host",
        }
    }
}

/// The compiled-once kernel set of a model.
pub struct Plan {
    pub config: Config,
    pub shape: Shape,
    pub dw: DwPlacement,
    pub attn_fwd: KernelDef,
    pub attn_bwd: KernelDef,
    pub attn_dw: Option<KernelDef>,
    pub ffn_fwd: KernelDef,
    pub ffn_bwd: KernelDef,
    pub ffn_dw: Option<KernelDef>,
    pub cls_fwd: KernelDef,
    pub cls_bwd: KernelDef,
    pub cls_dw: Option<KernelDef>,
    pub norm_bwd: KernelDef,
}

impl Plan {
    pub fn new(config: &Config, dtype: DType, dw: DwPlacement) -> Result<Plan> {
        let s = Shape::new(config, dtype)?;
        let on_device = dw == DwPlacement::Device;
        let opt = |f: fn(&Shape) -> Result<KernelDef>| -> Result<Option<KernelDef>> {
            if on_device { f(&s).map(Some) } else { Ok(None) }
        };
        Ok(Plan {
            config: config.clone(),
            attn_fwd: attention::forward(&s)?,
            attn_bwd: attention::backward(&s)?,
            attn_dw: opt(attention::dw)?,
            ffn_fwd: ffn::forward(&s)?,
            ffn_bwd: ffn::backward(&s)?,
            ffn_dw: opt(ffn::dw)?,
            cls_fwd: classifier::forward(&s)?,
            cls_bwd: classifier::backward(&s)?,
            cls_dw: opt(classifier::dw)?,
            norm_bwd: classifier::norm_backward(&s)?,
            shape: s,
            dw,
        })
    }

    /// Every kernel with the number of calls per micro-step (one sequence, forward + backward).
    pub fn calls(&self) -> Vec<(&KernelDef, usize)> {
        let l = self.config.layers;
        let c = self.shape.vocab_chunks;
        let mut v = vec![
            (&self.attn_fwd, l),
            (&self.ffn_fwd, l),
            (&self.cls_fwd, c),
            (&self.cls_bwd, c),
        ];
        if let Some(k) = &self.cls_dw {
            v.push((k, c));
        }
        v.push((&self.norm_bwd, 1));
        v.push((&self.ffn_bwd, l));
        if let Some(k) = &self.ffn_dw {
            v.push((k, l));
        }
        v.push((&self.attn_bwd, l));
        if let Some(k) = &self.attn_dw {
            v.push((k, l));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_plans_without_lint_errors() {
        for name in ["tiny", "stories15m", "stories110m", "qwen3-0.6b"] {
            let c = Config::preset(name).unwrap();
            let p =
                Plan::new(&c, DType::Fp16, DwPlacement::Device).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(p.calls().len(), 10);
            for (k, _) in p.calls() {
                assert!(k.input.width <= super::super::MAX_EXTENT, "{name} {}", k.name);
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
}
