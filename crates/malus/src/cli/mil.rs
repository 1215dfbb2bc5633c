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
    /// Print the normalised program.
    Fmt {
        file: PathBuf,
        /// Spelling of scalars; default: the one the program's version uses.
        #[arg(long, value_enum)]
        spelling: Option<SpellingArg>,
    },
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
