//! Per-token loss weights (`--mask-prompt`): a target of weight 0 contributes exactly nothing —
//! the loss and every gradient are bit for bit what they are with that target changed — and
//! uniform weights are the plain mean.

mod common;

use malus::model::{Adapters, Lora, Target};
use malus::{CompiledModel, Config, Device, Dw, Numerics, Params, Plan};

fn run(model: &mut CompiledModel, p: &Params, toks: &[u32], w: &[f32]) -> f64 {
    let loss = model.forward_weighted(p, toks, w).unwrap();
    model.backward(1.0).unwrap();
    loss
}

/// The last target is only a target (no later position reads it), so changing it may move
/// nothing when its weight is 0, and must move the loss when it is not.
fn last_target_changed(c: &Config, toks: &[u32]) -> Vec<u32> {
    let mut other = toks.to_vec();
    other[c.seq] = (other[c.seq] + 1) % c.vocab as u32;
    other
}

fn masked_weights(c: &Config) -> Vec<f32> {
    // The first third and the last target do not count; the rest count with weight 1/counted.
    let counted = (c.seq / 3..c.seq - 1).count() as f32;
    (0..c.seq)
        .map(|i| {
            if (c.seq / 3..c.seq - 1).contains(&i) {
                1.0 / counted
            } else {
                0.0
            }
        })
        .collect()
}

#[test]
fn a_masked_target_adds_exactly_nothing_to_loss_or_gradients() {
    for numerics in [Numerics::F32, Numerics::Fp16] {
        let device = Device::cpu(numerics);
        let c = Config::preset("tiny").unwrap();
        let p = common::params_off_one(&c);
        let toks = common::tokens(&c, 7);
        let other = last_target_changed(&c, &toks);
        let w = masked_weights(&c);
        let grads = |toks: &[u32], w: &[f32]| {
            let mut m = common::compiled(&c, &p, &device, Dw::Device);
            let loss = run(&mut m, &p, toks, w);
            (loss, m.grads(&p, 1.0).unwrap())
        };
        let (l1, g1) = grads(&toks, &w);
        let (l2, g2) = grads(&other, &w);
        assert_eq!(l1, l2, "{numerics:?}: a masked target moved the loss");
        assert!(
            g1.tensors == g2.tensors,
            "{numerics:?}: a masked target moved a gradient"
        );

        let mut counted = w.clone();
        counted[c.seq - 1] = counted[c.seq / 3];
        assert_ne!(grads(&toks, &counted).0, grads(&other, &counted).0);
    }
}

#[test]
fn a_masked_target_adds_nothing_to_adapter_gradients() {
    let device = Device::cpu(Numerics::F32);
    let c = Config::preset("tiny").unwrap();
    let p = common::params_off_one(&c);
    let lora = Lora::new(4, 8.0, &Target::ALL);
    let mut ad = Adapters::init(&c, &lora, 3);
    let b: Vec<usize> = ad.adapters.iter().map(|a| a.b).collect();
    for i in b {
        ad.tensors[i]
            .data
            .iter_mut()
            .enumerate()
            .for_each(|(k, v)| *v = 0.01 * (k % 7) as f32);
    }
    let toks = common::tokens(&c, 8);
    let w = masked_weights(&c);
    let grads = |toks: &[u32]| {
        let plan = Plan::lora(&c, device.dtype(), &lora).unwrap();
        let mut m = CompiledModel::new(&plan, &device).unwrap();
        m.stage(&p).unwrap();
        m.stage_adapters(&p, &ad).unwrap();
        let loss = run(&mut m, &p, toks, &w);
        (loss, m.take_lora_grads(1.0).unwrap())
    };
    let (l1, g1) = grads(&toks);
    let (l2, g2) = grads(&last_target_changed(&c, &toks));
    assert_eq!(l1, l2);
    assert!(g1.tensors == g2.tensors);
    assert!(g1.tensors.iter().all(|t| t.data.iter().any(|v| *v != 0.0)));
}

#[test]
fn uniform_weights_are_the_mean_and_bad_weights_are_refused() {
    let device = Device::cpu(Numerics::F32);
    let c = Config::preset("tiny").unwrap();
    let p = Params::init(&c, 2);
    let toks = common::tokens(&c, 9);
    let mut m = common::compiled(&c, &p, &device, Dw::Device);
    let mean = m.forward(&p, &toks).unwrap();
    let uniform = vec![1.0 / c.seq as f32; c.seq];
    assert_eq!(m.forward_weighted(&p, &toks, &uniform).unwrap(), mean);
    let doubled: Vec<f32> = uniform.iter().map(|v| 2.0 * v).collect();
    let twice = m.forward_weighted(&p, &toks, &doubled).unwrap();
    assert!((twice - 2.0 * mean).abs() < 1e-12 * mean, "{twice} vs 2×{mean}");

    let e = m
        .forward_weighted(&p, &toks, &uniform[1..])
        .unwrap_err()
        .to_string();
    assert!(e.contains("loss weights"), "{e}");
    let mut nan = uniform.clone();
    nan[3] = f32::NAN;
    let e = m.forward_weighted(&p, &toks, &nan).unwrap_err().to_string();
    assert!(e.contains("loss weight NaN"), "{e}");
}
