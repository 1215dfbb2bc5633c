//! The LoRA workflow from the command line, on a small Hugging Face directory with a chat
//! template: `malus train --init DIR --lora --data chat.jsonl --mask-prompt` writes a PEFT
//! adapter beside its checkpoints; `malus generate` runs base + adapter from either; `malus
//! fuse` and `malus export` write the merged model as a Hugging Face directory; a new run
//! continues from the adapter.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use malus::checkpoint::{self, Checkpoint, Weights};
use malus::data::TokenFile;
use malus::model::hf_out::{self, StoreDtype};
use malus::model::{Config, Params, hf, peft};
use malus::{DeviceChoice, Settings, Trainer};
use serde_json::{Value, json};

mod common;
use common::{MARKERS, malus, model_dir};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("malus-workflow-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A Llama of the shipped tokenizer's vocabulary plus the chat markers, stored as bf16 with
/// a ChatML template: what a downloaded model directory looks like.
fn base_model(dir: &Path) -> PathBuf {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat/chatml.jinja"),
    )
    .unwrap();
    let tok = model_dir(dir, &template, "<s>", "<|im_end|>");
    let c = Config {
        dim: 64,
        hidden: 160,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        vocab: 4096 + MARKERS.len(),
        // config.json's max_position_embeddings.
        seq: 512,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        qk_norm: false,
        tied: false,
        residual_scale: 1.0,
    };
    let p = Params::init(&c, 5);
    let base = dir.join("base");
    let config = hf_out::config_json(&c, StoreDtype::Bf16).unwrap();
    hf_out::write_model_dir(&base, &c, &p, StoreDtype::Bf16, &config, &tok).unwrap();
    base
}

fn chat_data(path: &Path, n: usize, offset: usize) {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let k = i + offset;
            json!({"messages": [
                {"role": "user", "content": format!("What comes after {k}? Answer in words, please.")},
                {"role": "assistant", "content": format!("After {k} comes {}.", k + 1)},
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn run(args: &[&str]) -> String {
    let (code, out) = malus(args);
    assert_eq!(code, 0, "malus {}:\n{out}", args.join(" "));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn train_generate_fuse_export_and_continue() {
    let d = tmp("all");
    let base = base_model(&d);
    let (data, val) = (d.join("chat.jsonl"), d.join("val.jsonl"));
    chat_data(&data, 60, 0);
    chat_data(&val, 10, 100);
    let run_dir = d.join("run");
    let train = [
        "train",
        "--init",
        s(&base),
        "--lora",
        "--lora-rank",
        "4",
        "--data",
        s(&data),
        "--val-data",
        s(&val),
        "--mask-prompt",
        "--seq",
        "32",
        "--steps",
        "4",
        "--accum",
        "1",
        "--lr",
        "1e-2",
        "--eval-every",
        "2",
        "--ckpt-every",
        "2",
        "--device",
        "cpu",
        "--sample-tokens",
        "0",
        "--out",
        s(&run_dir),
    ];
    let out = run(&train);
    assert!(out.contains("LoRA:"), "{out}");

    // The training tokens were rendered with the chat template and carry the prompt mask.
    let caches: Vec<PathBuf> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("tokens-"))
        .collect();
    assert_eq!(
        caches.len(),
        2,
        "one token file for --data, one for --val-data: {caches:?}"
    );
    for c in &caches {
        let f = TokenFile::open(c).unwrap();
        assert!(f.has_mask(), "{} has no mask", c.display());
        let mask = f.mask(0, f.len as usize).unwrap().unwrap();
        let counted = mask.iter().filter(|&&b| b).count();
        assert!(
            counted > 0 && counted < mask.len() / 2,
            "{counted} of {}",
            mask.len()
        );
    }

    // The PEFT adapter is the checkpoint's adapters.
    let ck = Checkpoint::load(&checkpoint::latest(&run_dir).unwrap().unwrap()).unwrap();
    assert_eq!(ck.meta.step, 4);
    let Weights::Adapters(trained) = &ck.weights else {
        panic!("a LoRA checkpoint holds adapters")
    };
    let c = hf::load_config(&base, 32).unwrap();
    let adapter = run_dir.join("adapter");
    let loaded = peft::load(&adapter, &c).unwrap();
    assert_eq!(&loaded, trained);
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["base_model_name_or_path"], s(&base));
    assert_eq!(cfg["r"], 4);

    // Generation from the run and from base + adapter (with the run's context, which the
    // sliding window depends on) merge the same weights.
    let gen_args = [
        "--chat",
        "--prompt",
        "What comes after 7?",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
    ];
    let from_run = run(&[&["generate", "--checkpoint", s(&run_dir)][..], &gen_args].concat());
    let from_adapter = run(&[
        &[
            "generate",
            "--init",
            s(&base),
            "--adapter",
            s(&run_dir),
            "--seq",
            "32",
        ][..],
        &gen_args,
    ]
    .concat());
    assert_eq!(from_run, from_adapter);
    assert!(
        !from_run.contains("<|im_start|>"),
        "--chat prints the reply only: {from_run}"
    );

    // fuse: the base's config.json (dtype kept), its tokenizer files, the merged weights at bf16.
    let fused = d.join("fused");
    let fuse = [
        "fuse",
        "--init",
        s(&base),
        "--adapter",
        s(&adapter),
        "-o",
        s(&fused),
    ];
    run(&fuse);
    let (_, base_p) = hf::load(&base, 32).unwrap();
    let mut merged = base_p.clone();
    trained.merge_into(&mut merged);
    let (fc, fp) = hf::load(&fused, 32).unwrap();
    assert_eq!(fc, c);
    for (got, want) in fp.tensors.iter().zip(&merged.tensors) {
        let rounded: Vec<f32> = want
            .data
            .iter()
            .map(|v| half::bf16::from_f32(*v).to_f32())
            .collect();
        assert!(
            got.data == rounded,
            "{}: not the merged weights at bf16",
            got.name
        );
    }
    assert_ne!(fp, base_p, "the adapters changed nothing");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        assert_eq!(
            std::fs::read(fused.join(f)).unwrap(),
            std::fs::read(base.join(f)).unwrap(),
            "{f}"
        );
    }
    let (bc, fcj): (Value, Value) = (
        serde_json::from_str(&std::fs::read_to_string(base.join("config.json")).unwrap()).unwrap(),
        serde_json::from_str(&std::fs::read_to_string(fused.join("config.json")).unwrap()).unwrap(),
    );
    assert_eq!(bc, fcj);
    // Nothing is overwritten.
    let (code, out) = malus(&fuse);
    assert!(code != 0 && out.contains("exists and is not empty"), "{out}");

    // export of the LoRA run writes the same model.
    let exported = d.join("exported");
    run(&["export", "--checkpoint", s(&run_dir), "-o", s(&exported)]);
    assert_eq!(
        std::fs::read(exported.join("model.safetensors")).unwrap(),
        std::fs::read(fused.join("model.safetensors")).unwrap()
    );

    // A new run continues from the adapter: its adapters start where the first run ended.
    let mut s2 = Settings::default_run();
    s2.model = c.clone();
    s2.init = Some(base.clone());
    s2.tokenizer = base.clone();
    s2.data = data.clone();
    s2.mask_prompt = true;
    s2.out = d.join("run2");
    s2.device = DeviceChoice::Cpu;
    s2.lora = Some(peft::read_config(&adapter, &c).unwrap());
    s2.adapter = Some(adapter.clone());
    s2.steps = 1;
    let t = Trainer::new(s2.clone(), false).unwrap();
    assert_eq!(t.adapters(), Some(trained));
    drop(t);
    // … and refuses settings that are not the adapter's.
    s2.lora.as_mut().unwrap().rank = 2;
    s2.out = d.join("run3");
    let e = format!("{:#}", Trainer::new(s2, false).err().unwrap());
    assert!(e.contains("not this run's LoRA settings"), "{e}");
    let (code, out) = malus(&[
        "train",
        "--init",
        s(&base),
        "--adapter",
        s(&d),
        "--data",
        s(&data),
    ]);
    assert!(
        code != 0 && out.contains("neither a PEFT adapter directory"),
        "{out}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// A full fine-tune exports as a Hugging Face directory that reads back as the trained model.
#[test]
fn a_full_run_exports_its_model() {
    let d = tmp("full");
    let base = base_model(&d);
    let data = d.join("chat.jsonl");
    chat_data(&data, 40, 0);
    let mut st = Settings::default_run();
    st.model = hf::load_config(&base, 32).unwrap();
    st.init = Some(base.clone());
    st.tokenizer = base.clone();
    st.data = data;
    st.out = d.join("run");
    st.device = DeviceChoice::Cpu;
    (st.steps, st.accum, st.eval_every, st.ckpt_every, st.eval_batches) = (1, 1, 1, 1, 1);
    let mut t = Trainer::new(st, false).unwrap();
    t.run(Arc::new(AtomicBool::new(false)), |_| {}).unwrap();
    let trained = t.params().clone();
    drop(t);
    let out = d.join("export");
    run(&[
        "export",
        "--checkpoint",
        s(&d.join("run")),
        "--dtype",
        "f32",
        "-o",
        s(&out),
    ]);
    let (_, p) = hf::load(&out, 32).unwrap();
    assert!(p == trained, "the exported f32 model is the trained one");
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["dtype"], "float32");
    std::fs::remove_dir_all(&d).unwrap();
}
