//! What the probe programs are written with: [`FunctionBuilder`] (reached through `Deref`, so a
//! probe calls its op methods directly) plus the probe's weight file, its deterministic input
//! data, and the few snippets several probes share.

use std::ops::{Deref, DerefMut};

use malus::rng::Rng;
use malus_mil::{ConvParams, DType, FunctionBuilder, InferError, Type, Var, Weights};

/// The one weight file of a probe (conv weights only).
const WEIGHTS: &str = "@model_path/weights/probe.bin";

pub type R<T = Var> = Result<T, InferError>;

/// One probe program being built, with its weights and input values.
pub struct Build {
    b: FunctionBuilder,
    weights: Weights,
    /// Values of each input in declaration order.
    inputs: Vec<(String, Vec<f32>)>,
    rng: Rng,
}

impl Deref for Build {
    type Target = FunctionBuilder;
    fn deref(&self) -> &FunctionBuilder {
        &self.b
    }
}

impl DerefMut for Build {
    fn deref_mut(&mut self) -> &mut FunctionBuilder {
        &mut self.b
    }
}

impl Build {
    /// `seed` is the probe's index: mixed into the generator's state so that neighbouring probes
    /// draw unrelated data.
    pub fn new(seed: u64) -> Build {
        Build {
            b: FunctionBuilder::new("main", "ios18"),
            weights: Weights::new(),
            inputs: Vec::new(),
            rng: Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B),
        }
    }

    /// Uniform in [-1, 1) from the top 24 bits of a draw, so the value is exact in f32.
    pub fn uniform(&mut self) -> f32 {
        ((self.rng.next_u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }

    /// Declares an input of `dtype` and draws its values, uniform in [-scale, scale).
    pub fn data_input_as(&mut self, name: &str, dtype: DType, shape: [usize; 4], scale: f32) -> Var {
        let vals = (0..shape.iter().product())
            .map(|_| self.uniform() * scale)
            .collect();
        self.inputs.push((name.into(), vals));
        self.b.input(name, Type::tensor(dtype, &shape))
    }

    /// An fp16 input with drawn values.
    pub fn data_input(&mut self, name: &str, shape: [usize; 4], scale: f32) -> Var {
        self.data_input_as(name, DType::Fp16, shape, scale)
    }

    /// A 1×1 conv with a blob weight `[cout, cin/groups, 1, 1]`, result named `name` if given.
    pub fn conv1x1(&mut self, x: &Var, w: &[f32], cout: usize, groups: usize, name: Option<&str>) -> R {
        let cin = x.shape()[1] / groups;
        let off = self.weights.add_f16(WEIGHTS, w);
        let wv = self
            .b
            .blob(Type::tensor(DType::Fp16, &[cout, cin, 1, 1]), WEIGHTS, off)?;
        if let Some(n) = name {
            self.b.name(n);
        }
        let p = ConvParams {
            groups: groups as i64,
            ..ConvParams::default()
        };
        self.b.conv(x, &wv, &p, None)
    }

    /// Depthwise 1×1 conv of ones: an exact identity that anchors the program on the ANE.
    pub fn anchor(&mut self, x: &Var) -> R {
        let c = x.shape()[1];
        self.conv1x1(x, &vec![1.0; c], c, c, None)
    }

    /// `x·a + c`, the sum named `name`.
    pub fn affine(&mut self, x: &Var, a: f64, c: f64, name: &str) -> R {
        let (av, cv) = (self.b.scalar(DType::Fp16, a), self.b.scalar(DType::Fp16, c));
        let m = self.b.mul(x, &av)?;
        self.b.name(name).add(&m, &cv)
    }

    /// Channels `from..from+n` of `[1, C, 1, W]`.
    pub fn channels(&mut self, x: &Var, from: usize, n: usize) -> R {
        let w = x.shape()[3] as i64;
        self.b
            .slice_by_size(x, &[0, from as i64, 0, 0], &[1, n as i64, 1, w])
    }

    /// `n` different affine images of `x`, for concat.
    pub fn parts(&mut self, x: &Var, n: usize) -> R<Vec<Var>> {
        (0..n)
            .map(|k| self.affine(x, (k + 1) as f64 * 0.25, k as f64 * 0.5, &format!("part{k}")))
            .collect()
    }

    /// The finished function returning `outputs`, its weights and its input values.
    pub fn finish(self, outputs: &[Var]) -> (malus_mil::Function, Weights, Vec<(String, Vec<f32>)>) {
        let refs: Vec<&Var> = outputs.iter().collect();
        (self.b.build(&refs), self.weights, self.inputs)
    }
}
