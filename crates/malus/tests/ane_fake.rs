//! The Neural Engine path of a training step — kernel specs, compile and load through the
//! private-framework protocol, IOSurface writes and reads — run on `malus-ane`'s fake, whose
//! evaluate computes each program with the CPU executor in fp16. The step must give exactly
//! what the CPU executor in fp16 gives: the ANE path may move bytes, never change them.
//! (What Apple's compiler accepts and computes is untested on hardware.)

mod common;

use common::{fake_ane, loss_and_grads, tokens};
use malus::{Config, Device, Dw, Numerics, Params};

#[test]
fn the_ane_path_reproduces_the_fp16_executor_exactly() {
    let mut c = Config::preset("tiny").unwrap();
    c.kv_heads = 2;
    c.head_dim = 32;
    c.qk_norm = true;
    c.tied = false;
    let p = Params::init(&c, 5);
    let toks = tokens(&c, 6);
    for dw in [Dw::Device, Dw::Host] {
        let (l_cpu, g_cpu) = loss_and_grads(&c, &p, &toks, &Device::cpu(Numerics::Fp16), dw, 256.0);
        let (l_ane, g_ane) = loss_and_grads(&c, &p, &toks, &fake_ane(), dw, 256.0);
        assert_eq!(l_ane, l_cpu, "{dw:?}: loss");
        assert!(g_cpu.tensors.iter().any(|t| t.data.iter().any(|&v| v != 0.0)));
        assert_eq!(g_ane, g_cpu, "{dw:?}: gradients");
    }
}

#[test]
fn the_fake_ane_is_a_neural_engine_device() {
    let d = fake_ane();
    assert_eq!(d.dtype(), malus_mil::DType::Fp16);
    assert!(d.name().starts_with("ane ("), "{}", d.name());
    assert!(d.chip_family().is_some());
}
