//! IOSurface buffers: size policy, creation properties, binding order, locking, fp16 conversion.
//!
//! The size math and the binding order are pure functions so they are tested on Linux; the
//! [`Surface`] type owns one `IOSurfaceRef` through the [`Backend`].

use std::sync::Arc;

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::backend::{Backend, LOCK_WRITE, SurfaceRef};
use crate::spec::IoDType;

/// An `IOSurfaceCreate` property key (a `kIOSurface*` CFString constant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SurfaceKey {
    /// `kIOSurfaceWidth`
    Width,
    /// `kIOSurfaceHeight`
    Height,
    /// `kIOSurfaceBytesPerElement`
    BytesPerElement,
    /// `kIOSurfaceBytesPerRow`
    BytesPerRow,
    /// `kIOSurfaceAllocSize`
    AllocSize,
    /// `kIOSurfacePixelFormat`
    PixelFormat,
}

impl SurfaceKey {
    /// All keys, in [`SurfaceKey::index`] order.
    pub const ALL: [SurfaceKey; 6] = [
        SurfaceKey::Width,
        SurfaceKey::Height,
        SurfaceKey::BytesPerElement,
        SurfaceKey::BytesPerRow,
        SurfaceKey::AllocSize,
        SurfaceKey::PixelFormat,
    ];

    /// Position in [`SurfaceKey::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The exported symbol holding the key's CFString.
    pub fn symbol(self) -> &'static str {
        match self {
            SurfaceKey::Width => "kIOSurfaceWidth",
            SurfaceKey::Height => "kIOSurfaceHeight",
            SurfaceKey::BytesPerElement => "kIOSurfaceBytesPerElement",
            SurfaceKey::BytesPerRow => "kIOSurfaceBytesPerRow",
            SurfaceKey::AllocSize => "kIOSurfaceAllocSize",
            SurfaceKey::PixelFormat => "kIOSurfacePixelFormat",
        }
    }
}

/// Properties of a flat surface of `bytes` bytes: one row of `bytes` one-byte elements, as every
/// working caller creates them (docs/ane-runtime.md §8).
pub fn surface_properties(bytes: usize) -> [(SurfaceKey, i64); 6] {
    let b = bytes as i64;
    [
        (SurfaceKey::Width, b),
        (SurfaceKey::Height, 1),
        (SurfaceKey::BytesPerElement, 1),
        (SurfaceKey::BytesPerRow, b),
        (SurfaceKey::AllocSize, b),
        (SurfaceKey::PixelFormat, 0),
    ]
}

/// Which surfaces are grown to a common size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Equalize {
    /// Each surface keeps its own size.
    #[default]
    None,
    /// All inputs get the largest input's size; all outputs the largest output's.
    PerDirection,
    /// Every input and output gets the largest size of all (Orion: unequal multi-input or
    /// multi-output allocations fail with 0x1d; docs/ane-restrictions.md row 16).
    All,
}

/// How surface sizes are derived from tensor byte sizes. The tensor data always sits packed at
/// offset 0 (docs/ane-restrictions.md row 17); padding only grows the allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SurfacePolicy {
    /// Round each size up to a multiple of this (1 = exact; 128 per the unverified M5 note).
    pub align: usize,
    /// Never allocate less than this (0 = no minimum; Orion reports failures below ~49 KB).
    pub min_bytes: usize,
    /// Common sizes across surfaces.
    pub equalize: Equalize,
}

impl Default for SurfacePolicy {
    /// Exact sizes, as maderix/ANE allocates them.
    fn default() -> Self {
        SurfacePolicy {
            align: 1,
            min_bytes: 0,
            equalize: Equalize::None,
        }
    }
}

impl SurfacePolicy {
    /// The strictest published rules at once: 128-byte multiples and one size for everything.
    pub fn conservative() -> Self {
        SurfacePolicy {
            align: 128,
            min_bytes: 0,
            equalize: Equalize::All,
        }
    }

    fn pad(&self, bytes: usize) -> usize {
        let b = bytes.max(self.min_bytes);
        let a = self.align.max(1);
        b.div_ceil(a).saturating_mul(a)
    }

    /// Allocation sizes for tensors of the given byte sizes (same order in and out).
    pub fn sizes(&self, inputs: &[usize], outputs: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let mut ins: Vec<usize> = inputs.iter().map(|&b| self.pad(b)).collect();
        let mut outs: Vec<usize> = outputs.iter().map(|&b| self.pad(b)).collect();
        let max_in = ins.iter().copied().max().unwrap_or(0);
        let max_out = outs.iter().copied().max().unwrap_or(0);
        let (fill_in, fill_out) = match self.equalize {
            Equalize::None => return (ins, outs),
            Equalize::PerDirection => (max_in, max_out),
            Equalize::All => (max_in.max(max_out), max_in.max(max_out)),
        };
        ins.iter_mut().for_each(|b| *b = fill_in);
        outs.iter_mut().for_each(|b| *b = fill_out);
        (ins, outs)
    }
}

/// The order in which a request's surfaces are listed (its index arrays are always `0..n-1`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BindingOrder {
    /// Sorted by MIL name, byte-wise (Rust `str` order: `B` < `a`). Orion found the ANE binds
    /// multi-input/output programs in alphabetical name order whatever the declaration order
    /// (docs/ane-restrictions.md row 15); when names are declared sorted, both orders agree.
    #[default]
    ByName,
    /// The order of the spec (the MIL parameter / return order, as maderix/ANE binds).
    AsDeclared,
}

/// The spec indices of `names` in binding order.
pub fn binding_order(names: &[&str], order: BindingOrder) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..names.len()).collect();
    if order == BindingOrder::ByName {
        idx.sort_by(|&a, &b| names[a].cmp(names[b]));
    }
    idx
}

/// Writes `src` into the first `src.len()` elements of `dst` in `dtype` (fp16 rounds to nearest).
/// `dst` must be at least `src.len() * dtype.size()` bytes and 4-byte aligned.
pub(crate) fn encode_f32(dtype: IoDType, src: &[f32], dst: &mut [u8]) {
    let n = src.len();
    match dtype {
        IoDType::Fp16 => as_f16_mut(&mut dst[..n * 2]).convert_from_f32_slice(src),
        IoDType::Fp32 => as_f32_mut(&mut dst[..n * 4]).copy_from_slice(src),
    }
}

/// Reads `dst.len()` elements of `dtype` from the start of `src` into `dst`.
pub(crate) fn decode_f32(dtype: IoDType, src: &mut [u8], dst: &mut [f32]) {
    let n = dst.len();
    match dtype {
        IoDType::Fp16 => as_f16_mut(&mut src[..n * 2]).convert_to_f32_slice(dst),
        IoDType::Fp32 => dst.copy_from_slice(as_f32_mut(&mut src[..n * 4])),
    }
}

/// Writes fp16 values in `dtype`.
pub(crate) fn encode_f16(dtype: IoDType, src: &[f16], dst: &mut [u8]) {
    let n = src.len();
    match dtype {
        IoDType::Fp16 => as_f16_mut(&mut dst[..n * 2]).copy_from_slice(src),
        IoDType::Fp32 => src.convert_to_f32_slice(as_f32_mut(&mut dst[..n * 4])),
    }
}

/// Reads values of `dtype` as fp16.
pub(crate) fn decode_f16(dtype: IoDType, src: &mut [u8], dst: &mut [f16]) {
    let n = dst.len();
    match dtype {
        IoDType::Fp16 => dst.copy_from_slice(as_f16_mut(&mut src[..n * 2])),
        IoDType::Fp32 => dst.convert_from_f32_slice(as_f32_mut(&mut src[..n * 4])),
    }
}

fn as_f16_mut(bytes: &mut [u8]) -> &mut [f16] {
    // SAFETY: every bit pattern is a valid f16, and `align_to_mut` only yields a middle slice of
    // properly aligned, in-bounds elements; the assert rejects misaligned input.
    let (pre, mid, post) = unsafe { bytes.align_to_mut::<f16>() };
    assert!(pre.is_empty() && post.is_empty(), "misaligned fp16 buffer");
    mid
}

fn as_f32_mut(bytes: &mut [u8]) -> &mut [f32] {
    // SAFETY: as `as_f16_mut`; every bit pattern is a valid f32.
    let (pre, mid, post) = unsafe { bytes.align_to_mut::<f32>() };
    assert!(pre.is_empty() && post.is_empty(), "misaligned fp32 buffer");
    mid
}

/// One owned IOSurface. Released (`CFRelease`) on drop.
pub(crate) struct Surface {
    backend: Arc<dyn Backend>,
    raw: SurfaceRef,
    /// Bytes the surface really has (`IOSurfaceGetAllocSize`, ≥ what was asked).
    alloc: usize,
}

impl Surface {
    /// Creates a zero-filled surface of at least `bytes` bytes.
    pub(crate) fn new(backend: Arc<dyn Backend>, bytes: usize) -> Result<Surface, String> {
        let raw = backend.surface_create(bytes);
        if raw.is_null() {
            return Err(format!("IOSurfaceCreate({bytes} bytes) returned NULL"));
        }
        // SAFETY: `raw` was just created and is owned here (released by `Drop` from now on).
        let alloc = unsafe { backend.surface_alloc_size(raw) };
        let mut s = Surface { backend, raw, alloc };
        if alloc < bytes {
            return Err(format!("IOSurface allocated {alloc} bytes, {bytes} requested"));
        }
        s.lock(LOCK_WRITE)?.bytes().fill(0);
        Ok(s)
    }

    /// The `IOSurfaceRef` (still owned by `self`).
    pub(crate) fn raw(&self) -> SurfaceRef {
        self.raw
    }

    /// Locks for writing (`options` = 0) or reading ([`crate::backend::LOCK_READ_ONLY`]).
    pub(crate) fn lock(&mut self, options: u32) -> Result<SurfaceGuard<'_>, String> {
        // SAFETY: `self.raw` is live while `self` is.
        let kr = unsafe { self.backend.surface_lock(self.raw, options) };
        if kr != 0 {
            return Err(format!(
                "IOSurfaceLock(options {options}) failed: kern_return {kr:#x}"
            ));
        }
        let guard = SurfaceGuard {
            surface: self,
            options,
        };
        // SAFETY: live surface.
        let base = unsafe { guard.surface.backend.surface_base(guard.surface.raw) };
        if base.is_null() || (base as usize) % 8 != 0 {
            return Err(format!("IOSurfaceGetBaseAddress returned {base:p}"));
        }
        Ok(guard)
    }
}

impl Drop for Surface {
    fn drop(&mut self) {
        // SAFETY: `self` owns the +1 reference from `IOSurfaceCreate` and never uses it again.
        unsafe { self.backend.cf_release(self.raw) }
    }
}

/// A locked surface; unlocks on drop.
pub(crate) struct SurfaceGuard<'a> {
    surface: &'a mut Surface,
    options: u32,
}

impl SurfaceGuard<'_> {
    /// The whole allocation. Writes through a read-only lock are possible in Rust but would not
    /// be seen by the ANE as modified; only the read paths use read-only locks.
    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        let s = &*self.surface;
        // SAFETY: the surface is locked by us and alive for `'a`; the backend contract says its
        // base address (checked non-null and 8-aligned in `lock`) points to `alloc` bytes that
        // nobody else touches while locked; `&mut self` makes this the only live slice.
        unsafe { std::slice::from_raw_parts_mut(s.backend.surface_base(s.raw), s.alloc) }
    }
}

impl Drop for SurfaceGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: locked by `Surface::lock` with the same options; the result is ignored because
        // an unlock failure leaves nothing to recover and `Drop` must not panic.
        let _ = unsafe {
            self.surface
                .backend
                .surface_unlock(self.surface.raw, self.options)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_one_flat_row() {
        let p = surface_properties(4096);
        assert_eq!(
            p,
            [
                (SurfaceKey::Width, 4096),
                (SurfaceKey::Height, 1),
                (SurfaceKey::BytesPerElement, 1),
                (SurfaceKey::BytesPerRow, 4096),
                (SurfaceKey::AllocSize, 4096),
                (SurfaceKey::PixelFormat, 0),
            ]
        );
        let names: Vec<_> = SurfaceKey::ALL.iter().map(|k| k.symbol()).collect();
        assert_eq!(
            names,
            [
                "kIOSurfaceWidth",
                "kIOSurfaceHeight",
                "kIOSurfaceBytesPerElement",
                "kIOSurfaceBytesPerRow",
                "kIOSurfaceAllocSize",
                "kIOSurfacePixelFormat"
            ]
        );
    }

    #[test]
    fn default_policy_is_exact() {
        let p = SurfacePolicy::default();
        assert_eq!(p.sizes(&[10, 3000], &[6]), (vec![10, 3000], vec![6]));
    }

    #[test]
    fn alignment_rounds_up_to_multiples() {
        let p = SurfacePolicy {
            align: 128,
            ..Default::default()
        };
        assert_eq!(p.sizes(&[1, 128, 129, 256], &[]).0, vec![128, 128, 256, 256]);
    }

    #[test]
    fn minimum_applies_before_alignment() {
        let p = SurfacePolicy {
            align: 128,
            min_bytes: 49_152,
            equalize: Equalize::None,
        };
        assert_eq!(p.sizes(&[2], &[60_000]), (vec![49_152], vec![60_032]));
    }

    #[test]
    fn equalize_per_direction_and_all() {
        let mut p = SurfacePolicy {
            equalize: Equalize::PerDirection,
            ..Default::default()
        };
        assert_eq!(p.sizes(&[4, 8], &[2, 6]), (vec![8, 8], vec![6, 6]));
        p.equalize = Equalize::All;
        assert_eq!(p.sizes(&[4, 8], &[2, 16]), (vec![16, 16], vec![16, 16]));
        assert_eq!(
            SurfacePolicy::conservative().sizes(&[100], &[300]),
            (vec![384], vec![384])
        );
    }

    #[test]
    fn binding_order_sorts_by_name_or_keeps_declaration() {
        let names = ["x", "mask", "b", "Wq"];
        assert_eq!(binding_order(&names, BindingOrder::ByName), vec![3, 2, 1, 0]);
        assert_eq!(binding_order(&names, BindingOrder::AsDeclared), vec![0, 1, 2, 3]);
        assert_eq!(BindingOrder::default(), BindingOrder::ByName);
    }

    #[test]
    fn fp16_encode_rounds_to_nearest_and_decodes_back() {
        let src = [1.0f32, -2.5, 65504.0, 1.0 + 1.0 / 4096.0, 0.1];
        let mut buf = vec![0u64; 2];
        // SAFETY: viewing a u64 buffer as bytes (any bit pattern valid, alignment 8 ≥ 1).
        let bytes = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), 16) };
        encode_f32(IoDType::Fp16, &src, bytes);
        let mut back = [0f32; 5];
        decode_f32(IoDType::Fp16, bytes, &mut back);
        let expect: Vec<f32> = src.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
        assert_eq!(back.to_vec(), expect);
        assert_eq!(
            back[3], 1.0,
            "1 + 2^-12 rounds to 1 (nearest even), not truncated"
        );
        assert_eq!(&bytes[10..], &[0; 6], "nothing written past the data");
    }

    #[test]
    fn fp32_and_fp16_cross_paths() {
        let mut buf = vec![0u64; 2];
        // SAFETY: as above.
        let bytes = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), 16) };
        encode_f32(IoDType::Fp32, &[1.5, -3.0], bytes);
        assert_eq!(&bytes[..4], &1.5f32.to_le_bytes());
        let mut h = [f16::ZERO; 2];
        decode_f16(IoDType::Fp32, bytes, &mut h);
        assert_eq!(h, [f16::from_f32(1.5), f16::from_f32(-3.0)]);
        encode_f16(IoDType::Fp16, &h, bytes);
        assert_eq!(&bytes[..2], &f16::from_f32(1.5).to_le_bytes());
    }
}
