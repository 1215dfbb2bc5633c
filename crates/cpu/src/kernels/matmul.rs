//! Matrix products through the `gemm` crate: `matmul`, `linear` and convolutions all end here.
//! Operands are strided views, so transposed and sliced inputs need no copies.

use gemm::Parallelism;

use crate::layout::Slot;
use crate::storage::{Ctx, Storage};
use crate::walk::MAX_RANK;

/// A matrix inside a buffer: offset of element (0, 0), row stride and column stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mat {
    pub off: usize,
    pub rs: isize,
    pub cs: isize,
}

impl Mat {
    fn at(self, off: isize) -> Mat {
        Mat {
            off: (self.off as isize + off) as usize,
            ..self
        }
    }

    /// Panics unless every element of a `rows × cols` matrix lies inside a buffer of `len`.
    fn check(self, len: usize, rows: usize, cols: usize) {
        if rows == 0 || cols == 0 {
            return;
        }
        let span = |n: usize, s: isize| (n as isize - 1) * s;
        let (a, b) = (span(rows, self.rs), span(cols, self.cs));
        let lo = self.off as isize + a.min(0) + b.min(0);
        let hi = self.off as isize + a.max(0) + b.max(0);
        assert!(lo >= 0 && (hi as usize) < len, "matrix view outside its buffer");
    }
}

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)`, all in f32.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_f32(
    dst: &mut [f32],
    d: Mat,
    lhs: &[f32],
    l: Mat,
    rhs: &[f32],
    r: Mat,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    d.check(dst.len(), m, n);
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[(d.off as isize + i as isize * d.rs + j as isize * d.cs) as usize] = 0.0;
                }
            }
        }
        return;
    }
    l.check(lhs.len(), m, k);
    r.check(rhs.len(), k, n);
    // SAFETY: `check` proved that every element gemm addresses through these pointers and
    // strides lies inside `dst`, `lhs` and `rhs`; `dst` is a unique borrow, so it does not
    // alias the shared `lhs`/`rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(d.off),
            d.cs,
            d.rs,
            accumulate,
            lhs.as_ptr().add(l.off),
            l.cs,
            l.rs,
            rhs.as_ptr().add(r.off),
            r.cs,
            r.rs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// A batched product: `out[b] = x[b] · y[b] (+ bias along columns)`. Output batches are
/// contiguous blocks of `m·n` in the output slot; inside a block the layout is `out`.
#[derive(Clone, Debug)]
pub(crate) struct Matmul {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub x: Slot,
    pub y: Slot,
    pub out: Slot,
    pub xm: Mat,
    pub ym: Mat,
    pub om: Mat,
    pub batch: Vec<usize>,
    pub x_bs: Vec<isize>,
    pub y_bs: Vec<isize>,
    /// Bias (slot, offset, stride) added to every row.
    pub bias: Option<(Slot, usize, isize)>,
    /// Run batches on separate threads, each gemm single-threaded (many small products).
    pub batch_parallel: bool,
}

impl Matmul {
    fn batches(&self) -> usize {
        self.batch.iter().product()
    }

    /// Offsets of batch `b` in x and y.
    fn batch_offsets(&self, mut b: usize) -> (isize, isize) {
        let mut idx = [0usize; MAX_RANK];
        for d in (0..self.batch.len()).rev() {
            idx[d] = b % self.batch[d];
            b /= self.batch[d];
        }
        let mut o = (0isize, 0isize);
        for (d, &i) in idx.iter().enumerate().take(self.batch.len()) {
            o.0 += i as isize * self.x_bs[d];
            o.1 += i as isize * self.y_bs[d];
        }
        o
    }

    fn block(&self, b: usize, x: &[f32], y: &[f32], bias: Option<&[f32]>, out: &mut [f32], par: Parallelism) {
        let (xo, yo) = self.batch_offsets(b);
        if let Some(bias) = bias {
            let (_, off, s) = self.bias.expect("bias slot");
            for i in 0..self.m {
                for j in 0..self.n {
                    let at = self.om.off as isize + i as isize * self.om.rs + j as isize * self.om.cs;
                    out[at as usize] = bias[(off as isize + j as isize * s) as usize];
                }
            }
        }
        let dims = (self.m, self.n, self.k);
        gemm_f32(
            out,
            self.om,
            x,
            self.xm.at(xo),
            y,
            self.ym.at(yo),
            dims,
            bias.is_some(),
            par,
        );
    }
}

pub(crate) fn matmul(mm: &Matmul, st: &mut Storage, ctx: &Ctx) {
    let block = mm.m * mm.n;
    let total = mm.batches() * block;
    if total == 0 {
        return;
    }
    st.with_out::<f32, _>(mm.out, |out, st| {
        let (x, y) = (st.get::<f32>(mm.x), st.get::<f32>(mm.y));
        let bias = mm.bias.map(|(s, _, _)| st.get::<f32>(s));
        let out = &mut out[..total];
        if mm.batch_parallel && ctx.parallel {
            ctx.chunks(out, block, 1, |first, chunk| {
                for (i, o) in chunk.chunks_mut(block).enumerate() {
                    mm.block(first + i, x, y, bias, o, Parallelism::None);
                    ctx.round(o);
                }
            });
        } else {
            let par = if ctx.parallel {
                Parallelism::Rayon(0)
            } else {
                Parallelism::None
            };
            for (b, o) in out.chunks_mut(block.max(1)).enumerate() {
                mm.block(b, x, y, bias, o, par);
            }
            ctx.round_all(out);
        }
    });
}

/// Row-major `c (m×n) = a (m×k) · b (k×n)` in f32 straight through the gemm crate, on rayon's
/// threads when `parallel`. The benchmarks' baseline for what the executor adds.
///
/// # Panics
/// When a slice is shorter than its matrix.
pub fn gemm_f32_row_major(m: usize, n: usize, k: usize, c: &mut [f32], a: &[f32], b: &[f32], parallel: bool) {
    let par = if parallel {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    let mat = |cols: usize| Mat {
        off: 0,
        rs: cols as isize,
        cs: 1,
    };
    gemm_f32(c, mat(n), a, mat(k), b, mat(n), (m, n, k), false, par);
}
