//! A compiled function: owns its input/output buffers and all storage; `run` executes the
//! planned steps without allocating.

use std::time::Instant;

use malus_mil::DType;

use crate::Numerics;
use crate::error::{CpuError, Result};
use crate::io::{IoBuf, TensorInfo, load, read_range, store};
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

    /// Runs the function on the current inputs. Allocates nothing itself after the first run
    /// (gemm's packing buffers and rayon's job queue are the only allocations, inside those
    /// crates).
    pub fn run(&mut self) -> Result<()> {
        self.run_owned(false).map(drop)
    }

    /// Runs like [`CpuKernel::run`] and times every step (this one allocates its report).
    pub fn run_profiled(&mut self) -> Result<Vec<StepTime>> {
        self.run_owned(true)
    }

    /// Runs on the caller's buffers instead of the kernel's own: `inputs[i]` holds the bytes of
    /// input `i` and `outputs[j]` receives output `j` (signature order). A caller that keeps many
    /// staged inputs for one kernel (one per layer) hands each in without a copy, and the
    /// kernel's own I/O buffers are never allocated.
    pub fn run_with(&mut self, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<()> {
        for (what, expected, got) in [
            ("input", self.inputs.len(), inputs.len()),
            ("output", self.outputs.len(), outputs.len()),
        ] {
            if expected != got {
                return Err(CpuError::BufferCount { what, expected, got });
            }
        }
        for (t, b) in self.inputs.iter().zip(inputs) {
            check_len(&t.name, t.byte_len(), b.len(), "bytes")?;
        }
        for (t, b) in self.outputs.iter().zip(outputs.iter()) {
            check_len(&t.name, t.byte_len(), b.len(), "bytes")?;
        }
        self.execute(&mut CallerIo { inputs, outputs }, false);
        Ok(())
    }

    fn run_owned(&mut self, profile: bool) -> Result<Vec<StepTime>> {
        let mut io = OwnedIo {
            inputs: std::mem::take(&mut self.in_bufs),
            outputs: std::mem::take(&mut self.out_bufs),
        };
        for b in io.inputs.iter_mut().chain(io.outputs.iter_mut()) {
            b.bytes_mut();
        }
        let times = self.execute(&mut io, profile);
        self.in_bufs = io.inputs;
        self.out_bufs = io.outputs;
        Ok(times)
    }

    /// Loads the inputs, runs every step, stores the outputs; times each phase when asked.
    fn execute(&mut self, io: &mut (impl Io + Send), profile: bool) -> Vec<StepTime> {
        let CpuKernel {
            inputs,
            outputs,
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
            let mut times = Vec::with_capacity(if profile { steps.len() + 2 } else { 0 });
            let mut t = Instant::now();
            let mut lap = |kind: &'static str, op: &str, t: &mut Instant| {
                if profile {
                    times.push(StepTime {
                        kind,
                        op: op.to_string(),
                        seconds: t.elapsed().as_secs_f64(),
                    });
                    *t = Instant::now();
                }
            };
            for (i, (info, view)) in inputs.iter().zip(in_views.iter()).enumerate() {
                if let Some(v) = view {
                    load(io.input(i), info.dtype, v, st, &ctx);
                }
            }
            lap("inputs", "", &mut t);
            for (step, label) in steps.iter().zip(labels.iter()) {
                step.exec(st, &ctx);
                lap(step.kind(), label, &mut t);
            }
            for (i, (info, (view, walk))) in outputs.iter().zip(out_views.iter()).enumerate() {
                store(io.output(i), info.dtype, view, walk, st, &ctx);
            }
            lap("outputs", "", &mut t);
            times
        };
        match pool {
            Some(p) => p.install(body),
            None => body(),
        }
    }

    /// Reads an output as f32 into `out` (which must have the output's element count).
    pub fn read_output_f32(&self, name: &str, out: &mut [f32]) -> Result<()> {
        let i = find(&self.outputs, "output", name)?;
        check_len(name, self.outputs[i].len(), out.len(), "values")?;
        read_range(self.output_bytes(i)?, self.outputs[i].dtype, 0, out);
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
        self.output_bytes(i)
    }

    fn output_bytes(&self, i: usize) -> Result<&[u8]> {
        self.out_bufs[i].bytes().ok_or_else(|| CpuError::NotRun {
            name: self.outputs[i].name.clone(),
        })
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

/// Where a run reads its inputs and writes its outputs.
trait Io {
    fn input(&self, i: usize) -> &[u8];
    fn output(&mut self, i: usize) -> &mut [u8];
}

/// The kernel's own buffers (allocated before the run).
struct OwnedIo {
    inputs: Vec<IoBuf>,
    outputs: Vec<IoBuf>,
}

impl Io for OwnedIo {
    fn input(&self, i: usize) -> &[u8] {
        self.inputs[i].bytes().unwrap_or_default()
    }
    fn output(&mut self, i: usize) -> &mut [u8] {
        self.outputs[i].bytes_mut()
    }
}

/// The caller's buffers (lengths checked by `run_with`).
struct CallerIo<'a, 'b> {
    inputs: &'a [&'a [u8]],
    outputs: &'a mut [&'b mut [u8]],
}

impl Io for CallerIo<'_, '_> {
    fn input(&self, i: usize) -> &[u8] {
        self.inputs[i]
    }
    fn output(&mut self, i: usize) -> &mut [u8] {
        self.outputs[i]
    }
}
