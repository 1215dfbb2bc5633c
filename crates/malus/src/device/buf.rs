//! Kernel inputs and outputs: a buffer in the device's element type together with its
//! packing, written and read block by block.

use anyhow::{Result, bail};
use half::f16;
use half::slice::HalfFloatSliceExt;
use malus_mil::DType;

use crate::kernels::{Block, Packing};

#[derive(Clone, Debug, PartialEq)]
enum Data {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

/// A kernel input or output: `[1, C, 1, W]` in the device's element type, split into the
/// blocks of its [`Packing`].
#[derive(Clone, Debug, PartialEq)]
pub struct Packed {
    data: Data,
    packing: Packing,
}

impl Packed {
    pub fn new(dtype: DType, packing: &Packing) -> Packed {
        let n = packing.elements();
        let data = match dtype {
            DType::Fp16 => Data::F16(vec![f16::ZERO; n]),
            _ => Data::F32(vec![0.0; n]),
        };
        Packed {
            data,
            packing: packing.clone(),
        }
    }

    pub fn packing(&self) -> &Packing {
        &self.packing
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.data {
            Data::F16(v) => bytemuck::cast_slice(v),
            Data::F32(v) => bytemuck::cast_slice(v),
        }
    }

    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.data {
            Data::F16(v) => bytemuck::cast_slice_mut(v),
            Data::F32(v) => bytemuck::cast_slice_mut(v),
        }
    }

    /// Writes a row-major f32 block into its place (converting to fp16 when needed).
    pub fn write(&mut self, b: Block, block: &[f32]) -> Result<()> {
        let l = &self.packing;
        match &mut self.data {
            Data::F32(v) => l.write_block(v, b, block),
            Data::F16(v) => {
                let mut h = vec![f16::ZERO; block.len()];
                h.convert_from_f32_slice(block);
                l.write_block(v, b, &h)
            }
        }
    }

    /// Reads a block as row-major f32.
    pub fn read(&self, b: Block, out: &mut [f32]) -> Result<()> {
        match &self.data {
            Data::F32(v) => self.packing.read_block(v, b, out),
            Data::F16(v) => {
                let mut h = vec![f16::ZERO; out.len()];
                self.packing.read_block(v, b, &mut h)?;
                h.convert_to_f32_slice(out);
                Ok(())
            }
        }
    }

    /// A block as a new row-major f32 vector.
    pub fn read_vec(&self, b: Block) -> Result<Vec<f32>> {
        let (c, w) = self.packing.block_dims(b)?;
        let mut out = vec![0.0; c * w];
        self.read(b, &mut out)?;
        Ok(out)
    }

    /// Adds a block into an f32 accumulator.
    pub fn add_to(&self, b: Block, acc: &mut [f32], scratch: &mut Vec<f32>) -> Result<()> {
        scratch.resize(acc.len(), 0.0);
        self.read(b, scratch)?;
        acc.iter_mut().zip(scratch.iter()).for_each(|(a, s)| *a += s);
        Ok(())
    }

    /// Copies block `from` into block `to` of another buffer of the same element type, without
    /// conversion.
    pub fn send(&self, from: Block, dst: &mut Packed, to: Block) -> Result<()> {
        let (c, w) = self.packing.block_dims(from)?;
        match (&self.data, &mut dst.data) {
            (Data::F16(a), Data::F16(b)) => {
                let mut t = vec![f16::ZERO; c * w];
                self.packing.read_block(a, from, &mut t)?;
                dst.packing.write_block(b, to, &t)
            }
            (Data::F32(a), Data::F32(b)) => {
                let mut t = vec![0.0; c * w];
                self.packing.read_block(a, from, &mut t)?;
                dst.packing.write_block(b, to, &t)
            }
            _ => bail!("copy between buffers of different element types"),
        }
    }

    /// Overwrites this buffer with another of the same type and length (its packing may name
    /// the blocks differently).
    pub fn copy_from(&mut self, other: &Packed) -> Result<()> {
        match (&mut self.data, &other.data) {
            (Data::F16(a), Data::F16(b)) if a.len() == b.len() => a.copy_from_slice(b),
            (Data::F32(a), Data::F32(b)) if a.len() == b.len() => a.copy_from_slice(b),
            _ => bail!("whole-buffer copy between buffers of different types or lengths"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Axis;
    use crate::kernels::block::{E, X};

    #[test]
    fn buffers_convert_and_copy_blocks() {
        let l = Packing::new(Axis::Spatial, 2, &[(X, 1), (E, 2)]);
        let mut b = Packed::new(DType::Fp16, &l);
        b.write(E, &[1.0, 2.0, 3.0, 65519.0]).unwrap();
        assert_eq!(b.read_vec(E).unwrap(), [1.0, 2.0, 3.0, 65504.0]);
        let l2 = Packing::new(Axis::Channel, 2, &[(X, 2)]);
        let mut c = Packed::new(DType::Fp16, &l2);
        b.send(E, &mut c, X).unwrap();
        assert_eq!(c.read_vec(X).unwrap(), [1.0, 2.0, 3.0, 65504.0]);
        assert_eq!(c.as_bytes().len(), 8);
        assert!(b.send(E, &mut Packed::new(DType::Fp32, &l2), X).is_err());
        let mut acc = vec![1.0; 4];
        c.add_to(X, &mut acc, &mut Vec::new()).unwrap();
        assert_eq!(acc, [2.0, 3.0, 4.0, 65505.0]);
        assert!(c.copy_from(&b).is_err());
    }
}
