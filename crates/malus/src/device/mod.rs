//! The device that runs compiled kernels: the CPU executor of the MIL programs or the Neural
//! Engine, a closed set like candle's. A kernel is used as bytes in, bytes out in the device's
//! element type ([`Device::dtype`]); both devices offer the same interface.

mod buf;

use anyhow::{Context, Result};
use malus_ane::ChipFamily;
use malus_mil::DType;

pub use buf::Packed;

use crate::kernels::KernelDef;
use crate::settings::{DeviceChoice, Numerics};

/// Where kernels run.
pub enum Device {
    /// The CPU executor of the same MIL programs, in f32 or ANE-faithful fp16 numerics.
    Cpu { numerics: Numerics },
    /// The Neural Engine (fp16 kernels only). Never run on hardware by this project yet.
    Ane(malus_ane::Ane),
}

/// A kernel compiled on a [`Device`].
pub enum Kernel {
    Cpu(malus_cpu::CpuKernel),
    Ane(malus_ane::AneKernel),
}

impl Device {
    pub fn cpu(numerics: Numerics) -> Device {
        Device::Cpu { numerics }
    }

    /// Opens the device a run asks for: `Auto` is the Neural Engine where it opens, else the
    /// CPU executor in `numerics`.
    pub fn open(choice: DeviceChoice, numerics: Numerics) -> Result<Device> {
        match choice {
            DeviceChoice::Cpu => Ok(Device::cpu(numerics)),
            DeviceChoice::Ane => Ok(Device::Ane(malus_ane::Ane::open().context("--device ane")?)),
            DeviceChoice::Auto => Ok(malus_ane::Ane::open().map_or(Device::cpu(numerics), Device::Ane)),
        }
    }

    /// The element type of kernel inputs and outputs on this device.
    pub fn dtype(&self) -> DType {
        match self {
            Device::Cpu {
                numerics: Numerics::F32,
            } => DType::Fp32,
            Device::Cpu {
                numerics: Numerics::Fp16,
            }
            | Device::Ane(_) => DType::Fp16,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Device::Cpu { numerics } => format!("cpu ({numerics:?} numerics)").to_lowercase(),
            Device::Ane(ane) => format!(
                "ane ({})",
                ane.device_info()
                    .subtype
                    .unwrap_or_else(|| "unknown subtype".into())
            ),
        }
    }

    /// The Apple silicon generation of a Neural Engine (for the cost model); `None` elsewhere.
    pub fn chip_family(&self) -> Option<ChipFamily> {
        match self {
            Device::Cpu { .. } => None,
            Device::Ane(ane) => Some(ane.device_info().chip_family),
        }
    }

    pub fn compile(&self, def: &KernelDef) -> Result<Kernel> {
        let k = match self {
            Device::Cpu { numerics } => {
                let numerics = match numerics {
                    Numerics::F32 => malus_cpu::Numerics::F32,
                    Numerics::Fp16 => malus_cpu::Numerics::Fp16,
                };
                let opts = malus_cpu::CompileOptions::default().numerics(numerics);
                Kernel::Cpu(malus_cpu::compile(&def.program, &def.weights, &opts)?)
            }
            Device::Ane(ane) => Kernel::Ane(ane.compile(&ane_spec(def.name, &def.program, &def.weights)?)?),
        };
        Ok(k)
    }
}

impl Kernel {
    /// Runs on `input` (the whole packed input) and fills `output`. On the CPU executor this
    /// runs straight on the caller's buffers (the staged per-layer inputs are not copied); on the
    /// ANE the input is copied into the kernel's IOSurface and the output out of it.
    pub fn exec(&mut self, input: &[u8], output: &mut [u8]) -> Result<()> {
        match self {
            Kernel::Cpu(k) => Ok(k.run_with(&[input], &mut [output])?),
            Kernel::Ane(k) => {
                k.write_input_bytes(0usize, input)?;
                k.run()?;
                k.read_output_bytes(0usize, output)?;
                Ok(())
            }
        }
    }
}

/// A kernel definition as the ANE runtime takes it: MIL text, weight files and its I/O.
pub fn ane_spec(
    name: &str,
    program: &malus_mil::Program,
    weights: &malus_mil::Weights,
) -> Result<malus_ane::KernelSpec> {
    use malus_ane::{IoDType, KernelSpec, TensorSpec};
    let f = program
        .main()
        .ok_or_else(|| anyhow::anyhow!("kernel {name} has no main function"))?;
    let io = |io: &str, ty: Option<&malus_mil::Type>| -> Result<TensorSpec> {
        let ty = ty.ok_or_else(|| anyhow::anyhow!("kernel {name}: `{io}` has no type"))?;
        let dtype = match ty.dtype() {
            Some(malus_mil::DType::Fp16) => IoDType::Fp16,
            Some(malus_mil::DType::Fp32) => IoDType::Fp32,
            other => anyhow::bail!("kernel {name}: `{io}` is {other:?}; the ANE takes fp16 or fp32"),
        };
        let shape = ty
            .known_shape()
            .ok_or_else(|| anyhow::anyhow!("kernel {name}: `{io}` has unknown dims"))?;
        Ok(TensorSpec {
            name: io.to_string(),
            dtype,
            shape,
        })
    };
    Ok(KernelSpec {
        name: name.to_string(),
        mil_text: malus_mil::print(program),
        weights: weights
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
