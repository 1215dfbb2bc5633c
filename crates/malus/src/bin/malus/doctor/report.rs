//! The JSON capability report a Mac user sends back. Its layout is named by [`SCHEMA`], so field
//! names and the strings [`Status`] and [`Verdict`] serialise to must not change without a bump.

use std::fmt;
use std::process::Command;

use malus_ane::Ane;
use serde::{Deserialize, Serialize};

/// Names the JSON layout of [`ProbeReport`]; bump when a field changes meaning.
pub const SCHEMA: &str = "malus-ane-capabilities/1";

/// How far a probe got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Ran on the ANE and matched the CPU reference within tolerance.
    Passed,
    /// Ran, but the outputs differ (or one is missing).
    Wrong,
    CompileFailed,
    /// Compiled, then writing, running or reading failed.
    RunFailed,
    /// The ANE ran it but the CPU reference failed: a malus bug, not a chip property.
    ReferenceFailed,
    /// No ANE, or no compile budget left.
    NotRun,
}

/// The last lint prediction held against the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    ErrorConfirmed,
    /// An error was predicted, yet the probe passed: the rule is too strict for this chip.
    ErrorTooStrict,
    WarningConfirmed,
    /// Nothing was predicted, yet the probe failed: a rule is missing.
    Missed,
    Ok,
}

impl Status {
    /// The report's spelling (the serde one; a test holds them equal).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Wrong => "wrong",
            Status::CompileFailed => "compile-failed",
            Status::RunFailed => "run-failed",
            Status::ReferenceFailed => "reference-failed",
            Status::NotRun => "not-run",
        }
    }
}

impl Verdict {
    /// The report's spelling (the serde one; a test holds them equal).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::ErrorConfirmed => "error-confirmed",
            Verdict::ErrorTooStrict => "error-too-strict",
            Verdict::WarningConfirmed => "warning-confirmed",
            Verdict::Missed => "missed",
            Verdict::Ok => "ok",
        }
    }
}

/// Pads like a string, so the doctor's table can align a status.
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What one target of the lint predicted for a probe (rule codes, deduplicated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LintPrediction {
    /// `strictest`, or the detected chip's target (`m1-m2`, `m3`, `m4+`).
    pub target: String,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// What happened to one probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub name: String,
    pub restriction: String,
    pub status: Status,
    pub compiled: bool,
    pub ran: bool,
    /// Over elements finite on both sides.
    pub max_abs_err: Option<f32>,
    /// Elements where the two sides disagree on NaN/±inf: overflow and the pre-A16 width-slice
    /// clamp to inf show up here, not in `max_abs_err`.
    pub nonfinite_mismatches: Option<usize>,
    pub tolerance: f32,
    pub passed: Option<bool>,
    pub error: Option<String>,
    /// Set when the CPU reference itself failed (a malus bug, not a chip property).
    pub reference_error: Option<String>,
    /// `strictest` first, then the detected chip's target when its family is known.
    pub lint: Vec<LintPrediction>,
    /// The last prediction against the outcome; `None` when nothing was compiled.
    pub lint_verdict: Option<Verdict>,
}

/// The machine as far as doctor can tell without the ANE.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OsInfo {
    /// `std::env::consts::OS`.
    pub os: String,
    pub arch: String,
    /// `sw_vers -productVersion` (macOS only).
    pub product_version: Option<String>,
    /// `sysctl -n machdep.cpu.brand_string` (macOS only), e.g. "Apple M4 Max".
    pub cpu_brand: Option<String>,
}

impl OsInfo {
    /// Runs `sw_vers` and `sysctl` on macOS; a missing command leaves its field empty.
    pub fn detect() -> OsInfo {
        let mac = std::env::consts::OS == "macos";
        let run = |prog: &str, args: &[&str]| -> Option<String> {
            let out = Command::new(prog).args(args).output().ok()?;
            let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !s.is_empty()).then_some(s)
        };
        OsInfo {
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            product_version: mac.then(|| run("sw_vers", &["-productVersion"])).flatten(),
            cpu_brand: mac
                .then(|| run("sysctl", &["-n", "machdep.cpu.brand_string"]))
                .flatten(),
        }
    }
}

/// The JSON capability report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// [`SCHEMA`].
    pub schema: String,
    pub malus_version: String,
    pub os: OsInfo,
    /// Chip family guessed from the ANE sub-type (`M1`…`M5`, `unknown`); `None` without an ANE.
    pub chip: Option<String>,
    /// `_ANEDeviceInfo aneSubType`, e.g. `H16G`.
    pub ane_subtype: Option<String>,
    pub ane_available: bool,
    /// Why the ANE did not open.
    pub ane_error: Option<String>,
    /// Binding order and surface policy the probes ran with (they decide rows 15–17).
    pub ane_config: Option<String>,
    /// Compiles left in this process after the probes (Apple's limit is ~119).
    pub compiles_left: Option<usize>,
    /// `false` while probes are running: a report left that way names the probe that was
    /// running when the process died in `in_progress`.
    pub complete: bool,
    pub in_progress: Option<String>,
    pub probes: Vec<ProbeResult>,
}

impl ProbeReport {
    /// A report with no probe results yet.
    pub fn new(os: OsInfo, ane: Result<&Ane, &str>) -> ProbeReport {
        let info = ane.ok().map(Ane::device_info);
        ProbeReport {
            schema: SCHEMA.into(),
            malus_version: env!("CARGO_PKG_VERSION").into(),
            os,
            chip: info.as_ref().map(|i| i.chip_family.to_string()),
            ane_subtype: info.and_then(|i| i.subtype),
            ane_available: ane.is_ok(),
            ane_error: ane.err().map(str::to_string),
            ane_config: ane.ok().map(|a| {
                let c = a.config();
                format!("binding {:?}, surfaces {:?}", c.binding_order, c.surface_policy)
            }),
            compiles_left: ane.ok().map(Ane::compiles_left),
            complete: true,
            in_progress: None,
            probes: Vec::new(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Users send these strings back: they are the schema, whatever the enums are called.
    #[test]
    fn statuses_and_verdicts_keep_their_report_strings() {
        use Status::*;
        let statuses = [Passed, Wrong, CompileFailed, RunFailed, ReferenceFailed, NotRun];
        let names = [
            "passed",
            "wrong",
            "compile-failed",
            "run-failed",
            "reference-failed",
            "not-run",
        ];
        for (s, n) in statuses.into_iter().zip(names) {
            assert_eq!(serde_json::to_value(s).unwrap(), n);
            assert_eq!((s.as_str(), s.to_string()), (n, n.to_string()));
            assert_eq!(serde_json::from_value::<Status>(n.into()).unwrap(), s);
        }
        assert_eq!(
            format!("{:<9}|", Status::Wrong),
            "wrong    |",
            "pads in the table"
        );
        let verdicts = [
            Verdict::ErrorConfirmed,
            Verdict::ErrorTooStrict,
            Verdict::WarningConfirmed,
            Verdict::Missed,
            Verdict::Ok,
        ];
        let names = [
            "error-confirmed",
            "error-too-strict",
            "warning-confirmed",
            "missed",
            "ok",
        ];
        for (v, n) in verdicts.into_iter().zip(names) {
            assert_eq!(serde_json::to_value(v).unwrap(), n);
            assert_eq!(v.as_str(), n);
            assert_eq!(serde_json::from_value::<Verdict>(n.into()).unwrap(), v);
        }
    }
}
