//! Known bugs, skipped when `MALUS_FUZZ_SKIP_KNOWN=1` so that a long run (or `smoke.sh`) looks
//! past them instead of stopping at the first: each skip names the input class of
//! `regressions/README.md` it hides. Without the variable every input runs, so the regression
//! inputs crash. Delete a skip when its bug is fixed.

// Each target uses the part it needs.
#![allow(dead_code)]

use std::sync::OnceLock;

use malus::Config;

pub fn skip_known() -> bool {
    static S: OnceLock<bool> = OnceLock::new();
    *S.get_or_init(|| std::env::var("MALUS_FUZZ_SKIP_KNOWN").is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// More f32 elements than any fuzz input can hold (inputs are at most 16 KB).
const MAX_ELEMS: u64 = 1 << 24;

/// The number of f32 elements `Params::zeros(c)` allocates; `None` when it overflows.
fn param_elems(c: &Config) -> Option<u64> {
    let [d, h, v, l] = [c.dim, c.hidden, c.vocab, c.layers].map(|x| x as u64);
    let hd = c.head_dim as u64;
    let q = (c.heads as u64).checked_mul(hd)?;
    let kv = (c.kv_heads as u64).checked_mul(hd)?;
    let attn = q.checked_add(kv)?.checked_mul(2)?.checked_mul(d)?;
    let ffn = d.checked_mul(h)?.checked_mul(3)?;
    let per_layer = attn
        .checked_add(ffn)?
        .checked_add(d.checked_mul(2)?)?
        .checked_add(hd * 2)?;
    let embed = v.checked_mul(d)?.checked_mul(2)?;
    l.checked_mul(per_layer)?.checked_add(embed)?.checked_add(d)
}

/// `Params::zeros` allocates what the config says before any tensor is read: a config claiming
/// billions of parameters is an OOM, and sizes whose product overflows a multiply panic
/// (regressions `*/huge-vocab*`, `*/overflow-dims*`).
pub fn config_too_big(c: &Config) -> bool {
    param_elems(c).is_none_or(|n| n > MAX_ELEMS)
}

/// serde_json (without its `float_roundtrip` feature, as malus builds it) may parse a decimal
/// number 1 ulp off, so an f64 in a checkpoint's metadata can change in a save/load round trip
/// (regression `checkpoint_read/settings-float-drifts.safetensors`): equality up to 1 ulp in every
/// number of two JSON values.
pub fn json_close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                x == y || (x.to_bits() as i64 - y.to_bits() as i64).abs() <= 1
            }
            _ => x == y,
        },
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_close(x, y)),
        (Object(x), Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}

/// tokenizers 0.23.2 sizes a buffer by the longest vocabulary entry and panics (bpe/model.rs:267,
/// `range end index … out of range`) on a merge whose two parts are in the vocabulary but whose
/// concatenation is longer than every entry (regression
/// `tokenizer_load/bpe-merge-longer-than-vocab.json`).
pub fn bpe_merge_too_long(v: &serde_json::Value) -> bool {
    let model = &v["model"];
    let (Some(vocab), Some(merges)) = (model["vocab"].as_object(), model["merges"].as_array()) else {
        return false;
    };
    let longest = vocab.keys().map(String::len).max().unwrap_or(0);
    let prefix = model["continuing_subword_prefix"].as_str().map_or(0, str::len);
    merges.iter().any(|m| {
        let parts: Vec<&str> = match m {
            serde_json::Value::String(s) => s.splitn(2, ' ').collect(),
            serde_json::Value::Array(a) => a.iter().filter_map(|p| p.as_str()).collect(),
            _ => return false,
        };
        parts.len() == 2 && parts[0].len() + parts[1].len().saturating_sub(prefix) > longest
    })
}
