//! Hugging Face PEFT's LoRA adapter directory, in and out: `adapter_config.json` (rank, α,
//! rsLoRA, targets, layers) and `adapter_model.safetensors` (tensors named
//! `base_model.model.<module path>.lora_{A,B}.weight`). PEFT keeps q/k rows in Hugging Face's
//! RoPE order, so the `B` of q_proj and k_proj is permuted on the way in and back on the way out,
//! like the base weights themselves ([`hf::rope_rows_from_hf`]).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};
use safetensors::SafeTensors;
use serde_json::{Value, json};

use super::hf::{Json, rope_rows_from_hf, rope_rows_to_hf};
use super::{Adapters, Config, Lora, Target, Tensor};
use super::{hf_out, hf_weights};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// What PEFT puts before a module path (its `PeftModel` wraps the `…ForCausalLM`).
const PREFIX: &str = "base_model.model.";

/// Whether `dir` holds a PEFT adapter.
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

/// The adapter settings of an `adapter_config.json`, for a model of `c.layers` layers. Settings
/// malus cannot reproduce (DoRA, per-module ranks, trained biases or extra modules, regular
/// expressions for the targets) are refused by name rather than half-applied.
pub fn parse_config(text: &str, c: &Config, file: &str) -> Result<Lora> {
    let v: Value = serde_json::from_str(text).map_err(|e| anyhow!("{file}: not JSON ({e})"))?;
    let o = v
        .as_object()
        .ok_or_else(|| anyhow!("{file}: not a JSON object"))?;
    let j = Json { obj: o, file };
    let kind = j.get("peft_type").and_then(Value::as_str).unwrap_or("");
    ensure!(
        kind == "LORA",
        "{file}: peft_type is {:?}; malus reads LoRA adapters (\"LORA\")",
        j.get("peft_type")
    );
    for (key, off) in [
        ("use_dora", json!(false)),
        ("fan_in_fan_out", json!(false)),
        ("lora_bias", json!(false)),
        ("bias", json!("none")),
        ("rank_pattern", json!({})),
        ("alpha_pattern", json!({})),
        ("modules_to_save", json!([])),
        ("layer_replication", json!([])),
        ("target_parameters", json!([])),
        ("trainable_token_indices", json!({})),
    ] {
        if let Some(v) = j.get(key) {
            ensure!(
                *v == off,
                "{file}: {key} is {v}; malus supports only plain LoRA ({key} {off} or absent)"
            );
        }
    }
    let rank = j
        .usize("r")?
        .ok_or_else(|| anyhow!("{file}: r (the rank) is missing"))?;
    let mut lora = Lora::new(
        rank,
        j.f64("lora_alpha")?.unwrap_or(8.0), // PEFT's default
        &targets(j.get("target_modules"), file)?,
    );
    lora.rslora = j.bool("use_rslora")?.unwrap_or(false);
    lora.dropout = j.f64("lora_dropout")?.unwrap_or(0.0);
    lora.layers = last_layers(j.get("layers_to_transform"), c.layers, file)?;
    ensure!(!lora.targets.is_empty(), "{file}: target_modules is empty");
    Ok(lora)
}

/// `target_modules`: a list of module names (each matched, as PEFT does, against the end of a
/// module path) or `"all-linear"`.
fn targets(v: Option<&Value>, file: &str) -> Result<Vec<Target>> {
    let names: Vec<&str> = match v {
        Some(Value::String(s)) if s == "all-linear" => return Ok(Target::ALL.to_vec()),
        Some(Value::String(s)) => bail!(
            "{file}: target_modules {s:?} is a regular expression, which malus does not match; \
             list the modules instead (q_proj, k_proj, …)"
        ),
        Some(Value::Array(a)) => a
            .iter()
            .map(|n| {
                n.as_str()
                    .ok_or_else(|| anyhow!("{file}: target_modules holds {n}, not a name"))
            })
            .collect::<Result<_>>()?,
        _ => bail!("{file}: target_modules is missing or not a list of module names"),
    };
    names
        .into_iter()
        .map(|n| {
            Target::ALL
                .into_iter()
                .find(|t| {
                    let m = t.module();
                    m == n || m.ends_with(&format!(".{n}"))
                })
                .ok_or_else(|| {
                    anyhow!(
                        "{file}: target module {n:?} is not one malus adapts \
                         (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
                    )
                })
        })
        .collect()
}

/// `layers_to_transform`: absent (every layer), or the last `n` layers (malus's `--lora-layers`).
fn last_layers(v: Option<&Value>, layers: usize, file: &str) -> Result<Option<usize>> {
    let list: Vec<u64> = match v {
        None => return Ok(None),
        Some(Value::Number(n)) => vec![n.as_u64().unwrap_or(u64::MAX)],
        Some(Value::Array(a)) => a.iter().map(|n| n.as_u64().unwrap_or(u64::MAX)).collect(),
        Some(other) => bail!("{file}: layers_to_transform is {other}, expected layer numbers"),
    };
    let mut sorted = list.clone();
    sorted.sort_unstable();
    sorted.dedup();
    let n = sorted.len();
    let last: Vec<u64> = (layers.saturating_sub(n) as u64..layers as u64).collect();
    ensure!(
        n > 0 && sorted == last,
        "{file}: layers_to_transform {list:?} is not the last layers of this {layers}-layer model \
         (malus adapts the last N layers)"
    );
    Ok(Some(n))
}

/// The adapter settings of a PEFT adapter directory for the model `c`.
pub fn read_config(dir: &Path, c: &Config) -> Result<Lora> {
    let cfg = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg).with_context(|| format!("reading {}", cfg.display()))?;
    parse_config(&text, c, &cfg.display().to_string())
}

/// Reads a PEFT adapter directory for the model `c`.
pub fn load(dir: &Path, c: &Config) -> Result<Adapters> {
    let cfg = dir.join(CONFIG_FILE);
    let lora = read_config(dir, c)?;
    // Dropout is a training setting: an adapter trained with it still loads.
    let shape = Lora {
        dropout: 0.0,
        ..lora.clone()
    };
    shape
        .validate(c)
        .with_context(|| format!("{}: does not fit this model", cfg.display()))?;
    let file = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{}: not a safetensors file ({e})", file.display()))?;
    let mut stored: HashMap<String, _> = st.tensors().into_iter().collect();
    let mut ad = Adapters::zeros(c, &lora);
    for t in &mut ad.tensors {
        let name = format!("{PREFIX}{}", t.name);
        let view = stored
            .remove(&name)
            .ok_or_else(|| anyhow!("{}: tensor {name} is missing", file.display()))?;
        ensure!(
            view.shape() == t.shape.as_slice(),
            "{}: tensor {name} has shape {:?}, but this model and rank {} need {:?}",
            file.display(),
            view.shape(),
            lora.rank,
            t.shape
        );
        t.data = hf_weights::widen(view.dtype(), view.data(), &name, &file)?;
    }
    let mut extra: Vec<String> = stored.into_keys().collect();
    extra.sort();
    ensure!(
        extra.is_empty(),
        "{}: tensor(s) the adapter config does not account for: {}",
        file.display(),
        extra.join(", ")
    );
    permute_qk_b(&mut ad, c, rope_rows_from_hf);
    Ok(ad)
}

/// Writes `ad` as a PEFT adapter directory that `PeftModel.from_pretrained(base, dir)` loads;
/// `base` is recorded as `base_model_name_or_path`. Each file is written atomically.
pub fn save(dir: &Path, ad: &Adapters, c: &Config, base: &str) -> Result<()> {
    let l = &ad.lora;
    let modules: Vec<&str> = l
        .targets
        .iter()
        .map(|t| t.module().rsplit('.').next().unwrap_or_default())
        .collect();
    let layers: Value = match l.layers {
        None => Value::Null,
        Some(_) => (l.first_layer(c)..c.layers).collect::<Vec<_>>().into(),
    };
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": l.rank,
        "lora_alpha": l.alpha,
        "lora_dropout": l.dropout,
        "use_rslora": l.rslora,
        "target_modules": modules,
        "layers_to_transform": layers,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_dora": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "modules_to_save": null,
        "rank_pattern": {},
        "alpha_pattern": {},
    });
    let named = peft_tensors(ad, c);
    let bytes = hf_out::serialize_f32(&named.iter().map(|(n, t)| (n.clone(), t)).collect::<Vec<_>>())?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::fsutil::write_atomic(&dir.join(WEIGHTS_FILE), &bytes)?;
    crate::fsutil::write_atomic(
        &dir.join(CONFIG_FILE),
        (serde_json::to_string_pretty(&config)? + "\n").as_bytes(),
    )
}

/// The adapters as PEFT stores them: names with the `base_model.model.` prefix and the q/k
/// `B` rows in Hugging Face's order (also how malus's adapter gradients compare with PEFT's).
pub fn peft_tensors(ad: &Adapters, c: &Config) -> Vec<(String, Tensor)> {
    let mut out = ad.clone();
    permute_qk_b(&mut out, c, rope_rows_to_hf);
    out.tensors
        .into_iter()
        .map(|t| (format!("{PREFIX}{}", t.name), t))
        .collect()
}

/// Applies a q/k row permutation to the `B` of every q_proj and k_proj adapter (`B`'s rows are
/// that projection's output channels; `A` indexes its input, which is never permuted).
fn permute_qk_b(ad: &mut Adapters, c: &Config, rows: fn(&[f32], usize, usize, usize) -> Vec<f32>) {
    for a in ad.adapters.clone() {
        let heads = match a.target {
            Target::Q => c.heads,
            Target::K => c.kv_heads,
            _ => continue,
        };
        let t = &mut ad.tensors[a.b];
        t.data = rows(&t.data, heads, c.head_dim, ad.lora.rank);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Config {
        Config::preset("tiny").unwrap()
    }

    #[test]
    fn config_fields_map_to_the_settings() {
        let c = tiny();
        let text = r#"{"peft_type":"LORA","r":4,"lora_alpha":8,"use_rslora":true,
            "lora_dropout":0.05,"target_modules":["v_proj","q_proj","down_proj"],
            "layers_to_transform":null,"bias":"none","use_dora":false,"rank_pattern":{}}"#;
        let l = parse_config(text, &c, "a.json").unwrap();
        assert_eq!((l.rank, l.alpha, l.rslora, l.dropout), (4, 8.0, true, 0.05));
        assert_eq!(l.targets, [Target::Q, Target::V, Target::Down]);
        assert_eq!(l.layers, None);
        let all = text
            .replace(r#"["v_proj","q_proj","down_proj"]"#, r#""all-linear""#)
            .replace(
                r#""layers_to_transform":null"#,
                &format!(r#""layers_to_transform":[{}]"#, c.layers - 1),
            );
        let l = parse_config(&all, &c, "a.json").unwrap();
        assert_eq!((l.targets.len(), l.layers), (7, Some(1)));
    }

    #[test]
    fn unsupported_configs_are_named() {
        let c = tiny();
        let base = r#"{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj"]"#;
        let cases = [
            (r#","use_dora":true}"#, "use_dora"),
            (r#","rank_pattern":{"q_proj":8}}"#, "rank_pattern"),
            (r#","modules_to_save":["lm_head"]}"#, "modules_to_save"),
            (r#","layers_to_transform":[0]}"#, "not the last layers"),
            (r#","bias":"all"}"#, "bias"),
        ];
        for (tail, want) in cases {
            let e = parse_config(&format!("{base}{tail}"), &c, "x/adapter_config.json")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("x/adapter_config.json") && e.contains(want),
                "{tail}: {e}"
            );
        }
        let e = parse_config(&format!("{}}}", base.replace("q_proj", "lm_head")), &c, "f").unwrap_err();
        assert!(e.to_string().contains("\"lm_head\""), "{e}");
        let e = parse_config(&format!("{}}}", base.replace("\"LORA\"", "\"IA3\"")), &c, "f").unwrap_err();
        assert!(e.to_string().contains("IA3"));
        let e = parse_config(
            r#"{"peft_type":"LORA","r":4,"target_modules":".*q_proj"}"#,
            &c,
            "f",
        )
        .unwrap_err();
        assert!(e.to_string().contains("regular expression"));
    }
}
