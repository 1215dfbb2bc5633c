//! `malus plan`: the kernel plan of a model and its accounting.

use std::fmt::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use malus_mil::DType;

use crate::kernels::cost::{Chip, Prediction, choose_dw};
use crate::kernels::plan::{DwPlacement, Plan};
use crate::kernels::report::Report;
use crate::model::Config;

#[derive(Clone, Copy, ValueEnum)]
pub enum DwArg {
    Auto,
    Device,
    Host,
}

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
    #[arg(long, value_enum, default_value_t = DwArg::Auto)]
    dw: DwArg,
    /// Predict the step time on a chip with the cost model of ane-perf-data.md §7: m1, m2,
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
    let build = |dw| -> Result<(Plan, Report)> {
        let plan = Plan::new(&c, DType::Fp16, dw)?;
        let r = Report::new(&plan, &a.model);
        Ok((plan, r))
    };
    let mut out = String::new();
    let (plan, r) = match (a.dw, chip) {
        (DwArg::Device, _) | (DwArg::Auto, None) => build(DwPlacement::Device)?,
        (DwArg::Host, _) => build(DwPlacement::Host)?,
        (DwArg::Auto, Some(chip)) => {
            let (d, h) = (build(DwPlacement::Device)?, build(DwPlacement::Host)?);
            for (_, r) in [&d, &h] {
                let p = Prediction::new(chip, r, c.seq);
                writeln!(out, "dW on the {}: {p}", r.dw.name())?;
            }
            let pick = choose_dw(chip, &d.1, &h.1, c.seq);
            writeln!(out, "--dw auto on {}: dW on the {}\n", chip.name, pick.name())?;
            if pick == DwPlacement::Host { h } else { d }
        }
    };
    write!(out, "{r}")?;
    if let (Some(chip), DwArg::Device | DwArg::Host) = (chip, a.dw) {
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
