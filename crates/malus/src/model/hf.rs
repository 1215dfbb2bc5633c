//! Importing a Hugging Face Llama-family model directory (`config.json` + `*.safetensors`
//! shards) as a malus [`Config`] and [`Params`], to fine-tune pretrained weights.
//!
//! Parameter names already are Hugging Face's, so the import is a name-for-name copy with two
//! exceptions: dtypes are widened to f32, and the RoPE channel pairing is translated (see
//! [`rope_rows_from_hf`]).

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Map, Value};

use super::{Config, Params};

/// Loads `dir/config.json` and the weights, for training at sequence length `seq`.
pub fn load(dir: &Path, seq: usize) -> Result<(Config, Params)> {
    let config = load_config(dir, seq)?;
    let params = super::hf_weights::load_params(dir, &config)?;
    Ok((config, params))
}

/// Reads `dir/config.json` (sequence length is a training choice, not in the file).
pub fn load_config(dir: &Path, seq: usize) -> Result<Config> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_config(&text, seq, &path.display().to_string())
}

/// A JSON file that must hold an object (a config.json), errors naming the file.
pub(crate) fn read_json_object(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => bail!("{}: not a JSON object", path.display()),
        Err(e) => bail!("{}: not JSON ({e})", path.display()),
    }
}

/// The longest context `dir/config.json` allows (`max_position_embeddings`), when it says.
pub fn max_positions(dir: &Path) -> Result<Option<usize>> {
    let path = dir.join("config.json");
    let obj = read_json_object(&path)?;
    Json {
        obj: &obj,
        file: &path.display().to_string(),
    }
    .usize("max_position_embeddings")
}

/// A JSON config object (`config.json`, PEFT's `adapter_config.json`), where `null` counts as
/// absent (as in `transformers`); `file` names it in errors.
pub(crate) struct Json<'a> {
    pub(crate) obj: &'a Map<String, Value>,
    pub(crate) file: &'a str,
}

impl<'a> Json<'a> {
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn typed<T>(&self, key: &str, what: &str, f: impl Fn(&'a Value) -> Option<T>) -> Result<Option<T>> {
        self.get(key)
            .map(|v| f(v).ok_or_else(|| anyhow!("{}: {key} is {v}, expected {what}", self.file)))
            .transpose()
    }

    pub(crate) fn usize(&self, key: &str) -> Result<Option<usize>> {
        self.typed(key, "a non-negative integer", |v| v.as_u64().map(|n| n as usize))
    }

    /// A model dimension, refused by key when past what a MIL program can address.
    fn dim(&self, key: &str) -> Result<Option<usize>> {
        let v = self.usize(key)?;
        if let Some(n) = v.filter(|&n| n > super::config::MAX_DIM) {
            bail!(
                "{}: {key} = {n} exceeds {}, the largest extent a MIL program can address",
                self.file,
                super::config::MAX_DIM
            );
        }
        Ok(v)
    }

    fn required(&self, key: &str) -> Result<usize> {
        self.dim(key)?
            .ok_or_else(|| anyhow!("{}: {key} is missing", self.file))
    }

    pub(crate) fn f64(&self, key: &str) -> Result<Option<f64>> {
        self.typed(key, "a number", Value::as_f64)
    }

    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "true or false", Value::as_bool)
    }

    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>> {
        self.typed(key, "a string", Value::as_str)
    }
}

/// Parses a `config.json` text; `file` names it in errors. Refuses every setting that would make
/// the model compute something malus does not (scaled RoPE, biases, sliding windows, …).
pub fn parse_config(text: &str, seq: usize, file: &str) -> Result<Config> {
    let value: Value = serde_json::from_str(text).map_err(|e| anyhow!("{file}: not JSON ({e})"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| anyhow!("{file}: not a JSON object"))?;
    let j = Json { obj, file };
    let model_type = j
        .str("model_type")?
        .ok_or_else(|| anyhow!("{file}: model_type is missing"))?;
    let qk_norm = match model_type {
        "llama" | "mistral" => false,
        "qwen3" => true,
        other => bail!("{file}: model_type {other:?} is not supported (llama, mistral, qwen3)"),
    };
    if let Some(act) = j.str("hidden_act")? {
        ensure!(
            act == "silu",
            "{file}: hidden_act {act:?} is not supported (silu only)"
        );
    }
    for key in ["attention_bias", "mlp_bias"] {
        ensure!(
            j.bool(key)? != Some(true),
            "{file}: {key} is true; malus's projections have no biases"
        );
    }
    if let Some(v) = j.get("rope_scaling") {
        bail!("{file}: rope_scaling {v} is not supported (plain RoPE only)");
    }
    // transformers ≥ 5 nests the RoPE settings in rope_parameters.
    let mut rope_theta = j.f64("rope_theta")?;
    if let Some(v) = j.get("rope_parameters") {
        let rp = Json {
            obj: v
                .as_object()
                .ok_or_else(|| anyhow!("{file}: rope_parameters is {v}, expected an object"))?,
            file,
        };
        let kind = rp.str("rope_type")?.unwrap_or("default");
        ensure!(
            kind == "default",
            "{file}: rope_parameters.rope_type {kind:?} is not supported (plain RoPE only)"
        );
        rope_theta = rp.f64("rope_theta")?.or(rope_theta);
    }
    if j.bool("use_sliding_window")? == Some(true) {
        bail!("{file}: use_sliding_window is true; malus attends to the whole sequence");
    }
    // A window at least the training length changes nothing; Qwen3 lists one it does not use.
    if let (Some(w), false) = (j.usize("sliding_window")?, model_type == "qwen3") {
        ensure!(
            w >= seq,
            "{file}: sliding_window {w} is shorter than the sequence length {seq}; malus attends to the whole sequence"
        );
    }
    if let Some(v) = j.get("layer_types") {
        let full = v
            .as_array()
            .is_some_and(|a| a.iter().all(|t| t == "full_attention"));
        ensure!(
            full,
            "{file}: layer_types {v} is not supported (full_attention only)"
        );
    }
    let dim = j.required("hidden_size")?;
    let heads = j.required("num_attention_heads")?;
    ensure!(heads > 0, "{file}: num_attention_heads must be positive");
    if let Some(max) = j.usize("max_position_embeddings")? {
        ensure!(
            seq <= max,
            "{file}: sequence length {seq} exceeds max_position_embeddings {max}"
        );
    }
    let c = Config {
        dim,
        hidden: j.required("intermediate_size")?,
        layers: j.required("num_hidden_layers")?,
        heads,
        kv_heads: j.dim("num_key_value_heads")?.unwrap_or(heads),
        head_dim: j.dim("head_dim")?.unwrap_or(dim / heads),
        vocab: j.required("vocab_size")?,
        seq,
        rope_theta: rope_theta.unwrap_or(10000.0),
        // transformers' default for Llama, Mistral and Qwen3.
        norm_eps: j.f64("rms_norm_eps")?.unwrap_or(1e-6),
        qk_norm,
        tied: j.bool("tie_word_embeddings")?.unwrap_or(false),
        residual_scale: 1.0,
    };
    c.validate().with_context(|| file.to_string())?;
    Ok(c)
}

/// Reorders the rows of a q or k projection (`[heads·head_dim, cols]`, or a q/k norm weight with
/// `heads = cols = 1`) from Hugging Face's RoPE pairing to malus's.
///
/// Both rotate each head's channels in pairs by the angle pos·θ^(−2i/head_dim), but malus (as
/// llama2.c) pairs adjacent channels (2i, 2i+1) while Hugging Face's `rotate_half` pairs
/// (i, i + head_dim/2). Moving HF row h·hd + i to h·hd + 2i and HF row h·hd + i + hd/2 to
/// h·hd + 2i + 1 makes malus rotate exactly the pairs HF rotates; q and k get the same
/// permutation, so every q·k score — hence the model's output — is unchanged, and v, o need none.
/// The per-head q/k RMSNorm is invariant to a channel permutation apart from its weight, which is
/// permuted alike.
pub fn rope_rows_from_hf(data: &[f32], heads: usize, hd: usize, cols: usize) -> Vec<f32> {
    move_rope_rows(data, heads, hd, cols, false)
}

/// Moves each head's rows between the two RoPE orders: HF row h·hd + i ↔ malus row h·hd + 2i,
/// HF row h·hd + i + hd/2 ↔ malus row h·hd + 2i + 1 (`to_hf` picks the direction).
fn move_rope_rows(data: &[f32], heads: usize, hd: usize, cols: usize, to_hf: bool) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for (malus, hf) in [(2 * i, i), (2 * i + 1, i + hd / 2)] {
                let (to, from) = if to_hf { (hf, malus) } else { (malus, hf) };
                let (t, f) = ((h * hd + to) * cols, (h * hd + from) * cols);
                out[t..t + cols].copy_from_slice(&data[f..f + cols]);
            }
        }
    }
    out
}

/// The inverse of [`rope_rows_from_hf`]: malus's row order back to Hugging Face's, for what
/// malus writes out (a fused model, an exported one, a PEFT adapter's q/k `B`).
pub fn rope_rows_to_hf(data: &[f32], heads: usize, hd: usize, cols: usize) -> Vec<f32> {
    move_rope_rows(data, heads, hd, cols, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN3_0_6B: &str = r#"{"architectures":["Qwen3ForCausalLM"],"attention_bias":false,
        "head_dim":128,"hidden_act":"silu","hidden_size":1024,"intermediate_size":3072,
        "max_position_embeddings":40960,"max_window_layers":28,"model_type":"qwen3",
        "num_attention_heads":16,"num_hidden_layers":28,"num_key_value_heads":8,
        "rms_norm_eps":1e-06,"rope_scaling":null,"rope_theta":1000000,"sliding_window":null,
        "tie_word_embeddings":true,"torch_dtype":"bfloat16","use_sliding_window":false,
        "vocab_size":151936}"#;

    #[test]
    fn qwen3_config_is_the_preset() {
        let c = parse_config(QWEN3_0_6B, 256, "config.json").unwrap();
        assert_eq!(c, Config::preset("qwen3-0.6b").unwrap());
    }

    #[test]
    fn unsupported_settings_are_named() {
        let cases = [
            ("model_type", "\"qwen2\"", "model_type \"qwen2\" is not supported"),
            (
                "rope_scaling",
                "{\"rope_type\":\"yarn\",\"factor\":4.0}",
                "rope_scaling",
            ),
            ("attention_bias", "true", "attention_bias is true"),
            ("use_sliding_window", "true", "use_sliding_window"),
            ("hidden_act", "\"gelu\"", "hidden_act \"gelu\""),
            ("num_key_value_heads", "3", "multiple of kv_heads"),
            ("vocab_size", "\"big\"", "vocab_size is \"big\""),
        ];
        for (k, v, want) in cases {
            // serde_json keeps the last duplicate key: put the bad value last.
            let text = format!("{},\"{k}\":{v}}}", QWEN3_0_6B.trim_end_matches('}'));
            let err = format!("{:#}", parse_config(&text, 256, "q/config.json").unwrap_err());
            assert!(err.contains("q/config.json") && err.contains(want), "{k}: {err}");
        }
        let err = parse_config(QWEN3_0_6B, 50_000, "c.json").unwrap_err();
        assert!(
            err.to_string().contains("exceeds max_position_embeddings 40960"),
            "{err}"
        );
        let mistral = QWEN3_0_6B
            .replace("\"qwen3\"", "\"mistral\"")
            .replace("\"sliding_window\":null", "\"sliding_window\":128");
        let err = parse_config(&mistral, 256, "m.json").unwrap_err();
        assert!(err.to_string().contains("sliding_window 128"), "{err}");
        assert!(!parse_config(&mistral, 128, "m.json").unwrap().qk_norm);
    }

    #[test]
    fn rope_permutation_interleaves_the_two_halves_of_each_head() {
        // Two heads of head_dim 4, one column: HF rows 0..8.
        let hf: Vec<f32> = (0..8).map(|v| v as f32).collect();
        assert_eq!(
            rope_rows_from_hf(&hf, 2, 4, 1),
            [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]
        );
        // Whole rows move: [heads·hd = 2, cols = 3].
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(rope_rows_from_hf(&m, 1, 2, 3), m);
        let m: Vec<f32> = (0..48).map(|v| v as f32).collect(); // 2 heads of 8, 3 columns
        assert_eq!(rope_rows_to_hf(&rope_rows_from_hf(&m, 2, 8, 3), 2, 8, 3), m);
        assert_ne!(rope_rows_from_hf(&m, 2, 8, 3), m);
    }
}
