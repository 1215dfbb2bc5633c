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

/// The operands quantize and dequantize share (out, x, scale[, zero_point]); scale and zero
/// point are broadcast views, so one walk serves both ops.
#[derive(Clone, Debug)]
pub(crate) struct Affine {
    pub out: Slot,
    pub x: Slot,
    pub scale: Slot,
    pub zero_point: Option<Slot>,
    pub walk: Walk,
}

/// A quantisation into the integer dtype whose range is `range`.
#[derive(Clone, Debug)]
pub(crate) struct Quantize {
    pub affine: Affine,
    pub range: (i64, i64),
}

/// `clip(round_half_even(x / scale) + zero_point)`.
#[inline(always)]
pub(crate) fn quantize_one(x: f32, scale: f32, zero_point: i64, (lo, hi): (i64, i64)) -> i64 {
    let v = (x / scale).round_ties_even() + zero_point as f32;
    (v.clamp(lo as f32, hi as f32)) as i64
}

/// `(q - zero_point) * scale`.
#[inline(always)]
pub(crate) fn dequantize_one(q: i64, scale: f32, zero_point: i64) -> f32 {
    (q - zero_point) as f32 * scale
}

/// `out = f(x, scale, zero_point)` elementwise; a missing zero point reads as 0.
fn affine_run<S: Elem, T: Elem>(a: &Affine, st: &mut Storage, f: impl Fn(S, f32, i64) -> T) {
    st.with_out::<T, _>(a.out, |out, st| {
        let (x, s) = (st.get::<S>(a.x), st.get::<f32>(a.scale));
        let zp = a.zero_point.map(|z| st.get::<i64>(z));
        let (sx, ss, sz) = (
            a.walk.inner_stride(1),
            a.walk.inner_stride(2),
            zp.map_or(0, |_| a.walk.inner_stride(3)),
        );
        for_out_runs(&a.walk, out, |d, o, _| {
            for (i, d) in d.iter_mut().enumerate() {
                let at = |base: usize, stride: isize| (base as isize + i as isize * stride) as usize;
                let z = zp.map_or(0, |z| z[at(o[2], sz)]);
                *d = f(x[at(o[0], sx)], s[at(o[1], ss)], z);
            }
        });
    });
}

pub(crate) fn quantize(q: &Quantize, st: &mut Storage) {
    affine_run(&q.affine, st, |x: f32, s, z| quantize_one(x, s, z, q.range));
}

pub(crate) fn dequantize(a: &Affine, st: &mut Storage, ctx: &Ctx) {
    affine_run(a, st, |q: i64, s, z| dequantize_one(q, s, z));
    let n = a.walk.len();
    st.with_out::<f32, _>(a.out, |out, _| ctx.round(&mut out[..n]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_rounds_half_to_even_adds_zero_point_and_saturates() {
        let u8r = (0, 255);
        // Ties go to even: 1.25/0.5 = 2.5 → 2, 2.25/0.5 = 4.5 → 4 (half away from zero: 3, 5).
        assert_eq!(quantize_one(1.25, 0.5, 0, u8r), 2);
        assert_eq!(quantize_one(2.25, 0.5, 0, u8r), 4);
        assert_eq!(quantize_one(3.5, 1.0, 0, u8r), 4);
        assert_eq!(quantize_one(-2.5, 1.0, 128, u8r), 126);
        // Saturation at both ends (after adding the zero point).
        assert_eq!(quantize_one(10.0, 0.01, 0, u8r), 255);
        assert_eq!(quantize_one(-1.0, 0.5, 1, u8r), 0);
        assert_eq!(quantize_one(-10.0, 0.01, 0, (-128, 127)), -128);
    }

    #[test]
    fn dequantize_subtracts_zero_point_then_scales() {
        assert_eq!(dequantize_one(130, 0.25, 128), 0.5);
        assert_eq!(dequantize_one(-3, 0.5, 3), -3.0);
        assert_eq!(dequantize_one(7, 0.125, 0), 0.875);
    }

    #[test]
    fn quantize_then_dequantize_is_within_half_a_step() {
        let (scale, zp) = (0.1f32, 100);
        for (x, q) in [(0.0f32, 100), (0.26, 103), (-1.04, 90), (12.7, 227), (50.0, 255)] {
            assert_eq!(quantize_one(x, scale, zp, (0, 255)), q, "{x}");
            let back = dequantize_one(q, scale, zp);
            if q < 255 {
                assert!((back - x).abs() <= scale / 2.0 + 1e-6, "{x} → {q} → {back}");
            } else {
                assert_eq!(back, 15.5); // saturated: (255 - 100) · 0.1
            }
        }
    }
}
