//! `malus doctor` as a user runs it, and the probe library's public API (report, budget, lint
//! predictions) against `malus_ane`'s fake backend.

mod common;

use common::malus;

// The probe is the command's code (it lives beside `main.rs`); compile it in here too.
#[allow(dead_code)]
#[path = "../src/bin/malus/doctor/mod.rs"]
mod doctor;

use doctor::probes::{self, Probe};
use doctor::report::{OsInfo, ProbeReport, SCHEMA, Status};
use doctor::run::{compare, reference, run_probe, run_probes};
use malus_ane::fake::{FakeBackend, FakeConfig};
use malus_ane::{Ane, AneConfig, CompileCounter};
use malus_cpu::Numerics;
use malus_mil::lint::Target;

fn on_a_mac_with_an_ane() -> bool {
    malus_ane::availability().is_ok()
}

#[test]
fn doctor_explains_why_the_ane_is_unavailable() {
    if on_a_mac_with_an_ane() {
        return;
    }
    let (code, out) = malus(&["doctor"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(std::env::consts::OS), "{out}");
    assert!(
        out.contains("ane     unavailable: Apple Neural Engine unavailable:"),
        "{out}"
    );
    // The loader's reason (the first library that failed) and the machine-level reason.
    assert!(
        out.contains("libobjc") || out.contains("AppleNeuralEngine"),
        "{out}"
    );
    assert!(
        out.contains("only on macOS on Apple silicon") || out.contains("Apple-silicon"),
        "{out}"
    );
    assert!(out.contains("malus train --device cpu"), "{out}");
    assert!(out.contains("cpu     executor ok"), "{out}");
}

#[test]
fn doctor_probe_writes_a_report_listing_every_probe() {
    let dir = std::env::temp_dir().join(format!("malus-doctor-{}", std::process::id()));
    let path = dir.join("caps.json");
    let (code, out) = malus(&["doctor", "--probe", "--out", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let json = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["schema"], SCHEMA);
    assert_eq!(v["complete"], true);
    assert_eq!(v["os"]["os"], std::env::consts::OS);
    let listed: Vec<&str> = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, probes::probe_names());
    for p in v["probes"].as_array().unwrap() {
        assert!(p["reference_error"].is_null(), "{p}");
        assert!(p["lint"][0]["target"] == "strictest", "{p}");
        assert!(out.contains(p["name"].as_str().unwrap()), "table lacks {p}");
    }
    let report: ProbeReport = serde_json::from_str(&json).unwrap();
    if !report.ane_available {
        assert!(report.ane_error.is_some() && report.chip.is_none());
        for p in &report.probes {
            assert_eq!((p.status, p.compiled, p.ran), (Status::NotRun, false, false));
            assert_eq!(p.error.as_deref(), Some("not run: ANE unavailable"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn doctor_selects_probes_and_refuses_unknown_names() {
    let dir = std::env::temp_dir().join(format!("malus-doctor-sel-{}", std::process::id()));
    let path = dir.join("caps.json");
    let p = path.to_str().unwrap();
    let (code, out) = malus(&["doctor", "--probe", "--only", "gelu,width-16", "--out", p]);
    assert_eq!(code, 0, "{out}");
    let report: ProbeReport = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let names: Vec<&str> = report.probes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["width-16", "gelu"], "set order, not argument order");

    let (code, out) = malus(&["doctor", "--probe", "--skip", "no-such-probe", "--out", p]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no probe named `no-such-probe`"), "{out}");

    let (code, out) = malus(&["doctor", "--list"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), probes::probe_names().len(), "{out}");
    assert!(out.contains("row 10"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_an_ane_only_the_reference_runs() {
    let r = run_probe(&probes::probe("width-64").unwrap(), None, None);
    assert_eq!(r.status, Status::NotRun);
    assert!(!r.compiled && !r.ran && r.passed.is_none() && r.lint_verdict.is_none());
    assert_eq!(r.error.as_deref(), Some("not run: ANE unavailable"));
    assert!(r.reference_error.is_none());
}

#[test]
fn fp16_and_f32_numerics_agree_within_tolerance() {
    for name in ["width-64", "pow-after-reduce", "conv1x1-const", "softmax-width"] {
        let p = probes::probe(name).unwrap();
        let a = reference(&p, Numerics::Fp16).unwrap();
        let b = reference(&p, Numerics::F32).unwrap();
        let (max, nonfinite) = compare(&a, &b).unwrap();
        assert!(nonfinite == 0 && max <= p.tolerance, "{name}: {max}");
    }
}

#[test]
fn lint_predictions_match_the_restrictions_probed() {
    use Target::{M4Plus, Strictest};
    #[rustfmt::skip]
    let cases = [
        ("width-100", Strictest, true, "ane-width-align", true),
        ("rsqrt-after-reduce", Strictest, true, "ane-rsqrt-after-reduce", true),
        ("pow-after-reduce", Strictest, true, "ane-rsqrt-after-reduce", false),
        ("extent-32768", Strictest, true, "ane-extent", true),
        ("extent-32768", M4Plus, true, "ane-extent", false),
        ("elementwise-only", Strictest, false, "ane-elementwise-only", true),
        ("width-64", Strictest, false, "ane-elementwise-only", false),
        ("inputs-2-reversed", Strictest, false, "ane-io-order", true),
        ("concat-5-channel", Strictest, false, "ane-concat-inputs", true),
        ("surface-small", Strictest, false, "ane-min-surface", true),
    ];
    for (name, target, error, code, expected) in cases {
        let r = run_probe(&probes::probe(name).unwrap(), None, Some(target));
        let l = r.lint.last().unwrap();
        assert_eq!(l.target, target.name());
        let list = if error { &l.errors } else { &l.warnings };
        assert_eq!(list.iter().any(|c| c == code), expected, "{name} {code}: {l:?}");
    }
    let r = run_probe(&probes::probe("width-64").unwrap(), None, None);
    assert!(r.lint.len() == 1 && r.lint[0].errors.is_empty(), "{:?}", r.lint);
}

#[test]
fn compare_counts_nonfinite_disagreements() {
    let a = vec![("y".to_string(), vec![1.0, f32::INFINITY, f32::NAN, 2.0])];
    let b = vec![(
        "y".to_string(),
        vec![1.5, f32::INFINITY, f32::NAN, f32::NEG_INFINITY],
    )];
    assert_eq!(compare(&a, &b).unwrap(), (0.5, 1));
    assert!(compare(&a, &vec![("z".into(), vec![0.0; 4])]).is_err());
}

#[test]
fn the_budget_is_respected_and_the_report_serialises() {
    let all: Vec<Probe> = ["width-64", "gelu", "width-32"]
        .iter()
        .map(|n| probes::probe(n).unwrap())
        .collect();
    let fake = FakeBackend::with_config(FakeConfig {
        ane_subtype: Some("H16G".into()),
        ..FakeConfig::default()
    });
    let ane = Ane::open_with(fake.clone()).unwrap().with_config(AneConfig {
        compile_budget: 2,
        counter: CompileCounter::new(),
        ..AneConfig::default()
    });
    let mut seen = Vec::new();
    let results = run_probes(&all, Some(&ane), |p, done| seen.push((p.name, done.len())));
    assert_eq!(seen, [("width-64", 0), ("gelu", 1), ("width-32", 2)]);
    assert!(results[0].compiled && results[1].compiled && !results[2].compiled);
    assert!(results[2].error.as_deref().unwrap().contains("budget"));
    assert_eq!(results[2].status, Status::NotRun);
    assert_eq!(results[1].lint[1].target, "m4+", "H16G is an M4");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    let mut report = ProbeReport::new(OsInfo::detect(), Ok(&ane));
    assert_eq!(
        (report.chip.as_deref(), report.ane_subtype.as_deref()),
        (Some("M4"), Some("H16G"))
    );
    assert_eq!(report.compiles_left, Some(0));
    assert!(report.ane_config.as_deref().unwrap().contains("ByName"));
    report.probes = results;
    let json = report.to_json();
    assert_eq!(serde_json::from_str::<ProbeReport>(&json).unwrap(), report);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["probes"][0]["name"], "width-64");
    assert_eq!(v["probes"][2]["status"], "not-run", "the report's spelling");

    let none = ProbeReport::new(OsInfo::detect(), Err("no ANE here"));
    assert!(!none.ane_available && none.chip.is_none() && none.compiles_left.is_none());
    assert_eq!(none.ane_error.as_deref(), Some("no ANE here"));
}
