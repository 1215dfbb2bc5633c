//! A compiled function: owns its input/output buffers and all storage; `run` executes the
//! planned steps without allocating.

use std::time::Instant;

use malus_mil::DType;

use crate::Numerics;
use crate::error::{CpuError, Result};
use crate::io::{IoBuf, TensorInfo};
use crate::kernels::Step;
use crate::layout::View;
use crate::plan::PlanStats;
use crate::storage::{Ctx, Storage};
use crate::walk::Walk;

/// A MIL function compiled for the CPU. The same interface as an ANE kernel: write inputs,
/// `run`, read outputs.
pub struct CpuKernel {
    pub(crate) inputs: Vec<TensorInfo>,
    pub(crate) outputs: Vec<TensorInfo>,
    pub(crate) in_bufs: Vec<IoBuf>,
    pub(crate) out_bufs: Vec<IoBuf>,
    /// Storage slot of each input (`None` when nothing reads it).
    pub(crate) in_views: Vec<Option<View>>,
    pub(crate) out_views: Vec<(View, Walk)>,
    pub(crate) steps: Vec<Step>,
    /// The op each step comes from, for profiles.
    pub(crate) labels: Vec<String>,
    pub(crate) st: Storage,
    pub(crate) ctx: Ctx,
    pub(crate) pool: Option<rayon::ThreadPool>,
    pub(crate) numerics: Numerics,
    pub(crate) stats: PlanStats,
}

impl std::fmt::Debug for CpuKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuKernel")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("numerics", &self.numerics)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Time spent in one step of a profiled run.
#[derive(Clone, Debug)]
pub struct StepTime {
    /// Kernel kind, e.g. `matmul`, `elementwise`; `inputs`/`outputs` for the conversions.
    pub kind: &'static str,
    /// The op the step comes from: type, name and line:col.
    pub op: String,
    pub seconds: f64,
}

fn find(list: &[TensorInfo], what: &'static str, name: &str) -> Result<usize> {
    list.iter()
        .position(|t| t.name == name)
        .ok_or_else(|| CpuError::UnknownName {
            what,
            name: name.to_string(),
            known: list.iter().map(|t| t.name.clone()).collect(),
        })
}

fn check_len(name: &str, expected: usize, got: usize, unit: &'static str) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(CpuError::Length {
            name: name.to_string(),
            expected,
            got,
            unit,
        })
    }
}

impl CpuKernel {
    /// The function's parameters, in signature order.
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    /// The function's results, in return order.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    pub fn numerics(&self) -> Numerics {
        self.numerics
    }

    /// What the planner made of the function (steps, fusion, memory).
    pub fn stats(&self) -> &PlanStats {
        &self.stats
    }

    /// The planned steps in execution order: kernel kind and the op it comes from
    /// (type, name, line:col), e.g. for an `--explain` listing.
    pub fn steps(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.steps
            .iter()
            .zip(&self.labels)
            .map(|(s, l)| (s.kind(), l.as_str()))
    }

    /// Sets an input from f32 values, converting to its dtype (fp16 rounds to nearest even).
    pub fn write_input_f32(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let i = find(&self.inputs, "input", name)?;
        check_len(name, self.inputs[i].len(), values.len(), "values")?;
        self.in_bufs[i].write_f32(self.inputs[i].dtype, values);
        Ok(())
    }

    /// Sets an input from raw little-endian bytes of its dtype.
    pub fn write_input_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let i = find(&self.inputs, "input", name)?;
        check_len(name, self.inputs[i].byte_len(), bytes.len(), "bytes")?;
        self.in_bufs[i].bytes_mut().copy_from_slice(bytes);
        Ok(())
    }

    /// The input's byte buffer, to fill in place.
    pub fn input_bytes_mut(&mut self, name: &str) -> Result<&mut [u8]> {
        let i = find(&self.inputs, "input", name)?;
        Ok(self.in_bufs[i].bytes_mut())
    }

    /// Runs the function on the current inputs. Allocates nothing itself (gemm's packing
    /// buffers and rayon's job queue are the only allocations, inside those crates).
    pub fn run(&mut self) -> Result<()> {
        let CpuKernel {
            inputs,
            outputs,
            in_bufs,
            out_bufs,
            in_views,
            out_views,
            steps,
            st,
            ctx,
            pool,
            ..
        } = self;
        let ctx = *ctx;
        let mut body = move || {
            for ((info, buf), view) in inputs.iter().zip(in_bufs.iter()).zip(in_views.iter()) {
                if let Some(v) = view {
                    buf.load(info.dtype, v, st, &ctx);
                }
            }
            for step in steps.iter() {
                step.exec(st, &ctx);
            }
            for ((info, buf), (view, walk)) in outputs.iter().zip(out_bufs.iter_mut()).zip(out_views.iter()) {
                buf.store(info.dtype, view, walk, st, &ctx);
            }
        };
        match pool {
            Some(p) => p.install(body),
            None => body(),
        }
        Ok(())
    }

    /// Runs like [`CpuKernel::run`] and times every step (this one allocates its report).
    pub fn run_profiled(&mut self) -> Result<Vec<StepTime>> {
        let CpuKernel {
            inputs,
            outputs,
            in_bufs,
            out_bufs,
            in_views,
            out_views,
            steps,
            labels,
            st,
            ctx,
            pool,
            ..
        } = self;
        let ctx = *ctx;
        let mut body = move || {
            let mut times = Vec::with_capacity(steps.len() + 2);
            let t = Instant::now();
            for ((info, buf), view) in inputs.iter().zip(in_bufs.iter()).zip(in_views.iter()) {
                if let Some(v) = view {
                    buf.load(info.dtype, v, st, &ctx);
                }
            }
            times.push(StepTime {
                kind: "inputs",
                op: String::new(),
                seconds: t.elapsed().as_secs_f64(),
            });
            for (step, label) in steps.iter().zip(labels.iter()) {
                let t = Instant::now();
                step.exec(st, &ctx);
                times.push(StepTime {
                    kind: step.kind(),
                    op: label.clone(),
                    seconds: t.elapsed().as_secs_f64(),
                });
            }
            let t = Instant::now();
            for ((info, buf), (view, walk)) in outputs.iter().zip(out_bufs.iter_mut()).zip(out_views.iter()) {
                buf.store(info.dtype, view, walk, st, &ctx);
            }
            times.push(StepTime {
                kind: "outputs",
                op: String::new(),
                seconds: t.elapsed().as_secs_f64(),
            });
            times
        };
        Ok(match pool {
            Some(p) => p.install(body),
            None => body(),
        })
    }

    /// Reads an output as f32 into `out` (which must have the output's element count).
    pub fn read_output_f32(&self, name: &str, out: &mut [f32]) -> Result<()> {
        let i = find(&self.outputs, "output", name)?;
        check_len(name, self.outputs[i].len(), out.len(), "values")?;
        self.out_bufs[i].read_f32(self.outputs[i].dtype, out);
        Ok(())
    }

    /// An output as a new f32 vector.
    pub fn output_f32(&self, name: &str) -> Result<Vec<f32>> {
        let i = find(&self.outputs, "output", name)?;
        let mut v = vec![0.0; self.outputs[i].len()];
        self.read_output_f32(name, &mut v)?;
        Ok(v)
    }

    /// An output's raw little-endian bytes in its dtype.
    pub fn read_output_bytes(&self, name: &str) -> Result<&[u8]> {
        let i = find(&self.outputs, "output", name)?;
        Ok(self.out_bufs[i].bytes())
    }

    /// The dtype and shape of an input or output, by name.
    pub fn info(&self, name: &str) -> Option<(DType, &[usize])> {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .find(|t| t.name == name)
            .map(|t| (t.dtype, t.shape.as_slice()))
    }
}
