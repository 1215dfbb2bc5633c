//! A LoRA run's frozen base staged straight from its files (`CompiledModel::stage_frozen`, no
//! f32 copy of the model): it computes bit for bit what the same base loaded in f32 and staged
//! computes, with the same fingerprint, and the host keeps only its RMSNorm weights and its
//! embedding at the stored precision. The Hugging Face fixtures (mixed f32/bf16/f16 tensors,
//! tied and untied, sharded) run in f32, their widths being too narrow for the fp16 kernels'
//! ANE lint; bf16 models of the `tiny` preset run in both.

mod common;

use std::path::PathBuf;

use malus::checkpoint;
use malus::model::hf_out::StoreDtype;
use malus::model::hf_weights::WeightReader;
use malus::model::{Adapters, Lora, Stored, Target, hf};
use malus::rng::Rng;
use malus::{CompiledModel, Device, Numerics, Plan};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

/// A copy of fixture `name` stored in bf16, as shipped models are.
fn bf16_copy(name: &str) -> PathBuf {
    use malus::model::hf_out;
    let src = fixture(name);
    let (c, p) = hf::load(&src, 8).unwrap();
    let out = std::env::temp_dir().join(format!("malus-frozen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let config = hf_out::base_config_json(&src, StoreDtype::Bf16).unwrap();
    hf_out::write_model_dir(&out, &c, &p, StoreDtype::Bf16, &config, &src).unwrap();
    out
}

/// A bf16 Hugging Face directory of the `tiny` preset (widths the fp16 kernels' ANE lint
/// accepts, which the HF fixtures' are not), at sequence length `seq`.
fn tiny_bf16(tag: &str, qk_norm: bool, tied: bool) -> PathBuf {
    use malus::model::hf_out;
    let mut c = malus::Config::preset("tiny").unwrap();
    (c.residual_scale, c.qk_norm, c.tied, c.kv_heads) = (1.0, qk_norm, tied, 2);
    let p = common::params_off_one(&c);
    let out = std::env::temp_dir().join(format!("malus-frozen-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let config = hf_out::config_json(&c, StoreDtype::Bf16).unwrap();
    let tok = out.with_extension("tok.json");
    common::word_tokenizer(&tok, c.vocab);
    hf_out::write_model_dir(&out, &c, &p, StoreDtype::Bf16, &config, &tok).unwrap();
    std::fs::remove_file(tok).unwrap();
    out
}

fn same_step(dir: &std::path::Path, numerics: Numerics, seq: usize) {
    let name = dir.file_name().unwrap().to_string_lossy();
    let (c, p) = hf::load(dir, seq).unwrap();
    let lora = Lora::new(2, 4.0, &Target::ALL);
    let mut ad = Adapters::init(&c, &lora, 3);
    let mut r = Rng::new(8);
    for a in ad.adapters.clone() {
        ad.tensors[a.b].data.iter_mut().for_each(|v| *v = r.uniform(0.2));
    }
    let device = Device::cpu(numerics);
    let plan = Plan::lora(&c, device.dtype(), &lora).unwrap();
    let toks = common::tokens(&c, 5);

    let mut loaded = CompiledModel::new(&plan, &device).unwrap();
    loaded.stage(&p).unwrap();
    loaded.stage_adapters(&p, &ad).unwrap();
    let want = loaded.forward(&p, &toks).unwrap();
    loaded.backward(1.0).unwrap();
    let want_g = loaded.take_lora_grads(1.0).unwrap();

    let mut frozen = CompiledModel::new(&plan, &device).unwrap();
    let reader = WeightReader::open(dir, &c).unwrap();
    let (norms, fp) = frozen.stage_frozen(&reader).unwrap();
    frozen.stage_adapters(&norms, &ad).unwrap();
    let got = frozen.forward(&norms, &toks).unwrap();
    frozen.backward(1.0).unwrap();
    let got_g = frozen.take_lora_grads(1.0).unwrap();

    assert_eq!(got.to_bits(), want.to_bits(), "{name}: loss {got} vs {want}");
    assert!(got_g == want_g, "{name}: adapter gradients differ");
    assert_eq!(fp, checkpoint::fingerprint(&p.tensors), "{name}: fingerprint");
    for t in &norms.tensors {
        let kept = t.shape.len() == 1;
        assert_eq!(!t.data.is_empty(), kept, "{name}: {} kept = {}", t.name, !kept);
    }
    // The embedding is kept as the file stores it (f32 in the fixtures, bf16 in their copies).
    let e = reader.embedding().unwrap();
    let bf16 = StoreDtype::of_dir(dir).unwrap() == StoreDtype::Bf16;
    assert_eq!(matches!(e, Stored::Bf16(_)), bf16, "{name}");
    assert_eq!(e.bytes(), if bf16 { 2 } else { 4 } * c.vocab * c.dim);
    assert_eq!(e.to_f32(), p.tensors[p.embed].data);
}

/// In fp16 (the ANE's numerics) as well as f32, on models of both kinds.
#[test]
fn fp16_frozen_base_is_the_loaded_base() {
    for (tag, qk_norm, tied) in [("llama", false, false), ("qwen3", true, true)] {
        let dir = tiny_bf16(tag, qk_norm, tied);
        same_step(&dir, Numerics::Fp16, 32);
        same_step(&dir, Numerics::F32, 32);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// Fixture `name` as stored, and a bf16 copy of it, in f32.
fn fixture_and_bf16_copy(name: &str) {
    same_step(&fixture(name), Numerics::F32, 8);
    let copy = bf16_copy(name);
    same_step(&copy, Numerics::F32, 8);
    std::fs::remove_dir_all(copy).unwrap();
}

#[test]
fn llama_untied_gqa_frozen_base_is_the_loaded_base() {
    fixture_and_bf16_copy("tiny-llama");
}

#[test]
fn qwen3_tied_sharded_frozen_base_is_the_loaded_base() {
    fixture_and_bf16_copy("tiny-qwen3");
}

#[test]
fn only_a_lora_plan_takes_a_frozen_base() {
    let dir = fixture("tiny-llama");
    let c = hf::load_config(&dir, 8).unwrap();
    let device = Device::cpu(Numerics::F32);
    let plan = Plan::new(&c, device.dtype(), malus::Dw::Device).unwrap();
    let mut m = CompiledModel::new(&plan, &device).unwrap();
    let err = m
        .stage_frozen(&WeightReader::open(&dir, &c).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("LoRA plan"), "{err}");
}
