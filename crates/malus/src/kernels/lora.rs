//! The low-rank path of LoRA inside the attention and FFN kernels: `y += s·B·(A·x)` in the
//! forward, `dx += s·Aᵀ·(Bᵀ·dy)` in the backward, with `A` and `B` staged as weight blocks of
//! the kernel's input (re-staged each update; the base weights beside them never change).
//!
//! A kernel input has `dim` channels, but `Aᵀ` is `[in, r]` and `B` `[out, r]` with `in`/`out`
//! up to `hidden`. Such a "tall" matrix `M` `[rows, cols]` is staged as `⌈rows/dim⌉` chunks of
//! `dim` rows side by side (chunk `j` in columns `j·cols..`, zero rows past `rows`), the block
//! padded to a multiple of 32 columns (ANE surface alignment); the kernel stacks the chunks
//! back along channels. The adapters' gradients are host GEMMs over the taps the backward
//! kernels already emit (`train::lora`), so there are no LoRA dW kernels.

use anyhow::{Result, anyhow};
use malus_mil::Var;

use super::packing::block::*;
use super::packing::{Block, Packing};
use super::{Mil, Shape};
use crate::model::{Lora, Target};

/// What the kernels need of a run's adapters.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraShape {
    pub rank: usize,
    pub scale: f64,
    pub targets: Vec<Target>,
}

impl LoraShape {
    pub fn new(l: &Lora) -> LoraShape {
        LoraShape {
            rank: l.rank,
            scale: l.scale(),
            targets: l.targets.clone(),
        }
    }
}

/// The staged blocks of a target: `Ãᵀ` (A with the preceding RMSNorm weight folded into its
/// columns, transposed) and `B`.
pub fn blocks(t: Target) -> (Block, Block) {
    match t {
        Target::Q => (LORA_A_Q, LORA_B_Q),
        Target::K => (LORA_A_K, LORA_B_K),
        Target::V => (LORA_A_V, LORA_B_V),
        Target::O => (LORA_A_O, LORA_B_O),
        Target::Gate => (LORA_A_GATE, LORA_B_GATE),
        Target::Up => (LORA_A_UP, LORA_B_UP),
        Target::Down => (LORA_A_DOWN, LORA_B_DOWN),
    }
}

/// `(out, in)` of a target's weight in kernel dimensions.
fn dims(s: &Shape, t: Target) -> (usize, usize) {
    t.dims_of(s.dim, s.hidden, s.q_dim, s.kv_dim)
}

/// Columns of the staged block of a tall `[rows, cols]` matrix.
fn tall_width(s: &Shape, rows: usize, cols: usize) -> usize {
    (rows.div_ceil(s.dim) * cols).div_ceil(32) * 32
}

/// The LoRA weight blocks of a kernel whose layers are `of` (the attention's q, k, v, o or the
/// FFN's gate, up, down), for the targets the run adapts; none without LoRA.
pub fn weight_blocks(s: &Shape, of: &[Target]) -> Vec<(Block, usize)> {
    let Some(l) = &s.lora else { return Vec::new() };
    let mut out = Vec::new();
    for &t in of.iter().filter(|t| l.targets.contains(t)) {
        let (rows_b, rows_a) = dims(s, t);
        let (a, b) = blocks(t);
        out.push((a, tall_width(s, rows_a, l.rank)));
        out.push((b, tall_width(s, rows_b, l.rank)));
    }
    out
}

/// The staged `[dim, width]` block of a tall `m` (`[rows, cols]`, row-major).
fn stage_tall(s: &Shape, m: &[f32], cols: usize) -> Vec<f32> {
    let rows = m.len() / cols;
    let width = tall_width(s, rows, cols);
    let mut out = vec![0.0f32; s.dim * width];
    for (r, row) in m.chunks_exact(cols).enumerate() {
        let (j, d) = (r / s.dim, r % s.dim);
        out[d * width + j * cols..][..cols].copy_from_slice(row);
    }
    out
}

/// The staged `Ãᵀ` of `a` (`[r, in]`): `Ã = A·diag(norm)` when the layer follows an RMSNorm.
pub fn stage_a(s: &Shape, a: &[f32], rank: usize, norm: Option<&[f32]>) -> Vec<f32> {
    let inp = a.len() / rank;
    let mut at = vec![0.0f32; a.len()];
    for k in 0..rank {
        for i in 0..inp {
            at[i * rank + k] = a[k * inp + i] * norm.map_or(1.0, |n| n[i]);
        }
    }
    stage_tall(s, &at, rank)
}

/// The staged block of `b` (`[out, r]`).
pub fn stage_b(s: &Shape, b: &[f32], rank: usize) -> Vec<f32> {
    stage_tall(s, b, rank)
}

/// One target's low-rank path inside a kernel: `Ãᵀ` `[1, in, 1, r]` and `B` `[1, out, 1, r]`.
pub struct Path {
    at: Var,
    b: Var,
    scale: f64,
}

impl Path {
    /// `s·B·(Ã·x)` for `x` `[1, in, 1, S]`.
    pub fn forward(&self, m: &mut Mil, x: &Var) -> Result<Var> {
        let u = m.matmul(&self.at, x, true, false)?;
        let y = m.matmul(&self.b, &u, false, false)?;
        m.scale(&y, self.scale)
    }

    /// `s·Ãᵀ·(Bᵀ·dy)` for `dy` `[1, out, 1, S]`: the path's share of the input gradient.
    pub fn backward(&self, m: &mut Mil, dy: &Var) -> Result<Var> {
        let v = m.matmul(&self.b, dy, true, false)?;
        let dx = m.matmul(&self.at, &v, false, false)?;
        m.scale(&dx, self.scale)
    }
}

/// `y + path(x)`, or `y` without a path.
pub fn plus_forward(m: &mut Mil, y: Var, path: &Option<Path>, x: &Var) -> Result<Var> {
    match path {
        Some(p) => {
            let l = p.forward(m, x)?;
            m.add(&y, &l)
        }
        None => Ok(y),
    }
}

/// `dx + path'(dy)`, or `dx` without a path.
pub fn plus_backward(m: &mut Mil, dx: Var, path: &Option<Path>, dy: &Var) -> Result<Var> {
    match path {
        Some(p) => {
            let l = p.backward(m, dy)?;
            m.add(&dx, &l)
        }
        None => Ok(dx),
    }
}

/// Cuts a tall `[rows, cols]` matrix out of its staged block: the chunks stacked along
/// channels, the zero rows past `rows` dropped.
fn tall(m: &mut Mil, x: &Var, inl: &Packing, b: Block, rows: usize, cols: usize, dim: usize) -> Result<Var> {
    let off = inl.slot(b)?.offset;
    let e = |e: malus_mil::InferError| anyhow!("{e}");
    let chunks: Vec<Var> = (0..rows.div_ceil(dim))
        .map(|j| {
            m.b.slice_by_size(
                x,
                &[0, 0, 0, (off + j * cols) as i64],
                &[1, dim as i64, 1, cols as i64],
            )
            .map_err(e)
        })
        .collect::<Result<_>>()?;
    let stacked = match chunks.as_slice() {
        [one] => one.clone(),
        many => m.b.concat(&many.iter().collect::<Vec<_>>(), 1).map_err(e)?,
    };
    if rows == stacked.shape()[1] {
        return Ok(stacked);
    }
    m.b.slice_by_size(&stacked, &[0, 0, 0, 0], &[1, rows as i64, 1, cols as i64])
        .map_err(e)
}

/// The paths of `of` cut from the kernel input `x` (`None` for targets the run does not adapt).
pub fn paths<const N: usize>(
    m: &mut Mil,
    x: &Var,
    inl: &Packing,
    s: &Shape,
    of: [Target; N],
) -> Result<[Option<Path>; N]> {
    let mut out = Vec::with_capacity(N);
    for t in of {
        out.push(match &s.lora {
            Some(l) if l.targets.contains(&t) => {
                let (rows_b, rows_a) = dims(s, t);
                let (a, b) = blocks(t);
                Some(Path {
                    at: tall(m, x, inl, a, rows_a, l.rank, s.dim)?,
                    b: tall(m, x, inl, b, rows_b, l.rank, s.dim)?,
                    scale: l.scale,
                })
            }
            _ => None,
        });
    }
    Ok(out.try_into().unwrap_or_else(|_| unreachable!("N paths")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Config;
    use malus_mil::DType;

    /// A tall matrix goes into chunks of `dim` rows side by side and nowhere else.
    #[test]
    fn tall_matrices_are_staged_in_chunks_of_dim_rows() {
        let c = Config::preset("tiny").unwrap();
        let s = Shape::new(&c, DType::Fp32).unwrap();
        let (rows, cols) = (s.dim + 3, 2);
        let m: Vec<f32> = (0..rows * cols).map(|i| i as f32 + 1.0).collect();
        let st = stage_tall(&s, &m, cols);
        let w = tall_width(&s, rows, cols);
        assert_eq!(w, 32);
        assert_eq!(st.len(), s.dim * w);
        assert_eq!(st[..2], [1.0, 2.0]); // row 0, chunk 0
        assert_eq!(st[2..4], [(s.dim * 2 + 1) as f32, (s.dim * 2 + 2) as f32]); // row dim
        assert_eq!(st[3 * w + 2..3 * w + 6], [0.0; 4]); // past `rows` and the padding
        assert_eq!(st.iter().filter(|v| **v != 0.0).count(), rows * cols);
    }
}
