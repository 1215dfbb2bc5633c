//! Runtime dispatch to AVX2+FMA code. The default x86-64 target only guarantees SSE2, so the
//! hot vector loops (elementwise math, softmax, layer norm) are compiled twice by
//! [`multiversion!`]: once as is and once inside a function built with AVX2 and FMA, picked per
//! call from the CPU's features. Results are identical: Rust never contracts `a * b + c` into an
//! FMA by itself, and the same operations run in the same order.

use std::sync::OnceLock;

/// Whether this CPU runs the AVX2+FMA versions.
pub(crate) fn has_avx2_fma() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Defines a function whose body is compiled both for the baseline target and for AVX2+FMA,
/// dispatching at run time. Closures and helpers the body calls should be `#[inline(always)]`
/// (or small) so they are compiled into each version.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                if $crate::kernels::simd::has_avx2_fma() {
                    // SAFETY: `avx2` only needs the AVX2 and FMA instructions, and the CPU has
                    // them (checked at run time just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

pub(crate) use multiversion;
