//! Pieces shared by every kernel: layouts of packed inputs/outputs, and MIL snippets
//! (RMSNorm, RoPE, packed matmuls, slices) written once.

use anyhow::{Result, anyhow};
use malus_mil::{DType, FunctionBuilder, Type, Var};

/// Where tensors sit inside a kernel's single input or output `[1, C, 1, W]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Tensors stacked along channels (all share the width).
    Channel,
    /// Tensors side by side along the width (all share the channel count): the spatial packing
    /// that carries weights inside the input (ane-facts.md B.5).
    Spatial,
}

/// One named block of a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub offset: usize,
    pub len: usize,
}

/// A `[1, channels, 1, width]` fp16 tensor split into named blocks along one axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub channels: usize,
    pub width: usize,
    pub axis: Axis,
    pub slots: Vec<Slot>,
}

impl Layout {
    /// Blocks laid out in order along `axis`; the other extent is `across`.
    pub fn new(axis: Axis, across: usize, blocks: &[(&str, usize)]) -> Layout {
        let mut offset = 0;
        let slots = blocks
            .iter()
            .map(|(n, len)| {
                let s = Slot {
                    name: n.to_string(),
                    offset,
                    len: *len,
                };
                offset += len;
                s
            })
            .collect();
        let (channels, width) = match axis {
            Axis::Channel => (offset, across),
            Axis::Spatial => (across, offset),
        };
        Layout {
            channels,
            width,
            axis,
            slots,
        }
    }

    pub fn slot(&self, name: &str) -> Result<&Slot> {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| anyhow!("layout has no block `{name}`"))
    }

    pub fn shape(&self) -> [usize; 4] {
        [1, self.channels, 1, self.width]
    }

    pub fn elements(&self) -> usize {
        self.channels * self.width
    }

    /// `(channels, width)` of a block.
    pub fn block_dims(&self, name: &str) -> Result<(usize, usize)> {
        let s = self.slot(name)?;
        Ok(match self.axis {
            Axis::Channel => (s.len, self.width),
            Axis::Spatial => (self.channels, s.len),
        })
    }

    /// Copies a row-major `[channels, width]` block into its place in a packed buffer.
    pub fn write_block<T: Copy>(&self, buf: &mut [T], name: &str, block: &[T]) -> Result<()> {
        let (c, w) = self.block_dims(name)?;
        anyhow::ensure!(
            block.len() == c * w,
            "block `{name}` needs {c}×{w} values, got {}",
            block.len()
        );
        anyhow::ensure!(buf.len() == self.elements(), "packed buffer has the wrong length");
        let s = self.slot(name)?;
        match self.axis {
            Axis::Channel => buf[s.offset * w..(s.offset + c) * w].copy_from_slice(block),
            Axis::Spatial => {
                for (r, row) in block.chunks_exact(w).enumerate() {
                    let at = r * self.width + s.offset;
                    buf[at..at + w].copy_from_slice(row);
                }
            }
        }
        Ok(())
    }

    /// Copies a block out of a packed buffer as row-major `[channels, width]`.
    pub fn read_block<T: Copy>(&self, buf: &[T], name: &str, out: &mut [T]) -> Result<()> {
        let (c, w) = self.block_dims(name)?;
        anyhow::ensure!(
            out.len() == c * w,
            "block `{name}` has {c}×{w} values, buffer {}",
            out.len()
        );
        let s = self.slot(name)?;
        match self.axis {
            Axis::Channel => out.copy_from_slice(&buf[s.offset * w..(s.offset + c) * w]),
            Axis::Spatial => {
                for (r, row) in out.chunks_exact_mut(w).enumerate() {
                    let at = r * self.width + s.offset;
                    row.copy_from_slice(&buf[at..at + w]);
                }
            }
        }
        Ok(())
    }
}

/// The MIL builder with errors turned into `anyhow` and the snippets kernels share.
pub struct Mil {
    pub b: FunctionBuilder,
    /// Element type of every tensor: fp16 for the ANE and the fp16 CPU executor, fp32 for the
    /// CPU executor's f32 training path.
    pub dtype: DType,
}

type V = Result<Var>;

fn e(e: malus_mil::InferError) -> anyhow::Error {
    anyhow!("{e}")
}

impl Mil {
    pub fn new(dtype: DType) -> Mil {
        Mil {
            b: FunctionBuilder::new("main", "ios18"),
            dtype,
        }
    }

    /// The kernel's single fp16 input.
    pub fn input(&mut self, layout: &Layout) -> Var {
        self.b.input("x", Type::tensor(self.dtype, &layout.shape()))
    }

    /// Cuts a block out of a packed input as `[1, C, 1, W]`.
    pub fn block(&mut self, x: &Var, layout: &Layout, name: &str) -> V {
        let s = layout.slot(name)?;
        let (c, w) = layout.block_dims(name)?;
        let (begin, size) = match layout.axis {
            Axis::Channel => ([0, s.offset as i64, 0, 0], [1, c as i64, 1, w as i64]),
            Axis::Spatial => ([0, 0, 0, s.offset as i64], [1, c as i64, 1, w as i64]),
        };
        self.b.slice_by_size(x, &begin, &size).map_err(e)
    }

    /// Concatenates `[1, C_i, 1, W]` blocks along channels: the kernel output.
    pub fn output(&mut self, parts: &[&Var]) -> V {
        if parts.len() == 1 {
            return self.b.name("y").identity(parts[0]).map_err(e);
        }
        self.b.name("y").concat(parts, 1).map_err(e)
    }

    pub fn reshape(&mut self, x: &Var, shape: &[usize]) -> V {
        let s: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        self.b.reshape(x, &s).map_err(e)
    }

    /// `[1, C, 1, W]` → `[1, 1, C, W]`, the matrix view used by matmul.
    pub fn mat(&mut self, x: &Var) -> V {
        let s = x.shape();
        self.reshape(x, &[1, 1, s[1], s[3]])
    }

    /// `[1, 1, R, W]` matrix → `[1, R, 1, W]` activation layout.
    pub fn act(&mut self, m: &Var) -> V {
        let s = m.shape();
        self.reshape(m, &[1, s[2], 1, s[3]])
    }

    /// `op(A)·B` for `[1, C, 1, W]` operands viewed as matrices; returns `[1, R, 1, N]`.
    pub fn matmul(&mut self, a: &Var, b: &Var, ta: bool, tb: bool) -> V {
        let am = self.mat(a)?;
        let bm = self.mat(b)?;
        let y = self.b.matmul(&am, &bm, ta, tb).map_err(e)?;
        self.act(&y)
    }

    pub fn scalar(&mut self, v: f64) -> Var {
        self.b.scalar(self.dtype, v)
    }

    pub fn add(&mut self, x: &Var, y: &Var) -> V {
        self.b.add(x, y).map_err(e)
    }

    pub fn sub(&mut self, x: &Var, y: &Var) -> V {
        self.b.sub(x, y).map_err(e)
    }

    pub fn mul(&mut self, x: &Var, y: &Var) -> V {
        self.b.mul(x, y).map_err(e)
    }

    pub fn scale(&mut self, x: &Var, s: f64) -> V {
        if s == 1.0 {
            return Ok(x.clone());
        }
        let c = self.scalar(s);
        self.mul(x, &c)
    }

    /// `x + α·y`
    pub fn residual(&mut self, x: &Var, y: &Var, alpha: f64) -> V {
        let ay = self.scale(y, alpha)?;
        self.add(x, &ay)
    }

    /// Sum over channels `[1, C, 1, S]` → `[1, 1, 1, S]`.
    pub fn channel_sum(&mut self, x: &Var) -> V {
        self.b.reduce_sum(x, &[1], true).map_err(e)
    }

    /// RMSNorm without its weight (the weight is folded into the next matmul's staged weights):
    /// returns `(x̂, r)` with `r = (mean_c x² + ε)^(-1/2)` and `x̂ = x·r`. `x` is pre-scaled by
    /// 1/√C before squaring so the sum stays in fp16 range; `pow(·, -0.5)` rather than rsqrt,
    /// which fails after a reduction on some chips (lint `ane-rsqrt-after-reduce`).
    pub fn rms_hat(&mut self, x: &Var, eps: f64) -> Result<(Var, Var)> {
        let c = x.shape()[1] as f64;
        let xs = self.scale(x, 1.0 / c.sqrt())?;
        let sq = self.mul(&xs, &xs)?;
        let ms = self.channel_sum(&sq)?;
        let epsv = self.scalar(eps);
        let me = self.add(&ms, &epsv)?;
        let half = self.scalar(-0.5);
        let r = self.b.pow(&me, &half).map_err(e)?;
        let xh = self.mul(x, &r)?;
        Ok((xh, r))
    }

    /// Backward of [`Mil::rms_hat`]: `dx = r·(dx̂ − x̂·mean_c(dx̂ ⊙ x̂))`.
    pub fn rms_hat_backward(&mut self, xhat: &Var, r: &Var, dxhat: &Var) -> V {
        let c = xhat.shape()[1] as f64;
        let p = self.mul(dxhat, xhat)?;
        let ps = self.scale(&p, 1.0 / c)?;
        let m = self.channel_sum(&ps)?;
        let xm = self.mul(xhat, &m)?;
        let d = self.sub(dxhat, &xm)?;
        self.mul(&d, r)
    }

    /// RoPE with the llama2.c pairing (2i, 2i+1) on `[1, heads·hd, 1, S]`; `cos`/`sin` are
    /// `[1, hd/2, 1, S]` constants. `inverse` applies the transposed rotation (the backward).
    pub fn rope(&mut self, x: &Var, heads: usize, hd: usize, cos: &Var, sin: &Var, inverse: bool) -> V {
        let s = x.shape()[3];
        let v = self.reshape(x, &[heads, hd / 2, 2, s])?;
        let even = self
            .b
            .slice_by_size(&v, &[0, 0, 0, 0], &[heads as i64, (hd / 2) as i64, 1, s as i64])
            .map_err(e)?;
        let odd = self
            .b
            .slice_by_size(&v, &[0, 0, 1, 0], &[heads as i64, (hd / 2) as i64, 1, s as i64])
            .map_err(e)?;
        let ec = self.mul(&even, cos)?;
        let es = self.mul(&even, sin)?;
        let oc = self.mul(&odd, cos)?;
        let os = self.mul(&odd, sin)?;
        let (ne, no) = if inverse {
            (self.add(&ec, &os)?, self.sub(&oc, &es)?)
        } else {
            (self.sub(&ec, &os)?, self.add(&es, &oc)?)
        };
        let joined = self.b.concat(&[&ne, &no], 2).map_err(e)?;
        self.reshape(&joined, &[1, heads * hd, 1, s])
    }

    /// Repeats each of `kv` heads `group` times (query head h uses kv head ⌊h/group⌋, as in
    /// Hugging Face): `[1, kv·hd, 1, S]` → `[1, kv·group·hd, 1, S]`. Heads go on the batch axis
    /// and `[hd, S]` stays on the inner two, so no axis exceeds the extent cap (`hd·S` would).
    pub fn repeat_kv(&mut self, x: &Var, kv: usize, group: usize) -> V {
        if group == 1 {
            return Ok(x.clone());
        }
        let s = x.shape();
        let v = self.reshape(x, &[kv, 1, s[1] / kv, s[3]])?;
        let copies: Vec<&Var> = vec![&v; group];
        let t = self.b.concat(&copies, 1).map_err(e)?;
        self.reshape(&t, &[1, s[1] * group, 1, s[3]])
    }

    /// Sums the `group` copies made by [`Mil::repeat_kv`] (its backward).
    pub fn reduce_kv(&mut self, x: &Var, kv: usize, group: usize) -> V {
        if group == 1 {
            return Ok(x.clone());
        }
        let s = x.shape();
        let v = self.reshape(x, &[kv, group, s[1] / (kv * group), s[3]])?;
        let r = self.b.reduce_sum(&v, &[1], true).map_err(e)?;
        self.reshape(&r, &[1, s[1] / group, 1, s[3]])
    }

    pub fn finish(self, out: &Var) -> malus_mil::Program {
        malus_mil::Program::new(vec![self.b.build(&[out])])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spatial_and_channel_blocks_round_trip() {
        let l = Layout::new(Axis::Spatial, 2, &[("a", 3), ("b", 2)]);
        assert_eq!((l.channels, l.width), (2, 5));
        let mut buf = vec![0; 10];
        l.write_block(&mut buf, "a", &[1, 2, 3, 4, 5, 6]).unwrap();
        l.write_block(&mut buf, "b", &[7, 8, 9, 10]).unwrap();
        assert_eq!(buf, [1, 2, 3, 7, 8, 4, 5, 6, 9, 10]);
        let mut out = vec![0; 4];
        l.read_block(&buf, "b", &mut out).unwrap();
        assert_eq!(out, [7, 8, 9, 10]);
        let c = Layout::new(Axis::Channel, 2, &[("a", 1), ("b", 2)]);
        let mut buf = vec![0; 6];
        c.write_block(&mut buf, "b", &[1, 2, 3, 4]).unwrap();
        assert_eq!(buf, [0, 0, 1, 2, 3, 4]);
        assert!(c.write_block(&mut buf, "a", &[1]).is_err());
        assert!(c.slot("zz").is_err());
    }
}
