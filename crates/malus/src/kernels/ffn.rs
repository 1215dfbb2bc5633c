//! The SwiGLU feed-forward block: forward (RMSNorm, W1/W3, SiLU gate, W2, residual), backward dx
//! (recomputes the forward) and backward dW. The RMSNorm weight is folded into W̃1, W̃3.

use anyhow::Result;
use malus_mil::Var;

use super::common::{Axis, Layout, Mil};
use super::{KernelDef, Shape};

/// `w1` = W̃1ᵀ, `w3` = W̃3ᵀ (dim × hidden), `w2` = W2 as is (dim × hidden).
fn weight_blocks(s: &Shape) -> [(&'static str, usize); 3] {
    [("w1", s.hidden), ("w3", s.hidden), ("w2", s.hidden)]
}

pub fn backward_layout(s: &Shape) -> Layout {
    let mut b = vec![("dy", s.seq), ("x2", s.seq)];
    b.extend(weight_blocks(s));
    Layout::new(Axis::Spatial, s.dim, &b)
}

pub fn backward_output_layout(s: &Shape) -> Layout {
    Layout::new(
        Axis::Channel,
        s.seq,
        &[
            ("dx2", s.dim),
            ("xhat", s.dim),
            ("g", s.hidden),
            ("dh1", s.hidden),
            ("dh3", s.hidden),
        ],
    )
}

/// The dW kernel's input: the backward output with `dx2` replaced by the incoming `dy`.
pub fn dw_layout(s: &Shape) -> Layout {
    let mut l = backward_output_layout(s);
    l.slots[0].name = "dy".into();
    l
}

/// dW2 (dim × hidden), dW̃1ᵀ and dW̃3ᵀ (dim × hidden).
pub fn dw_output_layout(s: &Shape) -> Layout {
    Layout::new(
        Axis::Channel,
        s.hidden,
        &[("dw2", s.dim), ("dw1_t", s.dim), ("dw3_t", s.dim)],
    )
}

struct Fwd {
    xhat: Var,
    r: Var,
    h1: Var,
    h3: Var,
    sig: Var,
    g: Var,
}

fn forward_body(m: &mut Mil, s: &Shape, x2: &Var, w1: &Var, w3: &Var) -> Result<Fwd> {
    let (xhat, r) = m.rms_hat(x2, s.eps)?;
    let h1 = m.matmul(w1, &xhat, true, false)?;
    let h3 = m.matmul(w3, &xhat, true, false)?;
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
    let inl = backward_layout(s);
    let mut m = Mil::new(s.dtype);
    let x = m.input(&inl);
    let [x2, w1, w3, w2] = ["x2", "w1", "w3", "w2"].map(|n| m.block(&x, &inl, n));
    let (x2, w1, w3, w2) = (x2?, w1?, w3?, w2?);
    let f = forward_body(&mut m, s, &x2, &w1, &w3)?;
    let y = m.matmul(&w2, &f.g, false, false)?;
    let out = m.residual(&x2, &y, s.alpha)?;
    let out = m.output(&[&out])?;
    let outl = Layout::new(Axis::Channel, s.seq, &[("x_next", s.dim)]);
    KernelDef::new("ffn_fwd", m.finish(&out), Default::default(), inl, outl)
}

/// Backward dx of the FFN block (SiLU-gate backward and RMSNorm backward fused in).
pub fn backward(s: &Shape) -> Result<KernelDef> {
    let inl = backward_layout(s);
    let mut m = Mil::new(s.dtype);
    let x = m.input(&inl);
    let [dy, x2, w1, w3, w2] = ["dy", "x2", "w1", "w3", "w2"].map(|n| m.block(&x, &inl, n));
    let (dy, x2, w1, w3, w2) = (dy?, x2?, w1?, w3?, w2?);
    let f = forward_body(&mut m, s, &x2, &w1, &w3)?;
    let dg = m.matmul(&w2, &dy, true, false)?;
    let dg = m.scale(&dg, s.alpha)?;
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
    let b = m.matmul(&w3, &dh3, false, false)?;
    let dxhat = m.add(&a, &b)?;
    let dnorm = m.rms_hat_backward(&f.xhat, &f.r, &dxhat)?;
    let dx2 = m.add(&dy, &dnorm)?;
    let out = m.output(&[&dx2, &f.xhat, &f.g, &dh1, &dh3])?;
    KernelDef::new(
        "ffn_bwd",
        m.finish(&out),
        Default::default(),
        inl,
        backward_output_layout(s),
    )
}

/// Weight gradients, each a matmul contracting over tokens.
pub fn dw(s: &Shape) -> Result<KernelDef> {
    let inl = dw_layout(s);
    let mut m = Mil::new(s.dtype);
    let x = m.input(&inl);
    let [dy, xhat, g, dh1, dh3] = ["dy", "xhat", "g", "dh1", "dh3"].map(|n| m.block(&x, &inl, n));
    let (dy, xhat, g, dh1, dh3) = (dy?, xhat?, g?, dh1?, dh3?);
    let dw2 = m.matmul(&dy, &g, false, true)?;
    let dw2 = m.scale(&dw2, s.alpha)?;
    let dw1 = m.matmul(&xhat, &dh1, false, true)?;
    let dw3 = m.matmul(&xhat, &dh3, false, true)?;
    let out = m.output(&[&dw2, &dw1, &dw3])?;
    KernelDef::new(
        "ffn_dw",
        m.finish(&out),
        Default::default(),
        inl,
        dw_output_layout(s),
    )
}
