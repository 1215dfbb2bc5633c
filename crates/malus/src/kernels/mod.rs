//! The device kernels of a training step, each a MIL function with declared packings, and the
//! table that lists them.
//!
//! Conventions (docs/plan.md):
//! - Activations are `[1, C, 1, S]`, channel-major; every kernel has one input and one output,
//!   each a [`Packing`] of named blocks declared once by the kernel's file.
//! - Weights that train travel inside the input, packed along the width next to the activations
//!   (docs/ane-restrictions.md, dynamic weights), so kernels compile once and every layer
//!   shares them.
//! - RMSNorm weights are folded into the staged matrices that follow them (W̃ = W·diag(w)); the
//!   kernels only normalise, and `train::staging` turns dW̃ into dW and dw once per update.
//!   Qwen3's per-head q/k norm weights cannot be folded (RoPE sits between them and the
//!   scores), so they travel as two columns of the attention input instead.
//! - Backward kernels recompute their block's forward from its input (one activation tap per
//!   block), which keeps the step's host↔device traffic small.
//!
//! Adding a kernel: a builder in one file, declaring its packings, and a row of [`KERNELS`].

pub mod attention;
pub mod classifier;
mod consts;
pub mod dw;
pub mod ffn;
pub mod lora;
mod mil;
pub mod packing;
mod shape;

use anyhow::{Context, Result, ensure};
use malus_mil::lint::{Target, lint};
use malus_mil::{DType, Program, Severity, Weights};

pub use consts::{Consts, MASK_NEG};
pub use mil::Mil;
pub use packing::{Axis, Block, Packing, Role, Slot, block};
pub use shape::{MAX_EXTENT, Shape};

/// Every kernel of a step. The order is the order of [`KERNELS`] and of the plan report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelId {
    AttnFwd,
    FfnFwd,
    ClsFwd,
    ClsBwd,
    ClsDw,
    NormBwd,
    FfnBwd,
    FfnDw,
    AttnBwd,
    AttnDw,
}

/// How often a kernel runs per micro-step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calls {
    PerLayer,
    PerVocabChunk,
    Once,
}

/// One row of the kernel table.
pub struct KernelEntry {
    pub id: KernelId,
    pub name: &'static str,
    pub calls: Calls,
    /// A weight-gradient kernel: built only when dW runs on the device.
    pub dw: bool,
    pub build: fn(&Shape) -> Result<KernelDef>,
}

const fn entry(
    id: KernelId,
    name: &'static str,
    calls: Calls,
    dw: bool,
    build: fn(&Shape) -> Result<KernelDef>,
) -> KernelEntry {
    KernelEntry {
        id,
        name,
        calls,
        dw,
        build,
    }
}

/// The kernel table: every kernel with its builder, call count and placement.
pub const KERNELS: [KernelEntry; 10] = [
    entry(
        KernelId::AttnFwd,
        "attn_fwd",
        Calls::PerLayer,
        false,
        attention::forward,
    ),
    entry(KernelId::FfnFwd, "ffn_fwd", Calls::PerLayer, false, ffn::forward),
    entry(
        KernelId::ClsFwd,
        "cls_fwd",
        Calls::PerVocabChunk,
        false,
        classifier::forward,
    ),
    entry(
        KernelId::ClsBwd,
        "cls_bwd",
        Calls::PerVocabChunk,
        false,
        classifier::backward,
    ),
    entry(
        KernelId::ClsDw,
        "cls_dw",
        Calls::PerVocabChunk,
        true,
        classifier::dw,
    ),
    entry(
        KernelId::NormBwd,
        "norm_bwd",
        Calls::Once,
        false,
        classifier::norm_backward,
    ),
    entry(KernelId::FfnBwd, "ffn_bwd", Calls::PerLayer, false, ffn::backward),
    entry(KernelId::FfnDw, "ffn_dw", Calls::PerLayer, true, ffn::dw),
    entry(
        KernelId::AttnBwd,
        "attn_bwd",
        Calls::PerLayer,
        false,
        attention::backward,
    ),
    entry(KernelId::AttnDw, "attn_dw", Calls::PerLayer, true, attention::dw),
];

impl KernelId {
    pub fn entry(self) -> &'static KernelEntry {
        &KERNELS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.entry().name
    }

    /// Calls per micro-step (one sequence, forward and backward).
    pub fn calls(self, s: &Shape, layers: usize) -> usize {
        match self.entry().calls {
            Calls::PerLayer => layers,
            Calls::PerVocabChunk => s.vocab_chunks,
            Calls::Once => 1,
        }
    }
}

/// One compiled-once kernel: its MIL program, constant weights and I/O layouts.
#[derive(Clone, Debug)]
pub struct KernelDef {
    pub id: KernelId,
    pub name: &'static str,
    pub program: Program,
    pub weights: Weights,
    pub input: Packing,
    pub output: Packing,
    /// Floating-point operations per call (matmuls 2·M·N·K, elementwise one per element).
    pub flops: u64,
}

impl KernelDef {
    /// Checks the program is valid MIL, matches its layouts and raises no ANE lint error for the
    /// strictest chip family (fp32 kernels, which never go to the ANE, skip the lint).
    pub fn new(
        id: KernelId,
        program: Program,
        weights: Weights,
        input: Packing,
        output: Packing,
    ) -> Result<KernelDef> {
        let name = id.name();
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
            "kernel {name}: input {in_shape:?} does not match its packing {:?}",
            input.shape()
        );
        let out_shape = f.output_types()[0]
            .and_then(|t| t.known_shape())
            .unwrap_or_default();
        ensure!(
            out_shape == output.shape(),
            "kernel {name}: output {out_shape:?} does not match its packing {:?}",
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
            id,
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
