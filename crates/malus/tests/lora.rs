//! LoRA on a frozen base: the device step with the kernels' low-rank paths against the f64
//! reference with the adapters added to its linear layers — the loss agrees, the adapters'
//! gradients match central finite differences, an untrained adapter (B = 0) leaves the base
//! model's loss exactly as it was, and fp16 stays within its rounding.

mod common;

use common::{check_against_fd, params_off_one, tokens, word_tokenizer};
use malus::model::{Adapters, Lora, Target};
use malus::reference;
use malus::rng::Rng;
use malus::{CompiledModel, Config, Device, Numerics, Params, Plan};

/// Adapters with B ≠ 0 too (with B = 0 every ∂A is zero and proves nothing).
fn adapters(c: &Config, lora: &Lora) -> Adapters {
    let mut a = Adapters::init(c, lora, 21);
    let mut r = Rng::new(4);
    for ad in a.adapters.clone() {
        a.tensors[ad.b].data.iter_mut().for_each(|v| *v = r.uniform(0.3));
    }
    a
}

fn compiled(c: &Config, p: &Params, ad: &Adapters, device: &Device) -> CompiledModel {
    let plan = Plan::lora(c, device.dtype(), &ad.lora).unwrap();
    let mut m = CompiledModel::new(&plan, device).unwrap();
    m.stage(p).unwrap();
    m.stage_adapters(p, ad).unwrap();
    m
}

/// One forward and backward: the loss and the adapters' gradients.
fn step(c: &Config, p: &Params, ad: &Adapters, toks: &[u32], device: &Device) -> (f64, Adapters) {
    let mut m = compiled(c, p, ad, device);
    let loss = m.forward(p, toks).unwrap();
    m.backward(1.0).unwrap();
    (loss, m.take_lora_grads(1.0).unwrap())
}

fn check(c: &Config, lora: &Lora) {
    let p = params_off_one(c);
    let ad = adapters(c, lora);
    let toks = tokens(c, 3);
    let (loss, g) = step(c, &p, &ad, &toks, &Device::cpu(Numerics::F32));
    let want = reference::loss_with(c, &p, Some(&ad), &toks);
    assert!(
        (loss - want).abs() < 1e-5 * want,
        "loss {loss} vs reference {want}"
    );
    assert!(
        (want - reference::loss(c, &p, &toks)).abs() > 1e-3,
        "the adapters must change the loss for the check to mean anything"
    );
    let mut r = Rng::new(9);
    let mut worst = 0.0f64;
    for (ti, t) in ad.tensors.iter().enumerate() {
        let gt = &g.tensors[ti].data;
        assert!(gt.iter().any(|v| *v != 0.0), "{}: all-zero gradient", t.name);
        let mut idx: Vec<usize> = (0..gt.len()).collect();
        idx.sort_by(|&a, &b| gt[b].abs().total_cmp(&gt[a].abs()));
        idx.truncate(2);
        idx.push(r.below(gt.len() as u64) as usize);
        for i in idx {
            let rel = check_against_fd(&t.name, &t.data, i, gt[i], |v| {
                let mut q = ad.clone();
                q.tensors[ti].data[i] = v;
                reference::loss_with(c, &p, Some(&q), &toks)
            });
            worst = worst.max(rel);
        }
    }
    eprintln!("loss {loss:.6}, worst relative adapter-gradient error {worst:.2e}");
}

fn all_targets() -> Lora {
    Lora::new(4, 8.0, &Target::ALL)
}

#[test]
fn mha_adapter_gradients_match_finite_differences() {
    let mut c = Config::preset("tiny").unwrap();
    c.residual_scale = 0.7;
    check(&c, &all_targets());
}

/// GQA, untied, head_dim independent of dim / heads, so q/k/v/o adapters have four different
/// shapes; rsLoRA scaling and only the last layer adapted.
#[test]
fn gqa_adapter_gradients_match_finite_differences() {
    let mut c = Config::preset("tiny").unwrap();
    c.kv_heads = 2;
    c.head_dim = 32;
    c.tied = false;
    let mut lora = all_targets();
    lora.rslora = true;
    lora.layers = Some(1);
    check(&c, &lora);
}

/// Qwen3's q/k norm, with a subset of targets (rank 3, which no block width divides).
#[test]
fn qk_norm_adapter_gradients_match_finite_differences() {
    let mut c = Config::preset("tiny").unwrap();
    c.kv_heads = 2;
    c.head_dim = 32;
    c.qk_norm = true;
    c.residual_scale = 0.9;
    check(&c, &Lora::new(3, 5.0, &[Target::Q, Target::V, Target::Down]));
}

/// A hidden size over twice `dim`, so B of gate/up and A of down span three chunks of `dim`
/// rows in the staged blocks.
#[test]
fn adapters_wider_than_the_input_span_several_chunks() {
    let mut c = Config::preset("tiny").unwrap();
    c.hidden = 2 * c.dim + 32;
    check(&c, &Lora::new(2, 4.0, &[Target::Gate, Target::Up, Target::Down]));
}

/// PEFT's initialisation (B = 0): step 0 is the base model, to the last bit of the loss, on
/// every executor numerics.
#[test]
fn untrained_adapters_leave_the_base_model_exactly() {
    let c = Config::preset("tiny").unwrap();
    let p = params_off_one(&c);
    let ad = Adapters::init(&c, &all_targets(), 1);
    let toks = tokens(&c, 5);
    for numerics in [Numerics::F32, Numerics::Fp16] {
        let device = Device::cpu(numerics);
        let mut plain = common::compiled(&c, &p, &device, malus::Dw::Device);
        let want = plain.forward(&p, &toks).unwrap();
        let got = compiled(&c, &p, &ad, &device).forward(&p, &toks).unwrap();
        assert_eq!(got, want, "{numerics:?}");
    }
}

/// fp16 (the ANE's stand-in) against f32: the loss within fp16 rounding of a few matmuls, the
/// gradients within a few percent of their scale — the same bounds as the full model's fp16
/// check (tests/fp16.rs).
#[test]
fn fp16_adapter_gradients_follow_f32() {
    let mut c = Config::preset("tiny").unwrap();
    c.kv_heads = 2;
    let p = params_off_one(&c);
    let ad = adapters(&c, &all_targets());
    let toks = tokens(&c, 7);
    let (l32, g32) = step(&c, &p, &ad, &toks, &Device::cpu(Numerics::F32));
    let (l16, g16) = step(&c, &p, &ad, &toks, &Device::cpu(Numerics::Fp16));
    assert!((l32 - l16).abs() < 2e-3 * l32, "loss f32 {l32} vs fp16 {l16}");
    for (a, b) in g32.tensors.iter().zip(&g16.tensors) {
        let scale = a.data.iter().fold(0f32, |m, x| m.max(x.abs()));
        let worst = a
            .data
            .iter()
            .zip(&b.data)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            worst <= 0.03 * scale,
            "{}: fp16 off by {worst} at scale {scale}",
            a.name
        );
    }
}

/// The adapters' gradients accumulate over micro-steps and restart at zero when taken; a
/// second stage of new values is what the next forward uses.
#[test]
fn gradients_accumulate_and_restaging_takes_new_values() {
    let c = Config::preset("tiny").unwrap();
    let p = params_off_one(&c);
    let mut ad = adapters(&c, &all_targets());
    let toks = tokens(&c, 2);
    let device = Device::cpu(Numerics::F32);
    let mut m = compiled(&c, &p, &ad, &device);
    m.forward(&p, &toks).unwrap();
    m.backward(1.0).unwrap();
    let once = m.lora_grads(1.0).unwrap();
    m.forward(&p, &toks).unwrap();
    m.backward(1.0).unwrap();
    let twice = m.take_lora_grads(2.0).unwrap();
    for (a, b) in once.tensors.iter().zip(&twice.tensors) {
        for (x, y) in a.data.iter().zip(&b.data) {
            assert!((x - y).abs() <= 1e-6 * x.abs().max(1e-3), "{}", a.name);
        }
    }
    assert!(
        m.lora_grads(1.0)
            .unwrap()
            .tensors
            .iter()
            .all(|t| t.data.iter().all(|v| *v == 0.0))
    );
    ad.tensors[ad.adapters[0].b]
        .data
        .iter_mut()
        .for_each(|v| *v *= 2.0);
    m.stage_adapters(&p, &ad).unwrap();
    let loss = m.forward(&p, &toks).unwrap();
    let want = reference::loss_with(&c, &p, Some(&ad), &toks);
    assert!((loss - want).abs() < 1e-5 * want, "{loss} vs {want}");
    // The frozen base has no gradients, and says so.
    assert!(m.take_grads(&p, 1.0).unwrap_err().to_string().contains("frozen"));
}

/// `malus train --init DIR --lora` as a library call: only the adapters train (the base is
/// held only staged), the checkpoint holds adapters and their moments only, resuming continues
/// them exactly, and resuming on another base or with other adapter settings is refused.
#[test]
fn a_lora_run_trains_adapters_only_and_resumes_exactly() {
    use malus::checkpoint::{Checkpoint, Weights};
    use malus::model::hf;
    use malus::{DeviceChoice, Settings, Trainer};
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    let src = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/tiny-llama");
    let out = std::env::temp_dir().join(format!("malus-lora-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let c = hf::load_config(&src, 16).unwrap();
    word_tokenizer(&out.join("tok.json"), c.vocab.min(200));
    let ids: Vec<u32> = (0..4000u32)
        .map(|i| (i * 7 + i / 13) % c.vocab.min(200) as u32)
        .collect();
    malus::data::shards::write_tokens(&out.join("data.bin"), &ids).unwrap();
    let mut s = Settings::default_run();
    s.model = c.clone();
    s.init = Some(src.clone());
    s.tokenizer = out.join("tok.json");
    s.data = out.join("data.bin");
    s.out = out.join("run");
    s.device = DeviceChoice::Cpu;
    s.lr = 1e-2;
    (
        s.steps,
        s.accum,
        s.warmup,
        s.eval_every,
        s.eval_batches,
        s.ckpt_every,
    ) = (2, 1, 1, 1, 1, 2);
    s.lora = Some(Lora::new(4, 8.0, &[Target::Q, Target::V, Target::Down]));

    let (_, base) = hf::load(&src, 16).unwrap();
    let mut t = Trainer::new(s.clone(), false).unwrap();
    let before = t.adapters().unwrap().clone();
    t.run(Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
    // The base is staged from its files and frozen: the trainer keeps its RMSNorm weights
    // (as loaded) and no copy of its matrices.
    for (held, loaded) in t.params().tensors.iter().zip(&base.tensors) {
        match loaded.shape.len() {
            1 => assert_eq!(held, loaded),
            _ => assert!(held.data.is_empty(), "{} is held on the host", held.name),
        }
    }
    let after = t.adapters().unwrap().clone();
    for ad in &after.adapters {
        assert_ne!(after.tensors[ad.b], before.tensors[ad.b], "B never trained");
    }
    let ck = Checkpoint::load(&malus::checkpoint::latest(&s.out).unwrap().unwrap()).unwrap();
    let Weights::Adapters(saved) = &ck.weights else {
        panic!("a LoRA checkpoint holds adapters")
    };
    assert_eq!(saved, &after);
    assert!(ck.params().is_err(), "a LoRA checkpoint has no model");
    let moments: usize = ck
        .opt
        .moments()
        .iter()
        .map(|(_, m)| m.iter().map(Vec::len).sum::<usize>())
        .sum();
    assert_eq!(
        moments,
        2 * after.num_params(),
        "AdamW moments for the adapters only"
    );
    // Continue one more step, then compare with a run of three steps straight.
    let mut three = s.clone();
    three.out = out.join("straight");
    three.steps = 3;
    let mut t3 = Trainer::new(three, false).unwrap();
    t3.run(Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
    drop(t);
    let mut resumed = s.clone();
    resumed.steps = 3;
    let mut t = Trainer::new(resumed.clone(), true).unwrap();
    t.run(Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
    assert_eq!(t.adapters(), t3.adapters(), "resume must continue exactly");
    drop(t);
    // Other adapter settings, or a different base, cannot resume these adapters.
    let mut other = resumed.clone();
    other.lora.as_mut().unwrap().rank = 2;
    let err = format!("{:#}", Trainer::new(other, true).err().unwrap());
    assert!(err.contains("adapters' shape cannot change"), "{err}");
    let moved = out.join("other-base");
    std::fs::create_dir_all(&moved).unwrap();
    let (cfg, mut p) = hf::load(&src, 16).unwrap();
    p.tensors[p.layers[0].wq].data[0] += 0.5;
    std::fs::copy(src.join("config.json"), moved.join("config.json")).unwrap();
    let names: Vec<String> = p.tensors.iter().map(|t| t.name.clone()).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = p
        .tensors
        .iter()
        .zip(&names)
        .map(|(t, n)| {
            let bytes: &[u8] = bytemuck::cast_slice(&t.data);
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), bytes)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &moved.join("model.safetensors")).unwrap();
    assert_eq!(hf::load_config(&moved, 16).unwrap(), cfg);
    let mut other = resumed;
    other.init = Some(moved);
    let err = format!("{:#}", Trainer::new(other, true).err().unwrap());
    assert!(err.contains("adapts another base model"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// Merging the adapters into their weights (`W += s·B·A`, for generation and `fuse`) gives the
/// model base + adapters compute.
#[test]
fn merged_weights_compute_base_plus_adapters() {
    let mut c = Config::preset("tiny").unwrap();
    c.kv_heads = 2;
    let p = params_off_one(&c);
    let mut lora = all_targets();
    lora.rslora = true;
    let ad = adapters(&c, &lora);
    let toks = tokens(&c, 4);
    let mut merged = p.clone();
    ad.merge_into(&mut merged);
    let want = reference::loss_with(&c, &p, Some(&ad), &toks);
    let got = reference::loss(&c, &merged, &toks);
    assert!(
        (got - want).abs() < 1e-6 * want,
        "merged {got} vs adapters {want}"
    );
    assert!((want - reference::loss(&c, &p, &toks)).abs() > 1e-3);
}
