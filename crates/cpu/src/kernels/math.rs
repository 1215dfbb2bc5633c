//! Scalar math of the elementwise ops, written as slice loops that the compiler vectorises.
//! `exp` is a Cephes-style polynomial (≈1 ulp) instead of libm's scalar call: softmax, sigmoid
//! and silu spend most of their time in it.

/// GELU flavours of the MIL `gelu` op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GeluMode {
    Exact,
    Tanh,
    Sigmoid,
}

use crate::kernels::simd::multiversion;

/// Unary float ops (parameters folded in).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Un {
    Sqrt,
    /// `1 / sqrt(x + epsilon)`
    Rsqrt(f32),
    Exp,
    /// `log(x + epsilon)`
    Log(f32),
    Sigmoid,
    Silu,
    Tanh,
    Relu,
    Gelu(GeluMode),
}

/// Binary float ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
}

impl Bin {
    pub(crate) fn from_op(op: &str) -> Option<Bin> {
        Some(match op {
            "add" => Bin::Add,
            "sub" => Bin::Sub,
            "mul" => Bin::Mul,
            "real_div" => Bin::Div,
            "maximum" => Bin::Max,
            "minimum" => Bin::Min,
            "pow" => Bin::Pow,
            _ => return None,
        })
    }
}

/// `e^x` in f32: range reduction by ln 2, degree-6 polynomial, and a two-step power-of-two
/// scale so results down in the subnormal range come out right.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    // Comparisons instead of `clamp`/`as i32` keep the loop free of NaN and saturation
    // handling, so it vectorises; NaN passes through both tests and stays NaN.
    let x = if x < -110.0 { -110.0 } else { x };
    let x = if x > 89.0 { 89.0 } else { x };
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    // `t`'s low mantissa bits hold n (offset by the magic's own bits).
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = x - n * C1 - n * C2;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * r
        * r
        + r
        + 1.0;
    let h = ni >> 1;
    let s1 = f32::from_bits(((h + 127) as u32) << 23);
    let s2 = f32::from_bits(((ni - h + 127) as u32) << 23);
    p * s1 * s2
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn gelu(mode: GeluMode, x: f32) -> f32 {
    match mode {
        GeluMode::Exact => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
        GeluMode::Tanh => {
            const K: f32 = 0.797_884_6; // sqrt(2/pi)
            0.5 * x * (1.0 + (K * (x + 0.044_715 * x * x * x)).tanh())
        }
        GeluMode::Sigmoid => x * sigmoid(1.702 * x),
    }
}

#[inline(always)]
fn map(d: &mut [f32], a: &[f32], f: impl Fn(f32) -> f32) {
    for (d, &a) in d.iter_mut().zip(a) {
        *d = f(a);
    }
}

multiversion! {
/// `d[i] = op(a[i])`.
pub(crate) fn unary(op: Un, a: &[f32], d: &mut [f32]) {
    match op {
        Un::Sqrt => map(d, a, f32::sqrt),
        Un::Rsqrt(e) => map(d, a, |x| 1.0 / (x + e).sqrt()),
        Un::Exp => map(d, a, exp),
        Un::Log(e) => map(d, a, |x| (x + e).ln()),
        Un::Sigmoid => map(d, a, sigmoid),
        Un::Silu => map(d, a, |x| x / (1.0 + exp(-x))),
        Un::Tanh => map(d, a, f32::tanh),
        Un::Relu => map(d, a, |x| if x > 0.0 { x } else { 0.0 }),
        Un::Gelu(m) => map(d, a, |x| gelu(m, x)),
    }
}
}

/// One operand of a binary op: a run of values or a scalar.
#[derive(Clone, Copy)]
pub(crate) enum Arg<'a> {
    Run(&'a [f32]),
    Scalar(f32),
}

#[inline(always)]
fn zip(d: &mut [f32], a: Arg, b: Arg, f: impl Fn(f32, f32) -> f32) {
    match (a, b) {
        (Arg::Run(a), Arg::Run(b)) => {
            for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
                *d = f(a, b);
            }
        }
        (Arg::Run(a), Arg::Scalar(b)) => map(d, a, |a| f(a, b)),
        (Arg::Scalar(a), Arg::Run(b)) => map(d, b, |b| f(a, b)),
        (Arg::Scalar(a), Arg::Scalar(b)) => d.fill(f(a, b)),
    }
}

multiversion! {
/// `d[i] = a[i] op b[i]`.
pub(crate) fn binary(op: Bin, a: Arg, b: Arg, d: &mut [f32]) {
    match op {
        Bin::Add => zip(d, a, b, |x, y| x + y),
        Bin::Sub => zip(d, a, b, |x, y| x - y),
        Bin::Mul => zip(d, a, b, |x, y| x * y),
        Bin::Div => zip(d, a, b, |x, y| x / y),
        Bin::Max => zip(d, a, b, f32::max),
        Bin::Min => zip(d, a, b, f32::min),
        Bin::Pow => zip(d, a, b, f32::powf),
    }
}
}

/// The same binary ops on integers; `wrap` brings the result back into the dtype's range.
pub(crate) fn binary_int(op: Bin, a: i64, b: i64, wrap: impl Fn(i64) -> i64) -> i64 {
    wrap(match op {
        Bin::Add => a.wrapping_add(b),
        Bin::Sub => a.wrapping_sub(b),
        Bin::Mul => a.wrapping_mul(b),
        // True division truncated toward zero, as numpy's `astype` does; x/0 gives 0.
        Bin::Div => a.checked_div(b).unwrap_or(0),
        Bin::Max => a.max(b),
        Bin::Min => a.min(b),
        Bin::Pow => match u32::try_from(b) {
            Ok(e) => a.wrapping_pow(e),
            Err(_) => (a as f64).powf(b as f64).trunc() as i64,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_close_to_libm() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        // Subnormal results: e^-100 ≈ 3.72e-44.
        let sub = exp(-100.0) as f64;
        assert!((sub - (-100.0f64).exp()).abs() < 1.5e-45, "{sub}");
    }
}
