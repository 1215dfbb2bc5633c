//! Writing what Hugging Face tools read: safetensors files of named tensors (at f32, f16 or
//! bf16, encoded one tensor at a time as the file is written, so a model is never copied whole),
//! a `config.json` for a malus config, and a whole model directory that `transformers` loads —
//! with q/k rows back in Hugging Face's RoPE order ([`rope_rows_to_hf`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, ensure};
use safetensors::tensor::{Dtype, View};
use serde_json::{Value, json};

use super::hf::{self, rope_rows_to_hf};
use super::hf_weights;
use super::{Config, Params, Tensor};

/// The storage types malus writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreDtype {
    F32,
    F16,
    Bf16,
}

impl StoreDtype {
    fn dtype(self) -> Dtype {
        match self {
            StoreDtype::F32 => Dtype::F32,
            StoreDtype::F16 => Dtype::F16,
            StoreDtype::Bf16 => Dtype::BF16,
        }
    }

    /// The name `config.json` uses (`"dtype"` / `"torch_dtype"`).
    pub fn torch_name(self) -> &'static str {
        match self {
            StoreDtype::F32 => "float32",
            StoreDtype::F16 => "float16",
            StoreDtype::Bf16 => "bfloat16",
        }
    }
}

impl StoreDtype {
    /// What a Hugging Face directory stores its embedding at (read from the safetensors
    /// headers, not the weights), so a model written from it keeps its size.
    pub fn of_dir(dir: &Path) -> Result<StoreDtype> {
        const EMBED: &str = "model.embed_tokens.weight";
        for file in hf_weights::weight_files(dir)? {
            let (header, _) = hf_weights::read_header(&file)?;
            let Some(t) = header.get(EMBED) else {
                continue;
            };
            return match t.get("dtype").and_then(Value::as_str) {
                Some("F32") => Ok(StoreDtype::F32),
                Some("F16") => Ok(StoreDtype::F16),
                Some("BF16") => Ok(StoreDtype::Bf16),
                other => Err(anyhow!(
                    "{}: {EMBED} is stored as {other:?}; malus writes F32, F16 or BF16 (choose one with --dtype)",
                    file.display()
                )),
            };
        }
        Err(anyhow!("{}: no weight file holds {EMBED}", dir.display()))
    }
}

/// A tensor as safetensors will store it: encoded when the writer asks for its bytes.
struct Encoded<'a> {
    shape: &'a [usize],
    data: Cow<'a, [f32]>,
    dtype: StoreDtype,
}

impl View for Encoded<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype.dtype()
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        match self.dtype {
            StoreDtype::F32 => Cow::Owned(self.data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            StoreDtype::F16 => Cow::Owned(
                self.data
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
            StoreDtype::Bf16 => Cow::Owned(
                self.data
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
        }
    }
    fn data_len(&self) -> usize {
        self.data.len() * if self.dtype == StoreDtype::F32 { 4 } else { 2 }
    }
}

/// `{"format": "pt"}`, which transformers checks for in a model's safetensors metadata.
fn pt_metadata() -> Option<HashMap<String, String>> {
    Some(HashMap::from([("format".to_string(), "pt".to_string())]))
}

/// Named f32 tensors as the bytes of a safetensors file (for small files: adapters).
pub fn serialize_f32(named: &[(String, &Tensor)]) -> Result<Vec<u8>> {
    let views = named.iter().map(|(n, t)| {
        let e = Encoded {
            shape: &t.shape,
            data: Cow::Borrowed(&t.data),
            dtype: StoreDtype::F32,
        };
        (n.as_str(), e)
    });
    safetensors::serialize(views, pt_metadata()).map_err(|e| anyhow!("serialising tensors: {e}"))
}

/// The `config.json` of a malus model as a Hugging Face Llama (or, with q/k norm, Qwen3).
/// Refused for what Hugging Face's classes cannot express: a residual scale other than 1.
pub fn config_json(c: &Config, dtype: StoreDtype) -> Result<Value> {
    ensure!(
        c.residual_scale == 1.0,
        "this model scales its residual branches by {} (malus's from-scratch init); Hugging Face's \
         Llama and Qwen3 have no such scale, so it cannot be exported as one",
        c.residual_scale
    );
    let (arch, kind) = if c.qk_norm {
        ("Qwen3ForCausalLM", "qwen3")
    } else {
        ("LlamaForCausalLM", "llama")
    };
    Ok(json!({
        "architectures": [arch],
        "model_type": kind,
        "hidden_size": c.dim,
        "intermediate_size": c.hidden,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "num_key_value_heads": c.kv_heads,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab,
        "max_position_embeddings": c.seq,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        "tie_word_embeddings": c.tied,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "dtype": dtype.torch_name(),
    }))
}

/// The config.json of the Hugging Face directory `dir`, as is but for the storage type: a model
/// of the same architecture (fine-tuned or fused) keeps everything transformers reads from it.
pub fn base_config_json(dir: &Path, dtype: StoreDtype) -> Result<Value> {
    let mut o = hf::read_json_object(&dir.join("config.json"))?;
    o.insert("dtype".into(), dtype.torch_name().into());
    if o.contains_key("torch_dtype") {
        o.insert("torch_dtype".into(), dtype.torch_name().into());
    }
    Ok(Value::Object(o))
}

/// Writes `p` as `model.safetensors` in Hugging Face's names and q/k row order, at `dtype`,
/// atomically; with a tied embedding no `lm_head.weight` is written (transformers ties it).
pub fn write_weights(path: &Path, c: &Config, p: &Params, dtype: StoreDtype) -> Result<()> {
    let mut permuted: HashMap<usize, (usize, usize)> = HashMap::new();
    for l in &p.layers {
        permuted.insert(l.wq, (c.heads, c.dim));
        permuted.insert(l.wk, (c.kv_heads, c.dim));
        for n in [l.q_norm, l.k_norm].into_iter().flatten() {
            permuted.insert(n, (1, 1));
        }
    }
    let views = p.tensors.iter().enumerate().map(|(i, t)| {
        let data = match permuted.get(&i) {
            Some(&(heads, cols)) => Cow::Owned(rope_rows_to_hf(&t.data, heads, c.head_dim, cols)),
            None => Cow::Borrowed(t.data.as_slice()),
        };
        let e = Encoded {
            shape: &t.shape,
            data,
            dtype,
        };
        (t.name.as_str(), e)
    });
    crate::fsutil::write_atomic_with(path, |tmp| {
        safetensors::serialize_to_file(views, pt_metadata(), tmp).map_err(|e| anyhow!("{e}"))
    })
}

/// The files beside the weights and config.json that make a model directory usable: the
/// tokenizer, its settings and chat template, the generation defaults.
pub const TOKENIZER_FILES: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "generation_config.json",
];

/// Writes a Hugging Face model directory that `transformers` loads: `config` as config.json
/// ([`config_json`], or [`base_config_json`] for a model of a base's architecture),
/// model.safetensors at `dtype`, and the tokenizer — the [`TOKENIZER_FILES`] a model directory
/// `tokenizer` has, or a tokenizer.json file (`builtin:` names too). The directory appears
/// whole or not at all (it is written beside `out` and renamed); an existing non-empty `out`
/// is refused, so nothing is overwritten. Returns the files written.
pub fn write_model_dir(
    out: &Path,
    c: &Config,
    p: &Params,
    dtype: StoreDtype,
    config: &Value,
    tokenizer: &Path,
) -> Result<Vec<String>> {
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .with_context(|| format!("{} exists and is not a readable directory", out.display()))?
            .next()
            .is_none();
        ensure!(
            empty,
            "{} exists and is not empty: give a new directory",
            out.display()
        );
    }
    let name = out
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a directory name", out.display()))?;
    let tmp = out.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let written = (|| {
        let mut files = Vec::new();
        if tokenizer.is_dir() {
            for f in TOKENIZER_FILES {
                let src = tokenizer.join(f);
                if src.is_file() {
                    std::fs::copy(&src, tmp.join(f)).with_context(|| format!("copying {}", src.display()))?;
                    files.push(f.to_string());
                }
            }
        } else {
            let bytes = crate::data::input::read(tokenizer, "tokenizer")?;
            std::fs::write(tmp.join("tokenizer.json"), &bytes[..])?;
            files.push("tokenizer.json".into());
        }
        std::fs::write(
            tmp.join("config.json"),
            serde_json::to_string_pretty(config)? + "\n",
        )?;
        write_weights(&tmp.join("model.safetensors"), c, p, dtype)?;
        files.extend(["config.json".into(), "model.safetensors".into()]);
        Ok::<_, anyhow::Error>(files)
    })();
    let files = match written {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e.context(format!("writing {}", out.display())));
        }
    };
    if out.exists() {
        std::fs::remove_dir(out).with_context(|| format!("replacing the empty {}", out.display()))?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::hf;

    #[test]
    fn a_written_model_reads_back_exactly() {
        for (qk_norm, tied, dtype) in [
            (false, false, StoreDtype::F32),
            (true, true, StoreDtype::F32),
            (false, true, StoreDtype::Bf16),
        ] {
            let mut c = Config::preset("tiny").unwrap();
            c.qk_norm = qk_norm;
            c.tied = tied;
            c.kv_heads = 2;
            c.residual_scale = 1.0;
            let p = crate::generate::fixtures::random_params(&c, 3);
            let dir =
                std::env::temp_dir().join(format!("malus-hf-out-{}-{qk_norm}{tied}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let config = config_json(&c, dtype).unwrap();
            std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
            write_weights(&dir.join("model.safetensors"), &c, &p, dtype).unwrap();
            let (c2, p2) = hf::load(&dir, c.seq).unwrap();
            assert_eq!(c2, c);
            for (a, b) in p.tensors.iter().zip(&p2.tensors) {
                let want: Vec<f32> = match dtype {
                    StoreDtype::Bf16 => a.data.iter().map(|v| half::bf16::from_f32(*v).to_f32()).collect(),
                    _ => a.data.clone(),
                };
                assert_eq!(want, b.data, "{} ({dtype:?})", a.name);
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
        let mut c = Config::preset("tiny").unwrap();
        c.residual_scale = 0.5;
        assert!(
            config_json(&c, StoreDtype::F32)
                .unwrap_err()
                .to_string()
                .contains("residual")
        );
    }
}
