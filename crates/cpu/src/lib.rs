//! malus-cpu: executes MIL programs on the CPU — the ANE's stand-in on machines without one, and
//! a training device in its own right.
//!
//! [`compile`] plans a function once (constants folded, views instead of copies, elementwise runs
//! fused, buffers reused after their last use); [`CpuKernel::run`] then executes the plan as often
//! as needed without allocating (its I/O buffers are made on first use), and
//! [`CpuKernel::run_with`] runs it on the caller's buffers instead, so a caller holding many
//! staged inputs for one kernel copies none of them. The kernel interface matches the ANE
//! kernels': named inputs and outputs with dtype and shape, written and read as f32 or as raw
//! bytes.
//!
//! Storage: float tensors (fp16, fp32, fp64) are held as f32, integer tensors as i64, bools as u8.
//! [`Numerics::F32`] computes in f32 and rounds only where data enters or leaves as fp16 (inputs,
//! outputs, fp16 constants). [`Numerics::Fp16`] mimics the ANE: every float value is an fp16 value
//! — each op's result is rounded to fp16 (overflow to ±inf, IEEE subnormals), while matmul, conv,
//! reductions, softmax and layer norm accumulate in f32 and round once. Integer and bool ops are
//! exact in both.

mod error;
mod io;
mod kernel;
mod kernels;
mod layout;
mod plan;
mod storage;
mod walk;

use malus_mil::{Dim, Program, Type, Weights};

pub use error::{CpuError, OpErrorKind, Result};
pub use io::TensorInfo;
pub use kernel::{CpuKernel, StepTime};
pub use kernels::matmul::gemm_f32_row_major;
pub use plan::PlanStats;

/// Softmax of one row in place with the executor's vectorised `exp` (AVX2+FMA where the CPU
/// has it); returns the row's log-sum-exp. For host-side losses over the device's logits.
pub fn softmax_in_place(row: &mut [f32]) -> f32 {
    kernels::reduce::softmax_row_in_place(row)
}

use crate::io::IoBuf;
use crate::layout::Class;
use crate::storage::Ctx;
use crate::walk::Walk;

/// How float arithmetic is rounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Numerics {
    /// f32 throughout; fp16 only at fp16 inputs, outputs and constants.
    #[default]
    F32,
    /// Every op result rounded to fp16, as on the Neural Engine.
    Fp16,
}

/// Options of [`compile`].
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// The function to compile; default `main` (or the only function).
    pub function: Option<String>,
    pub numerics: Numerics,
    /// Worker threads: `None` uses rayon's global pool, `Some(1)` runs on the calling thread
    /// only, `Some(n)` gives the kernel its own pool of `n` threads.
    pub threads: Option<usize>,
    /// Extents for parameters declared with `?` dimensions, e.g. `("input", vec![4])`.
    pub input_shapes: Vec<(String, Vec<usize>)>,
}

impl CompileOptions {
    pub fn numerics(mut self, n: Numerics) -> CompileOptions {
        self.numerics = n;
        self
    }

    pub fn threads(mut self, n: usize) -> CompileOptions {
        self.threads = Some(n);
        self
    }

    pub fn function(mut self, name: &str) -> CompileOptions {
        self.function = Some(name.to_string());
        self
    }

    pub fn input_shape(mut self, name: &str, shape: &[usize]) -> CompileOptions {
        self.input_shapes.push((name.to_string(), shape.to_vec()));
        self
    }
}

/// Compiles one function of `program` (with its `BLOBFILE` data in `weights`) into a kernel.
pub fn compile(program: &Program, weights: &Weights, options: &CompileOptions) -> Result<CpuKernel> {
    let f = match &options.function {
        Some(name) => program.function(name),
        None => program.main(),
    }
    .ok_or_else(|| CpuError::NoFunction {
        name: options.function.clone().unwrap_or_else(|| "main".into()),
        available: program.functions.iter().map(|f| f.name.clone()).collect(),
    })?;
    for (name, _) in &options.input_shapes {
        if !f.inputs.iter().any(|(n, _)| n == name) {
            return Err(CpuError::UnknownName {
                what: "input",
                name: name.clone(),
                known: f.inputs.iter().map(|(n, _)| n.clone()).collect(),
            });
        }
    }
    let sig_err = |name: &str, msg: String| CpuError::Signature {
        name: name.to_string(),
        span: f.span,
        msg,
    };
    let mut inputs = Vec::new();
    for (name, ty) in &f.inputs {
        let (Some(dtype), Some(shape)) = (ty.dtype(), ty.shape()) else {
            return Err(sig_err(name, format!("type {ty:?} is not a tensor")));
        };
        if Class::of(dtype).is_none() {
            return Err(sig_err(name, format!("dtype {dtype} cannot be an input")));
        }
        let given = options
            .input_shapes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s);
        let shape: Vec<usize> = match given {
            Some(g)
                if g.len() == shape.len()
                    && shape.iter().zip(g).all(|(d, &e)| d.compatible(Dim::Known(e))) =>
            {
                g.clone()
            }
            Some(g) => {
                return Err(sig_err(
                    name,
                    format!("given shape {g:?} does not fit the declared {ty:?}"),
                ));
            }
            None => shape
                .iter()
                .map(|d| d.known())
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    sig_err(
                        name,
                        format!(
                            "{ty:?} has unknown dimensions; give its shape in CompileOptions::input_shapes"
                        ),
                    )
                })?,
        };
        if !plan::analyze::fits_in_memory(&shape, Some(dtype)) {
            return Err(sig_err(name, format!("shape {shape:?} is too large to hold")));
        }
        inputs.push((name.clone(), Type::tensor(dtype, &shape)));
    }
    let pool = match options.threads {
        Some(n) if n > 1 => Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| sig_err(&f.name, format!("cannot start {n} threads: {e}")))?,
        ),
        _ => None,
    };
    let ctx = Ctx {
        fp16: options.numerics == Numerics::Fp16,
        parallel: options.threads != Some(1),
    };
    let plan = match &pool {
        Some(p) => p.install(|| plan::plan(f, &inputs, weights, ctx))?,
        None => plan::plan(f, &inputs, weights, ctx)?,
    };
    let info = |(name, ty): &(String, Type)| TensorInfo {
        name: name.clone(),
        dtype: ty.dtype().expect("tensor"),
        shape: ty.known_shape().expect("known"),
    };
    let inputs: Vec<TensorInfo> = inputs.iter().map(info).collect();
    let mut outputs = Vec::new();
    let mut out_views = Vec::new();
    for (name, t) in f.outputs.iter().zip(&plan.outputs) {
        outputs.push(TensorInfo {
            name: name.clone(),
            dtype: t.dtype,
            shape: t.view.shape.clone(),
        });
        let walk =
            Walk::new(&t.view.shape, &[&t.view]).ok_or_else(|| sig_err(name, "rank above 8".into()))?;
        out_views.push((t.view.clone(), walk));
    }
    Ok(CpuKernel {
        in_bufs: inputs.iter().map(IoBuf::new).collect(),
        out_bufs: outputs.iter().map(IoBuf::new).collect(),
        inputs,
        outputs,
        in_views: plan.inputs,
        out_views,
        steps: plan.steps,
        labels: plan.labels,
        st: plan.st,
        ctx,
        pool,
        numerics: options.numerics,
        stats: plan.stats,
    })
}
