//! The classifier over one vocabulary chunk (final RMSNorm folded in), its backward dx and dW,
//! and the final RMSNorm's backward, which needs the dx̂ summed over every chunk.

use anyhow::Result;

use super::dw::{self, Term};
use super::packing::block::*;
use super::packing::{Axis, Packing};
use super::{KernelDef, KernelId, Mil, Shape};

/// `x` `[dim, seq]` and `e` = Ẽ_chunkᵀ (dim × chunk), Ẽ = E·diag(w_final).
pub fn forward_input(s: &Shape) -> Packing {
    Packing::new(Axis::Spatial, s.dim, &[(X, s.seq), (E, s.vocab_chunk)])
}

pub fn forward_output(s: &Shape) -> Packing {
    Packing::new(Axis::Channel, s.seq, &[(LOGITS, s.vocab_chunk), (XHAT, s.dim)])
}

/// `dlogits` `[chunk, seq]` and `e` = Ẽ_chunk as is (chunk × dim).
pub fn backward_input(s: &Shape) -> Packing {
    Packing::new(Axis::Spatial, s.vocab_chunk, &[(DLOGITS, s.seq), (E, s.dim)])
}

pub fn backward_output(s: &Shape) -> Packing {
    Packing::new(Axis::Channel, s.seq, &[(DXHAT, s.dim)])
}

pub fn dw_input(s: &Shape) -> Packing {
    Packing::new(Axis::Channel, s.seq, &[(DLOGITS, s.vocab_chunk), (XHAT, s.dim)])
}

pub fn dw_output(s: &Shape) -> Packing {
    Packing::new(Axis::Channel, s.dim, &[(DE, s.vocab_chunk)])
}

/// dẼ_chunk = dlogits·x̂ᵀ (chunk × dim).
pub fn dw_terms() -> [Term; 1] {
    [Term::Product {
        out: DE,
        a: DLOGITS,
        b: XHAT,
        scaled: false,
    }]
}

pub fn norm_input(s: &Shape) -> Packing {
    Packing::new(Axis::Spatial, s.dim, &[(DXHAT, s.seq), (X, s.seq)])
}

pub fn norm_output(s: &Shape) -> Packing {
    Packing::new(Axis::Channel, s.seq, &[(DX, s.dim)])
}

/// `logits = Ẽ_chunk · x̂`.
pub fn forward(s: &Shape) -> Result<KernelDef> {
    let (inl, outl) = (forward_input(s), forward_output(s));
    let mut m = Mil::new(s.dtype);
    let x = m.input(&inl);
    let [xa, e] = m.blocks(&x, &inl, [X, E])?;
    let (xhat, _) = m.rms_hat(&xa, s.norm_eps)?;
    let logits = m.matmul(&e, &xhat, true, false)?;
    let out = m.output(&outl, &[(LOGITS, &logits), (XHAT, &xhat)])?;
    KernelDef::new(KernelId::ClsFwd, m.finish(&out), Default::default(), inl, outl)
}

/// This chunk's share of dx̂ = Ẽ_chunkᵀ·dlogits.
pub fn backward(s: &Shape) -> Result<KernelDef> {
    let (inl, outl) = (backward_input(s), backward_output(s));
    let mut m = Mil::new(s.dtype);
    let x = m.input(&inl);
    let [dl, e] = m.blocks(&x, &inl, [DLOGITS, E])?;
    let dxhat = m.matmul(&e, &dl, true, false)?;
    let out = m.output(&outl, &[(DXHAT, &dxhat)])?;
    KernelDef::new(KernelId::ClsBwd, m.finish(&out), Default::default(), inl, outl)
}

/// The weight gradient of [`dw_terms`].
pub fn dw(s: &Shape) -> Result<KernelDef> {
    dw::kernel(KernelId::ClsDw, s, dw_input(s), dw_output(s), &dw_terms())
}

/// The final RMSNorm's backward: dx from dx̂ and the recomputed x̂.
pub fn norm_backward(s: &Shape) -> Result<KernelDef> {
    let (inl, outl) = (norm_input(s), norm_output(s));
    let mut m = Mil::new(s.dtype);
    let x = m.input(&inl);
    let [dxhat, xa] = m.blocks(&x, &inl, [DXHAT, X])?;
    let (xhat, r) = m.rms_hat(&xa, s.norm_eps)?;
    let dx = m.rms_hat_backward(&xhat, &r, &dxhat)?;
    let out = m.output(&outl, &[(DX, &dx)])?;
    KernelDef::new(KernelId::NormBwd, m.finish(&out), Default::default(), inl, outl)
}
