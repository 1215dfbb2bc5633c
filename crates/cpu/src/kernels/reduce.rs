//! Reductions (`reduce_sum`, `reduce_mean`, `reduce_max`), softmax and layer norm. All accumulate
//! in f32 and round once at the end in fp16 numerics.

use crate::kernels::fused::{self, Fused};
use crate::kernels::math::exp;
use crate::kernels::simd::multiversion;
use crate::layout::Slot;
use crate::storage::{Ctx, Elem, PAR_MIN, Storage};
use crate::walk::Walk;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReduceKind {
    Sum,
    Mean,
    Max,
}

/// A reduction walked over the input's shape: operand 0 is the input, operand 1 the output
/// seen with stride 0 along the reduced axes.
#[derive(Clone, Debug)]
pub(crate) struct Reduce {
    pub kind: ReduceKind,
    pub x: Slot,
    pub out: Slot,
    pub out_len: usize,
    /// Elements folded into each output (for the mean).
    pub count: usize,
    pub walk: Walk,
}

/// The arithmetic a reduction needs from a storage type.
pub(crate) trait Acc: Elem {
    const LOWEST: Self;
    fn add(self, o: Self) -> Self;
    fn max(self, o: Self) -> Self;
    fn div(self, n: usize) -> Self;
}

impl Acc for f32 {
    const LOWEST: f32 = f32::NEG_INFINITY;
    fn add(self, o: f32) -> f32 {
        self + o
    }
    fn max(self, o: f32) -> f32 {
        f32::max(self, o)
    }
    fn div(self, n: usize) -> f32 {
        self / n as f32
    }
}

impl Acc for i64 {
    const LOWEST: i64 = i64::MIN;
    fn add(self, o: i64) -> i64 {
        self.wrapping_add(o)
    }
    fn max(self, o: i64) -> i64 {
        Ord::max(self, o)
    }
    fn div(self, n: usize) -> i64 {
        self / (n.max(1) as i64)
    }
}

pub(crate) fn reduce<T: Acc>(r: &Reduce, st: &mut Storage) {
    st.with_out::<T, _>(r.out, |out, st| {
        let out = &mut out[..r.out_len];
        let x = st.get::<T>(r.x);
        let max = r.kind == ReduceKind::Max;
        out.fill(if max { T::LOWEST } else { T::default() });
        let comb = |a: T, b: T| if max { a.max(b) } else { a.add(b) };
        let (sx, so) = (r.walk.inner_stride(0), r.walk.inner_stride(1));
        r.walk.runs(0, r.walk.len(), |o, n| {
            let at = |i: usize| (o[0] as isize + i as isize * sx) as usize;
            if so == 0 {
                let mut acc = out[o[1]];
                if sx == 1 {
                    for &v in &x[o[0]..o[0] + n] {
                        acc = comb(acc, v);
                    }
                } else {
                    for i in 0..n {
                        acc = comb(acc, x[at(i)]);
                    }
                }
                out[o[1]] = acc;
            } else if so == 1 && sx == 1 {
                for (d, &v) in out[o[1]..o[1] + n].iter_mut().zip(&x[o[0]..o[0] + n]) {
                    *d = comb(*d, v);
                }
            } else {
                for i in 0..n {
                    let d = (o[1] as isize + i as isize * so) as usize;
                    out[d] = comb(out[d], x[at(i)]);
                }
            }
        });
        if r.kind == ReduceKind::Mean {
            for d in out.iter_mut() {
                *d = d.div(r.count);
            }
        }
    });
}

/// Softmax or layer norm over the middle axis of a contiguous `[outer, n, inner]` input.
#[derive(Clone, Debug)]
pub(crate) struct Rows {
    pub x: Slot,
    pub x_off: usize,
    pub out: Slot,
    pub outer: usize,
    pub n: usize,
    pub inner: usize,
}

impl Rows {
    /// Calls `f(first_block, chunk, st)` on chunks of whole `[n, inner]` output blocks (in
    /// parallel when worthwhile), then rounds the chunk: the schedule both row ops share.
    fn for_blocks(&self, st: &mut Storage, ctx: &Ctx, f: impl Fn(usize, &mut [f32], &Storage) + Sync + Send) {
        let block = self.n * self.inner;
        if block * self.outer == 0 {
            return;
        }
        st.with_out::<f32, _>(self.out, |out, st| {
            let out = &mut out[..self.outer * block];
            ctx.chunks(out, block, (PAR_MIN / block.max(1)).max(1), |first, chunk| {
                f(first, chunk, st);
                ctx.round(chunk);
            });
        });
    }

    /// The input blocks (a softmax with an input group has none: it works in place).
    fn x<'s>(&self, st: &'s Storage) -> &'s [f32] {
        &st.get::<f32>(self.x)[self.x_off..self.x_off + self.outer * self.n * self.inner]
    }
}

/// Columns handled together when the reduced axis is not the last one.
const COLS: usize = 64;

/// Softmax over the middle axis, optionally preceded by the fused elementwise group that
/// computes its input (then `rows.x == rows.out` and each block is transformed in place).
#[derive(Clone, Debug)]
pub(crate) struct Softmax {
    pub rows: Rows,
    pub pre: Option<Fused>,
}

pub(crate) fn softmax(sm: &Softmax, st: &mut Storage, ctx: &Ctx) {
    let s = &sm.rows;
    let block = s.n * s.inner;
    s.for_blocks(st, ctx, |first, chunk, st| match &sm.pre {
        // Input rows are produced a few at a time, so they are still in L1 for the softmax.
        Some(f) => {
            let mut regs = fused::regs();
            let rows = (4096 / block).max(1) * block;
            for (k, sub) in chunk.chunks_mut(rows).enumerate() {
                fused::eval(f, st, sub, first * block + k * rows, ctx, &mut regs);
                sub.chunks_mut(block).for_each(|r| {
                    softmax_row_in_place(r);
                });
            }
        }
        None => {
            let x = s.x(st);
            for (b, d) in chunk.chunks_mut(block).enumerate() {
                let src = &x[(first + b) * block..(first + b + 1) * block];
                if s.inner == 1 {
                    softmax_row(src, d)
                } else {
                    softmax_cols(src, d, s.n, s.inner)
                }
            }
        }
    });
}

/// Lanes of the vector-friendly reductions (independent partial results the compiler keeps in
/// SIMD registers; a plain fold would be one serial chain).
const LANES: usize = 8;

#[inline(always)]
fn max_of(x: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &v) in m.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    m.iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// Sum in [`LANES`] independent partial sums.
#[inline(always)]
fn sum_of(x: &[f32]) -> f32 {
    let mut s = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (s, &v) in s.iter_mut().zip(c) {
            *s += v;
        }
    }
    s.iter().chain(rest).sum()
}

/// `d = exp(x - m)`, returning the sum of `d`.
#[inline(always)]
fn exp_sum(x: &[f32], d: &mut [f32], m: f32) -> f32 {
    for (d, &v) in d.iter_mut().zip(x) {
        *d = exp(v - m);
    }
    sum_of(d)
}

multiversion! {
/// Softmax of one row in place; returns the row's log-sum-exp (for a cross-entropy).
pub(crate) fn softmax_row_in_place(d: &mut [f32]) -> f32 {
    let m = max_of(d);
    for v in d.iter_mut() {
        *v = exp(*v - m);
    }
    let sum = sum_of(d);
    let inv = 1.0 / sum;
    for v in d.iter_mut() {
        *v *= inv;
    }
    m + sum.ln()
}
}

multiversion! {
fn softmax_row(x: &[f32], d: &mut [f32]) {
    let m = max_of(x);
    let inv = 1.0 / exp_sum(x, d, m);
    for d in d.iter_mut() {
        *d *= inv;
    }
}
}

multiversion! {
fn softmax_cols(x: &[f32], d: &mut [f32], n: usize, inner: usize) {
    for j0 in (0..inner).step_by(COLS) {
        let w = COLS.min(inner - j0);
        let mut m = [f32::NEG_INFINITY; COLS];
        let mut sum = [0f32; COLS];
        for i in 0..n {
            let row = &x[i * inner + j0..i * inner + j0 + w];
            for (m, &v) in m.iter_mut().zip(row) {
                *m = m.max(v);
            }
        }
        for i in 0..n {
            let (at, to) = (i * inner + j0, i * inner + j0 + w);
            for (((d, &v), &m), s) in d[at..to].iter_mut().zip(&x[at..to]).zip(&m).zip(&mut sum) {
                *d = exp(v - m);
                *s += *d;
            }
        }
        for i in 0..n {
            for (d, s) in d[i * inner + j0..i * inner + j0 + w].iter_mut().zip(&sum) {
                *d /= s;
            }
        }
    }
}
}

/// Layer norm: `(x - mean) / sqrt(var + eps) * gamma + beta`, with gamma/beta indexed along `n`.
#[derive(Clone, Debug)]
pub(crate) struct LayerNorm {
    pub rows: Rows,
    pub gamma: Option<(Slot, usize)>,
    pub beta: Option<(Slot, usize)>,
    pub eps: f32,
}

pub(crate) fn layer_norm(l: &LayerNorm, st: &mut Storage, ctx: &Ctx) {
    let s = &l.rows;
    let block = s.n * s.inner;
    s.for_blocks(st, ctx, |first, chunk, st| {
        let x = s.x(st);
        let param = |p: Option<(Slot, usize)>| p.map(|(slot, off)| &st.get::<f32>(slot)[off..off + s.n]);
        let (g, b) = (param(l.gamma), param(l.beta));
        for (k, d) in chunk.chunks_mut(block).enumerate() {
            let src = &x[(first + k) * block..(first + k + 1) * block];
            norm_block(src, d, s.n, s.inner, l.eps, g, b);
        }
    });
}

multiversion! {
fn norm_block(
    x: &[f32],
    d: &mut [f32],
    n: usize,
    inner: usize,
    eps: f32,
    g: Option<&[f32]>,
    b: Option<&[f32]>,
) {
    if inner == 1 {
        let mean = x.iter().sum::<f32>() / n as f32;
        let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
        let r = 1.0 / (var + eps).sqrt();
        for (i, (d, &v)) in d.iter_mut().zip(x).enumerate() {
            *d = (v - mean) * r * g.map_or(1.0, |g| g[i]) + b.map_or(0.0, |b| b[i]);
        }
        return;
    }
    for j0 in (0..inner).step_by(COLS) {
        let w = COLS.min(inner - j0);
        let mut mean = [0f32; COLS];
        let mut var = [0f32; COLS];
        for i in 0..n {
            for (m, &v) in mean.iter_mut().zip(&x[i * inner + j0..i * inner + j0 + w]) {
                *m += v;
            }
        }
        for m in &mut mean[..w] {
            *m /= n as f32;
        }
        for i in 0..n {
            for ((s, &v), &m) in var
                .iter_mut()
                .zip(&x[i * inner + j0..i * inner + j0 + w])
                .zip(&mean)
            {
                *s += (v - m) * (v - m);
            }
        }
        for s in &mut var[..w] {
            *s = 1.0 / (*s / n as f32 + eps).sqrt();
        }
        for i in 0..n {
            let (gi, bi) = (g.map_or(1.0, |g| g[i]), b.map_or(0.0, |b| b[i]));
            let (at, to) = (i * inner + j0, i * inner + j0 + w);
            for (((d, &v), &m), &r) in d[at..to].iter_mut().zip(&x[at..to]).zip(&mean).zip(&var) {
                *d = (v - m) * r * gi + bi;
            }
        }
    }
}
}
