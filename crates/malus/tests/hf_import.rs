//! Importing Hugging Face weights: tests/fixtures/hf/make_hf_fixture.py writes two tiny model
//! directories and the loss of a forward written in Hugging Face's conventions (rotate_half RoPE,
//! repeat_kv GQA, Qwen3 q/k norm, tied and untied heads, bf16/f16 tensors, sharded weights).
//! After `model::hf::load`, malus's f64 reference and its device step must give that loss — which
//! they do only if the RoPE row permutation is right. CI needs no PyTorch: the fixtures are
//! committed with the script that made them.

mod common;

use std::path::{Path, PathBuf};

use malus::model::hf;
use malus::reference;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

fn reference_json(dir: &Path) -> (Vec<u32>, f64, Vec<f64>) {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let nums = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let tokens = nums("tokens").iter().map(|&t| t as u32).collect();
    (tokens, v["loss"].as_f64().unwrap(), nums("last_logits"))
}

fn matches_hugging_face(name: &str, qk_norm: bool, tied: bool) {
    let dir = fixture(name);
    let (tokens, want, want_logits) = reference_json(&dir);
    let seq = tokens.len() - 1;
    let (c, p) = hf::load(&dir, seq).unwrap();
    assert_eq!((c.qk_norm, c.tied, c.seq), (qk_norm, tied, seq));

    let host = reference::loss(&c, &p, &tokens);
    let rel = (host - want).abs() / want;
    eprintln!("{name}: f64 reference loss {host:.9} vs Hugging Face convention {want:.9} (rel {rel:.1e})");
    assert!(rel < 1e-6, "{name}: reference loss {host} vs {want}");
    let logits = reference::logits(&c, &p, &tokens[..seq]);
    for (a, b) in logits[seq - 1].iter().zip(&want_logits) {
        assert!((a - b).abs() < 1e-6 * (1.0 + b.abs()), "{name}: logit {a} vs {b}");
    }

    let mut step = common::f32_step(&c, &p);
    let dev = step.forward(&p, &tokens).unwrap();
    let rel = (dev - want).abs() / want;
    eprintln!("{name}: device step (f32) loss {dev:.9} (rel {rel:.1e})");
    assert!(rel < 1e-4, "{name}: device loss {dev} vs {want}");
}

#[test]
fn llama_untied_gqa_bf16_f16_matches_hugging_face() {
    matches_hugging_face("tiny-llama", false, false);
}

#[test]
fn qwen3_tied_qk_norm_sharded_matches_hugging_face() {
    matches_hugging_face("tiny-qwen3", true, true);
}

/// A copy of tiny-llama in a fresh temp directory, with its config.json edited by `edit_config`
/// and its weights replaced by `weights` when given.
fn broken_copy(tag: &str, edit_config: impl Fn(&mut Value), weights: Option<Vec<u8>>) -> PathBuf {
    let src = fixture("tiny-llama");
    let dir = std::env::temp_dir().join(format!("malus-hf-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit_config(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let st = weights.unwrap_or_else(|| std::fs::read(src.join("model.safetensors")).unwrap());
    std::fs::write(dir.join("model.safetensors"), st).unwrap();
    dir
}

/// tiny-llama's tensors, with `drop` left out and `add` (name, shape) added as f32 zeros.
fn edited_weights(drop: &str, add: Option<(&str, Vec<usize>)>) -> Vec<u8> {
    let bytes = std::fs::read(fixture("tiny-llama/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != drop)
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    if let Some((n, shape)) = add {
        let len = shape.iter().product::<usize>() * 4;
        owned.push((n.to_string(), safetensors::Dtype::F32, shape, vec![0; len]));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn load_error(dir: &Path) -> String {
    let err = format!("{:#}", hf::load(dir, 32).unwrap_err());
    std::fs::remove_dir_all(dir).unwrap();
    err
}

#[test]
fn bad_directories_are_refused_with_named_errors() {
    let q = "model.layers.1.self_attn.q_proj.weight";
    let dir = broken_copy("missing", |_| {}, Some(edited_weights(q, None)));
    let err = load_error(&dir);
    assert!(err.contains("missing tensor(s)") && err.contains(q), "{err}");

    let dir = broken_copy("shape", |_| {}, Some(edited_weights(q, Some((q, vec![48, 64])))));
    let err = load_error(&dir);
    assert!(
        err.contains(&format!(
            "model.safetensors: tensor {q} has shape [48, 64], but config.json implies [64, 64]"
        )),
        "{err}"
    );

    let extra = "model.layers.0.self_attn.q_proj.bias";
    let dir = broken_copy("extra", |_| {}, Some(edited_weights("", Some((extra, vec![64])))));
    let err = load_error(&dir);
    assert!(err.contains("no parameter for") && err.contains(extra), "{err}");

    // An index naming a file outside the directory is refused before anything is read.
    let dir = broken_copy("index", |_| {}, None);
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"weight_map": {"model.norm.weight": "/dev/zero"}}"#,
    )
    .unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains("weight_map value \"/dev/zero\" is not a file name in the directory"),
        "{err}"
    );

    let dir = broken_copy("type", |c| c["model_type"] = "gemma".into(), None);
    let err = load_error(&dir);
    assert!(
        err.contains("config.json") && err.contains("model_type \"gemma\""),
        "{err}"
    );

    let dir = broken_copy("heads", |c| c["num_key_value_heads"] = 4.into(), None);
    let err = load_error(&dir);
    assert!(
        err.contains("model.layers.0.self_attn.k_proj.weight")
            && err.contains("[32, 64]")
            && err.contains("[64, 64]"),
        "{err}"
    );
}

#[test]
fn trainer_starts_from_the_imported_weights_and_resume_takes_precedence() {
    use malus::{DeviceChoice, Settings, Trainer};
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    let src = fixture("tiny-llama");
    let out = std::env::temp_dir().join(format!("malus-hf-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    common::word_tokenizer(&out.join("tok.json"), 200);
    let ids: Vec<u32> = (0..4000u32).map(|i| (i * 7 + i / 13) % 200).collect();
    malus::data::shards::write_tokens(&out.join("data.bin"), &ids).unwrap();
    let mut s = Settings::default_run();
    s.model = hf::load_config(&src, 32).unwrap();
    s.init = Some(src.clone());
    s.tokenizer = out.join("tok.json");
    s.data = out.join("data.bin");
    s.out = out.join("run");
    s.device = DeviceChoice::Cpu;
    (s.steps, s.accum, s.warmup, s.eval_every, s.eval_batches) = (2, 1, 1, 1, 1);

    let (_, imported) = hf::load(&src, 32).unwrap();
    let mut t = Trainer::new(s.clone(), false).unwrap();
    assert!(
        *t.params() == imported,
        "the run must start from the imported weights"
    );
    t.run(Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
    assert!(*t.params() != imported, "training changed nothing");
    let trained = t.params().clone();
    drop(t); // release the run directory

    s.steps = 3;
    let t = Trainer::new(s.clone(), true).unwrap();
    assert_eq!(t.step_no(), 2);
    assert!(
        *t.params() == trained,
        "a resumed run continues from its checkpoint, not the import"
    );
    drop(t);

    s.model.norm_eps = 1e-3;
    let err = format!("{:#}", Trainer::new(s.clone(), false).err().unwrap());
    assert!(err.contains("tiny-llama/config.json"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}
