//! The plan's kernels compiled on a device, by [`KernelId`], each with a reusable output buffer.

use anyhow::{Context, Result, bail};

use crate::device::{Device, Kernel, Packed};
use crate::kernels::{KERNELS, KernelDef, KernelId};
use crate::plan::Plan;

/// A kernel compiled on the device, with a reusable output buffer.
pub(super) struct Compiled {
    kernel: Kernel,
    name: &'static str,
    out: Packed,
}

/// The plan's kernels on one device, by [`KernelId`] (dW kernels absent for `--dw host`).
pub(super) struct Kernels(Vec<Option<Compiled>>);

impl Kernels {
    pub(super) fn compile(plan: &Plan, device: &Device) -> Result<Kernels> {
        let compile = |d: &KernelDef| -> Result<Compiled> {
            Ok(Compiled {
                kernel: device
                    .compile(d)
                    .with_context(|| format!("compiling kernel {}", d.name))?,
                name: d.name,
                out: Packed::new(plan.shape.dtype, &d.output),
            })
        };
        let ks = KERNELS.iter().map(|e| plan.kernel(e.id).map(compile).transpose());
        Ok(Kernels(ks.collect::<Result<_>>()?))
    }

    pub(super) fn has(&self, id: KernelId) -> bool {
        self.0[id as usize].is_some()
    }

    /// The output of a kernel's last run.
    pub(super) fn output(&self, id: KernelId) -> Result<&Packed> {
        match &self.0[id as usize] {
            Some(k) => Ok(&k.out),
            None => bail!("kernel {} is not in this plan", id.name()),
        }
    }

    /// Runs a kernel on `input`; returns its output.
    pub(super) fn run(&mut self, id: KernelId, input: &Packed) -> Result<&Packed> {
        let Some(k) = self.0[id as usize].as_mut() else {
            bail!("kernel {} is not in this plan", id.name())
        };
        k.kernel
            .exec(input.as_bytes(), k.out.as_bytes_mut())
            .with_context(|| format!("running kernel {}", k.name))?;
        Ok(&k.out)
    }
}
