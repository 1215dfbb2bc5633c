//! Importing a Hugging Face Llama-family model directory (`config.json` + `*.safetensors`
//! shards) as a malus [`Config`] and [`Params`], to fine-tune pretrained weights.
//!
//! Parameter names already are Hugging Face's, so the import is a name-for-name copy with two
//! exceptions: dtypes are widened to f32, and the RoPE channel pairing is translated (see
//! [`rope_rows_from_hf`]).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use safetensors::{Dtype, SafeTensors};
use serde_json::{Map, Value};

use super::{Config, Params};

/// Loads `dir/config.json` and the weights, for training at sequence length `seq`.
pub fn load(dir: &Path, seq: usize) -> Result<(Config, Params)> {
    let config = load_config(dir, seq)?;
    let params = load_params(dir, &config)?;
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

/// The weight files: those of `model.safetensors.index.json` when present, else every
/// `model*.safetensors` (not e.g. Mistral's `consolidated.safetensors`, a second copy).
pub(crate) fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    let names: BTreeSet<String> = if index.is_file() {
        let text = std::fs::read_to_string(&index).with_context(|| format!("reading {}", index.display()))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| anyhow!("{}: not JSON ({e})", index.display()))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow!("{}: no weight_map object", index.display()))?;
        map.values()
            .map(|f| {
                // A plain name in the model directory: never a path elsewhere.
                f.as_str()
                    .filter(|n| Path::new(n).file_name().is_some_and(|b| b == *n))
                    .map(str::to_string)
                    .ok_or_else(|| {
                        anyhow!(
                            "{}: weight_map value {f} is not a file name in the directory",
                            index.display()
                        )
                    })
            })
            .collect::<Result<_>>()?
    } else {
        std::fs::read_dir(dir)
            .with_context(|| format!("reading directory {}", dir.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("model") && n.ends_with(".safetensors"))
            .collect()
    };
    ensure!(
        !names.is_empty(),
        "{}: no model*.safetensors weight file",
        dir.display()
    );
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// One stored tensor widened to f32.
pub(crate) fn to_f32(view: &safetensors::tensor::TensorView, name: &str, file: &Path) -> Result<Vec<f32>> {
    let b = view.data();
    let two = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_bits(two(c)).to_f32())
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_bits(two(c)).to_f32())
            .collect(),
        other => bail!(
            "{}: tensor {name} has dtype {other:?}; supported are F32, F16 and BF16",
            file.display()
        ),
    };
    ensure!(
        data.iter().all(|v| v.is_finite()),
        "{}: tensor {name} holds NaN or infinite values",
        file.display()
    );
    Ok(data)
}

/// The tensor shapes a safetensors file declares, read from its header alone.
fn header_shapes(file: &Path) -> Result<HashMap<String, Vec<usize>>> {
    use std::io::Read;
    let bad = |why: &str| anyhow!("{}: not a safetensors file ({why})", file.display());
    let mut f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let size = f.metadata()?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| bad("shorter than its header"))?;
    let n = u64::from_le_bytes(n);
    ensure!(
        n <= size.saturating_sub(8) && n <= 100 << 20,
        bad("header length past the file")
    );
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|_| bad("truncated header"))?;
    let v: Value = serde_json::from_slice(&header).map_err(|_| bad("header is not JSON"))?;
    let obj = v.as_object().ok_or_else(|| bad("header is not an object"))?;
    Ok(obj
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(k, t)| {
            let shape = t.get("shape")?.as_array()?;
            let dims: Option<Vec<usize>> = shape.iter().map(|d| d.as_u64().map(|d| d as usize)).collect();
            Some((k.clone(), dims?))
        })
        .collect())
}

/// Checks, from the weight files' headers and before anything is allocated for it, that every
/// tensor `config.json` implies is stored with the shape it implies.
fn check_shapes(dir: &Path, files: &[PathBuf], c: &Config) -> Result<()> {
    let mut stored = HashMap::new();
    for file in files {
        for (name, shape) in header_shapes(file)? {
            stored.insert(name, (shape, file.clone()));
        }
    }
    let mut missing = Vec::new();
    for (name, shape) in Params::shapes(c) {
        match stored.get(&name) {
            Some((s, file)) => ensure!(
                *s == shape,
                "{}: tensor {name} has shape {s:?}, but config.json implies {shape:?}",
                file.display()
            ),
            // A tied head's weight may be stored under the embedding's name only.
            None if name == "lm_head.weight" => {}
            None => missing.push(name),
        }
    }
    ensure!(
        missing.is_empty(),
        "{}: missing tensor(s) {}",
        dir.display(),
        shown(&missing)
    );
    Ok(())
}

/// Up to five names, and how many more.
fn shown(names: &[String]) -> String {
    let more = names.len().saturating_sub(5);
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if more > 0 {
        s += &format!(" and {more} more");
    }
    s
}

/// Reads every parameter of `c` from the directory's weight files, one shard in memory at a time.
pub fn load_params(dir: &Path, c: &Config) -> Result<Params> {
    let files = weight_files(dir)?;
    check_shapes(dir, &files, c)?;
    let mut p = Params::zeros(c);
    let index: HashMap<String, usize> = p
        .tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let mut found: Vec<Option<PathBuf>> = vec![None; p.tensors.len()];
    let mut unknown = Vec::new();
    let mut tied_head = None;
    for file in &files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{}: not a safetensors file ({e})", file.display()))?;
        // Sorted, so the first error reported does not depend on hash order.
        let mut tensors = st.tensors();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, view) in tensors {
            // Old checkpoints store RoPE's frequency table, which malus recomputes.
            if name.ends_with("rotary_emb.inv_freq") {
                continue;
            }
            let Some(&i) = index.get(&name) else {
                if c.tied && name == "lm_head.weight" {
                    tied_head = Some((to_f32(&view, &name, file)?, file.clone()));
                } else {
                    unknown.push(name);
                }
                continue;
            };
            if let Some(first) = &found[i] {
                bail!(
                    "tensor {name} is stored twice: in {} and {}",
                    first.display(),
                    file.display()
                );
            }
            let t = &mut p.tensors[i];
            ensure!(
                view.shape() == t.shape.as_slice(),
                "{}: tensor {name} has shape {:?}, but config.json implies {:?}",
                file.display(),
                view.shape(),
                t.shape
            );
            t.data = to_f32(&view, &name, file)?;
            found[i] = Some(file.clone());
        }
    }
    let missing: Vec<String> = p
        .tensors
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(t, _)| t.name.clone())
        .collect();
    ensure!(
        missing.is_empty(),
        "{}: missing tensor(s) {}",
        dir.display(),
        shown(&missing)
    );
    unknown.sort();
    ensure!(
        unknown.is_empty(),
        "{}: tensor(s) malus has no parameter for: {} (not a plain {} model?)",
        dir.display(),
        shown(&unknown),
        if c.qk_norm { "Qwen3" } else { "Llama/Mistral" }
    );
    if let Some((head, file)) = tied_head {
        ensure!(
            head == p.tensors[p.embed].data,
            "{}: tie_word_embeddings is true but lm_head.weight differs from model.embed_tokens.weight",
            file.display()
        );
    }
    for l in p.layers.clone() {
        let rows = [(l.wq, c.heads, c.dim), (l.wk, c.kv_heads, c.dim)];
        let norms = [l.q_norm, l.k_norm].into_iter().flatten().map(|i| (i, 1, 1));
        for (i, heads, cols) in rows.into_iter().chain(norms) {
            let t = &mut p.tensors[i];
            t.data = rope_rows_from_hf(&t.data, heads, c.head_dim, cols);
        }
    }
    Ok(p)
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
