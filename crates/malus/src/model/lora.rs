//! LoRA adapters: low-rank updates `W + s·B·A` of a frozen model's linear layers, with
//! `A` `[r, in]`, `B` `[out, r]` and `s` = α/r (or α/√r, rsLoRA), as Hugging Face PEFT defines
//! them. Only the adapters train; the base weights are staged once and never change.

use anyhow::{Result, bail, ensure};

use super::{Config, Params, Tensor};
use crate::rng::Rng;

/// A linear layer an adapter can target, by its Hugging Face module name.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// `(out, in)` of the layer's weight.
    pub fn dims(self, c: &Config) -> (usize, usize) {
        self.dims_of(c.dim, c.hidden, c.q_dim(), c.kv_dim())
    }

    /// `(out, in)` of the layer's weight from the model's widths (hidden size `dim`, FFN
    /// `hidden`, `q` = heads·head_dim, `kv` = kv_heads·head_dim).
    pub fn dims_of(self, dim: usize, hidden: usize, q: usize, kv: usize) -> (usize, usize) {
        match self {
            Target::Q => (q, dim),
            Target::K | Target::V => (kv, dim),
            Target::O => (dim, q),
            Target::Gate | Target::Up => (hidden, dim),
            Target::Down => (dim, hidden),
        }
    }

    /// Whether the layer sits in the attention block (else the FFN).
    pub fn in_attention(self) -> bool {
        matches!(self, Target::Q | Target::K | Target::V | Target::O)
    }

    /// The module path under `model.layers.N.` (Hugging Face Llama/Mistral/Qwen3 names, which
    /// PEFT's `target_modules` and adapter tensor names use).
    pub fn module(self) -> &'static str {
        match self {
            Target::Q => "self_attn.q_proj",
            Target::K => "self_attn.k_proj",
            Target::V => "self_attn.v_proj",
            Target::O => "self_attn.o_proj",
            Target::Gate => "mlp.gate_proj",
            Target::Up => "mlp.up_proj",
            Target::Down => "mlp.down_proj",
        }
    }

    /// The layer's input is the output of an RMSNorm (folded into the staged `A` like into `W`).
    pub fn after_norm(self) -> bool {
        matches!(
            self,
            Target::Q | Target::K | Target::V | Target::Gate | Target::Up
        )
    }
}

/// The adapter settings of a run (`--lora-*`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lora {
    pub rank: usize,
    pub alpha: f64,
    /// Scale by α/√r (rank-stabilised LoRA) rather than α/r.
    pub rslora: bool,
    pub dropout: f64,
    /// Sorted, without repeats.
    pub targets: Vec<Target>,
    /// Adapt only the last `n` layers (`None`: all).
    pub layers: Option<usize>,
}

impl Lora {
    /// PEFT's defaults as the issue states them: rank 8, α 16, every linear layer.
    pub fn new(rank: usize, alpha: f64, targets: &[Target]) -> Lora {
        let mut targets = targets.to_vec();
        targets.sort();
        targets.dedup();
        Lora {
            rank,
            alpha,
            rslora: false,
            dropout: 0.0,
            targets,
            layers: None,
        }
    }

    /// The factor `s` of the low-rank path.
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    pub fn has(&self, t: Target) -> bool {
        self.targets.contains(&t)
    }

    /// The first adapted layer.
    pub fn first_layer(&self, c: &Config) -> usize {
        c.layers - self.layers.unwrap_or(c.layers).min(c.layers)
    }

    /// The number of adapter parameters for `c` (`None`: it overflows), counted without
    /// allocating (a checkpoint's config is checked against its file size first).
    pub fn num_params(&self, c: &Config) -> Option<usize> {
        let layers = c.layers - self.first_layer(c);
        let per_layer = self.targets.iter().try_fold(0usize, |acc, t| {
            let (out, inp) = t.dims(c);
            acc.checked_add(out.checked_add(inp)?.checked_mul(self.rank)?)
        })?;
        per_layer.checked_mul(layers)
    }

    /// Settings that cannot train, named by their flag.
    pub fn validate(&self, c: &Config) -> Result<()> {
        ensure!(self.rank >= 1, "--lora-rank must be at least 1");
        ensure!(
            self.rank <= c.dim,
            "--lora-rank {} is larger than the model's hidden size {}",
            self.rank,
            c.dim
        );
        ensure!(
            self.alpha.is_finite() && self.alpha > 0.0,
            "--lora-alpha must be a finite number > 0, got {}",
            self.alpha
        );
        ensure!(
            self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout),
            "--lora-dropout must be in [0, 1), got {}",
            self.dropout
        );
        if self.dropout > 0.0 {
            bail!(
                "--lora-dropout {} is not supported yet (the kernels have no dropout mask); use 0",
                self.dropout
            );
        }
        ensure!(!self.targets.is_empty(), "--lora-targets names no layer");
        if let Some(n) = self.layers {
            ensure!(
                (1..=c.layers).contains(&n),
                "--lora-layers {n} must be in 1..={} (the model's layers)",
                c.layers
            );
        }
        Ok(())
    }
}

/// One adapter: the `A` and `B` tensors of a target in a layer (indices into
/// [`Adapters::tensors`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adapter {
    pub layer: usize,
    pub target: Target,
    pub a: usize,
    pub b: usize,
}

/// Every adapter of a model, as named f32 tensors (PEFT's names without its
/// `base_model.model.` prefix, e.g. `model.layers.0.self_attn.q_proj.lora_A.weight`).
#[derive(Clone, Debug, PartialEq)]
pub struct Adapters {
    pub lora: Lora,
    pub tensors: Vec<Tensor>,
    pub adapters: Vec<Adapter>,
}

impl Adapters {
    /// Zero adapters with the config's shapes, layer by layer, targets in [`Target::ALL`] order.
    pub fn zeros(c: &Config, lora: &Lora) -> Adapters {
        let (mut tensors, mut adapters) = (Vec::new(), Vec::new());
        for layer in lora.first_layer(c)..c.layers {
            for &target in &lora.targets {
                let (out, inp) = target.dims(c);
                let name = |m: &str| format!("model.layers.{layer}.{}.{m}.weight", target.module());
                let zero = |name: String, shape: Vec<usize>| Tensor {
                    name,
                    data: vec![0.0; shape.iter().product()],
                    shape,
                };
                adapters.push(Adapter {
                    layer,
                    target,
                    a: tensors.len(),
                    b: tensors.len() + 1,
                });
                tensors.push(zero(name("lora_A"), vec![lora.rank, inp]));
                tensors.push(zero(name("lora_B"), vec![out, lora.rank]));
            }
        }
        Adapters {
            lora: lora.clone(),
            tensors,
            adapters,
        }
    }

    /// PEFT's initialisation: `A` Kaiming-uniform with a = √5, i.e. uniform ±1/√in, and
    /// `B` = 0, so an untrained adapter leaves the model exactly as it was.
    pub fn init(c: &Config, lora: &Lora, seed: u64) -> Adapters {
        let mut a = Adapters::zeros(c, lora);
        let mut rng = Rng::new(seed);
        for ad in a.adapters.clone() {
            let t = &mut a.tensors[ad.a];
            let bound = 1.0 / (t.shape[1] as f64).sqrt();
            t.data.iter_mut().for_each(|v| *v = rng.uniform(bound));
        }
        a
    }

    /// The adapter of `target` in `layer`, if there is one.
    pub fn get(&self, layer: usize, target: Target) -> Option<&Adapter> {
        self.adapters
            .iter()
            .find(|a| a.layer == layer && a.target == target)
    }

    pub fn num_params(&self) -> usize {
        self.tensors.iter().map(|t| t.data.len()).sum()
    }

    /// Adds every adapter into the weight it adapts, `W += s·B·A`: the merged model computes
    /// what base + adapters compute (for generation, and what `fuse` writes).
    pub fn merge_into(&self, p: &mut Params) {
        let s = self.lora.scale() as f32;
        let r = self.lora.rank;
        for ad in &self.adapters {
            let ids = p.layers[ad.layer];
            let w = match ad.target {
                Target::Q => ids.wq,
                Target::K => ids.wk,
                Target::V => ids.wv,
                Target::O => ids.wo,
                Target::Gate => ids.w1,
                Target::Up => ids.w3,
                Target::Down => ids.w2,
            };
            let (a, b) = (&self.tensors[ad.a].data, &self.tensors[ad.b].data);
            let inp = a.len() / r;
            for (o, row) in p.tensors[w].data.chunks_exact_mut(inp).enumerate() {
                for k in 0..r {
                    let bk = s * b[o * r + k];
                    for (wi, ai) in row.iter_mut().zip(&a[k * inp..(k + 1) * inp]) {
                        *wi += bk * ai;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_names_scale_and_init() {
        let c = Config::preset("tiny").unwrap();
        let mut lora = Lora::new(4, 8.0, &[Target::V, Target::Q, Target::Down, Target::Q]);
        assert_eq!(lora.targets, [Target::Q, Target::V, Target::Down]);
        assert_eq!(lora.scale(), 2.0);
        lora.layers = Some(1);
        let a = Adapters::init(&c, &lora, 1);
        assert_eq!(a.adapters.len(), 3);
        let last = c.layers - 1;
        let q = a.get(last, Target::Q).unwrap();
        assert_eq!(
            a.tensors[q.a].name,
            format!("model.layers.{last}.self_attn.q_proj.lora_A.weight")
        );
        assert_eq!(a.tensors[q.a].shape, [4, c.dim]);
        assert_eq!(a.tensors[q.b].shape, [c.q_dim(), 4]);
        let d = a.get(last, Target::Down).unwrap();
        assert_eq!(a.tensors[d.a].shape, [4, c.hidden]);
        let bound = 1.0 / (c.hidden as f32).sqrt();
        assert!(a.tensors[d.a].data.iter().all(|v| v.abs() <= bound));
        assert!(a.tensors[d.a].data.iter().any(|v| *v != 0.0));
        assert!(a.tensors[d.b].data.iter().all(|v| *v == 0.0));
        assert!(a.get(0, Target::Q).is_none() || c.layers == 1);
        lora.rslora = true;
        assert_eq!(lora.scale(), 4.0);
    }

    #[test]
    fn bad_settings_name_their_flag() {
        let c = Config::preset("tiny").unwrap();
        let bad = |f: &dyn Fn(&mut Lora)| {
            let mut l = Lora::new(8, 16.0, &Target::ALL);
            f(&mut l);
            l.validate(&c).unwrap_err().to_string()
        };
        assert!(bad(&|l| l.rank = 0).contains("--lora-rank"));
        assert!(bad(&|l| l.alpha = f64::NAN).contains("--lora-alpha"));
        assert!(bad(&|l| l.dropout = 1.0).contains("--lora-dropout"));
        assert!(bad(&|l| l.targets.clear()).contains("--lora-targets"));
        assert!(bad(&|l| l.layers = Some(0)).contains("--lora-layers"));
    }
}
