//! The device kernels of a training step, each a MIL function with a declared layout.
//!
//! Conventions (see docs/plan.md):
//! - Activations are `[1, C, 1, S]`, channel-major; every kernel has one input and one output.
//! - Weights that train travel inside the input, packed along the width next to the activations
//!   (ane-facts.md B.5), so kernels compile once and are shared by every layer.
//! - RMSNorm weights are folded into the staged matrices that follow them (W̃ = W·diag(w)); the
//!   kernels only normalise, and the host turns dW̃ into dW and dw once per optimizer step.
//!   Qwen3's per-head q/k norm weights cannot be folded (RoPE sits between them and the
//!   scores), so they travel as two columns of the attention input instead.
//! - Backward kernels recompute their block's forward from its input (one activation tap per
//!   block), which keeps the step's host↔device traffic small.

pub mod attention;
pub mod classifier;
pub mod common;
pub mod cost;
pub mod ffn;
pub mod plan;
pub mod report;

use anyhow::{Context, Result, ensure};
use malus_mil::lint::{Target, lint};
use malus_mil::{DType, Program, Severity, Type, Weights};

use crate::model::Config;
use common::{Layout, Mil};

/// The dimensions every kernel builder needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub dim: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub q: usize,
    pub kv: usize,
    pub seq: usize,
    pub vocab: usize,
    /// Vocabulary rows per classifier call (padded with zero rows past `vocab`).
    pub vocab_chunk: usize,
    pub vocab_chunks: usize,
    pub eps: f64,
    pub alpha: f64,
    pub theta: f64,
    /// Qwen3's per-head RMSNorm of q and k before RoPE (weights packed in the attention input).
    pub qk_norm: bool,
    pub dtype: DType,
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
            q: c.q_dim(),
            kv: c.kv_dim(),
            seq: c.seq,
            vocab: c.vocab,
            vocab_chunk: chunk,
            vocab_chunks: chunks,
            eps: c.norm_eps,
            alpha: c.residual_scale,
            theta: c.rope_theta,
            qk_norm: c.qk_norm,
            dtype,
        })
    }
}

/// Constant tables baked into kernels as blob constants (they never change): RoPE cos/sin, the
/// causal mask and the head-dim padding matrix.
pub struct Consts<'s> {
    s: &'s Shape,
    weights: Weights,
    offsets: std::collections::HashMap<&'static str, u64>,
}

/// The weight file that holds the constant tables.
const CONSTS_FILE: &str = "@model_path/weights/consts.bin";

/// Additive mask value: large enough that exp underflows to 0 in fp16 and f32, small enough that
/// adding it to a score never overflows fp16.
pub const MASK_NEG: f64 = -30000.0;

impl<'s> Consts<'s> {
    pub fn new(s: &'s Shape) -> Consts<'s> {
        Consts {
            s,
            weights: Weights::new(),
            offsets: Default::default(),
        }
    }

    fn table(
        &mut self,
        m: &mut Mil,
        name: &'static str,
        dims: &[usize],
        f: impl Fn(&[usize]) -> f64,
    ) -> Result<malus_mil::Var> {
        let off = match self.offsets.get(name) {
            Some(&o) => o,
            None => {
                let n: usize = dims.iter().product();
                let vals: Vec<f32> = (0..n)
                    .map(|i| {
                        let mut idx = vec![0; dims.len()];
                        let mut r = i;
                        for (k, d) in dims.iter().enumerate().rev() {
                            idx[k] = r % d;
                            r /= d;
                        }
                        f(&idx) as f32
                    })
                    .collect();
                let o = match self.s.dtype {
                    DType::Fp16 => self.weights.add_f16(CONSTS_FILE, &vals),
                    _ => self.weights.add_f32(CONSTS_FILE, &vals),
                };
                self.offsets.insert(name, o);
                o
            }
        };
        m.b.blob(Type::tensor(self.s.dtype, dims), CONSTS_FILE, off)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// RoPE angle of pair `i` at position `p`: p / θ^(2i/hd) (llama2.c).
    fn angle(&self, i: usize, p: usize) -> f64 {
        p as f64 / self.s.theta.powf(2.0 * i as f64 / self.s.head_dim as f64)
    }

    pub fn cos(&mut self, m: &mut Mil) -> Result<malus_mil::Var> {
        let dims = [1, self.s.head_dim / 2, 1, self.s.seq];
        let t: Vec<f64> = (0..dims[1] * dims[3])
            .map(|k| self.angle(k / dims[3], k % dims[3]).cos())
            .collect();
        self.table(m, "cos", &dims, |i| t[i[1] * dims[3] + i[3]])
    }

    pub fn sin(&mut self, m: &mut Mil) -> Result<malus_mil::Var> {
        let dims = [1, self.s.head_dim / 2, 1, self.s.seq];
        let t: Vec<f64> = (0..dims[1] * dims[3])
            .map(|k| self.angle(k / dims[3], k % dims[3]).sin())
            .collect();
        self.table(m, "sin", &dims, |i| t[i[1] * dims[3] + i[3]])
    }

    /// `[1, hd, 1, dim]`: the identity padded with zero columns; `vᵀ·E` lays a head-dim vector
    /// out as a `dim`-wide row (the q/k-norm weight gradient in the dW output).
    pub fn head_pad(&mut self, m: &mut Mil) -> Result<malus_mil::Var> {
        let dims = [1, self.s.head_dim, 1, self.s.dim];
        self.table(m, "head_pad", &dims, |i| if i[1] == i[3] { 1.0 } else { 0.0 })
    }

    /// `[1, 1, S, S]`: 0 where key ≤ query, [`MASK_NEG`] above the diagonal.
    pub fn mask(&mut self, m: &mut Mil) -> Result<malus_mil::Var> {
        let s = self.s.seq;
        self.table(
            m,
            "mask",
            &[1, 1, s, s],
            |i| if i[3] > i[2] { MASK_NEG } else { 0.0 },
        )
    }

    pub fn into_weights(self) -> Weights {
        self.weights
    }
}

/// One compiled-once kernel: its MIL program, constant weights and I/O layouts.
#[derive(Clone, Debug)]
pub struct KernelDef {
    pub name: &'static str,
    pub program: Program,
    pub weights: Weights,
    pub input: Layout,
    pub output: Layout,
    /// Floating-point operations per call (matmuls 2·M·N·K, elementwise one per element).
    pub flops: u64,
}

impl KernelDef {
    /// Checks the program is valid MIL, matches its layouts and raises no ANE lint error for the
    /// strictest chip family (fp32 kernels, which never go to the ANE, skip the lint).
    pub fn new(
        name: &'static str,
        program: Program,
        weights: Weights,
        input: Layout,
        output: Layout,
    ) -> Result<KernelDef> {
        let diags = malus_mil::validate(&program);
        ensure!(
            diags.is_empty(),
            "kernel {name}: invalid MIL: {}",
            diags.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; ")
        );
        let f = program.main().context("kernel has no main function")?;
        let in_shape = f.inputs[0].1.known_shape().unwrap_or_default();
        ensure!(
            in_shape == input.shape(),
            "kernel {name}: input {in_shape:?} does not match its layout {:?}",
            input.shape()
        );
        let out_shape = f.output_types()[0]
            .and_then(|t| t.known_shape())
            .unwrap_or_default();
        ensure!(
            out_shape == output.shape(),
            "kernel {name}: output {out_shape:?} does not match its layout {:?}",
            output.shape()
        );
        if f.inputs[0].1.dtype() == Some(DType::Fp16) {
            let errors: Vec<String> = lint(&program, Target::Strictest)
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| d.to_string())
                .collect();
            ensure!(
                errors.is_empty(),
                "kernel {name}: ANE lint errors: {}",
                errors.join("; ")
            );
        }
        let flops = program_flops(&program);
        Ok(KernelDef {
            name,
            program,
            weights,
            input,
            output,
            flops,
        })
    }

    /// ANE lint warnings for the strictest family (reported by the plan).
    pub fn lint_warnings(&self) -> Vec<malus_mil::Diagnostic> {
        lint(&self.program, Target::Strictest)
    }
}

/// Counts the FLOPs of a program's main function from its types.
pub fn program_flops(p: &Program) -> u64 {
    let Some(f) = p.main() else { return 0 };
    let mut total = 0u64;
    for op in &f.body {
        let out_elems: u64 = op
            .outputs
            .iter()
            .map(|(_, t)| t.num_elements().unwrap_or(0) as u64)
            .sum();
        total += match op.op.as_str() {
            "matmul" => {
                let x = op.arg("x").and_then(|v| v.as_var()).and_then(|n| f.var_type(n));
                let tx = op
                    .arg("transpose_x")
                    .and_then(|v| v.as_var())
                    .and_then(|n| f.producer(n))
                    .and_then(|p| p.const_value())
                    .and_then(|l| l.as_scalar_bool())
                    .unwrap_or(false);
                let k = x
                    .and_then(|t| t.known_shape())
                    .map(|s| if tx { s[s.len() - 2] } else { s[s.len() - 1] });
                2 * out_elems * k.unwrap_or(0) as u64
            }
            "softmax" => 5 * out_elems,
            "reduce_sum" | "reduce_mean" | "reduce_max" => op
                .arg("x")
                .and_then(|v| v.as_var())
                .and_then(|n| f.var_type(n))
                .and_then(|t| t.num_elements())
                .unwrap_or(0) as u64,
            "const" | "reshape" | "slice_by_size" | "slice_by_index" | "concat" | "transpose"
            | "identity" | "expand_dims" | "squeeze" | "split" => 0,
            _ => out_elems,
        };
    }
    total
}
