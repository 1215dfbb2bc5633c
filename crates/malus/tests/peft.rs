//! Agreement with Hugging Face PEFT (fixtures from `tests/fixtures/lora/make_lora_fixture.py`):
//! a PEFT adapter directory loads into malus, and on the same base, tokens and mask malus's
//! loss and every adapter gradient match PEFT's float64 ones — plain mean and prompt-masked,
//! LoRA on a Llama and rsLoRA on a Qwen3 (q/k norm, GQA, head_dim ≠ hidden/heads).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use malus::host::batch_loss_weights;
use malus::model::{Adapters, hf, peft};
use malus::{CompiledModel, Config, Device, Numerics, Params, Plan};
use safetensors::SafeTensors;

mod common;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora")
}

/// The reference file's tensors, as f64 (I64 tokens too).
fn reference(name: &str) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(fixtures().join(name)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            let data = common::tensor_f64(&n, &v);
            (n, (v.shape().to_vec(), data))
        })
        .collect()
}

/// The loss of the batch under `weights` (one row of per-target weights per sequence) and the
/// adapters' gradients, from the f32 CPU executor.
fn loss_and_grads(
    c: &Config,
    p: &Params,
    ad: &Adapters,
    rows: &[Vec<u32>],
    weights: &[Vec<f32>],
) -> (f64, Adapters) {
    let device = Device::cpu(Numerics::F32);
    let plan = Plan::lora(c, device.dtype(), &ad.lora).unwrap();
    let mut m = CompiledModel::new(&plan, &device).unwrap();
    m.stage(p).unwrap();
    m.stage_adapters(p, ad).unwrap();
    let w = batch_loss_weights(weights).unwrap();
    let mut loss = 0.0;
    for (toks, w) in rows.iter().zip(&w) {
        loss += m.forward_weighted(p, toks, w).unwrap();
        m.backward(1.0).unwrap();
    }
    let n = rows.len();
    (loss / n as f64, m.take_lora_grads(n as f32).unwrap())
}

fn check(model: &str, adapter: &str, reference_file: &str) {
    let refs = reference(reference_file);
    let (shape, toks) = &refs["tokens"];
    let seq = shape[1] - 1;
    let (c, p) = hf::load(&fixtures().join(model), seq).unwrap();
    let ad = peft::load(&fixtures().join(adapter), &c).unwrap();
    assert_eq!(ad.lora.scale(), refs["scaling"].1[0], "{adapter}: scaling");
    let rows: Vec<Vec<u32>> = toks
        .chunks(seq + 1)
        .map(|r| r.iter().map(|&t| t as u32).collect())
        .collect();
    let ones = vec![vec![1.0f32; seq]; rows.len()];
    let mask: Vec<Vec<f32>> = refs["mask"]
        .1
        .chunks(seq)
        .map(|r| r.iter().map(|&v| v as f32).collect())
        .collect();
    for (what, weights, loss_key, grad_prefix) in [
        ("mean", &ones, "loss", "grad."),
        ("masked", &mask, "loss_masked", "grad_masked."),
    ] {
        let (loss, g) = loss_and_grads(&c, &p, &ad, &rows, weights);
        let want = refs[loss_key].1[0];
        assert!(
            (loss - want).abs() < 1e-5,
            "{model} {what}: loss {loss} vs PEFT {want}"
        );
        let mut worst = 0.0f64;
        let named = peft::peft_tensors(&g, &c);
        assert_eq!(named.len(), 28);
        for (name, t) in named {
            let (shape, r) = &refs[&format!("{grad_prefix}{name}")];
            assert_eq!(&t.shape, shape, "{name}");
            let scale = r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(scale > 0.0, "{name}: the reference gradient is zero");
            for (i, (&got, &want)) in t.data.iter().zip(r).enumerate() {
                let err = (got as f64 - want).abs() / scale;
                worst = worst.max(err);
                assert!(
                    err < 1e-4,
                    "{model} {what} {name}[{i}]: {got} vs PEFT {want} (max |g| {scale})"
                );
            }
        }
        eprintln!("{model} {what}: loss {loss} (PEFT {want}); worst gradient error {worst:.1e} of max |g|");
    }
}

#[test]
fn llama_lora_matches_peft() {
    check("tiny-llama", "adapter-llama", "reference-llama.safetensors");
}

#[test]
fn qwen3_rslora_matches_peft() {
    check("tiny-qwen3", "adapter-qwen3", "reference-qwen3.safetensors");
}

/// An adapter malus writes holds exactly the values PEFT wrote (q/k rows back in HF order) and
/// the same settings.
#[test]
fn a_peft_adapter_survives_a_load_and_save() {
    let dir = std::env::temp_dir().join(format!("malus-peft-{}", std::process::id()));
    for (model, adapter) in [("tiny-llama", "adapter-llama"), ("tiny-qwen3", "adapter-qwen3")] {
        let c = hf::load_config(&fixtures().join(model), 32).unwrap();
        let ad = peft::load(&fixtures().join(adapter), &c).unwrap();
        peft::save(&dir, &ad, &c, model).unwrap();
        let again = peft::load(&dir, &c).unwrap();
        assert_eq!(again, ad);
        let theirs = std::fs::read(fixtures().join(adapter).join(peft::WEIGHTS_FILE)).unwrap();
        let ours = std::fs::read(dir.join(peft::WEIGHTS_FILE)).unwrap();
        let (theirs, ours) = (
            SafeTensors::deserialize(&theirs).unwrap(),
            SafeTensors::deserialize(&ours).unwrap(),
        );
        let mut names = theirs.names();
        names.sort();
        let mut our_names = ours.names();
        our_names.sort();
        assert_eq!(names, our_names);
        for n in names {
            assert_eq!(
                theirs.tensor(n).unwrap().data(),
                ours.tensor(n).unwrap().data(),
                "{n}"
            );
        }
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(peft::CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(cfg["base_model_name_or_path"], model);
        assert_eq!(cfg["peft_type"], "LORA");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A broken adapter directory is refused naming the file and what is wrong.
#[test]
fn a_broken_adapter_is_named() {
    let c = hf::load_config(&fixtures().join("tiny-llama"), 32).unwrap();
    let ad = peft::load(&fixtures().join("adapter-llama"), &c).unwrap();
    let dir = std::env::temp_dir().join(format!("malus-peft-bad-{}", std::process::id()));
    // Another model's shapes: Qwen3's adapter on the Llama.
    let e = format!(
        "{:#}",
        peft::load(&fixtures().join("adapter-qwen3"), &c).unwrap_err()
    );
    assert!(
        e.contains("adapter_model.safetensors") && e.contains("shape"),
        "{e}"
    );
    // A tensor missing.
    peft::save(&dir, &ad, &c, "x").unwrap();
    let mut fewer = ad.clone();
    fewer.tensors[0].name = "model.layers.0.self_attn.q_proj.lora_X.weight".into();
    peft::save(&dir, &fewer, &c, "x").unwrap();
    let e = format!("{:#}", peft::load(&dir, &c).unwrap_err());
    assert!(e.contains("lora_A.weight is missing"), "{e}");
    std::fs::write(dir.join(peft::CONFIG_FILE), "{").unwrap();
    let e = format!("{:#}", peft::load(&dir, &c).unwrap_err());
    assert!(e.contains("adapter_config.json") && e.contains("not JSON"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
