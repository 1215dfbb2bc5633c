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

/// The CPU executor of the same MIL programs.
pub struct CpuDevice {
    pub numerics: malus_cpu::Numerics,
}

struct CpuExec {
    kernel: malus_cpu::CpuKernel,
    input: String,
    output: String,
}

impl Device for CpuDevice {
    fn name(&self) -> String {
        format!("cpu ({:?} numerics)", self.numerics).to_lowercase()
    }

    fn compile(&self, def: &KernelDef) -> Result<Box<dyn Exec>> {
        let opts = malus_cpu::CompileOptions::default().numerics(self.numerics);
        let kernel = malus_cpu::compile(&def.program, &def.weights, &opts)?;
        let input = kernel.inputs()[0].name.clone();
        let output = kernel.outputs()[0].name.clone();
        Ok(Box::new(CpuExec {
            kernel,
            input,
            output,
        }))
    }
}

impl Exec for CpuExec {
    fn exec(&mut self, input: &[u8], output: &mut [u8]) -> Result<()> {
        self.kernel.write_input_bytes(&self.input, input)?;
        self.kernel.run()?;
        output.copy_from_slice(self.kernel.read_output_bytes(&self.output)?);
        Ok(())
    }
}
