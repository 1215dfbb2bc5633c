//! Constant tables baked into kernels as blob constants (they never change): RoPE cos/sin, the
//! causal mask and the head-dim padding matrix.

use anyhow::Result;
use malus_mil::{DType, Type, Weights};

use super::Shape;
use super::mil::Mil;
use crate::host::ops::rope_angle;

/// The constant tables of one kernel, each added to its weight file once.
pub struct Consts<'s> {
    s: &'s Shape,
    weights: Weights,
    offsets: std::collections::HashMap<&'static str, u64>,
}

/// The weight file that holds the constant tables.
const CONSTS_FILE: &str = "@model_path/weights/consts.bin";

/// Additive mask value: large enough that exp underflows to 0 in fp16 and f32, small enough that
/// adding it to a score never overflows fp16.
pub const MASK_NEG: f64 = -30000.0;

impl<'s> Consts<'s> {
    pub fn new(s: &'s Shape) -> Consts<'s> {
        Consts {
            s,
            weights: Weights::new(),
            offsets: Default::default(),
        }
    }

    fn table(
        &mut self,
        m: &mut Mil,
        name: &'static str,
        dims: &[usize],
        f: impl Fn(&[usize]) -> f64,
    ) -> Result<malus_mil::Var> {
        let off = match self.offsets.get(name) {
            Some(&o) => o,
            None => {
                let n: usize = dims.iter().product();
                let vals: Vec<f32> = (0..n)
                    .map(|i| {
                        let mut idx = vec![0; dims.len()];
                        let mut r = i;
                        for (k, d) in dims.iter().enumerate().rev() {
                            idx[k] = r % d;
                            r /= d;
                        }
                        f(&idx) as f32
                    })
                    .collect();
                let o = match self.s.dtype {
                    DType::Fp16 => self.weights.add_f16(CONSTS_FILE, &vals),
                    _ => self.weights.add_f32(CONSTS_FILE, &vals),
                };
                self.offsets.insert(name, o);
                o
            }
        };
        m.b.blob(Type::tensor(self.s.dtype, dims), CONSTS_FILE, off)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// RoPE angle of pair `i` at position `p`: the host decoder's, so both rotate alike.
    fn angle(&self, i: usize, p: usize) -> f64 {
        rope_angle(self.s.rope_theta, self.s.head_dim, i, p)
    }

    pub fn cos(&mut self, m: &mut Mil) -> Result<malus_mil::Var> {
        let dims = [1, self.s.head_dim / 2, 1, self.s.seq];
        let t: Vec<f64> = (0..dims[1] * dims[3])
            .map(|k| self.angle(k / dims[3], k % dims[3]).cos())
            .collect();
        self.table(m, "cos", &dims, |i| t[i[1] * dims[3] + i[3]])
    }

    pub fn sin(&mut self, m: &mut Mil) -> Result<malus_mil::Var> {
        let dims = [1, self.s.head_dim / 2, 1, self.s.seq];
        let t: Vec<f64> = (0..dims[1] * dims[3])
            .map(|k| self.angle(k / dims[3], k % dims[3]).sin())
            .collect();
        self.table(m, "sin", &dims, |i| t[i[1] * dims[3] + i[3]])
    }

    /// `[1, hd, 1, dim]`: the identity padded with zero columns; `vᵀ·E` lays a head-dim vector
    /// out as a `dim`-wide row (the q/k-norm weight gradient in the dW output).
    pub fn head_pad(&mut self, m: &mut Mil) -> Result<malus_mil::Var> {
        let dims = [1, self.s.head_dim, 1, self.s.dim];
        self.table(m, "head_pad", &dims, |i| if i[1] == i[3] { 1.0 } else { 0.0 })
    }

    /// `[1, 1, S, S]`: 0 where key ≤ query, [`MASK_NEG`] above the diagonal.
    pub fn mask(&mut self, m: &mut Mil) -> Result<malus_mil::Var> {
        let s = self.s.seq;
        self.table(
            m,
            "mask",
            &[1, 1, s, s],
            |i| if i[3] > i[2] { MASK_NEG } else { 0.0 },
        )
    }

    pub fn into_weights(self) -> Weights {
        self.weights
    }
}
