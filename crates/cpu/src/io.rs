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

/// A kernel-owned, 8-byte aligned byte buffer, allocated on first use: a caller that runs the
/// kernel on its own buffers ([`crate::CpuKernel::run_with`]) never pays for these.
#[derive(Clone, Debug)]
pub(crate) struct IoBuf {
    words: Vec<u64>,
    nbytes: usize,
}

const CHUNK: usize = 256;

impl IoBuf {
    pub(crate) fn new(info: &TensorInfo) -> IoBuf {
        IoBuf {
            words: Vec::new(),
            nbytes: info.byte_len(),
        }
    }

    pub(crate) fn is_allocated(&self) -> bool {
        self.words.len() * 8 >= self.nbytes
    }

    /// The bytes, zeroed on first use.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        if !self.is_allocated() {
            self.words = vec![0; self.nbytes.div_ceil(8)];
        }
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.nbytes]
    }

    /// The bytes, or `None` before anything was written.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        self.is_allocated()
            .then(|| &bytemuck::cast_slice(&self.words)[..self.nbytes])
    }

    /// Stores f32 values in the dtype (floats rounded to nearest, integers rounded then
    /// wrapped to the dtype's width, bools as `v != 0`).
    pub(crate) fn write_f32(&mut self, dtype: DType, v: &[f32]) {
        write_at(self.bytes_mut(), dtype, 0, v);
    }
}

/// Reads elements `[start, start + out.len())` of a little-endian buffer of `dtype` as f32.
/// Aligned fp16/fp32 buffers are converted in bulk, anything else element by element.
pub(crate) fn read_range(bytes: &[u8], dtype: DType, start: usize, out: &mut [f32]) {
    let end = start + out.len();
    let size = dtype.size_bytes();
    let b = &bytes[start * size..end * size];
    match dtype {
        DType::Fp16 => match bytemuck::try_cast_slice::<u8, f16>(b) {
            Ok(h) => h.convert_to_f32_slice(out),
            Err(_) => out
                .iter_mut()
                .zip(b.chunks_exact(2))
                .for_each(|(o, c)| *o = f16::from_le_bytes([c[0], c[1]]).to_f32()),
        },
        DType::Fp32 => match bytemuck::try_cast_slice::<u8, f32>(b) {
            Ok(f) => out.copy_from_slice(f),
            Err(_) => out
                .iter_mut()
                .zip(b.chunks_exact(4))
                .for_each(|(o, c)| *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        },
        _ => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(size)) {
                *o = get(dtype, c) as f32;
            }
        }
    }
}

/// Writes f32 values as elements `[pos, pos + v.len())` of a little-endian buffer of `dtype`.
fn write_at(bytes: &mut [u8], dtype: DType, pos: usize, v: &[f32]) {
    let size = dtype.size_bytes();
    let b = &mut bytes[pos * size..(pos + v.len()) * size];
    match dtype {
        DType::Fp16 => match bytemuck::try_cast_slice_mut::<u8, f16>(b) {
            Ok(h) => h.convert_from_f32_slice(v),
            Err(_) => b
                .chunks_exact_mut(2)
                .zip(v)
                .for_each(|(c, x)| c.copy_from_slice(&f16::from_f32(*x).to_le_bytes())),
        },
        DType::Fp32 => match bytemuck::try_cast_slice_mut::<u8, f32>(b) {
            Ok(f) => f.copy_from_slice(v),
            Err(_) => b
                .chunks_exact_mut(4)
                .zip(v)
                .for_each(|(c, x)| c.copy_from_slice(&x.to_le_bytes())),
        },
        _ => {
            for (c, &x) in b.chunks_exact_mut(size).zip(v) {
                put(dtype, c, x as f64, x.round() as i64);
            }
        }
    }
}

/// Copies an input's bytes into its (dense) storage slot.
pub(crate) fn load(bytes: &[u8], dtype: DType, view: &View, st: &mut Storage, ctx: &Ctx) {
    let n = view.len();
    match view.slot.class {
        Class::F => {
            let dst = &mut st.f[view.slot.idx][..n];
            ctx.chunks(dst, CHUNK, PAR_MIN / CHUNK, |first, c| {
                read_range(bytes, dtype, first * CHUNK, c);
                if dtype != DType::Fp16 {
                    ctx.round(c);
                }
            });
        }
        Class::I => {
            let size = dtype.size_bytes();
            for (i, d) in st.i[view.slot.idx][..n].iter_mut().enumerate() {
                *d = get_int(dtype, &bytes[i * size..(i + 1) * size]);
            }
        }
        Class::B => {
            for (d, &s) in st.b[view.slot.idx][..n].iter_mut().zip(bytes) {
                *d = (s != 0) as u8;
            }
        }
    }
}

/// Writes a (possibly strided) view of storage into an output's bytes.
pub(crate) fn store(bytes: &mut [u8], dtype: DType, view: &View, walk: &Walk, st: &Storage, ctx: &Ctx) {
    let n = view.len();
    if view.slot.class == Class::F && view.is_contiguous() && matches!(dtype, DType::Fp16 | DType::Fp32) {
        let src = &st.f[view.slot.idx][view.offset..view.offset + n];
        let size = dtype.size_bytes();
        let dst = &mut bytes[..n * size];
        ctx.chunks(dst, CHUNK * size, PAR_MIN / CHUNK, |first, c| {
            let at = first * CHUNK;
            write_at(c, dtype, 0, &src[at..at + c.len() / size]);
        });
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
                    write_at(bytes, dtype, pos, &tmp[..m]);
                    pos += m;
                }
            });
        }
        Class::I | Class::B => {
            let size = dtype.size_bytes();
            walk.runs(0, walk.len(), |o, n| {
                for i in 0..n {
                    let at = (o[0] as isize + i as isize * s) as usize;
                    let v = if view.slot.class == Class::I {
                        st.i[view.slot.idx][at]
                    } else {
                        st.b[view.slot.idx][at] as i64
                    };
                    put(dtype, &mut bytes[pos * size..(pos + 1) * size], v as f64, v);
                    pos += 1;
                }
            });
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
