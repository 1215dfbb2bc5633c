//! The SwiGLU feed-forward block: forward (RMSNorm, W1/W3, SiLU gate, W2, residual), backward dx
//! (recomputes the forward) and backward dW. The RMSNorm weight is folded into W̃1, W̃3.

use anyhow::Result;
use malus_mil::Var;

use super::dw::{self, Term};
use super::lora::{self, Path, plus_backward, plus_forward};
use super::packing::block::*;
use super::packing::{Axis, Packing};
use super::{KernelDef, KernelId, Mil, Shape};
use crate::model::Target;

/// The layers of this block an adapter can target, in the order of its low-rank paths.
pub const TARGETS: [Target; 3] = [Target::Gate, Target::Up, Target::Down];

/// The input of the forward and the backward: `dy` (the incoming gradient, unused by the
/// forward) and `x2` (`[dim, seq]` each), then `w1` = W̃1ᵀ, `w3` = W̃3ᵀ and `w2` = W2 as is
/// (dim × hidden each).
pub fn input(s: &Shape) -> Packing {
    let mut b = vec![
        (DY, s.seq),
        (X2, s.seq),
        (W1, s.hidden),
        (W3, s.hidden),
        (W2, s.hidden),
    ];
    b.extend(lora::weight_blocks(s, &TARGETS));
    Packing::new(Axis::Spatial, s.dim, &b)
}

pub fn forward_output(s: &Shape) -> Packing {
    Packing::new(Axis::Channel, s.seq, &[(X_NEXT, s.dim)])
}

pub fn backward_output(s: &Shape) -> Packing {
    Packing::new(
        Axis::Channel,
        s.seq,
        &[
            (DX2, s.dim),
            (XHAT, s.dim),
            (G, s.hidden),
            (DH1, s.hidden),
            (DH3, s.hidden),
        ],
    )
}

/// The dW kernel's input: the backward output with `dx2` replaced by the incoming `dy`.
pub fn dw_input(s: &Shape) -> Packing {
    backward_output(s).with_first(DY)
}

/// dW2 (dim × hidden), dW̃1ᵀ and dW̃3ᵀ (dim × hidden).
pub fn dw_output(s: &Shape) -> Packing {
    Packing::new(
        Axis::Channel,
        s.hidden,
        &[(DW2, s.dim), (DW1_T, s.dim), (DW3_T, s.dim)],
    )
}

/// dW2 = α·dy·gᵀ, dW̃1ᵀ = x̂·dh1ᵀ, dW̃3ᵀ = x̂·dh3ᵀ.
pub fn dw_terms() -> [Term; 3] {
    let p = |out, a, b, scaled| Term::Product { out, a, b, scaled };
    [
        p(DW2, DY, G, true),
        p(DW1_T, XHAT, DH1, false),
        p(DW3_T, XHAT, DH3, false),
    ]
}

struct Fwd {
    xhat: Var,
    r: Var,
    h1: Var,
    h3: Var,
    sig: Var,
    g: Var,
}

fn forward_body(
    m: &mut Mil,
    s: &Shape,
    x2: &Var,
    w1: &Var,
    w3: &Var,
    lora: &[Option<Path>; 3],
) -> Result<Fwd> {
    let (xhat, r) = m.rms_hat(x2, s.norm_eps)?;
    let h1 = m.matmul(w1, &xhat, true, false)?;
    let h1 = plus_forward(m, h1, &lora[0], &xhat)?;
    let h3 = m.matmul(w3, &xhat, true, false)?;
    let h3 = plus_forward(m, h3, &lora[1], &xhat)?;
    // SiLU as h1·σ(h1), the form maderix runs on the ANE.
    let sig = m.b.sigmoid(&h1).map_err(|e| anyhow::anyhow!("{e}"))?;
    let silu = m.mul(&h1, &sig)?;
    let g = m.mul(&silu, &h3)?;
    Ok(Fwd {
        xhat,
        r,
        h1,
        h3,
        sig,
        g,
    })
}

/// `x' = x2 + α·W2·(SiLU(W̃1 x̂2) ⊙ W̃3 x̂2)`.
pub fn forward(s: &Shape) -> Result<KernelDef> {
    let (inl, outl) = (input(s), forward_output(s));
    let mut m = Mil::new(s.dtype);
    let x = m.input(&inl);
    let [x2, w1, w3, w2] = m.blocks(&x, &inl, [X2, W1, W3, W2])?;
    let lp = lora::paths(&mut m, &x, &inl, s, TARGETS)?;
    let f = forward_body(&mut m, s, &x2, &w1, &w3, &lp)?;
    let y = m.matmul(&w2, &f.g, false, false)?;
    let y = plus_forward(&mut m, y, &lp[2], &f.g)?;
    let next = m.residual(&x2, &y, s.residual_scale)?;
    let out = m.output(&outl, &[(X_NEXT, &next)])?;
    KernelDef::new(KernelId::FfnFwd, m.finish(&out), Default::default(), inl, outl)
}

/// Backward dx of the FFN block (SiLU-gate backward and RMSNorm backward fused in).
pub fn backward(s: &Shape) -> Result<KernelDef> {
    let (inl, outl) = (input(s), backward_output(s));
    let mut m = Mil::new(s.dtype);
    let x = m.input(&inl);
    let [dy, x2, w1, w3, w2] = m.blocks(&x, &inl, [DY, X2, W1, W3, W2])?;
    let lp = lora::paths(&mut m, &x, &inl, s, TARGETS)?;
    let f = forward_body(&mut m, s, &x2, &w1, &w3, &lp)?;
    let dg = m.matmul(&w2, &dy, true, false)?;
    let dg = plus_backward(&mut m, dg, &lp[2], &dy)?;
    let dg = m.scale(&dg, s.residual_scale)?;
    // g = h1·σ·h3 → dh3 = dg·h1·σ; dh1 = dg·h3·σ·(1 + h1·(1 − σ))
    let silu = m.mul(&f.h1, &f.sig)?;
    let dh3 = m.mul(&dg, &silu)?;
    let one = m.scalar(1.0);
    let one_minus = m.sub(&one, &f.sig)?;
    let t = m.mul(&f.h1, &one_minus)?;
    let t = m.add(&one, &t)?;
    let t = m.mul(&f.sig, &t)?;
    let t = m.mul(&f.h3, &t)?;
    let dh1 = m.mul(&dg, &t)?;
    let a = m.matmul(&w1, &dh1, false, false)?;
    let a = plus_backward(&mut m, a, &lp[0], &dh1)?;
    let b = m.matmul(&w3, &dh3, false, false)?;
    let b = plus_backward(&mut m, b, &lp[1], &dh3)?;
    let dxhat = m.add(&a, &b)?;
    let dnorm = m.rms_hat_backward(&f.xhat, &f.r, &dxhat)?;
    let dx2 = m.add(&dy, &dnorm)?;
    let parts = [(DX2, &dx2), (XHAT, &f.xhat), (G, &f.g), (DH1, &dh1), (DH3, &dh3)];
    let out = m.output(&outl, &parts)?;
    KernelDef::new(KernelId::FfnBwd, m.finish(&out), Default::default(), inl, outl)
}

/// The weight gradients of [`dw_terms`].
pub fn dw(s: &Shape) -> Result<KernelDef> {
    dw::kernel(KernelId::FfnDw, s, dw_input(s), dw_output(s), &dw_terms())
}
