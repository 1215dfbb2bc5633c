//! The MIL builder with errors turned into `anyhow`, and the snippets every kernel shares
//! (RMSNorm, RoPE, packed matmuls, GQA head repetition), written once.

use anyhow::{Result, anyhow, ensure};
use malus_mil::{DType, FunctionBuilder, Type, Var};

use super::packing::{Axis, Block, Packing};

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

    /// The kernel's single input.
    pub fn input(&mut self, packing: &Packing) -> Var {
        self.b.input("x", Type::tensor(self.dtype, &packing.shape()))
    }

    /// Cuts a block out of a packed input as `[1, C, 1, W]`.
    pub fn block(&mut self, x: &Var, packing: &Packing, b: Block) -> V {
        let s = packing.slot(b)?;
        let (c, w) = packing.block_dims(b)?;
        let (begin, size) = match packing.axis {
            Axis::Channel => ([0, s.offset as i64, 0, 0], [1, c as i64, 1, w as i64]),
            Axis::Spatial => ([0, 0, 0, s.offset as i64], [1, c as i64, 1, w as i64]),
        };
        self.b.slice_by_size(x, &begin, &size).map_err(e)
    }

    /// Cuts several blocks out of a packed input.
    pub fn blocks<const N: usize>(&mut self, x: &Var, packing: &Packing, bs: [Block; N]) -> Result<[Var; N]> {
        let mut out = Vec::with_capacity(N);
        for b in bs {
            out.push(self.block(x, packing, b)?);
        }
        Ok(out.try_into().unwrap_or_else(|_| unreachable!("N blocks cut")))
    }

    /// The kernel output: `[1, C_i, 1, W]` blocks concatenated along channels, each named by
    /// the block of the declared `packing` it fills. The names must be the packing's blocks in
    /// its order and each part must have its block's shape, so an output wired to the wrong
    /// block fails here rather than in a gradient check. A single block is the output as it
    /// is (no copy op to name it).
    pub fn output(&mut self, packing: &Packing, parts: &[(Block, &Var)]) -> V {
        ensure!(
            packing.axis == Axis::Channel,
            "kernel outputs are stacked along channels"
        );
        let got: Vec<Block> = parts.iter().map(|(b, _)| *b).collect();
        let want: Vec<Block> = packing.slots.iter().map(|s| s.block).collect();
        ensure!(
            got == want,
            "output blocks [{}] do not match the declared output [{}]",
            names(&got),
            names(&want)
        );
        for (b, v) in parts {
            let (c, w) = packing.block_dims(*b)?;
            ensure!(
                v.shape() == [1, c, 1, w],
                "output block `{b}` is {:?}, declared [1, {c}, 1, {w}]",
                v.shape()
            );
        }
        if let [(_, v)] = parts {
            return Ok((*v).clone());
        }
        let vars: Vec<&Var> = parts.iter().map(|(_, v)| *v).collect();
        self.b.name("y").concat(&vars, 1).map_err(e)
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

fn names(bs: &[Block]) -> String {
    bs.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
}
