//! Whole programs — RMSNorm, causal attention with RoPE, SwiGLU and the packed-weight matmul —
//! against a naive f64 implementation written separately here.

#[path = "common/blocks.rs"]
mod blocks;

use blocks::{Attn, AttnWeights, ffn_weights, values};
use malus_cpu::{CompileOptions, CpuKernel, Numerics, compile};
use malus_mil::{DType, FunctionBuilder, Program, Type, Weights, parse, print};

const D: usize = 64;
const H: usize = 4;
const S: usize = 32;
const F: usize = 128;
const N: usize = 48;

struct Model {
    program: Program,
    weights: Weights,
    g1: Vec<f32>,
    g2: Vec<f32>,
    attn: AttnWeights,
    ffn: [Vec<f32>; 3],
}

fn model() -> Model {
    let a = Attn {
        dim: D,
        heads: H,
        seq: S,
    };
    let (g1, g2) = (values(1, D, 1.0), values(2, D, 1.0));
    let attn = AttnWeights::new(a, 10);
    let ffn = ffn_weights(D, F, 20);
    let mut w = Weights::new();
    let mut b = FunctionBuilder::new("main", "ios18");
    let x = b.input("x", Type::tensor(DType::Fp16, &[1, D, 1, S]));
    let packed = b.input("packed", Type::tensor(DType::Fp16, &[1, D, 1, S + N]));
    let n1 = blocks::rms_norm(&mut b, &mut w, "norm1", &x, &g1);
    let at = blocks::attention(&mut b, &mut w, &n1, a, &attn);
    let x2 = b.add(&x, &at).unwrap();
    let n2 = blocks::rms_norm(&mut b, &mut w, "norm2", &x2, &g2);
    let f = blocks::swiglu(&mut b, &mut w, &n2, D, F, &ffn);
    let out = b.name("out").add(&x2, &f).unwrap();
    let pm = blocks::packed_matmul(&mut b, &packed, D, S, N);
    let pm = b.name("pm").identity(&pm).unwrap();
    Model {
        program: Program::new(vec![b.build(&[&out, &pm])]),
        weights: w,
        g1,
        g2,
        attn,
        ffn,
    }
}

// ---------------------------------------------------------------- the f64 reference

type M = Vec<Vec<f64>>; // [channel][position]

fn from_cm(v: &[f32], c: usize, s: usize) -> M {
    (0..c)
        .map(|i| (0..s).map(|j| v[i * s + j] as f64).collect())
        .collect()
}

fn proj(w: &[f32], x: &M, out: usize) -> M {
    let inp = x.len();
    let s = x[0].len();
    (0..out)
        .map(|o| {
            (0..s)
                .map(|p| (0..inp).map(|i| w[o * inp + i] as f64 * x[i][p]).sum())
                .collect()
        })
        .collect()
}

fn rms(x: &M, g: &[f32]) -> M {
    let (c, s) = (x.len(), x[0].len());
    let mut y = x.clone();
    for p in 0..s {
        let ms = (0..c).map(|i| x[i][p] * x[i][p]).sum::<f64>() / c as f64;
        let r = 1.0 / (ms + 1e-5).sqrt();
        for i in 0..c {
            y[i][p] = x[i][p] * r * g[i] as f64;
        }
    }
    y
}

fn add(a: &M, b: &M) -> M {
    a.iter()
        .zip(b)
        .map(|(r, q)| r.iter().zip(q).map(|(x, y)| x + y).collect())
        .collect()
}

#[allow(clippy::needless_range_loop)] // index arithmetic mirrors the math
fn attention(x: &M, w: &AttnWeights) -> M {
    let dh = D / H;
    let (q, k, v) = (proj(&w.wq, x, D), proj(&w.wk, x, D), proj(&w.wv, x, D));
    let (cos, sin, _) = blocks::rope_tables(Attn {
        dim: D,
        heads: H,
        seq: S,
    });
    let rope = |t: &M, h: usize, p: usize, j: usize| {
        let base = t[h * dh + j][p];
        let rot = if j < dh / 2 {
            -t[h * dh + j + dh / 2][p]
        } else {
            t[h * dh + j - dh / 2][p]
        };
        base * cos[p * dh + j] as f64 + rot * sin[p * dh + j] as f64
    };
    let mut o = vec![vec![0.0; S]; D];
    for h in 0..H {
        for p in 0..S {
            let scores: Vec<f64> = (0..=p)
                .map(|t| {
                    (0..dh)
                        .map(|j| rope(&q, h, p, j) * rope(&k, h, t, j))
                        .sum::<f64>()
                        / (dh as f64).sqrt()
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for j in 0..dh {
                o[h * dh + j][p] = (0..=p).map(|t| e[t] / z * v[h * dh + j][t]).sum();
            }
        }
    }
    proj(&w.wo, &o, D)
}

fn swiglu(x: &M, w: &[Vec<f32>; 3]) -> M {
    let (h1, h3) = (proj(&w[0], x, F), proj(&w[1], x, F));
    let g: M = h1
        .iter()
        .zip(&h3)
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x / (1.0 + (-x).exp()) * y).collect())
        .collect();
    proj(&w[2], &g, D)
}

fn reference(m: &Model, x: &[f32], packed: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let xm = from_cm(x, D, S);
    let x2 = add(&xm, &attention(&rms(&xm, &m.g1), &m.attn));
    let out = add(&x2, &swiglu(&rms(&x2, &m.g2), &m.ffn));
    let pk = from_cm(packed, D, S + N);
    let pm: Vec<f64> = (0..N)
        .flat_map(|n| (0..S).map(move |s| (n, s)))
        .map(|(n, s)| (0..D).map(|c| pk[c][S + n] * pk[c][s]).sum())
        .collect();
    (out.concat(), pm)
}

// ---------------------------------------------------------------- the checks

fn run(m: &Model, opts: &CompileOptions, x: &[f32], packed: &[f32]) -> CpuKernel {
    let mut k = compile(&m.program, &m.weights, opts).unwrap();
    k.write_input_f32("x", x).unwrap();
    k.write_input_f32("packed", packed).unwrap();
    k.run().unwrap();
    k
}

/// Largest error relative to the largest reference magnitude.
fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max)
        / scale
}

#[test]
fn transformer_block_matches_f64_reference() {
    let m = model();
    let x = values(100, D * S, 1.0);
    let packed = values(101, D * (S + N), 1.0);
    let (want_out, want_pm) = reference(&m, &x, &packed);
    for (numerics, tol) in [(Numerics::F32, 2e-3), (Numerics::Fp16, 2e-2)] {
        for threads in [Some(1), None, Some(2)] {
            let opts = CompileOptions {
                numerics,
                threads,
                ..CompileOptions::default()
            };
            let k = run(&m, &opts, &x, &packed);
            let (eo, ep) = (
                rel_err(&k.output_f32("out").unwrap(), &want_out),
                rel_err(&k.output_f32("pm").unwrap(), &want_pm),
            );
            assert!(
                eo < tol && ep < tol,
                "{numerics:?} threads {threads:?}: out error {eo}, pm error {ep}"
            );
        }
    }
}

#[test]
fn same_results_after_printing_and_parsing() {
    // The MIL text the ANE would get runs the same as the built program.
    let m = model();
    let reparsed = parse(&print(&m.program)).unwrap();
    let x = values(7, D * S, 1.0);
    let packed = values(8, D * (S + N), 1.0);
    let opts = CompileOptions::default();
    let a = run(&m, &opts, &x, &packed);
    let b = run(
        &Model {
            program: reparsed,
            ..m
        },
        &opts,
        &x,
        &packed,
    );
    assert_eq!(
        a.read_output_bytes("out").unwrap(),
        b.read_output_bytes("out").unwrap()
    );
}

#[test]
fn plan_uses_views_fusion_and_reuse() {
    let m = model();
    let k = compile(&m.program, &m.weights, &CompileOptions::default()).unwrap();
    let st = k.stats();
    let kinds: std::collections::HashMap<_, _> = st.step_kinds.iter().cloned().collect();
    // 4 attention projections + 3 FFN projections are convs; q·kᵀ, p·v and the packed product
    // are matmuls. Slices, reshapes and transposes are views: the packed matmul needs no copy.
    assert_eq!(kinds.get("conv"), Some(&7), "{st:?}");
    assert_eq!(kinds.get("matmul"), Some(&3), "{st:?}");
    // The RoPE concat (q and k) copies; nothing else does.
    assert_eq!(kinds.get("copy"), Some(&4), "{st:?}");
    assert!(st.fused_ops >= 8, "{st:?}");
    assert!(st.view_ops >= 15, "{st:?}");
    // Reuse: less run-time memory than the intermediate tensors that are not views.
    let f32s = |n: usize| n * 4;
    let sum_of_intermediates = f32s(2 * H * S * S + 12 * D * S + 3 * F * S);
    assert!(
        st.runtime_slots <= 8 && st.runtime_bytes < sum_of_intermediates,
        "{st:?}"
    );
}
