//! Weight gradients declared once as terms over the taps a backward kernel returns. The same
//! table builds the device dW kernel and drives the host GEMMs of `--dw host` (where Apple's CPU
//! matrix unit can run them beside the ANE), so the two placements cannot drift apart.

use anyhow::{Result, anyhow, ensure};
use malus_mil::Var;

use super::packing::{Block, Packing};
use super::{Consts, KernelDef, KernelId, Mil, Shape};

/// One weight-gradient block of a dW kernel's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Term {
    /// `out = k · a · bᵀ`, contracting over tokens: `a` is `[m, seq]`, `b` `[n, seq]`, `out`
    /// `[m, n]`; `k` is the residual scale where `scaled`, else 1.
    Product {
        out: Block,
        a: Block,
        b: Block,
        scaled: bool,
    },
    /// `out = Σ_t a[:, t]` for an `[hd, seq]` tap, emitted as a `dim`-wide row (first `hd`
    /// entries used): the q/k-norm weight gradients.
    TokenSum { out: Block, a: Block },
}

impl Term {
    pub fn out(&self) -> Block {
        match *self {
            Term::Product { out, .. } | Term::TokenSum { out, .. } => out,
        }
    }
}

/// The dW kernel of `terms`, reading `input` (a backward's taps) and emitting `output`.
pub fn kernel(id: KernelId, s: &Shape, input: Packing, output: Packing, terms: &[Term]) -> Result<KernelDef> {
    let mut m = Mil::new(s.dtype);
    let mut k = Consts::new(s);
    let x = m.input(&input);
    // Each block is cut once, however many terms read it.
    let mut cut: Vec<(Block, Var)> = Vec::new();
    let mut get = |m: &mut Mil, b: Block| -> Result<Var> {
        if let Some((_, v)) = cut.iter().find(|(c, _)| *c == b) {
            return Ok(v.clone());
        }
        let v = m.block(&x, &input, b)?;
        cut.push((b, v.clone()));
        Ok(v)
    };
    let mut pad = None;
    let mut parts = Vec::new();
    for t in terms {
        let v = match *t {
            Term::Product { a, b, scaled, .. } => {
                let (a, b) = (get(&mut m, a)?, get(&mut m, b)?);
                let p = m.matmul(&a, &b, false, true)?;
                if scaled { m.scale(&p, s.residual_scale)? } else { p }
            }
            Term::TokenSum { a, .. } => {
                let pad = match &pad {
                    Some(p) => p,
                    None => pad.insert(k.head_pad(&mut m)?),
                };
                let g = get(&mut m, a)?;
                let g = m.b.reduce_sum(&g, &[3], true).map_err(|e| anyhow!("{e}"))?;
                m.matmul(&g, pad, true, false)?
            }
        };
        parts.push((t.out(), v));
    }
    let parts: Vec<(Block, &Var)> = parts.iter().map(|(b, v)| (*b, v)).collect();
    let out = m.output(&output, &parts)?;
    KernelDef::new(id, m.finish(&out), k.into_weights(), input, output)
}

/// Adds one term's gradient, computed on the host in f32, into `acc`; `tap` reads a block of
/// the taps as row-major f32.
pub fn add_on_host(
    t: &Term,
    s: &Shape,
    tap: &mut dyn FnMut(Block) -> Result<Vec<f32>>,
    acc: &mut [f32],
) -> Result<()> {
    match *t {
        Term::Product { a, b, scaled, .. } => {
            let k = if scaled { s.residual_scale as f32 } else { 1.0 };
            let (a, b) = (tap(a)?, tap(b)?);
            ensure!(
                acc.len() == (a.len() / s.seq) * (b.len() / s.seq),
                "dW block {} has {} elements, the product {}×{}",
                t.out(),
                acc.len(),
                a.len() / s.seq,
                b.len() / s.seq
            );
            accumulate_nt(acc, &a, &b, s.seq, k);
        }
        Term::TokenSum { a, .. } => {
            let a = tap(a)?;
            for (row, sum) in a.chunks_exact(s.seq).zip(acc.iter_mut()) {
                *sum += row.iter().sum::<f32>();
            }
        }
    }
    Ok(())
}

/// `acc (m×n) += alpha · a (m×s) · b (n×s)ᵀ` — a product contracting over tokens.
pub fn accumulate_nt(acc: &mut [f32], a: &[f32], b: &[f32], s: usize, alpha: f32) {
    let (m, n) = (a.len() / s, b.len() / s);
    let mut bt = vec![0.0f32; s * n];
    for j in 0..n {
        for t in 0..s {
            bt[t * n + j] = b[j * s + t];
        }
    }
    let mut c = vec![0.0f32; m * n];
    malus_cpu::gemm_f32_row_major(m, n, s, &mut c, a, &bt, true);
    acc.iter_mut().zip(&c).for_each(|(x, y)| *x += alpha * y);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contracts_over_tokens() {
        // a: 2×3, b: 1×3 → acc 2×1
        let mut acc = vec![1.0, 1.0];
        accumulate_nt(
            &mut acc,
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            &[1.0, 0.0, -1.0],
            3,
            2.0,
        );
        assert_eq!(acc, vec![1.0 + 2.0 * (1.0 - 3.0), 1.0 + 2.0 * (4.0 - 6.0)]);
    }
}
