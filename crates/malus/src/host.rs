//! Host ops: the few parts of a step that stay on the CPU (embedding gather and scatter, the
//! softmax cross-entropy over the vocabulary), and the staging buffers that carry tensors into
//! and out of kernels in the device's element type.

use anyhow::{Result, ensure};
use half::f16;
use half::slice::HalfFloatSliceExt;
use malus_mil::DType;
use rayon::prelude::*;

use crate::kernels::common::Layout;

/// A kernel input or output in the device's element type.
#[derive(Clone, Debug, PartialEq)]
pub enum Buf {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

impl Buf {
    pub fn zeros(dtype: DType, n: usize) -> Buf {
        match dtype {
            DType::Fp16 => Buf::F16(vec![f16::ZERO; n]),
            _ => Buf::F32(vec![0.0; n]),
        }
    }

    /// A buffer shaped for a layout.
    pub fn for_layout(dtype: DType, l: &Layout) -> Buf {
        Buf::zeros(dtype, l.elements())
    }

    pub fn len(&self) -> usize {
        match self {
            Buf::F16(v) => v.len(),
            Buf::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Buf::F16(v) => bytemuck::cast_slice(v),
            Buf::F32(v) => bytemuck::cast_slice(v),
        }
    }

    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Buf::F16(v) => bytemuck::cast_slice_mut(v),
            Buf::F32(v) => bytemuck::cast_slice_mut(v),
        }
    }

    /// Writes a row-major f32 block into its place (converting to fp16 when needed).
    pub fn write_block(&mut self, l: &Layout, name: &str, block: &[f32]) -> Result<()> {
        match self {
            Buf::F32(v) => l.write_block(v, name, block),
            Buf::F16(v) => {
                let mut h = vec![f16::ZERO; block.len()];
                h.convert_from_f32_slice(block);
                l.write_block(v, name, &h)
            }
        }
    }

    /// Reads a block as row-major f32.
    pub fn read_block(&self, l: &Layout, name: &str, out: &mut [f32]) -> Result<()> {
        match self {
            Buf::F32(v) => l.read_block(v, name, out),
            Buf::F16(v) => {
                let mut h = vec![f16::ZERO; out.len()];
                l.read_block(v, name, &mut h)?;
                h.convert_to_f32_slice(out);
                Ok(())
            }
        }
    }

    /// Copies a block between buffers of the same element type, without conversion.
    pub fn copy_block(
        &self,
        from: &Layout,
        from_name: &str,
        to: &mut Buf,
        to_layout: &Layout,
        to_name: &str,
    ) -> Result<()> {
        let (c, w) = from.block_dims(from_name)?;
        match (self, to) {
            (Buf::F16(a), Buf::F16(b)) => {
                let mut t = vec![f16::ZERO; c * w];
                from.read_block(a, from_name, &mut t)?;
                to_layout.write_block(b, to_name, &t)
            }
            (Buf::F32(a), Buf::F32(b)) => {
                let mut t = vec![0.0; c * w];
                from.read_block(a, from_name, &mut t)?;
                to_layout.write_block(b, to_name, &t)
            }
            _ => anyhow::bail!("copy between buffers of different element types"),
        }
    }

    /// Overwrites this buffer with another of the same type and length.
    pub fn copy_from(&mut self, other: &Buf) -> Result<()> {
        ensure!(self.len() == other.len(), "buffer lengths differ");
        match (self, other) {
            (Buf::F16(a), Buf::F16(b)) => a.copy_from_slice(b),
            (Buf::F32(a), Buf::F32(b)) => a.copy_from_slice(b),
            _ => anyhow::bail!("copy between buffers of different element types"),
        }
        Ok(())
    }
}

/// Embedding rows for `tokens`, channel-major: `x[d·S + s] = E[tokens[s], d]`.
pub fn embed(table: &[f32], dim: usize, tokens: &[u32], out: &mut [f32]) {
    let s = tokens.len();
    for (i, &t) in tokens.iter().enumerate() {
        let row = &table[t as usize * dim..(t as usize + 1) * dim];
        for (d, &v) in row.iter().enumerate() {
            out[d * s + i] = v;
        }
    }
}

/// Scatter-adds the gradient of [`embed`]: `dE[tokens[s], d] += dx[d·S + s]`.
pub fn embed_backward(dtable: &mut [f32], dim: usize, tokens: &[u32], dx: &[f32]) {
    let s = tokens.len();
    for (i, &t) in tokens.iter().enumerate() {
        let row = &mut dtable[t as usize * dim..(t as usize + 1) * dim];
        for (d, v) in row.iter_mut().enumerate() {
            *v += dx[d * s + i];
        }
    }
}

/// Softmax cross-entropy, in place, over position-major logits `[S, vocab]` (one contiguous
/// row per position, so each softmax reads contiguous memory and no second vocabulary-sized
/// buffer is needed). Returns the mean loss over positions and leaves
/// `scale·(p − onehot)/S` — the logits' gradient — in place of the logits.
pub fn cross_entropy_in_place(rows: &mut [f32], vocab: usize, targets: &[u32], scale: f32) -> f64 {
    let k = scale / targets.len() as f32;
    let losses: Vec<f64> = rows
        .par_chunks_mut(vocab)
        .zip(targets.par_iter())
        .map(|(row, &target)| {
            let t = target as usize;
            let logit = row[t];
            // One vectorised exp per logit (f32; the row's sum is accumulated in eight lanes).
            let lse = malus_cpu::softmax_in_place(row);
            row.iter_mut().for_each(|x| *x *= k);
            row[t] -= k;
            lse as f64 - logit as f64
        })
        .collect();
    losses.iter().sum::<f64>() / targets.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_matches_hand_values() {
        // Two positions, vocab 3; logits position-major [2, 3].
        let mut d = [1.0, 2.0, 3.0, 0.0, 0.0, 0.0];
        let loss = cross_entropy_in_place(&mut d, 3, &[2, 0], 1.0);
        let l0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 3.0;
        let l1 = 3f64.ln();
        assert!((loss - (l0 + l1) / 2.0).abs() < 1e-6);
        let p0: Vec<f64> = [1.0, 2.0, 3.0]
            .iter()
            .map(|v: &f64| v.exp() / (1f64.exp() + 2f64.exp() + 3f64.exp()))
            .collect();
        assert!((d[0] as f64 - p0[0] / 2.0).abs() < 1e-6);
        assert!((d[2] as f64 - (p0[2] - 1.0) / 2.0).abs() < 1e-6);
        assert!((d[3] as f64 - (1.0 / 3.0 - 1.0) / 2.0).abs() < 1e-6);
        assert!((d[4] as f64 - 1.0 / 6.0).abs() < 1e-6);
    }

    #[test]
    fn embedding_gather_and_scatter_are_adjoint() {
        let table: Vec<f32> = (0..12).map(|v| v as f32).collect(); // vocab 4, dim 3
        let mut x = vec![0.0; 6];
        embed(&table, 3, &[2, 0], &mut x);
        assert_eq!(x, [6.0, 0.0, 7.0, 1.0, 8.0, 2.0]);
        let mut d = vec![0.0; 12];
        embed_backward(&mut d, 3, &[2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(&d[6..9], &[3.0, 7.0, 11.0]);
    }

    #[test]
    fn buffers_convert_and_copy_blocks() {
        use crate::kernels::common::{Axis, Layout};
        let l = Layout::new(Axis::Spatial, 2, &[("a", 1), ("b", 2)]);
        let mut b = Buf::for_layout(DType::Fp16, &l);
        b.write_block(&l, "b", &[1.0, 2.0, 3.0, 65519.0]).unwrap();
        let mut out = [0.0; 4];
        b.read_block(&l, "b", &mut out).unwrap();
        assert_eq!(out, [1.0, 2.0, 3.0, 65504.0]);
        let l2 = Layout::new(Axis::Channel, 2, &[("x", 2)]);
        let mut c = Buf::for_layout(DType::Fp16, &l2);
        b.copy_block(&l, "b", &mut c, &l2, "x").unwrap();
        assert_eq!(c.as_bytes().len(), 8);
        assert!(
            b.copy_block(&l, "b", &mut Buf::zeros(DType::Fp32, 4), &l2, "x")
                .is_err()
        );
    }
}
