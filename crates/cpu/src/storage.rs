//! Tensor storage. Every float dtype (fp16, fp32, fp64) is held as f32, every integer dtype as
//! i64 and bool as u8 (0/1): one kernel per storage type serves every dtype. In fp16 numerics
//! the f32 values are kept exactly representable in fp16 by rounding after every op.
//!
//! Slots are sized at compile time and never grow, so `run` allocates nothing here.

#[cfg(test)]
use half::f16;
use rayon::prelude::*;

use crate::kernels::simd::multiversion;
use crate::layout::{Class, Slot};

/// All buffers of a kernel, one pool per storage type.
#[derive(Debug, Default)]
pub(crate) struct Storage {
    pub f: Vec<Vec<f32>>,
    pub i: Vec<Vec<i64>>,
    pub b: Vec<Vec<u8>>,
}

/// A storage element type: picks its pool.
pub(crate) trait Elem: Copy + Default + Send + Sync + PartialOrd + 'static {
    fn pool(st: &Storage) -> &Vec<Vec<Self>>;
    fn pool_mut(st: &mut Storage) -> &mut Vec<Vec<Self>>;
}

macro_rules! elem {
    ($t:ty, $field:ident) => {
        impl Elem for $t {
            fn pool(st: &Storage) -> &Vec<Vec<$t>> {
                &st.$field
            }
            fn pool_mut(st: &mut Storage) -> &mut Vec<Vec<$t>> {
                &mut st.$field
            }
        }
    };
}
elem!(f32, f);
elem!(i64, i);
elem!(u8, b);

impl Storage {
    pub(crate) fn get<T: Elem>(&self, s: Slot) -> &[T] {
        &T::pool(self)[s.idx]
    }

    /// Runs `f` with the output slot's buffer taken out, so the other slots can be read at the
    /// same time (the planner never makes an op's output slot one of its input slots).
    pub(crate) fn with_out<T: Elem, R>(&mut self, s: Slot, f: impl FnOnce(&mut [T], &Storage) -> R) -> R {
        let mut buf = std::mem::take(&mut T::pool_mut(self)[s.idx]);
        let r = f(&mut buf, self);
        T::pool_mut(self)[s.idx] = buf;
        r
    }

    /// Adds a slot holding `data`.
    pub(crate) fn push_f(&mut self, data: Vec<f32>) -> Slot {
        self.f.push(data);
        Slot {
            class: Class::F,
            idx: self.f.len() - 1,
        }
    }
    pub(crate) fn push_i(&mut self, data: Vec<i64>) -> Slot {
        self.i.push(data);
        Slot {
            class: Class::I,
            idx: self.i.len() - 1,
        }
    }
    pub(crate) fn push_b(&mut self, data: Vec<u8>) -> Slot {
        self.b.push(data);
        Slot {
            class: Class::B,
            idx: self.b.len() - 1,
        }
    }

    /// Sizes a slot to `len` elements (zeroed); an error instead of an abort when the memory
    /// cannot be had.
    pub(crate) fn resize(&mut self, s: Slot, len: usize) -> Result<(), std::collections::TryReserveError> {
        fn grow<T: Clone>(
            v: &mut Vec<T>,
            len: usize,
            zero: T,
        ) -> Result<(), std::collections::TryReserveError> {
            v.try_reserve_exact(len.saturating_sub(v.len()))?;
            v.resize(len, zero);
            Ok(())
        }
        match s.class {
            Class::F => grow(&mut self.f[s.idx], len, 0.0),
            Class::I => grow(&mut self.i[s.idx], len, 0),
            Class::B => grow(&mut self.b[s.idx], len, 0),
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.f.iter().map(|v| v.len() * 4).sum::<usize>()
            + self.i.iter().map(|v| v.len() * 8).sum::<usize>()
            + self.b.iter().map(Vec::len).sum::<usize>()
    }
}

/// How a kernel runs: numerics and threading.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx {
    /// Round every float op result to fp16.
    pub fp16: bool,
    /// Use rayon (the kernel's pool or the global one).
    pub parallel: bool,
}

/// Elements below which splitting work across threads costs more than it saves.
pub(crate) const PAR_MIN: usize = 1 << 15;

impl Ctx {
    /// Rounds to fp16 when the numerics ask for it.
    #[inline]
    pub(crate) fn round(&self, x: &mut [f32]) {
        if self.fp16 {
            round_f16(x);
        }
    }

    /// Rounds to fp16 (when asked) on all threads.
    pub(crate) fn round_all(&self, x: &mut [f32]) {
        if self.fp16 {
            self.chunks(x, 1024, PAR_MIN / 1024, |_, c| round_f16(c));
        }
    }

    /// Number of tasks to split `n` units of work into.
    pub(crate) fn tasks(&self, n: usize, min_per_task: usize) -> usize {
        if !self.parallel || n < 2 * min_per_task.max(1) {
            1
        } else {
            (rayon::current_num_threads() * 4)
                .min(n / min_per_task.max(1))
                .max(1)
        }
    }

    /// Splits `out` into chunks of whole `unit`s (the last may be partial) and calls
    /// `f(first_unit, chunk)` for each, in parallel when worthwhile.
    pub(crate) fn chunks<T: Send>(
        &self,
        out: &mut [T],
        unit: usize,
        min_units: usize,
        f: impl Fn(usize, &mut [T]) + Sync + Send,
    ) {
        let unit = unit.max(1);
        let units = out.len().div_ceil(unit);
        let tasks = self.tasks(units, min_units);
        if tasks <= 1 {
            f(0, out);
            return;
        }
        let per = units.div_ceil(tasks);
        out.par_chunks_mut(per * unit)
            .enumerate()
            .for_each(|(t, c)| f(t * per, c));
    }
}

/// The nearest fp16 value of `x`, as an f32 (IEEE round-to-nearest-even; overflow to ±inf;
/// fp16 subnormals kept; NaN stays NaN). Plain float and integer arithmetic, so slice loops
/// over it vectorise; tested bit-for-bit against the `half` crate.
#[inline(always)]
pub(crate) fn to_f16_precision(x: f32) -> f32 {
    const MIN_NORMAL: f32 = 6.103_515_6e-5; // 2^-14
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let bits = x.to_bits();
    let sign = bits & 0x8000_0000;
    // Normal range: drop 13 mantissa bits, ties to even (a carry moves into the exponent).
    let normal = f32::from_bits(bits.wrapping_add(0xFFF + ((bits >> 13) & 1)) & !0x1FFF);
    let normal = if normal.abs() > 65504.0 {
        f32::from_bits(0x7F80_0000 | sign)
    } else {
        normal
    };
    // Subnormal range: a multiple of 2^-24.
    let sub = ((x * 16_777_216.0 + MAGIC) - MAGIC) * (1.0 / 16_777_216.0);
    let sub = f32::from_bits(sub.to_bits() | sign);
    let r = if x.abs() < MIN_NORMAL { sub } else { normal };
    // A quieted copy of a NaN rather than `x` itself: selecting the loaded value would let the
    // compiler turn the loop's store into a masked store, which is slow on AMD CPUs.
    if x.is_nan() {
        f32::from_bits(bits | 0x0040_0000)
    } else {
        r
    }
}

multiversion! {
/// Rounds f32 values to the nearest fp16 value, in place (see [`to_f16_precision`]).
pub(crate) fn round_f16(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = to_f16_precision(*v);
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_rounding_matches_half_bit_for_bit() {
        let check = |x: f32| {
            let want = f16::from_f32(x).to_f32();
            let got = to_f16_precision(x);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{x:e} ({:#010x}): got {got:e}, half gives {want:e}",
                x.to_bits()
            );
        };
        // A stride through all bit patterns, plus every pattern around the range edges.
        let mut b = 0u32;
        loop {
            check(f32::from_bits(b));
            match b.checked_add(4093) {
                Some(n) => b = n,
                None => break,
            }
        }
        for edge in [
            65504.0f32,
            65520.0,
            6.103_515_6e-5,
            5.960_464_5e-8,
            2.980_232_2e-8,
            1.0,
            0.0,
        ] {
            let e = edge.to_bits();
            for d in 0..20_000u32 {
                check(f32::from_bits(e.wrapping_add(d)));
                check(f32::from_bits(e.wrapping_sub(d)));
                check(-f32::from_bits(e.wrapping_add(d)));
            }
        }
        let mut v = vec![1.0e-6f32, -3.3, 70000.0, f32::NAN, -0.0, 1.0e-8];
        round_f16(&mut v);
        assert_eq!(
            v[..3],
            [
                f16::from_f32(1.0e-6).to_f32(),
                f16::from_f32(-3.3).to_f32(),
                f32::INFINITY
            ]
        );
        assert!(v[3].is_nan() && v[4].to_bits() == (-0.0f32).to_bits() && v[5] == 0.0);
    }
}
