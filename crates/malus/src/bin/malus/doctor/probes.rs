//! The probe set: one tiny program per restriction in docs/ane-restrictions.md, each to be run
//! on the ANE and compared with the CPU executor in fp16 numerics. The sources disagree per chip
//! and OS, so a run on a Mac says which restrictions hold there.
//!
//! Experimental design, so one failure points at one restriction:
//! - Every probe except `elementwise-only` starts with a depthwise 1×1 conv of ones (exact in
//!   fp16): a chip that refuses purely elementwise programs (row 22) then fails one probe, not all.
//! - Surfaces are ≥ 49,152 bytes, widths multiples of 64, I/O a single fp16 tensor and values
//!   O(1), except where the probe is about exactly that.

use malus_mil::DType::{Fp16, Fp32};
use malus_mil::{Program, Var, Weights};

use super::build::{Build, R};

/// One tiny program that tests one restriction.
#[derive(Clone, Debug)]
pub struct Probe {
    pub name: &'static str,
    /// The docs/ane-restrictions.md row and the claim tested, with its sources.
    pub restriction: &'static str,
    pub program: Program,
    pub weights: Weights,
    /// Values of each input in declaration order (deterministic).
    pub inputs: Vec<(String, Vec<f32>)>,
    /// Largest absolute error against the fp16 CPU reference that still counts as correct.
    pub tolerance: f32,
}

const C64: [usize; 4] = [1, 512, 1, 64];

fn width(b: &mut Build, c: usize, w: usize) -> R<Vec<Var>> {
    let x = b.data_input("x", [1, c, 1, w], 1.0);
    let a = b.anchor(&x)?;
    Ok(vec![b.affine(&a, 0.5, 0.25, "y")?])
}

/// RMSNorm as training writes it, with `rsqrt` or with `pow(·, -0.5)` after the reduction.
fn rms(b: &mut Build, use_rsqrt: bool) -> R<Vec<Var>> {
    let x = b.data_input("x", C64, 1.0);
    let a = b.anchor(&x)?;
    let (k, eps, half) = (
        b.scalar(Fp16, 1.0 / 512f64.sqrt()),
        b.scalar(Fp16, 1e-5),
        b.scalar(Fp16, -0.5),
    );
    let xs = b.mul(&a, &k)?;
    let sq = b.mul(&xs, &xs)?;
    let ms = b.reduce_sum(&sq, &[1], true)?;
    let me = b.add(&ms, &eps)?;
    let r = if use_rsqrt {
        b.rsqrt(&me)?
    } else {
        b.pow(&me, &half)?
    };
    Ok(vec![b.name("y").mul(&a, &r)?])
}

fn softmax(b: &mut Build, shape: [usize; 4], axis: i64) -> R<Vec<Var>> {
    let x = b.data_input("x", shape, 4.0);
    let a = b.anchor(&x)?;
    Ok(vec![b.name("y").softmax(&a, axis)?])
}

fn concat(b: &mut Build, n: usize, axis: i64) -> R<Vec<Var>> {
    let x = b.data_input("x", C64, 1.0);
    let a = b.anchor(&x)?;
    let parts = b.parts(&a, n)?;
    let refs: Vec<&Var> = parts.iter().collect();
    Ok(vec![b.name("y").concat(&refs, axis)?])
}

type Body = fn(&mut Build) -> R<Vec<Var>>;

/// (name, restriction, tolerance, program): the probe set, controls first. Tolerances allow a few
/// fp16 ulps at the output's magnitude (more where accumulation order or LUTs differ).
#[rustfmt::skip]
const TABLE: &[(&str, &str, f32, Body)] = &[
    ("width-64", "control: [1,512,1,64] fp16 (64 KB), anchored; if this fails no other probe means anything", 2e-3,
        |b| width(b, 512, 64)),
    ("elementwise-only", "row 22: a program without conv/matmul may be refused (ane-bridge); width-64 without its anchor conv", 2e-3,
        |b| { let x = b.data_input("x", C64, 1.0); Ok(vec![b.affine(&x, 0.5, 0.25, "y")?]) }),
    ("conv1x1-const", "rows 18-19: 1x1 conv, 512x512 BLOBFILE weight (offset 64), no bias (Orion)", 2e-2,
        |b| { let x = b.data_input("x", C64, 1.0); let w: Vec<f32> = (0..512 * 512).map(|_| b.uniform() / 16.0).collect();
              Ok(vec![b.conv1x1(&x, &w, 512, 1, Some("y"))?]) }),
    ("matmul-transpose-flags", "row 19: matmul with transpose_x/transpose_y as named consts (Orion #15), both operands from the input", 2e-2,
        |b| { let x = b.data_input("x", [1, 128, 1, 512], 0.5); let a = b.anchor(&x)?;
              let (p, q) = (b.channels(&a, 0, 64)?, b.channels(&a, 64, 64)?);
              let (pm, qm) = (b.reshape(&p, &[1, 1, 64, 512])?, b.reshape(&q, &[1, 1, 64, 512])?);
              let m = b.matmul(&pm, &qm, true, false)?; Ok(vec![b.name("y").reshape(&m, &[1, 512, 1, 512])?]) }),
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
        |b| { let z = b.data_input("zeta", C64, 1.0); let a = b.data_input("alpha", C64, 1.0); let (za, two) = (b.anchor(&z)?, b.scalar(Fp16, 2.0));
              let a2 = b.mul(&a, &two)?; Ok(vec![b.name("y").sub(&za, &a2)?]) }),
    ("inputs-2-unequal", "row 16: 2 inputs of 64 KB and 48 KB, declared alphabetically: equal sizes needed (Orion #12) vs not (`ane` crate)", 8e-3,
        |b| { let a = b.data_input("alpha", C64, 1.0); let be = b.data_input("beta", [1, 384, 1, 64], 1.0); let aa = b.anchor(&a)?;
              let (h, two) = (b.channels(&aa, 0, 384)?, b.scalar(Fp16, 2.0)); let b2 = b.mul(&be, &two)?; Ok(vec![b.name("y").sub(&h, &b2)?]) }),
    ("inputs-3-mixed", "rows 15-16: 3 inputs of 56/48/64 KB declared (mid, zed, abc): order and size together", 8e-3,
        |b| { let m = b.data_input("mid", [1, 448, 1, 64], 1.0); let z = b.data_input("zed", [1, 384, 1, 64], 1.0); let a = b.data_input("abc", C64, 1.0);
              let ma = b.anchor(&m)?; let (mh, ah) = (b.channels(&ma, 0, 384)?, b.channels(&a, 0, 384)?);
              let (two, half) = (b.scalar(Fp16, 2.0), b.scalar(Fp16, 0.5)); let z2 = b.mul(&z, &two)?; let d = b.sub(&mh, &z2)?;
              let a5 = b.mul(&ah, &half)?; Ok(vec![b.name("y").add(&d, &a5)?]) }),
    ("outputs-2", "rows 15-16: outputs declared (z_out 64 KB, a_out 48 KB): returned alphabetically, equal sizes needed (Orion #2, #3)", 8e-3,
        |b| { let x = b.data_input("x", C64, 1.0); let a = b.anchor(&x)?; let (two, one) = (b.scalar(Fp16, 2.0), b.scalar(Fp16, 1.0));
              let z = b.name("z_out").mul(&a, &two)?; let h = b.channels(&a, 0, 384)?; Ok(vec![z, b.name("a_out").add(&h, &one)?]) }),
    ("concat-2-channel", "row 8: concat of 2 on channels: rejected (Orion) vs native with exactly 2 (ANEForge)", 8e-3,
        |b| concat(b, 2, 1)),
    ("concat-5-channel", "row 8: concat of 5 on channels: maderix/rustane train with 2-6 vs exactly 2 (ANEForge)", 8e-3,
        |b| concat(b, 5, 1)),
    ("concat-2-width", "row 8: concat of 2 on the last axis: rejected on M3 Ultra (rustane PR #9)", 8e-3,
        |b| concat(b, 2, 3)),
    ("reshape-width", "row 9: reshape [1,512,1,64] -> [1,256,1,128], moving data across the last axis (rustane PR #9, M3 Ultra)", 2e-3,
        |b| { let x = b.data_input("x", C64, 1.0); let a = b.anchor(&x)?; let r = b.reshape(&a, &[1, 256, 1, 128])?; Ok(vec![b.affine(&r, 0.5, 0.25, "y")?]) }),
    ("transpose-width", "row 9: transpose [1,64,1,512] -> [1,512,1,64] (perm 0,3,2,1), swapping channels and width", 2e-3,
        |b| { let x = b.data_input("x", [1, 64, 1, 512], 1.0); let a = b.anchor(&x)?; let t = b.transpose(&a, &[0, 3, 2, 1])?;
              Ok(vec![b.affine(&t, 0.5, 0.25, "y")?]) }),
    ("slice-width-offset", "row 9: slice at width offset 32 of values up to 8000: |x| > 4094 becomes inf before A16 (ANEForge)", 4.0,
        |b| { let x = b.data_input("x", [1, 512, 1, 128], 8000.0); let a = b.anchor(&x)?; let s = b.slice_by_size(&a, &[0, 0, 0, 32], &[1, 512, 1, 64])?;
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
        |b| { let x = b.data_input("x", C64, 1.0); let a = b.anchor(&x)?; let m = b.reduce_mean(&a, &[1], true)?; Ok(vec![b.name("y").sub(&a, &m)?]) }),
    ("gelu", "row 11: gelu EXACT rejected (Orion, M4 Max) vs native LUT, ~0.08 rel. error (ANEForge, M1)", 0.2,
        |b| { let x = b.data_input("x", C64, 2.0); let a = b.anchor(&x)?; Ok(vec![b.name("y").gelu(&a, "EXACT")?]) }),
    ("cast-fp32-input", "row 7: fp32 input cast to fp16 in the graph (Orion's fp32 I/O); cast reported failing on M1/M2", 2e-3,
        |b| { let x = b.data_input_as("x", Fp32, C64, 1.0); let h = b.cast(&x, Fp16)?; let a = b.anchor(&h)?; Ok(vec![b.affine(&a, 0.5, 0.25, "y")?]) }),
];

fn build(seed: usize, entry: &(&'static str, &'static str, f32, Body)) -> Probe {
    let (name, restriction, tolerance, body) = *entry;
    let mut b = Build::new(seed as u64);
    let outs = body(&mut b).unwrap_or_else(|e| panic!("probe {name} does not build: {e}"));
    let (f, weights, inputs) = b.finish(&outs);
    Probe {
        name,
        restriction,
        program: Program::new(vec![f]),
        weights,
        inputs,
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
