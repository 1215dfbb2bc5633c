//! A host-only f64 reference of the model, written independently of the kernels (plain loops,
//! position-major), used to check the device step's loss and gradients.

use crate::model::{Adapters, Config, Params, Target};

fn rmsnorm(x: &[f64], w: &[f32], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, &g)| v * r * g as f64).collect()
}

/// `y = W x` for a row-major `[out, in]` weight.
fn matvec(w: &[f32], x: &[f64]) -> Vec<f64> {
    w.chunks_exact(x.len())
        .map(|row| row.iter().zip(x).map(|(&a, b)| a as f64 * b).sum())
        .collect()
}

/// `y = W x + s·B·(A x)` with the adapter of `target` in `layer`, if `lora` has one.
fn linear(w: &[f32], x: &[f64], lora: Option<&Adapters>, layer: usize, target: Target) -> Vec<f64> {
    let mut y = matvec(w, x);
    if let Some(ad) = lora
        && let Some(a) = ad.get(layer, target)
    {
        let u = matvec(&ad.tensors[a.a].data, x);
        let s = ad.lora.scale();
        for (yo, d) in y.iter_mut().zip(matvec(&ad.tensors[a.b].data, &u)) {
            *yo += s * d;
        }
    }
    y
}

fn rope(v: &mut [f64], heads: usize, hd: usize, pos: usize, theta: f64) {
    for h in 0..heads {
        for i in 0..hd / 2 {
            let a = pos as f64 / theta.powf(2.0 * i as f64 / hd as f64);
            let (s, c) = a.sin_cos();
            let (x0, x1) = (v[h * hd + 2 * i], v[h * hd + 2 * i + 1]);
            v[h * hd + 2 * i] = x0 * c - x1 * s;
            v[h * hd + 2 * i + 1] = x0 * s + x1 * c;
        }
    }
}

/// Qwen3's q/k norm: an RMSNorm over each head's `hd` channels, one weight shared by all heads.
fn head_rmsnorm(v: &mut [f64], hd: usize, w: &[f32], eps: f64) {
    for head in v.chunks_exact_mut(hd) {
        let n = rmsnorm(head, w, eps);
        head.copy_from_slice(&n);
    }
}

/// Logits `[seq][vocab]` for `tokens[..seq]`.
pub fn logits(c: &Config, p: &Params, tokens: &[u32]) -> Vec<Vec<f64>> {
    logits_with(c, p, None, tokens)
}

/// [`logits`] of the model with LoRA adapters added to its linear layers.
pub fn logits_with(c: &Config, p: &Params, lora: Option<&Adapters>, tokens: &[u32]) -> Vec<Vec<f64>> {
    let t = |i: usize| &p.tensors[i].data;
    let seq = tokens.len();
    let (hd, group) = (c.head_dim, c.heads / c.kv_heads);
    let mut x: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&tok| {
            t(p.embed)[tok as usize * c.dim..(tok as usize + 1) * c.dim]
                .iter()
                .map(|&v| v as f64)
                .collect()
        })
        .collect();
    for (li, l) in p.layers.iter().enumerate() {
        let lin = |w: usize, x: &[f64], target| linear(t(w), x, lora, li, target);
        let mut q = Vec::new();
        let mut k = Vec::new();
        let mut v = Vec::new();
        for (s, xs) in x.iter().enumerate() {
            let n = rmsnorm(xs, t(l.attn_norm), c.norm_eps);
            let mut qs = lin(l.wq, &n, Target::Q);
            let mut ks = lin(l.wk, &n, Target::K);
            if let (Some(qn), Some(kn)) = (l.q_norm, l.k_norm) {
                head_rmsnorm(&mut qs, hd, t(qn), c.norm_eps);
                head_rmsnorm(&mut ks, hd, t(kn), c.norm_eps);
            }
            rope(&mut qs, c.heads, hd, s, c.rope_theta);
            rope(&mut ks, c.kv_heads, hd, s, c.rope_theta);
            q.push(qs);
            k.push(ks);
            v.push(lin(l.wv, &n, Target::V));
        }
        for i in 0..seq {
            let mut o = vec![0.0; c.q_dim()];
            for h in 0..c.heads {
                let kvh = h / group;
                let scores: Vec<f64> = (0..=i)
                    .map(|j| {
                        (0..hd)
                            .map(|d| q[i][h * hd + d] * k[j][kvh * hd + d])
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, ej) in e.iter().enumerate() {
                    for d in 0..hd {
                        o[h * hd + d] += ej / z * v[j][kvh * hd + d];
                    }
                }
            }
            let a = lin(l.wo, &o, Target::O);
            for (xd, ad) in x[i].iter_mut().zip(a) {
                *xd += c.residual_scale * ad;
            }
        }
        for xs in x.iter_mut() {
            let n = rmsnorm(xs, t(l.ffn_norm), c.norm_eps);
            let h1 = lin(l.w1, &n, Target::Gate);
            let h3 = lin(l.w3, &n, Target::Up);
            let g: Vec<f64> = h1
                .iter()
                .zip(&h3)
                .map(|(a, b)| a / (1.0 + (-a).exp()) * b)
                .collect();
            let y = lin(l.w2, &g, Target::Down);
            for (xd, yd) in xs.iter_mut().zip(y) {
                *xd += c.residual_scale * yd;
            }
        }
    }
    x.iter()
        .map(|xs| matvec(t(p.classifier()), &rmsnorm(xs, t(p.final_norm), c.norm_eps)))
        .collect()
}

/// Mean cross-entropy of predicting `tokens[s + 1]` from `tokens[..=s]`, for `s < seq`.
pub fn loss(c: &Config, p: &Params, tokens: &[u32]) -> f64 {
    loss_with(c, p, None, tokens)
}

/// [`loss`] of the model with LoRA adapters.
pub fn loss_with(c: &Config, p: &Params, lora: Option<&Adapters>, tokens: &[u32]) -> f64 {
    let seq = tokens.len() - 1;
    let lg = logits_with(c, p, lora, &tokens[..seq]);
    lg.iter()
        .zip(&tokens[1..])
        .map(|(row, &target)| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            lse - row[target as usize]
        })
        .sum::<f64>()
        / seq as f64
}
