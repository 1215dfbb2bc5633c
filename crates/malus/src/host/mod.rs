//! Host ops: the few parts of a training step that stay on the CPU (embedding gather and
//! scatter, the softmax cross-entropy over the vocabulary), and in [`ops`] the f32 kernels of a
//! whole host forward (text generation).

use rayon::prelude::*;

pub mod ops;

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
}
