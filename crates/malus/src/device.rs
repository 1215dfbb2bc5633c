//! Devices run compiled kernels. A kernel is used as bytes in, bytes out in the kernel's element
//! type; the CPU executor and the Neural Engine offer the same interface.

use anyhow::Result;

use crate::kernels::KernelDef;

/// A compiled kernel.
pub trait Exec: Send {
    /// Runs on `input` (the whole packed input) and fills `output`.
    fn exec(&mut self, input: &[u8], output: &mut [u8]) -> Result<()>;
}

/// Something that compiles kernels.
pub trait Device {
    fn name(&self) -> String;
    fn compile(&self, def: &KernelDef) -> Result<Box<dyn Exec>>;
}
