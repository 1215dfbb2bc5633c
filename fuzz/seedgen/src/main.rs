//! Writes the seeds of the malus fuzz targets (`checkpoint_read`, `token_shard`, `hf_import`,
//! `tokenizer_load`) into `fuzz/seeds/<target>/`, each a small valid input made by malus's own
//! writers, so the fuzzer starts from files that load. Run from `fuzz/`:
//! `cargo run --release -p malus-fuzz-seedgen`. Every seed is checked to load before it is
//! written (a seed that stops loading after a format change fails here, not silently).

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use malus::checkpoint::{Checkpoint, FORMAT, Meta, OptimizerMeta, Weights};
use malus::data::Tok;
use malus::model::hf;
use malus::train::optim::LossScaler;
use malus::{AdamWConfig, Config, Optimizer, Params, Settings};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Value, json};

fn seeds(target: &str) -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../seeds")
        .join(target);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A model small enough that a checkpoint of it is a few kilobytes.
fn tiny(qk_norm: bool, tied: bool) -> Config {
    Config {
        dim: 4,
        hidden: 8,
        layers: 1,
        heads: 2,
        kv_heads: 1,
        head_dim: 2,
        vocab: 8,
        seq: 4,
        rope_theta: 10000.0,
        norm_eps: 1e-5,
        qk_norm,
        tied,
        residual_scale: 1.0,
    }
}

fn checkpoint_seeds() -> Result<()> {
    let dir = seeds("checkpoint_read")?;
    let cases: [(&str, bool, bool, bool, LossScaler); 4] = [
        ("adamw_tied", false, true, true, LossScaler::fixed(1.0)),
        (
            "adamw_untied_qknorm",
            true,
            false,
            true,
            LossScaler::dynamic(1024.0, 100),
        ),
        ("sgd_tied", false, true, false, LossScaler::fixed(1.0)),
        (
            "sgd_untied_qknorm",
            true,
            false,
            false,
            LossScaler::dynamic(65536.0, 7),
        ),
    ];
    for (name, qk_norm, tied, adamw, scaler) in cases {
        let c = tiny(qk_norm, tied);
        let mut params = Params::init(&c, 3);
        let g = Params::init(&c, 9);
        let mut opt = if adamw {
            Optimizer::adamw(&params.tensors, AdamWConfig::default())
        } else {
            Optimizer::sgd(&params.tensors, 0.9, 0.1)
        };
        opt.step(&mut params.tensors, &g.tensors, 1e-3);
        let mut s = Settings::default_run();
        s.model = c.clone();
        let meta = Meta {
            format: FORMAT,
            config: c,
            step: 1,
            rng: 77,
            scaler,
            tokenizer_hash: "0123456789abcdef".into(),
            tokens_seen: 16,
            elapsed_s: 0.5,
            optimizer: OptimizerMeta::of(&opt),
            settings: serde_json::to_value(&s)?,
            lora: None,
        };
        let ck = Checkpoint {
            meta,
            weights: Weights::Model(params),
            opt,
        };
        let bytes = ck.to_bytes()?;
        ensure!(
            Checkpoint::from_bytes(&bytes, name)? == ck,
            "{name} does not load back"
        );
        std::fs::write(dir.join(format!("{name}.safetensors")), &bytes)?;
    }
    Ok(())
}

/// The token_shard header (see fuzz_targets/token_shard.rs) followed by the file.
fn shard_seed(vocab: u16, seq: u16, val: u8, nval: u8, seed: u64, n: u16, pos: u16, ids: &[u16]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&vocab.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(val);
    out.push(nval);
    out.extend_from_slice(&seed.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&pos.to_le_bytes());
    for t in ids {
        out.extend_from_slice(&t.to_le_bytes());
    }
    out
}

fn shard_seeds() -> Result<()> {
    let dir = seeds("token_shard")?;
    let ramp: Vec<u16> = (0..600).map(|i| (i % 50) as u16).collect();
    let wide: Vec<u16> = (0..300).map(|i| (i * 211 % 65536) as u16).collect();
    let cases: [(&str, Vec<u8>); 5] = [
        ("ramp", shard_seed(50, 15, 26, 4, 1, 3, 10, &ramp)),
        ("ramp_small_vocab", shard_seed(40, 7, 255, 16, 2, 60, 0, &ramp)),
        ("wide_ids", shard_seed(0, 31, 100, 3, 3, 17, 280, &wide)),
        ("minimal", shard_seed(4, 0, 0, 1, 4, 4, 0, &[0, 1, 2, 3])),
        ("odd", {
            let mut v = shard_seed(50, 3, 10, 2, 5, 1, 0, &ramp[..20]);
            v.push(7);
            v
        }),
    ];
    for (name, bytes) in cases {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

fn hf_config(c: &Config, model_type: &str) -> Value {
    let mut v = json!({
        "hidden_size": c.dim,
        "intermediate_size": c.hidden,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "num_key_value_heads": c.kv_heads,
        "vocab_size": c.vocab,
        "max_position_embeddings": 16,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "torch_dtype": "bfloat16",
        "architectures": [if model_type == "qwen3" { "Qwen3ForCausalLM" } else { "LlamaForCausalLM" }],
        "model_type": model_type,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": null,
        "tie_word_embeddings": c.tied,
    });
    if model_type == "qwen3" {
        let o = v.as_object_mut().unwrap();
        o.insert("head_dim".into(), json!(c.head_dim));
        o.insert("sliding_window".into(), Value::Null);
        o.insert("use_sliding_window".into(), json!(false));
        o.insert("layer_types".into(), json!(vec!["full_attention"; c.layers]));
    }
    v
}

/// A safetensors file of `tensors` (name, shape, f32 values) stored as `dtype`.
fn safetensors_of(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    dtype: impl Fn(&str) -> Dtype,
) -> Result<Vec<u8>> {
    let bufs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let d = dtype(name);
            let bytes: Vec<u8> = match d {
                Dtype::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                Dtype::F16 => data
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
                _ => data
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            };
            (name.clone(), d, shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView)> = bufs
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    Ok(safetensors::serialize(views, None)?)
}

/// The hf_import input format (see fuzz_targets/hf_import.rs): a seq byte, then files as
/// (name index, u32 length, bytes).
fn hf_seed(seq: u8, files: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = vec![seq];
    for (name, bytes) in files {
        out.push(*name);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

fn hf_seeds() -> Result<()> {
    let dir = seeds("hf_import")?;
    let check = tmp_dir("seedgen-hf")?;
    let write = |name: &str, seq: u8, files: &[(u8, &[u8])]| -> Result<()> {
        // The seed must load: write its files as the target does.
        let _ = std::fs::remove_dir_all(&check);
        std::fs::create_dir_all(&check)?;
        for (n, b) in files {
            std::fs::write(check.join(FILES[*n as usize]), b)?;
        }
        hf::load(&check, seq as usize).with_context(|| format!("hf seed {name} does not load"))?;
        std::fs::write(dir.join(name), hf_seed(seq, files))?;
        Ok(())
    };
    // Llama, untied, GQA, mixed bf16/f16/f32, with an old rotary table to skip.
    let c = tiny(false, false);
    let p = Params::init(&c, 5);
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = p
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone(), t.data.clone()))
        .collect();
    t.push((
        "model.layers.0.self_attn.rotary_emb.inv_freq".into(),
        vec![1],
        vec![1.0],
    ));
    let st = safetensors_of(&t, |n| {
        if n.contains("mlp") {
            Dtype::F16
        } else if n.contains("norm") {
            Dtype::F32
        } else {
            Dtype::BF16
        }
    })?;
    let cfg = serde_json::to_vec(&hf_config(&c, "llama"))?;
    write("llama_untied_mixed", 4, &[(0, &cfg), (1, &st)])?;
    let mistral = serde_json::to_vec(&{
        let mut v = hf_config(&c, "mistral");
        v["sliding_window"] = json!(16);
        v
    })?;
    let st32 = safetensors_of(&t, |_| Dtype::F32)?;
    write("mistral_untied_f32", 8, &[(0, &mistral), (1, &st32)])?;

    // Qwen3, tied (with a stored copy of the head), q/k norms, two shards and an index.
    let c = tiny(true, true);
    let p = Params::init(&c, 6);
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = p
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone(), t.data.clone()))
        .collect();
    let e = &p.tensors[p.embed];
    t.push(("lm_head.weight".into(), e.shape.clone(), e.data.clone()));
    let (a, b): (Vec<_>, Vec<_>) = t.into_iter().partition(|(n, _, _)| !n.contains("mlp"));
    let sa = safetensors_of(&a, |_| Dtype::BF16)?;
    let sb = safetensors_of(&b, |_| Dtype::BF16)?;
    let mut map = serde_json::Map::new();
    for (n, _, _) in &a {
        map.insert(n.clone(), json!(FILES[3]));
    }
    for (n, _, _) in &b {
        map.insert(n.clone(), json!(FILES[4]));
    }
    let index = serde_json::to_vec(&json!({"metadata": {}, "weight_map": map}))?;
    let cfg = serde_json::to_vec(&hf_config(&c, "qwen3"))?;
    write(
        "qwen3_tied_sharded",
        4,
        &[(0, &cfg), (2, &index), (3, &sa), (4, &sb)],
    )?;
    // The same two shards found by name, without the index.
    write("qwen3_tied_shards_no_index", 3, &[(0, &cfg), (3, &sa), (4, &sb)])?;
    // transformers ≥ 5 spelling of RoPE settings.
    let mut v5 = hf_config(&c, "qwen3");
    v5.as_object_mut().unwrap().remove("rope_theta");
    v5["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 1000000.0});
    let all = safetensors_of(&[a, b].concat(), |_| Dtype::F16)?;
    write(
        "qwen3_rope_parameters",
        2,
        &[(0, &serde_json::to_vec(&v5)?), (1, &all)],
    )?;
    Ok(())
}

/// File names the hf_import target can write, by index (keep in step with the target).
const FILES: [&str; 5] = [
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
];

fn tmp_dir(tag: &str) -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("malus-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn tokenizer_seeds() -> Result<()> {
    let dir = seeds("tokenizer_load")?;
    let tmp = tmp_dir("seedgen-tok")?;
    // A byte-level BPE as `malus data tokenizer` trains it, on the start of the shipped text.
    let text: String = std::fs::read_to_string(repo().join("data/austen.txt"))?
        .chars()
        .take(6000)
        .collect();
    let txt = tmp.join("a.txt");
    std::fs::write(&txt, text)?;
    let bpe = tmp.join("bpe.json");
    malus::data::tokenizer::train(&[txt.as_path()], 300, &bpe)?;
    // Compact JSON: the same tokenizer in fewer bytes for the mutator.
    let v: Value = serde_json::from_slice(&std::fs::read(&bpe)?)?;
    let save = |name: &str, v: &Value| -> Result<()> {
        let bytes = serde_json::to_vec(v)?;
        let p = dir.join(name);
        std::fs::write(&p, &bytes)?;
        let tok = Tok::load(&p).with_context(|| format!("tokenizer seed {name} does not load"))?;
        let ids = tok.encode("It is a truth, 12!")?;
        eprintln!(
            "{name}: {} bytes, vocab {}, {:?} -> {:?}",
            bytes.len(),
            tok.vocab_size(),
            ids,
            tok.decode(&ids)?
        );
        Ok(())
    };
    save("bpe300.json", &v)?;
    // Other models and pipeline parts the tokenizers crate reads, built from the same vocab.
    let vocab = v["model"]["vocab"].clone();
    let mut wl = v.clone();
    wl["model"] = json!({"type": "WordLevel", "vocab": vocab, "unk_token": "<|endoftext|>"});
    wl["pre_tokenizer"] = json!({"type": "Whitespace"});
    wl["normalizer"] = json!({"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]});
    wl["decoder"] = Value::Null;
    save("wordlevel.json", &wl)?;
    let mut wp = v.clone();
    let mut wpv = serde_json::Map::new();
    for (i, w) in [
        "[UNK]", "[CLS]", "[SEP]", "it", "is", "a", "t", "##r", "##u", "##th", ",", "1", "##2", "!",
    ]
    .iter()
    .enumerate()
    {
        wpv.insert(w.to_string(), json!(i));
    }
    wp["added_tokens"] = json!([]);
    wp["model"] = json!({"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
        "max_input_chars_per_word": 100, "vocab": wpv});
    wp["normalizer"] = json!({"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
        "strip_accents": null, "lowercase": true});
    wp["pre_tokenizer"] = json!({"type": "BertPreTokenizer"});
    wp["post_processor"] = json!({"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1]});
    wp["decoder"] = json!({"type": "WordPiece", "prefix": "##", "cleanup": true});
    save("wordpiece.json", &wp)?;
    let mut ug = v.clone();
    ug["added_tokens"] = json!([]);
    ug["model"] = json!({"type": "Unigram", "unk_id": 0, "byte_fallback": true, "vocab": [
        ["<unk>", 0.0], ["▁It", -2.0], ["▁is", -2.5], ["▁a", -2.0], ["▁tr", -3.0], ["uth", -3.0],
        ["▁", -1.0], ["t", -4.0], [",", -3.0], ["1", -4.0], ["2", -4.0], ["!", -4.0],
        ["<0x00>", -9.0], ["<0x31>", -9.0], ["<0x21>", -9.0]]});
    ug["normalizer"] = json!({"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Replace",
        "pattern": {"String": "  "}, "content": " "}]});
    ug["pre_tokenizer"] =
        json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true});
    ug["decoder"] = json!({"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Metaspace",
        "replacement": "▁", "prepend_scheme": "always", "split": true}]});
    save("unigram.json", &ug)?;
    let mut sp = v.clone();
    sp["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\d"}, "behavior": "Isolated", "invert": false},
        {"type": "Digits", "individual_digits": true},
        {"type": "Punctuation", "behavior": "Contiguous"},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]});
    sp["post_processor"] = json!({"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}}});
    save("bpe_split_template.json", &sp)?;
    Ok(())
}

fn main() -> Result<()> {
    checkpoint_seeds().context("checkpoint_read seeds")?;
    shard_seeds().context("token_shard seeds")?;
    hf_seeds().context("hf_import seeds")?;
    tokenizer_seeds().context("tokenizer_load seeds")?;
    Ok(())
}
