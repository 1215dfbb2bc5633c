//! Transformer building blocks in the ANE's channel-major layout (`[1, C, 1, S]`), written with
//! malus-mil's builder. Shared by the whole-program tests and the benchmarks.
#![allow(dead_code)]

use half::f16;
use malus_mil::{ConvParams, DType, FunctionBuilder, Literal, Type, Var, Weights};

pub const WEIGHTS: &str = "@model_path/weights/weight.bin";

/// Deterministic pseudo-random values in `[-scale, scale)`, already rounded to fp16.
pub fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((s >> 40) as f32) / (1u64 << 24) as f32;
            f16::from_f32((2.0 * u - 1.0) * scale).to_f32()
        })
        .collect()
}

/// An fp16 constant stored in the weight blob.
pub fn blob(b: &mut FunctionBuilder, w: &mut Weights, name: &str, shape: &[usize], data: &[f32]) -> Var {
    let off = w.add_f16(WEIGHTS, data);
    b.name(name)
        .blob(Type::tensor(DType::Fp16, shape), WEIGHTS, off)
        .unwrap()
}

/// A 1×1 convolution (a channel-major linear layer) with weight `[out, in]`.
pub fn proj(
    b: &mut FunctionBuilder,
    w: &mut Weights,
    name: &str,
    x: &Var,
    wt: &[f32],
    out: usize,
    inp: usize,
) -> Var {
    let wv = blob(b, w, &format!("{name}_w"), &[out, inp, 1, 1], wt);
    b.name(name).conv(x, &wv, &ConvParams::default(), None).unwrap()
}

/// RMSNorm over channels: `x · rsqrt(mean(x²) + eps) · gamma`.
pub fn rms_norm(b: &mut FunctionBuilder, w: &mut Weights, name: &str, x: &Var, gamma: &[f32]) -> Var {
    let c = x.shape()[1];
    let sq = b.mul(x, x).unwrap();
    let ms = b.reduce_mean(&sq, &[1], true).unwrap();
    let eps = b.scalar(DType::Fp16, 1e-5);
    let ms = b.add(&ms, &eps).unwrap();
    let r = b.rsqrt(&ms).unwrap();
    let n = b.mul(x, &r).unwrap();
    let g = blob(b, w, &format!("{name}_g"), &[1, c, 1, 1], gamma);
    b.name(name).mul(&n, &g).unwrap()
}

/// Dimensions of an attention block.
#[derive(Clone, Copy, Debug)]
pub struct Attn {
    pub dim: usize,
    pub heads: usize,
    pub seq: usize,
}

impl Attn {
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }
}

/// RoPE tables `[S, Dh]` (the rotate-half convention) and the additive causal mask `[S, S]`.
pub fn rope_tables(a: Attn) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (s, dh) = (a.seq, a.head_dim());
    let mut cos = vec![0.0; s * dh];
    let mut sin = vec![0.0; s * dh];
    for p in 0..s {
        for i in 0..dh {
            let f = (p as f64) / 10000f64.powf((2 * (i % (dh / 2))) as f64 / dh as f64);
            cos[p * dh + i] = f16::from_f64(f.cos()).to_f32();
            sin[p * dh + i] = f16::from_f64(f.sin()).to_f32();
        }
    }
    let mask = (0..s * s)
        .map(|i| if i % s > i / s { f16::MIN.to_f32() } else { 0.0 })
        .collect();
    (cos, sin, mask)
}

fn rope(b: &mut FunctionBuilder, x: &Var, cos: &Var, sin: &Var, dh: usize) -> Var {
    let sh = x.shape();
    let h = (dh / 2) as i64;
    let (n, s) = (sh[1] as i64, sh[2] as i64);
    let x1 = b.slice_by_size(x, &[0, 0, 0, 0], &[1, n, s, h]).unwrap();
    let x2 = b.slice_by_size(x, &[0, 0, 0, h], &[1, n, s, h]).unwrap();
    let m1 = b.scalar(DType::Fp16, -1.0);
    let nx2 = b.mul(&x2, &m1).unwrap();
    let rot = b.concat(&[&nx2, &x1], -1).unwrap();
    let a = b.mul(x, cos).unwrap();
    let c = b.mul(&rot, sin).unwrap();
    b.add(&a, &c).unwrap()
}

/// Weights of an attention block: wq, wk, wv, wo, each `[D, D]` row-major (`[out, in]`).
pub struct AttnWeights {
    pub wq: Vec<f32>,
    pub wk: Vec<f32>,
    pub wv: Vec<f32>,
    pub wo: Vec<f32>,
}

impl AttnWeights {
    pub fn new(a: Attn, seed: u64) -> AttnWeights {
        let d = a.dim;
        let sc = 1.0 / (d as f32).sqrt();
        AttnWeights {
            wq: values(seed, d * d, sc),
            wk: values(seed + 1, d * d, sc),
            wv: values(seed + 2, d * d, sc),
            wo: values(seed + 3, d * d, sc),
        }
    }
}

/// Causal multi-head self-attention with RoPE: QKV projections, `softmax(q kᵀ / √Dh + mask) v`,
/// output projection. `x` is `[1, D, 1, S]`.
pub fn attention(b: &mut FunctionBuilder, w: &mut Weights, x: &Var, a: Attn, aw: &AttnWeights) -> Var {
    let (d, h, s, dh) = (a.dim, a.heads, a.seq, a.head_dim());
    let q = proj(b, w, "q", x, &aw.wq, d, d);
    let k = proj(b, w, "k", x, &aw.wk, d, d);
    let v = proj(b, w, "v", x, &aw.wv, d, d);
    let heads = |b: &mut FunctionBuilder, t: &Var| {
        let r = b.reshape(t, &[1, h as i64, dh as i64, s as i64]).unwrap();
        b.transpose(&r, &[0, 1, 3, 2]).unwrap()
    };
    let (qh, kh, vh) = (heads(b, &q), heads(b, &k), heads(b, &v));
    let (cos, sin, mask) = rope_tables(a);
    let cos = blob(b, w, "rope_cos", &[1, 1, s, dh], &cos);
    let sin = blob(b, w, "rope_sin", &[1, 1, s, dh], &sin);
    let mask = blob(b, w, "causal_mask", &[1, 1, s, s], &mask);
    let qr = rope(b, &qh, &cos, &sin, dh);
    let kr = rope(b, &kh, &cos, &sin, dh);
    let scores = b.matmul(&qr, &kr, false, true).unwrap();
    let scale = b.scalar(DType::Fp16, 1.0 / (dh as f64).sqrt());
    let scaled = b.mul(&scores, &scale).unwrap();
    let masked = b.add(&scaled, &mask).unwrap();
    let p = b.softmax(&masked, -1).unwrap();
    let o = b.matmul(&p, &vh, false, false).unwrap();
    let o = b.transpose(&o, &[0, 1, 3, 2]).unwrap();
    let o = b.reshape(&o, &[1, d as i64, 1, s as i64]).unwrap();
    proj(b, w, "attn_out", &o, &aw.wo, d, d)
}

/// SwiGLU feed-forward: `W2 · (silu(W1 x) ⊙ W3 x)`, weights `[F, D]`, `[F, D]`, `[D, F]`.
pub fn swiglu(
    b: &mut FunctionBuilder,
    w: &mut Weights,
    x: &Var,
    d: usize,
    f: usize,
    ws: &[Vec<f32>; 3],
) -> Var {
    let h1 = proj(b, w, "ffn_w1", x, &ws[0], f, d);
    let h3 = proj(b, w, "ffn_w3", x, &ws[1], f, d);
    let g = b.silu(&h1).unwrap();
    let g = b.mul(&g, &h3).unwrap();
    proj(b, w, "ffn_w2", &g, &ws[2], d, f)
}

pub fn ffn_weights(d: usize, f: usize, seed: u64) -> [Vec<f32>; 3] {
    [
        values(seed, f * d, 1.0 / (d as f32).sqrt()),
        values(seed + 1, f * d, 1.0 / (d as f32).sqrt()),
        values(seed + 2, d * f, 1.0 / (f as f32).sqrt()),
    ]
}

/// The dynamic-weight matmul of the ANE training kernels: input `[1, C, 1, S + N]` holds the
/// activations `x [C, S]` in spatial `[0, S)` and the weight `W [C, N]` in `[S, S + N)`;
/// the output `[1, N, 1, S]` is `Wᵀ · x`.
pub fn packed_matmul(b: &mut FunctionBuilder, inp: &Var, c: usize, s: usize, n: usize) -> Var {
    let (c, s, n) = (c as i64, s as i64, n as i64);
    let act = b.slice_by_size(inp, &[0, 0, 0, 0], &[1, c, 1, s]).unwrap();
    let wt = b.slice_by_size(inp, &[0, 0, 0, s], &[1, c, 1, n]).unwrap();
    let a = b.reshape(&act, &[1, 1, c, s]).unwrap();
    let a = b.transpose(&a, &[0, 1, 3, 2]).unwrap();
    let wr = b.reshape(&wt, &[1, 1, c, n]).unwrap();
    let y = b.matmul(&a, &wr, false, false).unwrap();
    let y = b.transpose(&y, &[0, 1, 3, 2]).unwrap();
    b.reshape(&y, &[1, n, 1, s]).unwrap()
}

/// A scalar literal of a dtype (for programs that need one outside the blocks).
pub fn lit(dtype: DType, v: f64) -> Literal {
    Literal::scalar_f(dtype, v)
}
