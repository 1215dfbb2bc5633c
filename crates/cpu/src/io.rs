//! Kernel-owned input and output buffers: bytes in the tensor's declared dtype (little-endian,
//! row-major), converted to and from the f32/i64/u8 storage at the start and end of `run`.

use half::f16;
use half::slice::HalfFloatSliceExt;
use malus_mil::DType;

use crate::layout::{Class, View};
use crate::storage::{Ctx, PAR_MIN, Storage};
use crate::walk::{Walk, gather};

/// Name, dtype and shape of a kernel input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the byte buffer.
    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype.size_bytes()
    }
}

/// An 8-byte aligned byte buffer, so it can be viewed as f16/f32 slices without copying.
#[derive(Clone, Debug)]
pub(crate) struct IoBuf {
    words: Vec<u64>,
    nbytes: usize,
}

const CHUNK: usize = 256;

impl IoBuf {
    pub(crate) fn new(info: &TensorInfo) -> IoBuf {
        let nbytes = info.byte_len();
        IoBuf {
            words: vec![0; nbytes.div_ceil(8)],
            nbytes,
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.nbytes]
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.nbytes]
    }

    fn f16s(&self, n: usize) -> &[f16] {
        &bytemuck::cast_slice(&self.words)[..n]
    }

    fn f32s(&self, n: usize) -> &[f32] {
        &bytemuck::cast_slice(&self.words)[..n]
    }

    /// Stores f32 values in the dtype (floats rounded to nearest, integers rounded then
    /// wrapped to the dtype's width, bools as `v != 0`).
    pub(crate) fn write_f32(&mut self, dtype: DType, v: &[f32]) {
        match dtype {
            DType::Fp16 => {
                bytemuck::cast_slice_mut::<u64, f16>(&mut self.words)[..v.len()].convert_from_f32_slice(v)
            }
            DType::Fp32 => {
                bytemuck::cast_slice_mut::<u64, f32>(&mut self.words)[..v.len()].copy_from_slice(v)
            }
            _ => {
                let size = dtype.size_bytes();
                let b = self.bytes_mut();
                for (i, &x) in v.iter().enumerate() {
                    put(
                        dtype,
                        &mut b[i * size..(i + 1) * size],
                        x as f64,
                        x.round() as i64,
                    );
                }
            }
        }
    }

    /// Reads the values as f32.
    pub(crate) fn read_f32(&self, dtype: DType, out: &mut [f32]) {
        self.read_range(dtype, 0, out);
    }

    /// Reads elements `[start, start + out.len())` as f32.
    fn read_range(&self, dtype: DType, start: usize, out: &mut [f32]) {
        let end = start + out.len();
        match dtype {
            DType::Fp16 => self.f16s(end)[start..].convert_to_f32_slice(out),
            DType::Fp32 => out.copy_from_slice(&self.f32s(end)[start..]),
            _ => {
                let size = dtype.size_bytes();
                let b = self.bytes();
                for (i, o) in (start..end).zip(out.iter_mut()) {
                    *o = get(dtype, &b[i * size..(i + 1) * size]) as f32;
                }
            }
        }
    }

    /// Copies the input into its (dense) storage slot.
    pub(crate) fn load(&self, dtype: DType, view: &View, st: &mut Storage, ctx: &Ctx) {
        let n = view.len();
        match view.slot.class {
            Class::F => {
                let dst = &mut st.f[view.slot.idx][..n];
                ctx.chunks(dst, CHUNK, PAR_MIN / CHUNK, |first, c| {
                    self.read_range(dtype, first * CHUNK, c);
                    if dtype != DType::Fp16 {
                        ctx.round(c);
                    }
                });
            }
            Class::I => {
                let (size, b) = (dtype.size_bytes(), self.bytes());
                for (i, d) in st.i[view.slot.idx][..n].iter_mut().enumerate() {
                    *d = get_int(dtype, &b[i * size..(i + 1) * size]);
                }
            }
            Class::B => {
                for (d, &s) in st.b[view.slot.idx][..n].iter_mut().zip(self.bytes()) {
                    *d = (s != 0) as u8;
                }
            }
        }
    }

    /// Writes a (possibly strided) view of storage into the buffer.
    pub(crate) fn store(&mut self, dtype: DType, view: &View, walk: &Walk, st: &Storage, ctx: &Ctx) {
        let n = view.len();
        if view.slot.class == Class::F && view.is_contiguous() && matches!(dtype, DType::Fp16 | DType::Fp32) {
            let src = &st.f[view.slot.idx][view.offset..view.offset + n];
            match dtype {
                DType::Fp16 => {
                    let dst = &mut bytemuck::cast_slice_mut::<u64, f16>(&mut self.words)[..n];
                    ctx.chunks(dst, CHUNK, PAR_MIN / CHUNK, |first, c| {
                        c.convert_from_f32_slice(&src[first * CHUNK..first * CHUNK + c.len()])
                    });
                }
                _ => bytemuck::cast_slice_mut::<u64, f32>(&mut self.words)[..n].copy_from_slice(src),
            }
            return;
        }
        let s = walk.inner_stride(0);
        let mut pos = 0;
        match view.slot.class {
            Class::F => {
                let src = &st.f[view.slot.idx];
                let mut tmp = [0f32; CHUNK];
                walk.runs(0, walk.len(), |o, n| {
                    for c in (0..n).step_by(CHUNK) {
                        let m = CHUNK.min(n - c);
                        gather(&mut tmp[..m], src, (o[0] as isize + c as isize * s) as usize, s);
                        self.write_at(dtype, pos, &tmp[..m]);
                        pos += m;
                    }
                });
            }
            Class::I | Class::B => {
                let size = dtype.size_bytes();
                let b = bytemuck::cast_slice_mut::<u64, u8>(&mut self.words);
                walk.runs(0, walk.len(), |o, n| {
                    for i in 0..n {
                        let at = (o[0] as isize + i as isize * s) as usize;
                        let v = if view.slot.class == Class::I {
                            st.i[view.slot.idx][at]
                        } else {
                            st.b[view.slot.idx][at] as i64
                        };
                        put(dtype, &mut b[pos * size..(pos + 1) * size], v as f64, v);
                        pos += 1;
                    }
                });
            }
        }
    }

    fn write_at(&mut self, dtype: DType, pos: usize, v: &[f32]) {
        match dtype {
            DType::Fp16 => bytemuck::cast_slice_mut::<u64, f16>(&mut self.words)[pos..pos + v.len()]
                .convert_from_f32_slice(v),
            DType::Fp32 => {
                bytemuck::cast_slice_mut::<u64, f32>(&mut self.words)[pos..pos + v.len()].copy_from_slice(v)
            }
            _ => {
                let size = dtype.size_bytes();
                let b = bytemuck::cast_slice_mut::<u64, u8>(&mut self.words);
                for (i, &x) in v.iter().enumerate() {
                    let at = (pos + i) * size;
                    put(dtype, &mut b[at..at + size], x as f64, x as i64);
                }
            }
        }
    }
}

/// Writes one element: floats from `f`, integers from `i` (wrapped to the width), bools `i != 0`.
fn put(d: DType, b: &mut [u8], f: f64, i: i64) {
    match d {
        DType::Fp16 => b.copy_from_slice(&f16::from_f64(f).to_le_bytes()),
        DType::Fp32 => b.copy_from_slice(&(f as f32).to_le_bytes()),
        DType::Fp64 => b.copy_from_slice(&f.to_le_bytes()),
        DType::Bool => b[0] = (i != 0 || f != 0.0) as u8,
        DType::Int8 | DType::Uint8 => b[0] = i as u8,
        DType::Int16 | DType::Uint16 => b.copy_from_slice(&(i as u16).to_le_bytes()),
        DType::Int32 | DType::Uint32 => b.copy_from_slice(&(i as u32).to_le_bytes()),
        DType::Int64 | DType::Uint64 => b.copy_from_slice(&i.to_le_bytes()),
        DType::String => {}
    }
}

/// Reads one element as f64.
fn get(d: DType, b: &[u8]) -> f64 {
    match d {
        DType::Fp16 => f16::from_le_bytes([b[0], b[1]]).to_f64(),
        DType::Fp32 => f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64,
        DType::Fp64 => f64::from_le_bytes(b.try_into().expect("8 bytes")),
        DType::Bool | DType::Uint8 => b[0] as f64,
        DType::Int8 => b[0] as i8 as f64,
        DType::Int16 => i16::from_le_bytes([b[0], b[1]]) as f64,
        DType::Uint16 => u16::from_le_bytes([b[0], b[1]]) as f64,
        DType::Int32 => i32::from_le_bytes(b.try_into().expect("4 bytes")) as f64,
        DType::Uint32 => u32::from_le_bytes(b.try_into().expect("4 bytes")) as f64,
        DType::Int64 => i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64,
        DType::Uint64 => u64::from_le_bytes(b.try_into().expect("8 bytes")) as f64,
        DType::String => 0.0,
    }
}

/// Reads one integer element exactly.
fn get_int(d: DType, b: &[u8]) -> i64 {
    match d {
        DType::Int64 => i64::from_le_bytes(b.try_into().expect("8 bytes")),
        DType::Uint64 => u64::from_le_bytes(b.try_into().expect("8 bytes")) as i64,
        d => get(d, b) as i64,
    }
}
