//! The classifier over one vocabulary chunk (final RMSNorm folded in), its backward dx and dW,
//! and the final RMSNorm's backward, which needs the dx̂ summed over every chunk.

use anyhow::Result;

use super::common::{Axis, Layout, Mil};
use super::{KernelDef, Shape};

pub fn forward_layout(s: &Shape) -> Layout {
    Layout::new(Axis::Spatial, s.dim, &[("x", s.seq), ("e", s.vocab_chunk)])
}

pub fn forward_output_layout(s: &Shape) -> Layout {
    Layout::new(
        Axis::Channel,
        s.seq,
        &[("logits", s.vocab_chunk), ("xhat", s.dim)],
    )
}

pub fn backward_layout(s: &Shape) -> Layout {
    Layout::new(Axis::Spatial, s.vocab_chunk, &[("dlogits", s.seq), ("e", s.dim)])
}

pub fn dw_layout(s: &Shape) -> Layout {
    Layout::new(
        Axis::Channel,
        s.seq,
        &[("dlogits", s.vocab_chunk), ("xhat", s.dim)],
    )
}

pub fn norm_backward_layout(s: &Shape) -> Layout {
    Layout::new(Axis::Spatial, s.dim, &[("dxhat", s.seq), ("x", s.seq)])
}

/// `logits = Ẽ_chunk · x̂` with `e` = Ẽ_chunkᵀ (dim × chunk), Ẽ = E·diag(w_final).
pub fn forward(s: &Shape) -> Result<KernelDef> {
    let inl = forward_layout(s);
    let mut m = Mil::new(s.dtype);
    let x = m.input(&inl);
    let xa = m.block(&x, &inl, "x")?;
    let e = m.block(&x, &inl, "e")?;
    let (xhat, _) = m.rms_hat(&xa, s.eps)?;
    let logits = m.matmul(&e, &xhat, true, false)?;
    let out = m.output(&[&logits, &xhat])?;
    KernelDef::new(
        "cls_fwd",
        m.finish(&out),
        Default::default(),
        inl,
        forward_output_layout(s),
    )
}

/// This chunk's share of dx̂ = Ẽ_chunkᵀ·dlogits, with `e` = Ẽ_chunk as is (chunk × dim).
pub fn backward(s: &Shape) -> Result<KernelDef> {
    let inl = backward_layout(s);
    let mut m = Mil::new(s.dtype);
    let x = m.input(&inl);
    let dl = m.block(&x, &inl, "dlogits")?;
    let e = m.block(&x, &inl, "e")?;
    let dxhat = m.matmul(&e, &dl, true, false)?;
    let out = m.output(&[&dxhat])?;
    let outl = Layout::new(Axis::Channel, s.seq, &[("dxhat", s.dim)]);
    KernelDef::new("cls_bwd", m.finish(&out), Default::default(), inl, outl)
}

/// dẼ_chunk = dlogits·x̂ᵀ (chunk × dim).
pub fn dw(s: &Shape) -> Result<KernelDef> {
    let inl = dw_layout(s);
    let mut m = Mil::new(s.dtype);
    let x = m.input(&inl);
    let dl = m.block(&x, &inl, "dlogits")?;
    let xhat = m.block(&x, &inl, "xhat")?;
    let de = m.matmul(&dl, &xhat, false, true)?;
    let out = m.output(&[&de])?;
    let outl = Layout::new(Axis::Channel, s.dim, &[("de", s.vocab_chunk)]);
    KernelDef::new("cls_dw", m.finish(&out), Default::default(), inl, outl)
}

/// The final RMSNorm's backward: dx from dx̂ and the recomputed x̂.
pub fn norm_backward(s: &Shape) -> Result<KernelDef> {
    let inl = norm_backward_layout(s);
    let mut m = Mil::new(s.dtype);
    let x = m.input(&inl);
    let dxhat = m.block(&x, &inl, "dxhat")?;
    let xa = m.block(&x, &inl, "x")?;
    let (xhat, r) = m.rms_hat(&xa, s.eps)?;
    let dx = m.rms_hat_backward(&xhat, &r, &dxhat)?;
    let out = m.output(&[&dx])?;
    let outl = Layout::new(Axis::Channel, s.seq, &[("dx", s.dim)]);
    KernelDef::new("norm_bwd", m.finish(&out), Default::default(), inl, outl)
}
