//! The Neural Engine capability probe behind `malus doctor --probe`: one tiny program per
//! restriction in ane-landscape.md §5, run on the ANE and compared with the CPU executor in fp16
//! numerics, next to what the ANE lint predicted. The sources disagree per chip and OS, so a run
//! on a Mac says which restrictions hold there and which lint rules are right for that chip.
//!
//! Experimental design, so one failure points at one restriction:
//! - Every probe except `elementwise-only` starts with a depthwise 1×1 conv of ones (exact in
//!   fp16): a chip that refuses purely elementwise programs (row 22) then fails one probe, not all.
//! - Surfaces are ≥ 49,152 bytes, widths multiples of 64, I/O a single fp16 tensor and values
//!   O(1), except where the probe is about exactly that.
//! - Specs come from [`malus::device::ane_spec`], the conversion training uses, so the probes
//!   test the MIL text and weight files the trainer sends.
//! - The ANE side takes an [`Ane`], which tests open over `malus_ane`'s fake backend.

use std::process::Command;

use half::f16;
use malus_ane::{Ane, ChipFamily, IoDType, KernelSpec};
use malus_cpu::{CompileOptions, Numerics};
use malus_mil::lint::{Target, lint};
use malus_mil::{ConvParams, DType, FunctionBuilder, InferError, Program, Severity, Type, Var, Weights};
use serde::{Deserialize, Serialize};

use malus::device::ane_spec;

/// Names the JSON layout of [`Report`]; bump when a field changes meaning.
pub const SCHEMA: &str = "malus-ane-capabilities/1";

/// One tiny program that tests one restriction.
#[derive(Clone, Debug)]
pub struct Probe {
    pub name: &'static str,
    /// The §5 row and the claim tested, with its sources.
    pub restriction: &'static str,
    pub program: Program,
    pub weights: Weights,
    /// Values of each input in declaration order (deterministic).
    pub inputs: Vec<(String, Vec<f32>)>,
    /// Largest absolute error against the fp16 CPU reference that still counts as correct.
    pub tolerance: f32,
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
    /// `passed`, `wrong`, `compile-failed`, `run-failed`, `reference-failed` or `not-run`.
    pub status: String,
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
    /// The last prediction against the outcome: `error-confirmed`, `error-too-strict`,
    /// `warning-confirmed`, `missed` or `ok`; `None` when nothing was compiled.
    pub lint_verdict: Option<String>,
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
pub struct Report {
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

impl Report {
    /// A report with no probe results yet.
    pub fn new(os: OsInfo, ane: Result<&Ane, &str>) -> Report {
        let info = ane.ok().map(Ane::device_info);
        Report {
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

/// The lint target matching a chip family (`None` when unknown).
pub fn lint_target(family: ChipFamily) -> Option<Target> {
    match family {
        ChipFamily::M1 | ChipFamily::M2 => Some(Target::M1M2),
        ChipFamily::M3 => Some(Target::M3),
        ChipFamily::M4 | ChipFamily::M5 => Some(Target::M4Plus),
        ChipFamily::Unknown => None,
    }
}

const WEIGHTS: &str = "@model_path/weights/probe.bin";

type R<T = Var> = Result<T, InferError>;

/// Builds one probe program with its weights and deterministic input data.
struct Build {
    b: FunctionBuilder,
    weights: Weights,
    inputs: Vec<(String, Vec<f32>)>,
    state: u64,
}

impl Build {
    fn new(seed: u64) -> Build {
        Build {
            b: FunctionBuilder::new("main", "ios18"),
            weights: Weights::new(),
            inputs: Vec::new(),
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B,
        }
    }

    /// Uniform in [-1, 1) (splitmix64).
    fn uniform(&mut self) -> f32 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }

    fn input_as(&mut self, name: &str, dtype: DType, shape: [usize; 4], scale: f32) -> Var {
        let vals = (0..shape.iter().product())
            .map(|_| self.uniform() * scale)
            .collect();
        self.inputs.push((name.into(), vals));
        self.b.input(name, Type::tensor(dtype, &shape))
    }

    fn input(&mut self, name: &str, shape: [usize; 4], scale: f32) -> Var {
        self.input_as(name, DType::Fp16, shape, scale)
    }

    fn scalar(&mut self, v: f64) -> Var {
        self.b.scalar(DType::Fp16, v)
    }

    /// A 1×1 conv with a blob weight `[cout, cin/groups, 1, 1]`, result named `name` if given.
    fn conv(&mut self, x: &Var, w: &[f32], cout: usize, groups: usize, name: Option<&str>) -> R {
        let cin = x.shape()[1] / groups;
        let off = self.weights.add_f16(WEIGHTS, w);
        let wv = self
            .b
            .blob(Type::tensor(DType::Fp16, &[cout, cin, 1, 1]), WEIGHTS, off)?;
        if let Some(n) = name {
            self.b.name(n);
        }
        let p = ConvParams {
            groups: groups as i64,
            ..ConvParams::default()
        };
        self.b.conv(x, &wv, &p, None)
    }

    /// Depthwise 1×1 conv of ones: an exact identity that anchors the program on the ANE.
    fn anchor(&mut self, x: &Var) -> R {
        let c = x.shape()[1];
        self.conv(x, &vec![1.0; c], c, c, None)
    }

    /// `x·a + c`, the sum named `name`.
    fn affine(&mut self, x: &Var, a: f64, c: f64, name: &str) -> R {
        let (av, cv) = (self.scalar(a), self.scalar(c));
        let m = self.b.mul(x, &av)?;
        self.b.name(name).add(&m, &cv)
    }

    /// Channels `from..from+n` of `[1, C, 1, W]`.
    fn channels(&mut self, x: &Var, from: usize, n: usize) -> R {
        let w = x.shape()[3] as i64;
        self.b
            .slice_by_size(x, &[0, from as i64, 0, 0], &[1, n as i64, 1, w])
    }

    /// `n` different affine images of `x`, for concat.
    fn parts(&mut self, x: &Var, n: usize) -> R<Vec<Var>> {
        (0..n)
            .map(|k| self.affine(x, (k + 1) as f64 * 0.25, k as f64 * 0.5, &format!("part{k}")))
            .collect()
    }
}

const C64: [usize; 4] = [1, 512, 1, 64];

fn width(b: &mut Build, c: usize, w: usize) -> R<Vec<Var>> {
    let x = b.input("x", [1, c, 1, w], 1.0);
    let a = b.anchor(&x)?;
    Ok(vec![b.affine(&a, 0.5, 0.25, "y")?])
}

/// RMSNorm as training writes it, with `rsqrt` or with `pow(·, -0.5)` after the reduction.
fn rms(b: &mut Build, use_rsqrt: bool) -> R<Vec<Var>> {
    let x = b.input("x", C64, 1.0);
    let a = b.anchor(&x)?;
    let (k, eps, half) = (b.scalar(1.0 / 512f64.sqrt()), b.scalar(1e-5), b.scalar(-0.5));
    let xs = b.b.mul(&a, &k)?;
    let sq = b.b.mul(&xs, &xs)?;
    let ms = b.b.reduce_sum(&sq, &[1], true)?;
    let me = b.b.add(&ms, &eps)?;
    let r = if use_rsqrt {
        b.b.rsqrt(&me)?
    } else {
        b.b.pow(&me, &half)?
    };
    Ok(vec![b.b.name("y").mul(&a, &r)?])
}

fn softmax(b: &mut Build, shape: [usize; 4], axis: i64) -> R<Vec<Var>> {
    let x = b.input("x", shape, 4.0);
    let a = b.anchor(&x)?;
    Ok(vec![b.b.name("y").softmax(&a, axis)?])
}

fn concat(b: &mut Build, n: usize, axis: i64) -> R<Vec<Var>> {
    let x = b.input("x", C64, 1.0);
    let a = b.anchor(&x)?;
    let parts = b.parts(&a, n)?;
    let refs: Vec<&Var> = parts.iter().collect();
    Ok(vec![b.b.name("y").concat(&refs, axis)?])
}

type Body = fn(&mut Build) -> R<Vec<Var>>;

/// (name, restriction, tolerance, program): the probe set, controls first. Tolerances allow a few
/// fp16 ulps at the output's magnitude (more where accumulation order or LUTs differ).
#[rustfmt::skip]
const TABLE: &[(&str, &str, f32, Body)] = &[
    ("width-64", "control: [1,512,1,64] fp16 (64 KB), anchored; if this fails no other probe means anything", 2e-3,
        |b| width(b, 512, 64)),
    ("elementwise-only", "row 22: a program without conv/matmul may be refused (ane-bridge); width-64 without its anchor conv", 2e-3,
        |b| { let x = b.input("x", C64, 1.0); Ok(vec![b.affine(&x, 0.5, 0.25, "y")?]) }),
    ("conv1x1-const", "rows 18-19: 1x1 conv, 512x512 BLOBFILE weight (offset 64), no bias (Orion)", 2e-2,
        |b| { let x = b.input("x", C64, 1.0); let w: Vec<f32> = (0..512 * 512).map(|_| b.uniform() / 16.0).collect();
              Ok(vec![b.conv(&x, &w, 512, 1, Some("y"))?]) }),
    ("matmul-transpose-flags", "row 19: matmul with transpose_x/transpose_y as named consts (Orion #15), both operands from the input", 2e-2,
        |b| { let x = b.input("x", [1, 128, 1, 512], 0.5); let a = b.anchor(&x)?;
              let (p, q) = (b.channels(&a, 0, 64)?, b.channels(&a, 64, 64)?);
              let (pm, qm) = (b.b.reshape(&p, &[1, 1, 64, 512])?, b.b.reshape(&q, &[1, 1, 64, 512])?);
              let m = b.b.matmul(&pm, &qm, true, false)?; Ok(vec![b.b.name("y").reshape(&m, &[1, 512, 1, 512])?]) }),
    ("width-16", "row 3: last-axis width 16: x16 suffices (rustane, M4 Max) vs x32 needed (ane-bridge, M5)", 2e-3,
        |b| width(b, 2048, 16)),
    ("width-32", "row 3: last-axis width 32, the x32 rule (ane-bridge, M5)", 2e-3,
        |b| width(b, 1024, 32)),
    ("width-100", "row 3: last-axis width 100, not a multiple of 16: silent corruption (rustane)", 2e-3,
        |b| width(b, 320, 100)),
    ("surface-small", "row 4: 4 KB surfaces, under Orion's ~49 KB minimum (0x1d at eval); the `ane` crate's 32 KB input works", 2e-3,
        |b| width(b, 32, 64)),
    ("extent-16384", "row 5: width 16384, the cap on A13-A15 (ANEForge)", 2e-3,
        |b| width(b, 4, 16384)),
    ("extent-32768", "row 5: width 32768, over the A13-A15 cap, under A16's 65536 (ANEForge); rustane splits at 16384", 2e-3,
        |b| width(b, 2, 32768)),
    ("inputs-2-reversed", "row 15: 2 equal inputs declared (zeta, alpha): bound alphabetically (Orion, ane-bridge)", 8e-3,
        |b| { let z = b.input("zeta", C64, 1.0); let a = b.input("alpha", C64, 1.0); let (za, two) = (b.anchor(&z)?, b.scalar(2.0));
              let a2 = b.b.mul(&a, &two)?; Ok(vec![b.b.name("y").sub(&za, &a2)?]) }),
    ("inputs-2-unequal", "row 16: 2 inputs of 64 KB and 48 KB, declared alphabetically: equal sizes needed (Orion #12) vs not (`ane` crate)", 8e-3,
        |b| { let a = b.input("alpha", C64, 1.0); let be = b.input("beta", [1, 384, 1, 64], 1.0); let aa = b.anchor(&a)?;
              let (h, two) = (b.channels(&aa, 0, 384)?, b.scalar(2.0)); let b2 = b.b.mul(&be, &two)?; Ok(vec![b.b.name("y").sub(&h, &b2)?]) }),
    ("inputs-3-mixed", "rows 15-16: 3 inputs of 56/48/64 KB declared (mid, zed, abc): order and size together", 8e-3,
        |b| { let m = b.input("mid", [1, 448, 1, 64], 1.0); let z = b.input("zed", [1, 384, 1, 64], 1.0); let a = b.input("abc", C64, 1.0);
              let ma = b.anchor(&m)?; let (mh, ah) = (b.channels(&ma, 0, 384)?, b.channels(&a, 0, 384)?);
              let (two, half) = (b.scalar(2.0), b.scalar(0.5)); let z2 = b.b.mul(&z, &two)?; let d = b.b.sub(&mh, &z2)?;
              let a5 = b.b.mul(&ah, &half)?; Ok(vec![b.b.name("y").add(&d, &a5)?]) }),
    ("outputs-2", "rows 15-16: outputs declared (z_out 64 KB, a_out 48 KB): returned alphabetically, equal sizes needed (Orion #2, #3)", 8e-3,
        |b| { let x = b.input("x", C64, 1.0); let a = b.anchor(&x)?; let (two, one) = (b.scalar(2.0), b.scalar(1.0));
              let z = b.b.name("z_out").mul(&a, &two)?; let h = b.channels(&a, 0, 384)?; Ok(vec![z, b.b.name("a_out").add(&h, &one)?]) }),
    ("concat-2-channel", "row 8: concat of 2 on channels: rejected (Orion) vs native with exactly 2 (ANEForge)", 8e-3,
        |b| concat(b, 2, 1)),
    ("concat-5-channel", "row 8: concat of 5 on channels: maderix/rustane train with 2-6 vs exactly 2 (ANEForge)", 8e-3,
        |b| concat(b, 5, 1)),
    ("concat-2-width", "row 8: concat of 2 on the last axis: rejected on M3 Ultra (rustane PR #9)", 8e-3,
        |b| concat(b, 2, 3)),
    ("reshape-width", "row 9: reshape [1,512,1,64] -> [1,256,1,128], moving data across the last axis (rustane PR #9, M3 Ultra)", 2e-3,
        |b| { let x = b.input("x", C64, 1.0); let a = b.anchor(&x)?; let r = b.b.reshape(&a, &[1, 256, 1, 128])?; Ok(vec![b.affine(&r, 0.5, 0.25, "y")?]) }),
    ("transpose-width", "row 9: transpose [1,64,1,512] -> [1,512,1,64] (perm 0,3,2,1), swapping channels and width", 2e-3,
        |b| { let x = b.input("x", [1, 64, 1, 512], 1.0); let a = b.anchor(&x)?; let t = b.b.transpose(&a, &[0, 3, 2, 1])?; Ok(vec![b.affine(&t, 0.5, 0.25, "y")?]) }),
    ("slice-width-offset", "row 9: slice at width offset 32 of values up to 8000: |x| > 4094 becomes inf before A16 (ANEForge)", 4.0,
        |b| { let x = b.input("x", [1, 512, 1, 128], 8000.0); let a = b.anchor(&x)?; let s = b.b.slice_by_size(&a, &[0, 0, 0, 32], &[1, 512, 1, 64])?;
              Ok(vec![b.affine(&s, 0.5, 0.0, "y")?]) }),
    ("rsqrt-after-reduce", "row 10: rsqrt of reduce_sum(x^2)/C + eps fails to compile (rustane, M4 Max) vs native (ANEForge)", 1e-2,
        |b| rms(b, true)),
    ("pow-after-reduce", "row 10 workaround: pow(., -0.5) in place of rsqrt, as training's RMSNorm does", 1e-2,
        |b| rms(b, false)),
    ("softmax-64ch", "row 14: softmax over 64 channels (a power of two, Espresso's rule)", 5e-3,
        |b| softmax(b, [1, 64, 1, 512], 1)),
    ("softmax-100ch", "row 14: softmax over 100 channels, not a power of two (Espresso validation pass)", 5e-3,
        |b| softmax(b, [1, 100, 1, 320], 1)),
    ("softmax-width", "row 14 workaround: softmax over the last axis (64)", 5e-3,
        |b| softmax(b, C64, -1)),
    ("reduce-mean", "row 12: x - reduce_mean(x) over channels: fails at dispatch (ane-bridge, M5) vs native (ANEForge)", 4e-3,
        |b| { let x = b.input("x", C64, 1.0); let a = b.anchor(&x)?; let m = b.b.reduce_mean(&a, &[1], true)?; Ok(vec![b.b.name("y").sub(&a, &m)?]) }),
    ("gelu", "row 11: gelu EXACT rejected (Orion, M4 Max) vs native LUT, ~0.08 rel. error (ANEForge, M1)", 0.2,
        |b| { let x = b.input("x", C64, 2.0); let a = b.anchor(&x)?; Ok(vec![b.b.name("y").gelu(&a, "EXACT")?]) }),
    ("cast-fp32-input", "row 7: fp32 input cast to fp16 in the graph (Orion's fp32 I/O); cast reported failing on M1/M2", 2e-3,
        |b| { let x = b.input_as("x", DType::Fp32, C64, 1.0); let h = b.b.cast(&x, DType::Fp16)?; let a = b.anchor(&h)?; Ok(vec![b.affine(&a, 0.5, 0.25, "y")?]) }),
];

fn build(seed: usize, entry: &(&'static str, &'static str, f32, Body)) -> Probe {
    let (name, restriction, tolerance, body) = *entry;
    let mut b = Build::new(seed as u64);
    let outs = body(&mut b).unwrap_or_else(|e| panic!("probe {name} does not build: {e}"));
    let refs: Vec<&Var> = outs.iter().collect();
    let f = b.b.build(&refs);
    Probe {
        name,
        restriction,
        program: Program::new(vec![f]),
        weights: b.weights,
        inputs: b.inputs,
        tolerance,
    }
}

/// The probe set, controls first (one ANE compile each).
pub fn probes() -> Vec<Probe> {
    TABLE.iter().enumerate().map(|(i, e)| build(i, e)).collect()
}

/// Names of the probes, in order, without building them.
pub fn probe_names() -> Vec<&'static str> {
    TABLE.iter().map(|e| e.0).collect()
}

/// One probe by name (same data as in [`probes`]).
pub fn probe(name: &str) -> Option<Probe> {
    TABLE
        .iter()
        .position(|e| e.0 == name)
        .map(|i| build(i, &TABLE[i]))
}

/// The spec the ANE gets, through the trainer's conversion.
pub fn kernel_spec(p: &Probe) -> anyhow::Result<KernelSpec> {
    ane_spec(p.name, &p.program, &p.weights)
}

fn encode(fp16: bool, vals: &[f32]) -> Vec<u8> {
    if fp16 {
        vals.iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect()
    } else {
        vals.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

fn decode(fp16: bool, bytes: &[u8]) -> Vec<f32> {
    if fp16 {
        bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect()
    } else {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// Named output values.
pub type Outputs = Vec<(String, Vec<f32>)>;

/// Runs a probe on the CPU executor; inputs go in as the same bytes the ANE gets.
pub fn reference(p: &Probe, numerics: Numerics) -> Result<Outputs, String> {
    let opts = CompileOptions::default().numerics(numerics);
    let mut k = malus_cpu::compile(&p.program, &p.weights, &opts).map_err(|e| e.to_string())?;
    for (name, vals) in &p.inputs {
        let fp16 = k.info(name).map(|(d, _)| d) == Some(DType::Fp16);
        k.write_input_bytes(name, &encode(fp16, vals))
            .map_err(|e| e.to_string())?;
    }
    k.run().map_err(|e| e.to_string())?;
    k.outputs()
        .iter()
        .map(|t| {
            let bytes = k.read_output_bytes(&t.name).map_err(|e| e.to_string())?;
            Ok((t.name.clone(), decode(t.dtype == DType::Fp16, bytes)))
        })
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

fn codes(diags: &[malus_mil::Diagnostic], sev: Severity) -> Vec<String> {
    let mut v: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == sev)
        .map(|d| d.code.to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn predict(p: &Probe, target: Target) -> LintPrediction {
    let diags = lint(&p.program, target);
    LintPrediction {
        target: target.name().into(),
        errors: codes(&diags, Severity::Error),
        warnings: codes(&diags, Severity::Warning),
    }
}

fn verdict(l: &LintPrediction, failed: bool) -> &'static str {
    match (!l.errors.is_empty(), !l.warnings.is_empty(), failed) {
        (true, _, true) => "error-confirmed",
        (true, _, false) => "error-too-strict",
        (false, true, true) => "warning-confirmed",
        (false, false, true) => "missed",
        (false, _, false) => "ok",
    }
}

/// Compiles, writes, runs and reads a probe on the ANE, recording how far it got in `r`.
fn on_ane(p: &Probe, ane: &Ane, r: &mut ProbeResult) -> Result<Outputs, String> {
    let spec = kernel_spec(p).map_err(|e| format!("spec: {e:#}"))?;
    let mut k = ane.compile(&spec).map_err(|e| e.to_string())?;
    r.compiled = true;
    for (name, vals) in &p.inputs {
        let fp16 = spec
            .inputs
            .iter()
            .any(|t| &t.name == name && t.dtype == IoDType::Fp16);
        k.write_input_bytes(name.as_str(), &encode(fp16, vals))
            .map_err(|e| e.to_string())?;
    }
    k.run().map_err(|e| e.to_string())?;
    r.ran = true;
    let mut outs = Vec::new();
    for t in &spec.outputs {
        let mut buf = vec![0u8; t.bytes().unwrap_or(0)];
        k.read_output_bytes(t.name.as_str(), &mut buf)
            .map_err(|e| e.to_string())?;
        outs.push((t.name.clone(), decode(t.dtype == IoDType::Fp16, &buf)));
    }
    if let Err(e) = k.close() {
        r.error = Some(format!("unload after reading outputs: {e}"));
    }
    Ok(outs)
}

/// Runs one probe: the fp16 CPU reference, then the ANE when `ane` is given and the compile
/// budget allows. `chip` adds the chip family's lint prediction.
pub fn run_probe(p: &Probe, ane: Option<&Ane>, chip: Option<Target>) -> ProbeResult {
    let mut lints = vec![predict(p, Target::Strictest)];
    lints.extend(chip.map(|t| predict(p, t)));
    let mut r = ProbeResult {
        name: p.name.into(),
        restriction: p.restriction.into(),
        status: "not-run".into(),
        compiled: false,
        ran: false,
        max_abs_err: None,
        nonfinite_mismatches: None,
        tolerance: p.tolerance,
        passed: None,
        error: None,
        reference_error: None,
        lint: lints,
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
                "run-failed"
            } else {
                "compile-failed"
            }
            .into();
            r.error = Some(e);
            true
        }
        (Err(_), Ok(_)) => {
            r.status = "reference-failed".into();
            false
        }
        (Ok(want), Ok(have)) => match compare(want, &have) {
            Ok((max, nonfinite)) => {
                let ok = nonfinite == 0 && max <= p.tolerance;
                r.max_abs_err = Some(max);
                r.nonfinite_mismatches = Some(nonfinite);
                r.passed = Some(ok);
                r.status = if ok { "passed" } else { "wrong" }.into();
                !ok
            }
            Err(e) => {
                r.status = "wrong".into();
                r.passed = Some(false);
                r.error = Some(e);
                true
            }
        },
    };
    if r.status != "reference-failed" {
        let l = r.lint.last().expect("strictest is always there");
        r.lint_verdict = Some(verdict(l, failed).into());
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
    /// inputs in name order (as the ANE is reported to bind) or in declaration order.
    fn cpu_eval(p: &Probe, by_name: bool) -> EvalFn {
        let p = p.clone();
        let spec = kernel_spec(&p).unwrap();
        Arc::new(move |surfaces: &[Vec<u8>]| {
            let mut ins = spec.inputs.clone();
            if by_name {
                ins.sort_by(|a, b| a.name.cmp(&b.name));
            }
            let mut q = p.clone();
            q.inputs = ins
                .iter()
                .zip(surfaces)
                .map(|(t, s)| {
                    let n = t.bytes().unwrap();
                    (t.name.clone(), decode(t.dtype == IoDType::Fp16, &s[..n]))
                })
                .collect();
            let mut outs = reference(&q, Numerics::Fp16).unwrap();
            outs.sort_by(|a, b| a.0.cmp(&b.0));
            outs.iter().map(|(_, v)| encode(true, v)).collect()
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
            assert_eq!(r.status, "passed", "{name}: {r:?}");
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
        assert_eq!(r.status, "wrong", "{r:?}");
        assert!(r.max_abs_err.unwrap() > 0.5);
        assert_eq!(r.lint_verdict.as_deref(), Some("warning-confirmed"));
    }

    #[test]
    fn failures_on_the_fake_are_reported_per_stage() {
        let p = probe("rsqrt-after-reduce").unwrap();
        let (fake, ane) = fake_ane(FakeConfig::default(), 10);
        fake.fail(Selector::CompileWithQos, 1, Some("ANECCompile() FAILED"));
        let r = run_probe(&p, Some(&ane), Some(Target::M4Plus));
        assert_eq!(r.status, "compile-failed");
        assert!(!r.compiled && !r.ran);
        assert!(
            r.error.as_deref().unwrap().contains("ANECCompile() FAILED"),
            "{r:?}"
        );
        assert_eq!(r.lint_verdict.as_deref(), Some("error-confirmed"));

        // Evaluate does nothing: the outputs hold the fake's fill pattern, not the answer.
        let r = run_probe(&p, Some(&ane), Some(Target::M4Plus));
        assert!(r.compiled && r.ran, "{r:?}");
        assert_eq!((r.status.as_str(), r.passed), ("wrong", Some(false)));
        assert!(r.max_abs_err.unwrap() > p.tolerance);

        fake.fail(Selector::EvaluateWithQos, 1, Some("status 0x1d"));
        let r = run_probe(&probe("width-64").unwrap(), Some(&ane), None);
        assert_eq!(r.status, "run-failed");
        assert!(r.compiled && !r.ran);
        assert!(r.error.as_deref().unwrap().contains("0x1d"));
        assert_eq!(r.lint_verdict.as_deref(), Some("warning-confirmed"));
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }
}
