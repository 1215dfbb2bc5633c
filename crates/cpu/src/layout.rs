//! Tensor views: a storage slot, an element offset, a shape and element strides. Reshapes,
//! transposes, slices, `expand_dims`/`squeeze` and broadcasts only make new views; kernels read
//! views and write contiguous slots.

use malus_mil::DType;

/// Which storage pool a dtype lives in: floats as f32, integers as i64, bools as u8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    F,
    I,
    B,
}

impl Class {
    /// The pool of a dtype; `None` for strings, which are never tensors at run time.
    pub(crate) fn of(d: DType) -> Option<Class> {
        match d {
            DType::Fp16 | DType::Fp32 | DType::Fp64 => Some(Class::F),
            DType::Bool => Some(Class::B),
            DType::String => None,
            _ => Some(Class::I),
        }
    }
}

/// One buffer of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Slot {
    pub class: Class,
    pub idx: usize,
}

/// A strided window onto a slot. Offsets of all elements are non-negative by construction.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct View {
    pub slot: Slot,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<isize>,
}

/// Row-major strides of a shape.
pub(crate) fn row_major(shape: &[usize]) -> Vec<isize> {
    let mut s = vec![0isize; shape.len()];
    let mut acc = 1isize;
    for d in (0..shape.len()).rev() {
        s[d] = acc;
        acc *= shape[d] as isize;
    }
    s
}

impl View {
    pub(crate) fn dense(slot: Slot, shape: &[usize]) -> View {
        View {
            slot,
            offset: 0,
            shape: shape.to_vec(),
            strides: row_major(shape),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Dense row-major (size-1 dims may have any stride).
    pub(crate) fn is_contiguous(&self) -> bool {
        let mut expect = 1isize;
        for d in (0..self.shape.len()).rev() {
            if self.shape[d] != 1 {
                if self.strides[d] != expect {
                    return false;
                }
                expect *= self.shape[d] as isize;
            }
        }
        true
    }

    /// Smallest and largest element offset (for bounds checks); `None` when empty.
    pub(crate) fn extent(&self) -> Option<(usize, usize)> {
        if self.len() == 0 {
            return None;
        }
        let (mut lo, mut hi) = (self.offset as isize, self.offset as isize);
        for (&n, &s) in self.shape.iter().zip(&self.strides) {
            let span = (n as isize - 1) * s;
            if span < 0 {
                lo += span;
            } else {
                hi += span;
            }
        }
        Some((lo as usize, hi as usize))
    }

    /// Dims ordered from the largest stride to the smallest (size-1 dims first): the order in
    /// which the view's elements sit in memory.
    pub(crate) fn stride_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.shape.len()).collect();
        let key = |d: &usize| {
            if self.shape[*d] == 1 {
                usize::MAX
            } else {
                self.strides[*d].unsigned_abs()
            }
        };
        order.sort_by_key(|d| std::cmp::Reverse(key(d)));
        order
    }

    /// A dense view whose memory order follows `order` (outermost first), seen with `shape`.
    pub(crate) fn dense_in_order(slot: Slot, shape: &[usize], order: &[usize]) -> View {
        let mut strides = vec![0isize; shape.len()];
        let mut acc = 1isize;
        for &d in order.iter().rev() {
            strides[d] = acc;
            acc *= shape[d] as isize;
        }
        View {
            slot,
            offset: 0,
            shape: shape.to_vec(),
            strides,
        }
    }

    pub(crate) fn permute(&self, perm: &[usize]) -> View {
        View {
            slot: self.slot,
            offset: self.offset,
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
        }
    }

    /// Takes `len` elements of `axis` starting at `start` with step `step` (may be negative).
    pub(crate) fn slice_axis(&self, axis: usize, start: i64, step: i64, len: usize) -> View {
        let mut v = self.clone();
        if len > 0 {
            v.offset = (self.offset as isize + start as isize * self.strides[axis]) as usize;
        }
        v.strides[axis] = self.strides[axis] * step as isize;
        v.shape[axis] = len;
        v
    }

    /// Drops size-1 axes.
    pub(crate) fn remove_axes(&self, axes: &[usize]) -> View {
        let keep = |i: &usize| !axes.contains(i);
        View {
            slot: self.slot,
            offset: self.offset,
            shape: (0..self.shape.len())
                .filter(keep)
                .map(|i| self.shape[i])
                .collect(),
            strides: (0..self.shape.len())
                .filter(keep)
                .map(|i| self.strides[i])
                .collect(),
        }
    }

    /// Reinterprets the view with a new shape without copying, when its strides allow it
    /// (numpy's no-copy reshape rule); `None` when a copy is needed.
    pub(crate) fn reshape(&self, new: &[usize]) -> Option<View> {
        if new.iter().product::<usize>() != self.len() {
            return None;
        }
        let mut v = View {
            slot: self.slot,
            offset: self.offset,
            shape: new.to_vec(),
            strides: row_major(new),
        };
        if self.len() == 0 || self.is_contiguous() {
            return Some(v);
        }
        let old: Vec<(usize, isize)> = self
            .shape
            .iter()
            .zip(&self.strides)
            .filter(|(n, _)| **n != 1)
            .map(|(&n, &s)| (n, s))
            .collect();
        let (mut ni, mut oi) = (0, 0);
        while ni < new.len() && oi < old.len() {
            if new[ni] == 1 {
                v.strides[ni] = 0;
                ni += 1;
                continue;
            }
            let (n0, o0) = (ni, oi);
            let (mut np, mut op) = (new[ni], old[oi].0);
            while np != op {
                if np < op {
                    ni += 1;
                    np *= new[ni];
                } else {
                    oi += 1;
                    op *= old[oi].0;
                }
            }
            if (o0..oi).any(|k| old[k].1 != old[k + 1].1 * old[k + 1].0 as isize) {
                return None;
            }
            v.strides[ni] = old[oi].1;
            for k in (n0..ni).rev() {
                v.strides[k] = v.strides[k + 1] * new[k + 1] as isize;
            }
            ni += 1;
            oi += 1;
        }
        for s in &mut v.strides[ni..] {
            *s = 0;
        }
        Some(v)
    }

    /// Numpy broadcast to `shape` (which the caller has checked): missing leading dims and
    /// size-1 dims get stride 0.
    pub(crate) fn broadcast_to(&self, shape: &[usize]) -> View {
        let lead = shape.len() - self.shape.len();
        let strides = (0..shape.len())
            .map(|d| {
                if d < lead || (self.shape[d - lead] == 1 && shape[d] != 1) {
                    0
                } else {
                    self.strides[d - lead]
                }
            })
            .collect();
        View {
            slot: self.slot,
            offset: self.offset,
            shape: shape.to_vec(),
            strides,
        }
    }
}
