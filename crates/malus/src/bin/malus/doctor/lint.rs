//! What the ANE lint predicts for a probe, and the verdict on that prediction once the probe ran:
//! a Mac run says which lint rules are right for its chip.

use malus_ane::ChipFamily;
use malus_mil::lint::{Target, lint};
use malus_mil::{Diagnostic, Severity};

use super::probes::Probe;
use super::report::{LintPrediction, Verdict};

/// The lint target matching a chip family (`None` when unknown).
pub fn lint_target(family: ChipFamily) -> Option<Target> {
    match family {
        ChipFamily::M1 | ChipFamily::M2 => Some(Target::M1M2),
        ChipFamily::M3 => Some(Target::M3),
        ChipFamily::M4 | ChipFamily::M5 => Some(Target::M4Plus),
        ChipFamily::Unknown => None,
    }
}

/// The strictest target's prediction, then the chip's when it is known.
pub fn predictions(p: &Probe, chip: Option<Target>) -> Vec<LintPrediction> {
    let mut lints = vec![predict(p, Target::Strictest)];
    lints.extend(chip.map(|t| predict(p, t)));
    lints
}

fn predict(p: &Probe, target: Target) -> LintPrediction {
    let diags = lint(&p.program, target);
    LintPrediction {
        target: target.name().into(),
        errors: codes(&diags, Severity::Error),
        warnings: codes(&diags, Severity::Warning),
    }
}

/// Sorted and deduplicated, so the report lists each rule once.
fn codes(diags: &[Diagnostic], sev: Severity) -> Vec<String> {
    let mut v: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == sev)
        .map(|d| d.code.to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// A prediction against whether the probe failed on the ANE.
pub fn verdict(l: &LintPrediction, failed: bool) -> Verdict {
    match (!l.errors.is_empty(), !l.warnings.is_empty(), failed) {
        (true, _, true) => Verdict::ErrorConfirmed,
        (true, _, false) => Verdict::ErrorTooStrict,
        (false, true, true) => Verdict::WarningConfirmed,
        (false, false, true) => Verdict::Missed,
        (false, _, false) => Verdict::Ok,
    }
}
