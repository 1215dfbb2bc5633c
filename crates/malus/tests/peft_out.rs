//! What malus writes, read by Hugging Face: adapters trained by `malus train --lora` load in
//! PEFT (`PeftModel.from_pretrained`) and compute malus's logits, and the model `malus fuse`
//! writes loads in `transformers` and computes malus's logits too.
//!
//! The inputs under `tests/fixtures/lora/malus-out/` are written by the ignored test below
//! (`cargo test -p malus --test peft_out -- --ignored`), then PEFT and transformers compute
//! their logits with `tests/fixtures/lora/check_malus_adapter.py` (a venv with torch,
//! transformers, peft; see the fixtures' README.md).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use malus::model::hf_out::{self, StoreDtype};
use malus::model::{Lora, Target, hf, peft};
use malus::{DeviceChoice, Settings, Trainer, model_source, reference};
use safetensors::SafeTensors;

mod common;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora")
}

/// The two runs: a Llama with plain LoRA on every target, and a Qwen3 with rsLoRA on some
/// targets of its last layer only (PEFT's `layers_to_transform`).
fn runs() -> [(&'static str, Lora); 2] {
    let llama = Lora::new(4, 8.0, &Target::ALL);
    let mut qwen = Lora::new(
        4,
        8.0,
        &[Target::Q, Target::K, Target::V, Target::O, Target::Down],
    );
    (qwen.rslora, qwen.layers) = (true, Some(1));
    [("llama", llama), ("qwen3", qwen)]
}

/// Trains three LoRA steps on each tiny base and writes `malus-out/adapter-*` (the run's
/// PEFT directory) and `malus-out/fused-*` (`malus fuse` at bf16).
#[test]
#[ignore = "writes the fixtures check_malus_adapter.py reads"]
fn write_malus_outputs() {
    let work = std::env::temp_dir().join(format!("malus-peft-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let out = fixtures().join("malus-out");
    for (tag, lora) in runs() {
        let base = fixtures().join(format!("tiny-{tag}"));
        let c = hf::load_config(&base, 32).unwrap();
        let tok = work.join(format!("tok-{tag}.json"));
        common::word_tokenizer(&tok, c.vocab);
        let ids: Vec<u32> = (0..3000u32).map(|i| (i * 7 + i / 11) % c.vocab as u32).collect();
        let data = work.join(format!("data-{tag}.bin"));
        malus::data::shards::write_tokens(&data, &ids).unwrap();
        let mut s = Settings::default_run();
        (s.model, s.init, s.tokenizer, s.data) = (c.clone(), Some(base.clone()), tok, data);
        (s.out, s.device, s.lr, s.lora) = (work.join(tag), DeviceChoice::Cpu, 5e-2, Some(lora));
        (
            s.steps,
            s.accum,
            s.warmup,
            s.eval_every,
            s.eval_batches,
            s.ckpt_every,
        ) = (3, 2, 1, 3, 1, 3);
        let mut t = Trainer::new(s.clone(), false).unwrap();
        t.run(Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
        let ad = peft::load(&s.out.join("adapter"), &c).unwrap();
        assert_eq!(Some(&ad), t.adapters());
        // Saved again only to record a relative base path instead of this machine's.
        let adapter = out.join(format!("adapter-{tag}"));
        peft::save(&adapter, &ad, &c, &format!("tiny-{tag}")).unwrap();
        let fused = out.join(format!("fused-{tag}"));
        let _ = std::fs::remove_dir_all(&fused);
        let m = model_source::from_hf(&base, Some(32), Some(&adapter)).unwrap();
        let config = hf_out::base_config_json(&base, StoreDtype::Bf16).unwrap();
        hf_out::write_model_dir(&fused, &m.config, &m.params, StoreDtype::Bf16, &config, &base).unwrap();
    }
    std::fs::remove_dir_all(&work).unwrap();
}

fn f64s(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f64>) {
    let v = st.tensor(name).unwrap();
    (v.shape().to_vec(), common::tensor_f64(name, &v))
}

/// Worst |a − b| over max |b|.
fn worst(got: &[Vec<f64>], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    got.iter()
        .flatten()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((g - w).abs() / scale))
}

#[test]
fn peft_and_transformers_compute_malus_logits_from_what_malus_wrote() {
    let out = fixtures().join("malus-out");
    for (tag, lora) in runs() {
        let bytes = std::fs::read(out.join(format!("logits-{tag}.safetensors"))).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (shape, toks) = f64s(&st, "tokens");
        let tokens: Vec<u32> = toks.iter().map(|&t| t as u32).collect();
        let seq = shape[1];
        let refs: HashMap<&str, Vec<f64>> = ["peft_logits", "fused_logits", "base_logits"]
            .into_iter()
            .map(|n| (n, f64s(&st, n).1))
            .collect();

        let (c, base) = hf::load(&fixtures().join(format!("tiny-{tag}")), seq).unwrap();
        let ad = peft::load(&out.join(format!("adapter-{tag}")), &c).unwrap();
        assert_eq!(ad.lora, lora, "{tag}: the adapter's settings");
        // transformers' RMSNorm computes in float32 even in a float64 model, so its logits
        // carry float32 rounding (≈1e-6 of max |logit| here, the same without an adapter):
        // 1e-5 is far below what a wrong adapter or row order gives (> 1e-2).
        let tol = 1e-5;
        let plain = reference::logits(&c, &base, &tokens);
        let e = worst(&plain, &refs["base_logits"]);
        eprintln!("{tag}: malus vs transformers on the base: {e:.1e} of max |logit|");
        assert!(e < tol, "{tag}: base logits differ by {e:.1e}");
        let with_adapter = reference::logits_with(&c, &base, Some(&ad), &tokens);
        let e = worst(&with_adapter, &refs["peft_logits"]);
        eprintln!("{tag}: malus vs PEFT on malus's adapter: {e:.1e} of max |logit|");
        assert!(
            e < tol,
            "{tag}: malus vs PEFT logits differ by {e:.1e} of max |logit|"
        );
        // The adapter matters: without it the logits are far from PEFT's.
        assert!(
            worst(&plain, &refs["peft_logits"]) > 1e-3,
            "{tag}: the adapter changes nothing"
        );

        let (fc, fused) = hf::load(&out.join(format!("fused-{tag}")), seq).unwrap();
        assert_eq!(fc, c);
        let f = reference::logits(&fc, &fused, &tokens);
        let e = worst(&f, &refs["fused_logits"]);
        eprintln!("{tag}: malus vs transformers on malus's fused model: {e:.1e} of max |logit|");
        assert!(e < tol, "{tag}: fused logits differ by {e:.1e} of max |logit|");
    }
}
