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
    /// The Apple silicon generation of a Neural Engine (for the cost model); `None` elsewhere.
    fn chip_family(&self) -> Option<malus_ane::ChipFamily> {
        None
    }
    fn compile(&self, def: &KernelDef) -> Result<Box<dyn Exec>>;
}

/// The CPU executor of the same MIL programs.
pub struct CpuDevice {
    pub numerics: malus_cpu::Numerics,
}

struct CpuExec {
    kernel: malus_cpu::CpuKernel,
}

impl Device for CpuDevice {
    fn name(&self) -> String {
        format!("cpu ({:?} numerics)", self.numerics).to_lowercase()
    }

    fn compile(&self, def: &KernelDef) -> Result<Box<dyn Exec>> {
        let opts = malus_cpu::CompileOptions::default().numerics(self.numerics);
        let kernel = malus_cpu::compile(&def.program, &def.weights, &opts)?;
        Ok(Box::new(CpuExec { kernel }))
    }
}

impl Exec for CpuExec {
    /// Runs straight on the caller's buffers: the staged per-layer inputs are not copied,
    /// and the kernel holds no I/O buffers of its own.
    fn exec(&mut self, input: &[u8], output: &mut [u8]) -> Result<()> {
        Ok(self.kernel.run_with(&[input], &mut [output])?)
    }
}

/// The Neural Engine (fp16 kernels only). Never run on hardware by this project yet.
pub struct AneDevice {
    pub ane: malus_ane::Ane,
}

struct AneExec {
    kernel: malus_ane::AneKernel,
}

/// A kernel definition as the ANE runtime takes it: MIL text, weight files and its I/O.
pub fn ane_spec(def: &KernelDef) -> Result<malus_ane::KernelSpec> {
    use malus_ane::{IoDType, KernelSpec, TensorSpec};
    let f = def
        .program
        .main()
        .ok_or_else(|| anyhow::anyhow!("kernel {} has no main function", def.name))?;
    let io = |name: &str, ty: Option<&malus_mil::Type>| -> Result<TensorSpec> {
        let ty = ty.ok_or_else(|| anyhow::anyhow!("kernel {}: `{name}` has no type", def.name))?;
        let dtype = match ty.dtype() {
            Some(malus_mil::DType::Fp16) => IoDType::Fp16,
            Some(malus_mil::DType::Fp32) => IoDType::Fp32,
            other => anyhow::bail!(
                "kernel {}: `{name}` is {other:?}; the ANE takes fp16 or fp32",
                def.name
            ),
        };
        let shape = ty
            .known_shape()
            .ok_or_else(|| anyhow::anyhow!("kernel {}: `{name}` has unknown dims", def.name))?;
        Ok(TensorSpec {
            name: name.to_string(),
            dtype,
            shape,
        })
    };
    Ok(KernelSpec {
        name: def.name.to_string(),
        mil_text: malus_mil::print(&def.program),
        weights: def
            .weights
            .files()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect(),
        inputs: f
            .inputs
            .iter()
            .map(|(n, t)| io(n, Some(t)))
            .collect::<Result<_>>()?,
        outputs: f
            .outputs
            .iter()
            .map(|n| io(n, f.var_type(n)))
            .collect::<Result<_>>()?,
    })
}

impl Device for AneDevice {
    fn name(&self) -> String {
        let info = self.ane.device_info();
        format!(
            "ane ({})",
            info.subtype.unwrap_or_else(|| "unknown subtype".into())
        )
    }

    fn chip_family(&self) -> Option<malus_ane::ChipFamily> {
        Some(self.ane.device_info().chip_family)
    }

    fn compile(&self, def: &KernelDef) -> Result<Box<dyn Exec>> {
        let kernel = self.ane.compile(&ane_spec(def)?)?;
        Ok(Box::new(AneExec { kernel }))
    }
}

impl Exec for AneExec {
    fn exec(&mut self, input: &[u8], output: &mut [u8]) -> Result<()> {
        self.kernel.write_input_bytes(0usize, input)?;
        self.kernel.run()?;
        self.kernel.read_output_bytes(0usize, output)?;
        Ok(())
    }
}
