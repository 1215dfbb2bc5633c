//! The dimensions every kernel builder needs: the model config's, plus the vocabulary chunking
//! of the classifier and the element type of the device.

use anyhow::{Result, ensure};
use malus_mil::DType;

use super::lora::LoraShape;
use crate::model::{Config, Lora};

/// The dimensions every kernel builder needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub dim: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// `heads · head_dim` and `kv_heads · head_dim`.
    pub q_dim: usize,
    pub kv_dim: usize,
    pub seq: usize,
    pub vocab: usize,
    /// Vocabulary rows per classifier call (padded with zero rows past `vocab`).
    pub vocab_chunk: usize,
    pub vocab_chunks: usize,
    pub norm_eps: f64,
    pub residual_scale: f64,
    pub rope_theta: f64,
    /// Qwen3's per-head RMSNorm of q and k before RoPE (weights packed in the attention input).
    pub qk_norm: bool,
    pub dtype: DType,
    /// LoRA adapters on a frozen base: the kernels gain their low-rank paths.
    pub lora: Option<LoraShape>,
}

/// Largest extent of an axis on the strictest chip family (ANEForge: 16384 on A13–A15).
pub const MAX_EXTENT: usize = 16384;

impl Shape {
    pub fn new(c: &Config, dtype: DType) -> Result<Shape> {
        c.validate()?;
        ensure!(
            !c.qk_norm || c.head_dim <= c.dim,
            "per-head q/k RMSNorm needs head_dim ({}) ≤ dim ({}): its weights travel as columns of \
             the attention input, which has dim channels",
            c.head_dim,
            c.dim
        );
        let max_chunk = (MAX_EXTENT - c.seq) / 32 * 32;
        ensure!(
            max_chunk >= 32,
            "seq {} leaves no room for a classifier chunk",
            c.seq
        );
        let chunks = c.vocab.div_ceil(max_chunk);
        let chunk = c.vocab.div_ceil(chunks).div_ceil(32) * 32;
        Ok(Shape {
            dim: c.dim,
            hidden: c.hidden,
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
            q_dim: c.q_dim(),
            kv_dim: c.kv_dim(),
            seq: c.seq,
            vocab: c.vocab,
            vocab_chunk: chunk,
            vocab_chunks: chunks,
            norm_eps: c.norm_eps,
            residual_scale: c.residual_scale,
            rope_theta: c.rope_theta,
            qk_norm: c.qk_norm,
            dtype,
            lora: None,
        })
    }

    /// The shape with the low-rank paths of `lora` in the attention and FFN kernels.
    pub fn with_lora(mut self, lora: &Lora) -> Shape {
        self.lora = Some(LoraShape::new(lora));
        self
    }
}
