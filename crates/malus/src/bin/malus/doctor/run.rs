//! Running one probe: the fp16 CPU reference, then the ANE, the comparison of the two, and what
//! the lint had predicted.
//!
//! Specs come from [`malus::device::ane_spec`], the conversion training uses, so the probes test
//! the MIL text and weight files the trainer sends. The ANE side takes an [`Ane`], which tests
//! open over `malus_ane`'s fake backend. Both executors convert input values to the tensor's
//! dtype themselves (fp16 rounds to nearest even), so both get the same bytes.

use std::fmt::Display;

use malus_ane::{Ane, KernelSpec};
use malus_cpu::{CompileOptions, CpuKernel, Numerics};
use malus_mil::lint::Target;

use malus::device::ane_spec;

use super::lint::{lint_target, predictions, verdict};
use super::probes::Probe;
use super::report::{ProbeResult, Status};

/// Named output values.
pub type Outputs = Vec<(String, Vec<f32>)>;

/// Errors travel as the report's strings.
fn msg(e: impl Display) -> String {
    e.to_string()
}

/// The spec the ANE gets, through the trainer's conversion.
pub fn kernel_spec(p: &Probe) -> anyhow::Result<KernelSpec> {
    ane_spec(p.name, &p.program, &p.weights)
}

/// The probe compiled for the CPU executor.
fn cpu_kernel(p: &Probe, numerics: Numerics) -> Result<CpuKernel, String> {
    let opts = CompileOptions::default().numerics(numerics);
    malus_cpu::compile(&p.program, &p.weights, &opts).map_err(msg)
}

/// Runs a probe on the CPU executor.
pub fn reference(p: &Probe, numerics: Numerics) -> Result<Outputs, String> {
    let mut k = cpu_kernel(p, numerics)?;
    for (name, vals) in &p.inputs {
        k.write_input_f32(name, vals).map_err(msg)?;
    }
    k.run().map_err(msg)?;
    k.outputs()
        .iter()
        .map(|t| Ok((t.name.clone(), k.output_f32(&t.name).map_err(msg)?)))
        .collect()
}

/// Largest finite absolute difference and the count of NaN/inf disagreements, matching outputs
/// by name.
pub fn compare(reference: &Outputs, got: &Outputs) -> Result<(f32, usize), String> {
    let (mut max, mut nonfinite) = (0f32, 0usize);
    for (name, want) in reference {
        let Some((_, have)) = got.iter().find(|(n, _)| n == name) else {
            return Err(format!("output `{name}` missing"));
        };
        if have.len() != want.len() {
            return Err(format!(
                "output `{name}`: {} values, expected {}",
                have.len(),
                want.len()
            ));
        }
        for (&w, &h) in want.iter().zip(have) {
            let d = (w - h).abs();
            if w.is_finite() && h.is_finite() && d.is_finite() {
                max = max.max(d);
            } else if !(w == h || (w.is_nan() && h.is_nan())) {
                nonfinite += 1;
            }
        }
    }
    Ok((max, nonfinite))
}

/// Whether a [`compare`] result counts as correct for `p`: no NaN/inf disagreement, and within
/// its tolerance.
pub fn agrees(p: &Probe, (max, nonfinite): (f32, usize)) -> bool {
    nonfinite == 0 && max <= p.tolerance
}

/// Compiles, writes, runs and reads a probe on the ANE, recording how far it got in `r`.
fn on_ane(p: &Probe, ane: &Ane, r: &mut ProbeResult) -> Result<Outputs, String> {
    let spec = kernel_spec(p).map_err(|e| format!("spec: {e:#}"))?;
    let mut k = ane.compile(&spec).map_err(msg)?;
    r.compiled = true;
    for (name, vals) in &p.inputs {
        k.write_input_f32(name.as_str(), vals).map_err(msg)?;
    }
    k.run().map_err(msg)?;
    r.ran = true;
    let mut outs = Vec::new();
    for t in &spec.outputs {
        let mut vals = vec![0f32; t.elements().unwrap_or(0)];
        k.read_output_f32(t.name.as_str(), &mut vals).map_err(msg)?;
        outs.push((t.name.clone(), vals));
    }
    if let Err(e) = k.close() {
        r.error = Some(format!("unload after reading outputs: {e}"));
    }
    Ok(outs)
}

/// Runs one probe: the fp16 CPU reference, then the ANE when `ane` is given and the compile
/// budget allows. `chip` adds the chip family's lint prediction.
pub fn run_probe(p: &Probe, ane: Option<&Ane>, chip: Option<Target>) -> ProbeResult {
    let mut r = ProbeResult {
        name: p.name.into(),
        restriction: p.restriction.into(),
        status: Status::NotRun,
        compiled: false,
        ran: false,
        max_abs_err: None,
        nonfinite_mismatches: None,
        tolerance: p.tolerance,
        passed: None,
        error: None,
        reference_error: None,
        lint: predictions(p, chip),
        lint_verdict: None,
    };
    let reference = reference(p, Numerics::Fp16);
    r.reference_error = reference.as_ref().err().cloned();
    let Some(ane) = ane else {
        r.error = Some("not run: ANE unavailable".into());
        return r;
    };
    if ane.compiles_left() == 0 {
        // Not an outcome of the chip: the next process gets a fresh budget.
        r.error = Some(format!(
            "not run: compile budget spent ({} used in this process); rerun with --only",
            ane.compiles_used()
        ));
        return r;
    }
    let got = on_ane(p, ane, &mut r);
    let failed = match (&reference, got) {
        (_, Err(e)) => {
            r.status = if r.compiled {
                Status::RunFailed
            } else {
                Status::CompileFailed
            };
            r.error = Some(e);
            true
        }
        (Err(_), Ok(_)) => {
            r.status = Status::ReferenceFailed;
            false
        }
        (Ok(want), Ok(have)) => match compare(want, &have) {
            Ok((max, nonfinite)) => {
                let ok = agrees(p, (max, nonfinite));
                r.max_abs_err = Some(max);
                r.nonfinite_mismatches = Some(nonfinite);
                r.passed = Some(ok);
                r.status = if ok { Status::Passed } else { Status::Wrong };
                !ok
            }
            Err(e) => {
                r.status = Status::Wrong;
                r.passed = Some(false);
                r.error = Some(e);
                true
            }
        },
    };
    if r.status != Status::ReferenceFailed {
        let l = r.lint.last().expect("strictest is always there");
        r.lint_verdict = Some(verdict(l, failed));
    }
    r
}

/// Runs the probes in order; `before_each` sees each probe and the results so far (doctor
/// writes the partial report there, so a crash leaves a trace of the probe that caused it).
pub fn run_probes(
    probes: &[Probe],
    ane: Option<&Ane>,
    mut before_each: impl FnMut(&Probe, &[ProbeResult]),
) -> Vec<ProbeResult> {
    let chip = ane.and_then(|a| lint_target(a.device_info().chip_family));
    let mut done = Vec::with_capacity(probes.len());
    for p in probes {
        before_each(p, &done);
        done.push(run_probe(p, ane, chip));
    }
    done
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use malus_ane::fake::{EvalFn, FakeBackend, FakeConfig};
    use malus_ane::protocol::Selector;
    use malus_ane::{AneConfig, CompileCounter};

    use super::super::probes::{probe, probe_names, probes};
    use super::super::report::Verdict;
    use super::*;

    fn fake_ane(cfg: FakeConfig, budget: usize) -> (Arc<FakeBackend>, Ane) {
        let fake = FakeBackend::with_config(FakeConfig {
            ane_subtype: Some("H16G".into()),
            ..cfg
        });
        let ane = Ane::open_with(fake.clone()).unwrap().with_config(AneConfig {
            compile_budget: budget,
            counter: CompileCounter::new(),
            load_retry_delay: None,
            ..AneConfig::default()
        });
        (fake, ane)
    }

    /// An evaluate that runs the CPU executor on the surfaces it is given, taking them to be the
    /// inputs in name order (as the ANE is reported to bind) or in declaration order, and
    /// returning the outputs in name order.
    fn cpu_eval(p: &Probe, by_name: bool) -> EvalFn {
        let p = p.clone();
        let spec = kernel_spec(&p).unwrap();
        Arc::new(move |surfaces: &[Vec<u8>]| {
            let mut ins = spec.inputs.clone();
            if by_name {
                ins.sort_by(|a, b| a.name.cmp(&b.name));
            }
            let mut k = cpu_kernel(&p, Numerics::Fp16).unwrap();
            for (t, s) in ins.iter().zip(surfaces) {
                k.write_input_bytes(&t.name, &s[..t.bytes().unwrap()]).unwrap();
            }
            k.run().unwrap();
            let mut names: Vec<String> = k.outputs().iter().map(|t| t.name.clone()).collect();
            names.sort();
            names
                .iter()
                .map(|n| k.read_output_bytes(n).unwrap().to_vec())
                .collect()
        })
    }

    #[test]
    fn probe_set_builds_validates_and_runs_on_the_cpu() {
        let all = probes();
        assert!((12..=40).contains(&all.len()));
        assert!(
            all.len() * 3 < malus_ane::DEFAULT_COMPILE_BUDGET,
            "probes must leave most of the budget"
        );
        let mut names = probe_names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "probe names are unique");
        for p in &all {
            let diags = malus_mil::validate(&p.program);
            assert!(diags.is_empty(), "{}: {diags:?}", p.name);
            let spec = kernel_spec(p).unwrap();
            assert_eq!(spec.inputs.len(), p.inputs.len(), "{}", p.name);
            let outs = reference(p, Numerics::Fp16).unwrap_or_else(|e| panic!("{}: {e}", p.name));
            for (n, v) in &outs {
                assert!(!v.is_empty() && v.iter().all(|x| x.is_finite()), "{} {n}", p.name);
            }
        }
    }

    #[test]
    fn a_correct_fake_ane_passes_even_with_inputs_out_of_order() {
        for name in ["inputs-3-mixed", "outputs-2", "cast-fp32-input"] {
            let p = probe(name).unwrap();
            let (fake, ane) = fake_ane(
                FakeConfig {
                    on_evaluate: Some(cpu_eval(&p, true)),
                    ..FakeConfig::default()
                },
                10,
            );
            let r = run_probe(&p, Some(&ane), Some(Target::M4Plus));
            assert_eq!(r.status, Status::Passed, "{name}: {r:?}");
            assert_eq!((r.max_abs_err, r.nonfinite_mismatches), (Some(0.0), Some(0)));
            assert_eq!(r.lint.len(), 2);
            assert_eq!(r.lint[1].target, "m4+");
            assert!(r.error.is_none(), "{:?}", r.error);
            assert!(fake.violations().is_empty(), "{:?}", fake.violations());
            assert_eq!(ane.compiles_used(), 1);
        }
    }

    #[test]
    fn an_ane_binding_in_declaration_order_is_caught() {
        let p = probe("inputs-2-reversed").unwrap();
        let cfg = FakeConfig {
            on_evaluate: Some(cpu_eval(&p, false)),
            ..FakeConfig::default()
        };
        let (_fake, ane) = fake_ane(cfg, 10);
        let r = run_probe(&p, Some(&ane), None);
        assert_eq!(r.status, Status::Wrong, "{r:?}");
        assert!(r.max_abs_err.unwrap() > 0.5);
        assert_eq!(r.lint_verdict, Some(Verdict::WarningConfirmed));
    }

    #[test]
    fn failures_on_the_fake_are_reported_per_stage() {
        let p = probe("rsqrt-after-reduce").unwrap();
        let (fake, ane) = fake_ane(FakeConfig::default(), 10);
        fake.fail(Selector::CompileWithQos, 1, Some("ANECCompile() FAILED"));
        let r = run_probe(&p, Some(&ane), Some(Target::M4Plus));
        assert_eq!(r.status, Status::CompileFailed);
        assert!(!r.compiled && !r.ran);
        assert!(
            r.error.as_deref().unwrap().contains("ANECCompile() FAILED"),
            "{r:?}"
        );
        assert_eq!(r.lint_verdict, Some(Verdict::ErrorConfirmed));

        // Evaluate does nothing: the outputs hold the fake's fill pattern, not the answer.
        let r = run_probe(&p, Some(&ane), Some(Target::M4Plus));
        assert!(r.compiled && r.ran, "{r:?}");
        assert_eq!((r.status, r.passed), (Status::Wrong, Some(false)));
        assert!(r.max_abs_err.unwrap() > p.tolerance);

        fake.fail(Selector::EvaluateWithQos, 1, Some("status 0x1d"));
        let r = run_probe(&probe("width-64").unwrap(), Some(&ane), None);
        assert_eq!(r.status, Status::RunFailed);
        assert!(r.compiled && !r.ran);
        assert!(r.error.as_deref().unwrap().contains("0x1d"));
        assert_eq!(r.lint_verdict, Some(Verdict::WarningConfirmed));
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }
}
