//! Weight gradients on the host (`--dw host`): the same products the dW kernels compute, as f32
//! GEMMs over the taps the backward kernels return. Apple's CPU matrix unit can run these in
//! parallel with the ANE; here they also serve as a cross-check of the device dW kernels.

use anyhow::Result;

use crate::host::Buf;
use crate::kernels::common::Layout;

/// Reads named blocks of a kernel buffer as f32.
pub fn block(buf: &Buf, l: &Layout, name: &str) -> Result<Vec<f32>> {
    let (c, w) = l.block_dims(name)?;
    let mut out = vec![0.0; c * w];
    buf.read_block(l, name, &mut out)?;
    Ok(out)
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
