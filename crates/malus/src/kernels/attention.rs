//! The attention block: forward (RMSNorm, QKV, optional per-head q/k RMSNorm, RoPE, causal
//! attention, output projection, residual), backward dx (recomputes the forward) and backward dW.
//!
//! RMSNorm weights are folded into the staged Wq/Wk/Wv (see `kernels` module docs), so the kernels
//! only normalise. Qwen3's q/k norm weights cannot be folded (RoPE follows them), so they travel
//! in a block of their own (see [`NORM_BLOCK`]).

use anyhow::{Result, anyhow};
use malus_mil::Var;

use super::dw::{self, Term};
use super::lora::{self, Path, plus_backward, plus_forward};
use super::packing::block::*;
use super::packing::{Axis, Block, Packing};
use super::{Consts, KernelDef, KernelId, Mil, Shape};
use crate::model::Target;

/// The layers of this block an adapter can target, in the order of its low-rank paths.
pub const TARGETS: [Target; 4] = [Target::Q, Target::K, Target::V, Target::O];

/// Width of the q/k-norm weight block of the attention input: column 0 is the q_norm weight,
/// column 1 the k_norm weight, each in rows `0..head_dim` (the rest is zero). Two columns would
/// do; 32 keeps the input width a multiple of 32, which ANE surfaces need (lint
/// `ane-width-align`).
pub const NORM_BLOCK: usize = 32;

/// The forward reads the backward's input layout (ignoring its gradient block), so one staged
/// input per layer serves both kernels and weights are staged once per update:
/// `wq` = W̃qᵀ (dim × q), `wk`/`wv` = W̃k/vᵀ (dim × kv), `wo` = Wo as is (dim × q), and with
/// q/k norm `qk_norm` ([`norm_block`]).
fn weight_blocks(s: &Shape) -> Vec<(Block, usize)> {
    let mut b = vec![(WQ, s.q_dim), (WK, s.kv_dim), (WV, s.kv_dim), (WO, s.q_dim)];
    if s.qk_norm {
        b.push((QK_NORM, NORM_BLOCK));
    }
    b.extend(lora::weight_blocks(s, &TARGETS));
    b
}

/// The input of the forward and the backward: `dx2` (the incoming gradient, unused by the
/// forward) and `x` (`[dim, seq]` each), then the weights.
pub fn input(s: &Shape) -> Packing {
    let mut b = vec![(DX2, s.seq), (X, s.seq)];
    b.extend(weight_blocks(s));
    Packing::new(Axis::Spatial, s.dim, &b)
}

pub fn forward_output(s: &Shape) -> Packing {
    Packing::new(Axis::Channel, s.seq, &[(X2, s.dim)])
}

/// The staged `qk_norm` block, row-major `[dim, NORM_BLOCK]`.
pub fn norm_block(s: &Shape, q_norm: &[f32], k_norm: &[f32]) -> Vec<f32> {
    let mut b = vec![0.0f32; s.dim * NORM_BLOCK];
    for (d, (q, k)) in q_norm.iter().zip(k_norm).enumerate() {
        b[d * NORM_BLOCK] = *q;
        b[d * NORM_BLOCK + 1] = *k;
    }
    b
}

/// What the backward hands to the dW kernel (and to the host for `--dw host`). With q/k norm,
/// `gq`/`gk` are Σ_heads q̂ ⊙ ∂L/∂q_normed per token (`[hd, seq]`); their sum over tokens is the
/// norm weights' gradient.
pub fn backward_output(s: &Shape) -> Packing {
    let mut b = vec![
        (DX, s.dim),
        (XHAT, s.dim),
        (DQ, s.q_dim),
        (DK, s.kv_dim),
        (DV, s.kv_dim),
        (O, s.q_dim),
    ];
    if s.qk_norm {
        b.extend([(GQ, s.head_dim), (GK, s.head_dim)]);
    }
    Packing::new(Axis::Channel, s.seq, &b)
}

/// The dW kernel's input: the backward output with `dx` replaced by the incoming `dx2`.
pub fn dw_input(s: &Shape) -> Packing {
    backward_output(s).with_first(DX2)
}

/// dW̃q (q × dim), dW̃k, dW̃v (kv × dim), dWoᵀ (q × dim); with q/k norm one row each for the
/// q_norm and k_norm weight gradients (the first `head_dim` of `dim` columns).
pub fn dw_output(s: &Shape) -> Packing {
    let rows: Vec<(Block, usize)> = dw_terms(s)
        .iter()
        .map(|t| (t.out(), dw_rows(s, t.out())))
        .collect();
    Packing::new(Axis::Channel, s.dim, &rows)
}

fn dw_rows(s: &Shape, b: Block) -> usize {
    match b {
        DWQ | DWO_T => s.q_dim,
        DWK | DWV => s.kv_dim,
        _ => 1,
    }
}

/// dW̃q = dq·x̂ᵀ, dW̃k = dk·x̂ᵀ, dW̃v = dv·x̂ᵀ, dWoᵀ = α·o·dx2ᵀ; with q/k norm the norm weights'
/// gradients are the taps summed over tokens.
pub fn dw_terms(s: &Shape) -> Vec<Term> {
    let p = |out, a, b, scaled| Term::Product { out, a, b, scaled };
    let mut t = vec![
        p(DWQ, DQ, XHAT, false),
        p(DWK, DK, XHAT, false),
        p(DWV, DV, XHAT, false),
        p(DWO_T, O, DX2, true),
    ];
    if s.qk_norm {
        t.push(Term::TokenSum { out: DQ_NORM, a: GQ });
        t.push(Term::TokenSum { out: DK_NORM, a: GK });
    }
    t
}

/// One per-head RMSNorm (q or k) as the backward needs it: `[heads, hd, 1, S]` normalised
/// values, their inverse RMS and the `[1, hd, 1, 1]` weight.
struct HeadNorm {
    heads: usize,
    hat: Var,
    r: Var,
    w: Var,
}

/// The q_norm and k_norm weights `[1, hd, 1, 1]`, cut from the input's `qk_norm` block.
fn norm_weights(m: &mut Mil, x: &Var, inl: &Packing, s: &Shape) -> Result<Option<[Var; 2]>> {
    if !s.qk_norm {
        return Ok(None);
    }
    let off = inl.slot(QK_NORM)?.offset as i64;
    let hd = s.head_dim as i64;
    let mut cut = |col: i64| {
        m.b.slice_by_size(x, &[0, 0, 0, off + col], &[1, hd, 1, 1])
            .map_err(|e| anyhow!("{e}"))
    };
    Ok(Some([cut(0)?, cut(1)?]))
}

/// RMSNorm over each head's `hd` channels of `[1, heads·hd, 1, S]`, times a weight shared by
/// all heads (Hugging Face Qwen3's q_norm/k_norm).
fn head_norm(m: &mut Mil, s: &Shape, x: &Var, heads: usize, w: Var) -> Result<(Var, HeadNorm)> {
    let x4 = m.reshape(x, &[heads, s.head_dim, 1, s.seq])?;
    let (hat, r) = m.rms_hat(&x4, s.norm_eps)?;
    let y = m.mul(&hat, &w)?;
    let y = m.reshape(&y, &[1, heads * s.head_dim, 1, s.seq])?;
    Ok((y, HeadNorm { heads, hat, r, w }))
}

/// Backward of [`head_norm`]: `(dx, Σ_heads x̂ ⊙ dy)`, the second `[1, hd, 1, S]` (the weight
/// gradient before its sum over tokens).
fn head_norm_backward(m: &mut Mil, s: &Shape, n: &HeadNorm, dy: &Var) -> Result<(Var, Var)> {
    let (h, hd, seq) = (n.heads, s.head_dim, s.seq);
    let dy4 = m.reshape(dy, &[h, hd, 1, seq])?;
    let p = m.mul(&n.hat, &dy4)?;
    // Heads onto the channel axis, so the sum over heads is a channel reduction.
    let p = m.reshape(&p, &[1, h, hd, seq])?;
    let gw = m.channel_sum(&p)?;
    let gw = m.reshape(&gw, &[1, hd, 1, seq])?;
    let dhat = m.mul(&dy4, &n.w)?;
    let dx = m.rms_hat_backward(&n.hat, &n.r, &dhat)?;
    let dx = m.reshape(&dx, &[1, h * hd, 1, seq])?;
    Ok((dx, gw))
}

/// Forward intermediates the backward recomputes.
struct Fwd {
    xhat: Var,
    r: Var,
    qh: Var,
    kt: Var,
    vt: Var,
    p: Var,
    o: Var,
    /// q and k norms, with q/k norm.
    norms: Option<[HeadNorm; 2]>,
}

fn forward_body(
    m: &mut Mil,
    s: &Shape,
    k: &mut Consts,
    x: &Var,
    w: [&Var; 3],
    norm_w: Option<[Var; 2]>,
    lora: &[Option<Path>; 4],
) -> Result<Fwd> {
    let (xhat, r) = m.rms_hat(x, s.norm_eps)?;
    let q = m.matmul(w[0], &xhat, true, false)?;
    let q = plus_forward(m, q, &lora[0], &xhat)?;
    let kk = m.matmul(w[1], &xhat, true, false)?;
    let kk = plus_forward(m, kk, &lora[1], &xhat)?;
    let v = m.matmul(w[2], &xhat, true, false)?;
    let v = plus_forward(m, v, &lora[2], &xhat)?;
    let (q, kk, norms) = match norm_w {
        Some([wq, wk]) => {
            let (q, nq) = head_norm(m, s, &q, s.heads, wq)?;
            let (kk, nk) = head_norm(m, s, &kk, s.kv_heads, wk)?;
            (q, kk, Some([nq, nk]))
        }
        None => (q, kk, None),
    };
    let cos = k.cos(m)?;
    let sin = k.sin(m)?;
    let qr = m.rope(&q, s.heads, s.head_dim, &cos, &sin, false)?;
    let kr = m.rope(&kk, s.kv_heads, s.head_dim, &cos, &sin, false)?;
    let group = s.heads / s.kv_heads;
    let kt = m.repeat_kv(&kr, s.kv_heads, group)?;
    let vt = m.repeat_kv(&v, s.kv_heads, group)?;
    let heads4 = [1, s.heads, s.head_dim, s.seq];
    let qh = m.reshape(&qr, &heads4)?;
    let kt = m.reshape(&kt, &heads4)?;
    let vt = m.reshape(&vt, &heads4)?;
    let scores =
        m.b.matmul(&qh, &kt, true, false)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let scaled = m.scale(&scores, 1.0 / (s.head_dim as f64).sqrt())?;
    let mask = k.mask(m)?;
    let masked = m.add(&scaled, &mask)?;
    let p = m.b.softmax(&masked, -1).map_err(|e| anyhow::anyhow!("{e}"))?;
    let oh =
        m.b.matmul(&vt, &p, false, true)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let o = m.reshape(&oh, &[1, s.q_dim, 1, s.seq])?;
    Ok(Fwd {
        xhat,
        r,
        qh,
        kt,
        vt,
        p,
        o,
        norms,
    })
}

/// `x2 = x + α·Wo·Attn(RoPE(W̃q x̂), RoPE(W̃k x̂), W̃v x̂)`, with each head of W̃q x̂ and W̃k x̂
/// RMS-normalised (times its weight) before RoPE under q/k norm.
pub fn forward(s: &Shape) -> Result<KernelDef> {
    let (inl, outl) = (input(s), forward_output(s));
    let mut m = Mil::new(s.dtype);
    let mut k = Consts::new(s);
    let x = m.input(&inl);
    let [xa, wq, wk, wv, wo] = m.blocks(&x, &inl, [X, WQ, WK, WV, WO])?;
    let nw = norm_weights(&mut m, &x, &inl, s)?;
    let lp = lora::paths(&mut m, &x, &inl, s, TARGETS)?;
    let f = forward_body(&mut m, s, &mut k, &xa, [&wq, &wk, &wv], nw, &lp)?;
    let y = m.matmul(&wo, &f.o, false, false)?;
    let y = plus_forward(&mut m, y, &lp[3], &f.o)?;
    let x2 = m.residual(&xa, &y, s.residual_scale)?;
    let out = m.output(&outl, &[(X2, &x2)])?;
    KernelDef::new(KernelId::AttnFwd, m.finish(&out), k.into_weights(), inl, outl)
}

/// Backward dx of the attention block; also returns the taps the dW products need.
pub fn backward(s: &Shape) -> Result<KernelDef> {
    backward_into(s, backward_output(s))
}

/// [`backward`] emitting into the output packing `outl` (the declared one, or in tests a
/// mis-declared one, which the output check must refuse).
fn backward_into(s: &Shape, outl: Packing) -> Result<KernelDef> {
    let inl = input(s);
    let mut m = Mil::new(s.dtype);
    let mut k = Consts::new(s);
    let x = m.input(&inl);
    let [dx2, xa, wq, wk, wv, wo] = m.blocks(&x, &inl, [DX2, X, WQ, WK, WV, WO])?;
    let nw = norm_weights(&mut m, &x, &inl, s)?;
    let lp = lora::paths(&mut m, &x, &inl, s, TARGETS)?;
    let f = forward_body(&mut m, s, &mut k, &xa, [&wq, &wk, &wv], nw, &lp)?;
    let e = |e: malus_mil::InferError| anyhow::anyhow!("{e}");
    // do = α·(Woᵀ + s·Ãoᵀ·Boᵀ)·dx2
    let do_ = m.matmul(&wo, &dx2, true, false)?;
    let do_ = plus_backward(&mut m, do_, &lp[3], &dx2)?;
    let do_ = m.scale(&do_, s.residual_scale)?;
    let doh = m.reshape(&do_, &[1, s.heads, s.head_dim, s.seq])?;
    // o = v·Pᵀ per head → dv = do·P, dP = doᵀ·v
    let dvt = m.b.matmul(&doh, &f.p, false, false).map_err(e)?;
    let dp = m.b.matmul(&doh, &f.vt, true, false).map_err(e)?;
    // dS = P ⊙ (dP − Σ_j P⊙dP) / √hd
    let pdp = m.mul(&f.p, &dp)?;
    let rows = m.b.reduce_sum(&pdp, &[-1], true).map_err(e)?;
    let centred = m.sub(&dp, &rows)?;
    let ds = m.mul(&f.p, &centred)?;
    let ds = m.scale(&ds, 1.0 / (s.head_dim as f64).sqrt())?;
    // scores = qᵀk → dq = k·dSᵀ, dk = q·dS
    let dqh = m.b.matmul(&f.kt, &ds, false, true).map_err(e)?;
    let dkt = m.b.matmul(&f.qh, &ds, false, false).map_err(e)?;
    let dq = m.reshape(&dqh, &[1, s.q_dim, 1, s.seq])?;
    let dkt = m.reshape(&dkt, &[1, s.q_dim, 1, s.seq])?;
    let dvt = m.reshape(&dvt, &[1, s.q_dim, 1, s.seq])?;
    let group = s.heads / s.kv_heads;
    let dk = m.reduce_kv(&dkt, s.kv_heads, group)?;
    let dv = m.reduce_kv(&dvt, s.kv_heads, group)?;
    let cos = k.cos(&mut m)?;
    let sin = k.sin(&mut m)?;
    let dq = m.rope(&dq, s.heads, s.head_dim, &cos, &sin, true)?;
    let dk = m.rope(&dk, s.kv_heads, s.head_dim, &cos, &sin, true)?;
    let mut taps = Vec::new();
    let (dq, dk) = match &f.norms {
        Some([nq, nk]) => {
            let (dq, gq) = head_norm_backward(&mut m, s, nq, &dq)?;
            let (dk, gk) = head_norm_backward(&mut m, s, nk, &dk)?;
            taps.extend([gq, gk]);
            (dq, dk)
        }
        None => (dq, dk),
    };
    let a = m.matmul(&wq, &dq, false, false)?;
    let a = plus_backward(&mut m, a, &lp[0], &dq)?;
    let b = m.matmul(&wk, &dk, false, false)?;
    let b = plus_backward(&mut m, b, &lp[1], &dk)?;
    let c = m.matmul(&wv, &dv, false, false)?;
    let c = plus_backward(&mut m, c, &lp[2], &dv)?;
    let ab = m.add(&a, &b)?;
    let dxhat = m.add(&ab, &c)?;
    let dnorm = m.rms_hat_backward(&f.xhat, &f.r, &dxhat)?;
    let dx = m.add(&dx2, &dnorm)?;
    let mut parts = vec![
        (DX, &dx),
        (XHAT, &f.xhat),
        (DQ, &dq),
        (DK, &dk),
        (DV, &dv),
        (O, &f.o),
    ];
    parts.extend([GQ, GK].into_iter().zip(taps.iter()));
    let out = m.output(&outl, &parts)?;
    KernelDef::new(KernelId::AttnBwd, m.finish(&out), k.into_weights(), inl, outl)
}

/// The weight gradients of [`dw_terms`].
pub fn dw(s: &Shape) -> Result<KernelDef> {
    dw::kernel(KernelId::AttnDw, s, dw_input(s), dw_output(s), &dw_terms(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Config;
    use malus_mil::DType;

    /// Under MHA `dq` and `dk` have the same shape, so swapping them in the declaration passes
    /// every shape check; the output check by name must still refuse the kernel.
    #[test]
    fn a_mis_wired_output_block_is_refused() {
        let s = Shape::new(&Config::preset("tiny").unwrap(), DType::Fp32).unwrap();
        assert_eq!(s.q_dim, s.kv_dim);
        let mut swapped = backward_output(&s);
        let (i, j) = (swapped.slot(DQ).unwrap().offset, swapped.slot(DK).unwrap().offset);
        assert_eq!(swapped.shape(), backward_output(&s).shape());
        for slot in &mut swapped.slots {
            slot.block = match slot.block {
                DQ => DK,
                DK => DQ,
                b => b,
            };
        }
        assert_ne!(i, j);
        let err = backward_into(&s, swapped).expect_err("a swapped declaration must not build");
        let msg = format!("{err:#}");
        assert!(msg.contains("do not match the declared output"), "{msg}");
        assert!(
            msg.contains("dx, xhat, dq, dk") && msg.contains("dx, xhat, dk, dq"),
            "{msg}"
        );
        backward_into(&s, backward_output(&s)).unwrap();
    }
}
