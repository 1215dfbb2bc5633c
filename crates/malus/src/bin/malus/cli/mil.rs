//! `malus mil …`: check, format and run MIL programs from disk.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use malus_mil::lint::{Target, lint};
use malus_mil::{Diagnostic, Severity, Spelling, parse, print_with, validate};

#[derive(Subcommand)]
pub enum MilCommand {
    /// Parse, validate and lint MIL files; exit 1 when a file is not valid MIL.
    Check {
        files: Vec<PathBuf>,
        /// Chip family for the ANE lint.
        #[arg(long, value_enum, default_value_t = TargetArg::Strictest)]
        target: TargetArg,
        /// Also fail (exit 1) on ANE lint errors, not only on invalid MIL.
        #[arg(long)]
        strict: bool,
        /// Do not print lint warnings.
        #[arg(long)]
        quiet: bool,
    },
    /// Execute a program on the CPU executor and summarise (or save) its outputs.
    Run(RunArgs),
    /// Print the normalised program.
    Fmt {
        file: PathBuf,
        /// Spelling of scalars; default: the one the program's version uses.
        #[arg(long, value_enum)]
        spelling: Option<SpellingArg>,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    file: PathBuf,
    /// Directory with the program's weight files (`weights/NAME.bin` in BLOBFILE paths).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// `NAME=random`, `NAME=zeros` or `NAME=FILE.npy` (default: random for every input).
    #[arg(long = "input")]
    inputs: Vec<String>,
    #[arg(long, value_enum, default_value_t = NumericsArg::F32)]
    numerics: NumericsArg,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Function to run (default: main or the only one).
    #[arg(long)]
    function: Option<String>,
    /// Write every output as NAME.npy into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum NumericsArg {
    F32,
    Fp16,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TargetArg {
    #[value(name = "m1-m2")]
    M1M2,
    M3,
    #[value(name = "m4+")]
    M4Plus,
    Strictest,
}

impl From<TargetArg> for Target {
    fn from(t: TargetArg) -> Target {
        match t {
            TargetArg::M1M2 => Target::M1M2,
            TargetArg::M3 => Target::M3,
            TargetArg::M4Plus => Target::M4Plus,
            TargetArg::Strictest => Target::Strictest,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SpellingArg {
    /// `int32(1)` (program 1.3 and later)
    Bare,
    /// `tensor<int32, []>(1)` (program 1.0)
    Rank0,
}

pub fn run(cmd: MilCommand) -> Result<ExitCode> {
    match cmd {
        MilCommand::Check {
            files,
            target,
            strict,
            quiet,
        } => check(&files, target.into(), strict, quiet),
        MilCommand::Run(a) => run_program(a),
        MilCommand::Fmt { file, spelling } => {
            let text = read(&file)?;
            let p = parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", file.display()))?;
            let sp = match spelling {
                Some(SpellingArg::Bare) => Spelling::BareScalars,
                Some(SpellingArg::Rank0) => Spelling::Rank0Tensors,
                None => Spelling::for_version(&p.version),
            };
            print!("{}", print_with(&p, sp));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn check(files: &[PathBuf], target: Target, strict: bool, quiet: bool) -> Result<ExitCode> {
    if files.is_empty() {
        anyhow::bail!("no files given");
    }
    let mut failed = false;
    for file in files {
        let show = |d: &Diagnostic| println!("{}:{d}", file.display());
        let text = match read(file) {
            Ok(t) => t,
            Err(e) => {
                println!("{e:#}");
                failed = true;
                continue;
            }
        };
        let program = match parse(&text) {
            Ok(p) => p,
            Err(e) => {
                println!("{}:{}: error[syntax]: {}", file.display(), e.span, e.msg);
                failed = true;
                continue;
            }
        };
        let invalid = validate(&program);
        invalid.iter().for_each(show);
        failed |= !invalid.is_empty();
        let findings = lint(&program, target);
        let lint_errors = findings.iter().filter(|d| d.severity == Severity::Error).count();
        for d in &findings {
            if !quiet || d.severity == Severity::Error {
                show(d);
            }
        }
        failed |= strict && lint_errors > 0;
        println!(
            "{}: {} — {} validation error(s), {} ANE lint error(s), {} warning(s) for {}",
            file.display(),
            if invalid.is_empty() {
                "valid MIL"
            } else {
                "INVALID"
            },
            invalid.len(),
            lint_errors,
            findings.len() - lint_errors,
            target.name()
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn run_program(a: RunArgs) -> Result<ExitCode> {
    use crate::npy::{self, Array};
    let text = read(&a.file)?;
    let program = parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", a.file.display()))?;
    let weights = match &a.weights {
        Some(d) => malus_mil::Weights::load_dir(d)?,
        None => malus_mil::Weights::new(),
    };
    let numerics = match a.numerics {
        NumericsArg::F32 => malus_cpu::Numerics::F32,
        NumericsArg::Fp16 => malus_cpu::Numerics::Fp16,
    };
    let mut opts = malus_cpu::CompileOptions::default().numerics(numerics);
    opts.function = a.function.clone();
    let mut given: Vec<(String, Array)> = Vec::new();
    for spec in &a.inputs {
        let (name, src) = spec
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--input {spec:?}: expected NAME=random|zeros|FILE.npy"))?;
        if src != "random" && src != "zeros" {
            let arr = npy::read(Path::new(src))?;
            opts = opts.input_shape(name, &arr.shape);
            given.push((name.to_string(), arr));
        }
    }
    let mut kernel = malus_cpu::compile(&program, &weights, &opts)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let mut rng = malus::rng::Rng::new(a.seed);
    let infos = kernel.inputs().to_vec();
    for info in &infos {
        let choice = a
            .inputs
            .iter()
            .filter_map(|s| s.split_once('='))
            .find(|(n, _)| *n == info.name)
            .map(|(_, v)| v);
        let values: Vec<f32> = match (choice, given.iter().find(|(n, _)| *n == info.name)) {
            (_, Some((_, arr))) => arr.data.clone(),
            (Some("zeros"), _) => vec![0.0; info.len()],
            _ => rng.uniform_vec(info.len(), 1.0),
        };
        kernel.write_input_f32(&info.name, &values)?;
    }
    let t0 = std::time::Instant::now();
    kernel.run()?;
    let dt = t0.elapsed();
    println!(
        "{}: ran in {:.3} ms ({:?} numerics)",
        a.file.display(),
        dt.as_secs_f64() * 1e3,
        numerics
    );
    for info in kernel.outputs().to_vec() {
        let v = kernel.output_f32(&info.name)?;
        let finite: Vec<f64> = v.iter().filter(|x| x.is_finite()).map(|&x| x as f64).collect();
        let n = finite.len().max(1) as f64;
        let mean = finite.iter().sum::<f64>() / n;
        let std = (finite.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        let (lo, hi) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
        println!(
            "  {} {} {:?}: min {lo:.4} max {hi:.4} mean {mean:.4} std {std:.4}, {} non-finite",
            info.name,
            info.dtype,
            info.shape,
            v.len() - finite.len()
        );
        if let Some(dir) = &a.out {
            let path = dir.join(format!("{}.npy", info.name));
            npy::write(
                &path,
                &Array {
                    shape: info.shape.clone(),
                    data: v,
                },
            )?;
            println!("    wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
