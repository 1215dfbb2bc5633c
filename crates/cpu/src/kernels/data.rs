//! Kernels that move or convert data: strided copies (concat, materialising views), select,
//! cast, integer arithmetic and (de)quantisation. All of them walk a contiguous output
//! (operand 0) together with strided, possibly broadcast inputs.

use malus_mil::DType;

use crate::kernels::math::{self, Bin};
use crate::layout::{Class, Slot};
use crate::storage::{Ctx, Elem, Storage};
use crate::walk::{Walk, gather};

/// Copies a view (operand 1) into a view of another slot (operand 0).
#[derive(Clone, Debug)]
pub(crate) struct Copy {
    pub dst: Slot,
    pub src: Slot,
    pub walk: Walk,
}

pub(crate) fn copy<T: Elem>(c: &Copy, st: &mut Storage) {
    st.with_out::<T, _>(c.dst, |out, st| {
        let src = st.get::<T>(c.src);
        let (so, si) = (c.walk.inner_stride(0), c.walk.inner_stride(1));
        c.walk.runs(0, c.walk.len(), |o, n| {
            if so == 1 {
                gather(&mut out[o[0]..o[0] + n], src, o[1], si);
            } else {
                for i in 0..n {
                    let d = (o[0] as isize + i as isize * so) as usize;
                    out[d] = src[(o[1] as isize + i as isize * si) as usize];
                }
            }
        });
    });
}

/// Calls `f(out_run, input_offsets, n)` for each run of a contiguous output walked with its inputs.
fn for_out_runs<T>(walk: &Walk, out: &mut [T], mut f: impl FnMut(&mut [T], &[usize], usize)) {
    walk.runs(0, walk.len(), |o, n| f(&mut out[o[0]..o[0] + n], &o[1..], n));
}

/// `out = cond ? a : b` (operands: out, cond, a, b).
#[derive(Clone, Debug)]
pub(crate) struct Select {
    pub out: Slot,
    pub cond: Slot,
    pub a: Slot,
    pub b: Slot,
    pub walk: Walk,
}

pub(crate) fn select<T: Elem>(s: &Select, st: &mut Storage) {
    st.with_out::<T, _>(s.out, |out, st| {
        let (c, a, b) = (st.get::<u8>(s.cond), st.get::<T>(s.a), st.get::<T>(s.b));
        let (sc, sa, sb) = (
            s.walk.inner_stride(1),
            s.walk.inner_stride(2),
            s.walk.inner_stride(3),
        );
        for_out_runs(&s.walk, out, |d, o, _| {
            for (i, d) in d.iter_mut().enumerate() {
                let at = |base: usize, stride: isize| (base as isize + i as isize * stride) as usize;
                *d = if c[at(o[0], sc)] != 0 {
                    a[at(o[1], sa)]
                } else {
                    b[at(o[2], sb)]
                };
            }
        });
    });
}

/// Integer binary op (operands: out, x, y).
#[derive(Clone, Debug)]
pub(crate) struct IntBin {
    pub op: Bin,
    pub dtype: DType,
    pub out: Slot,
    pub x: Slot,
    pub y: Slot,
    pub walk: Walk,
}

/// Wraps an integer into the range of an integer dtype, as a store to that dtype would.
pub(crate) fn wrap(d: DType, v: i64) -> i64 {
    match d {
        DType::Int8 => v as i8 as i64,
        DType::Uint8 => v as u8 as i64,
        DType::Int16 => v as i16 as i64,
        DType::Uint16 => v as u16 as i64,
        DType::Int32 => v as i32 as i64,
        DType::Uint32 => v as u32 as i64,
        _ => v,
    }
}

pub(crate) fn int_bin(s: &IntBin, st: &mut Storage) {
    st.with_out::<i64, _>(s.out, |out, st| {
        let (x, y) = (st.get::<i64>(s.x), st.get::<i64>(s.y));
        let (sx, sy) = (s.walk.inner_stride(1), s.walk.inner_stride(2));
        for_out_runs(&s.walk, out, |d, o, _| {
            for (i, d) in d.iter_mut().enumerate() {
                let a = x[(o[0] as isize + i as isize * sx) as usize];
                let b = y[(o[1] as isize + i as isize * sy) as usize];
                *d = math::binary_int(s.op, a, b, |v| wrap(s.dtype, v));
            }
        });
    });
}

/// Conversion between storage classes or integer widths (operands: out, x).
#[derive(Clone, Debug)]
pub(crate) struct Cast {
    pub from: Class,
    pub to: DType,
    pub out: Slot,
    pub x: Slot,
    pub walk: Walk,
}

/// Float to integer: truncation toward zero (numpy's `astype`), saturated to the dtype's range.
fn f2i(d: DType, v: f32) -> i64 {
    let (lo, hi) = d.int_range().unwrap_or((i64::MIN as i128, i64::MAX as i128));
    (v as i64).clamp(lo as i64, hi.min(i64::MAX as i128) as i64)
}

fn cast_run<S: Elem, T: Elem>(c: &Cast, st: &mut Storage, f: impl Fn(S) -> T) {
    st.with_out::<T, _>(c.out, |out, st| {
        let x = st.get::<S>(c.x);
        let sx = c.walk.inner_stride(1);
        for_out_runs(&c.walk, out, |d, o, _| {
            for (i, d) in d.iter_mut().enumerate() {
                *d = f(x[(o[0] as isize + i as isize * sx) as usize]);
            }
        });
    });
}

pub(crate) fn cast(c: &Cast, st: &mut Storage, ctx: &Ctx) {
    let to = c.to;
    match (c.from, Class::of(to).unwrap_or(Class::F)) {
        (Class::F, Class::F) => cast_run(c, st, |v: f32| v),
        (Class::F, Class::I) => cast_run(c, st, |v: f32| f2i(to, v)),
        (Class::F, Class::B) => cast_run(c, st, |v: f32| (v != 0.0) as u8),
        (Class::I, Class::F) => cast_run(c, st, |v: i64| v as f32),
        (Class::I, Class::I) => cast_run(c, st, |v: i64| wrap(to, v)),
        (Class::I, Class::B) => cast_run(c, st, |v: i64| (v != 0) as u8),
        (Class::B, Class::F) => cast_run(c, st, |v: u8| v as f32),
        (Class::B, Class::I) => cast_run(c, st, |v: u8| v as i64),
        (Class::B, Class::B) => cast_run(c, st, |v: u8| v),
    }
    if Class::of(to) == Some(Class::F) {
        let n = c.walk.len();
        st.with_out::<f32, _>(c.out, |out, _| ctx.round(&mut out[..n]));
    }
}

/// `out = clip(round_half_even(x / scale) + zero_point)` (operands: out, x, scale[, zp]).
#[derive(Clone, Debug)]
pub(crate) struct Quantize {
    pub out: Slot,
    pub x: Slot,
    pub scale: Slot,
    pub zero_point: Option<Slot>,
    pub range: (i64, i64),
    pub walk: Walk,
}

pub(crate) fn quantize(q: &Quantize, st: &mut Storage) {
    st.with_out::<i64, _>(q.out, |out, st| {
        let (x, s) = (st.get::<f32>(q.x), st.get::<f32>(q.scale));
        let zp = q.zero_point.map(|z| st.get::<i64>(z));
        let (sx, ss, sz) = (
            q.walk.inner_stride(1),
            q.walk.inner_stride(2),
            zp.map_or(0, |_| q.walk.inner_stride(3)),
        );
        for_out_runs(&q.walk, out, |d, o, _| {
            for (i, d) in d.iter_mut().enumerate() {
                let at = |base: usize, stride: isize| (base as isize + i as isize * stride) as usize;
                let z = zp.map_or(0, |z| z[at(o[2], sz)]);
                let v = (x[at(o[0], sx)] / s[at(o[1], ss)]).round_ties_even() + z as f32;
                *d = (v.clamp(q.range.0 as f32, q.range.1 as f32)) as i64;
            }
        });
    });
}

/// `out = (q - zero_point) * scale` (operands: out, q, scale[, zp]).
#[derive(Clone, Debug)]
pub(crate) struct Dequantize {
    pub out: Slot,
    pub q: Slot,
    pub scale: Slot,
    pub zero_point: Option<Slot>,
    pub walk: Walk,
}

pub(crate) fn dequantize(q: &Dequantize, st: &mut Storage, ctx: &Ctx) {
    let n = q.walk.len();
    st.with_out::<f32, _>(q.out, |out, st| {
        let (x, s) = (st.get::<i64>(q.q), st.get::<f32>(q.scale));
        let zp = q.zero_point.map(|z| st.get::<i64>(z));
        let (sx, ss, sz) = (
            q.walk.inner_stride(1),
            q.walk.inner_stride(2),
            zp.map_or(0, |_| q.walk.inner_stride(3)),
        );
        for_out_runs(&q.walk, out, |d, o, _| {
            for (i, d) in d.iter_mut().enumerate() {
                let at = |base: usize, stride: isize| (base as isize + i as isize * stride) as usize;
                let z = zp.map_or(0, |z| z[at(o[2], sz)]);
                *d = (x[at(o[0], sx)] - z) as f32 * s[at(o[1], ss)];
            }
        });
        ctx.round(&mut out[..n]);
    });
}
