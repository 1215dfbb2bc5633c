//! A tensor at the precision it is stored in (f32, fp16 or bf16): what a frozen base keeps of
//! its embedding table, 2 bytes per value for a shipped fp16/bf16 model instead of 4.

use half::{bf16, f16};

/// Values in their storage type.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

impl Stored {
    pub fn len(&self) -> usize {
        match self {
            Stored::F32(v) => v.len(),
            Stored::F16(v) => v.len(),
            Stored::Bf16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the values take.
    pub fn bytes(&self) -> usize {
        match self {
            Stored::F32(v) => 4 * v.len(),
            Stored::F16(v) => 2 * v.len(),
            Stored::Bf16(v) => 2 * v.len(),
        }
    }

    /// Values `start..start + out.len()` widened to f32 (exactly: f32 holds every fp16 and
    /// bf16 value).
    pub fn read_into(&self, start: usize, out: &mut [f32]) {
        let end = start + out.len();
        match self {
            Stored::F32(v) => out.copy_from_slice(&v[start..end]),
            Stored::F16(v) => out
                .iter_mut()
                .zip(&v[start..end])
                .for_each(|(o, h)| *o = h.to_f32()),
            Stored::Bf16(v) => out
                .iter_mut()
                .zip(&v[start..end])
                .for_each(|(o, h)| *o = h.to_f32()),
        }
    }

    /// Every value widened to f32.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.len()];
        self.read_into(0, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_widen_exactly() {
        let h = Stored::Bf16([1.0f32, -2.5, 3.0e38].map(bf16::from_f32).to_vec());
        assert_eq!(h.bytes(), 6);
        let mut out = [0.0; 2];
        h.read_into(1, &mut out);
        assert_eq!(out, [-2.5, bf16::from_f32(3.0e38).to_f32()]);
        let f = Stored::F16([0.5f32, 65504.0].map(f16::from_f32).to_vec());
        assert_eq!(f.to_f32(), [0.5, 65504.0]);
        assert_eq!(Stored::F32(vec![1.0; 3]).bytes(), 12);
    }
}
