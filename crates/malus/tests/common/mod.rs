//! Helpers shared by the integration tests.

use malus::device::CpuDevice;
use malus::kernels::plan::{DwPlacement, Plan};
use malus::model::{Config, Params};
use malus::train::Step;

/// A training step on the CPU executor in f32 with dW on the device, staged with `p`: the
/// configuration the reference comparisons run in.
pub fn f32_step(c: &Config, p: &Params) -> Step {
    let plan = Plan::new(c, malus_mil::DType::Fp32, DwPlacement::Device).unwrap();
    let dev = CpuDevice {
        numerics: malus_cpu::Numerics::F32,
    };
    let mut step = Step::new(&plan, &dev).unwrap();
    step.stage(p).unwrap();
    step
}
