//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use malus::rng::Rng;
use malus::{CompiledModel, Config, Device, Dw, Numerics, Params, Plan};

/// A model compiled for `device` with dW where `dw` says, staged with `p`.
pub fn compiled(c: &Config, p: &Params, device: &Device, dw: Dw) -> CompiledModel {
    let plan = Plan::new(c, device.dtype(), dw).unwrap();
    let mut model = CompiledModel::new(&plan, device).unwrap();
    model.stage(p).unwrap();
    model
}

/// A training step on the CPU executor in f32 with dW on the device, staged with `p`: the
/// configuration the reference comparisons run in.
pub fn f32_step(c: &Config, p: &Params) -> CompiledModel {
    compiled(c, p, &Device::cpu(Numerics::F32), Dw::Device)
}

/// One forward and backward on `device`: the loss and the parameter gradients (loss scaling
/// divided out).
pub fn loss_and_grads(
    c: &Config,
    p: &Params,
    toks: &[u32],
    device: &Device,
    dw: Dw,
    scale: f32,
) -> (f64, Params) {
    let mut model = compiled(c, p, device, dw);
    let loss = model.forward(p, toks).unwrap();
    model.backward(scale).unwrap();
    (loss, model.grads(p, scale))
}

/// `seq + 1` random token ids below the vocabulary.
pub fn tokens(c: &Config, seed: u64) -> Vec<u32> {
    let mut r = Rng::new(seed);
    (0..=c.seq).map(|_| r.below(c.vocab as u64) as u32).collect()
}

/// Runs a test body once per device the step can be checked on: the CPU executor in f32 and in
/// fp16 (the ANE's stand-in). The ANE itself is tested through the fake in `malus-ane`.
#[macro_export]
macro_rules! test_device {
    ($name:ident, |$dev:ident| $body:block) => {
        mod $name {
            use super::*;
            #[test]
            fn cpu_f32() {
                let $dev = malus::Device::cpu(malus::Numerics::F32);
                $body
            }
            #[test]
            fn cpu_fp16() {
                let $dev = malus::Device::cpu(malus::Numerics::Fp16);
                $body
            }
        }
    };
}
