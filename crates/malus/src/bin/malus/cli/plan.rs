//! `malus plan`: the kernel plan of a model and its accounting.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::lora_args::LoraArgs;
use anyhow::Result;
use clap::Args;
use malus::kernels::Shape;
use malus::model::Lora;
use malus::model::hf;
use malus::model::hf_out::StoreDtype;
use malus::plan::cost::{Chip, Prediction, auto_plan};
use malus::plan::memory::{Executor, MemoryEstimate};
use malus::plan::report::PlanReport;
use malus::{Config, Dw, OptimizerKind, Plan};
use malus_mil::DType;

#[derive(Args)]
pub struct PlanArgs {
    /// Model preset: tiny, stories15m, stories42m, stories110m, qwen3-0.6b, llama2-7b,
    /// llama3.2-3b.
    #[arg(long, default_value = "stories110m", conflicts_with = "init")]
    model: String,
    /// Plan for a Hugging Face model directory (its config.json) instead of a preset.
    #[arg(long, value_name = "DIR")]
    init: Option<PathBuf>,
    #[command(flatten)]
    lora: LoraArgs,
    #[arg(long)]
    seq: Option<usize>,
    #[arg(long)]
    vocab: Option<usize>,
    /// Where weight-gradient matmuls run (auto: the faster by the cost model for `--chip`;
    /// the device when no chip is given).
    #[arg(long, value_enum, default_value_t = Dw::Auto)]
    dw: Dw,
    /// Predict the step time on a chip with the cost model of docs/cost-model.md: m1, m2,
    /// m3-ultra, m4, m4-max, m5, m5-max (predictions, not measurements).
    #[arg(long)]
    chip: Option<String>,
    /// Print each kernel's MIL program too.
    #[arg(long)]
    mil: bool,
    /// Print each kernel's ANE lint warnings.
    #[arg(long)]
    warnings: bool,
}

pub fn run(a: PlanArgs) -> Result<ExitCode> {
    let mut c = match &a.init {
        Some(dir) => hf::load_config(dir, a.seq.unwrap_or(256))?,
        None => Config::preset(&a.model)?,
    };
    if let Some(s) = a.seq {
        c.seq = s;
    }
    if let Some(v) = a.vocab {
        c.vocab = v;
    }
    let chip = a.chip.as_deref().map(Chip::by_key).transpose()?;
    let name = match &a.init {
        Some(dir) => dir.display().to_string(),
        None => a.model.clone(),
    };
    if let Some(l) = a.lora.settings() {
        return lora_plan(&c, &l, &name, a.init.as_deref(), chip, &a);
    }
    let mut out = String::new();
    let plan = match (a.dw, chip) {
        (Dw::Auto, Some(chip)) => {
            let (plan, preds) = auto_plan(&c, DType::Fp16, chip)?;
            for p in preds {
                writeln!(out, "dW on the {}: {p}", p.dw.name())?;
            }
            writeln!(out, "--dw auto on {}: dW on the {}\n", chip.name, plan.dw.name())?;
            plan
        }
        (dw, _) => Plan::new(&c, DType::Fp16, dw)?,
    };
    let r = PlanReport::new(&plan, &name);
    write!(out, "{r}")?;
    let cpu = Executor::Cpu { fp16: false };
    let mem = MemoryEstimate::training(&c, &plan.shape, cpu, OptimizerKind::AdamW, plan.dw);
    writeln!(
        out,
        "memory to train with AdamW on the CPU executor (f32 kernels), at least: {mem}"
    )?;
    if let (Some(chip), Dw::Device | Dw::Host) = (chip, a.dw) {
        writeln!(out, "{}", Prediction::new(chip, &r, c.seq))?;
    }
    kernel_details(&plan, &a, &mut out)?;
    super::write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// The kernels' lint warnings and MIL, as asked.
fn kernel_details(plan: &Plan, a: &PlanArgs, out: &mut String) -> Result<()> {
    for (k, _) in plan.calls() {
        if a.warnings {
            for d in k.lint_warnings() {
                writeln!(out, "{}: {d}", k.name)?;
            }
        }
        if a.mil {
            writeln!(out, "// kernel {}\n{}", k.name, malus_mil::print(&k.program))?;
        }
    }
    Ok(())
}

/// `malus plan --lora`: the LoRA kernels (fp16, as the Neural Engine runs them), their work,
/// the memory of a run on the Neural Engine and on the CPU executor, and the predicted time.
fn lora_plan(
    c: &Config,
    l: &Lora,
    name: &str,
    init: Option<&Path>,
    chip: Option<&'static Chip>,
    a: &PlanArgs,
) -> Result<ExitCode> {
    let mut out = String::new();
    let plan = Plan::lora(c, DType::Fp16, l)?;
    let r = PlanReport::new(&plan, name);
    write!(out, "{r}")?;
    // The embedding stays on the host as stored: bf16 unless the directory says otherwise.
    let embed = match init.map(StoreDtype::of_dir).transpose()? {
        Some(StoreDtype::F32) => 4,
        _ => 2,
    };
    for (ex, what) in [
        (Executor::Ane, "on the Neural Engine (fp16 kernels)"),
        (Executor::Cpu { fp16: true }, "on the CPU executor in fp16"),
        (Executor::Cpu { fp16: false }, "on the CPU executor in f32"),
    ] {
        let shape = Shape::new(
            c,
            if ex.elem_bytes() == 2 {
                DType::Fp16
            } else {
                DType::Fp32
            },
        )?
        .with_lora(l);
        let mem = MemoryEstimate::lora(c, &shape, ex, l, OptimizerKind::AdamW, embed);
        writeln!(
            out,
            "memory to train the adapters with AdamW {what}, at least: {mem}"
        )?;
    }
    if let Some(chip) = chip {
        let p = Prediction::new(chip, &r, c.seq);
        writeln!(out, "{p}")?;
    }
    kernel_details(&plan, a, &mut out)?;
    super::write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
