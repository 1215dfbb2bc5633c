//! f32 kernels of a host forward, one token at a time (decoding over a KV cache).
//!
//! Plain scalar arithmetic in a fixed order (std `exp`, eight-lane dot products), so a result
//! does not depend on the CPU's vector extensions or on the thread count: rayon splits only
//! independent rows or heads, never a sum. Kept apart from [`crate::reference`] on purpose: that
//! f64 reference is the independent check of these kernels, and of the device's.

use rayon::prelude::*;

/// Below this many multiply-adds a matvec (or attention) stays on one thread (rayon's overhead
/// dominates).
const PAR_MIN_WORK: usize = 1 << 16;

/// Eight independent partial sums, so the compiler can keep them in SIMD lanes without
/// reassociating floating-point adds itself.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0f32; 8];
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `out = W x` for a row-major `[out, in]` weight; rows split over threads when large.
pub fn matvec(w: &[f32], x: &[f32], out: &mut [f32]) {
    let rows = w.chunks_exact(x.len());
    debug_assert_eq!(rows.len(), out.len());
    if w.len() >= PAR_MIN_WORK {
        out.par_iter_mut()
            .zip(w.par_chunks_exact(x.len()))
            .with_min_len(16)
            .for_each(|(o, row)| *o = dot(row, x));
    } else {
        out.iter_mut().zip(rows).for_each(|(o, row)| *o = dot(row, x));
    }
}

/// `out = x / rms(x) · w`; the mean square is summed in f64 (a long row of f32 squares loses
/// digits otherwise).
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f64, out: &mut [f32]) {
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let r = (1.0 / (ms + eps).sqrt()) as f32;
    out.iter_mut()
        .zip(x.iter().zip(w))
        .for_each(|(o, (v, g))| *o = v * r * g);
}

/// Qwen3's q/k norm: each head's `hd` channels RMS-normalised, times a weight shared by all heads.
pub fn head_rmsnorm(v: &mut [f32], hd: usize, w: &[f32], eps: f64) {
    let mut n = vec![0.0; hd];
    for head in v.chunks_exact_mut(hd) {
        rmsnorm(head, w, eps, &mut n);
        head.copy_from_slice(&n);
    }
}

/// RoPE angle of channel pair `i` at position `pos`: `pos / θ^(2i/hd)` (llama2.c), in f64 since
/// angles reach `seq` radians. The device's cos/sin tables are built from it too.
pub fn rope_angle(theta: f64, head_dim: usize, i: usize, pos: usize) -> f64 {
    pos as f64 / theta.powf(2.0 * i as f64 / head_dim as f64)
}

/// `sin` and `cos` of every pair's [`rope_angle`] at `pos`, for [`rope`].
pub fn rope_sin_cos(theta: f64, head_dim: usize, pos: usize) -> (Vec<f32>, Vec<f32>) {
    (0..head_dim / 2)
        .map(|i| {
            let (s, c) = rope_angle(theta, head_dim, i, pos).sin_cos();
            (s as f32, c as f32)
        })
        .unzip()
}

/// Rotates each head of `v` by the angles of one position. malus's pairing (llama2.c): channels
/// (2i, 2i+1) of a head rotate together (Hugging Face's (i, i + hd/2) is permuted on import).
pub fn rope(v: &mut [f32], hd: usize, sin: &[f32], cos: &[f32]) {
    for head in v.chunks_exact_mut(hd) {
        for (pair, (s, c)) in head.chunks_exact_mut(2).zip(sin.iter().zip(cos)) {
            let (x0, x1) = (pair[0], pair[1]);
            pair[0] = x0 * c - x1 * s;
            pair[1] = x0 * s + x1 * c;
        }
    }
}

/// SwiGLU's gate, in place: `gate = silu(gate) · up`.
pub fn silu_gate(gate: &mut [f32], up: &[f32]) {
    gate.iter_mut()
        .zip(up)
        .for_each(|(g, u)| *g = *g / (1.0 + (-*g).exp()) * u);
}

/// `x += alpha · a` (a scaled residual branch).
pub fn add_scaled(x: &mut [f32], alpha: f32, a: &[f32]) {
    x.iter_mut().zip(a).for_each(|(xd, ad)| *xd += alpha * ad);
}

/// Softmax in place with std `exp` (not the executor's vectorised one, which
/// [`super::cross_entropy_in_place`] uses for speed): decoding stays the same on every CPU.
pub fn softmax(s: &mut [f32]) {
    let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut z = 0.0;
    s.iter_mut().for_each(|e| {
        *e = (*e - m).exp();
        z += *e;
    });
    s.iter_mut().for_each(|e| *e /= z);
}

/// Attention of one query `q` (`heads · hd`) over every cached position: `k` and `v` hold
/// `[pos][kv_heads · hd]`, and query head `h` reads kv head `h / group` (GQA). No mask is
/// needed: the cache holds only the past.
pub fn attend(q: &[f32], k: &[f32], v: &[f32], hd: usize, group: usize, o: &mut [f32]) {
    let kv_dim = q.len() / group;
    let len = k.len() / kv_dim;
    let scale = 1.0 / (hd as f32).sqrt();
    let head = |h: usize, oh: &mut [f32]| {
        let kvh = h / group;
        let at = |j: usize| j * kv_dim + kvh * hd..j * kv_dim + (kvh + 1) * hd;
        let qh = &q[h * hd..(h + 1) * hd];
        let mut p: Vec<f32> = (0..len).map(|j| dot(qh, &k[at(j)]) * scale).collect();
        softmax(&mut p);
        oh.fill(0.0);
        for (j, pj) in p.iter().enumerate() {
            add_scaled(oh, *pj, &v[at(j)]);
        }
    };
    if len * q.len() >= PAR_MIN_WORK {
        o.par_chunks_mut(hd).enumerate().for_each(|(h, oh)| head(h, oh));
    } else {
        o.chunks_mut(hd).enumerate().for_each(|(h, oh)| head(h, oh));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn matvec_is_the_same_on_one_thread_and_many() {
        let mut r = Rng::new(1);
        let (rows, cols) = (300, 257); // above PAR_MIN_WORK, with a dot tail
        let (w, x) = (r.uniform_vec(rows * cols, 1.0), r.uniform_vec(cols, 1.0));
        let mut par = vec![0.0; rows];
        matvec(&w, &x, &mut par);
        let serial: Vec<f32> = w.chunks_exact(cols).map(|row| dot(row, &x)).collect();
        assert_eq!(par, serial);
        let exact: f64 = w[..cols].iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((par[0] as f64 - exact).abs() < 1e-4);
    }

    #[test]
    fn rope_rotates_adjacent_pairs_and_keeps_norms() {
        // Position 1, θ = 1: every pair turns by 1 rad; pair 0 of head 1 is (e0 rotated).
        let (sin, cos) = rope_sin_cos(1.0, 4, 1);
        let (s, c) = (1f64.sin() as f32, 1f64.cos() as f32);
        assert_eq!((&sin[..], &cos[..]), (&[s, s][..], &[c, c][..]));
        let mut v = [1.0, 0.0, 0.0, 2.0, 0.0, 1.0, 3.0, 4.0];
        rope(&mut v, 4, &sin, &cos);
        assert_eq!(&v[..4], &[c, s, -2.0 * s, 2.0 * c]);
        assert!((v[4] * v[4] + v[5] * v[5] - 1.0).abs() < 1e-6);
        assert!((v[6] * v[6] + v[7] * v[7] - 25.0).abs() < 1e-5);
        assert_eq!(rope_angle(10000.0, 64, 0, 5), 5.0);
    }

    #[test]
    fn attention_over_one_position_returns_its_value_and_heads_share_kv() {
        let mut r = Rng::new(2);
        let (hd, group) = (4, 2);
        let q = r.uniform_vec(4 * hd, 1.0); // 4 query heads, 2 kv heads
        let (k, v) = (r.uniform_vec(2 * hd, 1.0), r.uniform_vec(2 * hd, 1.0));
        let mut o = vec![0.0; q.len()];
        attend(&q, &k, &v, hd, group, &mut o);
        assert_eq!(&o[..hd], &v[..hd]);
        assert_eq!(&o[hd..2 * hd], &v[..hd]);
        assert_eq!(&o[3 * hd..], &v[hd..]);
        // Two positions: a convex mix, weighted by the softmax of the scaled scores.
        let (k2, v2) = (
            [k.clone(), r.uniform_vec(2 * hd, 1.0)].concat(),
            [v.clone(), r.uniform_vec(2 * hd, 1.0)].concat(),
        );
        attend(&q, &k2, &v2, hd, group, &mut o);
        let mut p = [
            dot(&q[..hd], &k2[..hd]) / 2.0,
            dot(&q[..hd], &k2[2 * hd..3 * hd]) / 2.0,
        ];
        softmax(&mut p);
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6);
        let want = p[0] * v2[0] + p[1] * v2[2 * hd];
        assert!((o[0] - want).abs() < 1e-6);
    }

    #[test]
    fn norms_and_gate_by_hand() {
        let mut n = [0.0; 2];
        rmsnorm(&[3.0, 4.0], &[1.0, 2.0], 0.0, &mut n);
        let r = (12.5f32).sqrt();
        assert!((n[0] - 3.0 / r).abs() < 1e-6 && (n[1] - 8.0 / r).abs() < 1e-6);
        let mut heads = [3.0, 4.0, 3.0, 4.0];
        head_rmsnorm(&mut heads, 2, &[1.0, 2.0], 0.0);
        assert_eq!(&heads[..2], &n);
        assert_eq!(&heads[2..], &n);
        let mut g = [0.0, 2.0];
        silu_gate(&mut g, &[5.0, 3.0]);
        assert_eq!(g[0], 0.0);
        assert!((g[1] - 2.0 / (1.0 + (-2f32).exp()) * 3.0).abs() < 1e-6);
        let mut x = [1.0, 1.0];
        add_scaled(&mut x, 0.5, &[2.0, -4.0]);
        assert_eq!(x, [2.0, -1.0]);
    }
}
