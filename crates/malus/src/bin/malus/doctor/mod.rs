//! `malus doctor`: what this machine offers malus — OS, whether the Neural Engine opens and which
//! chip it is, the compile budget, a CPU-executor self-test — and with `--probe` the Neural Engine
//! capability probe, written as a JSON report a Mac user can send back.
//!
//! The probe, one job a file: [`probes`] defines one tiny program per restriction (written with
//! [`build`]), [`run`] runs one on the CPU and the ANE and compares them, [`lint`] holds the lint's
//! predictions against the outcome, and [`report`] is the JSON the results go into. The file
//! names no `crate::` path, so `tests/doctor.rs` can compile it as a module of its own.

mod build;
pub mod lint;
pub mod probes;
pub mod report;
pub mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use malus_ane::{Ane, REPORTED_COMPILE_LIMIT};
use malus_cpu::Numerics;

use malus::fsutil::write_atomic;

use probes::Probe;
use report::{OsInfo, ProbeReport, ProbeResult, Verdict};

/// The probe the CPU self-test runs: training's RMSNorm (conv, reduce, pow, broadcast).
const SELF_TEST: &str = "pow-after-reduce";

#[derive(Args)]
pub struct DoctorArgs {
    /// Compile and run one tiny program per known ANE restriction, compare each with the CPU
    /// executor in fp16 numerics, and write a JSON capability report.
    #[arg(long)]
    probe: bool,
    /// Where the report goes (written with --probe, or whenever this is given).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only these probes (comma-separated names; see --list).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip these probes, e.g. one that crashed the process last time (the report names it).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// List the probes and the restriction each tests, then exit.
    #[arg(long)]
    list: bool,
}

const DEFAULT_OUT: &str = "ane-capabilities.json";

pub fn run(a: DoctorArgs) -> Result<ExitCode> {
    if a.list {
        for p in probes::probes() {
            println!("{:<24} {}", p.name, p.restriction);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let selected = select(&a.only, &a.skip)?;
    println!("malus {} doctor", env!("CARGO_PKG_VERSION"));
    let os = OsInfo::detect();
    print_os(&os);
    let ane = Ane::open().map_err(|e| e.to_string());
    print_ane(&ane, &os);
    let cpu_ok = print_cpu_self_test();

    let out = match (&a.out, a.probe) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => Some(PathBuf::from(DEFAULT_OUT)),
        (None, false) => None,
    };
    let mut report = ProbeReport::new(os, ane.as_ref().map_err(String::as_str));
    if a.probe {
        report.probes = run_recorded(&selected, ane.as_ref().ok(), &mut report.clone(), out.as_deref())?;
        report.compiles_left = ane.as_ref().ok().map(Ane::compiles_left);
        print_table(&report, ane.is_ok());
    }
    if let Some(path) = &out {
        write_atomic(path, report.to_json().as_bytes())?;
        println!("report written to {}", path.display());
    }
    if !cpu_ok {
        eprintln!("error: the CPU executor self-test failed; training cannot run on this build");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The probes to run, in set order; unknown names are an error (a typo must not run nothing).
fn select(only: &[String], skip: &[String]) -> Result<Vec<Probe>> {
    let names = probes::probe_names();
    for n in only.iter().chain(skip) {
        if !names.contains(&n.as_str()) {
            bail!("no probe named `{n}`; known: {}", names.join(", "));
        }
    }
    Ok(probes::probes()
        .into_iter()
        .filter(|p| only.is_empty() || only.iter().any(|n| n == p.name))
        .filter(|p| !skip.iter().any(|n| n == p.name))
        .collect())
}

fn print_os(os: &OsInfo) {
    let mut line = format!("{} {}", os.os, os.arch);
    if let Some(v) = &os.product_version {
        line += &format!(", macOS {v}");
    }
    if let Some(c) = &os.cpu_brand {
        line += &format!(", {c}");
    }
    println!("  os      {line}");
}

/// Why the ANE cannot be used here, in terms of the machine rather than the loader.
fn why_unavailable(os: &OsInfo) -> String {
    match (os.os.as_str(), os.arch.as_str()) {
        ("macos", "aarch64") => {
            "AppleNeuralEngine.framework did not load or lacks a class or selector malus \
                                 needs (a macOS change, or a sandbox hiding private frameworks)"
                .into()
        }
        ("macos", arch) => format!("this Mac is {arch}; only Apple-silicon Macs have a Neural Engine"),
        (name, _) => format!(
            "the Neural Engine is reached through Apple's private AppleNeuralEngine.framework, which \
             exists only on macOS on Apple silicon; this is {name}"
        ),
    }
}

fn print_ane(ane: &Result<Ane, String>, os: &OsInfo) {
    match ane {
        Ok(a) => {
            let info = a.device_info();
            let sub = info.subtype.as_deref().unwrap_or("no _ANEDeviceInfo subtype");
            println!(
                "  ane     available: subtype {sub}, chip family {}",
                info.chip_family
            );
            println!(
                "  budget  {} of {} compiles left in this process (Apple's reported limit: ~{})",
                a.compiles_left(),
                a.config().compile_budget,
                REPORTED_COMPILE_LIMIT
            );
        }
        Err(e) => {
            println!("  ane     unavailable: {e}");
            println!("          Why: {}.", why_unavailable(os));
            println!("          Training runs on the CPU executor instead: `malus train --device cpu`.");
        }
    }
}

/// Runs one probe on the CPU in f32 and fp16 numerics; returns whether both ran and agree.
fn print_cpu_self_test() -> bool {
    let p = probes::probe(SELF_TEST).expect("the self-test probe exists");
    let f32s = run::reference(&p, Numerics::F32);
    let fp16 = run::reference(&p, Numerics::Fp16);
    let verdict = match (&f32s, &fp16) {
        (Err(e), _) => Err(format!("f32 numerics: {e}")),
        (_, Err(e)) => Err(format!("fp16 numerics: {e}")),
        (Ok(a), Ok(b)) => match run::compare(a, b) {
            Ok(diff) if run::agrees(&p, diff) => Ok(diff.0),
            Ok((max, n)) => Err(format!(
                "f32 and fp16 differ by {max:.2e} ({n} non-finite mismatches)"
            )),
            Err(e) => Err(e),
        },
    };
    match verdict {
        Ok(max) => {
            println!("  cpu     executor ok: probe {SELF_TEST} in f32 and fp16 numerics agree to {max:.1e}");
            true
        }
        Err(e) => {
            println!("  cpu     executor FAILED on probe {SELF_TEST}: {e}");
            false
        }
    }
}

/// Runs the probes, rewriting the report before each one so a crash leaves a usable file.
fn run_recorded(
    probes: &[Probe],
    ane: Option<&Ane>,
    partial: &mut ProbeReport,
    out: Option<&Path>,
) -> Result<Vec<ProbeResult>> {
    match ane {
        Some(_) => println!(
            "probes  {} on the ANE, each compared with the CPU in fp16 numerics",
            probes.len()
        ),
        None => println!(
            "probes  {}: CPU reference only (fp16 numerics); not run on the ANE: unavailable",
            probes.len()
        ),
    }
    if let Some(path) = out {
        // Fail before probing, not after, when the report cannot be written.
        partial.complete = false;
        write_atomic(path, partial.to_json().as_bytes())?;
    }
    let mut write_err = None;
    let total = probes.len();
    let results = run::run_probes(probes, ane, |p, done| {
        if ane.is_some() {
            eprintln!("  [{}/{total}] {}", done.len() + 1, p.name);
        }
        if let (Some(path), None) = (out, &write_err) {
            partial.in_progress = Some(p.name.to_string());
            partial.probes = done.to_vec();
            write_err = write_atomic(path, partial.to_json().as_bytes()).err();
        }
    });
    match write_err {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

fn short(codes: &[String]) -> String {
    let v: Vec<&str> = codes.iter().map(|c| c.trim_start_matches("ane-")).collect();
    if v.is_empty() { "-".into() } else { v.join(",") }
}

fn print_table(report: &ProbeReport, ane: bool) {
    println!(
        "  {:<24} {:<16} {:>9} {:>8}  {:<36} {}",
        "probe",
        "status",
        "max|err|",
        "tol",
        "lint: error codes +warnings",
        if ane { "lint verdict" } else { "cpu reference" }
    );
    for r in &report.probes {
        let err = r.max_abs_err.map_or("-".into(), |e| format!("{e:.2e}"));
        let lint = r.lint.last().map_or("-".into(), |l| {
            format!("{}: {} +{}w", l.target, short(&l.errors), l.warnings.len())
        });
        let last = if ane {
            r.lint_verdict.map_or("-", Verdict::as_str)
        } else if r.reference_error.is_some() {
            "FAILED"
        } else {
            "ok"
        };
        println!(
            "  {:<24} {:<16} {:>9} {:>8.1e}  {:<36} {last}",
            r.name, r.status, err, r.tolerance, lint
        );
        for e in r.reference_error.iter().chain(r.error.iter().filter(|_| ane)) {
            println!("  {:<24} {e}", "");
        }
    }
    let passed = report.probes.iter().filter(|r| r.passed == Some(true)).count();
    if ane {
        println!("  {passed} of {} probes passed", report.probes.len());
    }
    println!("  (the report has each probe's restriction, sources and lint warning codes)");
}
