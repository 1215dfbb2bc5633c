//! Row-major iteration over several strided operands at once, in runs along the innermost
//! dimension. Plans are made at compile time (dims merged where every operand allows it); the
//! walk itself uses fixed-size arrays, so it never allocates.

use crate::layout::View;

/// Highest rank a walk supports (after merging dims).
pub(crate) const MAX_RANK: usize = 8;
/// Most operands one walk can drive.
pub(crate) const MAX_OPS: usize = 16;

/// The plan of a walk: merged shape, per-dim strides of each operand and base offsets.
#[derive(Clone, Debug)]
pub(crate) struct Walk {
    shape: Vec<usize>,
    /// `strides[d * nops + k]`: stride of operand `k` along dim `d`.
    strides: Vec<isize>,
    base: Vec<usize>,
    nops: usize,
}

impl Walk {
    /// Plans a walk over `shape` of operands given as views already shaped like `shape`
    /// (broadcast operands have stride 0). Returns `None` if the rank after merging exceeds
    /// [`MAX_RANK`] or there are more than [`MAX_OPS`] operands.
    pub(crate) fn new(shape: &[usize], ops: &[&View]) -> Option<Walk> {
        Walk::ordered(shape, ops, &(0..shape.len()).collect::<Vec<_>>())
    }

    /// Like [`Walk::new`], but visits operand 0's elements in memory order (dims sorted by its
    /// strides), so a destination laid out in any dim order is written sequentially. Only for
    /// kernels where the visiting order does not matter.
    pub(crate) fn by_first(shape: &[usize], ops: &[&View]) -> Option<Walk> {
        Walk::ordered(shape, ops, &ops[0].stride_order())
    }

    fn ordered(shape: &[usize], ops: &[&View], order: &[usize]) -> Option<Walk> {
        let nops = ops.len();
        if nops > MAX_OPS {
            return None;
        }
        let mut dims: Vec<(usize, Vec<isize>)> = order
            .iter()
            .filter(|&&d| shape[d] != 1)
            .map(|&d| (shape[d], ops.iter().map(|v| v.strides[d]).collect()))
            .collect();
        // Merge dim i into i+1 when every operand steps over both as one.
        let mut i = dims.len();
        while i > 1 {
            i -= 1;
            let (n1, s1) = (dims[i].0, &dims[i].1);
            let s0 = &dims[i - 1].1;
            if (0..nops).all(|k| s0[k] == s1[k] * n1 as isize) {
                let n0 = dims[i - 1].0;
                dims[i - 1] = (n0 * n1, dims[i].1.clone());
                dims.remove(i);
            }
        }
        if dims.is_empty() {
            dims.push((if shape.contains(&0) { 0 } else { 1 }, vec![0; nops]));
        }
        if dims.len() > MAX_RANK {
            return None;
        }
        Some(Walk {
            shape: dims.iter().map(|d| d.0).collect(),
            strides: dims.iter().flat_map(|d| d.1.iter().copied()).collect(),
            base: ops.iter().map(|v| v.offset).collect(),
            nops,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Stride of operand `k` along the innermost dim.
    pub(crate) fn inner_stride(&self, k: usize) -> isize {
        self.strides[(self.shape.len() - 1) * self.nops + k]
    }

    /// Calls `f(offsets, n)` for every run of `n` consecutive innermost positions within the
    /// linear index range `[start, end)`; `offsets[k]` is operand `k`'s offset at the run start.
    #[inline(always)]
    pub(crate) fn runs(&self, start: usize, end: usize, mut f: impl FnMut(&[usize], usize)) {
        let r = self.shape.len();
        let nops = self.nops;
        let mut idx = [0usize; MAX_RANK];
        let mut rem = start;
        for d in (0..r).rev() {
            idx[d] = rem % self.shape[d].max(1);
            rem /= self.shape[d].max(1);
        }
        let mut offs = [0usize; MAX_OPS];
        let mut pos = start;
        while pos < end {
            for (k, o) in offs.iter_mut().enumerate().take(nops) {
                let mut at = self.base[k] as isize;
                for (d, &i) in idx.iter().enumerate().take(r) {
                    at += i as isize * self.strides[d * nops + k];
                }
                *o = at as usize;
            }
            let n = (self.shape[r - 1] - idx[r - 1]).min(end - pos);
            f(&offs[..nops], n);
            pos += n;
            idx[r - 1] += n;
            let mut d = r - 1;
            while d > 0 && idx[d] >= self.shape[d] {
                idx[d] = 0;
                d -= 1;
                idx[d] += 1;
            }
        }
    }
}

/// Reads `dst.len()` elements starting at `at` with stride `stride` (which may be 0 or negative).
#[inline(always)]
pub(crate) fn gather<T: Copy>(dst: &mut [T], src: &[T], at: usize, stride: isize) {
    match stride {
        1 => dst.copy_from_slice(&src[at..at + dst.len()]),
        0 => dst.fill(src[at]),
        s => {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = src[(at as isize + i as isize * s) as usize];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Class, Slot};

    fn view(shape: &[usize], strides: &[isize], offset: usize) -> View {
        View {
            slot: Slot {
                class: Class::F,
                idx: 0,
            },
            offset,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
        }
    }

    #[test]
    fn merges_contiguous_dims_and_splits_ranges() {
        let a = view(&[2, 3, 4], &[12, 4, 1], 0);
        let w = Walk::new(&[2, 3, 4], &[&a]).unwrap();
        assert_eq!(w.shape, vec![24]);
        let mut seen = Vec::new();
        w.runs(5, 17, |o, n| seen.push((o[0], n)));
        assert_eq!(seen, vec![(5, 12)]);
    }

    #[test]
    fn walks_transposed_and_broadcast_operands() {
        // out [2,3] contiguous, a = transpose of a [3,2] buffer, b broadcast along rows.
        let out = view(&[2, 3], &[3, 1], 0);
        let a = view(&[2, 3], &[1, 2], 0);
        let b = view(&[2, 3], &[0, 1], 10);
        let w = Walk::new(&[2, 3], &[&out, &a, &b]).unwrap();
        let mut seen = Vec::new();
        w.runs(1, 6, |o, n| seen.push((o.to_vec(), n)));
        assert_eq!(seen, vec![(vec![1, 2, 11], 2), (vec![3, 1, 10], 3)]);
        assert_eq!(w.inner_stride(1), 2);
    }
}
