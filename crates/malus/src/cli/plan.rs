//! `malus plan`: the kernel plan of a model and its accounting.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use malus_mil::DType;

use crate::kernels::plan::{DwPlacement, Plan};
use crate::kernels::report::Report;
use crate::model::Config;

#[derive(Clone, Copy, ValueEnum)]
pub enum DwArg {
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
    /// Where weight-gradient matmuls run.
    #[arg(long, value_enum, default_value_t = DwArg::Device)]
    dw: DwArg,
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
    let dw = match a.dw {
        DwArg::Device => DwPlacement::Device,
        DwArg::Host => DwPlacement::Host,
    };
    let plan = Plan::new(&c, DType::Fp16, dw)?;
    print!("{}", Report::new(&plan, &a.model));
    for (k, _) in plan.calls() {
        if a.warnings {
            for d in k.lint_warnings() {
                println!("{}: {d}", k.name);
            }
        }
        if a.mil {
            println!("// kernel {}\n{}", k.name, malus_mil::print(&k.program));
        }
    }
    Ok(ExitCode::SUCCESS)
}
