//! Model parameters as named f32 tensors (PyTorch/llama2.c orientation: a Linear weight is
//! `[out, in]`, row-major), and their initialisation.

use anyhow::{Result, anyhow, bail, ensure};

use super::Config;
use crate::rng::Rng;

/// One named parameter tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Indices of one layer's tensors inside [`Params::tensors`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerIds {
    pub attn_norm: usize,
    pub wq: usize,
    pub wk: usize,
    pub wv: usize,
    pub wo: usize,
    /// Qwen3's per-head q/k RMSNorm weights `[head_dim]`, when the config has `qk_norm`.
    pub q_norm: Option<usize>,
    pub k_norm: Option<usize>,
    pub ffn_norm: usize,
    pub w1: usize,
    pub w2: usize,
    pub w3: usize,
}

/// Every trainable tensor of a model, in a fixed order.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub tensors: Vec<Tensor>,
    pub embed: usize,
    pub final_norm: usize,
    /// A separate classifier when the embedding is not tied.
    pub cls: Option<usize>,
    pub layers: Vec<LayerIds>,
}

impl Params {
    /// Zero tensors with the config's shapes (Hugging Face Llama names).
    pub fn zeros(c: &Config) -> Params {
        let mut p = Params::layout(c);
        for t in &mut p.tensors {
            t.data = vec![0.0; t.numel()];
        }
        p
    }

    /// The names and shapes of the config's tensors, in order, allocating nothing for their
    /// data (to check a file against a config before reading it).
    pub fn shapes(c: &Config) -> Vec<(String, Vec<usize>)> {
        Params::layout(c)
            .tensors
            .into_iter()
            .map(|t| (t.name, t.shape))
            .collect()
    }

    /// The tensors a config implies — names, shapes, order, indices — with empty data, so
    /// [`check`](Self::check) need not allocate a model's worth of zeros.
    pub fn layout(c: &Config) -> Params {
        let mut tensors = Vec::new();
        let mut add = |name: String, shape: Vec<usize>| {
            tensors.push(Tensor {
                name,
                shape,
                data: Vec::new(),
            });
            tensors.len() - 1
        };
        let embed = add("model.embed_tokens.weight".into(), vec![c.vocab, c.dim]);
        let mut layers = Vec::new();
        for l in 0..c.layers {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            layers.push(LayerIds {
                attn_norm: add(p("input_layernorm.weight"), vec![c.dim]),
                wq: add(p("self_attn.q_proj.weight"), vec![c.q_dim(), c.dim]),
                wk: add(p("self_attn.k_proj.weight"), vec![c.kv_dim(), c.dim]),
                wv: add(p("self_attn.v_proj.weight"), vec![c.kv_dim(), c.dim]),
                wo: add(p("self_attn.o_proj.weight"), vec![c.dim, c.q_dim()]),
                q_norm: c
                    .qk_norm
                    .then(|| add(p("self_attn.q_norm.weight"), vec![c.head_dim])),
                k_norm: c
                    .qk_norm
                    .then(|| add(p("self_attn.k_norm.weight"), vec![c.head_dim])),
                ffn_norm: add(p("post_attention_layernorm.weight"), vec![c.dim]),
                w1: add(p("mlp.gate_proj.weight"), vec![c.hidden, c.dim]),
                w2: add(p("mlp.down_proj.weight"), vec![c.dim, c.hidden]),
                w3: add(p("mlp.up_proj.weight"), vec![c.hidden, c.dim]),
            });
        }
        let final_norm = add("model.norm.weight".into(), vec![c.dim]);
        let cls = (!c.tied).then(|| add("lm_head.weight".into(), vec![c.vocab, c.dim]));
        Params {
            tensors,
            embed,
            final_norm,
            cls,
            layers,
        }
    }

    /// Random initialisation (maderix/ANE's scheme, E.7): uniform ±1/√fan_in for projections,
    /// with the residual-branch outputs (Wo, W2) further scaled by 1/√(2·layers); norms 1;
    /// embedding ±0.02.
    pub fn init(c: &Config, seed: u64) -> Params {
        let mut p = Params::zeros(c);
        let mut rng = Rng::new(seed);
        let depth = 1.0 / (2.0 * c.layers as f64).sqrt();
        let fill =
            |t: &mut Tensor, a: f64, rng: &mut Rng| t.data.iter_mut().for_each(|v| *v = rng.uniform(a));
        fill(&mut p.tensors[p.embed], 0.02, &mut rng);
        for l in p.layers.clone() {
            let d = 1.0 / (c.dim as f64).sqrt();
            fill(&mut p.tensors[l.wq], d, &mut rng);
            fill(&mut p.tensors[l.wk], d, &mut rng);
            fill(&mut p.tensors[l.wv], d, &mut rng);
            fill(&mut p.tensors[l.wo], depth / (c.q_dim() as f64).sqrt(), &mut rng);
            fill(&mut p.tensors[l.w1], 1.0 / (c.hidden as f64).sqrt(), &mut rng);
            fill(&mut p.tensors[l.w2], depth * d, &mut rng);
            fill(&mut p.tensors[l.w3], 1.0 / (c.hidden as f64).sqrt(), &mut rng);
            p.tensors[l.attn_norm].data.fill(1.0);
            p.tensors[l.ffn_norm].data.fill(1.0);
            for n in [l.q_norm, l.k_norm].into_iter().flatten() {
                p.tensors[n].data.fill(1.0);
            }
        }
        p.tensors[p.final_norm].data.fill(1.0);
        if let Some(cls) = p.cls {
            fill(&mut p.tensors[cls], 1.0 / (c.dim as f64).sqrt(), &mut rng);
        }
        p
    }

    /// The classifier matrix `[vocab, dim]` (the embedding when tied).
    pub fn classifier(&self) -> usize {
        self.cls.unwrap_or(self.embed)
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| anyhow!("no parameter named {name}"))
    }

    pub fn num_params(&self) -> usize {
        self.tensors.iter().map(|t| t.data.len()).sum()
    }

    /// Checks the set has the tensors `c` implies (names, shapes, data lengths, order, the
    /// index fields), so weights from elsewhere fail with the first wrong tensor named rather
    /// than as a slice panic mid-forward.
    pub fn check(&self, c: &Config) -> Result<()> {
        ensure!(
            self.layers.len() == c.layers,
            "parameters have {} layers, the config {}",
            self.layers.len(),
            c.layers
        );
        for l in &self.layers {
            ensure!(
                l.q_norm.is_some() == c.qk_norm && l.k_norm.is_some() == c.qk_norm,
                "parameters {} q/k norm weights, the config has qk_norm = {}",
                if l.q_norm.is_some() { "have" } else { "lack" },
                c.qk_norm
            );
        }
        let want = Params::layout(c);
        same_tensors(&self.tensors, &want.tensors, "the config needs")?;
        if let Some(t) = self.tensors.iter().find(|t| t.data.len() != t.numel()) {
            bail!(
                "parameter {} has {} values for shape {:?}",
                t.name,
                t.data.len(),
                t.shape
            );
        }
        ensure!(
            (self.embed, self.final_norm, self.cls, &self.layers)
                == (want.embed, want.final_norm, want.cls, &want.layers),
            "the parameters' tensor indices disagree with their order"
        );
        Ok(())
    }

    /// Checks another set has the same names and shapes, in the same order (e.g. gradients,
    /// whose data may be empty).
    pub fn check_same_shapes(&self, other: &Params) -> Result<()> {
        same_tensors(&other.tensors, &self.tensors, "this set has")
    }
}

impl Tensor {
    /// Values the shape holds.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The first tensor of `want` that `have` lacks, shapes differently or holds elsewhere, and
/// then the first one `have` adds, as an error naming it (`needs`: who wants `want`'s shape).
fn same_tensors(have: &[Tensor], want: &[Tensor], needs: &str) -> Result<()> {
    for (i, w) in want.iter().enumerate() {
        let found = match have.get(i) {
            Some(t) if t.name == w.name => Some(i),
            _ => have.iter().position(|t| t.name == w.name),
        };
        let Some(j) = found else {
            bail!("parameter {} is missing ({needs} shape {:?})", w.name, w.shape);
        };
        let t = &have[j];
        ensure!(
            t.shape == w.shape,
            "parameter {} has shape {:?}, {needs} {:?}",
            t.name,
            t.shape,
            w.shape
        );
        ensure!(j == i, "parameter {} is tensor {j}, expected at {i}", t.name);
    }
    if let Some(t) = have.get(want.len()) {
        bail!(
            "parameter {} is not expected ({} tensors are)",
            t.name,
            want.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_count_and_init_ranges() {
        let c = Config::preset("tiny").unwrap();
        let p = Params::init(&c, 7);
        assert_eq!(p.num_params(), c.num_params());
        let l0 = p.layers[0];
        assert_eq!(p.tensors[l0.wq].shape, vec![c.q_dim(), c.dim]);
        assert_eq!(p.tensors[l0.w2].shape, vec![c.dim, c.hidden]);
        assert!(p.tensors[l0.attn_norm].data.iter().all(|&v| v == 1.0));
        let bound = 1.0 / (c.dim as f32).sqrt();
        assert!(p.tensors[l0.wq].data.iter().all(|v| v.abs() <= bound));
        assert!(p.tensors[l0.wq].data.iter().any(|v| v.abs() > bound / 2.0));
        assert_eq!(Params::init(&c, 7), p);
        assert_ne!(Params::init(&c, 8), p);
        assert!(p.get("model.layers.1.mlp.up_proj.weight").is_ok());
        assert!(p.get("model.layers.0.self_attn.q_norm.weight").is_err());
    }

    #[test]
    fn qk_norm_adds_two_head_dim_vectors_per_layer() {
        let mut c = Config::preset("tiny").unwrap();
        c.qk_norm = true;
        c.head_dim = 32;
        let p = Params::init(&c, 7);
        assert_eq!(p.num_params(), c.num_params());
        for name in ["q_norm", "k_norm"] {
            let t = p.get(&format!("model.layers.1.self_attn.{name}.weight")).unwrap();
            assert_eq!(t.shape, vec![32]);
            assert!(t.data.iter().all(|&v| v == 1.0));
        }
    }

    #[test]
    fn check_names_the_first_wrong_or_missing_tensor() {
        let mut c = Config::preset("tiny").unwrap();
        c.kv_heads = 2;
        let p = Params::init(&c, 1);
        p.check(&c).unwrap();
        p.check_same_shapes(&Params::zeros(&c)).unwrap();

        let mut bad = p.clone();
        bad.tensors[bad.layers[1].wk].shape = vec![c.dim, c.dim];
        let err = bad.check(&c).unwrap_err().to_string();
        assert_eq!(
            err,
            "parameter model.layers.1.self_attn.k_proj.weight has shape [64, 64], the config needs [32, 64]"
        );
        assert!(
            p.check_same_shapes(&bad)
                .unwrap_err()
                .to_string()
                .contains("k_proj")
        );

        let mut missing = p.clone();
        missing.tensors.remove(missing.final_norm);
        let err = missing.check(&c).unwrap_err().to_string();
        assert_eq!(
            err,
            "parameter model.norm.weight is missing (the config needs shape [64])"
        );

        let mut short = p.clone();
        short.tensors[short.layers[0].w2].data.pop();
        let err = short.check(&c).unwrap_err().to_string();
        assert!(
            err.contains("model.layers.0.mlp.down_proj.weight has 8191 values"),
            "{err}"
        );

        let mut untied = c.clone();
        untied.tied = false;
        let err = p.check(&untied).unwrap_err().to_string();
        assert!(err.contains("lm_head.weight is missing"), "{err}");
        let err = Params::zeros(&untied).check(&c).unwrap_err().to_string();
        assert!(err.contains("lm_head.weight is not expected"), "{err}");
        let mut qk = c.clone();
        qk.qk_norm = true;
        let err = p.check(&qk).unwrap_err().to_string();
        assert!(err.contains("lack q/k norm"), "{err}");
    }
}
