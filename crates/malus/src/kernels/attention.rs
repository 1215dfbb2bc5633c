//! The attention block: forward (RMSNorm, QKV, RoPE, causal attention, output projection,
//! residual), backward dx (recomputes the forward) and backward dW.
//!
//! RMSNorm weights are folded into the staged Wq/Wk/Wv (see `kernels` module docs), so the kernels
//! only normalise.

use anyhow::Result;
use malus_mil::Var;

use super::common::{Axis, Layout, Mil};
use super::{Consts, KernelDef, Shape};

/// The forward reads the backward's input layout (ignoring its gradient block), so one staged
/// input per layer serves both kernels and weights are staged once per update:
/// `wq` = W̃qᵀ (dim × q), `wk`/`wv` = W̃k/vᵀ (dim × kv), `wo` = Wo as is (dim × q).
fn weight_blocks(s: &Shape) -> [(&'static str, usize); 4] {
    [("wq", s.q), ("wk", s.kv), ("wv", s.kv), ("wo", s.q)]
}

pub fn backward_layout(s: &Shape) -> Layout {
    let mut b = vec![("dx2", s.seq), ("x", s.seq)];
    b.extend(weight_blocks(s));
    Layout::new(Axis::Spatial, s.dim, &b)
}

/// What the backward hands to the dW kernel (and to the host for `--dw host`).
pub fn backward_output_layout(s: &Shape) -> Layout {
    Layout::new(
        Axis::Channel,
        s.seq,
        &[
            ("dx", s.dim),
            ("xhat", s.dim),
            ("dq", s.q),
            ("dk", s.kv),
            ("dv", s.kv),
            ("o", s.q),
        ],
    )
}

/// The dW kernel's input: the backward output with `dx` replaced by the incoming `dx2`.
pub fn dw_layout(s: &Shape) -> Layout {
    let mut l = backward_output_layout(s);
    l.slots[0].name = "dx2".into();
    l
}

/// dW̃q (q × dim), dW̃k, dW̃v (kv × dim), dWoᵀ (q × dim).
pub fn dw_output_layout(s: &Shape) -> Layout {
    Layout::new(
        Axis::Channel,
        s.dim,
        &[("dwq", s.q), ("dwk", s.kv), ("dwv", s.kv), ("dwo_t", s.q)],
    )
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
}

fn forward_body(m: &mut Mil, s: &Shape, k: &mut Consts, x: &Var, w: [&Var; 3]) -> Result<Fwd> {
    let (xhat, r) = m.rms_hat(x, s.eps)?;
    let q = m.matmul(w[0], &xhat, true, false)?;
    let kk = m.matmul(w[1], &xhat, true, false)?;
    let v = m.matmul(w[2], &xhat, true, false)?;
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
    let o = m.reshape(&oh, &[1, s.q, 1, s.seq])?;
    Ok(Fwd {
        xhat,
        r,
        qh,
        kt,
        vt,
        p,
        o,
    })
}

/// `x2 = x + α·Wo·Attn(RoPE(W̃q x̂), RoPE(W̃k x̂), W̃v x̂)`.
pub fn forward(s: &Shape) -> Result<KernelDef> {
    let inl = backward_layout(s);
    let mut m = Mil::new(s.dtype);
    let mut k = Consts::new(s);
    let x = m.input(&inl);
    let xa = m.block(&x, &inl, "x")?;
    let [wq, wk, wv, wo] = ["wq", "wk", "wv", "wo"].map(|n| m.block(&x, &inl, n));
    let (wq, wk, wv, wo) = (wq?, wk?, wv?, wo?);
    let f = forward_body(&mut m, s, &mut k, &xa, [&wq, &wk, &wv])?;
    let y = m.matmul(&wo, &f.o, false, false)?;
    let x2 = m.residual(&xa, &y, s.alpha)?;
    let out = m.output(&[&x2])?;
    let outl = Layout::new(Axis::Channel, s.seq, &[("x2", s.dim)]);
    KernelDef::new("attn_fwd", m.finish(&out), k.into_weights(), inl, outl)
}

/// Backward dx of the attention block; also returns the taps the dW products need.
pub fn backward(s: &Shape) -> Result<KernelDef> {
    let inl = backward_layout(s);
    let mut m = Mil::new(s.dtype);
    let mut k = Consts::new(s);
    let x = m.input(&inl);
    let dx2 = m.block(&x, &inl, "dx2")?;
    let xa = m.block(&x, &inl, "x")?;
    let [wq, wk, wv, wo] = ["wq", "wk", "wv", "wo"].map(|n| m.block(&x, &inl, n));
    let (wq, wk, wv, wo) = (wq?, wk?, wv?, wo?);
    let f = forward_body(&mut m, s, &mut k, &xa, [&wq, &wk, &wv])?;
    let e = |e: malus_mil::InferError| anyhow::anyhow!("{e}");
    // do = α·Woᵀ·dx2
    let do_ = m.matmul(&wo, &dx2, true, false)?;
    let do_ = m.scale(&do_, s.alpha)?;
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
    let dq = m.reshape(&dqh, &[1, s.q, 1, s.seq])?;
    let dkt = m.reshape(&dkt, &[1, s.q, 1, s.seq])?;
    let dvt = m.reshape(&dvt, &[1, s.q, 1, s.seq])?;
    let group = s.heads / s.kv_heads;
    let dk = m.reduce_kv(&dkt, s.kv_heads, group)?;
    let dv = m.reduce_kv(&dvt, s.kv_heads, group)?;
    let cos = k.cos(&mut m)?;
    let sin = k.sin(&mut m)?;
    let dq = m.rope(&dq, s.heads, s.head_dim, &cos, &sin, true)?;
    let dk = m.rope(&dk, s.kv_heads, s.head_dim, &cos, &sin, true)?;
    let a = m.matmul(&wq, &dq, false, false)?;
    let b = m.matmul(&wk, &dk, false, false)?;
    let c = m.matmul(&wv, &dv, false, false)?;
    let ab = m.add(&a, &b)?;
    let dxhat = m.add(&ab, &c)?;
    let dnorm = m.rms_hat_backward(&f.xhat, &f.r, &dxhat)?;
    let dx = m.add(&dx2, &dnorm)?;
    let out = m.output(&[&dx, &f.xhat, &dq, &dk, &dv, &f.o])?;
    KernelDef::new(
        "attn_bwd",
        m.finish(&out),
        k.into_weights(),
        inl,
        backward_output_layout(s),
    )
}

/// Weight gradients, each a matmul contracting over tokens.
pub fn dw(s: &Shape) -> Result<KernelDef> {
    let inl = dw_layout(s);
    let mut m = Mil::new(s.dtype);
    let x = m.input(&inl);
    let [dx2, xhat, dq, dk, dv, o] = ["dx2", "xhat", "dq", "dk", "dv", "o"].map(|n| m.block(&x, &inl, n));
    let (dx2, xhat, dq, dk, dv, o) = (dx2?, xhat?, dq?, dk?, dv?, o?);
    let dwq = m.matmul(&dq, &xhat, false, true)?;
    let dwk = m.matmul(&dk, &xhat, false, true)?;
    let dwv = m.matmul(&dv, &xhat, false, true)?;
    let dwo_t = m.matmul(&o, &dx2, false, true)?;
    let dwo_t = m.scale(&dwo_t, s.alpha)?;
    let out = m.output(&[&dwq, &dwk, &dwv, &dwo_t])?;
    KernelDef::new(
        "attn_dw",
        m.finish(&out),
        Default::default(),
        inl,
        dw_output_layout(s),
    )
}
