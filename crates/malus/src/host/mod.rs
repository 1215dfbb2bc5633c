//! Host ops: the few parts of a training step that stay on the CPU (embedding gather and
//! scatter, the softmax cross-entropy over the vocabulary), and in [`ops`] the f32 kernels of a
//! whole host forward (text generation).

use rayon::prelude::*;

pub mod ops;

/// Embedding rows for `tokens`, channel-major: `x[d·S + s] = E[tokens[s], d]`, with
/// `read_row(at, row)` filling `row` with E's values from `at` (so E may be stored in f32 or,
/// for a frozen base, at its file's precision).
pub fn embed(read_row: impl Fn(usize, &mut [f32]), dim: usize, tokens: &[u32], out: &mut [f32]) {
    let s = tokens.len();
    let mut row = vec![0.0f32; dim];
    for (i, &t) in tokens.iter().enumerate() {
        read_row(t as usize * dim, &mut row);
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
/// buffer is needed). Position `i` predicts `targets[i]` with loss weight `weights[i]`.
/// Returns the weighted sum `Σ wᵢ·ℓᵢ` and leaves `scale·wᵢ·(pᵢ − onehot)` — the logits'
/// gradient — in place of the logits. A position of weight 0 adds exactly nothing to either
/// (its row is zeroed, not multiplied, so even a non-finite logit there cannot leak).
pub fn cross_entropy_in_place(
    rows: &mut [f32],
    vocab: usize,
    targets: &[u32],
    weights: &[f32],
    scale: f32,
) -> f64 {
    assert_eq!(targets.len(), weights.len(), "one loss weight per target");
    let losses: Vec<f64> = rows
        .par_chunks_mut(vocab)
        .zip(targets.par_iter().zip(weights.par_iter()))
        .map(|(row, (&target, &w))| {
            if w == 0.0 {
                row.fill(0.0);
                return 0.0;
            }
            let t = target as usize;
            let logit = row[t];
            let k = scale * w;
            // One vectorised exp per logit (f32; the row's sum is accumulated in eight lanes).
            let lse = malus_cpu::softmax_in_place(row);
            row.iter_mut().for_each(|x| *x *= k);
            row[t] -= k;
            w as f64 * (lse as f64 - logit as f64)
        })
        .collect();
    losses.iter().sum()
}

/// Per-target weights that make [`cross_entropy_in_place`]'s weighted sum, added over a batch
/// of windows and divided by their number, the mean loss over every counted target of the
/// batch (how Hugging Face and mlx-lm average a masked batch): window `j`'s weights
/// `w` become `w · n / W`, with `n` windows and `W` the batch's total weight. Unweighted windows
/// of one length get `1/seq` each, the plain mean. Errors when no target counts.
pub fn batch_loss_weights(windows: &[Vec<f32>]) -> anyhow::Result<Vec<Vec<f32>>> {
    let total: f64 = windows.iter().flatten().map(|&w| w as f64).sum();
    anyhow::ensure!(
        total > 0.0 && total.is_finite(),
        "no target in this batch counts in the loss (every loss weight is 0)"
    );
    let k = windows.len() as f64 / total;
    Ok(windows
        .iter()
        .map(|w| w.iter().map(|&v| (v as f64 * k) as f32).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_matches_hand_values() {
        // Two positions, vocab 3; logits position-major [2, 3].
        let mut d = [1.0, 2.0, 3.0, 0.0, 0.0, 0.0];
        let loss = cross_entropy_in_place(&mut d, 3, &[2, 0], &[0.5, 0.5], 1.0);
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
    fn a_weight_of_zero_adds_no_loss_and_no_gradient() {
        // Position 1 is masked, and its logits are not even finite.
        let mut d = [1.0, 2.0, 3.0, f32::INFINITY, f32::NAN, 0.0];
        let loss = cross_entropy_in_place(&mut d, 3, &[2, 0], &[2.0, 0.0], 0.5);
        let l0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 3.0;
        assert!((loss - 2.0 * l0).abs() < 1e-6, "{loss}");
        assert_eq!(&d[3..], &[0.0, 0.0, 0.0]);
        let p2 = 3f64.exp() / (1f64.exp() + 2f64.exp() + 3f64.exp());
        assert!((d[2] as f64 - (p2 - 1.0)).abs() < 1e-6, "scale 0.5 × weight 2");
    }

    #[test]
    fn batch_weights_average_over_the_counted_targets() {
        // Three counted targets in two windows: each gets n/W = 2/3.
        let w = batch_loss_weights(&[vec![1.0, 0.0], vec![1.0, 1.0]]).unwrap();
        let t = 2.0 / 3.0;
        assert_eq!(w, vec![vec![t as f32, 0.0], vec![t as f32, t as f32]]);
        // Unmasked windows of length 4: the plain mean, 1/4.
        assert_eq!(
            batch_loss_weights(&vec![vec![1.0; 4]; 3]).unwrap(),
            vec![vec![0.25; 4]; 3]
        );
        let e = batch_loss_weights(&[vec![0.0; 4]]).unwrap_err().to_string();
        assert!(e.contains("no target"), "{e}");
    }

    #[test]
    fn embedding_gather_and_scatter_are_adjoint() {
        let table: Vec<f32> = (0..12).map(|v| v as f32).collect(); // vocab 4, dim 3
        let mut x = vec![0.0; 6];
        let rows = |at: usize, r: &mut [f32]| r.copy_from_slice(&table[at..at + r.len()]);
        embed(rows, 3, &[2, 0], &mut x);
        assert_eq!(x, [6.0, 0.0, 7.0, 1.0, 8.0, 2.0]);
        let mut d = vec![0.0; 12];
        embed_backward(&mut d, 3, &[2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(&d[6..9], &[3.0, 7.0, 11.0]);
    }
}
