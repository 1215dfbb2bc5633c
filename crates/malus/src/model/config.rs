//! Llama-family model configurations and the presets malus ships.

use anyhow::{Result, bail};

/// The shape of a Llama-family decoder: RMSNorm, RoPE (llama2.c pairing), SwiGLU FFN,
/// multi-head or grouped-query attention.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    pub dim: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// Independent of `dim / heads` (Qwen3 uses 128 with dim 1024 and 16 heads).
    pub head_dim: usize,
    pub vocab: usize,
    pub seq: usize,
    pub rope_theta: f64,
    pub norm_eps: f64,
    /// Per-head RMSNorm of q and k before RoPE, as in Qwen3.
    pub qk_norm: bool,
    /// Classifier shares the token embedding.
    pub tied: bool,
    /// Residual branch scale α: x + α·f(x). maderix uses 1/√(2·layers); Llama uses 1.
    pub residual_scale: f64,
}

/// The largest dimension malus accepts: every packed kernel width (a sum of a few dimensions)
/// then stays within MIL's int32 extents.
pub const MAX_DIM: usize = (i32::MAX as usize) / 8;

impl Config {
    /// A preset by name: `tiny`, `stories15m`, `stories42m`, `stories110m`, `qwen3-0.6b`,
    /// `llama2-7b`, `llama3.2-3b`, `smollm2-135m`.
    pub fn preset(name: &str) -> Result<Config> {
        let llama = |dim, layers, heads, hidden| Config {
            dim,
            hidden,
            layers,
            heads,
            kv_heads: heads,
            head_dim: dim / heads,
            vocab: 32000,
            seq: 256,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
            qk_norm: false,
            tied: true,
            residual_scale: 1.0,
        };
        Ok(match name {
            "tiny" => Config {
                vocab: 256,
                seq: 64,
                ..llama(64, 2, 4, 128)
            },
            "stories15m" => llama(288, 6, 6, 768),
            "stories42m" => llama(512, 8, 8, 1376),
            "stories110m" => llama(768, 12, 12, 2048),
            "qwen3-0.6b" => Config {
                kv_heads: 8,
                head_dim: 128,
                vocab: 151936,
                rope_theta: 1_000_000.0,
                norm_eps: 1e-6,
                qk_norm: true,
                ..llama(1024, 28, 16, 3072)
            },
            // The shapes of Llama-2-7B, Llama-3.2-3B and SmolLM2-135M (for planning and
            // benchmarks; their weights come from a Hugging Face directory).
            "smollm2-135m" => Config {
                kv_heads: 3,
                head_dim: 64,
                vocab: 49152,
                rope_theta: 100_000.0,
                ..llama(576, 30, 9, 1536)
            },
            "llama2-7b" => Config {
                tied: false,
                ..llama(4096, 32, 32, 11008)
            },
            "llama3.2-3b" => Config {
                kv_heads: 8,
                head_dim: 128,
                vocab: 128256,
                rope_theta: 500_000.0,
                ..llama(3072, 28, 24, 8192)
            },
            other => bail!(
                "unknown model preset {other:?} (known: tiny, stories15m, stories42m, stories110m, qwen3-0.6b, llama2-7b, llama3.2-3b, smollm2-135m)"
            ),
        })
    }

    /// Channels of all query heads.
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Channels of all key (or value) heads.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Query heads per key/value head.
    pub fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Checks the shape is consistent.
    pub fn validate(&self) -> Result<()> {
        let pos = [
            ("dim", self.dim),
            ("hidden", self.hidden),
            ("layers", self.layers),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("vocab", self.vocab),
            ("seq", self.seq),
        ];
        if let Some((n, _)) = pos.iter().find(|(_, v)| *v == 0) {
            bail!("model config: {n} must be positive");
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            bail!(
                "model config: heads ({}) must be a multiple of kv_heads ({})",
                self.heads,
                self.kv_heads
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            bail!("model config: head_dim ({}) must be even for RoPE", self.head_dim);
        }
        if !(self.norm_eps > 0.0 && self.rope_theta > 0.0 && self.residual_scale.is_finite()) {
            bail!("model config: norm_eps and rope_theta must be positive, residual_scale finite");
        }
        // MIL programs address tensors with int32 extents; the widest packed input sums the
        // per-block widths of a kernel (attention: 2·seq + 2·q_dim + 2·kv_dim, FFN: 2·seq +
        // 3·hidden).
        for (n, v) in pos {
            if v > MAX_DIM {
                bail!(
                    "model config: {n} = {v} exceeds {MAX_DIM}, the largest extent a MIL program can address"
                );
            }
        }
        for (n, h) in [("heads", self.heads), ("kv_heads", self.kv_heads)] {
            if h.checked_mul(self.head_dim).is_none_or(|w| w > MAX_DIM) {
                bail!(
                    "model config: {n} × head_dim exceeds {MAX_DIM}, the largest extent a MIL program can address"
                );
            }
        }
        if self.checked_num_params().is_none() {
            bail!("model config: the parameter count overflows");
        }
        Ok(())
    }

    /// Number of trainable parameters, `None` if it overflows (an absurd config).
    pub fn checked_num_params(&self) -> Option<usize> {
        let m = |a: usize, b: usize| a.checked_mul(b);
        let q = m(self.heads, self.head_dim)?;
        let kv = m(self.kv_heads, self.head_dim)?;
        let qkvo = m(self.dim, m(2, q)?.checked_add(m(2, kv)?)?)?;
        let per_layer = qkvo
            .checked_add(m(3, m(self.dim, self.hidden)?)?)?
            .checked_add(m(2, self.dim)?)?
            .checked_add(if self.qk_norm { m(2, self.head_dim)? } else { 0 })?;
        let table = m(self.vocab, self.dim)?;
        let cls = if self.tied { 0 } else { table };
        m(self.layers, per_layer)?
            .checked_add(table)?
            .checked_add(cls)?
            .checked_add(self.dim)
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let per_layer = self.dim * (2 * self.q_dim() + 2 * self.kv_dim())
            + 3 * self.dim * self.hidden
            + 2 * self.dim
            + if self.qk_norm { 2 * self.head_dim } else { 0 };
        let cls = if self.tied { 0 } else { self.vocab * self.dim };
        self.layers * per_layer + self.vocab * self.dim + cls + self.dim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_published_sizes() {
        // maderix/ANE F.1: Stories110M 109.53M params (84.95M + 24.58M embedding).
        let s = Config::preset("stories110m").unwrap();
        assert_eq!(s.num_params(), 109_529_856);
        let q = Config::preset("qwen3-0.6b").unwrap();
        assert_eq!((q.q_dim(), q.kv_dim(), q.group()), (2048, 1024, 2));
        // Qwen3-0.6B: 596.05M with tied embeddings and q/k norms (HF reports 0.6B).
        assert_eq!(q.num_params(), 596_049_920);
        for p in ["tiny", "stories15m", "stories42m"] {
            Config::preset(p).unwrap().validate().unwrap();
        }
        assert!(Config::preset("gpt5").is_err());
    }

    #[test]
    fn invalid_configs_are_refused() {
        let mut c = Config::preset("tiny").unwrap();
        c.kv_heads = 3;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("multiple of kv_heads")
        );
        c.kv_heads = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("kv_heads must be positive")
        );
    }
}
