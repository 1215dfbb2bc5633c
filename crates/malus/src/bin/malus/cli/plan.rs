//! `malus plan`: the kernel plan of a model and its accounting.

use std::fmt::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use malus::plan::cost::{Chip, Prediction, auto_plan};
use malus::plan::memory::MemoryEstimate;
use malus::plan::report::PlanReport;
use malus::{Config, Dw, OptimizerKind, Plan};
use malus_mil::DType;

#[derive(Args)]
pub struct PlanArgs {
    /// Model preset: tiny, stories15m, stories42m, stories110m, qwen3-0.6b.
    #[arg(long, default_value = "stories110m")]
    model: String,
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
    let mut c = Config::preset(&a.model)?;
    if let Some(s) = a.seq {
        c.seq = s;
    }
    if let Some(v) = a.vocab {
        c.vocab = v;
    }
    let chip = a.chip.as_deref().map(Chip::by_key).transpose()?;
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
    let r = PlanReport::new(&plan, &a.model);
    write!(out, "{r}")?;
    let mem = MemoryEstimate::training(&c, &plan.shape, 4, OptimizerKind::AdamW, plan.dw);
    writeln!(
        out,
        "memory to train with AdamW on the CPU executor (f32 kernels), at least: {mem}"
    )?;
    if let (Some(chip), Dw::Device | Dw::Host) = (chip, a.dw) {
        writeln!(out, "{}", Prediction::new(chip, &r, c.seq))?;
    }
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
    super::write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
